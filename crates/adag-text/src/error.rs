//! Errors of tokenizers and chat templates: each names the file or the template and what is
//! wrong with it.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong loading a tokenizer or rendering a chat.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model directory must contain is not there.
    #[error("missing file {path}: {what}")]
    MissingFile { path: PathBuf, what: String },
    /// A file exists but could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// Input the caller gave is not usable.
    #[error("invalid input: {0}")]
    Input(String),
}
