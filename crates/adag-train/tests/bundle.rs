//! The committed bundle (models/demo): the model answers held-out prompts of every task, and
//! the transcoders (per-layer and cross-layer) reconstruct MLP outputs at the quality recorded in
//! their metrics.json.

use adag_model::{LoadOptions, Transformer};
use adag_train::bundle::{default_model_dir, default_transcoders_dir};
use adag_train::clt::{clt_metrics, CrossLayerTranscoder};
use adag_train::corpus::{eval_items, Task};
use adag_train::eval::evaluate;
use adag_train::transcoder::{collect_activations, metrics, LayerData, TcMetrics, TranscoderSet};
use candle_core::Device;

fn load() -> (Transformer, tokenizers::Tokenizer) {
    let dir = default_model_dir().expect("the bundle is committed under models/demo");
    let model = Transformer::load(&dir, &LoadOptions::default()).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    (model, tok)
}

#[test]
fn bundled_model_answers_held_out_prompts_of_each_task() {
    let (model, tok) = load();
    let items = eval_items();
    for task in [Task::TwoHop, Task::Addition, Task::Agreement] {
        // A fixed handful: every 7th held-out prompt of the task.
        let handful: Vec<_> = items
            .iter()
            .filter(|i| i.task == task)
            .step_by(7)
            .take(8)
            .cloned()
            .collect();
        let r = evaluate(&model, &tok, &handful).unwrap();
        let s = &r[task.name()];
        // The whole answer under greedy decoding (both digits and the period for addition).
        assert!(
            s.correct == s.n,
            "{}: {}/{} answered correctly; wrong: {:?}",
            task.name(),
            s.correct,
            s.n,
            s.failures
        );
    }
}

#[test]
fn bundled_model_reproduces_its_recorded_accuracies() {
    let (model, tok) = load();
    let dir = default_model_dir().unwrap();
    let recorded: adag_train::eval::EvalReport =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    let now = evaluate(&model, &tok, &eval_items()).unwrap();
    for (task, r) in &recorded {
        let s = &now[task];
        assert_eq!(
            (s.n, s.correct, s.first_token),
            (r.n, r.correct, r.first_token),
            "{task}"
        );
    }
}

#[test]
fn readme_prompt_top_logit_is_the_right_capital() {
    let (model, tok) = load();
    let ids = tok
        .encode("The capital of the state containing Dallas is", true)
        .unwrap()
        .get_ids()
        .to_vec();
    let logits = model.logits(&ids).unwrap();
    let last = logits.get(ids.len() - 1).unwrap();
    let top = last.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(tok.id_to_token(top).as_deref(), Some("ĠAustin"));
}

#[test]
fn bundled_transcoders_reconstruct_at_reported_quality() {
    let (model, tok) = load();
    let dir = default_model_dir().unwrap().join("transcoders");
    let set = TranscoderSet::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(set.layers.len(), model.cfg.n_layers);
    assert_eq!(set.input_hook, "mlp.hook_in");
    assert_eq!(set.output_hook, "mlp.hook_out");
    let reported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let measured: Vec<TcMetrics> = fixed_sample(&model, &tok)
        .iter()
        .enumerate()
        .map(|(l, sample)| metrics(&set.layers[l], sample).unwrap())
        .collect();
    assert_matches_report(&measured, &reported);
}

#[test]
fn bundled_cross_layer_transcoder_reconstructs_at_reported_quality() {
    let (model, tok) = load();
    // The default set (what `adag attribute` uses without --transcoders) is the CLT.
    let dir = default_transcoders_dir().unwrap();
    assert_eq!(dir, default_model_dir().unwrap().join("clt"));
    let clt = CrossLayerTranscoder::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(clt.layers.len(), model.cfg.n_layers);
    let yaml = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    assert!(
        yaml.contains("model_kind: cross_layer_transcoder"),
        "{yaml}"
    );
    let reported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let sample = fixed_sample(&model, &tok);
    let measured = clt_metrics(&clt, &sample.iter().collect::<Vec<_>>()).unwrap();
    assert_matches_report(&measured, &reported);
}

/// Every layer's MLP inputs/outputs on a fixed stream the transcoders were not trained on.
fn fixed_sample(model: &Transformer, tok: &tokenizers::Tokenizer) -> Vec<LayerData> {
    collect_activations(model, tok, 120, 40, 4242)
        .unwrap()
        .into_iter()
        .map(|(train, eval)| LayerData {
            x: candle_core::Tensor::cat(&[&train.x, &eval.x], 0).unwrap(),
            y: candle_core::Tensor::cat(&[&train.y, &eval.y], 0).unwrap(),
        })
        .collect()
}

/// Variance explained within 0.03 and L0 within 20% (+1) of what metrics.json reports.
fn assert_matches_report(measured: &[TcMetrics], reported: &serde_json::Value) {
    for (l, m) in measured.iter().enumerate() {
        let r = &reported["layers"][l];
        let (fve, l0) = (r["fve"].as_f64().unwrap(), r["l0"].as_f64().unwrap());
        assert!(
            (m.fve - fve).abs() < 0.03,
            "layer {l}: variance explained {} here vs {fve} reported",
            m.fve
        );
        assert!(
            (m.l0 - l0).abs() < 0.2 * l0 + 1.0,
            "layer {l}: L0 {} here vs {l0} reported",
            m.l0
        );
    }
}
