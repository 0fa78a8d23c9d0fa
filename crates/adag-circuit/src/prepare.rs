//! From a dataset item to the tokens the model sees, as the reference's `prepare_ci` builds
//! them (`shared/reference/adag.md` §2.2).
//!
//! 1. **Messages**: `[system?] + user(prompt) + assistant(seed)?`, rendered with the model's
//!    chat template; for `meta-llama/Llama-3.1-8B-Instruct` a stripped template that drops the
//!    default "Cutting Knowledge Date…" system preamble but keeps an empty system header.
//! 2. **Seed**: with a seed the template is rendered without a generation prompt and the token
//!    sequence is cut at the *last* end-of-turn (eos) token, so the assistant turn stays open
//!    and the model continues the seed. `[EMPTY]` gives an empty assistant turn (the same tokens
//!    as the generation prompt for Llama/Qwen templates). No seed: `add_generation_prompt`.
//! 3. **Trailing space**: a seed ending in a space has its trailing spaces removed from the text
//!    and one explicit space token appended (templates such as Llama's `trim` the content, and a
//!    BPE tokenizer would not end on a lone space).
//! 4. **No chat template** (base models, or `use_chat_format: false`): the plain text
//!    `prompt + " " + seed`, encoded like `tokenizer(text)` (BOS per the tokenizer).
//! 5. **Traced position**: the last token. **Targets**: the first token of each given answer
//!    (encoded without special tokens, as written: include the leading space a word has after
//!    the seed, e.g. `" Austin"`), duplicates removed; otherwise the model's top-k (chosen by the
//!    tracer).
//!
//! Deliberate differences from the reference, all fixes of its bugs:
//! - its non-chat path dropped the seed (`tokenizer(question)` only), so the traced position
//!   predicted the token after the bare question; adag appends the seed (as the fork does);
//! - it took the space token as `encode(" ")[1]` and an answer's first token as
//!   `encode(answer)[1]`, i.e. it assumed a BOS at index 0: on tokenizers without BOS (Qwen)
//!   that crashes or picks the answer's *second* token; adag encodes without special tokens;
//! - the fork's non-chat path kept the seed's trailing space in the text *and* appended a
//!   space token (two spaces); adag appends one;
//! - with a seed, a rendered prompt with no eos to cut at was silently left closed; adag
//!   refuses it, naming the prompt.

use adag_model::chat::ChatMessage;
use adag_model::ModelTokenizer;
use serde::{Deserialize, Serialize};

use crate::dataset::{DatasetItem, EMPTY_SEED};
use crate::error::{Error, Result};

/// The HF id whose model-specific choices (stripped chat template, neuron blacklist) adag
/// reproduces.
pub const LLAMA_31_8B_INSTRUCT: &str = "meta-llama/Llama-3.1-8B-Instruct";

/// How prompts are turned into tokens for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptOptions {
    /// System message before every prompt.
    pub system_prompt: Option<String>,
    /// Seed for items that have none.
    pub default_seed: Option<String>,
    /// Use the chat template when there is one (otherwise plain text).
    pub use_chat_format: bool,
    /// Render with the reference's stripped Llama-3.1 template instead of the tokenizer's.
    pub llama31_stripped_template: bool,
}

/// A prompt ready to trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedPrompt {
    /// Index of the item in the dataset.
    pub prompt_id: u64,
    /// The item's label.
    pub label: Option<String>,
    /// The user message as given.
    pub prompt: String,
    /// The seed used, if any (`[EMPTY]` kept as written).
    pub seed: Option<String>,
    /// The rendered text (chat template applied), for display.
    pub text: String,
    /// Token ids the model sees; the traced position is the last.
    pub tokens: Vec<u32>,
    /// Each token decoded on its own.
    pub token_strings: Vec<String>,
    /// The answers the targets come from (empty: top-k).
    pub answers: Vec<String>,
    /// Target token ids from the answers; `None`: the model's top-k.
    pub targets: Option<Vec<u32>>,
}

impl PreparedPrompt {
    /// The traced position: the last token.
    pub fn traced_position(&self) -> u32 {
        self.tokens.len().saturating_sub(1) as u32
    }
}

/// The reference's model id, detected from a model directory: config.json's `_name_or_path`,
/// else a path component naming Llama-3.1-8B-Instruct (HF cache paths look like
/// `models--meta-llama--Llama-3.1-8B-Instruct/snapshots/…`).
pub fn detect_model_id(model_dir: &std::path::Path) -> Option<String> {
    let named = std::fs::read_to_string(model_dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("_name_or_path")?.as_str().map(String::from))
        .filter(|s| !s.is_empty());
    if let Some(n) = named {
        return Some(n);
    }
    let path = model_dir
        .canonicalize()
        .unwrap_or_else(|_| model_dir.into());
    path.components().find_map(|c| {
        let s = c.as_os_str().to_string_lossy().to_ascii_lowercase();
        s.contains("llama-3.1-8b-instruct")
            .then(|| LLAMA_31_8B_INSTRUCT.to_string())
    })
}

/// Whether a model id is the reference's Llama-3.1-8B-Instruct (exact id or its last path
/// component, e.g. a local copy named `Llama-3.1-8B-Instruct`).
pub fn is_llama31_8b_instruct(model_id: &str) -> bool {
    let last = model_id.rsplit('/').next().unwrap_or(model_id);
    last.eq_ignore_ascii_case("Llama-3.1-8B-Instruct")
        || last.eq_ignore_ascii_case("Meta-Llama-3.1-8B-Instruct")
}

/// The stripped Llama-3.1 rendering (no tools): BOS, a system header with the (trimmed)
/// system message or nothing, then each message's header and trimmed content, then the
/// generation prompt.
fn render_llama31_stripped(
    tok: &ModelTokenizer,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> String {
    let bos = tok
        .bos_policy()
        .bos_token
        .as_ref()
        .map(|(s, _)| s.as_str())
        .unwrap_or("<|begin_of_text|>");
    let (system, rest) = match messages.first() {
        Some(m) if m.role == "system" => (m.content.trim(), &messages[1..]),
        _ => ("", messages),
    };
    let mut s = format!("{bos}<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>");
    for m in rest {
        s += &format!(
            "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
            m.role,
            m.content.trim()
        );
    }
    if add_generation_prompt {
        s += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    }
    s
}

/// Prepares dataset item `prompt_id`; `answers` (from the run config) override the item's.
pub fn prepare(
    tok: &ModelTokenizer,
    item: &DatasetItem,
    prompt_id: u64,
    answers: Option<&[String]>,
    opts: &PromptOptions,
) -> Result<PreparedPrompt> {
    let bad = |message: String| Error::Prompt { prompt_id, message };
    let tk = |source: adag_text::Error| Error::Tokenizer {
        prompt_id,
        source: Box::new(source),
    };
    if item.prompt.is_empty() {
        return Err(bad("the prompt is empty".into()));
    }
    let seed = item.seed.clone().or_else(|| opts.default_seed.clone());
    let is_empty_seed = seed.as_deref() == Some(EMPTY_SEED);
    let seed_text = if is_empty_seed {
        ""
    } else {
        seed.as_deref().unwrap_or("")
    };
    let ends_with_space = seed_text.ends_with(' ');
    let seed_body = seed_text.trim_end_matches(' ');
    let has_seed = !seed_text.is_empty();
    let open_turn = has_seed || is_empty_seed;

    let chat = opts.use_chat_format && (tok.has_chat_template() || opts.llama31_stripped_template);
    let (text, mut tokens) = if chat {
        let mut messages = Vec::new();
        if let Some(s) = &opts.system_prompt {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::new("user", item.prompt.clone()));
        if open_turn {
            messages.push(ChatMessage::new("assistant", seed_body));
        }
        let text = if opts.llama31_stripped_template {
            render_llama31_stripped(tok, &messages, !open_turn)
        } else {
            tok.apply_chat_template(&messages, !open_turn).map_err(tk)?
        };
        let mut ids = tok.encode(&text, false).map_err(tk)?;
        if open_turn {
            let (eos_text, eos) = tok.eos_token().ok_or_else(|| {
                bad("a seed needs the tokenizer's eos (end-of-turn) token to cut the assistant turn open, and tokenizer_config.json names none".into())
            })?;
            let cut = ids.iter().rposition(|&t| t == eos).ok_or_else(|| {
                bad(format!(
                    "the chat template wrote no eos token {eos_text:?} to cut the assistant turn open at"
                ))
            })?;
            ids.truncate(cut);
        }
        (text, ids)
    } else {
        let text = if has_seed {
            format!("{} {seed_body}", item.prompt)
        } else {
            item.prompt.clone()
        };
        let ids = tok.encode(&text, true).map_err(tk)?;
        (text, ids)
    };
    if ends_with_space {
        let space = tok.encode(" ", false).map_err(tk)?;
        let &id = space
            .last()
            .ok_or_else(|| bad("the tokenizer encodes \" \" to no token".into()))?;
        tokens.push(id);
    }
    if tokens.is_empty() {
        return Err(bad("the prompt produces no tokens".into()));
    }
    let answers: Vec<String> = answers
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| item.answers.clone());
    let targets = if answers.is_empty() {
        None
    } else {
        let mut t = Vec::new();
        for a in &answers {
            let ids = tok.encode(a, false).map_err(tk)?;
            let &first = ids
                .first()
                .ok_or_else(|| bad(format!("the answer {a:?} encodes to no token")))?;
            if !t.contains(&first) {
                t.push(first);
            }
        }
        Some(t)
    };
    let token_strings = tok.token_strings(&tokens).map_err(tk)?;
    Ok(PreparedPrompt {
        prompt_id,
        label: item.label.clone(),
        prompt: item.prompt.clone(),
        seed,
        text,
        tokens,
        token_strings,
        answers,
        targets,
    })
}
