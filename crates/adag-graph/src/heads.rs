//! Head loadings: each kept edge split by the attention head that carried it.
//!
//! An edge from a source at position `p` to a target at position `q` is a sum over paths
//! through the frozen model. adag-engine's `attention::head_loadings` assigns every path to the
//! first attention head it crosses above the source (the head that reads from the source's
//! position), or to the residual/direct part when it crosses none, so the parts of an edge sum
//! to the edge exactly. Only the edges kept after pruning get loadings: the store is sparse in
//! edges and dense in heads (`n_layers · n_heads + 1` numbers per edge).
//!
//! # Format
//! Two optional tensors in the graph file (files without them load unchanged):
//!
//! | name | dtype | shape |
//! |---|---|---|
//! | `head_loading_edges` | I64 | `[n_edges, 2]`: target node, source node (graph node order) |
//! | `head_loadings` | F32 | `[n_edges, n_layers · n_heads + 1]`: column `l · n_heads + h` is head `h` of layer `l`; the last column is residual/direct |
//!
//! In the frontend JSON each such link carries
//! `"head_loadings": {"heads": [[layer, head, part], …], "direct": part}` (heads sorted by
//! `|part|`, zero parts left out), which the viewer's edge panel shows as shares of the edge.

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Per-head parts of the kept edges of a graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeadLoadings {
    /// Layers of the model.
    pub n_layers: usize,
    /// Query heads per layer.
    pub n_heads: usize,
    /// `(target, source)` node indices of each edge with loadings.
    pub edges: Vec<[u32; 2]>,
    /// `[n_edges, n_layers · n_heads + 1]` row-major parts (see the module doc).
    pub parts: Vec<f32>,
}

impl HeadLoadings {
    /// Numbers per edge: one per head, plus residual/direct.
    pub fn width(&self) -> usize {
        self.n_layers * self.n_heads + 1
    }

    /// The parts of edge `e`.
    pub fn row(&self, e: usize) -> &[f32] {
        let w = self.width();
        &self.parts[e * w..(e + 1) * w]
    }

    /// The part carried by head `head` of layer `layer` in edge `e`.
    pub fn head(&self, e: usize, layer: usize, head: usize) -> f32 {
        self.row(e)[layer * self.n_heads + head]
    }

    /// The residual/direct part of edge `e` (paths crossing no attention head).
    pub fn direct(&self, e: usize) -> f32 {
        self.row(e)[self.width() - 1]
    }

    /// Checks sizes against a graph of `n_nodes` nodes and `n_layers` layers.
    pub fn validate(&self, n_nodes: usize, n_layers: usize) -> Result<()> {
        if self.n_layers != n_layers {
            return Err(Error::Inconsistent(format!(
                "head loadings cover {} layers, the graph has {n_layers}",
                self.n_layers
            )));
        }
        if self.parts.len() != self.edges.len() * self.width() {
            return Err(Error::Inconsistent(format!(
                "head_loadings holds {} numbers, expected {} edges × {}",
                self.parts.len(),
                self.edges.len(),
                self.width()
            )));
        }
        if let Some([t, s]) = self
            .edges
            .iter()
            .find(|[t, s]| *t as usize >= n_nodes || *s as usize >= n_nodes)
        {
            return Err(Error::Inconsistent(format!(
                "head_loading_edges names edge {s} → {t}, outside the graph's {n_nodes} nodes"
            )));
        }
        if let Some(i) = self.parts.iter().position(|x| !x.is_finite()) {
            return Err(Error::Inconsistent(format!(
                "head_loadings[{}, {}] is {}",
                i / self.width(),
                i % self.width(),
                self.parts[i]
            )));
        }
        Ok(())
    }

    /// The frontend JSON of edge `e`: heads with non-zero parts, largest `|part|` first, and
    /// the direct part.
    pub fn link_json(&self, e: usize) -> Value {
        let row = self.row(e);
        let mut heads: Vec<(usize, usize, f32)> = (0..self.n_layers)
            .flat_map(|l| (0..self.n_heads).map(move |h| (l, h)))
            .map(|(l, h)| (l, h, row[l * self.n_heads + h]))
            .filter(|&(_, _, v)| v != 0.0)
            .collect();
        heads.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
        json!({
            "heads": heads.iter().map(|&(l, h, v)| json!([l, h, v])).collect::<Vec<_>>(),
            "direct": self.direct(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_json_orders_heads_by_size_and_names_direct() {
        let hl = HeadLoadings {
            n_layers: 2,
            n_heads: 2,
            edges: vec![[3, 1]],
            parts: vec![0.125, 0.0, -0.5, 0.375, 0.25],
        };
        hl.validate(4, 2).unwrap();
        let j = hl.link_json(0);
        assert_eq!(
            j["heads"],
            json!([[1, 0, -0.5], [1, 1, 0.375], [0, 0, 0.125]])
        );
        assert_eq!(j["direct"], json!(0.25));
        assert_eq!(hl.head(0, 1, 0), -0.5);
    }

    #[test]
    fn validate_names_the_problem() {
        let mut hl = HeadLoadings {
            n_layers: 1,
            n_heads: 2,
            edges: vec![[5, 1]],
            parts: vec![0.0; 3],
        };
        let e = hl.validate(4, 1).unwrap_err().to_string();
        assert!(e.contains("edge 1 → 5, outside the graph's 4 nodes"), "{e}");
        hl.edges = vec![[3, 1]];
        hl.parts[2] = f32::NAN;
        let e = hl.validate(4, 1).unwrap_err().to_string();
        assert!(e.contains("head_loadings[0, 2] is NaN"), "{e}");
        let e = hl.validate(4, 2).unwrap_err().to_string();
        assert!(e.contains("cover 1 layers, the graph has 2"), "{e}");
    }
}
