//! The crate's error type: every variant names the file, graph or address it concerns.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while loading graphs, saving UI state or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- configuration ----
    /// The graph directory does not exist or is not a directory.
    #[error("graph directory {path} is not a readable directory")]
    NotADirectory {
        /// The directory that was given.
        path: PathBuf,
    },
    /// The server could not listen on the requested address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The async runtime or server thread failed.
    #[error("server runtime: {0}")]
    Runtime(String),

    // ---- graphs ----
    /// A graph name that is not a plain file stem (`[A-Za-z0-9][A-Za-z0-9._-]*`).
    #[error("invalid graph name {0:?}: use letters, digits, '.', '_' and '-' only")]
    BadSlug(String),
    /// No `{slug}.json` in the graph directory.
    #[error("no graph {slug:?} in {dir}")]
    UnknownGraph {
        /// The requested name.
        slug: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// "cannot read", "cannot write", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not valid JSON in the circuit-tracer frontend schema.
    #[error("{path} is not a graph in the circuit-tracer frontend schema: {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong, including serde's line and column.
        reason: String,
    },

    // ---- UI state ----
    /// A posted UI state (`qParams`) that is not well formed.
    #[error("invalid UI state: {0}")]
    BadState(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action: "cannot read",
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            action: "cannot write",
            path: path.into(),
            source,
        }
    }
}
