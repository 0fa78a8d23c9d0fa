//! Python bindings of adag: the native module `adag._adag` behind the `adag` package.
//!
//! The Python layer (`python/adag/__init__.py`) owns the user-facing classes; this module does
//! the compute and hands results back as plain values: graphs as the bytes of adag's graph file
//! (safetensors, parsed with numpy on the Python side, so the numpy arrays *are* the file's
//! tensors), circuits as the Parquet directory `adag trace` writes. Every call releases the GIL
//! while it computes and polls for Ctrl-C between batches (see [`interrupt`]).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod errors;
mod graph;
mod interrupt;
mod model;
mod serve;
mod trace;

/// The native module.
#[pymodule]
fn _adag(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::Model>()?;
    m.add_class::<serve::Server>()?;
    m.add_function(wrap_pyfunction!(model::attribute, m)?)?;
    m.add_function(wrap_pyfunction!(graph::graph_validate, m)?)?;
    m.add_function(wrap_pyfunction!(graph::graph_prune, m)?)?;
    m.add_function(wrap_pyfunction!(graph::graph_scores, m)?)?;
    m.add_function(wrap_pyfunction!(graph::graph_to_frontend, m)?)?;
    m.add_function(wrap_pyfunction!(trace::trace, m)?)?;
    m.add_function(wrap_pyfunction!(trace::cluster, m)?)?;
    m.add_function(wrap_pyfunction!(trace::steer, m)?)?;
    m.add_function(wrap_pyfunction!(default_paths, m)?)?;
    Ok(())
}

/// The demo bundle's model and transcoder directories as adag finds them
/// (`$ADAG_DEMO_MODEL`, the repository), or a `FileNotFoundError` listing where it looked.
#[pyfunction]
fn default_paths() -> PyResult<(PathBuf, PathBuf)> {
    let model = adag_train::bundle::default_model_dir().map_err(errors::to_py)?;
    let tc = adag_train::bundle::default_transcoders_dir().map_err(errors::to_py)?;
    Ok((model, tc))
}

/// Little-endian bytes of f32 values, for `numpy.frombuffer(..., "<f4")`.
fn f32_bytes<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyBytes> {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    PyBytes::new(py, &b)
}
