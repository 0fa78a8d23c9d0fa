//! adag's errors as Python exceptions, with adag's messages.
//!
//! A missing file anywhere in the error chain is a `FileNotFoundError`; a Ctrl-C seen between
//! batches is re-raised as the `KeyboardInterrupt` Python gave us; everything else about bad
//! input is a `ValueError`. The message is the error and its sources, as the CLI prints them.

use std::error::Error as StdError;

use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::PyErr;

/// The message of `e` followed by those of its sources that it does not already include.
pub fn message(e: &(dyn StdError + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

fn is_not_found(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(s) = cur {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
        {
            return true;
        }
        // adag's own "missing file" errors, also behind the engine's transparent wrapper
        // (which forwards `source()` past the wrapped error).
        let model = s.downcast_ref::<adag_model::Error>().or_else(|| {
            match s.downcast_ref::<adag_engine::Error>() {
                Some(adag_engine::Error::Model(m)) => Some(m),
                _ => None,
            }
        });
        if matches!(model, Some(adag_model::Error::MissingFile { .. })) {
            return true;
        }
        cur = s.source();
    }
    false
}

/// Converts any adag error into the fitting Python exception.
pub fn to_py<E: StdError + 'static>(e: E) -> PyErr {
    let msg = message(&e);
    if is_not_found(&e) {
        PyFileNotFoundError::new_err(msg)
    } else {
        PyValueError::new_err(msg)
    }
}

/// A `ValueError` with this message (argument checks done here).
pub fn invalid(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
