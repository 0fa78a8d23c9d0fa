//! Graph accounting closes: for every target and every feature node, the graph's edges plus
//! the separately measured terms (biases, the BOS position, features outside the graph) equal
//! the node's value in the frozen linear model, up to f32 rounding. Run on every fixture
//! architecture with per-layer, skip and cross-layer transcoders.

use std::path::{Path, PathBuf};

use adag_engine::accounting::{BOS_MLP, DECODER_BIASES, UNSELECTED_FEATURES};
use adag_engine::{attribute, AttributeOptions, TargetSpec, TranscoderSet};
use adag_graph::{Graph, GraphMeta};
use adag_model::{LoadOptions, LoadedModel};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::Device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn graph(
    model: &str,
    cross_layer: bool,
    activation: &str,
    skip: bool,
    hooks: (&str, &str),
    max_feature_nodes: Option<usize>,
) -> (LoadedModel, Graph) {
    let m = LoadedModel::load(&fixture(model), &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = RandomSpec {
        cross_layer,
        n_layers: m.model.cfg.n_layers,
        d_model: m.model.cfg.d_model,
        d_tc: 48,
        activation: activation.into(),
        k: 6,
        skip,
        input_hook: hooks.0.into(),
        output_hook: hooks.1.into(),
        density: 0.1,
        seed: 11,
    };
    write_random_transcoders(dir.path(), &spec).unwrap();
    let tc = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    let tokens = adag_engine::prepare_tokens(
        &m.tokenizer,
        "The capital of the state containing Dallas is",
    )
    .unwrap();
    let opts = AttributeOptions {
        targets: TargetSpec::Salient {
            max_n_logits: 3,
            desired_logit_prob: 0.99,
        },
        batch_size: 16,
        max_feature_nodes,
        ..Default::default()
    };
    let g = attribute(&m.model, &tokens, &tc, &opts, GraphMeta::default(), &|i| {
        i.to_string()
    })
    .unwrap();
    (m, g)
}

/// Σ of a target's adjacency row over feature, error and token columns.
fn row_sums(g: &Graph, row: usize) -> (f32, f32, f32) {
    let f = g.n_features();
    let e = g.meta.n_layers * g.n_pos();
    let sum = |a: usize, b: usize| (a..b).map(|c| g.edge(row, c) as f64).sum::<f64>() as f32;
    (sum(0, f), sum(f, f + e), sum(f + e, f + e + g.n_pos()))
}

fn check(name: &str, m: &LoadedModel, g: &Graph) {
    let acc = g.meta.accounting.as_ref().expect("accounting stored");
    assert_eq!(acc.targets.len(), g.n_logits(), "{name}");
    assert_eq!(acc.features.len(), g.n_features(), "{name}");
    // The target's value is its de-meaned logit; with the de-meaning constant it is the model's
    // own last-position logit (these fixtures have no final soft-cap issue at this scale: we
    // compare against the linear logit through the forward pass's softcap-free path below).
    let tokens = g.input_tokens.clone();
    let out = m
        .model
        .forward(
            &adag_model::Batch::single(&tokens).unwrap(),
            &adag_model::CacheFilter::none(),
        )
        .unwrap();
    let logits = out.last_logits(0).unwrap().to_vec1::<f32>().unwrap();
    let softcap = m.model.cfg.final_softcap;
    for (k, t) in acc.targets.iter().enumerate() {
        let a = &t.account;
        // The stored sums are the graph's own row sums.
        let (fs, es, ts) = row_sums(g, g.logit_index(k));
        assert!((a.features - fs).abs() <= 1e-4 * (1.0 + fs.abs()), "{name}");
        assert!((a.errors - es).abs() <= 1e-4 * (1.0 + es.abs()), "{name}");
        assert!((a.tokens - ts).abs() <= 1e-4 * (1.0 + ts.abs()), "{name}");
        let r = a.relative_residual();
        assert!(r < 1e-4, "{name}: target {k} residual {r} in {a:?}");
        if softcap.is_none() {
            let raw = a.value + t.demean_constant.unwrap();
            let want = logits[g.logit_targets[k].vocab_idx as usize];
            assert!(
                (raw - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{name}: logit {raw} vs model {want}"
            );
        }
    }
    for (i, a) in acc.features.iter().enumerate() {
        let r = a.relative_residual();
        assert!(r < 1e-4, "{name}: feature {i} residual {r} in {a:?}");
        let (fs, es, _) = row_sums(g, i);
        assert!((a.features - fs).abs() <= 1e-4 * (1.0 + fs.abs()), "{name}");
        assert!((a.errors - es).abs() <= 1e-4 * (1.0 + es.abs()), "{name}");
    }
    // Decoder biases and the BOS position really write: the terms are not all zero.
    assert!(
        acc.targets
            .iter()
            .any(|t| t.account.term(DECODER_BIASES) != 0.0 && t.account.term(BOS_MLP) != 0.0),
        "{name}: bias and BOS terms never measured"
    );
}

#[test]
fn llama_plt_jumprelu() {
    let (m, g) = graph(
        "llama",
        false,
        "jump_relu",
        false,
        ("mlp.hook_in", "mlp.hook_out"),
        None,
    );
    check("llama PLT", &m, &g);
}

#[test]
fn qwen2_plt_skip_relu() {
    let (m, g) = graph(
        "qwen2",
        false,
        "relu",
        true,
        ("hook_resid_mid", "hook_mlp_out"),
        None,
    );
    check("qwen2 PLT skip", &m, &g);
}

#[test]
fn qwen3_clt_relu() {
    let (m, g) = graph(
        "qwen3",
        true,
        "relu",
        false,
        ("hook_resid_mid", "mlp.hook_out"),
        None,
    );
    check("qwen3 CLT", &m, &g);
}

#[test]
fn gemma2_plt_skip_topk() {
    let (m, g) = graph(
        "gemma2",
        false,
        "topk",
        true,
        ("ln2.hook_normalized", "mlp.hook_out"),
        None,
    );
    check("gemma2 PLT skip", &m, &g);
}

#[test]
fn gemma2_clt_jumprelu() {
    let (m, g) = graph(
        "gemma2",
        true,
        "jump_relu",
        false,
        ("mlp.hook_in", "hook_mlp_out"),
        None,
    );
    check("gemma2 CLT", &m, &g);
}

/// With `max_feature_nodes`, the features left out of the graph are a named term, measured from
/// the same backward rows, and the account still closes.
#[test]
fn capped_graph_names_features_outside_it() {
    let (m, g) = graph(
        "llama",
        true,
        "relu",
        false,
        ("mlp.hook_in", "mlp.hook_out"),
        Some(5),
    );
    assert_eq!(g.n_features(), 5);
    check("llama CLT capped", &m, &g);
    let acc = g.meta.accounting.as_ref().unwrap();
    assert!(acc
        .targets
        .iter()
        .any(|t| t.account.term(UNSELECTED_FEATURES) != 0.0));
}

/// Older graph files without accounting still load, and the accounting round-trips.
#[test]
fn accounting_round_trips_through_the_graph_file() {
    let (_, g) = graph(
        "qwen3",
        false,
        "relu",
        false,
        ("hook_resid_mid", "mlp.hook_out"),
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.safetensors");
    g.save(&p).unwrap();
    let back = Graph::load(&p).unwrap();
    assert_eq!(back.meta.accounting, g.meta.accounting);
    let mut old = g.clone();
    old.meta.accounting = None;
    old.save(&p).unwrap();
    assert_eq!(Graph::load(&p).unwrap().meta.accounting, None);
}
