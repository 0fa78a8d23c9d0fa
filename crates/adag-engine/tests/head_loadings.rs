//! Head loadings are exact.
//!
//! (1) For every edge of a graph, the per-(layer, head) parts plus the residual/direct part sum
//! to the edge; (2) the part of head `h` at layer `m` of an edge whose source writes just below
//! `m` (layer `m − 1`, or a token for `m = 0`) equals the change of that edge when the head's OV
//! is zeroed in the frozen model (`W_O`'s columns for the head set to zero, patterns and norms
//! still the clean run's). Run on every fixture architecture (all grouped-query), with skip and
//! cross-layer transcoders and with MLP neurons as the basis.

use std::path::{Path, PathBuf};

use adag_engine::attention::head_loadings;
use adag_engine::reading::RowCollector;
use adag_engine::{
    attribute, AttributeOptions, Basis, FrozenModel, NeuronBasis, Seeds, TargetSpec, TranscoderSet,
};
use adag_graph::{Graph, GraphMeta, NodeKind};
use adag_model::{Batch, LoadOptions, LoadedModel, Transformer};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::{Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn transcoders(
    model: &LoadedModel,
    cross_layer: bool,
    skip: bool,
    hooks: (&str, &str),
) -> (tempfile::TempDir, TranscoderSet) {
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(
        dir.path(),
        &RandomSpec {
            cross_layer,
            n_layers: model.model.cfg.n_layers,
            d_model: model.model.cfg.d_model,
            d_tc: 48,
            activation: "relu".into(),
            k: 6,
            skip,
            input_hook: hooks.0.into(),
            output_hook: hooks.1.into(),
            density: 0.1,
            seed: 11,
        },
    )
    .unwrap();
    let tc = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    (dir, tc)
}

/// The model with head `head` of layer `layer` unable to write: its `W_O` columns zeroed.
fn without_head(model: &Transformer, layer: usize, head: usize) -> Transformer {
    let mut m = model.clone();
    let (h, dh) = (model.cfg.n_heads, model.cfg.d_head);
    let mask: Vec<f32> = (0..h * dh)
        .map(|i| if i / dh == head { 0.0 } else { 1.0 })
        .collect();
    let mask = Tensor::from_vec(mask, (1, h * dh), &Device::Cpu).unwrap();
    let o = &mut m.weights.blocks[layer].attn.o.weight;
    *o = o.broadcast_mul(&mask).unwrap();
    m
}

/// Feature rows `[n_active × n_cols]` of the frozen `model` at the clean run of `clean_model`.
fn feature_rows(
    clean_model: &Transformer,
    model: &Transformer,
    basis: &dyn Basis,
    tokens: &[u32],
) -> (Vec<f32>, usize) {
    let filter = FrozenModel::cache_filter().union(&basis.cache_filter());
    let out = clean_model
        .forward(&Batch::single(tokens).unwrap(), &filter)
        .unwrap();
    let frozen = FrozenModel::new(model, &out.cache, 0).unwrap();
    let nodes = basis.prompt(clean_model, &out.cache, 0).unwrap();
    let active = nodes.active();
    let (n_layers, n_pos) = (model.cfg.n_layers, tokens.len());
    let n_cols = active.len() + (n_layers + 1) * n_pos;
    let all: Vec<usize> = (0..active.len()).collect();
    let seeds = Seeds {
        vectors: nodes.seeds(&all).unwrap(),
        layers: active.iter().map(|a| a[0] as usize).collect(),
        positions: active.iter().map(|a| a[1] as usize).collect(),
    };
    let mut rows = vec![0.0f32; active.len() * n_cols];
    let mut c = RowCollector::new(
        nodes.groups(),
        nodes.tokens(),
        active.len() + n_layers * n_pos,
        n_cols,
        &mut rows,
    );
    let (read, write) = basis.sites();
    frozen
        .vjp(&seeds, read, write, nodes.mlp_path(), &mut c)
        .unwrap();
    (rows, n_cols)
}

fn check(name: &str, model: &LoadedModel, basis: &dyn Basis) {
    let m = &model.model;
    let tokens = adag_engine::prepare_tokens(
        &model.tokenizer,
        "The capital of the state containing Dallas",
    )
    .unwrap();
    let opts = AttributeOptions {
        targets: TargetSpec::Salient {
            max_n_logits: 3,
            desired_logit_prob: 0.99,
        },
        batch_size: 16,
        ..Default::default()
    };
    let g: Graph = attribute(m, &tokens, basis, &opts, GraphMeta::default(), &|i| {
        i.to_string()
    })
    .unwrap();
    let n = g.n_nodes();
    // Every non-zero edge into a feature or logit.
    let edges: Vec<(usize, usize)> = (0..n)
        .filter(|&t| {
            matches!(
                g.node_kind(t),
                NodeKind::Feature { .. } | NodeKind::Logit { .. }
            )
        })
        .flat_map(|t| (0..n).map(move |s| (t, s)))
        .filter(|&(t, s)| g.edge(t, s) != 0.0)
        .collect();
    // The neuron graph has millions of edges: a regular subsample keeps memory small.
    let stride = edges.len() / 100_000 + 1;
    let edges: Vec<(usize, usize)> = edges.into_iter().step_by(stride).collect();
    assert!(edges.len() > 100, "{name}: only {} edges", edges.len());
    let hl = head_loadings(m, &tokens, basis, &g, &edges, 5).unwrap();
    assert_eq!(
        hl.edges.len(),
        edges.len(),
        "{name}: every edge gets loadings"
    );
    assert_eq!(hl.width(), m.cfg.n_layers * m.cfg.n_heads + 1);

    // (1) The parts sum to the edge: to 1e-5 of the edge's own size (or of its parts', when
    // they cancel), with f32 rounding of the row (1e-6 of the target's largest edge) on top.
    let row_max: Vec<f32> = (0..n)
        .map(|t| (0..n).map(|s| g.edge(t, s).abs()).fold(0.0, f32::max))
        .collect();
    let (mut worst, mut via_heads) = (0.0f32, 0usize);
    for (e, &[t, s]) in hl.edges.iter().enumerate() {
        let edge = g.edge(t as usize, s as usize);
        let row = hl.row(e);
        let sum: f32 = row.iter().sum();
        let scale = edge.abs().max(row.iter().map(|x| x.abs()).sum::<f32>());
        let rel = (sum - edge).abs() / (scale + 0.1 * row_max[t as usize]);
        worst = worst.max(rel);
        assert!(
            (sum - edge).abs() <= 1e-5 * scale + 1e-6 * row_max[t as usize],
            "{name}: edge {s} → {t}: parts sum to {sum}, edge {edge}"
        );
        if row[..row.len() - 1]
            .iter()
            .any(|&x| x.abs() > 1e-3 * edge.abs())
        {
            via_heads += 1;
        }
    }
    assert!(
        via_heads > edges.len() / 10,
        "{name}: only {via_heads} edges pass through heads"
    );

    // (2) One head's part is the edge change when its OV is zeroed.
    let n_pos = tokens.len();
    let f = g.n_features();
    let (base, n_cols) = feature_rows(m, m, basis, &tokens);
    let n_active = g.active_features.len();
    let column = |s: usize| match g.node_kind(s) {
        NodeKind::Feature { active_index, .. } => active_index as usize,
        _ => n_active + (s - f),
    };
    let (mut checked, mut largest, mut worst_abs) = (0, 0.0f32, 0.0f32);
    for (layer, head) in [(0, 1), (2, 3), (1, 2)] {
        let (after, _) = feature_rows(m, &without_head(m, layer, head), basis, &tokens);
        for (e, &[t, s]) in hl.edges.iter().enumerate() {
            let below = match g.node_kind(s as usize) {
                NodeKind::Token { .. } => layer == 0,
                NodeKind::Feature { layer: l, .. } | NodeKind::Error { layer: l, .. } => {
                    l as usize + 1 == layer
                }
                NodeKind::Logit { .. } => false,
            };
            let NodeKind::Feature { active_index, .. } = g.node_kind(t as usize) else {
                continue;
            };
            if !below {
                continue;
            }
            let i = active_index as usize * n_cols + column(s as usize);
            let change = base[i] - after[i];
            let part = hl.head(e, layer, head);
            let err = (change - part).abs();
            worst_abs = worst_abs.max(err);
            largest = largest.max(part.abs());
            assert!(
                err <= 1e-5 * (part.abs() + g.edge(t as usize, s as usize).abs()) + 1e-6,
                "{name}: edge {s} → {t}, L{layer}.H{head}: part {part}, change {change}"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 20 && largest > 1e-2,
        "{name}: {checked} checks, largest part {largest}"
    );
    let _ = n_pos;
    eprintln!("{name}: {} edges, worst relative |Σ parts − edge| {worst:e}; {checked} head ablations, worst |Δ − part| {worst_abs:e}, largest part {largest}", edges.len());
}

fn load(name: &str) -> LoadedModel {
    LoadedModel::load(&fixture(name), &LoadOptions::default()).unwrap()
}

#[test]
fn llama_plt_mlp_in() {
    let m = load("llama");
    let (_d, tc) = transcoders(&m, false, false, ("mlp.hook_in", "mlp.hook_out"));
    check("llama PLT", &m, &tc);
}

#[test]
fn qwen2_plt_skip_resid_mid() {
    let m = load("qwen2");
    let (_d, tc) = transcoders(&m, false, true, ("hook_resid_mid", "hook_mlp_out"));
    check("qwen2 PLT skip", &m, &tc);
}

#[test]
fn qwen3_clt() {
    let m = load("qwen3");
    let (_d, tc) = transcoders(&m, true, false, ("hook_resid_mid", "mlp.hook_out"));
    check("qwen3 CLT", &m, &tc);
}

#[test]
fn gemma2_plt_skip_before_post_norm() {
    let m = load("gemma2");
    let (_d, tc) = transcoders(&m, false, true, ("ln2.hook_normalized", "mlp.hook_out"));
    check("gemma2 PLT skip", &m, &tc);
}

#[test]
fn llama_neurons() {
    let m = load("llama");
    check("llama neurons", &m, &NeuronBasis::default());
}
