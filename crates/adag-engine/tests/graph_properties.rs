//! Properties of attribution graphs beyond exactness: node order, capped feature selection,
//! custom targets, batch-size invariance, and the graph file round trip.

use std::path::{Path, PathBuf};

use adag_engine::{attribute, AttributeOptions, TargetSpec, TranscoderSet};
use adag_graph::{Graph, GraphMeta, NodeKind};
use adag_model::{LoadOptions, LoadedModel};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::Device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn setup() -> (LoadedModel, tempfile::TempDir, TranscoderSet, Vec<u32>) {
    let m = LoadedModel::load(&fixture("qwen2"), &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = RandomSpec {
        cross_layer: false,
        n_layers: 3,
        d_model: 64,
        d_tc: 64,
        activation: "relu".into(),
        k: 0,
        skip: true,
        input_hook: "mlp.hook_in".into(),
        output_hook: "hook_mlp_out".into(),
        density: 0.1,
        seed: 5,
    };
    write_random_transcoders(dir.path(), &spec).unwrap();
    let tc = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    let tokens =
        adag_engine::prepare_tokens(&m.tokenizer, "The keys to the cabinet are on the table")
            .unwrap();
    (m, dir, tc, tokens)
}

fn run(m: &LoadedModel, tc: &TranscoderSet, tokens: &[u32], opts: &AttributeOptions) -> Graph {
    attribute(&m.model, tokens, tc, opts, GraphMeta::default(), &|i| {
        format!("t{i}")
    })
    .unwrap()
}

fn salient(n: usize) -> TargetSpec {
    TargetSpec::Salient {
        max_n_logits: n,
        desired_logit_prob: 0.99,
    }
}

#[test]
fn node_order_and_acyclicity() {
    let (m, _d, tc, tokens) = setup();
    let g = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: salient(4),
            ..Default::default()
        },
    );
    // Features ascend in (layer, pos, feature); BOS (position 0) has none.
    let feats: Vec<[u32; 3]> = (0..g.n_features())
        .map(|i| match g.node_kind(i) {
            NodeKind::Feature {
                layer,
                pos,
                feature,
                ..
            } => [layer, pos, feature],
            k => panic!("{k:?}"),
        })
        .collect();
    assert!(feats.windows(2).all(|w| w[0] < w[1]));
    assert!(feats.iter().all(|f| f[1] > 0));
    assert!(matches!(
        g.node_kind(g.n_features()),
        NodeKind::Error { layer: 0, pos: 0 }
    ));
    assert!(matches!(
        g.node_kind(g.token_index(2)),
        NodeKind::Token { pos: 2, .. }
    ));
    // Only feature and logit rows are non-zero; sources lie in strictly lower layers.
    let n = g.n_nodes();
    for t in 0..n {
        for s in 0..n {
            let w = g.edge(t, s);
            if w == 0.0 {
                continue;
            }
            match (g.node_kind(t), g.node_kind(s)) {
                (
                    NodeKind::Feature {
                        layer: lt, pos: pt, ..
                    },
                    NodeKind::Feature {
                        layer: ls, pos: ps, ..
                    }
                    | NodeKind::Error { layer: ls, pos: ps },
                ) => {
                    assert!(ls < lt && ps <= pt, "edge {s} → {t}")
                }
                (NodeKind::Feature { pos: pt, .. }, NodeKind::Token { pos: ps, .. }) => {
                    assert!(ps <= pt)
                }
                (NodeKind::Logit { .. }, _) => {}
                (tk, sk) => panic!("unexpected edge {sk:?} → {tk:?}"),
            }
        }
    }
}

#[test]
fn capped_features_are_the_most_influential_and_their_rows_unchanged() {
    let (m, _d, tc, tokens) = setup();
    let full = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: salient(3),
            batch_size: 16,
            ..Default::default()
        },
    );
    let cap = full.n_features() / 3;
    // One ranking pass (update_interval × batch_size ≥ cap): selection by influence through the
    // logit rows alone, i.e. Σ_k p_k |A[k, f]| / Σ_j |A[k, j]|.
    let capped = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: salient(3),
            batch_size: 64,
            max_feature_nodes: Some(cap),
            ..Default::default()
        },
    );
    assert_eq!(capped.n_features(), cap);
    let n = full.n_nodes();
    let score = |f: usize| -> f32 {
        (0..full.n_logits())
            .map(|k| {
                let row = &full.adjacency[full.logit_index(k) * n..(full.logit_index(k) + 1) * n];
                let s: f32 = row.iter().map(|x| x.abs()).sum();
                full.logit_probabilities[k] * row[f].abs() / s.max(1e-8)
            })
            .sum()
    };
    let mut order: Vec<usize> = (0..full.n_features()).collect();
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    let mut want: Vec<u32> = order[..cap]
        .iter()
        .map(|&i| full.selected_features[i])
        .collect();
    want.sort();
    assert_eq!(capped.selected_features, want);

    // Rows of the selected features, restricted to selected sources, match the full graph (up to
    // the rounding of differently shaped batches).
    let close = |a: f32, b: f32| assert!((a - b).abs() <= 1e-6 + 1e-5 * b.abs(), "{a} vs {b}");
    let rank = |g: &Graph, active: u32| g.selected_features.iter().position(|&s| s == active);
    for (ci, &a) in capped.selected_features.iter().enumerate() {
        let fi = rank(&full, a).unwrap();
        for (cj, &b) in capped.selected_features.iter().enumerate() {
            close(capped.edge(ci, cj), full.edge(fi, rank(&full, b).unwrap()));
        }
        for e in 0..capped.n_errors() + capped.n_pos() {
            close(
                capped.edge(ci, cap + e),
                full.edge(fi, full.n_features() + e),
            );
        }
    }
    // Logit rows too.
    for k in 0..capped.n_logits() {
        for e in 0..capped.n_errors() + capped.n_pos() {
            close(
                capped.edge(capped.logit_index(k), cap + e),
                full.edge(full.logit_index(k), full.n_features() + e),
            );
        }
    }
}

/// Batch size 1 runs every row alone on its own causal cone; 500 puts every row in one batch,
/// which the driver splits into position groups run as growing prefixes of descending layer
/// (the zeros above a seed's layer and after its position are skipped, not computed).
#[test]
fn batch_size_does_not_change_the_graph() {
    let (m, _d, tc, tokens) = setup();
    let a = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: salient(3),
            batch_size: 1,
            ..Default::default()
        },
    );
    let b = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: salient(3),
            batch_size: 500,
            ..Default::default()
        },
    );
    assert_eq!(a.selected_features, b.selected_features);
    let worst = a
        .adjacency
        .iter()
        .zip(&b.adjacency)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn logit_difference_row_is_the_difference_of_token_rows() {
    let (m, _d, tc, tokens) = setup();
    let (x, y) = (5u32, 9u32);
    let tok = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: TargetSpec::Tokens(vec![x, y]),
            ..Default::default()
        },
    );
    let diff =
        adag_engine::targets::logit_difference(&m.model.weights.unembed, x, y, "x-y".into(), 1.0)
            .unwrap();
    let cus = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: TargetSpec::Custom(vec![diff]),
            ..Default::default()
        },
    );
    assert_eq!(cus.logit_targets[0].vocab_idx as usize, m.model.cfg.d_vocab);
    let n = tok.n_nodes() - 2;
    for s in 0..n {
        let want = tok.edge(tok.logit_index(0), s) - tok.edge(tok.logit_index(1), s);
        let got = cus.edge(cus.logit_index(0), s);
        assert!(
            (want - got).abs() < 1e-4 + 1e-4 * want.abs(),
            "source {s}: {got} vs {want}"
        );
    }
}

#[test]
fn graph_file_round_trip_preserves_everything() {
    let (m, _d, tc, tokens) = setup();
    let g = run(
        &m,
        &tc,
        &tokens,
        &AttributeOptions {
            targets: salient(2),
            max_feature_nodes: Some(20),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.safetensors");
    g.save(&p).unwrap();
    assert_eq!(Graph::load(&p).unwrap(), g);
}

#[test]
fn progress_callback_counts_every_row_and_can_stop_attribution() {
    let (m, _d, tc, tokens) = setup();
    let opts = AttributeOptions {
        targets: salient(3),
        batch_size: 4,
        max_feature_nodes: Some(10),
        ..Default::default()
    };
    let name = |i: u32| format!("t{i}");
    let mut seen = Vec::new();
    let g = adag_engine::attribute_with_progress(
        &m.model,
        &tokens,
        &tc,
        &opts,
        GraphMeta::default(),
        &name,
        &mut |done, total| {
            seen.push((done, total));
            true
        },
    )
    .unwrap();
    // One report per backward batch, ending at every logit and feature row; same graph as
    // plain attribute().
    let rows = g.n_logits() + g.n_features();
    assert_eq!(seen.last(), Some(&(rows, rows)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(g.adjacency, run(&m, &tc, &tokens, &opts).adjacency);

    let mut calls = 0;
    let stopped = adag_engine::attribute_with_progress(
        &m.model,
        &tokens,
        &tc,
        &opts,
        GraphMeta::default(),
        &name,
        &mut |_, _| {
            calls += 1;
            false
        },
    );
    assert!(matches!(stopped, Err(adag_engine::Error::Cancelled)));
    assert_eq!(calls, 1, "attribution stops at the first `false`");
}
