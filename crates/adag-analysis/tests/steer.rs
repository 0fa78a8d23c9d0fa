//! Steering on the tiny llama fixture: exactly the traced entries are scaled, later layers see
//! the edits, and the fixed-final-norm logit is linear in the scale of a last-layer neuron.

mod common;

use std::path::PathBuf;

use adag_analysis::steer::{Scope, Steerer, Target};
use adag_circuit::Circuit;
use adag_core::{HookName, Site};
use adag_engine::intervene::{Action, Intervention, OpenLoop, Position};
use adag_engine::NeuronBasis;
use adag_model::{Batch, CacheFilter, ForwardHooks, LoadOptions, NoHooks, Transformer};
use common::{neuron, prompt, state};

const TOKENS: [u32; 6] = [0, 17, 42, 99, 7, 230];

fn model() -> Transformer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama");
    Transformer::load(&dir, &LoadOptions::default()).unwrap()
}

/// `mlp.hook_post` of every layer, `[pos][neuron]`, under `hooks`.
fn neurons(m: &Transformer, hooks: &mut dyn ForwardHooks) -> Vec<Vec<Vec<f32>>> {
    let out = m
        .forward_with(
            &Batch::single(&TOKENS).unwrap(),
            &CacheFilter::sites([Site::MlpPost]),
            hooks,
        )
        .unwrap();
    (0..m.cfg.n_layers)
        .map(|l| {
            out.cache
                .item(HookName::Block(l, Site::MlpPost), 0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        })
        .collect()
}

fn argmax_abs(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
        .unwrap()
}

/// A one-prompt circuit: C0 = the strongest layer-0 neuron at position 2, C1 = the strongest
/// layer-1 neuron at the last position, C2 = the strongest last-layer neuron at the last
/// position. Activations are the model's own, so polarities are right.
fn circuit(m: &Transformer) -> (Circuit, [(usize, usize, usize); 3]) {
    let acts = neurons(m, &mut NoHooks);
    let last = TOKENS.len() - 1;
    let top = m.cfg.n_layers - 1;
    let picks = [
        (0, 2, argmax_abs(&acts[0][2])),
        (1, last, argmax_abs(&acts[1][last])),
        (top, last, argmax_abs(&acts[top][last])),
    ];
    let mut c = Circuit::default();
    let mut p = prompt(0, TOKENS.len(), 1);
    p.token_ids = TOKENS.to_vec();
    p.target_ids = vec![5];
    c.prompts.push(p);
    for &(l, pos, n) in &picks {
        c.nodes.push(neuron(
            0,
            l as i32,
            pos as u32,
            n as u32,
            acts[l][pos][n],
            0.1,
            vec![1.0; TOKENS.len()],
            vec![1.0],
        ));
    }
    (c, picks)
}

fn key((l, pos, n): (usize, usize, usize), acts: &[Vec<Vec<f32>>]) -> String {
    let sign = if acts[l][pos][n] > 0.0 { 1 } else { -1 };
    format!("{l},{n},{sign}")
}

#[test]
fn steering_scales_exactly_the_traced_entries_and_later_layers_see_it() {
    let m = model();
    let (c, picks) = circuit(&m);
    let acts = neurons(&m, &mut NoHooks);
    let keys: Vec<String> = picks.iter().map(|&p| key(p, &acts)).collect();
    let cs = state(&[(&keys[0], "C0"), (&keys[1], "C1"), (&keys[2], "C2")]);
    let basis = NeuronBasis::default();
    let st = Steerer::new(&m, &basis, &c, &cs);
    let c0 = Target::Cluster("C0".into());

    let plan = st.interventions(0, &c0, 3.0, Scope::Traced);
    let steered = neurons(&m, &mut OpenLoop::new(&m, &basis, &plan, None));
    let (l0, p0, n0) = picks[0];
    // Layer 0: the traced entry ×3, every other entry bit-for-bit unchanged.
    for (pos, row) in steered[0].iter().enumerate() {
        for (n, &v) in row.iter().enumerate() {
            let want = if (pos, n) == (p0, n0) {
                3.0 * acts[l0][pos][n]
            } else {
                acts[l0][pos][n]
            };
            assert!(
                (v - want).abs() <= 1e-6 * want.abs(),
                "layer 0 pos {pos} neuron {n}: {v} vs {want}"
            );
        }
    }
    // Layer 1: causal attention, so positions before the edit are unchanged and later ones move.
    let moved = |pos: usize| {
        steered[1][pos]
            .iter()
            .zip(&acts[1][pos])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max)
    };
    assert!((0..p0).all(|pos| moved(pos) == 0.0));
    assert!(moved(p0) > 1e-4 && moved(TOKENS.len() - 1) > 1e-4);

    // The per-prompt report: C0's own ratio is the scale; C1 (downstream) moved too.
    let r = st.steer_prompt(0, &c0, 3.0, Scope::Traced, 0).unwrap();
    assert_eq!(r.n_scaled, 1);
    assert!((r.cluster_ratios["C0"] - 3.0).abs() < 1e-5, "{r:?}");
    assert!((r.cluster_ratios["C1"] - 1.0).abs() > 1e-4, "{r:?}");
    assert!(r.kl > 0.0);

    // Scale 1 is the identity, in both logits.
    let r = st.steer_prompt(0, &c0, 1.0, Scope::Traced, 0).unwrap();
    assert_eq!(r.steered_logits, r.target_logits);
    assert_eq!(r.steered_logits_fixed_norm, r.target_logits);
    assert!(r.kl.abs() < 1e-9);

    // All positions: the neuron is scaled wherever it fires.
    let all = st.interventions(0, &c0, 0.0, Scope::AllPositions);
    assert_eq!(
        all,
        vec![Intervention {
            layer: l0,
            pos: Position::From(0),
            feature: n0 as u32,
            action: Action::Scale(0.0),
        }]
    );
    let steered = neurons(&m, &mut OpenLoop::new(&m, &basis, &all, None));
    assert!(steered[0].iter().all(|row| row[n0] == 0.0));

    let e = st
        .check(&Target::Cluster("C9".into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no cluster \"C9\"") && e.contains("C0, C1, C2"),
        "{e}"
    );
}

/// A last-layer neuron at the traced position reaches the logits only through the final norm.
/// With the norm's denominator held fixed its effect is linear in the scale (Δ(0) = −Δ(2),
/// Δ(3) = 2Δ(2)); the live logit differs because the denominator moves with the residual.
#[test]
fn fixed_norm_logit_is_linear_in_a_last_layer_neurons_scale() {
    let m = model();
    let (c, picks) = circuit(&m);
    let acts = neurons(&m, &mut NoHooks);
    let keys: Vec<String> = picks.iter().map(|&p| key(p, &acts)).collect();
    let cs = state(&[(&keys[0], "C0"), (&keys[1], "C1"), (&keys[2], "C2")]);
    let basis = NeuronBasis::default();
    let st = Steerer::new(&m, &basis, &c, &cs);
    let c2 = Target::Cluster("C2".into());
    let delta = |s: f32| {
        let r = st.steer_prompt(0, &c2, s, Scope::Traced, 0).unwrap();
        (
            (r.steered_logits[0] - r.target_logits[0]) as f64,
            (r.steered_logits_fixed_norm[0] - r.target_logits[0]) as f64,
        )
    };
    let (live0, fixed0) = delta(0.0);
    let (live2, fixed2) = delta(2.0);
    let (_, fixed3) = delta(3.0);
    assert!(fixed2.abs() > 1e-3, "the neuron moves the logit: {fixed2}");
    let tol = 1e-4 * fixed2.abs().max(1.0);
    assert!((fixed0 + fixed2).abs() < tol, "{fixed0} vs {fixed2}");
    assert!((fixed3 - 2.0 * fixed2).abs() < tol, "{fixed3} vs {fixed2}");
    assert!((live0 - fixed0).abs() > 1e-5 && (live2 - fixed2).abs() > 1e-5);
}
