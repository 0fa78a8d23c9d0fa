//! adag-testkit: random models ([`model`]) and random transcoder sets in circuit-tracer's file
//! formats ([`transcoders`]), at sizes no committed fixture should have. The engine's tests and
//! `adag bench` build on it; the crates that trace real models do not depend on it.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod model;
pub mod transcoders;

/// The largest absolute difference between two tensors of the same shape (which it asserts),
/// as `f32`: what parity tests compare against their tolerance.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .and_then(|x| x.abs())
        .and_then(|x| x.flatten_all())
        .and_then(|x| x.max(0))
        .and_then(|x| x.to_dtype(candle_core::DType::F32))
        .and_then(|x| x.to_scalar::<f32>())
        .expect("max |a − b|")
}

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
