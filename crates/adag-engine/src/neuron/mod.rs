//! The neuron basis: circuits of real MLP neurons, as Transluce's ADAG pipeline traces them,
//! on the same frozen-model engine as transcoder graphs.
//!
//! A neuron node is one scalar `a = act(z)·u` at (layer, position, neuron): the input of
//! `down_proj`, with `z = W_gate x̃`, `u = W_up x̃`, `x̃ = mlp.hook_in`. Neurons write through
//! their `W_down` column; there are no error nodes. The gated MLP is linearised with RelP: the
//! gate coefficient `c = act(z)/z` is frozen and the product `(c·z)·u` is split by the half rule,
//! so every MLP conserves relevance (`∇a · x̃ = a`) and every attribution below is complete.
//! Definitions follow `shared/reference/adag.md` §2–4, with the reference's masks restored
//! (its `noqk` attention lost causal and padding masks) and its profile-normalisation bug fixed
//! (profiles are normalised the same way whatever the batch size).
//!
//! Per prompt, with `k` targets `v_j` at the last position and `goal = Σ_j logit_j`:
//! - **node scores** (total effect): `A[n] = ∂goal/∂a_n · a_n` through RelP MLPs, and
//!   `E[s] = ∂goal/∂e_s · e_s` for embeddings (`Σ_s E[s] = goal` for bias-free models);
//! - **selection**: `|A[n]| ≥ percentage_threshold · |goal|`, minus the blacklist;
//! - **profiles** of each selected neuron: input profile `∂a_n/∂e_s · e_s / a_n` over positions
//!   (RelP below), output profile `∂logit_j/∂a_n · a_n / logit_j` over targets;
//! - **edges** (direct effects, every MLP between source and target stopped): relative weight
//!   `w = ∂t/∂a_s · a_s / (t + ε)` from embeddings and lower-layer neurons into each selected
//!   neuron and each target logit, with `ε = 1e-6 · mean|t|` over the prompt's targets of that
//!   kind; edges with `|w| < edge_threshold` are dropped. All source layers come from one
//!   backward pass per group of targets (the reference runs a forward per layer pair).

mod relp;
mod trace;

pub use relp::{RelpMlp, RelpRule};
pub use trace::{
    input_maps, neuron_graph_extras, trace_prompts, trace_prompts_with_graphs,
    trace_prompts_with_stats, ProfileMode, TraceStats,
};

use serde::{Deserialize, Serialize};

/// Settings of neuron tracing, with the defaults of the reference's `prep.py`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeuronOptions {
    /// Number of target logits (the model's top-k next tokens) when no answers are given.
    pub k: usize,
    /// Keep neurons with `|A| ≥ percentage_threshold · |goal|`.
    #[serde(serialize_with = "adag_core::decimal::serialize_f32")]
    pub percentage_threshold: f32,
    /// Drop edges with `|w| < edge_threshold`.
    #[serde(serialize_with = "adag_core::decimal::serialize_f32")]
    pub edge_threshold: f32,
    /// How the gated MLP is linearised.
    pub rule: RelpRule,
    /// Subtract the mean logit from each target (the reference's `center_logits`).
    pub center_logits: bool,
    /// Drop nodes at position 0 (BOS) from the outputs (they still take part in the
    /// computation).
    pub ignore_bos: bool,
    /// Neurons masked at every position before selection: (layer, neuron).
    pub blacklist: Vec<(usize, u32)>,
    /// Seeds per backward pass.
    pub batch_size: usize,
}

impl Default for NeuronOptions {
    fn default() -> Self {
        NeuronOptions {
            k: 5,
            percentage_threshold: 0.005,
            edge_threshold: 0.01,
            rule: RelpRule::HalfRule,
            center_logits: false,
            ignore_bos: true,
            blacklist: Vec::new(),
            batch_size: 128,
        }
    }
}

/// The reference's default blacklist for `meta-llama/Llama-3.1-8B-Instruct` (clja.py): generic,
/// prompt-independent high-attribution neurons, masked at every position.
pub const LLAMA_31_8B_INSTRUCT_BLACKLIST: [(usize, u32); 12] = [
    (23, 306),
    (20, 3972),
    (18, 7417),
    (16, 1241),
    (13, 4208),
    (11, 11321),
    (10, 11570),
    (9, 4255),
    (7, 6673),
    (6, 5866),
    (5, 7012),
    (2, 4786),
];

/// One prompt to trace: tokens as the model sees them (chat template already applied), the
/// traced position is the last token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptInput {
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Given answer tokens as targets (otherwise the model's top-k).
    pub targets: Option<Vec<u32>>,
}

pub use crate::circuit::{CircuitEdge, CircuitNode, PromptCircuit, EMBED_LAYER};
