//! The dense definitions of pruning and graph scores (circuit-tracer's `graph.py` line by
//! line, with an `n × n` copy per step), kept as the reference the row-wise implementation in
//! `prune.rs` must match bit for bit.

use crate::error::Result;
use crate::graph::Graph;
use crate::prune::{
    cumulative_scores, find_threshold, influence, normalize, GraphScores, PruneResult,
};

/// Prunes `graph` as circuit-tracer's `prune_graph(graph, node_threshold, edge_threshold)`.
pub fn prune_dense(graph: &Graph, node_threshold: f32, edge_threshold: f32) -> Result<PruneResult> {
    graph.validate()?;
    let n = graph.n_nodes();
    let w = graph.logit_weights();
    let (n_logits, n_tokens, n_features) = (graph.n_logits(), graph.n_pos(), graph.n_features());
    let a = &graph.adjacency;

    // 1. Nodes by influence on the logits; tokens and logits always stay.
    let infl = influence(&normalize(a, n), n, &w)?;
    let node_thr = find_threshold(&infl, node_threshold);
    let mut node_mask: Vec<bool> = infl.iter().map(|&x| x >= node_thr).collect();
    for m in &mut node_mask[n - n_logits - n_tokens..] {
        *m = true;
    }

    // 2-3. Edges by (normalised weight × influence of their target) on the pruned graph.
    let mut pruned = a.clone();
    for i in 0..n {
        for j in 0..n {
            if !node_mask[i] || !node_mask[j] {
                pruned[i * n + j] = 0.0;
            }
        }
    }
    let mp = normalize(&pruned, n);
    let mut infl_e = influence(&mp, n, &w)?;
    for (x, wi) in infl_e.iter_mut().zip(&w) {
        *x += wi;
    }
    let edge_scores: Vec<f32> = (0..n * n).map(|k| mp[k] * infl_e[k / n]).collect();
    let nonzero: Vec<f32> = edge_scores.iter().copied().filter(|&s| s > 0.0).collect();
    let edge_thr = find_threshold(&nonzero, edge_threshold);
    let mut edge_mask: Vec<bool> = edge_scores
        .iter()
        .map(|&s| s > 0.0 && s >= edge_thr)
        .collect();

    // 4. Fixed point: features and errors need a kept outgoing edge, features an incoming one.
    loop {
        let old = node_mask.clone();
        for j in 0..n - n_logits - n_tokens {
            if node_mask[j] && !(0..n).any(|i| edge_mask[i * n + j]) {
                node_mask[j] = false;
            }
        }
        for (i, keep) in node_mask.iter_mut().enumerate().take(n_features) {
            if *keep && !edge_mask[i * n..(i + 1) * n].iter().any(|&e| e) {
                *keep = false;
            }
        }
        for i in 0..n {
            for j in 0..n {
                if !node_mask[i] || !node_mask[j] {
                    edge_mask[i * n + j] = false;
                }
            }
        }
        if old == node_mask {
            break;
        }
    }

    Ok(PruneResult {
        node_mask,
        edge_mask: crate::EdgeMask::from_dense(n, &edge_mask),
        cumulative_scores: cumulative_scores(&infl),
    })
}

/// circuit-tracer's `compute_graph_scores`.
pub fn graph_scores_dense(graph: &Graph) -> Result<GraphScores> {
    graph.validate()?;
    let n = graph.n_nodes();
    let w = graph.logit_weights();
    let m = normalize(&graph.adjacency, n);
    let infl = influence(&m, n, &w)?;
    let errors = graph.error_index(0, 0)..graph.token_index(0);
    let tokens = graph.token_index(0)..graph.logit_index(0);
    let tok: f32 = infl[tokens].iter().sum();
    let err: f32 = infl[errors.clone()].iter().sum();
    let replacement = if tok + err > 0.0 {
        tok / (tok + err)
    } else {
        0.0
    };
    let (mut num, mut den) = (0.0f32, 0.0f32);
    for i in 0..n {
        let from_errors: f32 = m[i * n + errors.start..i * n + errors.end].iter().sum();
        let weight = infl[i] + w[i];
        num += (1.0 - from_errors) * weight;
        den += weight;
    }
    Ok(GraphScores {
        replacement,
        completeness: if den > 0.0 { num / den } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{GraphMeta, LogitTarget};
    use crate::{graph_scores, prune, prune_and_score, pruned_graph};

    /// xorshift64*: enough randomness for graph shapes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// A graph with an attribution graph's structure: feature rows read earlier-layer features
    /// at positions ≤ theirs, errors of earlier layers and tokens; logit rows read everything.
    /// Weights are signed and heavy-tailed, some rows are empty, some entries exact zeros.
    fn random_graph(seed: u64, n_layers: usize, n_pos: usize, n_feat: usize, k: usize) -> Graph {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut active: Vec<[u32; 3]> = (0..n_feat)
            .map(|i| {
                [
                    (rng.next() % n_layers as u64) as u32,
                    (rng.next() % n_pos as u64) as u32,
                    i as u32,
                ]
            })
            .collect();
        active.sort();
        let n = n_feat + (n_layers + 1) * n_pos + k;
        let mut a = vec![0.0f32; n * n];
        let weight = |rng: &mut Rng| {
            let r = rng.unit();
            if r < 0.3 {
                0.0
            } else {
                let sign = if rng.next().is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                };
                sign * (rng.unit() + 1e-3).powi(3) * 10.0
            }
        };
        for t in 0..n_feat {
            if rng.unit() < 0.05 {
                continue; // a feature with no inputs
            }
            let [lt, pt, _] = active[t];
            for s in 0..n_feat {
                let [ls, ps, _] = active[s];
                if ls < lt && ps <= pt {
                    a[t * n + s] = weight(&mut rng);
                }
            }
            for l in 0..lt as usize {
                for p in 0..=pt as usize {
                    a[t * n + n_feat + l * n_pos + p] = weight(&mut rng);
                }
            }
            for p in 0..=pt as usize {
                a[t * n + n_feat + n_layers * n_pos + p] = weight(&mut rng);
            }
        }
        for t in n - k..n {
            for s in 0..n - k {
                a[t * n + s] = weight(&mut rng);
            }
        }
        let probs: Vec<f32> = (0..k).map(|i| 1.0 / (i + 2) as f32).collect();
        Graph {
            meta: GraphMeta {
                n_layers,
                ..Default::default()
            },
            adjacency: a,
            activation_values: vec![1.0; n_feat],
            selected_features: (0..n_feat as u32).collect(),
            active_features: active,
            input_tokens: (0..n_pos as u32).collect(),
            logit_targets: (0..k)
                .map(|i| LogitTarget {
                    token: format!("t{i}"),
                    vocab_idx: i as u32,
                })
                .collect(),
            logit_probabilities: probs,
        }
    }

    /// The row-wise pruning and scores are bitwise the dense definition's, so a pruned graph
    /// is exactly what it was before the rewrite.
    #[test]
    fn row_wise_pruning_is_bitwise_the_dense_definition() {
        let shapes = [
            (1, 2, 3, 8, 1),
            (2, 3, 6, 40, 2),
            (3, 4, 9, 120, 5),
            (4, 6, 23, 300, 10),
            (5, 2, 70, 50, 3),
        ];
        let thresholds = [(0.8, 0.98), (0.5, 0.5), (1.0, 1.0), (0.99, 0.9), (0.0, 0.0)];
        let mut dropped = 0;
        for (seed, layers, pos, feats, k) in shapes {
            let g = random_graph(seed, layers, pos, feats, k);
            for (nt, et) in thresholds {
                let want = prune_dense(&g, nt, et).unwrap();
                let got = prune(&g, nt, et).unwrap();
                // The combined call shares the influence and must change nothing.
                let (together, scores) = prune_and_score(&g, nt, et).unwrap();
                assert_eq!(together, got, "seed {seed} ({nt}, {et})");
                let alone = graph_scores(&g).unwrap();
                assert_eq!(
                    (scores.replacement.to_bits(), scores.completeness.to_bits()),
                    (alone.replacement.to_bits(), alone.completeness.to_bits())
                );
                assert_eq!(got.node_mask, want.node_mask, "seed {seed} ({nt}, {et})");
                assert_eq!(got.edge_mask, want.edge_mask, "seed {seed} ({nt}, {et})");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.cumulative_scores), bits(&want.cumulative_scores));
                assert_eq!(
                    pruned_graph(&g, &got).unwrap(),
                    pruned_graph(&g, &want).unwrap()
                );
                dropped += want.node_mask.iter().filter(|&&m| !m).count();
            }
            let (s, d) = (graph_scores(&g).unwrap(), graph_scores_dense(&g).unwrap());
            assert_eq!(
                s.replacement.to_bits(),
                d.replacement.to_bits(),
                "seed {seed}"
            );
            assert_eq!(
                s.completeness.to_bits(),
                d.completeness.to_bits(),
                "seed {seed}"
            );
        }
        assert!(dropped > 0, "the fixtures must exercise pruning");
    }
}
