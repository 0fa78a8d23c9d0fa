//! Errors of the training crate: every variant says which file, tensor or setting was involved.

use std::path::PathBuf;

/// What went wrong while generating, training or writing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed; `context` says which step.
    #[error("{context}: {source}")]
    Candle {
        /// The step that failed.
        context: String,
        /// The underlying error.
        #[source]
        source: candle_core::Error,
    },
    /// The model crate refused something (loading, forward pass, tokenizer).
    #[error("{context}: {source}")]
    Model {
        /// The step that failed.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<adag_model::Error>,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its contents do not fit.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why it does not fit.
        reason: String,
    },
    /// Tokenizer training or serialisation failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a step description to candle and adag-model errors.
pub trait Context<T> {
    /// Wraps the error with `what`.
    fn context(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for candle_core::Result<T> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::Candle {
            context: what.to_string(),
            source,
        })
    }
}

impl<T> Context<T> for adag_model::Result<T> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::Model {
            context: what.to_string(),
            source: Box::new(source),
        })
    }
}

/// Wraps an I/O error with its path.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
