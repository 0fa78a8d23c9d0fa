//! Errors of the engine and of transcoder files.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong in attribution.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or running the model.
    #[error(transparent)]
    Model(#[from] adag_model::Error),
    /// Graph construction or pruning.
    #[error(transparent)]
    Graph(#[from] adag_graph::Error),
    /// A transcoder file or config that is missing, malformed or does not fit the model.
    #[error("{path}: {reason}")]
    Transcoder { path: PathBuf, reason: String },
    /// Invalid settings or targets.
    #[error("{0}")]
    Invalid(String),
    /// The caller's progress callback asked to stop (e.g. Ctrl-C in Python).
    #[error("interrupted")]
    Cancelled,
    /// A tensor operation failed; `context` says which step.
    #[error("{context}: {source}")]
    Candle {
        context: String,
        #[source]
        source: candle_core::Error,
    },
}

/// Attaches a description of the failing step to candle errors.
pub(crate) trait Context<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, candle_core::Error> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::Candle {
            context: what.to_string(),
            source,
        })
    }
}
