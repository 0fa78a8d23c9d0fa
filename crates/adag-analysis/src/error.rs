//! Errors of the analysis crate: every variant says which file, unit or option was at fault.

use std::path::PathBuf;

/// What went wrong in an analysis step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- input ---
    /// A request that cannot be satisfied (bad `k`, empty circuit, unknown cluster…).
    #[error("{0}")]
    Input(String),
    /// A file could not be parsed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the line where known.
        message: String,
    },

    // --- I/O and formats ---
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file did not match its format.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
    /// Writing a Parquet table failed.
    #[error("writing {path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The arrow/parquet error.
        message: String,
    },
    /// The circuit directory could not be read or written.
    #[error(transparent)]
    Circuit(Box<adag_circuit::Error>),

    // --- numerics and model ---
    /// The eigensolver failed to converge.
    #[error("eigendecomposition failed: {0}")]
    Eigen(String),
    /// The model failed while steering.
    #[error("{context}: {source}")]
    Model {
        /// What was being done.
        context: String,
        /// The model error (boxed: it is large).
        source: Box<adag_model::Error>,
    },
    /// A tensor operation failed while steering.
    #[error("{context}: {source}")]
    Tensor {
        /// What was being done.
        context: String,
        /// The candle error (boxed: it is large).
        source: Box<candle_core::Error>,
    },
}

impl From<adag_circuit::Error> for Error {
    fn from(e: adag_circuit::Error) -> Self {
        Error::Circuit(Box::new(e))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches context to model and tensor errors.
pub(crate) trait Context<T> {
    /// Wraps the error with what was being done.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, adag_model::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Model {
            context: context(),
            source: Box::new(source),
        })
    }
}

impl<T> Context<T> for std::result::Result<T, candle_core::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Tensor {
            context: context(),
            source: Box::new(source),
        })
    }
}

/// Reads a file, naming it on failure.
pub(crate) fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
