//! Errors of the feature-dashboard builder.

use std::path::PathBuf;

/// What can go wrong while collecting or writing dashboards.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A corpus or state file that does not parse.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was expected.
        reason: String,
    },
    /// Activations whose shape does not match the collector.
    #[error("activations: {0}")]
    Shape(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
