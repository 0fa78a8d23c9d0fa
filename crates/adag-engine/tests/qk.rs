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

/// Subtracts `delta` from `mlp.hook_out` of one layer at one position in a real forward pass.
struct RemoveWrite {
    layer: usize,
    pos: usize,
    delta: candle_core::Tensor,
}

impl adag_model::ForwardHooks for RemoveWrite {
    fn edit(
        &mut self,
        hook: HookName,
        value: candle_core::Tensor,
    ) -> adag_model::Result<candle_core::Tensor> {
        if hook != HookName::Block(self.layer, Site::MlpOut) {
            return Ok(value);
        }
        let (_, t, d) = value.dims3().unwrap();
        let mut m = vec![0f32; t * d];
        let delta = self.delta.to_vec1::<f32>().unwrap();
        m[self.pos * d..(self.pos + 1) * d].copy_from_slice(&delta);
        let m = candle_core::Tensor::from_vec(m, (1, t, d), value.device()).unwrap();
        Ok(value.broadcast_sub(&m).unwrap())
    }
}

/// Causal check of the terms, on a fixture: the key-side feature (positive key marginal) whose
/// removal the bilinear form says lowers a score most is removed (its decoder write subtracted
/// at its layer and the key position); in the constrained model the score falls by exactly the
/// predicted amount. The real model's response is printed for comparison.
#[test]
fn removing_the_top_key_side_feature_lowers_the_score_as_predicted() {
    let m = LoadedModel::load(&fixture("llama"), &LoadOptions::default()).unwrap();
    let (_d, tc) = transcoders(&m, false, ("mlp.hook_in", "mlp.hook_out"));
    let model = &m.model;
    let tokens =
        adag_engine::prepare_tokens(&m.tokenizer, "The capital of the state containing Dallas")
            .unwrap();
    let filter = FrozenModel::cache_filter()
        .union(&tc.cache_filter())
        .union(&CacheFilter::sites([
            Site::Ln1Normalized,
            Site::AttnPattern,
        ]));
    let out = model
        .forward(&Batch::single(&tokens).unwrap(), &filter)
        .unwrap();
    let frozen = FrozenModel::new(model, &out.cache, 0).unwrap();
    let nodes = tc.prompt(model, &out.cache, 0).unwrap();
    let active = nodes.active().to_vec();
    let acts = nodes.activations().to_vec();
    let layer = model.cfg.n_layers - 1;
    let q = tokens.len() - 1;
    let pattern_at = |o: &adag_model::ForwardOutput, head: usize, k: usize| {
        o.cache
            .item(HookName::Block(layer, Site::AttnPattern), 0)
            .unwrap()
            .get(head)
            .unwrap()
            .get(q)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[k]
    };
    let mut checked = 0;
    for head in 0..model.cfg.n_heads {
        for k in [q - 1, q - 2] {
            let site = QkSite {
                layer,
                head,
                query_pos: q,
                key_pos: k,
            };
            let a =
                qk_attribution(&frozen, &out.cache, 0, nodes.as_ref(), tc.sites().1, site).unwrap();
            // A feature at the key position can also reach the query (through attention
            // below): removing it changes the score by its key marginal plus its query
            // marginal minus its own pairwise term, all from the bilinear form.
            let (km, qm) = (a.key_marginals(), a.query_marginals());
            let drop = |c: usize| km[c] + qm[c] - a.pair(c, c);
            let Some(best) = (0..active.len())
                .filter(|&c| active[c][1] as usize == k && km[c] > 0.0)
                .max_by(|&x, &y| drop(x).total_cmp(&drop(y)))
            else {
                continue;
            };
            if drop(best) < 1e-2 {
                continue;
            }
            let [lf, _, f] = active[best];
            let rows = tc
                .decoder_rows(lf as usize, &[f], &Device::Cpu)
                .unwrap()
                .get(0)
                .unwrap();
            let delta = (rows.get(0).unwrap() * acts[best] as f64).unwrap();
            let mut hook = RemoveWrite {
                layer: lf as usize,
                pos: k,
                delta: delta.clone(),
            };
            // In the constrained model (patterns, norm denominators and MLP outputs frozen at
            // the clean run: the model the graph describes), removing the feature changes the
            // score by exactly the predicted drop.
            let mut run = adag_engine::constrained::Constrained::new(&out.cache, &tc);
            run.add_write(lf as usize, k, &delta.neg().unwrap())
                .unwrap();
            let score_of = |o: &adag_model::ForwardOutput| {
                let fz = FrozenModel::new(model, &o.cache, 0).unwrap();
                let nd = tc.prompt(model, &o.cache, 0).unwrap();
                qk_attribution(&fz, &o.cache, 0, nd.as_ref(), tc.sites().1, site)
                    .unwrap()
                    .score
            };
            let constrained = model
                .forward_with(&Batch::single(&tokens).unwrap(), &filter, &mut run)
                .unwrap();
            let s_c = score_of(&constrained);
            assert!(
                ((a.score - s_c) - drop(best)).abs() <= 1e-4 * (1.0 + a.score.abs()),
                "L{layer}.H{head} k={k}: frozen-model drop {} vs predicted {}",
                a.score - s_c,
                drop(best)
            );
            // The real model (nothing frozen): reported, not asserted — MLPs, norms and the
            // patterns below respond too, so a random fixture need not follow the linear
            // prediction (the demo model's check is in docs/attention.md).
            let after = model
                .forward_with(&Batch::single(&tokens).unwrap(), &filter, &mut hook)
                .unwrap();
            let s1 = score_of(&after);
            let (p0, p1) = (pattern_at(&out, head, k), pattern_at(&after, head, k));
            eprintln!(
                "L{layer}.H{head} q={q} k={k}: key-side feature L{lf}#{f} (key marginal {:.4}, predicted drop {:.4}): frozen score {:.4} → {s_c:.4}; real score → {s1:.4}, pattern {p0:.4} → {p1:.4}",
                km[best], drop(best), a.score
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "only {checked} scores had a strong key-side feature"
    );
}

/// The causal check on the demo model and the README prompt: the head at a layer above
/// 0 that attends most from " is" to " Dallas" is traced; the key-side feature at " Dallas" whose
/// removal the bilinear form says lowers that score most is removed in the real model (its
/// decoder write subtracted; nothing frozen), and the real attention from " is" to " Dallas"
/// falls. This is the first hop of the two-hop answer: the answer position reads the city.
#[test]
fn demo_removing_the_named_dallas_feature_lowers_the_attention_from_is() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/demo");
    let m = LoadedModel::load(&demo, &LoadOptions::default()).unwrap();
    let tc = TranscoderSet::load(&demo.join("transcoders"), &Device::Cpu).unwrap();
    let model = &m.model;
    let tokens = adag_engine::prepare_tokens(
        &m.tokenizer,
        "The capital of the state containing Dallas is",
    )
    .unwrap();
    let strings = m.tokenizer.token_strings(&tokens).unwrap();
    let q = tokens.len() - 1;
    let k = strings.iter().position(|s| s == " Dallas").unwrap();
    let filter = FrozenModel::cache_filter()
        .union(&tc.cache_filter())
        .union(&CacheFilter::sites([
            Site::Ln1Normalized,
            Site::AttnPattern,
        ]));
    let batch = Batch::single(&tokens).unwrap();
    let out = model.forward(&batch, &filter).unwrap();
    let pattern = |o: &adag_model::ForwardOutput, layer: usize, head: usize| {
        o.cache
            .item(HookName::Block(layer, Site::AttnPattern), 0)
            .unwrap()
            .get(head)
            .unwrap()
            .get(q)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[k]
    };
    let (layer, head) = (1..model.cfg.n_layers)
        .flat_map(|l| (0..model.cfg.n_heads).map(move |h| (l, h)))
        .max_by(|a, b| pattern(&out, a.0, a.1).total_cmp(&pattern(&out, b.0, b.1)))
        .unwrap();
    let frozen = FrozenModel::new(model, &out.cache, 0).unwrap();
    let nodes = tc.prompt(model, &out.cache, 0).unwrap();
    let site = QkSite {
        layer,
        head,
        query_pos: q,
        key_pos: k,
    };
    let a = qk_attribution(&frozen, &out.cache, 0, nodes.as_ref(), tc.sites().1, site).unwrap();
    let (km, qm) = (a.key_marginals(), a.query_marginals());
    let drop = |c: usize| km[c] + qm[c] - a.pair(c, c);
    let active = nodes.active();
    let best = (0..active.len())
        .filter(|&c| active[c][1] as usize == k && km[c] > 0.0)
        .max_by(|&x, &y| drop(x).total_cmp(&drop(y)))
        .expect("a key-side feature at \" Dallas\" raises the score");
    assert!(drop(best) > 0.0);
    let [lf, _, f] = active[best];
    let delta = tc
        .decoder_rows(lf as usize, &[f], &Device::Cpu)
        .unwrap()
        .get(0)
        .unwrap()
        .get(0)
        .unwrap();
    let delta = (delta * nodes.activations()[best] as f64).unwrap();
    let mut hook = RemoveWrite {
        layer: lf as usize,
        pos: k,
        delta,
    };
    let after = model.forward_with(&batch, &filter, &mut hook).unwrap();
    let (p0, p1) = (pattern(&out, layer, head), pattern(&after, layer, head));
    eprintln!(
        "demo: L{layer}.H{head} attends {p0:.4} from \" is\" to \" Dallas\" (score {:.3}); \
         key-side feature L{lf}#{f} at \" Dallas\" (key marginal {:.3}, predicted drop {:.3}); \
         removed in the real model: attention {p0:.4} → {p1:.4}",
        a.score,
        km[best],
        drop(best)
    );
    assert!(
        p1 < p0,
        "removing L{lf}#{f} did not lower L{layer}.H{head}'s attention ({p0} → {p1})"
    );
}
