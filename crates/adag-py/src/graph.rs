//! Graph operations on graph-file bytes: the Python `Graph` keeps the file's bytes and its numpy
//! views; pruning, scores and the frontend files are adag-graph's own functions.

use std::path::{Path, PathBuf};

use adag_graph::{frontend, graph_scores as scores, prune, Graph};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{invalid, to_py};

fn parse(data: &[u8], name: &str) -> PyResult<Graph> {
    Graph::from_bytes(data, Path::new(name)).map_err(to_py)
}

fn check_thresholds(node: f32, edge: f32) -> PyResult<()> {
    if !(0.0..=1.0).contains(&node) || !(0.0..=1.0).contains(&edge) {
        return Err(invalid(format!(
            "thresholds are shares of cumulative influence and must lie in [0, 1] \
             (got node_threshold={node}, edge_threshold={edge})"
        )));
    }
    Ok(())
}

/// Checks graph-file bytes; `name` names the file in the error.
#[pyfunction]
pub fn graph_validate(py: Python<'_>, data: &[u8], name: &str) -> PyResult<()> {
    py.detach(|| parse(data, name).map(|_| ()))
}

/// Node mask, edge mask (bytes of 0/1) and cumulative scores (f32 bytes) of pruning.
#[pyfunction]
pub fn graph_prune<'py>(
    py: Python<'py>,
    data: &[u8],
    node_threshold: f32,
    edge_threshold: f32,
) -> PyResult<(
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
)> {
    check_thresholds(node_threshold, edge_threshold)?;
    let r = py.detach(|| {
        let g = parse(data, "graph")?;
        prune(&g, node_threshold, edge_threshold).map_err(to_py)
    })?;
    let mask = |m: &[bool]| m.iter().map(|&b| b as u8).collect::<Vec<u8>>();
    Ok((
        PyBytes::new(py, &mask(&r.node_mask)),
        PyBytes::new(py, &mask(&r.edge_mask.to_dense())),
        crate::f32_bytes(py, &r.cumulative_scores),
    ))
}

/// (replacement, completeness) scores.
#[pyfunction]
pub fn graph_scores(py: Python<'_>, data: &[u8]) -> PyResult<(f32, f32)> {
    py.detach(|| {
        let g = parse(data, "graph")?;
        let s = scores(&g).map_err(to_py)?;
        Ok((s.replacement, s.completeness))
    })
}

/// Writes `{dir}/{slug}.json` and `graph-metadata.json` for the viewer, as `adag export`.
#[pyfunction]
pub fn graph_to_frontend(
    py: Python<'_>,
    data: &[u8],
    dir: PathBuf,
    slug: &str,
    node_threshold: f32,
    edge_threshold: f32,
) -> PyResult<PathBuf> {
    check_thresholds(node_threshold, edge_threshold)?;
    if slug.is_empty() || slug.contains(['/', '\\']) {
        return Err(invalid(format!(
            "slug {slug:?} must be a non-empty file name (no path separators)"
        )));
    }
    py.detach(|| {
        let g = parse(data, "graph")?;
        let pruned = prune(&g, node_threshold, edge_threshold).map_err(to_py)?;
        frontend::write_graph_files(&g, &pruned, slug, &dir, node_threshold).map_err(to_py)?;
        Ok(dir.join(format!("{slug}.json")))
    })
}
