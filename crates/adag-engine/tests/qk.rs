//! QK attributions are exact.
//!
//! For a head's score between a query and a key position: the pairwise terms and each side's
//! marginals sum to the pre-softmax score, and the scores agree with the model's own attention
//! pattern (`ln P[q, k₁] − ln P[q, k₂]` = difference of the (soft-capped) scores), which checks
//! RoPE, the q/k norms (Qwen3), the ln1 fold and Gemma-2's scale and soft-cap independently.
//! With MLP neurons as nodes on every position (Llama has no biases), the residual stream is
//! entirely nodes and tokens, so the constant component must vanish: this checks that each
//! source's share is its true contribution.

use std::path::{Path, PathBuf};

use adag_core::{HookName, Site};
use adag_engine::attention::{qk_attribution, QkSite};
use adag_engine::{Basis, FrozenModel, NeuronBasis, TranscoderSet};
use adag_model::{Batch, CacheFilter, LoadOptions, LoadedModel};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::Device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn transcoders(
    m: &LoadedModel,
    cross_layer: bool,
    hooks: (&str, &str),
) -> (tempfile::TempDir, TranscoderSet) {
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(
        dir.path(),
        &RandomSpec {
            cross_layer,
            n_layers: m.model.cfg.n_layers,
            d_model: m.model.cfg.d_model,
            d_tc: 48,
            activation: "relu".into(),
            k: 6,
            skip: false,
            input_hook: hooks.0.into(),
            output_hook: hooks.1.into(),
            density: 0.1,
            seed: 5,
        },
    )
    .unwrap();
    let tc = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    (dir, tc)
}

/// Returns the worst relative size of the constant component on the query side.
fn check(name: &str, m: &LoadedModel, basis: &dyn Basis) -> f32 {
    let model = &m.model;
    let tokens =
        adag_engine::prepare_tokens(&m.tokenizer, "The capital of the state containing Dallas")
            .unwrap();
    let filter = FrozenModel::cache_filter()
        .union(&basis.cache_filter())
        .union(&CacheFilter::sites([
            Site::Ln1Normalized,
            Site::AttnPattern,
        ]));
    let out = model
        .forward(&Batch::single(&tokens).unwrap(), &filter)
        .unwrap();
    let frozen = FrozenModel::new(model, &out.cache, 0).unwrap();
    let nodes = basis.prompt(model, &out.cache, 0).unwrap();
    let (_, write) = basis.sites();
    let q = tokens.len() - 1;
    let cap = model.cfg.attn_softcap.map(|c| c as f32);
    let capped = |s: f32| cap.map_or(s, |c| c * (s / c).tanh());
    let mut worst_const = 0.0f32;
    let top_layer = model.cfg.n_layers - 1;
    for (layer, head) in [(top_layer, 3), (1, 0), (0, 1)] {
        let pattern = out
            .cache
            .item(HookName::Block(layer, Site::AttnPattern), 0)
            .unwrap();
        let p = pattern
            .get(head)
            .unwrap()
            .get(q)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut scores = Vec::new();
        for key in [q, q - 1, q - 2] {
            let site = QkSite {
                layer,
                head,
                query_pos: q,
                key_pos: key,
            };
            let a = qk_attribution(&frozen, &out.cache, 0, nodes.as_ref(), write, site).unwrap();
            let tol = 1e-4 * (1.0 + a.score.abs());
            let qm: f32 = a.query_marginals().iter().sum();
            let km: f32 = a.key_marginals().iter().sum();
            // Every pairwise term (components with a part on their side; the rest are zero).
            let pairs: f32 = a.top_pairs(usize::MAX).iter().map(|p| p.2).sum();
            for (what, v) in [
                ("query marginals", qm),
                ("key marginals", km),
                ("pairwise terms", pairs),
            ] {
                assert!(
                    (v - a.score).abs() <= tol,
                    "{name} L{layer}.H{head} k={key}: {what} sum to {v}, score {}",
                    a.score
                );
            }
            let top = a.top_pairs(5);
            assert!(top.windows(2).all(|w| w[0].2.abs() >= w[1].2.abs()));
            // The constant component on the query side, relative to the query vector.
            let d = a.d_head;
            let c = &a.query_parts[(a.n_components - 1) * d..];
            let tot: Vec<f32> = (0..d)
                .map(|r| (0..a.n_components).map(|i| a.query_parts[i * d + r]).sum())
                .collect();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            worst_const = worst_const.max(norm(c) / norm(&tot));
            scores.push((key, a.score));
        }
        // The model's own pattern: ln P[q,k1] − ln P[q,k2] = capped score difference.
        for w in scores.windows(2) {
            let ((k1, s1), (k2, s2)) = (w[0], w[1]);
            let want = p[k1].ln() - p[k2].ln();
            let got = capped(s1) - capped(s2);
            assert!((want - got).abs() <= 1e-3 * (1.0 + want.abs()), "{name} L{layer}.H{head}: score difference {got} for keys {k1},{k2}, pattern says {want}");
        }
    }
    eprintln!("{name}: scores match the pattern; constant share of the query {worst_const:e}");
    worst_const
}

#[test]
fn llama_transcoders() {
    let m = LoadedModel::load(&fixture("llama"), &LoadOptions::default()).unwrap();
    let (_d, tc) = transcoders(&m, false, ("mlp.hook_in", "mlp.hook_out"));
    check("llama PLT", &m, &tc);
}

#[test]
fn qwen3_qk_norms_clt() {
    let m = LoadedModel::load(&fixture("qwen3"), &LoadOptions::default()).unwrap();
    let (_d, tc) = transcoders(&m, true, ("hook_resid_mid", "mlp.hook_out"));
    check("qwen3 CLT", &m, &tc);
}

#[test]
fn gemma2_softcap_pre_cap_score() {
    let m = LoadedModel::load(&fixture("gemma2"), &LoadOptions::default()).unwrap();
    assert!(m.model.cfg.attn_softcap.is_some());
    let (_d, tc) = transcoders(&m, false, ("ln2.hook_normalized", "mlp.hook_out"));
    check("gemma2 PLT", &m, &tc);
}

#[test]
fn llama_neurons_everywhere_leave_no_constant() {
    let m = LoadedModel::load(&fixture("llama"), &LoadOptions::default()).unwrap();
    let basis = NeuronBasis {
        bos_nodes: true,
        ..Default::default()
    };
    let c = check("llama neurons", &m, &basis);
    assert!(
        c < 1e-4,
        "constant share of the query {c}: sources do not account for resid_pre"
    );
}
