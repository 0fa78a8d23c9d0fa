//! The neuron basis (ADAG): completeness identities, exactness of relative edges, RelP against
//! candle's autograd, and batch invariance, on the fixture architectures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use adag_core::{HookName, Site};
use adag_engine::neuron::{
    trace_prompts, NeuronOptions, PromptCircuit, PromptInput, RelpMlp, RelpRule,
};
use adag_engine::{FrozenModel, ReadSite, Seeds, StopMlp, Visitor, WriteSite};
use adag_model::{Batch, CacheFilter, ForwardHooks, LoadOptions, LoadedModel, Transformer};
use candle_core::{DType, Tensor, Var};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn load(name: &str) -> LoadedModel {
    LoadedModel::load(&fixture(name), &LoadOptions::default()).unwrap()
}

fn tokens(m: &LoadedModel, text: &str) -> Vec<u32> {
    m.tokenizer.prompt_ids(text, false).unwrap()
}

fn opts() -> NeuronOptions {
    NeuronOptions {
        k: 3,
        ignore_bos: false,
        percentage_threshold: 0.02,
        edge_threshold: 0.0,
        ..Default::default()
    }
}

/// Bias-free architectures: there the linear model has no constant terms.
const BIAS_FREE: [&str; 3] = ["llama", "qwen3", "gemma2"];

#[test]
fn embedding_scores_sum_to_the_goal_and_input_maps_to_the_activation() {
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "The capital of the state containing Dallas is");
        for rule in [RelpRule::HalfRule, RelpRule::StopGate] {
            let c = &trace_prompts(
                &m.model,
                &[PromptInput {
                    tokens: t.clone(),
                    targets: None,
                }],
                &NeuronOptions { rule, ..opts() },
            )
            .unwrap()[0];
            let e: f32 = c
                .nodes
                .iter()
                .filter(|n| n.layer == -1)
                .map(|n| n.attribution)
                .sum();
            assert!((e - 1.0).abs() < 1e-4, "{name} {rule:?}: Σ E / goal = {e}");
            let neurons: Vec<_> = c
                .nodes
                .iter()
                .filter(|n| n.layer >= 0 && (n.layer as usize) < m.model.cfg.n_layers)
                .collect();
            assert!(
                neurons.len() >= 5,
                "{name}: only {} neurons selected",
                neurons.len()
            );
            for n in &neurons {
                let s: f32 = n.input_profile.iter().sum();
                assert!(
                    (s - 1.0).abs() < 1e-3,
                    "{name} {rule:?}: input profile of {:?} sums to {s}",
                    (n.layer, n.position, n.index)
                );
                assert_eq!(n.output_profile.len(), 3);
            }
        }
    }
}

/// Gradient at every write site and the embeddings, for one seed.
struct Grads {
    write: HashMap<usize, Tensor>,
    embed: Option<Tensor>,
}

impl Visitor for Grads {
    fn write_site(&mut self, layer: usize, g: &Tensor) -> adag_engine::Result<()> {
        self.write.insert(layer, g.clone());
        Ok(())
    }
    fn embed(&mut self, g: &Tensor) -> adag_engine::Result<()> {
        self.embed = Some(g.clone());
        Ok(())
    }
}

fn dot(a: &Tensor, b: &Tensor) -> f32 {
    (a * b)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn direct_effects_into_a_neuron_sum_to_its_activation() {
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "36+59=95. The keys to the cabinet");
        let filter = FrozenModel::cache_filter()
            .union(&CacheFilter::sites([
                Site::MlpPre,
                Site::MlpPreLinear,
                Site::MlpPost,
                Site::MlpOut,
            ]))
            .union(&CacheFilter::only([HookName::Embed]));
        let out = m
            .model
            .forward(&Batch::single(&t).unwrap(), &filter)
            .unwrap();
        let frozen = FrozenModel::new(&m.model, &out.cache, 0).unwrap();
        let relp = RelpMlp::new(&m.model, &out.cache, 0, RelpRule::HalfRule).unwrap();
        let top = m.model.cfg.n_layers - 1;
        for (pos, neuron) in [(t.len() - 1, 3u32), (2, 77), (t.len() - 2, 120)] {
            let a = out
                .cache
                .item(HookName::Block(top, Site::MlpPost), 0)
                .unwrap()
                .get(pos)
                .unwrap()
                .get(neuron as usize)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let v = relp.read_vectors(top, &[pos as u32], &[neuron]).unwrap();
            let mut g = Grads {
                write: HashMap::new(),
                embed: None,
            };
            frozen
                .vjp(
                    &Seeds {
                        vectors: v,
                        layers: vec![top],
                        positions: vec![pos],
                    },
                    ReadSite::MlpIn,
                    WriteSite::MlpOut,
                    &StopMlp,
                    &mut g,
                )
                .unwrap();
            let tp = pos + 1;
            let mut total = 0.0;
            for l in 0..top {
                let mlp_out = out
                    .cache
                    .item(HookName::Block(l, Site::MlpOut), 0)
                    .unwrap()
                    .narrow(0, 0, tp)
                    .unwrap();
                total += dot(&g.write[&l].get(0).unwrap(), &mlp_out);
            }
            let emb = out
                .cache
                .item(HookName::Embed, 0)
                .unwrap()
                .narrow(0, 0, tp)
                .unwrap();
            total += dot(&g.embed.unwrap().get(0).unwrap(), &emb);
            assert!(
                (total - a).abs() < 1e-4 * (1.0 + a.abs()),
                "{name}: Σ direct effects {total} vs activation {a}"
            );
        }
    }
}

/// Freezes scales, patterns and MLP outputs at a clean run; removes one vector from one MLP
/// output; records the MLP inputs and the final normalised residual.
struct Frozen<'a> {
    clean: &'a adag_model::ActivationCache,
    remove: Option<(usize, usize, Tensor)>,
    mlp_in: HashMap<usize, Tensor>,
    final_normed: Option<Tensor>,
}

impl ForwardHooks for Frozen<'_> {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        match hook {
            HookName::LnFinalScale
            | HookName::Block(
                _,
                Site::Ln1Scale
                | Site::Ln1PostScale
                | Site::Ln2Scale
                | Site::Ln2PostScale
                | Site::AttnPattern,
            ) => self.clean.get(hook).cloned(),
            HookName::Block(l, Site::MlpIn) => {
                self.mlp_in.insert(l, value.clone());
                Ok(value)
            }
            HookName::Block(l, Site::MlpOut) => {
                let mut v = self.clean.get(hook)?.clone();
                if let Some((layer, pos, vec)) = &self.remove {
                    if *layer == l {
                        let (_, t, d) = v.dims3().unwrap();
                        let idx = Tensor::new(&[*pos as u32], v.device()).unwrap();
                        let delta = Tensor::zeros((t, d), DType::F32, v.device())
                            .unwrap()
                            .index_add(&idx, &vec.unsqueeze(0).unwrap(), 0)
                            .unwrap();
                        v = (v - delta.unsqueeze(0).unwrap()).unwrap();
                    }
                }
                Ok(v)
            }
            HookName::LnFinalNormalized => {
                self.final_normed = Some(value.clone());
                Ok(value)
            }
            _ => Ok(value),
        }
    }
}

#[test]
fn relative_edges_equal_the_change_when_the_source_is_removed() {
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "The keys to the cabinet are");
        let c: PromptCircuit = trace_prompts(
            &m.model,
            &[PromptInput {
                tokens: t.clone(),
                targets: None,
            }],
            &opts(),
        )
        .unwrap()
        .remove(0);
        let clean = oracle_run(&m.model, &t);
        let relp = RelpMlp::new(&m.model, &clean.cache, 0, RelpRule::HalfRule).unwrap();
        let base = run_frozen(&m.model, &t, &clean.cache, None);
        let n_layers = m.model.cfg.n_layers as i32;
        let mut checked = 0;
        for e in c
            .edges
            .iter()
            .filter(|e| e.source.0 >= 0)
            .step_by(7)
            .take(40)
        {
            let (ls, ps, is) = e.source;
            let src_act = c
                .nodes
                .iter()
                .find(|n| (n.layer, n.position, n.index) == e.source)
                .unwrap()
                .activation;
            let w_down = m.model.weights.blocks[ls as usize]
                .mlp
                .down
                .weight
                .t()
                .unwrap()
                .get(is as usize)
                .unwrap();
            let removed = run_frozen(
                &m.model,
                &t,
                &clean.cache,
                Some((ls as usize, ps as usize, (w_down * src_act as f64).unwrap())),
            );
            let (lt, pt, it) = e.target;
            let (change, value) = if lt == n_layers {
                let j = c.targets.iter().position(|&x| x == it).unwrap();
                let w = m.model.weights.ln_final.effective_weight().unwrap();
                let u = m.model.weights.unembed.get(it as usize).unwrap();
                let logit = |f: &Frozen| {
                    dot(
                        &(f.final_normed
                            .as_ref()
                            .unwrap()
                            .get(0)
                            .unwrap()
                            .get(pt as usize)
                            .unwrap()
                            * &w)
                            .unwrap(),
                        &u,
                    )
                };
                (logit(&removed) - logit(&base), c.target_logits[j])
            } else {
                (
                    read_change(&relp, &removed, &base, (lt as usize, pt, it)),
                    c.nodes
                        .iter()
                        .find(|n| (n.layer, n.position, n.index) == e.target)
                        .unwrap()
                        .activation,
                )
            };
            let predicted = -e.weight * value;
            assert!(
                (change - predicted).abs() < 1e-4 + 1e-3 * predicted.abs(),
                "{name}: edge {:?} → {:?}: Δ {change} vs −w·t {predicted}",
                e.source,
                e.target
            );
            checked += 1;
        }
        assert!(checked >= 10, "{name}: only {checked} edges checked");
    }
}

/// A clean run keeping what the frozen-model oracle reads: the frozen quantities, the gate and
/// up projections (RelP read vectors) and the MLP outputs it freezes.
fn oracle_run(model: &Transformer, t: &[u32]) -> adag_model::ForwardOutput {
    let filter = FrozenModel::cache_filter().union(&CacheFilter::sites([
        Site::MlpPre,
        Site::MlpPreLinear,
        Site::MlpOut,
    ]));
    model.forward(&Batch::single(t).unwrap(), &filter).unwrap()
}

/// How much neuron `(layer, pos, neuron)`'s RelP read of its MLP input differs between two
/// frozen runs: what a direct-effect edge into that neuron predicts.
fn read_change(
    relp: &RelpMlp,
    run: &Frozen,
    base: &Frozen,
    (layer, pos, neuron): (usize, u32, u32),
) -> f32 {
    let v = relp
        .read_vectors(layer, &[pos], &[neuron])
        .unwrap()
        .get(0)
        .unwrap();
    let x = |f: &Frozen| f.mlp_in[&layer].get(0).unwrap().get(pos as usize).unwrap();
    dot(&v, &(x(run) - x(base)).unwrap())
}

fn run_frozen<'a>(
    model: &Transformer,
    t: &[u32],
    clean: &'a adag_model::ActivationCache,
    remove: Option<(usize, usize, Tensor)>,
) -> Frozen<'a> {
    let mut h = Frozen {
        clean,
        remove,
        mlp_in: HashMap::new(),
        final_normed: None,
    };
    model
        .forward_with(&Batch::single(t).unwrap(), &CacheFilter::none(), &mut h)
        .unwrap();
    h
}

/// The RelP-linearised model written with candle's autograd: patterns and scales detached, the
/// gate coefficient detached, the product split by the half rule, a zero variable added to
/// every neuron so its gradient can be read.
struct AutogradRelp {
    embed: Option<Var>,
    zeros: HashMap<usize, Var>,
    gate: HashMap<usize, Tensor>,
    up: HashMap<usize, Tensor>,
    final_normed: Option<Tensor>,
    activation: adag_model::config::Activation,
}

impl ForwardHooks for AutogradRelp {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        Ok(match hook {
            HookName::Embed => {
                let v = Var::from_tensor(&value).unwrap();
                let t = v.as_tensor().clone();
                self.embed = Some(v);
                t
            }
            HookName::LnFinalScale
            | HookName::Block(
                _,
                Site::Ln1Scale
                | Site::Ln1PostScale
                | Site::Ln2Scale
                | Site::Ln2PostScale
                | Site::AttnPattern,
            ) => value.detach(),
            HookName::Block(l, Site::MlpPre) => {
                self.gate.insert(l, value.clone());
                value
            }
            HookName::Block(l, Site::MlpPreLinear) => {
                self.up.insert(l, value.clone());
                value
            }
            HookName::Block(l, Site::MlpPost) => {
                let z = &self.gate[&l];
                let u = &self.up[&l];
                let act = self.activation.apply(z).unwrap();
                let c = (act / (z + 1e-10).unwrap()).unwrap().detach();
                let g = (c * z).unwrap();
                let relp = (((&g * u.detach()).unwrap() + (g.detach() * u).unwrap()).unwrap()
                    * 0.5)
                    .unwrap();
                let zero = Var::zeros(relp.dims(), DType::F32, relp.device()).unwrap();
                let out = (relp + zero.as_tensor()).unwrap();
                self.zeros.insert(l, zero);
                out
            }
            HookName::LnFinalNormalized => {
                self.final_normed = Some(value.clone());
                value
            }
            _ => value,
        })
    }
}

#[test]
fn relp_scores_match_autograd_of_the_same_frozen_model() {
    for name in ["llama", "gemma2", "qwen2"] {
        let m = load(name);
        let model = m.model.clone().with_autograd(true);
        let t = tokens(&m, "The keys to the cabinet are");
        let o = NeuronOptions {
            percentage_threshold: 0.0,
            ..opts()
        };
        let c = trace_prompts(
            &model,
            &[PromptInput {
                tokens: t.clone(),
                targets: None,
            }],
            &o,
        )
        .unwrap()
        .remove(0);
        let mut h = AutogradRelp {
            embed: None,
            zeros: HashMap::new(),
            gate: HashMap::new(),
            up: HashMap::new(),
            final_normed: None,
            activation: model.cfg.activation,
        };
        model
            .forward_with(&Batch::single(&t).unwrap(), &CacheFilter::none(), &mut h)
            .unwrap();
        let x = (h
            .final_normed
            .as_ref()
            .unwrap()
            .get(0)
            .unwrap()
            .get(t.len() - 1)
            .unwrap()
            * model.weights.ln_final.effective_weight().unwrap())
        .unwrap();
        let mut goal = Tensor::zeros((), DType::F32, &candle_core::Device::Cpu).unwrap();
        for &tok in &c.targets {
            goal = (goal
                + (&x * model.weights.unembed.get(tok as usize).unwrap().detach())
                    .unwrap()
                    .sum_all()
                    .unwrap())
            .unwrap();
        }
        let goal_value = goal.to_scalar::<f32>().unwrap();
        assert!(
            (goal_value - c.goal).abs() < 1e-4 * (1.0 + c.goal.abs()),
            "{name}: goal {goal_value} vs {}",
            c.goal
        );
        let grads = goal.backward().unwrap();
        // Embedding scores.
        let e = h.embed.as_ref().unwrap();
        let ge = (grads.get(e.as_tensor()).unwrap() * e.as_tensor())
            .unwrap()
            .sum(2)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for n in c.nodes.iter().filter(|n| n.layer == -1) {
            let want = ge[n.position as usize] / c.goal;
            assert!(
                (n.attribution - want).abs() < 1e-4,
                "{name}: embedding {} {} vs autograd {want}",
                n.position,
                n.attribution
            );
        }
        // Neuron scores: grad × activation.
        let mut checked = 0;
        for n in c
            .nodes
            .iter()
            .filter(|n| n.layer >= 0 && (n.layer as usize) < model.cfg.n_layers)
        {
            let z = &h.zeros[&(n.layer as usize)];
            let g = grads
                .get(z.as_tensor())
                .unwrap()
                .get(0)
                .unwrap()
                .get(n.position as usize)
                .unwrap()
                .get(n.index as usize)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let want = g * n.activation / c.goal;
            assert!(
                (n.attribution - want).abs() < 1e-4 + 1e-3 * want.abs(),
                "{name}: neuron {:?}: {} vs autograd {want}",
                (n.layer, n.position, n.index),
                n.attribution
            );
            checked += 1;
        }
        assert!(checked > 50, "{name}: {checked}");
    }
}

#[test]
fn batching_prompts_changes_nothing() {
    let m = load("qwen3");
    let prompts: Vec<PromptInput> = ["36+59=", "The keys to the cabinet are", "Dallas is in"]
        .iter()
        .map(|p| PromptInput {
            tokens: tokens(&m, p),
            targets: None,
        })
        .collect();
    let o = NeuronOptions {
        edge_threshold: 0.01,
        ..opts()
    };
    let together = trace_prompts(&m.model, &prompts, &o).unwrap();
    for (p, t) in prompts.iter().zip(&together) {
        let alone = trace_prompts(
            &m.model,
            std::slice::from_ref(p),
            &NeuronOptions {
                batch_size: 7,
                ..o.clone()
            },
        )
        .unwrap()
        .remove(0);
        assert_eq!(alone.targets, t.targets);
        assert_eq!(alone.nodes.len(), t.nodes.len());
        for (a, b) in alone.nodes.iter().zip(&t.nodes) {
            assert_eq!(
                (a.layer, a.position, a.index),
                (b.layer, b.position, b.index)
            );
            assert!((a.attribution - b.attribution).abs() < 1e-5);
            for (x, y) in a.input_profile.iter().zip(&b.input_profile) {
                assert!((x - y).abs() < 1e-4);
            }
        }
        assert_eq!(alone.edges.len(), t.edges.len());
    }
}

#[test]
fn answer_targets_and_bos_handling() {
    let m = load("llama");
    let t = tokens(&m, "36+59=");
    let c = trace_prompts(
        &m.model,
        &[PromptInput {
            tokens: t.clone(),
            targets: Some(vec![26, 43]),
        }],
        &NeuronOptions {
            ignore_bos: true,
            ..opts()
        },
    )
    .unwrap()
    .remove(0);
    assert_eq!(c.targets, vec![26, 43]);
    assert!(c
        .nodes
        .iter()
        .all(|n| n.position > 0 || n.layer == m.model.cfg.n_layers as i32));
    assert!(c.edges.iter().all(|e| e.source.1 > 0));
    let logits: Vec<&_> = c
        .nodes
        .iter()
        .filter(|n| n.layer == m.model.cfg.n_layers as i32)
        .collect();
    assert_eq!(logits.len(), 2);
    assert!((logits.iter().map(|n| n.attribution).sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn forward_and_reverse_mode_input_maps_agree() {
    use adag_engine::neuron::{input_maps, ProfileMode};
    for name in ["llama", "qwen2", "gemma2"] {
        let m = load(name);
        let t = tokens(&m, "The keys to the cabinet are");
        let n = t.len();
        let neurons: Vec<(usize, usize, u32)> = (0..m.model.cfg.n_layers)
            .flat_map(|l| [(l, n - 1, 5), (l, 2, 90), (l, n / 2, 127)])
            .collect();
        for rule in [RelpRule::HalfRule, RelpRule::StopGate, RelpRule::NoHalfRule] {
            let rev = input_maps(&m.model, &t, &neurons, rule, ProfileMode::Reverse).unwrap();
            let fwd = input_maps(&m.model, &t, &neurons, rule, ProfileMode::Forward).unwrap();
            let mut largest = 0.0f32;
            for (a, b) in rev.iter().zip(&fwd) {
                for (x, y) in a.iter().zip(b) {
                    largest = largest.max(x.abs());
                    assert!(
                        (x - y).abs() < 1e-5 + 1e-4 * x.abs(),
                        "{name} {rule:?}: reverse {x} vs forward {y}"
                    );
                }
            }
            assert!(largest > 1e-2, "{name}: maps are all ~0");
        }
    }
}

/// The one driver in the neuron basis: circuit-tracer's graph with neurons as nodes. Every
/// edge is the exact direct effect: removing the source's write from the frozen model (MLP
/// outputs frozen) changes the target's read (a neuron's RelP read at `mlp.hook_in`, a logit's
/// de-meaned direction at the final norm) by minus the edge.
#[test]
fn neuron_graph_edges_equal_the_change_when_the_source_is_removed() {
    use adag_engine::{attribute, AttributeOptions, NeuronBasis, TargetSpec};
    use adag_graph::{GraphMeta, NodeKind};
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "The keys to the cabinet are");
        let opts = AttributeOptions {
            targets: TargetSpec::Salient {
                max_n_logits: 3,
                desired_logit_prob: 0.95,
            },
            max_feature_nodes: Some(64),
            batch_size: 32,
            ..Default::default()
        };
        let basis = NeuronBasis::default();
        let g = attribute(&m.model, &t, &basis, &opts, GraphMeta::default(), &|i| {
            i.to_string()
        })
        .unwrap();
        assert_eq!(g.meta.basis, "neuron");
        assert_eq!(
            g.n_features(),
            64,
            "{name}: the influence budget picks 64 neurons"
        );
        let clean = oracle_run(&m.model, &t);
        let relp = RelpMlp::new(&m.model, &clean.cache, 0, RelpRule::HalfRule).unwrap();
        let base = run_frozen(&m.model, &t, &clean.cache, None);
        let n = g.n_nodes();
        let w_f = m.model.weights.ln_final.effective_weight().unwrap();
        let mean_u = m
            .model
            .weights
            .unembed
            .mean_keepdim(0)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let mut checked = (0, 0);
        for src in (0..g.n_features()).step_by(5) {
            let ([ls, ps, is], a) = g.feature(src).unwrap();
            let write = (m.model.weights.blocks[ls as usize]
                .mlp
                .down
                .weight
                .t()
                .unwrap()
                .get(is as usize)
                .unwrap()
                * a as f64)
                .unwrap();
            let removed = run_frozen(
                &m.model,
                &t,
                &clean.cache,
                Some((ls as usize, ps as usize, write)),
            );
            for tgt in 0..n {
                let edge = g.edge(tgt, src);
                let change = match g.node_kind(tgt) {
                    NodeKind::Feature {
                        layer,
                        pos,
                        feature,
                        ..
                    } if layer > ls => {
                        checked.0 += 1;
                        read_change(&relp, &removed, &base, (layer as usize, pos, feature))
                    }
                    NodeKind::Logit { index } => {
                        let vocab_idx = g.logit_targets[index as usize].vocab_idx;
                        let u = (m.model.weights.unembed.get(vocab_idx as usize).unwrap()
                            - &mean_u)
                            .unwrap();
                        let last = t.len() - 1;
                        let logit = |f: &Frozen| {
                            let x = f.final_normed.as_ref().unwrap().get(0).unwrap();
                            dot(&(x.get(last).unwrap() * &w_f).unwrap(), &u)
                        };
                        checked.1 += 1;
                        logit(&removed) - logit(&base)
                    }
                    _ => {
                        assert_eq!(edge, 0.0, "{name}: no edge into {tgt} from a later node");
                        continue;
                    }
                };
                assert!(
                    (change + edge).abs() < 1e-4 + 1e-3 * edge.abs(),
                    "{name}: edge {src} → {tgt}: Δ {change} vs −edge {}",
                    -edge
                );
            }
        }
        assert!(
            checked.0 > 20 && checked.1 > 3,
            "{name}: checked {checked:?}"
        );
        // No error nodes: their rows and columns are empty, so the graph is complete and all
        // influence that reaches the inputs starts at tokens.
        assert!(g
            .adjacency
            .chunks(n)
            .all(|row| row[g.error_index(0, 0)..g.token_index(0)]
                .iter()
                .all(|&x| x == 0.0)));
        let scores = adag_graph::graph_scores(&g).unwrap();
        assert_eq!(
            (scores.completeness, scores.replacement),
            (1.0, 1.0),
            "{name}"
        );
        let pruned = adag_graph::prune(&g, 0.8, 0.98).unwrap();
        let kept = pruned.node_mask[..g.n_features()]
            .iter()
            .filter(|&&k| k)
            .count();
        assert!(
            kept > 0 && kept < g.n_features(),
            "{name}: pruning kept {kept} neurons"
        );
    }
}

/// Two algorithms, one answer: the ADAG circuit read off the driver's neuron graph (total
/// effects by path recursion over direct-effect edges) equals the neuron tracer's circuit
/// (total effects as RelP gradient × activation through the whole model) — same nodes,
/// attributions, profiles and edges. This is what makes feature circuits (the same reader on
/// transcoder graphs) ADAG circuits.
/// circuit-tracer's graph over every active neuron (BOS included, as the ADAG tracer keeps
/// it), explaining the top `k` logits de-meaned.
fn full_neuron_graph(model: &Transformer, t: &[u32], k: usize) -> adag_graph::Graph {
    use adag_engine::{attribute, AttributeOptions, NeuronBasis, TargetSpec};
    let basis = NeuronBasis {
        bos_nodes: true,
        ..Default::default()
    };
    let opts = AttributeOptions {
        targets: TargetSpec::TopK(k),
        max_feature_nodes: None,
        ..Default::default()
    };
    attribute(model, t, &basis, &opts, Default::default(), &|i| {
        i.to_string()
    })
    .unwrap()
}

#[test]
fn circuits_read_off_the_graph_equal_the_tracers() {
    use adag_engine::{circuit_from_graph, CircuitOptions};
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "The keys to the cabinet are");
        let nopts = NeuronOptions {
            center_logits: true,
            ..opts()
        };
        let traced = trace_prompts(
            &m.model,
            &[PromptInput {
                tokens: t.clone(),
                targets: None,
            }],
            &nopts,
        )
        .unwrap()
        .remove(0);
        let g = full_neuron_graph(&m.model, &t, nopts.k);
        let read =
            circuit_from_graph(&g, &traced.target_logits, &CircuitOptions::from(&nopts)).unwrap();
        assert_eq!(read.targets, traced.targets, "{name}");
        let close = |x: f32, y: f32| (x - y).abs() <= 2e-3 * (1.0 + x.abs().max(y.abs()));
        let key = |n: &adag_engine::circuit::CircuitNode| (n.layer, n.position, n.index);
        let by_key: HashMap<_, _> = read.nodes.iter().map(|n| (key(n), n)).collect();
        assert_eq!(read.nodes.len(), traced.nodes.len(), "{name}: node count");
        let neurons = traced
            .nodes
            .iter()
            .filter(|n| n.layer >= 0 && n.layer < g.meta.n_layers as i32);
        assert!(
            neurons.count() >= 5,
            "{name}: too few neurons selected to compare"
        );
        for n in &traced.nodes {
            let r = by_key
                .get(&key(n))
                .unwrap_or_else(|| panic!("{name}: {:?} missing", key(n)));
            assert!(
                close(r.attribution, n.attribution),
                "{name}: attribution of {:?}: {} vs {}",
                key(n),
                r.attribution,
                n.attribution
            );
            for (x, y) in r
                .input_profile
                .iter()
                .zip(&n.input_profile)
                .chain(r.output_profile.iter().zip(&n.output_profile))
            {
                assert!(close(*x, *y), "{name}: profile of {:?}: {x} vs {y}", key(n));
            }
        }
        let edges: HashMap<_, _> = read
            .edges
            .iter()
            .map(|e| ((e.source, e.target), e))
            .collect();
        assert_eq!(read.edges.len(), traced.edges.len(), "{name}: edge count");
        for e in &traced.edges {
            let r = edges[&(e.source, e.target)];
            assert!(
                close(r.weight, e.weight) && close(r.attribution, e.attribution),
                "{name}: edge {:?}",
                (e.source, e.target)
            );
        }
    }
}

/// `adag trace`'s per-prompt graph is the graph its circuit is read from: its feature nodes
/// are the circuit's neurons, every circuit edge is that graph's entry over the target's value,
/// and its rows are the same exact direct effects as circuit-tracer-style attribution over all
/// active neurons computes (selection changes which rows exist, not their values).
#[test]
fn the_traced_graph_is_the_graph_its_circuit_is_read_from() {
    use adag_engine::neuron::trace_prompts_with_graphs;
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "The keys to the cabinet are");
        let nopts = NeuronOptions {
            center_logits: true,
            edge_threshold: 0.01,
            ..opts()
        };
        let input = PromptInput {
            tokens: t.clone(),
            targets: None,
        };
        let (mut circuits, mut graphs, _) =
            trace_prompts_with_graphs(&m.model, &[input], &nopts).unwrap();
        let (c, g) = (circuits.remove(0), graphs.remove(0));
        g.validate().unwrap();
        let n = g.n_nodes();
        let f = g.n_features();
        let (n_layers, n_pos) = (g.meta.n_layers, t.len());
        let neuron_keys: Vec<[u32; 3]> = c
            .nodes
            .iter()
            .filter(|x| x.layer >= 0 && (x.layer as usize) < n_layers)
            .map(|x| [x.layer as u32, x.position, x.index])
            .collect();
        let graph_keys: Vec<[u32; 3]> = (0..f).map(|i| g.feature(i).unwrap().0).collect();
        assert_eq!(graph_keys, neuron_keys, "{name}: feature nodes");
        assert!(f >= 5, "{name}: too few neurons selected");

        // Node index in the graph of a circuit node key.
        let index = |k: (i32, u32, u32)| -> usize {
            if k.0 == -1 {
                f + n_layers * n_pos + k.1 as usize
            } else if k.0 as usize == n_layers {
                let j = c.targets.iter().position(|&x| x == k.2).unwrap();
                f + (n_layers + 1) * n_pos + j
            } else {
                graph_keys
                    .iter()
                    .position(|x| *x == [k.0 as u32, k.1, k.2])
                    .unwrap()
            }
        };
        let value = |k: (i32, u32, u32)| -> f32 {
            if k.0 as usize == n_layers {
                c.target_logits[c.targets.iter().position(|&x| x == k.2).unwrap()]
            } else {
                g.feature(index(k)).unwrap().1
            }
        };
        assert!(c.edges.len() > 10, "{name}: too few edges");
        for e in &c.edges {
            let entry = g.adjacency[index(e.target) * n + index(e.source)];
            let expect = e.weight * value(e.target);
            assert!(
                (entry - expect).abs() <= 1e-4 * (entry.abs() + 1e-3),
                "{name}: edge {:?}: graph {entry}, circuit {expect}",
                (e.source, e.target)
            );
        }

        // The same rows from the influence-ranked driver over every active neuron.
        let full = full_neuron_graph(&m.model, &t, nopts.k);
        let nf = full.n_nodes();
        let ff = full.n_features();
        let full_index: HashMap<[u32; 3], usize> =
            (0..ff).map(|i| (full.feature(i).unwrap().0, i)).collect();
        let col = |j: usize| -> usize {
            if j < f {
                full_index[&graph_keys[j]]
            } else {
                ff + (j - f)
            }
        };
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()));
        let errors = f..f + n_layers * n_pos;
        for r in 0..n {
            let fr = col(r);
            let full_row = &full.adjacency[fr * nf..(fr + 1) * nf];
            // The error node of (layer, pos) carries the neurons the tracer left out: its
            // entry is the sum of theirs in the graph over every active neuron.
            let mut left_out = vec![0.0f32; n_layers * n_pos];
            for (i, &v) in full_row[..ff].iter().enumerate() {
                let (k, _) = full.feature(i).unwrap();
                if !graph_keys.contains(&k) {
                    left_out[k[0] as usize * n_pos + k[1] as usize] += v;
                }
            }
            for s in 0..n {
                let a = g.adjacency[r * n + s];
                let b = if errors.contains(&s) {
                    left_out[s - f]
                } else {
                    full_row[col(s)]
                };
                assert!(
                    close(a, b),
                    "{name}: row {r} col {s}: traced {a}, attribute {b}"
                );
            }
            // Accounting: with the error nodes, every row adds up to its target's value (a
            // neuron's activation, by RelP's conservation; a de-meaned logit), as these
            // fixtures have no biases.
            let total: f32 = g.adjacency[r * n..(r + 1) * n].iter().sum();
            let value = if r < f {
                g.feature(r).unwrap().1
            } else if r >= n - c.targets.len() {
                c.target_logits[r - (n - c.targets.len())]
            } else {
                continue;
            };
            assert!(
                (total - value).abs() <= 1e-3 * (1.0 + value.abs()),
                "{name}: row {r} adds up to {total}, its target is {value}"
            );
        }
    }
}

/// Interventions on neurons: in the constrained mode an ablation moves every logit and every
/// downstream neuron by minus the neuron graph's edge (the linear model the graph describes);
/// open loop, scaling by 1 changes nothing and ablating the neuron zeroes it.
#[test]
fn neuron_interventions_match_the_graph() {
    use adag_engine::intervene::{intervene, Action, Intervention, Mode, Position};
    use adag_engine::{attribute, AttributeOptions, NeuronBasis, TargetSpec};
    use adag_graph::{GraphMeta, NodeKind};
    for name in BIAS_FREE {
        let m = load(name);
        let t = tokens(&m, "The keys to the cabinet are");
        let basis = NeuronBasis::default();
        let opts = AttributeOptions {
            targets: TargetSpec::TopK(2),
            max_feature_nodes: Some(40),
            ..Default::default()
        };
        let g = attribute(&m.model, &t, &basis, &opts, GraphMeta::default(), &|i| {
            i.to_string()
        })
        .unwrap();
        let base = intervene(&m.model, &t, &basis, &[], Mode::Constrained).unwrap();
        let base_logits = base.logits.to_vec2::<f32>().unwrap();
        let mean = |row: &[f32]| row.iter().sum::<f32>() / row.len() as f32;
        let last = t.len() - 1;
        let mut checked = 0;
        for src in (0..g.n_features()).step_by(9) {
            let ([layer, pos, feature], _) = g.feature(src).unwrap();
            let iv = Intervention {
                layer: layer as usize,
                pos: Position::At(pos as usize),
                feature,
                action: Action::Scale(0.0),
            };
            let out = intervene(&m.model, &t, &basis, &[iv], Mode::Constrained).unwrap();
            let logits = out.logits.to_vec2::<f32>().unwrap();
            let acts: Vec<Vec<Vec<f32>>> = out
                .activations
                .iter()
                .map(|a| a.to_vec2().unwrap())
                .collect();
            let base_acts: Vec<Vec<Vec<f32>>> = base
                .activations
                .iter()
                .map(|a| a.to_vec2().unwrap())
                .collect();
            assert_eq!(acts[layer as usize][pos as usize][feature as usize], 0.0);
            for tgt in 0..g.n_nodes() {
                let edge = g.edge(tgt, src);
                let change = match g.node_kind(tgt) {
                    NodeKind::Feature {
                        layer: l,
                        pos: p,
                        feature: f,
                        ..
                    } if l > layer => {
                        acts[l as usize][p as usize][f as usize]
                            - base_acts[l as usize][p as usize][f as usize]
                    }
                    NodeKind::Logit { index } => {
                        let v = g.logit_targets[index as usize].vocab_idx as usize;
                        (logits[last][v] - mean(&logits[last]))
                            - (base_logits[last][v] - mean(&base_logits[last]))
                    }
                    _ => continue,
                };
                assert!(
                    (change + edge).abs() < 1e-3 + 1e-3 * edge.abs(),
                    "{name}: ablating {src} moves {tgt} by {change}, edge {edge}"
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "{name}: {checked} checks");
        // Open loop: ×1 is the identity; ×0 at every position zeroes the neuron there.
        let ([layer, _, feature], _) = g.feature(0).unwrap();
        let open = Mode::OpenLoop {
            freeze_attention: false,
        };
        let clean = intervene(&m.model, &t, &basis, &[], open).unwrap();
        let iv = |k: f32| Intervention {
            layer: layer as usize,
            pos: Position::From(0),
            feature,
            action: Action::Scale(k),
        };
        let same = intervene(&m.model, &t, &basis, &[iv(1.0)], open).unwrap();
        assert_eq!(
            same.logits.to_vec2::<f32>().unwrap(),
            clean.logits.to_vec2::<f32>().unwrap()
        );
        let zero = intervene(&m.model, &t, &basis, &[iv(0.0)], open).unwrap();
        let z = zero.activations[layer as usize].to_vec2::<f32>().unwrap();
        assert!(z.iter().all(|row| row[feature as usize] == 0.0));
    }
}
