//! The in-process simulator end to end on the bundled demo model. A 1.3M-parameter model
//! cannot judge explanations, so these tests check the mechanics (distributions, expected
//! values, determinism, batching), not the quality of the scores. Skipped, with the reason
//! printed, when `models/demo` is absent.

use std::path::PathBuf;

use adag_describe::score::pearson;
use adag_describe::simulate::{LocalSimulator, LocalSimulatorOptions, ScoreTokens, Simulator};
use adag_describe::ActivationRecord;
use adag_model::ModelTokenizer;

fn demo() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/demo");
    if dir.join("config.json").exists() {
        Some(dir)
    } else {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        None
    }
}

/// A record of `text` (BOS dropped) whose truth is 1 at tokens containing `hot` and a small
/// ramp elsewhere.
fn record(tok: &ModelTokenizer, id: u64, text: &str, hot: &str) -> ActivationRecord {
    let mut ids = tok.encode(text, true).unwrap();
    if tok.bos_policy().bos_token.as_ref().map(|b| b.1) == ids.first().copied() {
        ids.remove(0);
    }
    let tokens = tok.token_strings(&ids).unwrap();
    let values = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.contains(hot) {
                1.0
            } else {
                0.01 * i as f32
            }
        })
        .collect();
    ActivationRecord {
        prompt_id: id,
        label: None,
        prompt: text.into(),
        present: true,
        positions: (1..=ids.len() as u32).collect(),
        token_ids: ids.clone(),
        tokens,
        values,
        target_ids: vec![ids[0], ids[1]],
        targets: tok.token_strings(&ids[..2]).unwrap(),
        outputs: vec![0.5, -0.1],
        attribution: 0.1,
        abs_attribution: 0.1,
    }
}

#[test]
fn local_simulator_gives_a_distribution_at_every_token_and_a_stable_score() {
    let Some(dir) = demo() else { return };
    let tok = ModelTokenizer::from_dir(&dir).unwrap();
    let records = [
        record(
            &tok,
            0,
            "The capital of the state containing Dallas is",
            "Dallas",
        ),
        record(&tok, 1, "Dallas is in Texas.", "Dallas"),
        record(&tok, 2, "36+59=", "+"),
        record(&tok, 3, "The keys to the cabinet are old.", "keys"),
    ];
    let refs: Vec<&ActivationRecord> = records.iter().collect();
    let sim = LocalSimulator::load(&dir, &LocalSimulatorOptions::default()).unwrap();

    // Score tokens: the single-token strings among "0".."10"; the demo tokenizer splits digits,
    // so "10" is two tokens and the scores are 0..9.
    let scores: Vec<f32> = sim.score_tokens().iter().map(|t| t.1).collect();
    assert!(scores.len() >= 2 && scores.len() <= 11, "{scores:?}");
    assert!(scores.iter().all(|&s| (0.0..=10.0).contains(&s)));
    for &(id, s) in sim.score_tokens() {
        assert_eq!(tok.decode(&[id], false).unwrap(), format!("{s}"));
    }

    let expl = "the word Dallas";
    let dists = sim.token_distributions(expl, &refs).unwrap();
    for (r, d) in records.iter().zip(&dists) {
        assert_eq!(d.len(), r.tokens.len());
        for p in d {
            let p = p.as_ref().expect("every token has its own id");
            assert_eq!(p.len(), scores.len());
            assert!(p.iter().all(|&x| (0.0..=1.0).contains(&x)));
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }

    let sim_values = sim.simulate_tokens(expl, &refs).unwrap();
    let max = scores.iter().copied().fold(0.0, f32::max);
    for (r, v) in records.iter().zip(&sim_values) {
        assert_eq!(v.len(), r.tokens.len());
        assert!(v.iter().all(|&x| (0.0..=max).contains(&x)), "{v:?}");
    }
    // Not a constant prediction: the model's distribution depends on the token.
    let flat: Vec<f32> = sim_values.iter().flatten().copied().collect();
    let truth: Vec<f32> = records.iter().flat_map(|r| r.values.clone()).collect();
    let r = pearson(&flat, &truth).expect("a defined correlation");
    assert!(r.is_finite() && (-1.0..=1.0).contains(&r));
    println!(
        "demo-model simulator: r = {r:.4} for {expl:?} over {} tokens",
        flat.len()
    );

    // Identical on a rerun; batching changes nothing beyond float noise.
    assert_eq!(sim.simulate_tokens(expl, &refs).unwrap(), sim_values);
    let one = LocalSimulator::load(
        &dir,
        &LocalSimulatorOptions {
            batch_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let unbatched = one.simulate_tokens(expl, &refs).unwrap();
    for (a, b) in unbatched.iter().flatten().zip(sim_values.iter().flatten()) {
        assert!((a - b).abs() < 1e-3, "batched {b} vs unbatched {a}");
    }
    // Re-encoding the token texts with the same tokenizer gives the same inputs.
    let re = LocalSimulator::load(
        &dir,
        &LocalSimulatorOptions {
            reencode: true,
            ..Default::default()
        },
    )
    .unwrap();
    let re_values = re.simulate_tokens(expl, &refs[..2]).unwrap();
    for (a, b) in re_values.iter().flatten().zip(sim_values.iter().flatten()) {
        assert!((a - b).abs() < 1e-3, "re-encoded {a} vs ids {b}");
    }

    // Output side: one value per target, on the −10..10 scale.
    let outs = sim.simulate_outputs("promotes Austin", &refs).unwrap();
    for (r, o) in records.iter().zip(&outs) {
        assert_eq!(o.len(), r.target_ids.len());
        assert!(o.iter().all(|&x| (-10.0..=10.0).contains(&x)), "{o:?}");
    }

    // The reference's vocabulary ids 0..10 also work (they are special tokens and bytes here).
    let ids = LocalSimulator::load(
        &dir,
        &LocalSimulatorOptions {
            score_tokens: ScoreTokens::VocabIds,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ids.score_tokens().len(), 11);
    let v = ids.simulate_tokens(expl, &refs[..1]).unwrap();
    assert!(v[0].iter().all(|&x| (0.0..=10.0).contains(&x)));
}

#[test]
fn the_demo_tokenizer_hides_pad_and_bos() {
    let Some(dir) = demo() else { return };
    let tok = ModelTokenizer::from_dir(&dir).unwrap();
    let pad = tok
        .pad_token()
        .expect("the demo tokenizer names a pad token")
        .1;
    let bos = tok.bos_policy().bos_token.as_ref().unwrap().1;
    let o = adag_describe::RecordOptions::from_tokenizer(&tok, false);
    assert!(o.hidden_ids.contains(&pad) && o.hidden_ids.contains(&bos));
    let shown = adag_describe::RecordOptions::from_tokenizer(&tok, true);
    assert!(shown.hidden_ids.contains(&pad) && !shown.hidden_ids.contains(&bos));
}

/// Score tokens with real tokenizers (fixtures/tokenizers, fetched by
/// tools/fetch_tokenizers.sh; skipped when absent): Llama-3 keeps "10" as one token, Qwen3
/// and Gemma-3 split digits.
#[test]
fn score_tokens_of_real_tokenizers() {
    use adag_describe::simulate::score_token_ids;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizers");
    for (name, want) in [("llama3_1", 11), ("qwen3", 10), ("gemma3", 10)] {
        let dir = root.join(name);
        if !dir.join("tokenizer.json").exists() {
            println!("skipped {name}: fixtures/tokenizers/{name} is absent");
            continue;
        }
        let tok = ModelTokenizer::from_dir(&dir).unwrap();
        let ids = score_token_ids(&tok, ScoreTokens::Digits, usize::MAX).unwrap();
        assert_eq!(ids.len(), want, "{name}: {ids:?}");
        for (id, s) in &ids {
            assert_eq!(tok.decode(&[*id], false).unwrap(), format!("{s}"), "{name}");
        }
        let raw = score_token_ids(&tok, ScoreTokens::VocabIds, usize::MAX).unwrap();
        assert_eq!(
            raw.iter().map(|t| t.0).collect::<Vec<_>>(),
            (0..=10).collect::<Vec<_>>()
        );
    }
}
