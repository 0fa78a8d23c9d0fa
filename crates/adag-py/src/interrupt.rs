//! Ctrl-C and progress while the GIL is released.
//!
//! Compute runs inside `py.detach` so other Python threads keep running. Between batches the
//! engine calls back; we briefly re-attach, let Python run its signal handlers (a pending
//! SIGINT raises `KeyboardInterrupt` there) and call the caller's progress function. An
//! exception is kept and returned in place of the engine's `Cancelled` error.

use std::sync::Mutex;

use pyo3::prelude::*;

/// The state shared by the callbacks of one call.
pub struct Interrupt {
    progress: Option<Py<PyAny>>,
    raised: Mutex<Option<PyErr>>,
}

impl Interrupt {
    /// `progress`, if given, is called as `progress(done, total)`.
    pub fn new(progress: Option<Py<PyAny>>) -> Self {
        Interrupt {
            progress,
            raised: Mutex::new(None),
        }
    }

    /// Checks signals and reports progress; `false` means stop.
    pub fn poll(&self, done: usize, total: usize) -> bool {
        let r = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(p) = &self.progress {
                p.call1(py, (done, total))?;
            }
            Ok(())
        });
        match r {
            Ok(()) => true,
            Err(e) => {
                if let Ok(mut r) = self.raised.lock() {
                    *r = Some(e);
                }
                false
            }
        }
    }

    /// The Python exception that stopped the call, if any; else `fallback`.
    pub fn error_or(&self, fallback: PyErr) -> PyErr {
        self.raised
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or(fallback)
    }
}
