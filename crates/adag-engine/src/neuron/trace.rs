//! Tracing prompts in the neuron basis: node scores, selection, profiles and direct-effect edges,
//! each a batched backward pass through the frozen model (see the module doc of `neuron`).

use adag_core::{HookName, Site};
use adag_graph::{Graph, GraphMeta};
use adag_model::{Batch, CacheFilter, ForwardOutput, Transformer};
use candle_core::{DType, Tensor};

use super::relp::RelpMlp;
use super::{CircuitEdge, CircuitNode, NeuronOptions, PromptCircuit, PromptInput, EMBED_LAYER};
use crate::basis::{NeuronBasis, NeuronPrompt, PromptNodes};
use crate::circuit::mean_abs;
use crate::driver::{Driver, RowStore};
use crate::error::{Context, Error, Result};
use crate::frozen::{FrozenModel, ReadSite, Seeds, Visitor, WriteSite};
use crate::targets::{select_targets, TargetSpec};

/// Seconds and floating-point operations per phase of [`trace_prompts_with_stats`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceStats {
    /// The batched forward pass.
    pub forward_s: f64,
    /// Total effects of every neuron on the targets, and selection.
    pub scores_s: f64,
    /// Input profiles of the selected neurons.
    pub profiles_s: f64,
    /// Direct-effect edges.
    pub edges_s: f64,
    /// Floating-point operations of the backward passes' matrix products.
    pub backward_flops: f64,
    /// Selected neurons, summed over prompts.
    pub neurons: usize,
}

impl TraceStats {
    /// Seconds spent in backward passes.
    pub fn backward_s(&self) -> f64 {
        self.scores_s + self.profiles_s + self.edges_s
    }

    /// Adds another run's figures.
    pub fn add(&mut self, o: &TraceStats) {
        self.forward_s += o.forward_s;
        self.scores_s += o.scores_s;
        self.profiles_s += o.profiles_s;
        self.edges_s += o.edges_s;
        self.backward_flops += o.backward_flops;
        self.neurons += o.neurons;
    }
}

/// Traces `prompts` (one batched forward pass; per-prompt backward passes).
pub fn trace_prompts(
    model: &Transformer,
    prompts: &[PromptInput],
    opts: &NeuronOptions,
) -> Result<Vec<PromptCircuit>> {
    Ok(trace_prompts_with_stats(model, prompts, opts)?.0)
}

/// [`trace_prompts`], with phase timings and FLOP counts.
pub fn trace_prompts_with_stats(
    model: &Transformer,
    prompts: &[PromptInput],
    opts: &NeuronOptions,
) -> Result<(Vec<PromptCircuit>, TraceStats)> {
    let (traced, stats) = trace_prompts_each(model, prompts, opts, &mut |_, _| Ok(()))?;
    Ok((traced, stats))
}

/// [`trace_prompts`], also returning each prompt's attribution graph: the driver's graph that
/// its circuit was read from (selected neurons as feature nodes, direct effects as edges, no
/// error nodes), which the graph file and the viewer show. Kept only when asked for, since a
/// long prompt's dense graph is large.
pub fn trace_prompts_with_graphs(
    model: &Transformer,
    prompts: &[PromptInput],
    opts: &NeuronOptions,
) -> Result<(Vec<PromptCircuit>, Vec<Graph>, TraceStats)> {
    let mut graphs = Vec::with_capacity(prompts.len());
    let (traced, stats) = trace_prompts_each(model, prompts, opts, &mut |_, g| {
        graphs.push(g);
        Ok(())
    })?;
    Ok((traced, graphs, stats))
}

fn trace_prompts_each(
    model: &Transformer,
    prompts: &[PromptInput],
    opts: &NeuronOptions,
    on_graph: &mut dyn FnMut(usize, Graph) -> Result<()>,
) -> Result<(Vec<PromptCircuit>, TraceStats)> {
    if opts.k == 0 || opts.batch_size == 0 {
        return Err(Error::Invalid("k and batch_size must be at least 1".into()));
    }
    if prompts.is_empty() {
        return Ok((Vec::new(), TraceStats::default()));
    }
    let mut stats = TraceStats::default();
    let clock = std::time::Instant::now();
    let batch = Batch::new(prompts.iter().map(|p| p.tokens.clone()).collect())?;
    let filter = FrozenModel::cache_filter()
        .union(&CacheFilter::sites([
            Site::MlpPre,
            Site::MlpPreLinear,
            Site::MlpPost,
            Site::MlpOut,
        ]))
        .union(&CacheFilter::only([
            HookName::LnFinalNormalized,
            HookName::Embed,
        ]));
    let out = model.forward(&batch, &filter)?;
    stats.forward_s = clock.elapsed().as_secs_f64();
    let mut circuits = Vec::with_capacity(prompts.len());
    for (b, p) in prompts.iter().enumerate() {
        let (c, g) = trace_one(model, &out, b, p, opts, &mut stats)?;
        circuits.push(c);
        on_graph(b, g)?;
    }
    Ok((circuits, stats))
}

/// Gradients ⊙ activations of every neuron, per seed: `contrib[layer]` `[n, T, d_mlp]`, and of
/// every embedding, `embed` `[n, T]`.
struct TotalEffects<'a> {
    relp: &'a RelpMlp<'a>,
    acts: &'a [Tensor],
    tokens: &'a Tensor,
    contrib: Vec<Option<Tensor>>,
    embed: Option<Tensor>,
}

impl Visitor for TotalEffects<'_> {
    fn write_site(&mut self, layer: usize, grad: &Tensor) -> Result<()> {
        let g_a = self.relp.grad_activations_shared(layer, grad)?;
        let t = g_a.dim(1).ctx("shape")?;
        let a = self.acts[layer].narrow(0, 0, t).ctx("activations")?;
        self.contrib[layer] = Some(
            g_a.broadcast_mul(&a)
                .and_then(|c| c.to_dtype(DType::F32))
                .ctx("grad × activation")?,
        );
        Ok(())
    }
    fn embed(&mut self, grad: &Tensor) -> Result<()> {
        self.embed = Some(grad_dot_embeddings(grad, self.tokens)?);
        Ok(())
    }
    fn embed_reads(&self) -> Option<Tensor> {
        Some(self.tokens.clone())
    }
    fn embed_dots(&mut self, dots: &Tensor) -> Result<()> {
        self.embed = Some(dots.to_dtype(DType::F32).ctx("grad × embedding")?);
        Ok(())
    }
}

/// `grad` `[n, t, d]` at `hook_embed` dotted with each position's embedding: `[n, t]` in f32.
fn grad_dot_embeddings(grad: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    crate::frozen::embedding_dots(grad, tokens)?
        .to_dtype(DType::F32)
        .ctx("grad × embedding")
}

/// Only the embedding end of a backward pass.
struct EmbedOnly<'a> {
    tokens: &'a Tensor,
    out: Option<Tensor>,
}

impl Visitor for EmbedOnly<'_> {
    fn write_site(&mut self, _: usize, _: &Tensor) -> Result<()> {
        Ok(())
    }
    fn embed(&mut self, grad: &Tensor) -> Result<()> {
        self.out = Some(grad_dot_embeddings(grad, self.tokens)?);
        Ok(())
    }
    fn embed_reads(&self) -> Option<Tensor> {
        Some(self.tokens.clone())
    }
    fn embed_dots(&mut self, dots: &Tensor) -> Result<()> {
        self.out = Some(dots.to_dtype(DType::F32).ctx("grad × embedding")?);
        Ok(())
    }
}

/// How input profiles are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileMode {
    /// One RelP backward pass per neuron (cheap for few neurons).
    Reverse,
    /// One RelP forward (tangent) pass per input position, all neurons at once (cheap for
    /// many neurons).
    Forward,
}

/// Input maps `∂a_n/∂e_s · e_s` `[neuron][position]` of `neurons` (layer, pos, neuron) for one
/// unbatched prompt, computed in `mode`. Exposed so that the two modes can be checked against
/// each other.
pub fn input_maps(
    model: &Transformer,
    tokens: &[u32],
    neurons: &[(usize, usize, u32)],
    rule: super::RelpRule,
    mode: ProfileMode,
) -> Result<Vec<Vec<f32>>> {
    let filter = FrozenModel::cache_filter()
        .union(&CacheFilter::sites([Site::MlpPre, Site::MlpPreLinear]))
        .union(&CacheFilter::only([HookName::Embed]));
    let out = model.forward(&Batch::single(tokens)?, &filter)?;
    let frozen = FrozenModel::new(model, &out.cache, 0)?;
    let relp = RelpMlp::new(model, &out.cache, 0, rule)?;
    let emb = out
        .cache
        .item(HookName::Embed, 0)?
        .to_dtype(model.dtype())
        .ctx("embeddings")?;
    let mut vecs = Vec::new();
    for &(l, p, i) in neurons {
        vecs.push(relp.read_vectors(l, &[p as u32], &[i])?);
    }
    let read = if vecs.is_empty() {
        None
    } else {
        Some(Tensor::cat(&vecs, 0).ctx("read vectors")?)
    };
    maps(&frozen, &relp, &emb, neurons, read.as_ref(), mode, 64)
}

fn maps(
    frozen: &FrozenModel,
    relp: &RelpMlp,
    tokens: &Tensor,
    keys: &[(usize, usize, u32)],
    read_vecs: Option<&Tensor>,
    mode: ProfileMode,
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let n_pos = tokens.dim(0).ctx("embeddings")?;
    let mut out = vec![vec![0.0f32; n_pos]; keys.len()];
    if keys.is_empty() {
        return Ok(out);
    }
    match mode {
        ProfileMode::Reverse => {
            let read = read_vecs.ok_or_else(|| Error::Invalid("no seeds".into()))?;
            for start in (0..keys.len()).step_by(batch_size) {
                let m = batch_size.min(keys.len() - start);
                let chunk = &keys[start..start + m];
                let seeds = Seeds {
                    vectors: read.narrow(0, start, m).ctx("seeds")?,
                    layers: chunk.iter().map(|k| k.0).collect(),
                    positions: chunk.iter().map(|k| k.1).collect(),
                };
                let mut v = EmbedOnly { tokens, out: None };
                frozen.vjp(&seeds, ReadSite::MlpIn, WriteSite::MlpOut, relp, &mut v)?;
                let rows = v
                    .out
                    .ok_or_else(|| Error::Invalid("no embedding gradient".into()))?
                    .to_vec2::<f32>()
                    .ctx("input maps")?;
                for (j, row) in rows.into_iter().enumerate() {
                    out[start + j][..row.len()].copy_from_slice(&row);
                }
            }
        }
        ProfileMode::Forward => {
            // Tangent s carries the embedding of position s only.
            let d = tokens.dim(1).ctx("embeddings")?;
            let rows: Vec<u32> = (0..n_pos).map(|s| (s * n_pos + s) as u32).collect();
            let idx = Tensor::new(rows.as_slice(), tokens.device()).ctx("tangent rows")?;
            let tangent = Tensor::zeros((n_pos * n_pos, d), tokens.dtype(), tokens.device())
                .and_then(|z| z.index_add(&idx, tokens, 0))
                .and_then(|z| z.reshape((n_pos, n_pos, d)))
                .ctx("tangents")?;
            let mut on_neurons = |layer: usize, da: &Tensor| -> Result<()> {
                let which: Vec<usize> = (0..keys.len()).filter(|&j| keys[j].0 == layer).collect();
                if which.is_empty() {
                    return Ok(());
                }
                let f = da.dim(2).ctx("tangent")?;
                let cols: Vec<u32> = which
                    .iter()
                    .map(|&j| (keys[j].1 * f) as u32 + keys[j].2)
                    .collect();
                let vals = da
                    .reshape((n_pos, n_pos * f))
                    .and_then(|a| a.index_select(&Tensor::new(cols.as_slice(), a.device())?, 1))
                    .and_then(|a| a.to_dtype(DType::F32))
                    .and_then(|a| a.to_vec2::<f32>())
                    .ctx("neuron tangents")?;
                for (s, row) in vals.iter().enumerate() {
                    for (c, &j) in which.iter().enumerate() {
                        out[j][s] = row[c];
                    }
                }
                Ok(())
            };
            frozen.jvp(&tangent, relp, &mut on_neurons)?;
        }
    }
    Ok(out)
}

/// A selected neuron.
#[derive(Clone, Copy)]
struct Sel {
    layer: usize,
    pos: usize,
    neuron: u32,
    act: f32,
}

fn trace_one(
    model: &Transformer,
    out: &ForwardOutput,
    b: usize,
    prompt: &PromptInput,
    opts: &NeuronOptions,
    stats: &mut TraceStats,
) -> Result<(PromptCircuit, Graph)> {
    let mut clock = std::time::Instant::now();
    let mut lap = |slot: &mut f64| {
        *slot += clock.elapsed().as_secs_f64();
        clock = std::time::Instant::now();
    };
    let cfg = &model.cfg;
    let (n_layers, n_pos) = (cfg.n_layers, prompt.tokens.len());
    let cache = &out.cache;
    let frozen = FrozenModel::new(model, cache, b)?;
    let relp = RelpMlp::new(model, cache, b, opts.rule)?;
    let dt = model.dtype();
    let dev = model.device().clone();
    let tokens = cache
        .item(HookName::Embed, b)?
        .to_dtype(dt)
        .ctx("embeddings")?;
    let acts: Vec<Tensor> = (0..n_layers)
        .map(|l| {
            cache
                .item(HookName::Block(l, Site::MlpPost), b)
                .and_then(|a| {
                    a.to_dtype(dt).map_err(|e| adag_model::Error::Candle {
                        context: "activations".into(),
                        source: e,
                    })
                })
        })
        .collect::<std::result::Result<_, _>>()?;
    let acts_f32: Vec<Vec<Vec<f32>>> = acts
        .iter()
        .map(|a| {
            a.to_dtype(DType::F32)
                .and_then(|a| a.to_vec2::<f32>())
                .ctx("activations")
        })
        .collect::<Result<_>>()?;

    // Targets and the goal, on pre-soft-cap logits at the last position.
    let normed = cache
        .item(HookName::LnFinalNormalized, b)?
        .get(n_pos - 1)
        .ctx("final norm")?;
    let w_f = model
        .weights
        .ln_final
        .effective_weight()
        .ctx("final norm weight")?;
    let x_last = normed
        .to_dtype(DType::F32)
        .and_then(|n| n * w_f)
        .ctx("unembedding input")?;
    let unembed = model
        .weights
        .unembed
        .to_dtype(DType::F32)
        .ctx("unembedding")?;
    let returned = out
        .item_logits(b)?
        .get(n_pos - 1)
        .and_then(|l| l.to_vec1::<f32>())
        .ctx("logits")?;
    // The same target choice as the attribution driver: given answers, or ADAG's top k.
    let spec = match &prompt.targets {
        Some(t) if !t.is_empty() => TargetSpec::Tokens(t.clone()),
        _ => TargetSpec::TopK(opts.k),
    };
    let chosen = select_targets(&spec, &returned, &model.weights.unembed, &|i| i.to_string())?;
    let targets: Vec<u32> = chosen.targets.iter().map(|t| t.vocab_idx).collect();
    let target_probs = chosen.probs.clone();
    let k = targets.len();
    // ADAG explains raw logits unless `center_logits` (then de-meaned, as the driver does).
    let dirs = if opts.center_logits {
        chosen
            .directions
            .to_dtype(DType::F32)
            .ctx("target directions")?
    } else {
        let idx = Tensor::new(targets.as_slice(), &dev).ctx("targets")?;
        unembed.index_select(&idx, 0).ctx("target directions")?
    };
    let target_logits = dirs
        .matmul(&x_last.unsqueeze(1).ctx("shape")?)
        .and_then(|v| v.squeeze(1))
        .and_then(|v| v.to_vec1::<f32>())
        .ctx("target logits")?;
    let goal: f32 = target_logits.iter().sum();
    let dirs = dirs.to_dtype(dt).ctx("dtype")?;

    // Total effects of every neuron and embedding on each target (RelP everywhere).
    let seeds = Seeds {
        vectors: dirs.clone(),
        layers: vec![n_layers; k],
        positions: vec![n_pos - 1; k],
    };
    let mut total = TotalEffects {
        relp: &relp,
        acts: &acts,
        tokens: &tokens,
        contrib: vec![None; n_layers],
        embed: None,
    };
    frozen.vjp(
        &seeds,
        ReadSite::MlpIn,
        WriteSite::MlpOut,
        &relp,
        &mut total,
    )?;
    let contrib: Vec<Vec<Vec<Vec<f32>>>> = total
        .contrib
        .iter()
        .map(|c| {
            c.as_ref()
                .ok_or_else(|| Error::Invalid("missing layer".into()))
                .and_then(|c| c.to_vec3::<f32>().ctx("contributions"))
        })
        .collect::<Result<_>>()?; // [layer][target][pos][neuron]
    let embed_total = total
        .embed
        .ok_or_else(|| Error::Invalid("no embedding gradient".into()))?
        .to_vec2::<f32>()
        .ctx("embedding attributions")?;

    // Selection: |a| ≥ percentage_threshold·|goal|, and a ≠ 0. The second test only matters at
    // threshold 0, where the reference keeps every neuron, zero-effect ones included; adag drops
    // exact zeros (a neuron with no effect on the target has no edge to draw), a documented
    // difference (README, "Dataset circuits").
    let threshold = opts.percentage_threshold * goal.abs();
    let mut selected = Vec::new();
    for (l, per_target) in contrib.iter().enumerate() {
        for p in 0..n_pos {
            for i in 0..cfg.d_mlp {
                let a: f32 = per_target.iter().map(|c| c[p][i]).sum();
                if a.abs() >= threshold && a != 0.0 && !opts.blacklist.contains(&(l, i as u32)) {
                    selected.push(Sel {
                        layer: l,
                        pos: p,
                        neuron: i as u32,
                        act: acts_f32[l][p][i],
                    });
                }
            }
        }
    }
    lap(&mut stats.scores_s);
    stats.neurons += selected.len();
    let total_attr = |s: &Sel| -> f32 {
        contrib[s.layer]
            .iter()
            .map(|c| c[s.pos][s.neuron as usize])
            .sum()
    };

    // The selected neurons as the nodes of the neuron basis: their seeds (RelP read vectors at
    // mlp.hook_in) and write vectors (a·W_down[:, i]), grouped as the backward pass reads them.
    let keys3: Vec<[u32; 3]> = selected
        .iter()
        .map(|s| [s.layer as u32, s.pos as u32, s.neuron])
        .collect();
    let nodes = NeuronPrompt::with_relp(relp, &[], 0, model, cache, b, Some(&keys3))?;

    // Input profiles: whichever mode needs fewer passes (one backward per selected neuron, or
    // one forward per input position); both give the same maps.
    let keys: Vec<(usize, usize, u32)> = selected
        .iter()
        .map(|s| (s.layer, s.pos, s.neuron))
        .collect();
    let mode = if keys.len() > n_pos {
        ProfileMode::Forward
    } else {
        ProfileMode::Reverse
    };
    let all: Vec<usize> = (0..selected.len()).collect();
    let read_vecs = match mode {
        ProfileMode::Reverse if !all.is_empty() => Some(nodes.seeds(&all)?),
        _ => None,
    };
    let input_maps = maps(
        &frozen,
        nodes.relp(),
        &tokens,
        &keys,
        read_vecs.as_ref(),
        mode,
        opts.batch_size,
    )?;
    lap(&mut stats.profiles_s);

    // Direct-effect rows through the one driver (every MLP stopped; sources are the selected
    // neurons' write vectors and the embeddings): the logits' rows, then every selected
    // neuron's. The graph they make is the prompt's attribution graph in the neuron basis.
    let basis = NeuronBasis {
        rule: opts.rule,
        blacklist: opts.blacklist.clone(),
        bos_nodes: true,
    };
    let driver = Driver::new(model, frozen, &basis, Box::new(nodes))?;
    let mut store = RowStore::new(driver.n_cols(), false, k + all.len());
    driver.target_rows(&dirs, opts.batch_size, &mut store, &mut |_| true)?;
    driver.node_rows(&all, opts.batch_size, &mut store, &mut |_| true)?;
    let graph = driver.graph(
        &basis,
        &store,
        all.iter().map(|&i| i as u32).collect(),
        &prompt.tokens,
        chosen,
        GraphMeta {
            settings: serde_json::json!({
                "selection": "total_effect",
                "percentage_threshold": opts.percentage_threshold,
                "rule": opts.rule,
                "center_logits": opts.center_logits,
                "batch_size": opts.batch_size,
                "n_selected_neurons": selected.len(),
            }),
            ..Default::default()
        },
    )?;
    stats.backward_flops += driver.frozen.flops();
    let mut edges = read_edges(&graph, &selected, &target_logits, &contrib, goal, opts)?;
    lap(&mut stats.edges_s);

    // Nodes: selected neurons, embeddings, logits (BOS dropped when asked).
    let keep_pos = |p: usize| !(opts.ignore_bos && p == 0);
    let mut nodes = Vec::new();
    for (s, map) in selected.iter().zip(&input_maps) {
        if !keep_pos(s.pos) {
            continue;
        }
        let a = s.act;
        nodes.push(CircuitNode {
            layer: s.layer as i32,
            position: s.pos as u32,
            index: s.neuron,
            activation: a,
            attribution: total_attr(s) / goal,
            input_profile: map.iter().map(|x| x / a).collect(),
            output_profile: (0..k)
                .map(|j| contrib[s.layer][j][s.pos][s.neuron as usize] / target_logits[j])
                .collect(),
        });
    }
    for p in (0..n_pos).filter(|&p| keep_pos(p)) {
        let e: f32 = embed_total.iter().map(|row| row[p]).sum();
        nodes.push(CircuitNode {
            layer: EMBED_LAYER,
            position: p as u32,
            index: prompt.tokens[p],
            activation: 1.0,
            attribution: e / goal,
            input_profile: vec![],
            output_profile: vec![],
        });
    }
    for (j, &t) in targets.iter().enumerate() {
        nodes.push(CircuitNode {
            layer: n_layers as i32,
            position: (n_pos - 1) as u32,
            index: t,
            activation: target_logits[j],
            attribution: target_logits[j] / goal,
            input_profile: vec![],
            output_profile: vec![],
        });
    }
    edges.retain(|e| {
        keep_pos(e.source.1 as usize)
            && (e.target.0 == n_layers as i32 || keep_pos(e.target.1 as usize))
    });
    let circuit = PromptCircuit {
        tokens: prompt.tokens.clone(),
        target_probs,
        targets,
        target_logits,
        goal,
        nodes,
        edges,
    };
    Ok((circuit, graph))
}

/// The circuit's edges, read off the prompt's neuron graph (rows: selected neurons, then the
/// targets; sources: selected neurons and token embeddings): the relative weight
/// `w = row / (value + ε)` of every nonzero direct effect, kept when `|w| ≥ edge_threshold`,
/// with `attribution = w · (target's total effect) / goal`.
fn read_edges(
    graph: &Graph,
    selected: &[Sel],
    target_logits: &[f32],
    contrib: &[Vec<Vec<Vec<f32>>>],
    goal: f32,
    opts: &NeuronOptions,
) -> Result<Vec<CircuitEdge>> {
    let (s_count, k) = (selected.len(), target_logits.len());
    let n_pos = graph.input_tokens.len();
    let n_layers = graph.meta.n_layers;
    let n = s_count + (n_layers + 1) * n_pos + k;
    if graph.adjacency.len() != n * n {
        return Err(Error::Invalid("neuron graph of an unexpected size".into()));
    }
    let (first_token, first_logit) = (s_count + n_layers * n_pos, s_count + (n_layers + 1) * n_pos);
    let eps_neuron = 1e-6 * mean_abs(selected.iter().map(|s| s.act));
    let eps_logit = 1e-6 * mean_abs(target_logits.iter().copied());
    let node_key = |j: usize| -> (i32, u32, u32) {
        if j < s_count {
            let s = &selected[j];
            (s.layer as i32, s.pos as u32, s.neuron)
        } else {
            let p = j - s_count;
            (EMBED_LAYER, p as u32, graph.input_tokens[p])
        }
    };
    let mut edges = Vec::new();
    for t in 0..s_count + k {
        let (row, value, eps, key, flow) = if let Some(s) = selected.get(t) {
            let to_output: f32 = contrib[s.layer]
                .iter()
                .map(|c| c[s.pos][s.neuron as usize])
                .sum();
            (t, s.act, eps_neuron, node_key(t), to_output)
        } else {
            let j = t - s_count;
            let key = (
                n_layers as i32,
                (n_pos - 1) as u32,
                graph.logit_targets[j].vocab_idx,
            );
            (
                first_logit + j,
                target_logits[j],
                eps_logit,
                key,
                target_logits[j],
            )
        };
        let row = &graph.adjacency[row * n..(row + 1) * n];
        let sources = row[..s_count]
            .iter()
            .chain(&row[first_token..first_token + n_pos]);
        for (src, &v) in sources.enumerate() {
            if v == 0.0 {
                continue;
            }
            let w = v / (value + eps);
            if w.abs() >= opts.edge_threshold {
                edges.push(CircuitEdge {
                    source: node_key(src),
                    target: key,
                    weight: w,
                    attribution: w * flow / goal,
                });
            }
        }
    }
    Ok(edges)
}

/// The viewer's extras for a prompt's neuron graph ([`trace_prompts_with_graphs`]): each neuron's input and
/// output profiles, and the target tokens (`token_str` decodes an id).
pub fn neuron_graph_extras(
    circuit: &PromptCircuit,
    graph: &Graph,
    token_str: &dyn Fn(u32) -> String,
) -> adag_graph::frontend::Extras {
    let mut extras = adag_graph::frontend::Extras::default();
    for i in 0..graph.n_features() {
        if let adag_graph::NodeKind::Feature {
            layer,
            pos,
            feature,
            ..
        } = graph.node_kind(i)
        {
            if let Some(n) = circuit
                .nodes
                .iter()
                .find(|n| (n.layer, n.position, n.index) == (layer as i32, pos, feature))
            {
                let mut m = serde_json::Map::new();
                m.insert("input_profile".into(), serde_json::json!(n.input_profile));
                m.insert("output_profile".into(), serde_json::json!(n.output_profile));
                extras
                    .nodes
                    .insert(adag_graph::frontend::node_id(graph, i), m);
            }
        }
    }
    let targets: Vec<String> = circuit.targets.iter().map(|&t| token_str(t)).collect();
    extras
        .metadata
        .insert("target_logit_tokens".into(), serde_json::json!(targets));
    extras
}
