//! Influence, pruning and graph scores, exactly as circuit-tracer's `graph.py` defines them.
//!
//! `normalize(A)[i,j] = |A[i,j]| / max(Σ_j |A[i,j]|, 1e-10)`; `influence(Â, w) = Σ_{k≥1} wᵀÂᵏ`,
//! summed until the running term is exactly zero (the graph is a DAG, so it is after at most
//! its depth). One deliberate difference: the edge threshold is searched among non-zero edge
//! scores, so a zero-weight edge is never "kept" (circuit-tracer can keep every zero entry when
//! rounding puts the threshold on a zero); documented in the README.

use serde::{Deserialize, Serialize};

use crate::edge_mask::EdgeMask;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::rows::NormRows;
use rayon::prelude::*;

pub(crate) const MAX_ITER: usize = 1000;

/// Row-normalised absolute adjacency (`n × n`, row-major).
pub fn normalize(a: &[f32], n: usize) -> Vec<f32> {
    if n == 0 {
        // `chunks_exact(0)` panics; an empty graph normalises to nothing.
        return Vec::new();
    }
    let mut m = Vec::with_capacity(a.len());
    for row in a.chunks_exact(n) {
        let s: f32 = row.iter().map(|x| x.abs()).sum::<f32>().max(1e-10);
        m.extend(row.iter().map(|x| x.abs() / s));
    }
    m
}

/// `Σ_{k≥1} wᵀ Mᵏ`: how much each node influences the weighted nodes through any path.
pub fn influence(m: &[f32], n: usize, w: &[f32]) -> Result<Vec<f32>> {
    let mut cur = w.to_vec();
    let mut total = vec![0.0f32; n];
    for _ in 0..MAX_ITER {
        let mut next = vec![0.0f32; n];
        for (i, &c) in cur.iter().enumerate() {
            if c != 0.0 {
                for (x, &mij) in next.iter_mut().zip(&m[i * n..(i + 1) * n]) {
                    *x += c * mij;
                }
            }
        }
        if next.iter().all(|&x| x == 0.0) {
            return Ok(total);
        }
        for (t, x) in total.iter_mut().zip(&next) {
            *t += x;
        }
        cur = next;
    }
    Err(Error::NoConvergence(MAX_ITER))
}

/// The score at which the cumulative share of the sorted (descending) scores first reaches
/// `threshold`.
pub fn find_threshold(scores: &[f32], threshold: f32) -> f32 {
    if scores.is_empty() {
        return 0.0;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f32 = sorted.iter().sum();
    let mut cum = 0.0f32;
    for (i, &s) in sorted.iter().enumerate() {
        cum += s;
        if cum / total >= threshold {
            return sorted[i];
        }
    }
    sorted[sorted.len() - 1]
}

/// Which nodes and edges survive pruning, and every node's cumulative influence share.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneResult {
    /// `[n]` kept nodes.
    pub node_mask: Vec<bool>,
    /// Kept edges (row = target), readable as the dense `[n × n]` mask.
    pub edge_mask: EdgeMask,
    /// `[n]` rank-based cumulative share of influence (what the frontend calls `influence`):
    /// the node with the largest influence has the smallest value.
    pub cumulative_scores: Vec<f32>,
}

/// Prunes `graph` as circuit-tracer's `prune_graph(graph, node_threshold, edge_threshold)`.
///
/// Memory: besides the graph's own adjacency, this holds `O(n)` vectors, the positive edge
/// scores (one `f32` per non-zero edge between kept nodes) and the `n × n` boolean edge mask
/// of the result is a list; the normalised and masked matrices are never materialised (see `rows.rs`).
/// The result is bitwise the same as the dense definition (tested against it).
pub fn prune(graph: &Graph, node_threshold: f32, edge_threshold: f32) -> Result<PruneResult> {
    let u = Unpruned::of(graph)?;
    prune_from(graph, &u.w, &u.infl, node_threshold, edge_threshold)
}

/// [`prune`] and [`graph_scores`] together: both start from every node's influence on the
/// logits through the unpruned graph, which is then computed once (it is a pass over the
/// adjacency per graph depth; the two results are the same as the separate calls', bit for bit).
pub fn prune_and_score(
    graph: &Graph,
    node_threshold: f32,
    edge_threshold: f32,
) -> Result<(PruneResult, GraphScores)> {
    let u = Unpruned::of(graph)?;
    Ok((
        prune_from(graph, &u.w, &u.infl, node_threshold, edge_threshold)?,
        scores_from(graph, &u.rows, &u.w, &u.infl),
    ))
}

/// What pruning and the scores both start from: a validated graph's logit weights, its
/// normalised non-zero rows and every node's influence through them.
struct Unpruned<'a> {
    w: Vec<f32>,
    rows: NormRows<'a>,
    infl: Vec<f32>,
}

impl<'a> Unpruned<'a> {
    fn of(graph: &'a Graph) -> Result<Self> {
        graph.validate()?;
        let w = graph.logit_weights();
        let rows = NormRows::new(&graph.adjacency, graph.n_nodes(), None);
        let infl = rows.influence(&w, MAX_ITER)?;
        Ok(Unpruned { w, rows, infl })
    }
}

/// Pruning given the logit weights `w` and the unpruned influence `infl`.
fn prune_from(
    graph: &Graph,
    w: &[f32],
    infl: &[f32],
    node_threshold: f32,
    edge_threshold: f32,
) -> Result<PruneResult> {
    let n = graph.n_nodes();
    let (n_logits, n_tokens, n_features) = (graph.n_logits(), graph.n_pos(), graph.n_features());
    let a = &graph.adjacency;

    // 1. Nodes by influence on the logits; tokens and logits always stay.
    let node_thr = find_threshold(infl, node_threshold);
    let mut node_mask: Vec<bool> = infl.iter().map(|&x| x >= node_thr).collect();
    for m in &mut node_mask[n - n_logits - n_tokens..] {
        *m = true;
    }

    // 2-3. Edges by (normalised weight × influence of their target) on the pruned graph.
    let mp = NormRows::new(a, n, Some(&node_mask));
    let mut infl_e = mp.influence(w, MAX_ITER)?;
    for (x, wi) in infl_e.iter_mut().zip(w) {
        *x += wi;
    }
    // Positive scores in row-major order, as the dense definition lists them.
    let per_row = |keep: &(dyn Fn(f32) -> bool + Sync)| -> Vec<Vec<(usize, f32)>> {
        mp.rows()
            .par_iter()
            .map(|&(i, s)| {
                let mut out = Vec::new();
                mp.for_each_in_row((i, s), |j, m| {
                    let score = m * infl_e[i];
                    if keep(score) {
                        out.push((j, score));
                    }
                });
                out
            })
            .collect()
    };
    let nonzero: Vec<f32> = per_row(&|s| s > 0.0)
        .into_iter()
        .flatten()
        .map(|(_, s)| s)
        .collect();
    let edge_thr = find_threshold(&nonzero, edge_threshold);
    drop(nonzero);
    let mut edges: Vec<(usize, usize)> = per_row(&|s| s > 0.0 && s >= edge_thr)
        .into_iter()
        .zip(mp.rows())
        .flat_map(|(row, &(i, _))| row.into_iter().map(move |(j, _)| (i, j)))
        .collect();

    // 4. Fixed point: features and errors need a kept outgoing edge, features an incoming one.
    // Both tests read the edges as they stood at the start of the round, as the dense loop does.
    loop {
        let (mut has_out, mut has_in) = (vec![false; n], vec![false; n]);
        for &(t, s) in &edges {
            has_in[t] = true;
            has_out[s] = true;
        }
        let mut changed = false;
        for j in 0..n - n_logits - n_tokens {
            if node_mask[j] && !has_out[j] {
                node_mask[j] = false;
                changed = true;
            }
        }
        for i in 0..n_features {
            if node_mask[i] && !has_in[i] {
                node_mask[i] = false;
                changed = true;
            }
        }
        edges.retain(|&(t, s)| node_mask[t] && node_mask[s]);
        if !changed {
            break;
        }
    }
    let edge_mask = EdgeMask::new(n, edges);

    Ok(PruneResult {
        node_mask,
        edge_mask,
        cumulative_scores: cumulative_scores(infl),
    })
}

/// The graph restricted to what `pruned` keeps, in the same file format, so that `adag prune
/// --out` writes something every other command reads. Dropped feature nodes leave the graph;
/// error and token nodes stay because their indices are implied by (layer, pos), but those that
/// were pruned lose all their edges. Every edge outside `pruned.edge_mask` is zeroed; kept edges
/// keep their exact weights.
pub fn pruned_graph(graph: &Graph, pruned: &PruneResult) -> Result<Graph> {
    graph.validate()?;
    let n = graph.n_nodes();
    if pruned.node_mask.len() != n || pruned.edge_mask.len() != n * n {
        return Err(crate::Error::Inconsistent(format!(
            "prune result has {} nodes / {} edges; the graph has {n} nodes",
            pruned.node_mask.len(),
            pruned.edge_mask.len()
        )));
    }
    let f = graph.n_features();
    // Old index of every node of the new graph: kept features, then all other nodes in order.
    let old: Vec<usize> = (0..f)
        .filter(|&i| pruned.node_mask[i])
        .chain(f..n)
        .collect();
    let m = old.len();
    let mut new_index = vec![usize::MAX; n];
    for (k, &i) in old.iter().enumerate() {
        new_index[i] = k;
    }
    let mut adjacency = vec![0.0f32; m * m];
    for (t, s) in pruned.edge_mask.edges() {
        let (ti, si) = (new_index[t], new_index[s]);
        if ti != usize::MAX && si != usize::MAX {
            adjacency[ti * m + si] = graph.adjacency[t * n + s];
        }
    }
    let mut out = graph.clone();
    out.adjacency = adjacency;
    out.selected_features = old[..m - (n - f)]
        .iter()
        .map(|&i| graph.selected_features[i])
        .collect();
    out.validate()?;
    Ok(out)
}

/// Rank nodes by influence (descending; ties by index) and give each the cumulative share up to
/// and including itself.
pub(crate) fn cumulative_scores(infl: &[f32]) -> Vec<f32> {
    let mut order: Vec<usize> = (0..infl.len()).collect();
    order.sort_by(|&a, &b| infl[b].total_cmp(&infl[a]).then(a.cmp(&b)));
    let total: f32 = infl.iter().sum();
    let mut out = vec![0.0; infl.len()];
    let mut cum = 0.0f32;
    for &i in &order {
        cum += infl[i];
        out[i] = if total > 0.0 { cum / total } else { 0.0 };
    }
    out
}

/// How much of the graph's explanation runs through error nodes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GraphScores {
    /// Share of end-to-end influence that starts at tokens rather than errors.
    pub replacement: f32,
    /// Share of every node's input that does not come from errors, weighted by influence.
    pub completeness: f32,
}

/// circuit-tracer's `compute_graph_scores`, over the non-zero rows without a normalised copy.
pub fn graph_scores(graph: &Graph) -> Result<GraphScores> {
    let u = Unpruned::of(graph)?;
    Ok(scores_from(graph, &u.rows, &u.w, &u.infl))
}

/// The scores given the unpruned normalised rows `m`, the logit weights and the influence.
fn scores_from(graph: &Graph, m: &NormRows, w: &[f32], infl: &[f32]) -> GraphScores {
    let n = graph.n_nodes();
    let errors = graph.error_index(0, 0)..graph.token_index(0);
    let tokens = graph.token_index(0)..graph.logit_index(0);
    let tok: f32 = infl[tokens].iter().sum();
    let err: f32 = infl[errors.clone()].iter().sum();
    let replacement = if tok + err > 0.0 {
        tok / (tok + err)
    } else {
        0.0
    };
    let mut from_errors = vec![0.0f32; n];
    for &(i, s) in m.rows() {
        from_errors[i] = graph.adjacency[i * n + errors.start..i * n + errors.end]
            .iter()
            .map(|x| x.abs() / s)
            .sum();
    }
    let (mut num, mut den) = (0.0f32, 0.0f32);
    for i in 0..n {
        let weight = infl[i] + w[i];
        num += (1.0 - from_errors[i]) * weight;
        den += weight;
    }
    GraphScores {
        replacement,
        completeness: if den > 0.0 { num / den } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend;
    use crate::graph::{GraphMeta, LogitTarget};

    /// circuit-tracer's hand-checked 12-node example (`tests/test_graph.py::test_small_graph`):
    /// 5 features, 4 errors (2 layers × 2 positions), 2 tokens, 1 logit with p = 1.
    fn small_graph() -> Graph {
        let n = 12;
        let mut a = vec![0.0f32; n * n];
        for (t, sources) in [
            (11, &[1, 3, 6, 8][..]),
            (3, &[0, 1, 6][..]),
            (1, &[9, 10][..]),
            (0, &[9][..]),
        ] {
            for &s in sources {
                a[t * n + s] = 10.0;
            }
        }
        Graph {
            meta: GraphMeta {
                n_layers: 2,
                ..Default::default()
            },
            adjacency: a,
            active_features: vec![[0, 0, 0], [0, 1, 1], [1, 0, 2], [1, 1, 3], [1, 1, 4]],
            activation_values: vec![1.0; 5],
            selected_features: vec![0, 1, 2, 3, 4],
            input_tokens: vec![1, 2],
            logit_targets: vec![LogitTarget {
                token: "x".into(),
                vocab_idx: 3,
            }],
            logit_probabilities: vec![1.0],
        }
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((*x as f64 - y).abs() < 1e-6, "entry {i}: {x} vs {y}");
        }
    }

    #[test]
    fn node_influence_matches_the_hand_checked_values() {
        let g = small_graph();
        let infl = influence(&normalize(&g.adjacency, 12), 12, &g.logit_weights()).unwrap();
        close(
            &infl,
            &[
                1. / 12.,
                1. / 3.,
                0.,
                1. / 4.,
                0.,
                0.,
                1. / 3.,
                0.,
                1. / 4.,
                1. / 4.,
                1. / 6.,
                0.,
            ],
        );
    }

    #[test]
    fn edge_influence_matches_the_hand_checked_values() {
        let mut g = small_graph();
        let n = 12;
        g.adjacency[9] = 0.0; // A[0, 9]
        g.adjacency[3 * n] = 0.0; // A[3, 0]
        let m = normalize(&g.adjacency, n);
        let w = g.logit_weights();
        let mut infl = influence(&m, n, &w).unwrap();
        for (x, wi) in infl.iter_mut().zip(&w) {
            *x += wi;
        }
        let score = |i: usize, j: usize| m[i * n + j] * infl[i];
        for s in [1, 3, 6, 8] {
            assert!((score(11, s) - 0.25).abs() < 1e-6);
        }
        for s in [1, 6] {
            assert!((score(3, s) - 0.125).abs() < 1e-6);
        }
        for s in [9, 10] {
            assert!((score(1, s) - 3.0 / 16.0).abs() < 1e-6);
        }
    }

    #[test]
    fn pruned_graph_keeps_exactly_the_kept_nodes_and_edges() {
        let g = small_graph();
        let r = prune(&g, 0.8, 0.98).unwrap();
        let p = pruned_graph(&g, &r).unwrap();
        let n = g.n_nodes();
        let kept: Vec<usize> = (0..g.n_features()).filter(|&i| r.node_mask[i]).collect();
        assert!(
            kept.len() < g.n_features(),
            "the example must drop a feature"
        );
        assert_eq!(p.n_features(), kept.len());
        assert_eq!(p.n_nodes(), n - (g.n_features() - kept.len()));
        // Same node ids, and every edge is the original where kept and 0 elsewhere.
        let old: Vec<usize> = kept.iter().copied().chain(g.n_features()..n).collect();
        for (ti, &t) in old.iter().enumerate() {
            assert_eq!(
                frontend::node_id(&p, ti),
                frontend::node_id(&g, t),
                "node {ti}"
            );
            for (si, &s) in old.iter().enumerate() {
                let want = if r.edge_mask[t * n + s] {
                    g.edge(t, s)
                } else {
                    0.0
                };
                assert_eq!(p.edge(ti, si), want, "edge {t} <- {s}");
            }
        }
        let kept_edges = r.edge_mask.iter().filter(|&&k| k).count();
        let nonzero = p.adjacency.iter().filter(|&&w| w != 0.0).count();
        assert_eq!(nonzero, kept_edges);
    }

    #[test]
    fn pruning_keeps_influential_nodes_and_forces_tokens_and_logits() {
        let g = small_graph();
        let r = prune(&g, 0.8, 0.98).unwrap();
        // Tokens (9, 10) and the logit (11) are always kept.
        assert!(r.node_mask[9] && r.node_mask[10] && r.node_mask[11]);
        // Nodes without influence are gone.
        for i in [2, 4, 5, 7] {
            assert!(!r.node_mask[i], "node {i} has no influence");
        }
        // Every kept edge joins kept nodes, and every kept feature has an edge each way.
        for i in 0..12 {
            for j in 0..12 {
                if r.edge_mask[i * 12 + j] {
                    assert!(r.node_mask[i] && r.node_mask[j]);
                    assert!(g.adjacency[i * 12 + j] != 0.0);
                }
            }
        }
        for f in 0..5 {
            if r.node_mask[f] {
                assert!((0..12).any(|i| r.edge_mask[i * 12 + f]));
                assert!((0..12).any(|j| r.edge_mask[f * 12 + j]));
            }
        }
        // Cumulative scores: the most influential node (1 or 6, 1/3 each; ties by index → 1)
        // gets the smallest share; the shares end at 1.
        let infl_total = 1. / 12. + 1. / 3. + 1. / 4. + 1. / 3. + 1. / 4. + 1. / 4. + 1. / 6.;
        assert!((r.cumulative_scores[1] as f64 - (1. / 3.) / infl_total).abs() < 1e-6);
        assert!(r.cumulative_scores.iter().any(|&c| (c - 1.0).abs() < 1e-6));
    }

    #[test]
    fn find_threshold_is_the_first_score_reaching_the_share() {
        assert_eq!(find_threshold(&[1.0, 5.0, 4.0], 0.5), 5.0);
        assert_eq!(find_threshold(&[1.0, 5.0, 4.0], 0.6), 4.0);
        assert_eq!(find_threshold(&[1.0, 5.0, 4.0], 1.0), 1.0);
    }

    #[test]
    fn scores_of_an_error_free_graph_are_one_and_drop_with_error_edges() {
        let g = small_graph();
        let s = graph_scores(&g).unwrap();
        // Errors 5..9 feed node 11 (via 6, 8) and 3 (via 6): both scores below 1.
        assert!(s.replacement > 0.0 && s.replacement < 1.0, "{s:?}");
        assert!(s.completeness > 0.0 && s.completeness < 1.0, "{s:?}");
        let mut clean = g.clone();
        for i in 0..12 {
            for j in 5..9 {
                clean.adjacency[i * 12 + j] = 0.0;
            }
        }
        let s = graph_scores(&clean).unwrap();
        assert!(
            (s.replacement - 1.0).abs() < 1e-6 && (s.completeness - 1.0).abs() < 1e-6,
            "{s:?}"
        );
    }
}
