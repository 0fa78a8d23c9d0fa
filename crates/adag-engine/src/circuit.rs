//! Prompt circuits: the ADAG form of one traced prompt, in any basis — selected nodes with
//! their total effects and profiles, and relative direct-effect edges. The neuron tracer
//! ([`crate::neuron::trace_prompts`]) returns them, feature circuits are read off transcoder
//! graphs ([`circuit_from_graph`]), and adag-circuit writes them as Parquet tables.

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

/// Mean absolute value (0 for none): the scale of ADAG's edge `ε`, `1e-6 · mean|value|` over
/// a prompt's targets of one kind, shared by the neuron tracer and the graph reader so their
/// relative edges agree.
pub(crate) fn mean_abs(v: impl Iterator<Item = f32>) -> f32 {
    let (s, n) = v.fold((0.0f32, 0usize), |(s, n), x| (s + x.abs(), n + 1));
    if n == 0 {
        0.0
    } else {
        s / n as f32
    }
}

/// Each target's de-meaned logit, as the graph's accounting records it (transcoder graphs).
pub fn accounted_target_values(graph: &adag_graph::Graph) -> crate::Result<Vec<f32>> {
    let acc = graph.meta.accounting.as_ref().ok_or_else(|| {
        crate::Error::Invalid(
            "the graph has no accounting, so its target values are unknown".into(),
        )
    })?;
    Ok(acc.targets.iter().map(|t| t.account.value).collect())
}

/// How a prompt circuit is read off a graph: ADAG's selection and edge thresholds.
#[derive(Debug, Clone, Copy)]
pub struct CircuitOptions {
    /// Keep nodes whose total effect is at least this share of `|goal|`.
    pub percentage_threshold: f32,
    /// Keep edges whose relative weight is at least this in absolute value.
    pub edge_threshold: f32,
    /// Leave position 0 (BOS) out of the nodes and edges.
    pub ignore_bos: bool,
}

impl From<&crate::neuron::NeuronOptions> for CircuitOptions {
    fn from(o: &crate::neuron::NeuronOptions) -> Self {
        CircuitOptions {
            percentage_threshold: o.percentage_threshold,
            edge_threshold: o.edge_threshold,
            ignore_bos: o.ignore_bos,
        }
    }
}

/// The prompt circuit of an attribution graph (a feature circuit for a transcoder graph): the
/// same definitions as the neuron tracer, computed on the graph's linear model.
///
/// A node's value is its activation (JumpReLU, ReLU and top-k features pass their
/// pre-activation through with gain 1 while active; a RelP neuron is linear in its input), a
/// target's is `target_values[j]` (for a transcoder graph, [`accounted_target_values`]: the
/// de-meaned logits its accounting records). Scaling a source by `1 + ε` moves a target by `ε · edge`, and a feature
/// passes on `Δa / a` of its own edges, so the total effect of node `s` on target `j` is
/// `V[j][s] = A[j][s] + Σ_t A[t][s] · V[j][t] / a_t` over features `t` above `s` — ADAG's
/// `∂goal/∂a_s · a_s` in the replacement model. Selection, profiles, relative edges and their
/// flow attributions follow [`crate::neuron`]'s definitions. Error nodes are sources of the
/// graph but not circuit nodes: what they carry is the part of each attribution the features
/// and tokens do not explain. Every feature row of the graph must be present (build the graph
/// without a `max_feature_nodes` cap, or the missing rows' paths are lost).
pub fn circuit_from_graph(
    graph: &adag_graph::Graph,
    target_values: &[f32],
    opts: &CircuitOptions,
) -> crate::Result<PromptCircuit> {
    graph.validate()?;
    let n = graph.n_nodes();
    let (f, k, n_pos) = (graph.n_features(), graph.n_logits(), graph.n_pos());
    let n_layers = graph.meta.n_layers;
    let a = &graph.adjacency;
    if target_values.len() != k {
        return Err(crate::Error::Invalid(format!(
            "{} target values for a graph with {k} targets",
            target_values.len()
        )));
    }
    let values = target_values.to_vec();
    let (keys, act): (Vec<(i32, u32, u32)>, Vec<f32>) = (0..f)
        .filter_map(|i| graph.feature(i))
        .map(|([l, p, x], a)| ((l as i32, p, x), a))
        .unzip();

    // Total effects on each target, top layer first (node order is by layer).
    let mut v = vec![0.0f32; k * n];
    for j in 0..k {
        let row = graph.logit_index(j) * n;
        v[j * n..(j + 1) * n].copy_from_slice(&a[row..row + n]);
    }
    for t in (0..f).rev() {
        let row = &a[t * n..(t + 1) * n];
        for j in 0..k {
            let c = v[j * n + t] / act[t];
            if c != 0.0 && c.is_finite() {
                for (x, &e) in v[j * n..(j + 1) * n].iter_mut().zip(row) {
                    *x += c * e;
                }
            }
        }
    }
    let goal: f32 = values.iter().sum();
    let total = |s: usize| -> f32 { (0..k).map(|j| v[j * n + s]).sum() };

    let keep_pos = |p: u32| !(opts.ignore_bos && p == 0);
    let threshold = opts.percentage_threshold * goal.abs();
    let selected: Vec<usize> = (0..f)
        .filter(|&i| {
            let e = total(i);
            e.abs() >= threshold && e != 0.0 && keep_pos(keys[i].1)
        })
        .collect();

    // Input maps: total effect of each token on each feature, bottom layer first.
    let tok0 = graph.token_index(0);
    let mut u = vec![0.0f32; f * n_pos];
    for i in 0..f {
        let row = &a[i * n..(i + 1) * n];
        let mut acc_row = row[tok0..tok0 + n_pos].to_vec();
        for m in 0..i {
            let c = row[m] / act[m];
            if c != 0.0 && c.is_finite() {
                for (x, &y) in acc_row.iter_mut().zip(&u[m * n_pos..(m + 1) * n_pos]) {
                    *x += c * y;
                }
            }
        }
        u[i * n_pos..(i + 1) * n_pos].copy_from_slice(&acc_row);
    }

    let targets: Vec<u32> = graph.logit_targets.iter().map(|t| t.vocab_idx).collect();
    let last = (n_pos - 1) as u32;
    let mut nodes = Vec::new();
    for &i in &selected {
        nodes.push(CircuitNode {
            layer: keys[i].0,
            position: keys[i].1,
            index: keys[i].2,
            activation: act[i],
            attribution: total(i) / goal,
            input_profile: u[i * n_pos..(i + 1) * n_pos]
                .iter()
                .map(|x| x / act[i])
                .collect(),
            output_profile: (0..k).map(|j| v[j * n + i] / values[j]).collect(),
        });
    }
    for p in (0..n_pos as u32).filter(|&p| keep_pos(p)) {
        nodes.push(CircuitNode {
            layer: EMBED_LAYER,
            position: p,
            index: graph.input_tokens[p as usize],
            activation: 1.0,
            attribution: total(tok0 + p as usize) / goal,
            input_profile: vec![],
            output_profile: vec![],
        });
    }
    for (j, &t) in targets.iter().enumerate() {
        nodes.push(CircuitNode {
            layer: n_layers as i32,
            position: last,
            index: t,
            activation: values[j],
            attribution: values[j] / goal,
            input_profile: vec![],
            output_profile: vec![],
        });
    }

    // Edges into selected features and targets, from selected features and tokens.
    let eps_feature = 1e-6 * mean_abs(selected.iter().map(|&i| act[i]));
    let eps_logit = 1e-6 * mean_abs(values.iter().copied());
    let sources: Vec<(usize, (i32, u32, u32))> = selected
        .iter()
        .map(|&i| (i, keys[i]))
        .chain((0..n_pos as u32).filter(|&p| keep_pos(p)).map(|p| {
            (
                tok0 + p as usize,
                (EMBED_LAYER, p, graph.input_tokens[p as usize]),
            )
        }))
        .collect();
    let mut edges = Vec::new();
    let into = selected
        .iter()
        .map(|&i| (i, keys[i], act[i] + eps_feature, total(i)))
        .chain((0..k).map(|j| {
            (
                graph.logit_index(j),
                (n_layers as i32, last, targets[j]),
                values[j] + eps_logit,
                values[j],
            )
        }));
    for (t, key, value, flow) in into {
        for &(s, src) in &sources {
            let e = a[t * n + s];
            if e == 0.0 {
                continue;
            }
            let w = e / value;
            if w.abs() >= opts.edge_threshold {
                edges.push(CircuitEdge {
                    source: src,
                    target: key,
                    weight: w,
                    attribution: w * flow / goal,
                });
            }
        }
    }
    Ok(PromptCircuit {
        tokens: graph.input_tokens.clone(),
        targets,
        target_probs: graph.logit_probabilities.clone(),
        target_logits: values,
        goal,
        nodes,
        edges,
    })
}
