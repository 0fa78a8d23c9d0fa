//! Errors of graph files and graph algorithms.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong reading, writing or analysing a graph.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// I/O on a graph file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A graph file that does not have the expected content.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// A graph whose parts disagree with each other.
    #[error("inconsistent graph: {0}")]
    Inconsistent(String),
    /// The influence series did not terminate (the graph has a cycle).
    #[error(
        "influence did not converge after {0} iterations: the adjacency matrix is not acyclic"
    )]
    NoConvergence(usize),
}
