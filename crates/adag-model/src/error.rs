//! Errors of model loading and the forward pass.
//!
//! Every variant names what the user has to look at: the file, the tensor, the config field, the
//! expected and the actual value. Candle's own errors are wrapped with that context rather than
//! passed through bare, because "shape mismatch" alone does not tell a researcher which of 300
//! tensors in which of 4 shards is wrong.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl From<adag_text::Error> for Error {
    /// Tokenizer and chat-template errors keep their variants and messages.
    fn from(e: adag_text::Error) -> Self {
        match e {
            adag_text::Error::MissingFile { path, what } => Error::MissingFile { path, what },
            adag_text::Error::BadFile { path, reason } => Error::BadFile { path, reason },
            adag_text::Error::Tokenizer(m) => Error::Tokenizer(m),
            adag_text::Error::ChatTemplate(m) => Error::ChatTemplate(m),
            adag_text::Error::Input(m) => Error::Input(m),
        }
    }
}

/// Everything that can go wrong while loading a model directory or running it.
///
/// Field names are self-describing (`path`, `field`, `expected`, ...); each variant's message
/// shows how they combine.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- files ----
    /// A file the model directory must contain is not there.
    #[error("missing file {path}: {what}")]
    MissingFile { path: PathBuf, what: String },
    /// A file exists but could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },

    // ---- config.json ----
    /// A config field is absent, has the wrong type, or an unsupported value.
    #[error("{path}: field `{field}`: {reason}")]
    BadConfig {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// The architecture in config.json is not one adag implements.
    #[error("{path}: unsupported architecture `{arch}`; supported: {supported}")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },

    // ---- weights ----
    /// A tensor the architecture needs is absent from every shard.
    #[error("tensor `{name}` not found in {files}")]
    MissingTensor { name: String, files: String },
    /// A tensor exists with a shape the config does not predict.
    #[error("tensor `{name}` in {file}: expected shape {expected:?} (from config.json), found {actual:?}")]
    TensorShape {
        name: String,
        file: PathBuf,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// The checkpoint holds tensors the config never asked for.
    #[error("{count} tensors in {files} are not used by the model config.json describes ({names}): does num_hidden_layers (or another size) match the checkpoint?")]
    UnusedTensors {
        files: String,
        count: usize,
        names: String,
    },

    // ---- tokenizer and input ----
    /// Tokenizer loading, encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Rendering the chat template failed.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// The caller passed input the model cannot run on (empty prompt, token id out of range, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// A prompt longer than the model's context (`max_position_embeddings`).
    #[error("{what} has {len} tokens, more than the model's context of {limit} tokens (max_position_embeddings in config.json)")]
    PromptTooLong {
        what: String,
        len: usize,
        limit: usize,
    },
    /// The forward pass produced NaN or Inf (non-finite weights, an overflowing dtype).
    #[error("non-finite values in the forward pass of batch item {item}: first at {at} (check the checkpoint's weights and config.json)")]
    NonFinite { item: usize, at: String },

    // ---- tensors ----
    /// A tensor operation failed; `context` says which step.
    #[error("{context}: {source}")]
    Candle {
        context: String,
        #[source]
        source: candle_core::Error,
    },
}

/// Attaches a description of the failing step to candle errors.
pub trait Context<T> {
    /// Wraps the error with `what`, evaluated lazily.
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T>;
    /// Wraps the error with a fixed description.
    fn context(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, candle_core::Error> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Candle {
            context: what(),
            source,
        })
    }
    fn context(self, what: &str) -> Result<T> {
        self.context_with(|| what.to_string())
    }
}
