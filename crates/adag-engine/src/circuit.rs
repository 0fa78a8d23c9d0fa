//! Prompt circuits: the ADAG form of one traced prompt, in any basis — selected nodes with
//! their total effects and profiles, and relative direct-effect edges. The neuron tracer
//! ([`crate::neuron::trace_prompts`]) returns them, feature circuits are read off transcoder
//! graphs ([`crate::feature_circuit`]), and adag-circuit writes them as Parquet tables.

use serde::{Deserialize, Serialize};

/// Node kinds by layer: `-1` embedding, `0..L` neurons, `L` logits.
pub const EMBED_LAYER: i32 = -1;

/// A node of a traced prompt: a neuron or feature (`index` is its index in its layer), an
/// embedding (`index` is the token id) or a logit (`index` is the vocabulary id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitNode {
    /// `-1` embedding, `0..n_layers` neuron layer, `n_layers` logit.
    pub layer: i32,
    /// Token position (unpadded); the traced position for logits.
    pub position: u32,
    /// Neuron index; token id for embeddings; vocabulary id for logits.
    pub index: u32,
    /// Neuron activation `a`; 1 for embeddings; the logit for logits.
    pub activation: f32,
    /// Total effect on the goal divided by the goal (`E[s]/goal` for embeddings,
    /// `logit/goal` for logits).
    pub attribution: f32,
    /// Neurons: share of the activation from each input position (sums to 1 over positions).
    pub input_profile: Vec<f32>,
    /// Neurons: share of each target logit contributed (total effect), one per target.
    pub output_profile: Vec<f32>,
}

/// A direct-effect edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitEdge {
    /// (layer, position, index) of the source node.
    pub source: (i32, u32, u32),
    /// (layer, position, index) of the target node.
    pub target: (i32, u32, u32),
    /// Fraction of the target's value that arrives directly from the source.
    pub weight: f32,
    /// Flow to the output: `weight · Σ_j contrib_target_j / goal` (for logit targets
    /// `weight · logit / goal`).
    pub attribution: f32,
}

/// The traced circuit of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptCircuit {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Target token ids.
    pub targets: Vec<u32>,
    /// Their next-token probabilities.
    pub target_probs: Vec<f32>,
    /// Their logits (pre-soft-cap), centred when `center_logits`.
    pub target_logits: Vec<f32>,
    /// `Σ_j target_logits[j]`.
    pub goal: f32,
    /// Selected neurons, then embeddings, then logits.
    pub nodes: Vec<CircuitNode>,
    /// Surviving edges.
    pub edges: Vec<CircuitEdge>,
}
