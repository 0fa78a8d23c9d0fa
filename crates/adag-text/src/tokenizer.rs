//! The model's tokenizer and chat template, with HuggingFace transformers' behaviour.
//!
//! Attribution graphs are computed over token positions, so adag must feed the model exactly the
//! ids `transformers` would: same BOS handling, same special-token matching, same chat template
//! rendering. This module loads `tokenizer.json` (the `tokenizers` crate runs the same Rust code as
//! the Python library) and `tokenizer_config.json` (special tokens, chat template), and exposes
//! what the rest of adag needs: encoding, per-token display strings, the BOS policy and prompt ids.
//! Parity with transformers is checked against recorded goldens in `tests/tokenizer_parity.rs`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value as Json;

pub use crate::chat::ChatMessage;
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};

/// How BOS is handled for this tokenizer; printed by `adag inspect`.
///
/// Callers need this to avoid the classic double-BOS bug (a chat template that writes BOS as text
/// *and* a tokenizer that prepends it) and to know whether position 0 is an attention sink that
/// attribution should treat specially.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BosPolicy {
    /// The BOS token and its id, from `tokenizer_config.json` (or, when the config does not name
    /// one, the special token the post-processor prepends). `None`: the model has no BOS (Qwen).
    pub bos_token: Option<(String, u32)>,
    /// true when encoding with special tokens already prepends BOS (post-processor / add_bos_token)
    pub tokenizer_adds_bos: bool,
}

/// A loaded tokenizer plus the parts of `tokenizer_config.json` that change model inputs.
pub struct ModelTokenizer {
    tokenizer: tokenizers::Tokenizer,
    bos: BosPolicy,
    eos: Option<(String, u32)>,
    pad: Option<(String, u32)>,
    special_ids: BTreeSet<u32>,
    /// Named special tokens passed to the chat template (`bos_token`, `eos_token`, ...), in the
    /// order they appear in the config.
    template_tokens: Vec<(String, String)>,
    chat_template: ChatTemplateState,
}

/// Why a chat template may be unusable; kept so the error can say why at apply time rather than
/// failing the whole load for a model that is only ever used without chat formatting.
enum ChatTemplateState {
    None,
    Ready(Box<ChatTemplate>),
    Unusable(String),
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .field("has_chat_template", &self.has_chat_template())
            .finish_non_exhaustive()
    }
}

/// What tokenizer_config.json (and chat_template.jinja) contribute.
#[derive(Default)]
struct TokenizerConfig {
    /// `*_token` entries with a string value, in file order (then `extra_special_tokens`).
    named_tokens: Vec<(String, String)>,
    /// Every `*_token` key present, including those set to null: an explicit null disables the
    /// tokenizer class's default for that token, as in transformers.
    explicit_keys: BTreeSet<String>,
    /// Unnamed special tokens (`additional_special_tokens` / list-form `extra_special_tokens`).
    extra_special: Vec<String>,
    /// `tokenizer_class` without the legacy `Fast` suffix.
    tokenizer_class: Option<String>,
    chat_template: Option<std::result::Result<String, String>>,
    add_bos_token: Option<bool>,
    split_special_tokens: bool,
}

impl TokenizerConfig {
    fn token(&self, name: &str) -> Option<&str> {
        self.named_tokens
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A special-token entry as transformers writes it: a string, null, or an AddedToken dict.
fn token_content(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map
            .get("content")
            .and_then(Json::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn bad_file(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses `tokenizer_config.json`; a missing file yields the empty config (no chat template,
/// special tokens unknown), which is how some base-model repos ship.
fn read_config(dir: &Path) -> Result<TokenizerConfig> {
    let path = dir.join("tokenizer_config.json");
    let mut cfg = TokenizerConfig::default();
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| bad_file(&path, e.to_string()))?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| bad_file(&path, format!("invalid JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| bad_file(&path, "top level is not a JSON object"))?;
        for (key, value) in obj {
            if key.ends_with("_token") && (value.is_null() || token_content(value).is_some()) {
                cfg.explicit_keys.insert(key.clone());
                if let Some(content) = token_content(value) {
                    cfg.named_tokens.push((key.clone(), content));
                }
            }
        }
        // transformers 5 also exposes named extra special tokens (Gemma's boi_token, ...);
        // list forms are unnamed special tokens.
        for list_key in ["extra_special_tokens", "additional_special_tokens"] {
            match obj.get(list_key) {
                Some(Json::Object(extra)) => {
                    for (key, value) in extra {
                        if cfg.token(key).is_none() {
                            if let Some(content) = token_content(value) {
                                cfg.named_tokens.push((key.clone(), content));
                            }
                        }
                    }
                }
                Some(Json::Array(list)) => cfg
                    .extra_special
                    .extend(list.iter().filter_map(token_content)),
                _ => {}
            }
        }
        cfg.tokenizer_class = obj
            .get("tokenizer_class")
            .and_then(Json::as_str)
            .map(|c| c.strip_suffix("Fast").unwrap_or(c).to_string());
        cfg.add_bos_token = obj.get("add_bos_token").and_then(Json::as_bool);
        cfg.split_special_tokens = obj
            .get("split_special_tokens")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        cfg.chat_template = match obj.get("chat_template") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(Ok(s.clone())),
            Some(Json::Array(list)) => Some(pick_default_template(list, &path)?),
            Some(other) => {
                return Err(bad_file(
                    &path,
                    format!("`chat_template` must be a string or a list of {{name, template}}, found {other}"),
                ))
            }
        };
    }
    // transformers prefers a standalone chat_template.jinja over the config entry.
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| bad_file(&jinja, e.to_string()))?;
        cfg.chat_template = Some(Ok(text));
    }
    Ok(cfg)
}

/// Picks the template named "default" from the list form of `chat_template`, as transformers does
/// when no template name is requested. A list without "default" is not an error at load time (the
/// model still tokenizes), only when a chat template is applied.
fn pick_default_template(
    list: &[Json],
    path: &Path,
) -> Result<std::result::Result<String, String>> {
    let mut names = Vec::new();
    for entry in list {
        let name = entry.get("name").and_then(Json::as_str);
        let template = entry.get("template").and_then(Json::as_str);
        match (name, template) {
            (Some("default"), Some(t)) => return Ok(Ok(t.to_string())),
            (Some(n), Some(_)) => names.push(n.to_string()),
            _ => return Err(bad_file(
                path,
                "`chat_template` list entries must be objects with string `name` and `template`",
            )),
        }
    }
    Ok(Err(format!(
        "{} lists chat templates {names:?} but none is named \"default\"",
        path.display()
    )))
}

/// Default special tokens of the transformers tokenizer classes used by adag's architectures
/// (the keyword defaults of their `__init__`). transformers applies them when the config omits the
/// key; Gemma configs, for example, never name `<mask>` yet transformers treats it as special.
fn class_defaults(class: &str) -> &'static [(&'static str, &'static str)] {
    match class {
        "GemmaTokenizer" => &[
            ("unk_token", "<unk>"),
            ("bos_token", "<bos>"),
            ("eos_token", "<eos>"),
            ("pad_token", "<pad>"),
            ("mask_token", "<mask>"),
        ],
        "LlamaTokenizer" => &[
            ("unk_token", "<unk>"),
            ("bos_token", "<s>"),
            ("eos_token", "</s>"),
        ],
        "Qwen2Tokenizer" => &[
            ("unk_token", "<|endoftext|>"),
            ("eos_token", "<|endoftext|>"),
            ("pad_token", "<|endoftext|>"),
        ],
        _ => &[],
    }
}

/// Fills in class-default special tokens for keys the config does not mention. Defaults missing
/// from the vocabulary are skipped: transformers would append them as new ids, which the model's
/// embedding matrix does not have.
fn apply_class_defaults(cfg: &mut TokenizerConfig, tokenizer: &tokenizers::Tokenizer) {
    let Some(class) = cfg.tokenizer_class.clone() else {
        return;
    };
    for (key, content) in class_defaults(&class) {
        if !cfg.explicit_keys.contains(*key) && tokenizer.token_to_id(content).is_some() {
            cfg.named_tokens
                .push((key.to_string(), content.to_string()));
        }
    }
}

/// Marks every token the config names (bos, eos, pad, mask, additional special tokens, ...) as
/// special in the tokenizer, as transformers does on load; this decides what
/// `skip_special_tokens` removes and what [`ModelTokenizer::special_ids`] reports.
fn mark_named_tokens_special(
    tokenizer: &mut tokenizers::Tokenizer,
    cfg: &TokenizerConfig,
    tok_path: &Path,
) -> Result<()> {
    let added = tokenizer.get_added_tokens_decoder();
    let mut to_mark: Vec<tokenizers::AddedToken> = Vec::new();
    let contents = cfg
        .named_tokens
        .iter()
        .map(|(_, c)| c)
        .chain(cfg.extra_special.iter());
    for content in contents {
        if to_mark.iter().any(|t| &t.content == content) {
            continue;
        }
        match added.values().find(|t| &t.content == content) {
            Some(t) if t.special => {}
            Some(t) => {
                let mut t = t.clone();
                t.special = true;
                to_mark.push(t);
            }
            None if tokenizer.token_to_id(content).is_some() => {
                to_mark.push(tokenizers::AddedToken::from(content.clone(), true));
            }
            None => tracing::warn!(
                "special token {content:?} named in tokenizer_config.json is not in the vocabulary of {}",
                tok_path.display()
            ),
        }
    }
    if !to_mark.is_empty() {
        tokenizer
            .add_special_tokens(to_mark)
            .map_err(|e| Error::Tokenizer(format!("marking special tokens: {e}")))?;
    }
    Ok(())
}

impl ModelTokenizer {
    /// Loads `dir/tokenizer.json` and (optional) `dir/tokenizer_config.json`.
    ///
    /// Padding and truncation configured inside tokenizer.json are disabled, because adag always
    /// runs one unpadded sequence and silently truncated prompts would corrupt attributions.
    /// A `chat_template.jinja` next to them overrides the config's template, as in transformers.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(Error::MissingFile {
                path: tok_path,
                what: "the HuggingFace fast-tokenizer file (tokenizer.json); adag cannot use \
                       slow-only tokenizers (tokenizer.model / vocab.json)"
                    .into(),
            });
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| bad_file(&tok_path, format!("not a valid tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| bad_file(&tok_path, format!("cannot disable truncation: {e}")))?;
        let mut cfg = read_config(dir)?;
        if cfg.split_special_tokens {
            tokenizer.set_encode_special_tokens(true);
        }
        apply_class_defaults(&mut cfg, &tokenizer);
        mark_named_tokens_special(&mut tokenizer, &cfg, &tok_path)?;
        Self::assemble(tokenizer, cfg, &tok_path)
    }

    fn assemble(
        tokenizer: tokenizers::Tokenizer,
        cfg: TokenizerConfig,
        tok_path: &Path,
    ) -> Result<Self> {
        let resolve = |name: &str| -> Option<(String, u32)> {
            let content = cfg.token(name)?;
            match tokenizer.token_to_id(content) {
                Some(id) => Some((content.to_string(), id)),
                None => {
                    tracing::warn!(
                        "{name} {content:?} from tokenizer_config.json is not in the vocabulary of {}; ignoring it",
                        tok_path.display()
                    );
                    None
                }
            }
        };
        let mut bos_token = resolve("bos_token");
        let eos = resolve("eos_token");
        let pad = resolve("pad_token");

        let special_ids: BTreeSet<u32> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();

        // Measure rather than trust add_bos_token: transformers 5 keeps tokenizer.json's
        // post-processor even when the config flag disagrees, so the encoding is the truth.
        let probe = |special: bool| -> Result<Vec<u32>> {
            Ok(tokenizer
                .encode("a", special)
                .map_err(|e| Error::Tokenizer(format!("encoding a probe string: {e}")))?
                .get_ids()
                .to_vec())
        };
        let with = probe(true)?;
        let without = probe(false)?;
        let prepended = with.len() > without.len() && with[1..].starts_with(&without);
        let prepended_id = if prepended {
            with.first().copied()
        } else {
            None
        };
        let tokenizer_adds_bos = match (&bos_token, prepended_id) {
            (Some((_, bos_id)), Some(first)) => *bos_id == first,
            (None, Some(first)) if special_ids.contains(&first) => {
                // The config names no BOS (or there is no config) but the post-processor prepends a
                // special token: that token is the BOS as far as the model is concerned.
                bos_token = tokenizer.id_to_token(first).map(|t| (t, first));
                bos_token.is_some()
            }
            _ => false,
        };
        if let Some(flag) = cfg.add_bos_token {
            if flag != tokenizer_adds_bos {
                tracing::warn!(
                    "tokenizer_config.json says add_bos_token={flag} but {} {} BOS; following tokenizer.json as transformers does",
                    tok_path.display(),
                    if tokenizer_adds_bos { "prepends" } else { "does not prepend" }
                );
            }
        }

        let chat_template = match cfg.chat_template {
            None => ChatTemplateState::None,
            Some(Err(why)) => ChatTemplateState::Unusable(why),
            Some(Ok(src)) => match ChatTemplate::new(&src) {
                Ok(t) => ChatTemplateState::Ready(Box::new(t)),
                Err(e) => ChatTemplateState::Unusable(e.to_string()),
            },
        };

        Ok(Self {
            tokenizer,
            bos: BosPolicy {
                bos_token,
                tokenizer_adds_bos,
            },
            eos,
            pad,
            special_ids,
            template_tokens: cfg.named_tokens,
            chat_template,
        })
    }

    /// Encode like HF `tokenizer(text, add_special_tokens=...)`.
    ///
    /// `add_special_tokens` runs the post-processor (which prepends BOS for Llama and Gemma).
    /// Special-token text inside `text` (e.g. `<|im_start|>`) is matched as the special token,
    /// as in transformers, unless the config sets `split_special_tokens`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("encoding {:?}: {e}", preview(text))))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of each token id as HF `convert_ids_to_tokens` would show it decoded individually
    /// (decode of the single id with skip_special_tokens=false) — for display.
    ///
    /// Decoding rather than showing raw vocabulary strings turns byte-level artefacts (`Ġthe`,
    /// `▁the`) into readable text; a token that is only part of a UTF-8 character shows as `�`.
    pub fn token_strings(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter().map(|&id| self.decode(&[id], false)).collect()
    }

    /// Decode ids back to text, like HF `tokenizer.decode(ids, skip_special_tokens=...)`.
    ///
    /// Unknown ids are an [`Error::Input`] rather than silently dropped (the `tokenizers` default),
    /// because they indicate a vocabulary mismatch between model and tokenizer.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("decoding {} ids: {e}", ids.len())))
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids
            .iter()
            .find(|&&id| self.tokenizer.id_to_token(id).is_none())
        {
            Some(id) => Err(Error::Input(format!(
                "token id {id} is not in the tokenizer's vocabulary (size {})",
                self.vocab_size()
            ))),
            None => Ok(()),
        }
    }

    /// Number of token ids the tokenizer can produce, including added tokens (HF `len(tokenizer)`).
    ///
    /// The model's embedding matrix may be larger (padded); it must not be smaller.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// How BOS is handled; see [`BosPolicy`].
    pub fn bos_policy(&self) -> &BosPolicy {
        &self.bos
    }

    /// The end-of-sequence token named by tokenizer_config.json (for chat models usually the
    /// end-of-turn token), if known and in the vocabulary.
    pub fn eos_token(&self) -> Option<(String, u32)> {
        self.eos.clone()
    }

    /// The padding token named by tokenizer_config.json, if known and in the vocabulary.
    pub fn pad_token(&self) -> Option<(String, u32)> {
        self.pad.clone()
    }

    /// ids of all special tokens (added tokens with special=true)
    ///
    /// Attribution code uses this to recognise control positions (BOS, turn markers) that should
    /// not be treated as content.
    pub fn special_ids(&self) -> &BTreeSet<u32> {
        &self.special_ids
    }

    /// Whether a usable chat template was found (so `--chat` can be offered).
    pub fn has_chat_template(&self) -> bool {
        matches!(self.chat_template, ChatTemplateState::Ready(_))
    }

    /// Render the Jinja chat template exactly as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    ///
    /// See [`crate::chat`] for the environment and its known differences from jinja2.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        match &self.chat_template {
            ChatTemplateState::Ready(t) => {
                t.render(messages, add_generation_prompt, &self.template_tokens)
            }
            ChatTemplateState::None => Err(Error::ChatTemplate(
                "this tokenizer has no chat template (no `chat_template` in tokenizer_config.json \
                 and no chat_template.jinja); run without chat formatting"
                    .into(),
            )),
            ChatTemplateState::Unusable(why) => Err(Error::ChatTemplate(why.clone())),
        }
    }

    /// Tokens for a prompt as adag feeds the model.
    ///
    /// When `chat` is false: `encode(prompt, true)`. When true: the template rendered with one
    /// user message and `add_generation_prompt=true`, encoded with `add_special_tokens=false`
    /// (as HF `apply_chat_template(tokenize=True)` does, since the template writes BOS itself).
    /// An empty prompt, or one that produces no tokens, is an [`Error::Input`].
    pub fn prompt_ids(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(Error::Input(
                "the prompt is empty; give some text to trace".into(),
            ));
        }
        let ids = if chat {
            let text = self.apply_chat_template(&[ChatMessage::new("user", prompt)], true)?;
            self.encode(&text, false)?
        } else {
            self.encode(prompt, true)?
        };
        if ids.is_empty() {
            return Err(Error::Input(format!(
                "the prompt {:?} produces no tokens; give some text to trace",
                preview(prompt)
            )));
        }
        Ok(ids)
    }

    /// The underlying `tokenizers` object, for anything this wrapper does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }
}

/// First characters of a text, for error messages that must stay readable with long prompts.
fn preview(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A tiny WordLevel tokenizer: whitespace pre-tokenizer, `<s>` prepended by a
    /// TemplateProcessing post-processor, `<s>`/`</s>`/`<pad>` added as special tokens.
    fn tokenizer_json(with_bos_post_processor: bool) -> String {
        let post = if with_bos_post_processor {
            r#"{"type":"TemplateProcessing",
                "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
                "pair":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
                "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}}"#
        } else {
            "null"
        };
        format!(
            r#"{{
  "version": "1.0",
  "truncation": {{"direction":"Right","max_length":2,"strategy":"LongestFirst","stride":0}},
  "padding": null,
  "added_tokens": [
    {{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
    {{"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
    {{"id":2,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
    {{"id":3,"content":"<pad>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}
  ],
  "normalizer": null,
  "pre_tokenizer": {{"type":"WhitespaceSplit"}},
  "post_processor": {post},
  "decoder": null,
  "model": {{"type":"WordLevel","vocab":{{"<unk>":0,"<s>":1,"</s>":2,"<pad>":3,"hello":4,"world":5,"a":6,"user":7,"assistant":8}},"unk_token":"<unk>"}}
}}"#
        )
    }

    fn model_dir(config: Option<&str>, with_bos: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("tokenizer.json"), tokenizer_json(with_bos)).unwrap();
        if let Some(cfg) = config {
            fs::write(dir.path().join("tokenizer_config.json"), cfg).unwrap();
        }
        dir
    }

    const SIMPLE_TEMPLATE: &str =
        "{{ bos_token }}{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}{% if add_generation_prompt %}assistant{% endif %}";

    #[test]
    fn object_form_bos_token_and_string_template() {
        let cfg = serde_json::json!({
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
            "eos_token": "</s>",
            "pad_token": null,
            "add_bos_token": true,
            "chat_template": SIMPLE_TEMPLATE,
        });
        let dir = model_dir(Some(&cfg.to_string()), true);
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.bos_policy().bos_token, Some(("<s>".to_string(), 1)));
        assert!(tok.bos_policy().tokenizer_adds_bos);
        assert_eq!(tok.eos_token(), Some(("</s>".to_string(), 2)));
        assert_eq!(tok.pad_token(), None);
        assert_eq!(
            tok.special_ids().iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(tok.vocab_size(), 9);
        // Truncation configured in tokenizer.json (max_length 2) is disabled.
        assert_eq!(tok.encode("hello world a", true).unwrap(), vec![1, 4, 5, 6]);
        assert_eq!(tok.encode("hello world", false).unwrap(), vec![4, 5]);
        assert_eq!(tok.token_strings(&[1, 4]).unwrap(), vec!["<s>", "hello"]);
        assert_eq!(tok.decode(&[1, 4, 5], true).unwrap(), "hello world");
        assert!(matches!(tok.decode(&[99], false), Err(Error::Input(_))));
        assert!(tok.has_chat_template());
        // Chat: the template writes BOS, so encoding must not add a second one.
        assert_eq!(tok.prompt_ids("hello", true).unwrap(), vec![1, 7, 4, 8]);
        assert_eq!(tok.prompt_ids("hello", false).unwrap(), vec![1, 4]);
    }

    #[test]
    fn list_form_chat_template_uses_default() {
        let cfg = serde_json::json!({
            "bos_token": "<s>",
            "chat_template": [
                {"name": "tool_use", "template": "TOOLS"},
                {"name": "default", "template": SIMPLE_TEMPLATE},
            ],
        });
        let dir = model_dir(Some(&cfg.to_string()), true);
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        let msgs = [ChatMessage::new("user", "hello")];
        assert_eq!(
            tok.apply_chat_template(&msgs, false).unwrap(),
            "<s>user hello "
        );
        assert_eq!(
            tok.apply_chat_template(&msgs, true).unwrap(),
            "<s>user hello assistant"
        );
    }

    #[test]
    fn list_form_without_default_is_an_error_only_when_used() {
        let cfg = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
        let dir = model_dir(Some(&cfg.to_string()), true);
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert!(!tok.has_chat_template());
        let err = tok
            .apply_chat_template(&[ChatMessage::new("user", "x")], true)
            .unwrap_err();
        assert!(
            matches!(&err, Error::ChatTemplate(m) if m.contains("default")),
            "{err}"
        );
    }

    #[test]
    fn missing_tokenizer_config_still_works() {
        let dir = model_dir(None, true);
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert!(!tok.has_chat_template());
        assert_eq!(tok.eos_token(), None);
        // BOS is inferred from the post-processor when no config names it.
        assert_eq!(tok.bos_policy().bos_token, Some(("<s>".to_string(), 1)));
        assert!(tok.bos_policy().tokenizer_adds_bos);
        assert_eq!(tok.prompt_ids("hello world", false).unwrap(), vec![1, 4, 5]);
        assert!(matches!(
            tok.prompt_ids("hello", true),
            Err(Error::ChatTemplate(_))
        ));
    }

    #[test]
    fn no_bos_without_post_processor() {
        let dir = model_dir(Some(r#"{"bos_token": null, "eos_token": "</s>"}"#), false);
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.bos_policy().bos_token, None);
        assert!(!tok.bos_policy().tokenizer_adds_bos);
        assert_eq!(tok.encode("hello", true).unwrap(), vec![4]);
    }

    #[test]
    fn chat_template_jinja_file_overrides_config() {
        let dir = model_dir(
            Some(r#"{"bos_token": "<s>", "chat_template": "CONFIG"}"#),
            true,
        );
        fs::write(
            dir.path().join("chat_template.jinja"),
            "FILE {{ messages[0].content }}\n",
        )
        .unwrap();
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        let out = tok
            .apply_chat_template(&[ChatMessage::new("user", "x")], false)
            .unwrap();
        assert_eq!(out, "FILE x");
    }

    #[test]
    fn corrupt_tokenizer_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        fs::write(&path, "{ this is not json").unwrap();
        match ModelTokenizer::from_dir(dir.path()) {
            Err(Error::BadFile { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected BadFile, got {other:?}"),
        }
        let err = ModelTokenizer::from_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn corrupt_tokenizer_config_names_the_file() {
        let dir = model_dir(Some("[1, 2"), true);
        match ModelTokenizer::from_dir(dir.path()) {
            Err(Error::BadFile { path, .. }) => assert!(path.ends_with("tokenizer_config.json")),
            other => panic!("expected BadFile, got {other:?}"),
        }
    }

    #[test]
    fn missing_tokenizer_json() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ModelTokenizer::from_dir(dir.path()),
            Err(Error::MissingFile { .. })
        ));
    }

    #[test]
    fn empty_prompt_is_an_input_error() {
        let dir = model_dir(
            Some(&serde_json::json!({"chat_template": SIMPLE_TEMPLATE}).to_string()),
            false,
        );
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        for chat in [false, true] {
            match tok.prompt_ids("", chat) {
                Err(Error::Input(msg)) => assert!(msg.contains("empty"), "{msg}"),
                other => panic!("expected Input error, got {other:?}"),
            }
        }
        // Whitespace only: no tokens at all with this tokenizer.
        assert!(matches!(tok.prompt_ids("   ", false), Err(Error::Input(_))));
    }

    #[test]
    fn raise_exception_in_template_is_a_chat_template_error() {
        let template = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok";
        let dir = model_dir(
            Some(&serde_json::json!({"chat_template": template}).to_string()),
            true,
        );
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(
            tok.apply_chat_template(&[ChatMessage::new("user", "x")], true)
                .unwrap(),
            "ok"
        );
        match tok.apply_chat_template(&[ChatMessage::new("system", "x")], true) {
            Err(Error::ChatTemplate(msg)) => {
                assert!(msg.contains("Conversation must start with user"), "{msg}")
            }
            other => panic!("expected ChatTemplate error, got {other:?}"),
        }
    }

    #[test]
    fn broken_template_does_not_prevent_loading() {
        let dir = model_dir(Some(r#"{"chat_template": "{% for %}"}"#), true);
        let tok = ModelTokenizer::from_dir(dir.path()).unwrap();
        assert!(!tok.has_chat_template());
        assert!(matches!(
            tok.prompt_ids("hello", true),
            Err(Error::ChatTemplate(_))
        ));
        assert_eq!(tok.prompt_ids("hello", false).unwrap(), vec![1, 4]);
    }
}
