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

/// The result of a scoped worker thread (`handle.join()`): a panic there is a bug, and it comes
/// back as an error that names `what` and carries the panic's message, so a caller (the CLI, the
/// Python package) reports it like any other failure instead of aborting.
pub(crate) fn joined<T>(r: std::thread::Result<Result<T>>, what: &str) -> Result<T> {
    r.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Invalid(format!("{what} panicked: {msg}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_panic_becomes_an_error_with_its_message() {
        let r = std::thread::scope(|s| {
            s.spawn(|| -> Result<u8> { panic!("rows {} of 3", 7) })
                .join()
        });
        let err = joined(r, "a backward-pass thread").unwrap_err().to_string();
        assert_eq!(err, "a backward-pass thread panicked: rows 7 of 3");
        let ok = std::thread::scope(|s| s.spawn(|| -> Result<u8> { Ok(5) }).join());
        assert_eq!(joined(ok, "x").unwrap(), 5);
    }
}
