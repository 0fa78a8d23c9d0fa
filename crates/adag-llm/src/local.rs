//! An adag-loaded model as an LLM: the in-process backend and what `adag serve-llm` runs.
//!
//! [`LocalModel`] is the reusable part. Besides generation it exposes what simulation needs
//! with no chat at all: [`LocalModel::next_token_logprobs`] (the distribution after a token
//! sequence) and [`LocalModel::logprobs_at`] (the distributions at chosen positions of one
//! sequence, from a single forward pass).
//!
//! # Prompt format
//!
//! Messages are rendered with the tokenizer's chat template and `add_generation_prompt=true`
//! ([`adag_model::chat`], as transformers' `apply_chat_template`), then encoded without adding
//! special tokens (the template writes BOS itself). When the last message is an assistant turn it
//! is a *prefill*: the conversation before it is rendered with the generation prompt and its text
//! is appended as is, so the model continues it.
//!
//! A tokenizer without a chat template (the bundled demo model has none) gets this plain format,
//! encoded with the tokenizer's own special-token policy (BOS where it adds one):
//!
//! ```text
//! System: {system text}
//!
//! User: {user text}
//!
//! Assistant:{prefill, if any}
//! ```
//!
//! # Generation
//!
//! Greedy at temperature 0 (ties go to the lowest token id); otherwise sampling from
//! `softmax(logits / T)` with a ChaCha8 generator seeded by the request. Generation stops at the
//! tokenizer's or config's EOS token (`"stop"`, not part of the text), at a stop string (`"stop"`,
//! the text is cut before it), at `max_tokens` or the model's context length (`"length"`).
//! Log-probabilities are those of the model's own distribution (log-softmax of the logits before
//! temperature), as vLLM reports them; token texts are the single token decoded.
//!
//! Decoding is incremental: the prompt runs once into a KV cache ([`adag_model::KvCache`]) and
//! each further token costs one token-forward. [`LocalModel::generate_uncached`] keeps the
//! re-run-everything loop as the reference the cached one is tested and timed against.
//!
//! Input problems (a chat template that refuses the conversation, a prompt longer than the
//! context) are [`LlmError::Rejected`] with status 400, failures inside the model status 500;
//! neither is retried.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adag_model::chat::ChatMessage;
use adag_model::{LoadOptions, LoadedModel};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::{
    ChatReply, ChatRequest, LlmBackend, LlmError, Message, Result, Role, TokenLogprob, Usage,
};

/// A loaded model with what generation needs around it.
pub struct LocalModel {
    loaded: LoadedModel,
    name: String,
    fingerprint: String,
    max_positions: Option<usize>,
    eos: Vec<u32>,
    /// Ids that generation may produce: those the tokenizer can decode.
    usable_vocab: usize,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("dir", &self.loaded.dir)
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0 = greedy.
    pub temperature: f32,
    /// Sampling seed; `None` = a random one (only matters at T > 0).
    pub seed: Option<u64>,
    /// Stop strings (cut from the text).
    pub stop: Vec<String>,
    /// Alternatives to report per generated token; `None` = no log-probabilities at all.
    pub top_logprobs: Option<u8>,
    /// Give up (with [`LlmError::Timeout`]) when generation is still running at this time.
    pub deadline: Option<Instant>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            temperature: 0.0,
            seed: None,
            stop: Vec::new(),
            top_logprobs: None,
            deadline: None,
        }
    }
}

/// What [`LocalModel::generate`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated text (special tokens skipped, cut at a stop string).
    pub text: String,
    /// Every generated token id, including a final EOS or a token that completed a stop string.
    pub tokens: Vec<u32>,
    /// Per token of `text`, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    /// `"stop"` or `"length"`.
    pub finish_reason: String,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
}

impl LocalModel {
    /// Loads the model directory (config, weights, tokenizer). The name served and reported is
    /// the directory's last component.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<LocalModel> {
        if !dir.is_dir() {
            return Err(LlmError::Config(format!(
                "model directory {} does not exist (expected a HuggingFace model directory with \
                 config.json, *.safetensors and tokenizer.json)",
                dir.display()
            )));
        }
        let loaded = LoadedModel::load(dir, opts).map_err(|e| {
            LlmError::Config(format!("cannot load the model in {}: {e}", dir.display()))
        })?;
        let max_positions = read_max_positions(dir)?;
        let mut eos: Vec<u32> = loaded
            .tokenizer
            .eos_token()
            .map(|(_, id)| id)
            .into_iter()
            .collect();
        if let Some(id) = loaded.model.cfg.eos_token_id {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let usable_vocab = loaded.model.cfg.d_vocab.min(loaded.tokenizer.vocab_size());
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Ok(LocalModel {
            fingerprint: fingerprint(dir)?,
            loaded,
            name,
            max_positions,
            eos,
            usable_vocab,
        })
    }

    /// Loads the bundled demo model (`models/demo`, see `adag_model::bundle`) on the CPU.
    pub fn load_default() -> Result<LocalModel> {
        LocalModel::load(&default_model_dir()?, &LoadOptions::default())
    }

    /// The model's name (its directory's name unless changed with [`LocalModel::with_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serves/reports the model under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.loaded.dir
    }

    /// A short hash of config.json and the weight files' names, sizes and modification times:
    /// part of the cache identity, so replies cached for old weights are not served for new ones.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The model and tokenizer, for anything this type does not cover.
    pub fn loaded(&self) -> &LoadedModel {
        &self.loaded
    }

    /// The context length from config.json's `max_position_embeddings`, when it has one.
    pub fn max_positions(&self) -> Option<usize> {
        self.max_positions
    }

    /// Token ids of a plain text, without special tokens (e.g. the score tokens `"0"`..`"10"`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.loaded
            .tokenizer
            .encode(text, false)
            .map_err(|e| self.rejected(400, e))
    }

    /// One token decoded on its own, as logprobs report it.
    pub fn token_text(&self, id: u32) -> Result<String> {
        self.loaded
            .tokenizer
            .decode(&[id], false)
            .map_err(|e| self.rejected(400, e))
    }

    /// The prompt text for a conversation (see the module doc for the format) and whether the
    /// tokenizer must add its special tokens when encoding it (true for the plain fallback).
    pub fn render(&self, messages: &[Message]) -> Result<(String, bool)> {
        if messages.is_empty() {
            return Err(self.rejected(400, "the conversation has no messages"));
        }
        let (history, prefill) = match messages.split_last() {
            Some((last, rest)) if last.role == Role::Assistant && !rest.is_empty() => {
                (rest, last.content.as_str())
            }
            _ => (messages, ""),
        };
        let tok = &self.loaded.tokenizer;
        if tok.has_chat_template() {
            let msgs: Vec<ChatMessage> = history
                .iter()
                .map(|m| ChatMessage::new(crate::openai::role_name(m.role), m.content.clone()))
                .collect();
            let text = tok
                .apply_chat_template(&msgs, true)
                .map_err(|e| self.rejected(400, e))?;
            Ok((text + prefill, false))
        } else {
            let mut text = String::new();
            for m in history {
                let who = match m.role {
                    Role::System => "System",
                    Role::User => "User",
                    Role::Assistant => "Assistant",
                };
                text.push_str(&format!("{who}: {}\n\n", m.content));
            }
            text.push_str("Assistant:");
            text.push_str(prefill);
            Ok((text, true))
        }
    }

    /// The token ids the model sees for a conversation.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let (text, special) = self.render(messages)?;
        let ids = self
            .loaded
            .tokenizer
            .encode(&text, special)
            .map_err(|e| self.rejected(400, e))?;
        if ids.is_empty() {
            return Err(self.rejected(400, "the prompt encodes to no tokens"));
        }
        Ok(ids)
    }

    /// Natural-log probabilities of every next token after `ids` (`[d_vocab]`).
    pub fn next_token_logprobs(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let last = ids
            .len()
            .checked_sub(1)
            .ok_or_else(|| self.rejected(400, "no tokens given"))?;
        Ok(self.logprobs_at(ids, &[last])?.remove(0))
    }

    /// For each position `p` in `positions`, the log-probabilities (`[d_vocab]`) of the token
    /// that follows `ids[..=p]`, from one forward pass over `ids`.
    pub fn logprobs_at(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<Vec<f32>>> {
        if ids.is_empty() {
            return Err(self.rejected(400, "no tokens given"));
        }
        if let Some(p) = positions.iter().find(|&&p| p >= ids.len()) {
            return Err(self.rejected(
                400,
                format!("position {p} is outside the {} tokens given", ids.len()),
            ));
        }
        self.check_context(ids.len())?;
        let logits = self
            .loaded
            .model
            .logits(ids)
            .map_err(|e| self.rejected(400, e))?;
        positions
            .iter()
            .map(|&p| {
                let row = logits
                    .get(p)
                    .and_then(|r| r.to_dtype(candle_core::DType::F32))
                    .and_then(|r| r.to_vec1::<f32>())
                    .map_err(|e| self.rejected(500, format!("reading logits: {e}")))?;
                Ok(log_softmax(&row))
            })
            .collect()
    }

    /// Generates a continuation of `prompt` (see the module doc).
    ///
    /// Incremental: the prompt runs once into a KV cache and each new token costs one
    /// token-forward ([`adag_model::Transformer::step`]).
    pub fn generate(&self, prompt: &[u32], params: &GenerateParams) -> Result<Generation> {
        self.generate_cancellable(prompt, params, &AtomicBool::new(false))
    }

    /// [`LocalModel::generate`] that stops before the next token once `cancel` is set, with
    /// [`LlmError::Rejected`] status 499 ("client closed request"): `adag serve-llm` sets it when
    /// the client disconnects, so an abandoned request stops using the cores.
    pub fn generate_cancellable(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        cancel: &AtomicBool,
    ) -> Result<Generation> {
        let model = &self.loaded.model;
        let mut cache = model.kv_cache();
        self.generate_with(prompt, params, &mut |ids| {
            if cancel.load(Ordering::Relaxed) {
                return Err(self.rejected(499, "generation cancelled: the client disconnected"));
            }
            // Only the tokens not yet in the cache: the prompt first, then one token per step.
            let new = &ids[cache.len()..];
            let logits = model
                .step(&mut cache, new)
                .map_err(|e| self.model_error(e))?
                .to_vec1::<f32>()
                .map_err(|e| self.rejected(500, format!("reading logits: {e}")))?;
            Ok(log_softmax(&logits))
        })
    }

    /// The same generation recomputing the whole sequence for every new token, as it was done
    /// before the KV cache: kept as the reference the cached path is tested and timed against.
    pub fn generate_uncached(&self, prompt: &[u32], params: &GenerateParams) -> Result<Generation> {
        self.generate_with(prompt, params, &mut |ids| self.next_token_logprobs(ids))
    }

    /// The generation loop; `next(ids)` gives the log-probabilities of the token after `ids`
    /// (always the prompt plus everything generated so far).
    fn generate_with(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        next: &mut dyn FnMut(&[u32]) -> Result<Vec<f32>>,
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(self.rejected(400, "the prompt has no tokens"));
        }
        self.check_context(prompt.len())?;
        let mut rng =
            ChaCha8Rng::seed_from_u64(params.seed.unwrap_or_else(|| rand::rng().random()));
        let mut ids = prompt.to_vec();
        let mut generated: Vec<u32> = Vec::new();
        let mut logprobs: Vec<TokenLogprob> = Vec::new();
        let mut finish = "length";
        let mut cut: Option<usize> = None;
        while generated.len() < params.max_tokens as usize
            && self.max_positions.is_none_or(|m| ids.len() < m)
        {
            if params.deadline.is_some_and(|d| Instant::now() > d) {
                return Err(LlmError::Timeout {
                    endpoint: self.endpoint(),
                    seconds: 0.0,
                });
            }
            let lp = next(&ids)?;
            let usable = &lp[..self.usable_vocab.min(lp.len())];
            let next = if params.temperature <= 0.0 {
                argmax(usable)
            } else {
                sample(usable, params.temperature, &mut rng)
            };
            generated.push(next);
            ids.push(next);
            if self.eos.contains(&next) {
                finish = "stop";
                break;
            }
            if let Some(n) = params.top_logprobs {
                logprobs.push(TokenLogprob {
                    token: self.token_text(next)?,
                    logprob: lp[next as usize],
                    top: top_k(usable, n as usize)
                        .into_iter()
                        .map(|(id, l)| Ok((self.token_text(id)?, l)))
                        .collect::<Result<_>>()?,
                });
            }
            if !params.stop.is_empty() {
                let text = self.decode(&generated)?;
                if let Some(c) = params
                    .stop
                    .iter()
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    cut = Some(c);
                    finish = "stop";
                    break;
                }
            }
        }
        let content: &[u32] = match generated.last() {
            Some(t) if self.eos.contains(t) => &generated[..generated.len() - 1],
            _ => &generated,
        };
        let mut text = self.decode(content)?;
        if let Some(c) = cut {
            text.truncate(c);
            // Keep the logprobs of the tokens that contribute to the text before the stop string.
            let mut keep = 0;
            for i in 0..logprobs.len() {
                if self.decode(&content[..i])?.len() < c {
                    keep = i + 1;
                }
            }
            logprobs.truncate(keep);
        }
        Ok(Generation {
            text,
            tokens: generated,
            logprobs,
            finish_reason: finish.to_string(),
            prompt_tokens: prompt.len(),
        })
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.loaded
            .tokenizer
            .decode(ids, true)
            .map_err(|e| self.rejected(500, e))
    }

    /// A model failure as a rejection: 400 for input it refuses, 500 for anything else.
    fn model_error(&self, e: adag_model::Error) -> LlmError {
        match e {
            adag_model::Error::Input(m) => self.rejected(400, m),
            other => self.rejected(500, other),
        }
    }

    fn check_context(&self, len: usize) -> Result<()> {
        match self.max_positions {
            Some(m) if len > m => Err(self.rejected(
                400,
                format!("the prompt has {len} tokens; the model's context is {m} (max_position_embeddings)"),
            )),
            _ => Ok(()),
        }
    }

    fn endpoint(&self) -> String {
        format!("local model {}", self.loaded.dir.display())
    }

    fn rejected(&self, status: u16, message: impl std::fmt::Display) -> LlmError {
        LlmError::Rejected {
            endpoint: self.endpoint(),
            status,
            message: message.to_string(),
        }
    }
}

/// The bundled demo model's directory.
pub fn default_model_dir() -> Result<PathBuf> {
    adag_model::bundle::default_model_dir().map_err(|e| LlmError::Config(e.to_string()))
}

/// `max_position_embeddings` of config.json, if present.
fn read_max_positions(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| LlmError::Config(format!("cannot read {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LlmError::Config(format!("{} is not JSON: {e}", path.display())))?;
    Ok(v.get("max_position_embeddings")
        .and_then(serde_json::Value::as_u64)
        .map(|m| m as usize))
}

/// Hash of config.json plus the names, sizes and mtimes of the weight files.
fn fingerprint(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let cfg = std::fs::read(dir.join("config.json"))
        .map_err(|e| LlmError::Config(format!("cannot read {}/config.json: {e}", dir.display())))?;
    h.update(&cfg);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| LlmError::Config(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        .collect();
    files.sort_by_key(|e| e.file_name());
    for f in files {
        if let Ok(m) = f.metadata() {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            h.update(format!(
                "{}:{}:{mtime};",
                f.file_name().to_string_lossy(),
                m.len()
            ));
        }
    }
    Ok(hex(&h.finalize())[..12].to_string())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Numerically stable log-softmax (sums in f64).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}

/// Index of the largest value; the lowest index among ties.
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` most likely ids, most likely first (ties: lower id first).
pub fn top_k(logprobs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let order = |a: &u32, b: &u32| {
        logprobs[*b as usize]
            .total_cmp(&logprobs[*a as usize])
            .then(a.cmp(b))
    };
    let mut idx: Vec<u32> = (0..logprobs.len() as u32).collect();
    // Partition first: a 128k vocabulary is not sorted for 20 alternatives per token.
    if k < idx.len() {
        if k == 0 {
            return Vec::new();
        }
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_by(order);
    idx.into_iter().map(|i| (i, logprobs[i as usize])).collect()
}

/// Draws from `softmax(logprobs / T)` (the log-softmax shift does not change it).
fn sample(logprobs: &[f32], temperature: f32, rng: &mut ChaCha8Rng) -> u32 {
    let t = temperature as f64;
    let max = logprobs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logprobs
        .iter()
        .map(|&l| ((l as f64 - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if r < *w {
            return i as u32;
        }
        r -= w;
    }
    argmax(logprobs)
}

/// The in-process backend: a [`LocalModel`] behind [`LlmBackend`].
///
/// Sampling at T > 0 is seeded from the request's `seed` (0 when absent) mixed with its
/// `sample_index`, so the k-th sample of a request is reproducible and differs from the others.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    model: Arc<LocalModel>,
    timeout: Option<Duration>,
}

impl LocalBackend {
    /// Wraps a loaded model (shareable with a server or a simulator).
    pub fn new(model: Arc<LocalModel>) -> LocalBackend {
        LocalBackend {
            model,
            timeout: None,
        }
    }

    /// Gives up on a generation still running after `timeout` (checked between tokens).
    pub fn with_timeout(mut self, timeout: Duration) -> LocalBackend {
        self.timeout = Some(timeout);
        self
    }

    /// The model.
    pub fn model(&self) -> &Arc<LocalModel> {
        &self.model
    }
}

impl LlmBackend for LocalBackend {
    fn describe(&self) -> String {
        format!(
            "local {} (model {}, weights {})",
            self.model.dir().display(),
            self.model.name(),
            self.model.fingerprint()
        )
    }

    fn supports_logprobs(&self) -> bool {
        true
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatReply> {
        let started = Instant::now();
        let prompt = self.model.prompt_ids(&request.messages)?;
        let seed = request
            .seed
            .unwrap_or(0)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(request.sample_index as u64);
        let params = GenerateParams {
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            seed: Some(seed),
            stop: request.stop.clone(),
            top_logprobs: request.top_logprobs,
            deadline: self.timeout.map(|t| started + t),
        };
        let g = self.model.generate(&prompt, &params).map_err(|e| match e {
            LlmError::Timeout { endpoint, .. } => LlmError::Timeout {
                endpoint,
                seconds: self.timeout.map(|t| t.as_secs_f64()).unwrap_or(0.0),
            },
            other => other,
        })?;
        Ok(ChatReply {
            text: g.text,
            logprobs: g.logprobs,
            finish_reason: Some(g.finish_reason),
            usage: Usage {
                input_tokens: g.prompt_tokens as u64,
                output_tokens: g.tokens.len() as u64,
            },
            cached: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&[1.0, 2.0, 3.0, -1000.0]);
        let total: f64 = lp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(lp.iter().all(|&l| l <= 0.0 && l.is_finite()));
    }

    #[test]
    fn top_k_sorted_with_ties_by_id() {
        assert_eq!(
            top_k(&[-1.0, -0.5, -1.0, -3.0], 3),
            vec![(1, -0.5), (0, -1.0), (2, -1.0)]
        );
        assert_eq!(argmax(&[0.0, 2.0, 2.0]), 1);
        assert!(top_k(&[-1.0, -2.0], 0).is_empty());
        assert_eq!(top_k(&[-1.0, -2.0], 5), vec![(0, -1.0), (1, -2.0)]);
        // Partial selection agrees with a full sort on a larger random-looking vector.
        let v: Vec<f32> = (0..1000)
            .map(|i| -(((i * 7919) % 1000) as f32) / 10.0)
            .collect();
        let mut full: Vec<u32> = (0..1000).collect();
        full.sort_by(|&a, &b| v[b as usize].total_cmp(&v[a as usize]).then(a.cmp(&b)));
        let got: Vec<u32> = top_k(&v, 20).into_iter().map(|(i, _)| i).collect();
        assert_eq!(got, full[..20]);
    }

    #[test]
    fn sampling_follows_temperature_and_seed() {
        let lp = log_softmax(&[0.0, 1.0, 2.0]);
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..2000)
                .map(|_| sample(&lp, 1.0, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(5);
        assert_eq!(a, draw(5));
        let frac2 = a.iter().filter(|&&i| i == 2).count() as f64 / a.len() as f64;
        // p(2) = e^2 / (1 + e + e^2) ≈ 0.665
        assert!((frac2 - 0.665).abs() < 0.04, "{frac2}");
        // Very low temperature is nearly greedy.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert!((0..200).all(|_| sample(&lp, 0.01, &mut rng) == 2));
    }
}
