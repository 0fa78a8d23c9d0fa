//! Clustering units and their per-prompt attribution profiles (reference §4).
//!
//! A **unit** is (layer, neuron, polarity): a neuron firing positive and the same neuron firing
//! negative are different units, and a neuron active at several positions of a prompt is one
//! unit on that prompt, its profiles summed over those positions (the reference's
//! `df_sum_over_tokens`). Embedding and logit nodes are not units.
//!
//! Two views describe a unit on a prompt:
//! - **input view**: the summed `input_profile` (share of the activation from each input
//!   position), divided by its sum when that is non-zero, then L2-normalised with ε = 1e-5;
//! - **output view**: the summed `output_profile` (share of each target logit), L2-normalised.
//!
//! The output profiles in adag's circuits are always shares of the target logits. The
//! reference left them raw whenever a batch held more than one prompt (its normalisation
//! checked for exactly k logit rows), so its clusters depended on the tracing batch size; adag
//! has no such dependence.

use std::collections::BTreeMap;

use adag_circuit::Circuit;
use serde::{Deserialize, Serialize};

/// ε of the reference's L2 normalisation: `x / (‖x‖ + ε)`.
pub const NORM_EPS: f32 = 1e-5;

/// A clustering unit: (layer, neuron, polarity), summed over positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unit {
    /// MLP layer (0-based).
    pub layer: i32,
    /// Neuron index within the layer.
    pub neuron: u32,
    /// Sign of the activation: 1, −1 (0 for an exactly-zero activation).
    pub polarity: i8,
}

impl Unit {
    /// The unit of a neuron node with this activation.
    pub fn of_node(layer: i32, neuron: u32, activation: f32) -> Self {
        let polarity = adag_circuit::circuit::polarity(activation);
        Unit {
            layer,
            neuron,
            polarity,
        }
    }

    /// The key used in cluster-state files: `"layer,neuron,polarity"`.
    pub fn key(&self) -> String {
        format!("{},{},{}", self.layer, self.neuron, self.polarity)
    }

    /// Parses [`Unit::key`].
    pub fn parse_key(s: &str) -> Option<Self> {
        let mut it = s.split(',').map(str::trim);
        let layer = it.next()?.parse().ok()?;
        let neuron = it.next()?.parse().ok()?;
        let polarity = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Unit {
            layer,
            neuron,
            polarity,
        })
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.polarity {
            1 => "+",
            -1 => "-",
            _ => "0",
        };
        write!(f, "L{}N{}{}", self.layer, self.neuron, sign)
    }
}

/// One unit on one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitOnPrompt {
    /// Index into [`Profiles::units`].
    pub unit: usize,
    /// The normalised input view (one entry per prompt position); all zero when absent.
    pub input: Vec<f32>,
    /// The normalised output view (one entry per target); all zero when absent.
    pub output: Vec<f32>,
    /// Σ node attribution over the unit's positions.
    pub attribution: f32,
    /// Positions at which the unit was traced.
    pub positions: Vec<u32>,
}

/// The units of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptUnits {
    /// The prompt's id.
    pub prompt_id: u64,
    /// Its units, in unit order.
    pub units: Vec<UnitOnPrompt>,
}

/// All units of a circuit, in canonical (layer, neuron, polarity) order, and their
/// per-prompt views in prompt-id order. The canonical orders make everything downstream
/// independent of the row order of the circuit's tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    /// The units, sorted.
    pub units: Vec<Unit>,
    /// Per-prompt views, sorted by prompt id.
    pub prompts: Vec<PromptUnits>,
}

/// `x / (‖x‖ + ε)`.
fn l2_normalise(x: &mut [f32]) {
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
    x.iter_mut().for_each(|v| *v /= norm + NORM_EPS);
}

fn add_into(acc: &mut Vec<f32>, x: &[f32]) {
    if acc.len() < x.len() {
        acc.resize(x.len(), 0.0);
    }
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

/// Per prompt and unit, while collecting: summed input view, summed output view, summed
/// attribution, and the positions the unit fired at.
type UnitAccumulator = (Vec<f32>, Vec<f32>, f32, Vec<u32>);

impl Profiles {
    /// Collects units and views from a circuit's node table.
    pub fn from_circuit(circuit: &Circuit) -> Self {
        // Neuron nodes carry both profiles; embedding (layer −1) and logit nodes carry none.
        let mut per: BTreeMap<u64, BTreeMap<Unit, UnitAccumulator>> = BTreeMap::new();
        for n in &circuit.nodes {
            if n.layer < 0 || (n.input_profile.is_empty() && n.output_profile.is_empty()) {
                continue;
            }
            let unit = Unit::of_node(n.layer, n.neuron, n.activation);
            let e = per
                .entry(n.prompt_id)
                .or_default()
                .entry(unit)
                .or_insert_with(|| (Vec::new(), Vec::new(), 0.0, Vec::new()));
            add_into(&mut e.0, &n.input_profile);
            add_into(&mut e.1, &n.output_profile);
            e.2 += n.attribution;
            e.3.push(n.position);
        }
        let mut units: Vec<Unit> = per.values().flat_map(|m| m.keys().copied()).collect();
        units.sort_unstable();
        units.dedup();
        let index = |u: &Unit| units.binary_search(u).unwrap_or(0);
        let prompts = per
            .into_iter()
            .map(|(prompt_id, m)| PromptUnits {
                prompt_id,
                units: m
                    .into_iter()
                    .map(|(u, (mut input, mut output, attribution, mut positions))| {
                        let s: f32 = input.iter().sum();
                        if s != 0.0 {
                            input.iter_mut().for_each(|v| *v /= s);
                        }
                        l2_normalise(&mut input);
                        l2_normalise(&mut output);
                        positions.sort_unstable();
                        UnitOnPrompt {
                            unit: index(&u),
                            input,
                            output,
                            attribution,
                            positions,
                        }
                    })
                    .collect(),
            })
            .collect();
        Profiles { units, prompts }
    }

    /// Index of a unit, if present.
    pub fn index_of(&self, u: &Unit) -> Option<usize> {
        self.units.binary_search(u).ok()
    }
}
