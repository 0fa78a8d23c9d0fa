//! adag-testkit: random models ([`model`]) and random transcoder sets in circuit-tracer's file
//! formats ([`transcoders`]), at sizes no committed fixture should have. The engine's tests and
//! `adag bench` build on it; the crates that trace real models do not depend on it.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod model;
pub mod transcoders;

/// Errors of writing a random transcoder set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be written.
    #[error("{path}: {reason}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        reason: String,
    },
    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle {
        /// What was being built.
        context: String,
        /// Candle's error.
        source: candle_core::Error,
    },
}
