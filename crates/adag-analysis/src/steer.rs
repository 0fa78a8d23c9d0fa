//! Steering: scale a cluster's traced units and measure what changes (reference §8).
//!
//! For each prompt, one forward pass multiplies exactly the cluster's traced
//! (position, unit) entries by `scale` through the engine's open-loop interventions
//! ([`adag_engine::intervene::OpenLoop`]): a neuron in `mlp.hook_post` (the input of
//! `down_proj`, where ADAG's neurons live), a transcoder feature by adding its decoder rows
//! (feature circuits from `adag trace --transcoders`). Every layer sees the edits of the
//! layers before it, as in the reference's single pyvene pass. [`Scope::AllPositions`] scales
//! the cluster's units at every position instead (the sensitivity scripts' default), and a
//! target may be a single unit rather than a cluster.
//!
//! Reported per prompt (and averaged by [`summarise`]):
//! - **cluster → cluster**: for each cluster, the mean over its traced nodes on the prompt of
//!   steered ÷ original activation;
//! - **cluster → output**: steered ÷ original logit of each traced target (the reference's
//!   "Say ⟨tok⟩" rows) and the logit difference;
//! - `KL(p_orig ‖ p_steered)` at the traced position; the top tokens before and after.
//! - the steered logits of the traced targets **with the final norm's denominator held at its
//!   unsteered value** (one more forward pass).
//!
//! # Why the second logit
//!
//! On a model that is already confident, amplifying the units that promote the answer
//! usually does *not* raise the answer's raw logit. The final RMSNorm divides the residual by
//! its root mean square, and when the residual at the traced position is dominated by the
//! answer's direction, a larger push along it mostly grows that denominator. Measured on the
//! bundled demo model (two-hop capitals, 28 prompts, p(answer) ≈ 1, k = 8): the answer-promoting
//! cluster moves the answer's raw logit by −10.9 at 0× but by only +0.02 at 2×, against +4.5
//! with the final norm's denominator held fixed; one last-layer neuron, whose only path to the
//! logits is the final norm, moves it by −0.01 at 2× live and by +1.19 with the denominator
//! held fixed, which is then exactly linear in the scale (−1.19 at 0×). At k = 4, 12, 20 and 32
//! no cluster raised the raw logit by more than 0.21 at 2× (fixed norm: up to 6.5), and the
//! top single neurons behaved alike: no choice of k or of cluster changes the picture. Ablation
//! removes information that later layers need, which no renormalisation restores, so it
//! shows in the raw logit. Attribution graphs freeze the same denominator, so the fixed-norm
//! logit is the quantity the circuit's attributions predict; the raw logit is what the model
//! outputs. Both are reported, and neither replaces the other.
//!
//! The reference hard-coded the logit layer as 32 (Llama-8B); here nothing depends on the
//! model's depth.

use std::collections::{BTreeMap, BTreeSet};

use adag_circuit::Circuit;
use adag_core::HookName;
use adag_engine::intervene::{Action, Intervention, OpenLoop, Position};
use adag_engine::Basis;
use adag_model::{Batch, CacheFilter, ForwardHooks, Transformer};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterState;
use crate::error::{Context, Error, Result};
use crate::profiles::Unit;

/// Which positions of the target's neurons are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Only the (position, neuron) entries traced on the prompt.
    #[default]
    Traced,
    /// The target's neurons at every position (also generated ones).
    AllPositions,
}

/// What is steered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The units of a cluster (by id).
    Cluster(String),
    /// Every traced unit *except* the cluster's (the reference's `complement=True`): what the
    /// rest of the circuit does without that cluster scaled, unclustered units included.
    Complement(String),
    /// One neuron (both polarities).
    Neuron {
        /// Layer.
        layer: i32,
        /// Neuron index.
        neuron: u32,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cluster(c) => write!(f, "{c}"),
            Target::Complement(c) => write!(f, "not {c}"),
            Target::Neuron { layer, neuron } => write!(f, "L{layer}N{neuron}"),
        }
    }
}

/// Holds the final norm's denominator (`ln_final.hook_scale`) at a recorded value.
///
/// With `scale: None` it records the value the run produces; with `Some` it replaces it.
/// Every other site goes through `inner` (the steering edits).
struct FixFinalNorm<'h> {
    inner: &'h mut dyn ForwardHooks,
    scale: Option<Tensor>,
}

impl ForwardHooks for FixFinalNorm<'_> {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        let value = self.inner.edit(hook, value)?;
        if hook != HookName::LnFinalScale {
            return Ok(value);
        }
        match &self.scale {
            Some(fixed) => Ok(fixed.clone()),
            None => {
                self.scale = Some(value.clone());
                Ok(value)
            }
        }
    }
}

/// A token and its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopToken {
    /// Token id.
    pub id: u32,
    /// Probability.
    pub prob: f32,
}

/// Steering result of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSteering {
    /// Prompt id.
    pub prompt_id: u64,
    /// Entries scaled (traced scope: the target's traced nodes on the prompt).
    pub n_scaled: usize,
    /// Cluster id → mean steered/original activation over its traced nodes.
    pub cluster_ratios: BTreeMap<String, f64>,
    /// Traced target ids.
    pub targets: Vec<u32>,
    /// Original logits of the targets.
    pub target_logits: Vec<f32>,
    /// Steered logits of the targets.
    pub steered_logits: Vec<f32>,
    /// Steered logits of the targets with the final norm's denominator held at its unsteered
    /// value (see the module docs for why).
    pub steered_logits_fixed_norm: Vec<f32>,
    /// KL(p_orig ‖ p_steered) at the traced position.
    pub kl: f64,
    /// Top 10 tokens before.
    pub top_before: Vec<TopToken>,
    /// Top 10 tokens after (the reference's diversity statistics count top-1/2/10).
    pub top_after: Vec<TopToken>,
    /// Greedy continuation under steering (empty unless asked).
    pub generated: Vec<u32>,
}

/// A traced node: (layer, position, neuron or feature, activation, unit).
type TracedNeuron = (usize, usize, usize, f32, Unit);

/// Final-position logits and, per layer, the units' activations `[n_pos · width]` of one run.
type RunOutput = (Vec<f32>, Vec<Vec<f32>>);

/// The prompt `prompt_id` of `circuit`, or an error naming it.
pub(crate) fn circuit_prompt(
    circuit: &Circuit,
    prompt_id: u64,
) -> Result<&adag_circuit::PromptRow> {
    circuit
        .prompts
        .iter()
        .find(|p| p.prompt_id == prompt_id)
        .ok_or_else(|| Error::Input(format!("no prompt {prompt_id} in the circuit")))
}

/// The steering engine: a model, the basis its circuit was traced in, a circuit and its
/// clusters.
pub struct Steerer<'a> {
    model: &'a Transformer,
    basis: &'a dyn Basis,
    circuit: &'a Circuit,
    clusters: &'a ClusterState,
    /// prompt id → its neuron nodes (layer, position, neuron, activation, unit).
    nodes: BTreeMap<u64, Vec<TracedNeuron>>,
}

fn top(probs: &[f32], k: usize) -> Vec<TopToken> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| TopToken {
            id: i as u32,
            prob: probs[i],
        })
        .collect()
}

use adag_core::softmax;

/// One token from `logits`: argmax at temperature ≤ 0, else drawn (with the uniform `u`)
/// from the softmax at `temperature` restricted to the nucleus, the fewest most-probable
/// tokens whose probability reaches `top_p` (at least one). Ties go to the lower id, so a
/// draw depends on nothing but the logits and `u`.
pub fn sample_token(logits: &[f32], temperature: f32, top_p: f32, u: f64) -> u32 {
    if temperature <= 0.0 || logits.len() < 2 {
        return top(logits, 1).first().map(|t| t.id).unwrap_or(0);
    }
    let scaled: Vec<f32> = logits.iter().map(|l| l / temperature).collect();
    let probs = softmax(&scaled);
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut nucleus = Vec::new();
    let mut mass = 0.0f64;
    for i in idx {
        nucleus.push(i);
        mass += probs[i] as f64;
        if mass >= top_p as f64 {
            break;
        }
    }
    let mut acc = 0.0f64;
    let target = u * mass;
    for &i in &nucleus {
        acc += probs[i] as f64;
        if target < acc {
            return i as u32;
        }
    }
    nucleus.last().map(|&i| i as u32).unwrap_or(0)
}

impl<'a> Steerer<'a> {
    /// Prepares steering of `circuit`, traced in `basis` (MLP neurons or transcoder
    /// features), with `model`.
    pub fn new(
        model: &'a Transformer,
        basis: &'a dyn Basis,
        circuit: &'a Circuit,
        clusters: &'a ClusterState,
    ) -> Self {
        let mut nodes: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for n in &circuit.nodes {
            if n.layer < 0 || (n.input_profile.is_empty() && n.output_profile.is_empty()) {
                continue;
            }
            nodes.entry(n.prompt_id).or_default().push((
                n.layer as usize,
                n.position as usize,
                n.neuron as usize,
                n.activation,
                Unit::of_node(n.layer, n.neuron, n.activation),
            ));
        }
        Steerer {
            model,
            basis,
            circuit,
            clusters,
            nodes,
        }
    }

    fn in_target(&self, target: &Target, u: &Unit) -> bool {
        match target {
            Target::Cluster(c) => self.clusters.cluster_of(u) == Some(c.as_str()),
            Target::Complement(c) => self.clusters.cluster_of(u) != Some(c.as_str()),
            Target::Neuron { layer, neuron } => u.layer == *layer && u.neuron == *neuron,
        }
    }

    /// Checks that a target exists: a cluster of the state, or a neuron of the model (a neuron
    /// outside it would otherwise be skipped silently and the run would report no effect).
    pub fn check(&self, target: &Target) -> Result<()> {
        if let Target::Neuron { layer, neuron } = target {
            let n_layers = self.model.cfg.n_layers;
            let (width, unit) = self.width();
            if *layer < 0 || *layer as usize >= n_layers {
                return Err(Error::Input(format!(
                    "{unit} {layer}:{neuron}: layer {layer} is out of range (the model has \
                     MLP layers 0..{n_layers})"
                )));
            }
            if *neuron as usize >= width {
                return Err(Error::Input(format!(
                    "{unit} {layer}:{neuron}: index {neuron} is out of range (each layer has \
                     {width} {unit}s)"
                )));
            }
        }
        if let Target::Cluster(c) | Target::Complement(c) = target {
            if !self.clusters.clusters.iter().any(|x| &x.id == c) {
                return Err(Error::Input(format!(
                    "no cluster {c:?}: the cluster state has {}",
                    self.clusters
                        .clusters
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Units per layer and their name in this basis.
    fn width(&self) -> (usize, &'static str) {
        match self.basis.transcoders() {
            Some(tc) => (tc.d_tc, "feature"),
            None => (self.model.cfg.d_mlp, "neuron"),
        }
    }

    /// The interventions that steer `target` on a prompt: each traced (position, unit) of the
    /// target scaled by `scale` (every position with [`Scope::AllPositions`]).
    pub fn interventions(
        &self,
        prompt_id: u64,
        target: &Target,
        scale: f32,
        scope: Scope,
    ) -> Vec<Intervention> {
        let mut entries: BTreeSet<(usize, Option<usize>, usize)> = BTreeSet::new();
        for &(l, p, n, _, u) in self.nodes.get(&prompt_id).into_iter().flatten() {
            if self.in_target(target, &u) {
                let pos = match scope {
                    Scope::Traced => Some(p),
                    Scope::AllPositions => None,
                };
                entries.insert((l, pos, n));
            }
        }
        if let (Scope::AllPositions, Target::Neuron { layer, neuron }) = (scope, target) {
            if *layer >= 0 {
                entries.insert((*layer as usize, None, *neuron as usize));
            }
        }
        entries
            .into_iter()
            .map(|(layer, pos, n)| Intervention {
                layer,
                pos: pos.map_or(Position::From(0), Position::At),
                feature: n as u32,
                action: Action::Scale(scale),
            })
            .collect()
    }

    /// One run under `plan`; with `final_scale`, the final norm's denominator is recorded
    /// into it when empty and held at it otherwise.
    fn run(
        &self,
        tokens: &[u32],
        plan: &[Intervention],
        final_scale: Option<&mut Option<Tensor>>,
    ) -> Result<RunOutput> {
        let batch = Batch::single(tokens).ctx(|| "building the batch".into())?;
        let mut hooks = OpenLoop::new(self.model, self.basis, plan, None);
        let none = CacheFilter::none();
        let out = match final_scale {
            Some(slot) => {
                let mut fix = FixFinalNorm {
                    inner: &mut hooks,
                    scale: slot.take(),
                };
                let out = self.model.forward_with(&batch, &none, &mut fix);
                *slot = fix.scale;
                out
            }
            None => self.model.forward_with(&batch, &none, &mut hooks),
        }
        .ctx(|| "steered forward pass".into())?;
        let logits = out
            .item_logits(0)
            .and_then(|t| {
                t.get(tokens.len() - 1)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| adag_model::Error::Candle {
                        context: "reading logits".into(),
                        source: e,
                    })
            })
            .ctx(|| "reading logits".into())?;
        let acts = hooks
            .activations()
            .map_err(|e| Error::Input(format!("steered activations: {e}")))?
            .iter()
            .map(|t| {
                t.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .ctx(|| "reading activations".into())
            })
            .collect::<Result<_>>()?;
        Ok((logits, acts))
    }

    /// Steers one prompt; `generate` > 0 adds a greedy continuation under steering.
    pub fn steer_prompt(
        &self,
        prompt_id: u64,
        target: &Target,
        scale: f32,
        scope: Scope,
        generate: usize,
    ) -> Result<PromptSteering> {
        let prompt = circuit_prompt(self.circuit, prompt_id)?;
        let tokens = &prompt.token_ids;
        if tokens.is_empty() {
            return Err(Error::Input(format!("prompt {prompt_id} has no tokens")));
        }
        let plan = self.interventions(prompt_id, target, scale, scope);
        let n_scaled = plan.len();
        let mut final_scale = None;
        let (lo, ao) = self.run(tokens, &[], Some(&mut final_scale))?;
        let (ls, as_) = self.run(tokens, &plan, None)?;
        let (lf, _) = self.run(tokens, &plan, Some(&mut final_scale))?;
        let width = self.width().0;
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for &(l, p, n, _, u) in self.nodes.get(&prompt_id).into_iter().flatten() {
            let Some(c) = self.clusters.cluster_of(&u) else {
                continue;
            };
            let (Some(o), Some(s)) = (
                ao.get(l).and_then(|v| v.get(p * width + n)),
                as_.get(l).and_then(|v| v.get(p * width + n)),
            ) else {
                continue;
            };
            if *o != 0.0 {
                let e = sums.entry(c.to_string()).or_default();
                e.0 += (*s / *o) as f64;
                e.1 += 1;
            }
        }
        let (po, ps) = (softmax(&lo), softmax(&ls));
        let kl = po
            .iter()
            .zip(&ps)
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, q)| *p as f64 * ((*p as f64).ln() - (q.max(1e-30) as f64).ln()))
            .sum::<f64>()
            .max(0.0);
        let targets = prompt.target_ids.clone();
        let pick = |v: &[f32]| -> Vec<f32> {
            targets
                .iter()
                .map(|&t| v.get(t as usize).copied().unwrap_or(f32::NAN))
                .collect()
        };
        let mut generated = Vec::new();
        if generate > 0 {
            let mut seq = tokens.clone();
            // Generated positions are steered only with the all-positions scope (traced
            // entries name prompt positions).
            for _ in 0..generate {
                let (l, _) = self.run(&seq, &plan, None)?;
                let next = top(&l, 1).first().map(|t| t.id).unwrap_or(0);
                seq.push(next);
                generated.push(next);
            }
        }
        Ok(PromptSteering {
            prompt_id,
            n_scaled,
            cluster_ratios: sums
                .into_iter()
                .map(|(c, (s, n))| (c, s / n as f64))
                .collect(),
            target_logits: pick(&lo),
            steered_logits: pick(&ls),
            steered_logits_fixed_norm: pick(&lf),
            targets,
            kl,
            top_before: top(&po, 10),
            top_after: top(&ps, 10),
            generated,
        })
    }

    /// A continuation of `prompt_id` under steering, sampled token by token: `max_tokens`
    /// tokens at `temperature` from the smallest set of top tokens holding `top_p` of the
    /// probability (nucleus sampling, the reference's T 0.7 / top-p 0.9); temperature 0 is
    /// greedy. The caller's RNG makes every sample reproducible. Generated positions are steered
    /// only with [`Scope::AllPositions`] (traced entries name prompt positions).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        prompt_id: u64,
        target: &Target,
        scale: f32,
        scope: Scope,
        max_tokens: usize,
        temperature: f32,
        top_p: f32,
        rng: &mut impl rand::Rng,
    ) -> Result<Vec<u32>> {
        let prompt = circuit_prompt(self.circuit, prompt_id)?;
        if prompt.token_ids.is_empty() {
            return Err(Error::Input(format!("prompt {prompt_id} has no tokens")));
        }
        let plan = self.interventions(prompt_id, target, scale, scope);
        let mut seq = prompt.token_ids.clone();
        let mut out = Vec::with_capacity(max_tokens);
        for _ in 0..max_tokens {
            let (logits, _) = self.run(&seq, &plan, None)?;
            let next = sample_token(&logits, temperature, top_p, rng.random::<f64>());
            seq.push(next);
            out.push(next);
        }
        Ok(out)
    }

    /// Prompts on which the target has traced nodes (all prompts for all-positions scope).
    pub fn prompts_of(&self, target: &Target, scope: Scope) -> Vec<u64> {
        self.circuit
            .prompts
            .iter()
            .map(|p| p.prompt_id)
            .filter(|id| {
                scope == Scope::AllPositions
                    || self
                        .nodes
                        .get(id)
                        .is_some_and(|ns| ns.iter().any(|x| self.in_target(target, &x.4)))
            })
            .collect()
    }
}

/// Averages over prompts of one (target, scale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringSummary {
    /// Cluster id or neuron.
    pub target: String,
    /// The factor.
    pub scale: f32,
    /// Prompts steered.
    pub n_prompts: usize,
    /// Mean KL(p_orig ‖ p_steered).
    pub mean_kl: f64,
    /// Mean steered ÷ original logit of the first (top) target.
    pub mean_top_target_ratio: f64,
    /// Mean steered − original logit of the first target.
    pub mean_top_target_delta: f64,
    /// The same with the final norm's denominator held at its unsteered value.
    pub mean_top_target_delta_fixed_norm: f64,
    /// Share of prompts whose top-1 token changed.
    pub top1_changed: f64,
    /// Mean cluster → cluster activation ratio, per cluster.
    pub cluster_ratios: BTreeMap<String, f64>,
}

/// Aggregates per-prompt results.
pub fn summarise(target: &str, scale: f32, rows: &[PromptSteering]) -> SteeringSummary {
    let n = rows.len().max(1) as f64;
    let mut ratios: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for r in rows {
        for (c, v) in &r.cluster_ratios {
            let e = ratios.entry(c.clone()).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    let first = |r: &PromptSteering| -> (f64, f64, f64) {
        match (
            r.target_logits.first(),
            r.steered_logits.first(),
            r.steered_logits_fixed_norm.first(),
        ) {
            (Some(&o), Some(&s), Some(&f)) => ((s / o) as f64, (s - o) as f64, (f - o) as f64),
            _ => (f64::NAN, f64::NAN, f64::NAN),
        }
    };
    SteeringSummary {
        target: target.to_string(),
        scale,
        n_prompts: rows.len(),
        mean_kl: rows.iter().map(|r| r.kl).sum::<f64>() / n,
        mean_top_target_ratio: rows.iter().map(|r| first(r).0).sum::<f64>() / n,
        mean_top_target_delta: rows.iter().map(|r| first(r).1).sum::<f64>() / n,
        mean_top_target_delta_fixed_norm: rows.iter().map(|r| first(r).2).sum::<f64>() / n,
        top1_changed: rows
            .iter()
            .filter(|r| r.top_before.first().map(|t| t.id) != r.top_after.first().map(|t| t.id))
            .count() as f64
            / n,
        cluster_ratios: ratios
            .into_iter()
            .map(|(c, (s, k))| (c, s / k as f64))
            .collect(),
    }
}

/// The sweep table as CSV (one row per target and scale).
pub fn summary_csv(rows: &[SteeringSummary]) -> String {
    let mut s = String::from(
        "target,scale,n_prompts,mean_kl,mean_top_target_ratio,mean_top_target_delta,\
         mean_top_target_delta_fixed_norm,top1_changed\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.target,
            r.scale,
            r.n_prompts,
            r.mean_kl,
            r.mean_top_target_ratio,
            r.mean_top_target_delta,
            r.mean_top_target_delta_fixed_norm,
            r.top1_changed
        ));
    }
    s
}

/// Writes the sweep table as Parquet (same columns as [`summary_csv`]).
pub fn write_summary_parquet(path: &std::path::Path, rows: &[SteeringSummary]) -> Result<()> {
    use arrow_array::{ArrayRef, Float32Array, Float64Array, StringArray, UInt64Array};
    use std::sync::Arc;
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "target",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.target.clone()),
            )),
        ),
        (
            "scale",
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.scale))),
        ),
        (
            "n_prompts",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.n_prompts as u64),
            )),
        ),
        (
            "mean_kl",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.mean_kl),
            )),
        ),
        (
            "mean_top_target_ratio",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.mean_top_target_ratio),
            )),
        ),
        (
            "mean_top_target_delta",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.mean_top_target_delta),
            )),
        ),
        (
            "mean_top_target_delta_fixed_norm",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.mean_top_target_delta_fixed_norm),
            )),
        ),
        (
            "top1_changed",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.top1_changed),
            )),
        ),
    ];
    write_parquet_columns(path, cols)
}

/// Writes named columns as one Parquet table, atomically.
pub(crate) fn write_parquet_columns(
    path: &std::path::Path,
    cols: Vec<(&str, arrow_array::ArrayRef)>,
) -> Result<()> {
    use arrow_array::RecordBatch;
    let perr = |e: String| Error::Parquet {
        path: path.to_path_buf(),
        message: e,
    };
    let batch = RecordBatch::try_from_iter(cols).map_err(|e| perr(e.to_string()))?;
    let mut buf = Vec::new();
    {
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)
            .map_err(|e| perr(e.to_string()))?;
        w.write(&batch).map_err(|e| perr(e.to_string()))?;
        w.close().map_err(|e| perr(e.to_string()))?;
    }
    adag_circuit::store::write_atomic(path, &buf)?;
    Ok(())
}
