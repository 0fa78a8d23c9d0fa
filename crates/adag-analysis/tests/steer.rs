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

/// The fixture's circuit with its three one-unit clusters C0, C1, C2.
fn three_clusters(m: &Transformer) -> (Circuit, adag_analysis::ClusterState) {
    let (c, picks) = circuit(m);
    let acts = neurons(m, &mut NoHooks);
    let keys: Vec<String> = picks.iter().map(|&p| key(p, &acts)).collect();
    let cs = state(&[(&keys[0], "C0"), (&keys[1], "C1"), (&keys[2], "C2")]);
    (c, cs)
}

/// Complement steering scales exactly the traced units outside the cluster: C0's complement
/// is C1 ∪ C2, C0 itself keeps its activation and C1 (nothing scaled upstream of it) is
/// multiplied by the scale.
#[test]
fn complement_scales_every_traced_unit_but_the_cluster() {
    let m = model();
    let (c, cs) = three_clusters(&m);
    let basis = NeuronBasis::default();
    let st = Steerer::new(&m, &basis, &c, &cs);
    let not_c0 = Target::Complement("C0".into());
    let mut want = st.interventions(0, &Target::Cluster("C1".into()), 3.0, Scope::Traced);
    want.extend(st.interventions(0, &Target::Cluster("C2".into()), 3.0, Scope::Traced));
    assert_eq!(st.interventions(0, &not_c0, 3.0, Scope::Traced), want);
    let r = st.steer_prompt(0, &not_c0, 3.0, Scope::Traced, 0).unwrap();
    assert_eq!(r.n_scaled, 2);
    assert!((r.cluster_ratios["C0"] - 1.0).abs() < 1e-6, "{r:?}");
    assert!((r.cluster_ratios["C1"] - 3.0).abs() < 1e-5, "{r:?}");
    assert_eq!(not_c0.to_string(), "not C0");
    let e = st.check(&Target::Complement("C9".into())).unwrap_err();
    assert!(e.to_string().contains("no cluster \"C9\""), "{e}");
}

/// Sampled continuations: temperature 0 is the greedy continuation of `steer_prompt`; a seed
/// fixes a sample; scale 1 is the unsteered model, so every target gives the same sample from
/// the same seed; different seeds at a high temperature give different samples.
#[test]
fn samples_are_seeded_and_greedy_at_temperature_zero() {
    use rand::SeedableRng;
    let m = model();
    let (c, cs) = three_clusters(&m);
    let basis = NeuronBasis::default();
    let st = Steerer::new(&m, &basis, &c, &cs);
    let c0 = Target::Cluster("C0".into());
    let rng = |s: u64| rand_chacha::ChaCha8Rng::seed_from_u64(s);
    let all = Scope::AllPositions;
    let greedy = st.steer_prompt(0, &c0, 0.0, all, 4).unwrap().generated;
    let t0 = st
        .sample(0, &c0, 0.0, all, 4, 0.0, 0.9, &mut rng(1))
        .unwrap();
    assert_eq!(t0, greedy);
    let draw = |t: &Target, scale: f32, seed: u64| {
        st.sample(0, t, scale, all, 6, 2.0, 1.0, &mut rng(seed))
            .unwrap()
    };
    assert_eq!(draw(&c0, 2.0, 7), draw(&c0, 2.0, 7));
    let c2 = Target::Cluster("C2".into());
    assert_eq!(draw(&c0, 1.0, 7), draw(&c2, 1.0, 7));
    let distinct: std::collections::BTreeSet<Vec<u32>> =
        (0..5).map(|s| draw(&c0, 1.0, s)).collect();
    assert!(
        distinct.len() > 1,
        "five seeds gave one sample: {distinct:?}"
    );
}

/// `sample_token` draws from the tempered softmax restricted to the nucleus.
#[test]
fn sample_token_follows_the_tempered_nucleus() {
    use adag_analysis::steer::sample_token;
    use rand::{Rng, SeedableRng};
    let logits = [2.0f32, 1.0, 0.0, -1.0];
    // A tiny nucleus is the argmax, whatever the draw.
    for u in [0.0, 0.5, 0.999] {
        assert_eq!(sample_token(&logits, 1.0, 0.01, u), 0);
    }
    // The full nucleus: frequencies follow softmax(logits / T).
    let t = 0.5f32;
    let z: f64 = logits.iter().map(|l| ((l / t) as f64).exp()).sum();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n = 40_000;
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[sample_token(&logits, t, 1.0, rng.random::<f64>()) as usize] += 1;
    }
    for (i, &c) in counts.iter().enumerate() {
        let p = ((logits[i] / t) as f64).exp() / z;
        assert!(
            (c as f64 / n as f64 - p).abs() < 0.01,
            "token {i}: {c}/{n} vs {p}"
        );
    }
    // top-p 0.9 at T 0.5 keeps tokens 0 and 1 (p0 = 0.867 < 0.9 ≤ p0 + p1).
    let mut seen = [false; 4];
    for _ in 0..2000 {
        seen[sample_token(&logits, t, 0.9, rng.random::<f64>()) as usize] = true;
    }
    assert_eq!(seen, [true, true, false, false]);
}

/// The ASR sweep with a scripted LLM judge: every continuation reaches the judge with the
/// rubric and the prompt's answer; yes / no / unreadable replies are counted apart, with the
/// reasons kept, and the rate's interval is Wilson's.
#[test]
fn asr_sweep_counts_a_scripted_judges_verdicts() {
    use adag_analysis::asr::{sweep, wilson, SampleOptions, SweepInputs};
    use adag_analysis::judge::LlmJudge;
    use std::cell::RefCell;
    let m = model();
    let (c, cs) = three_clusters(&m);
    let basis = NeuronBasis::default();
    let st = Steerer::new(&m, &basis, &c, &cs);
    let seen: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let judge = LlmJudge::new("Is it Austin?", "scripted", |_system: &str, user: &str| {
        let mut s = seen.borrow_mut();
        s.push(user.to_string());
        Ok(match s.len() % 3 {
            1 => "Yes. It names the capital.".to_string(),
            2 => "no\nIt names a state.".to_string(),
            _ => "I cannot tell.".to_string(),
        })
    });
    let decode = |ids: &[u32]| format!("{ids:?}");
    let prompts = |_: &Target| vec![0u64];
    let text = |_: u64| ("The capital is".to_string(), vec![" Austin".to_string()]);
    let inputs = SweepInputs {
        prompts: &prompts,
        decode: &decode,
        prompt_text: &text,
    };
    let opts = SampleOptions {
        samples: 3,
        max_tokens: 2,
        ..SampleOptions::default()
    };
    let targets = [
        Target::Cluster("C0".into()),
        Target::Complement("C0".into()),
    ];
    let mut progress = Vec::new();
    let (rows, samples) = sweep(
        &st,
        &targets,
        &[0.0, 2.0],
        &opts,
        &inputs,
        &judge,
        &mut |d| progress.push(d),
    )
    .unwrap();
    assert_eq!(progress, [1, 2, 3, 4]);
    assert_eq!(rows.len(), 4);
    assert_eq!(samples.len(), 12);
    let (lo, hi) = wilson(1, 2);
    for r in &rows {
        assert_eq!(
            (r.n_yes, r.n_no, r.n_unclear, r.n_prompts),
            (1, 1, 1, 1),
            "{r:?}"
        );
        assert_eq!((r.rate, r.ci_low, r.ci_high), (0.5, lo, hi));
    }
    assert_eq!(rows[2].target, "not C0");
    let msgs = seen.borrow();
    for (s, msg) in samples.iter().zip(msgs.iter()) {
        assert!(
            msg.contains(&format!("Continuation:\n{}", s.continuation)),
            "{msg}"
        );
        assert!(msg.contains("Is it Austin?") && msg.contains("Expected answer:  Austin"));
    }
    assert_eq!(samples[0].reason, "It names the capital.");
    assert_eq!(samples[1].success, Some(false));
    assert_eq!(samples[2].reason, "I cannot tell.");
}

/// Wilson's 95 % interval against published values; it stays inside [0, 1] at 0/n.
#[test]
fn wilson_intervals_match_known_values() {
    use adag_analysis::asr::wilson;
    let close =
        |(a, b): (f64, f64), (x, y): (f64, f64)| (a - x).abs() < 5e-4 && (b - y).abs() < 5e-4;
    assert!(
        close(wilson(5, 10), (0.2366, 0.7634)),
        "{:?}",
        wilson(5, 10)
    );
    assert!(close(wilson(0, 10), (0.0, 0.2775)), "{:?}", wilson(0, 10));
    assert!(close(wilson(10, 10), (0.7225, 1.0)), "{:?}", wilson(10, 10));
    assert!(wilson(0, 0).0.is_nan());
}

/// Input diversity: clusters whose nodes read from different positions count apart; two
/// clusters reading the same position count once. Profiles are normalised per node, so a
/// large profile does not outvote a small one.
#[test]
fn input_diversity_counts_distinct_top_positions() {
    use adag_analysis::diversity::input_diversity;
    let cs = state(&[("0,1,1", "C0"), ("1,2,1", "C1"), ("2,3,1", "C2")]);
    let mut c = Circuit::default();
    for id in 0..2 {
        c.prompts.push(prompt(id, 4, 1));
    }
    let node = |p: u64, l: i32, n: u32, profile: Vec<f32>| {
        neuron(p, l, 3, n, 1.0, 0.1, profile, vec![1.0])
    };
    // Prompt 0: C0 reads position 1, C1 position 2 (one node reads 3 strongly, but two read 2).
    c.nodes.push(node(0, 0, 1, vec![0.0, 1.0, 0.0, 0.0]));
    c.nodes.push(node(0, 1, 2, vec![0.0, 0.0, 100.0, 0.0]));
    c.nodes.push(node(0, 1, 2, vec![0.0, 0.0, 1.0, 0.0]));
    c.nodes.push(node(0, 1, 2, vec![0.0, 0.0, 0.0, 150.0]));
    // Prompt 1: all three clusters read position 0.
    for (l, n) in [(0, 1), (1, 2), (2, 3)] {
        c.nodes.push(node(1, l, n, vec![2.0, 1.0, 0.0, 0.0]));
    }
    assert_eq!(input_diversity(&c, &cs), (2.0 + 1.0) / 2.0);
}
