//! The reference's diversity statistics across clusters (ADAG §8.5): do the clusters do
//! different things, or are they k copies of one mechanism?
//!
//! - **output diversity**, from a steering sweep at one scale: on each prompt, the number of
//!   distinct tokens among the clusters' steered top-1 (and the union of their top-2 and
//!   top-10) tokens, averaged over the prompts that every cluster was steered on. k clusters
//!   that all push the same token give 1 distinct top-1 token; k different ones give up to k.
//! - **input diversity**, from the circuit alone: on each prompt, each cluster's attribution
//!   map over input positions is the mean of its nodes' input profiles, each normalised to
//!   sum 1 in absolute value; its top position is the argmax. The statistic is the number of
//!   distinct top positions among the clusters present, averaged over prompts.

use std::collections::{BTreeMap, BTreeSet};

use adag_circuit::Circuit;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterState;
use crate::profiles::Unit;
use crate::steer::PromptSteering;

/// Output diversity of one scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputDiversity {
    /// The factor the clusters were steered by.
    pub scale: f32,
    /// Clusters compared.
    pub n_clusters: usize,
    /// Prompts every cluster was steered on.
    pub n_prompts: usize,
    /// Mean distinct top-1 tokens per prompt.
    pub unique_top1: f64,
    /// Mean distinct tokens in the union of the clusters' top-2.
    pub unique_top2: f64,
    /// Mean distinct tokens in the union of the clusters' top-10.
    pub unique_top10: f64,
}

/// Output diversity of clusters steered at `scale`: `per_cluster` holds each cluster's
/// per-prompt results. Prompts missing from any cluster are left out (a cluster not traced
/// on a prompt is not steered there, which would read as a lack of diversity).
pub fn output_diversity(scale: f32, per_cluster: &[&[PromptSteering]]) -> OutputDiversity {
    let maps: Vec<BTreeMap<u64, &PromptSteering>> = per_cluster
        .iter()
        .map(|rows| rows.iter().map(|r| (r.prompt_id, r)).collect())
        .collect();
    let shared: Vec<u64> = match maps.first() {
        Some(first) => first
            .keys()
            .copied()
            .filter(|id| maps.iter().all(|m| m.contains_key(id)))
            .collect(),
        None => Vec::new(),
    };
    let unique = |k: usize| -> f64 {
        if shared.is_empty() {
            return f64::NAN;
        }
        let total: usize = shared
            .iter()
            .map(|id| {
                maps.iter()
                    .flat_map(|m| m[id].top_after.iter().take(k).map(|t| t.id))
                    .collect::<BTreeSet<u32>>()
                    .len()
            })
            .sum();
        total as f64 / shared.len() as f64
    };
    OutputDiversity {
        scale,
        n_clusters: per_cluster.len(),
        n_prompts: shared.len(),
        unique_top1: unique(1),
        unique_top2: unique(2),
        unique_top10: unique(10),
    }
}

/// Mean number of distinct top input positions among the clusters present on each prompt
/// (NaN for a circuit without clustered nodes).
pub fn input_diversity(circuit: &Circuit, clusters: &ClusterState) -> f64 {
    // prompt → cluster → summed normalised input profile and node count.
    let mut maps: BTreeMap<u64, BTreeMap<&str, (Vec<f64>, usize)>> = BTreeMap::new();
    for n in &circuit.nodes {
        if n.layer < 0 || n.input_profile.is_empty() {
            continue;
        }
        let Some(c) = clusters.cluster_of(&Unit::of_node(n.layer, n.neuron, n.activation)) else {
            continue;
        };
        let norm: f64 = n.input_profile.iter().map(|x| x.abs() as f64).sum();
        if norm == 0.0 {
            continue;
        }
        let e = maps
            .entry(n.prompt_id)
            .or_default()
            .entry(c)
            .or_insert_with(|| (vec![0.0; n.input_profile.len()], 0));
        if e.0.len() < n.input_profile.len() {
            e.0.resize(n.input_profile.len(), 0.0);
        }
        for (acc, x) in e.0.iter_mut().zip(&n.input_profile) {
            *acc += *x as f64 / norm;
        }
        e.1 += 1;
    }
    if maps.is_empty() {
        return f64::NAN;
    }
    let total: usize = maps
        .values()
        .map(|per_cluster| {
            per_cluster
                .values()
                .filter_map(|(map, _)| {
                    // The mean's argmax is the sum's: the node count does not change it.
                    (0..map.len()).max_by(|&a, &b| map[a].total_cmp(&map[b]).then(b.cmp(&a)))
                })
                .collect::<BTreeSet<usize>>()
                .len()
        })
        .sum();
    total as f64 / maps.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steer::TopToken;

    fn row(prompt_id: u64, top: &[u32]) -> PromptSteering {
        PromptSteering {
            prompt_id,
            n_scaled: 1,
            cluster_ratios: BTreeMap::new(),
            targets: vec![],
            target_logits: vec![],
            steered_logits: vec![],
            steered_logits_fixed_norm: vec![],
            kl: 0.0,
            top_before: vec![],
            top_after: top.iter().map(|&id| TopToken { id, prob: 0.1 }).collect(),
            generated: vec![],
        }
    }

    #[test]
    fn output_diversity_counts_distinct_tokens_on_shared_prompts() {
        let a = [row(0, &[5, 6, 7]), row(1, &[5, 6, 7]), row(2, &[1, 2, 3])];
        let b = [row(0, &[5, 8, 9]), row(1, &[6, 5, 7])];
        let d = output_diversity(2.0, &[&a, &b]);
        // Prompt 2 is only in a: left out.
        assert_eq!((d.n_clusters, d.n_prompts), (2, 2));
        // Prompt 0: top-1 {5}, top-2 {5,6,8}, top-10 {5,6,7,8,9}; prompt 1: {5,6}, {5,6}, {5,6,7}.
        assert_eq!(d.unique_top1, 1.5);
        assert_eq!(d.unique_top2, 2.5);
        assert_eq!(d.unique_top10, 4.0);
        assert!(output_diversity(0.0, &[]).unique_top1.is_nan());
    }
}
