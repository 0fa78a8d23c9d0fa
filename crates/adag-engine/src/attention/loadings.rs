//! Head loadings of a graph's kept edges (see [`adag_graph::heads`] for the stored form).
//!
//! Why a second pass rather than a flag on the driver: loadings are wanted only for the edges
//! kept after pruning, which are known only once every row exists, and the per-head backward
//! costs about `1 + n_layers · n_heads` times an ordinary row. So the default graph pays
//! nothing, and `adag attribute --head-loadings` reruns only the target rows that have kept
//! incoming edges, through [`vjp_by_head`](super::vjp_by_head).

use adag_graph::{Graph, HeadLoadings, NodeKind};
use adag_model::{Batch, Transformer};
use candle_core::Tensor;

use crate::basis::Basis;
use crate::error::{Context, Error, Result};
use crate::frozen::{FrozenModel, Seeds};
use crate::reading::RowCollector;

use super::heads::vjp_by_head;

/// A target row to rerun: its graph node, seed vector source, read layer and position.
enum Seed {
    Feature(usize),
    Logit(u32),
}

/// Splits each edge `(target, source)` of `edges` (graph node indices, e.g. the kept edges of a
/// pruned `graph`) into per-(layer, head) parts plus a residual/direct part that sum to the
/// edge. `graph` must have been made by [`attribute`](crate::attribute) from `tokens` in
/// `basis` on `model`. Edges into logits of custom targets (whose directions the graph does
/// not store) are left out; so are edges out of nothing (rows that are not targets).
pub fn head_loadings(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
    graph: &Graph,
    edges: &[(usize, usize)],
    batch_size: usize,
) -> Result<HeadLoadings> {
    let cfg = &model.cfg;
    let n_layers = cfg.n_layers;
    if batch_size == 0 {
        return Err(Error::Invalid("batch_size must be at least 1".into()));
    }
    if graph.input_tokens != tokens || graph.meta.n_layers != n_layers {
        return Err(Error::Invalid(
            "head loadings: the graph was not made from these tokens on this model".into(),
        ));
    }
    let (read, write) = basis.sites();
    let filter = FrozenModel::cache_filter().union(&basis.cache_filter());
    let out = model.forward(&Batch::single(tokens)?, &filter)?;
    let frozen = FrozenModel::new(model, &out.cache, 0)?;
    let nodes = basis.prompt(model, &out.cache, 0)?;
    let active = nodes.active();
    if active != graph.active_features.as_slice() {
        return Err(Error::Invalid(
            "head loadings: the graph's active features differ from this basis on this prompt"
                .into(),
        ));
    }
    let n_pos = tokens.len();
    let n_active = active.len();
    let n_cols = n_active + (n_layers + 1) * n_pos;
    let f = graph.n_features();
    // Graph node → collector column.
    let column = |s: usize| -> Option<usize> {
        match graph.node_kind(s) {
            NodeKind::Feature { active_index, .. } => Some(active_index as usize),
            NodeKind::Error { .. } | NodeKind::Token { .. } => Some(n_active + (s - f)),
            NodeKind::Logit { .. } => None,
        }
    };

    // Kept edges grouped by target row.
    let mut by_target: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (e, &(t, s)) in edges.iter().enumerate() {
        if t >= graph.n_nodes() || s >= graph.n_nodes() {
            return Err(Error::Invalid(format!(
                "head loadings: edge {s} → {t} is outside the graph's {} nodes",
                graph.n_nodes()
            )));
        }
        by_target.entry(t).or_default().push(e);
    }
    let mut rows: Vec<(usize, Seed)> = Vec::new();
    for &t in by_target.keys() {
        match graph.node_kind(t) {
            NodeKind::Feature { active_index, .. } => {
                rows.push((t, Seed::Feature(active_index as usize)))
            }
            NodeKind::Logit { index } => {
                let id = graph.logit_targets[index as usize].vocab_idx;
                if (id as usize) < cfg.d_vocab {
                    rows.push((t, Seed::Logit(id)));
                }
            }
            _ => {}
        }
    }
    // Similar (layer, position) together keeps each backward in a small causal cone.
    let key = |s: &Seed| match *s {
        Seed::Feature(a) => (active[a][0] as usize, active[a][1] as usize),
        Seed::Logit(_) => (n_layers, n_pos - 1),
    };
    rows.sort_by_key(|(t, s)| (key(s), *t));

    let mut result = HeadLoadings {
        n_layers,
        n_heads: cfg.n_heads,
        edges: Vec::new(),
        parts: Vec::new(),
    };
    let width = result.width();
    let dt = model.dtype();
    for chunk in rows.chunks(batch_size) {
        let mut vectors = Vec::with_capacity(chunk.len());
        for (_, s) in chunk {
            vectors.push(match *s {
                Seed::Feature(a) => nodes.seeds(&[a])?,
                Seed::Logit(id) => {
                    crate::targets::demeaned_directions(&model.weights.unembed, &[id])?
                        .to_dtype(dt)
                        .ctx("logit direction")?
                }
            });
        }
        let seeds = Seeds {
            vectors: Tensor::cat(&vectors, 0).ctx("seeds")?,
            layers: chunk.iter().map(|(_, s)| key(s).0).collect(),
            positions: chunk.iter().map(|(_, s)| key(s).1).collect(),
        };
        let c = 1 + n_layers * cfg.n_heads;
        let mut rows = vec![0.0f32; chunk.len() * c * n_cols];
        let mut collector = RowCollector::new(
            nodes.groups(),
            nodes.tokens(),
            n_active + n_layers * n_pos,
            n_cols,
            &mut rows,
        );
        vjp_by_head(
            &frozen,
            &seeds,
            read,
            write,
            nodes.mlp_path(),
            &mut collector,
        )?;
        for (i, (t, _)) in chunk.iter().enumerate() {
            for &e in &by_target[t] {
                let s = edges[e].1;
                let Some(col) = column(s) else { continue };
                // Stored order: heads (layer-major), then residual/direct = channel 0.
                let at = |ch: usize| rows[(i * c + ch) * n_cols + col];
                result.edges.push([*t as u32, s as u32]);
                result.parts.extend((1..c).map(at));
                result.parts.push(at(0));
            }
        }
    }
    debug_assert_eq!(result.parts.len(), result.edges.len() * width);
    Ok(result)
}
