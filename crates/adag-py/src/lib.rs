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
    m.add_function(wrap_pyfunction!(resolve_model, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_transcoders, m)?)?;
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

/// A model argument as every adag entry point reads it: a local directory as is, a hub id
/// (`org/name[@rev]`, `hf://…`) fetched into the HF cache ([`adag_hub::resolve_model`]).
#[pyfunction]
fn resolve_model(py: Python<'_>, arg: &str) -> PyResult<PathBuf> {
    py.detach(|| adag_hub::resolve_model(arg).map_err(errors::to_py))
}

/// A transcoder argument (directory, config.yaml, preset name or hub reference) resolved to a
/// local path, with the model its config names (`None`: the config names no usable model).
#[pyfunction]
fn resolve_transcoders(py: Python<'_>, arg: &str) -> PyResult<(PathBuf, Option<PathBuf>)> {
    py.detach(|| {
        let tc = adag_hub::resolve_transcoders(arg).map_err(errors::to_py)?;
        let cfg = if tc.is_dir() {
            tc.join("config.yaml")
        } else {
            tc.clone()
        };
        let named = adag_engine::TranscoderSet::config_model_name(&cfg).map_err(errors::to_py)?;
        let base = cfg.parent().map(PathBuf::from).unwrap_or_default();
        let model =
            adag_hub::resolve_named_model(named.as_deref(), &base).map_err(errors::to_py)?;
        Ok((tc, model))
    })
}

/// Little-endian bytes of f32 values, for `numpy.frombuffer(..., "<f4")`.
fn f32_bytes<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyBytes> {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    PyBytes::new(py, &b)
}
