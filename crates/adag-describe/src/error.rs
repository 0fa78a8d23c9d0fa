//! Errors of the description pipeline: every variant says which file, cluster or reply was at
//! fault and what was expected.

use std::path::PathBuf;

/// What went wrong while describing or labelling clusters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request that cannot be satisfied (unknown cluster, empty circuit, bad option).
    #[error("{0}")]
    Input(String),
    /// A file did not have the expected content.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong and what was expected.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The circuit directory could not be read or written.
    #[error(transparent)]
    Circuit(Box<adag_circuit::Error>),
    /// The cluster-state file could not be read or written.
    #[error(transparent)]
    Analysis(Box<adag_analysis::Error>),
    /// The simulator model failed.
    #[error("{context}: {source}")]
    Model {
        /// What was being done.
        context: String,
        /// The model error.
        source: Box<adag_model::Error>,
    },
    /// An LLM call failed after the backend's retries.
    #[error("{context}: {source}")]
    Llm {
        /// Which call (cluster, side, sample).
        context: String,
        /// The backend error.
        source: adag_llm::LlmError,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<adag_circuit::Error> for Error {
    fn from(e: adag_circuit::Error) -> Self {
        Error::Circuit(Box::new(e))
    }
}

impl From<adag_analysis::Error> for Error {
    fn from(e: adag_analysis::Error) -> Self {
        Error::Analysis(Box::new(e))
    }
}

/// Wraps a model error with what was being done.
pub(crate) fn model_err<E: Into<adag_model::Error>>(
    context: impl Into<String>,
) -> impl FnOnce(E) -> Error {
    let context = context.into();
    move |source| Error::Model {
        context,
        source: Box::new(source.into()),
    }
}

/// Wraps a candle error (tensor slicing in the simulator) as a model error.
pub(crate) fn candle_err(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
    let context = context.into();
    move |source| Error::Model {
        context: context.clone(),
        source: Box::new(adag_model::Error::Candle { context, source }),
    }
}
