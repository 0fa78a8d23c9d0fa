//! Synthetic circuits with planted structure, shared by the integration tests.
#![allow(dead_code)]

use adag_circuit::{Circuit, NodeRow, PromptRow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A neuron node row.
#[allow(clippy::too_many_arguments)]
pub fn neuron(
    prompt_id: u64,
    layer: i32,
    position: u32,
    neuron: u32,
    activation: f32,
    attribution: f32,
    input: Vec<f32>,
    output: Vec<f32>,
) -> NodeRow {
    NodeRow {
        prompt_id,
        label: None,
        layer,
        position,
        neuron,
        activation,
        attribution,
        polarity: adag_circuit::circuit::polarity(activation),
        input_profile: input,
        output_profile: output,
    }
}

/// A prompt row with `len` tokens and `k` targets.
pub fn prompt(prompt_id: u64, len: usize, k: usize) -> PromptRow {
    PromptRow {
        prompt_id,
        label: None,
        prompt: format!("prompt {prompt_id}"),
        seed: None,
        token_ids: (0..len as u32).collect(),
        token_strings: (0..len).map(|i| format!("t{i}")).collect(),
        answers: vec![],
        target_ids: (100..100 + k as u32).collect(),
        target_strings: (0..k).map(|i| format!("a{i}")).collect(),
        target_probs: vec![0.1; k],
        target_logits: vec![1.0; k],
        goal: k as f32,
        traced_position: len as u32 - 1,
        predicted: true,
    }
}

/// `groups` planted groups of `per_group` neurons: group g reads position g % len and writes
/// target g % k (units of a group occur together on ~70% of prompts, with noise).
/// The planted group of each (layer, neuron).
pub type Planted = Vec<((i32, u32), usize)>;

/// Returns the circuit and the planted group of each (layer, neuron).
pub fn planted(groups: usize, per_group: usize, n_prompts: usize, seed: u64) -> (Circuit, Planted) {
    let (len, k) = (6usize, 3usize);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Circuit::default();
    let mut truth = Vec::new();
    for g in 0..groups {
        for m in 0..per_group {
            truth.push(((g as i32 % 3, (g * per_group + m) as u32), g));
        }
    }
    for p in 0..n_prompts as u64 {
        c.prompts.push(prompt(p, len, k));
        for &((layer, n), g) in &truth {
            if rng.random::<f32>() > 0.7 {
                continue;
            }
            let mut input: Vec<f32> = (0..len).map(|_| 0.05 * rng.random::<f32>()).collect();
            input[g % len] += 1.0;
            let mut output: Vec<f32> = (0..k).map(|_| 0.05 * rng.random::<f32>()).collect();
            // Groups beyond len*k would collide; tests keep groups ≤ 6.
            output[(g / 2 + g) % k] += 0.5;
            let pos = (g % len) as u32;
            c.nodes.push(neuron(
                p,
                layer,
                pos,
                n,
                1.0 + rng.random::<f32>(),
                0.01 + 0.02 * rng.random::<f32>(),
                input,
                output,
            ));
        }
    }
    (c, truth)
}

/// Purity: share of units whose cluster's majority planted group is their own.
pub fn purity(truth: &[(usize, usize)]) -> f64 {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<usize, BTreeMap<usize, usize>> = BTreeMap::new();
    for &(cluster, group) in truth {
        *counts.entry(cluster).or_default().entry(group).or_default() += 1;
    }
    let majority: usize = counts
        .values()
        .map(|m| m.values().max().copied().unwrap_or(0))
        .sum();
    majority as f64 / truth.len() as f64
}

/// A cluster state with this `"layer,neuron,polarity"` → cluster map (no diagnostics), for
/// tests that need cluster lookups but not a clustering run.
pub fn state(map: &[(&str, &str)]) -> adag_analysis::ClusterState {
    use adag_analysis::cluster::{ClusterInfo, ClusterOptions, Diagnostics};
    let mut ids: Vec<&str> = map.iter().map(|(_, c)| *c).collect();
    ids.sort();
    ids.dedup();
    let units = |id: &str| -> Vec<String> {
        map.iter()
            .filter(|(_, c)| *c == id)
            .map(|(u, _)| u.to_string())
            .collect()
    };
    adag_analysis::ClusterState {
        format: "adag-cluster-state".into(),
        version: 1,
        circuit: "test".into(),
        options: ClusterOptions::default(),
        cluster_map: map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        clusters: ids
            .into_iter()
            .map(|id| ClusterInfo {
                id: id.to_string(),
                name: id.to_string(),
                units: units(id),
                attribution: 0.0,
                abs_attribution: 0.0,
                n_prompts: 0,
                input_description: None,
                output_description: None,
                description: None,
                label: None,
            })
            .collect(),
        diagnostics: Diagnostics {
            eigenvalues: vec![],
            eigengap: 0.0,
            suggested_k: 1,
            k_range: [1, 1],
            silhouette: 0.0,
            intra_similarity: 0.0,
            inter_similarity: 0.0,
            intra_inter_ratio: None,
            sign_conflict_rate: 0.0,
            eigensolver: "dense".into(),
            method: "kmeans".into(),
            seconds: std::collections::BTreeMap::new(),
            modularity: None,
            leiden: None,
        },
    }
}
