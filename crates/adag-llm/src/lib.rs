//! One interface to every language model adag talks to when it writes descriptions.
//!
//! Descriptions need two things from an LLM: chat completions (the explainer and the labeller)
//! and, for simulation, the probabilities of the score tokens at chosen places
//! (`logprobs`/`top_logprobs`). [`LlmBackend`] is that interface; HTTP backends
//! (OpenAI-compatible, Anthropic) and the in-process adag model implement it, and [`Llm`]-style
//! wrappers add caching, retries, a concurrency limit and usage accounting on top, so the
//! description pipeline never knows which backend it runs on.
//!
//! The trait is synchronous on purpose: callers get concurrency from a thread pool of bounded
//! size (the concurrency limit), and an in-process model is CPU/GPU-bound anyway.
//!
//! # Brief overview
//!
//! - [`Llm`] ([`client`]): what every caller uses. On-disk cache ([`cache`]), retries with
//!   backoff, a concurrency limit ([`Llm::chat_many`]) and a [`UsageReport`].
//! - [`BackendConfig`] ([`config`]): which backend, from a serde config or a compact CLI string
//!   (`openai:http://127.0.0.1:8000/v1`, `anthropic`, `local[:DIR]`).
//! - [`openai::OpenAiBackend`], [`anthropic::AnthropicBackend`]: the HTTP protocols.
//! - [`local::LocalModel`] and [`local::LocalBackend`]: an adag-loaded model, with the
//!   next-token distributions simulation needs ([`local::LocalModel::next_token_logprobs`]).
//! - [`server`]: `adag serve-llm`, the local model as an OpenAI-compatible endpoint.
//!
//! ```no_run
//! use adag_llm::{BackendConfig, ChatRequest, Llm, LlmOptions, Message};
//! # fn main() -> adag_llm::Result<()> {
//! let config: BackendConfig = "openai:http://127.0.0.1:8042/v1".parse()?;
//! let llm = Llm::from_config(&config, LlmOptions::default().cache_dir("llm-cache"))?;
//! let reply = llm.chat(&ChatRequest::new(vec![Message::user("Say hi.")]))?;
//! println!("{}\n{}", reply.text, llm.report());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod anthropic;
pub mod cache;
pub mod client;
pub mod config;
mod http;
pub mod local;
pub mod openai;
mod secret;
pub mod server;
mod wire;

pub use client::{Llm, LlmOptions, Prices, UsageReport};
pub use config::BackendConfig;

use serde::{Deserialize, Serialize};

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (sent as Anthropic's top-level `system`).
    System,
    /// The user turn.
    User,
    /// A model turn (few-shot examples, or a prefilled start of the reply).
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A chat-completion request, independent of the wire protocol.
///
/// Everything that changes the reply is in here (and nothing secret), so its JSON is the key of
/// the on-disk cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name as the endpoint knows it; `None` = the backend's configured default.
    pub model: Option<String>,
    /// The conversation (system messages first).
    pub messages: Vec<Message>,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Ask for the `n` most likely alternatives at every generated token (OpenAI
    /// `top_logprobs`); `None` = no log-probabilities.
    pub top_logprobs: Option<u8>,
    /// Sampling seed, where the backend honours one.
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Distinguishes otherwise identical sampled requests (the k-th of several samples at
    /// T > 0), so the cache keeps them apart; not sent to the endpoint.
    pub sample_index: u32,
}

impl ChatRequest {
    /// A request with the given messages and defaults: T = 0, 256 tokens, no logprobs.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest {
            model: None,
            messages,
            temperature: 0.0,
            max_tokens: 256,
            top_logprobs: None,
            seed: None,
            stop: Vec::new(),
            sample_index: 0,
        }
    }
}

/// A generated token with its log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token as text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The `top_logprobs` alternatives (token, logprob), most likely first.
    pub top: Vec<(String, f32)>,
}

/// Tokens consumed by one or more calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
    }
}

/// A chat-completion reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The generated text.
    pub text: String,
    /// Per generated token, when `top_logprobs` was asked for and the backend supports it;
    /// empty otherwise.
    pub logprobs: Vec<TokenLogprob>,
    /// Why generation stopped (`"stop"`, `"length"`, `"refusal"`, ...), as reported.
    pub finish_reason: Option<String>,
    /// Tokens used.
    pub usage: Usage,
    /// Served from the on-disk cache (no tokens paid).
    #[serde(default)]
    pub cached: bool,
}

impl ChatReply {
    /// Whether the model declined to answer: `finish_reason` is `"refusal"` (OpenAI's
    /// `message.refusal`, Anthropic's `stop_reason: "refusal"`). `text` then holds the refusal
    /// message where the endpoint sent one.
    pub fn is_refusal(&self) -> bool {
        self.finish_reason.as_deref() == Some("refusal")
    }
}

/// Why a call failed. [`LlmError::is_retryable`] tells the retry loop what to try again.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// HTTP 429 (or Anthropic `overloaded`): wait and retry.
    #[error("rate limited by {endpoint}{}", retry_after_s.map(|s| format!(" (retry after {s:.1}s)")).unwrap_or_default())]
    RateLimited {
        /// Where.
        endpoint: String,
        /// The server's `retry-after`, seconds.
        retry_after_s: Option<f64>,
    },
    /// A 5xx or a dropped connection: retry.
    #[error("{endpoint} failed: {message}")]
    Transient {
        /// Where.
        endpoint: String,
        /// What happened.
        message: String,
    },
    /// No reply within the timeout: retry.
    #[error("{endpoint} did not answer within {seconds:.0}s")]
    Timeout {
        /// Where.
        endpoint: String,
        /// The timeout.
        seconds: f64,
    },
    /// A 4xx other than 429 (bad request, authentication, unknown model): do not retry.
    #[error("{endpoint} rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// Where.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The reply was not what the protocol promises.
    #[error("malformed reply from {endpoint}: {message}")]
    Malformed {
        /// Where.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
    /// Bad configuration (missing API key variable, unknown backend, unreadable model).
    #[error("{0}")]
    Config(String),
    /// Cache file trouble.
    #[error("cache {path}: {message}")]
    Cache {
        /// The cache file or folder.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl LlmError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. } | LlmError::Transient { .. } | LlmError::Timeout { .. }
        )
    }
}

/// Result alias.
pub type Result<T, E = LlmError> = std::result::Result<T, E>;

/// A language model that answers chat requests: an HTTP endpoint or a model loaded in-process.
pub trait LlmBackend: Send + Sync {
    /// A short description for logs and reports, e.g. `openai-compatible http://127.0.0.1:8000/v1
    /// (model demo)`. Never contains a key.
    fn describe(&self) -> String;

    /// Whether replies carry `logprobs` when asked (OpenAI-compatible and in-process: yes;
    /// Anthropic: no).
    fn supports_logprobs(&self) -> bool;

    /// One call, no retries or caching (the wrapper adds those).
    fn chat(&self, request: &ChatRequest) -> Result<ChatReply>;
}
