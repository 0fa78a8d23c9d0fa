//! Activation records: what one cluster did on each prompt of a circuit (reference §6,
//! "Activation records").
//!
//! A record is one prompt as the explainer and the simulator see it: the prompt's tokens
//! (decoded one by one), the cluster's **input profile** per token (Σ over the cluster's units
//! present on the prompt of their input profiles, each summed over the unit's positions; the
//! share of the units' activations that comes from each input token, reference §4), and its
//! **output profile** per traced target (Σ of the units' shares of each target logit) with the
//! target decoded.
//!
//! **Pads and hidden tokens.** adag's circuits store positions of the *unpadded* prompt, so a
//! record never contains padding; in addition every token whose id is in
//! [`RecordOptions::hidden_ids`] (the tokenizer's pad id, and BOS unless asked otherwise) is
//! dropped from the record, its value with it. The reference decoded the *padded* batch, so the
//! explainer saw runs of pad tokens (zero-filled) and the BOS token in every excerpt, and its
//! simulator was scored on them; adag shows and scores only real prompt tokens.
//!
//! A record exists for **every** prompt of the circuit: where the cluster is absent its values
//! are all zero (`present = false`). Those are the reference's "random negatives".

use std::collections::{BTreeMap, BTreeSet, HashMap};

use adag_analysis::{ClusterState, Unit};
use adag_circuit::Circuit;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One prompt as seen through one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationRecord {
    /// The prompt's id in the circuit.
    pub prompt_id: u64,
    /// The prompt's dataset label.
    pub label: Option<String>,
    /// The user message as given in the dataset.
    pub prompt: String,
    /// Whether any unit of the cluster is traced on this prompt.
    pub present: bool,
    /// Token ids shown (hidden tokens removed).
    pub token_ids: Vec<u32>,
    /// The same tokens decoded one by one.
    pub tokens: Vec<String>,
    /// Position of each shown token in the prompt.
    pub positions: Vec<u32>,
    /// The cluster's signed input profile at each shown token.
    pub values: Vec<f32>,
    /// Traced target token ids.
    pub target_ids: Vec<u32>,
    /// Traced targets decoded (the continuations).
    pub targets: Vec<String>,
    /// The cluster's share of each target logit (Σ over its units).
    pub outputs: Vec<f32>,
    /// Σ node attribution of the cluster's nodes on this prompt.
    pub attribution: f32,
    /// Σ |node attribution| of the cluster's nodes on this prompt.
    pub abs_attribution: f32,
}

impl ActivationRecord {
    /// The shown tokens joined: the prompt text as the explainer reads it.
    pub fn text(&self) -> String {
        self.tokens.concat()
    }
}

/// All records of one cluster, one per prompt in prompt-id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecords {
    /// Cluster id (`C0`, …).
    pub cluster: String,
    /// Σ node attribution of the cluster over all prompts (its sign says excitatory or
    /// inhibitory).
    pub attribution: f64,
    /// One record per prompt of the circuit.
    pub records: Vec<ActivationRecord>,
}

impl ClusterRecords {
    /// Records where the cluster is traced.
    pub fn present(&self) -> impl Iterator<Item = &ActivationRecord> {
        self.records.iter().filter(|r| r.present)
    }
}

/// Which tokens records leave out, and how units add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// Token ids never shown (pad; BOS unless it should be shown).
    pub hidden_ids: BTreeSet<u32>,
    /// Weight each node's input profile by its attribution before summing (the reference's
    /// `weight_attr_by_attribution`): units that matter more for the output count more in
    /// what the explainer sees.
    pub weight_by_attribution: bool,
}

impl RecordOptions {
    /// Hides the tokenizer's pad token and, unless `show_bos`, its BOS token.
    ///
    /// BOS carries no content an explainer could describe, and with `ignore_bos` (the
    /// reference default) no node sits there; it is hidden so that it is neither highlighted
    /// nor scored.
    pub fn from_tokenizer(tok: &adag_model::ModelTokenizer, show_bos: bool) -> Self {
        let mut hidden_ids = BTreeSet::new();
        if let Some((_, id)) = tok.pad_token() {
            hidden_ids.insert(id);
        }
        if !show_bos {
            if let Some((_, id)) = &tok.bos_policy().bos_token {
                hidden_ids.insert(*id);
            }
        }
        RecordOptions {
            hidden_ids,
            weight_by_attribution: false,
        }
    }
}

/// Per-cluster accumulator over one prompt: input profile, output profile, Σ attribution,
/// Σ |attribution|.
#[derive(Default)]
struct Acc {
    input: Vec<f32>,
    output: Vec<f32>,
    attribution: f32,
    abs_attribution: f32,
}

fn add_into(acc: &mut Vec<f32>, x: &[f32]) {
    if acc.len() < x.len() {
        acc.resize(x.len(), 0.0);
    }
    acc.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

/// Builds the records of every cluster of `state` (in the state's cluster order) from the
/// circuit's tables.
///
/// Fails when a node's profile does not fit its prompt (a circuit and cluster state that do
/// not belong together, or a damaged circuit), naming the prompt and node.
pub fn build_records(
    circuit: &Circuit,
    state: &ClusterState,
    opts: &RecordOptions,
) -> Result<Vec<ClusterRecords>> {
    let index: HashMap<&str, usize> = state
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    // (cluster index, prompt id) → accumulator.
    let mut acc: BTreeMap<(usize, u64), Acc> = BTreeMap::new();
    for n in &circuit.nodes {
        if n.layer < 0 || (n.input_profile.is_empty() && n.output_profile.is_empty()) {
            continue;
        }
        let unit = Unit::of_node(n.layer, n.neuron, n.activation);
        let Some(&c) = state.cluster_of(&unit).and_then(|id| index.get(id)) else {
            continue;
        };
        let a = acc.entry((c, n.prompt_id)).or_default();
        if opts.weight_by_attribution {
            let w: Vec<f32> = n.input_profile.iter().map(|x| x * n.attribution).collect();
            add_into(&mut a.input, &w);
        } else {
            add_into(&mut a.input, &n.input_profile);
        }
        add_into(&mut a.output, &n.output_profile);
        a.attribution += n.attribution;
        a.abs_attribution += n.attribution.abs();
    }
    if state.cluster_map.is_empty() || state.clusters.is_empty() {
        return Err(Error::Input("the cluster state has no clusters".into()));
    }
    let mut prompts: Vec<&adag_circuit::PromptRow> = circuit.prompts.iter().collect();
    prompts.sort_by_key(|p| p.prompt_id);
    for p in &prompts {
        if p.token_strings.len() != p.token_ids.len() {
            return Err(Error::Input(format!(
                "prompt {}: {} token strings for {} token ids in prompts.parquet",
                p.prompt_id,
                p.token_strings.len(),
                p.token_ids.len()
            )));
        }
    }
    let mut out = Vec::with_capacity(state.clusters.len());
    for (ci, info) in state.clusters.iter().enumerate() {
        let mut records = Vec::with_capacity(prompts.len());
        for p in &prompts {
            let a = acc.get(&(ci, p.prompt_id));
            let empty = Acc::default();
            let a = a.unwrap_or(&empty);
            let n_pos = p.token_ids.len();
            if a.input.len() > n_pos {
                return Err(Error::Input(format!(
                    "prompt {}: cluster {} has an input profile of {} positions but the prompt has \
                     {n_pos} tokens (circuit and cluster state do not match?)",
                    p.prompt_id,
                    info.id,
                    a.input.len()
                )));
            }
            let k = p.target_ids.len();
            if a.output.len() > k {
                return Err(Error::Input(format!(
                    "prompt {}: cluster {} has an output profile of {} targets but the prompt has {k}",
                    p.prompt_id,
                    info.id,
                    a.output.len()
                )));
            }
            let mut r = ActivationRecord {
                prompt_id: p.prompt_id,
                label: p.label.clone(),
                prompt: p.prompt.clone(),
                present: acc.contains_key(&(ci, p.prompt_id)),
                token_ids: Vec::new(),
                tokens: Vec::new(),
                positions: Vec::new(),
                values: Vec::new(),
                target_ids: p.target_ids.clone(),
                targets: p.target_strings.clone(),
                outputs: (0..k)
                    .map(|j| a.output.get(j).copied().unwrap_or(0.0))
                    .collect(),
                attribution: a.attribution,
                abs_attribution: a.abs_attribution,
            };
            for (pos, (&id, s)) in p.token_ids.iter().zip(&p.token_strings).enumerate() {
                if opts.hidden_ids.contains(&id) {
                    continue;
                }
                r.token_ids.push(id);
                r.tokens.push(s.clone());
                r.positions.push(pos as u32);
                r.values.push(a.input.get(pos).copied().unwrap_or(0.0));
            }
            records.push(r);
        }
        out.push(ClusterRecords {
            cluster: info.id.clone(),
            attribution: info.attribution,
            records,
        });
    }
    Ok(out)
}
