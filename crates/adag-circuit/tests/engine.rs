//! The pipeline with the real neuron tracer (`adag_engine::neuron::trace_prompts`) on the tiny
//! llama fixture: batch size, sharding and resuming do not change the circuit.

use std::path::{Path, PathBuf};

use adag_circuit::pipeline::{self, RunSpec};
use adag_circuit::prepare::{prepare, PreparedPrompt, PromptOptions};
use adag_circuit::store::{fingerprint_json, DatasetInfo};
use adag_circuit::PromptCircuit;
use adag_circuit::{merge, read_circuit, Circuit, Dataset, Shard};
use adag_engine::neuron::{trace_prompts, NeuronOptions, PromptInput};
use adag_model::{LoadOptions, LoadedModel};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Setup {
    m: LoadedModel,
    dataset: Dataset,
    prompts: Vec<PreparedPrompt>,
    opts: NeuronOptions,
}

fn setup() -> Setup {
    let m = LoadedModel::load(
        &root().join("fixtures/models/llama"),
        &LoadOptions::default(),
    )
    .unwrap();
    let dataset = Dataset::load(&root().join("fixtures/datasets/capitals.yaml")).unwrap();
    let popts = PromptOptions {
        use_chat_format: true,
        ..Default::default()
    };
    let prompts = dataset
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| prepare(&m.tokenizer, it, i as u64, None, &popts).unwrap())
        .collect();
    let opts = NeuronOptions {
        k: 3,
        ..Default::default()
    };
    Setup {
        m,
        dataset,
        prompts,
        opts,
    }
}

fn spec(out: &Path, s: &Setup, shard: Shard, batch_size: usize) -> RunSpec {
    RunSpec {
        out: out.into(),
        identity: serde_json::json!({"engine": serde_json::to_value(&s.opts).unwrap()["k"]}),
        config: serde_json::Value::Null,
        model: "llama".into(),
        model_id: None,
        dataset: DatasetInfo {
            path: "capitals.yaml".into(),
            n_prompts: s.dataset.len(),
            fingerprint: fingerprint_json(&serde_json::to_value(&s.dataset.items).unwrap()),
        },
        shard,
        batch_size,
        overwrite: false,
        load_s: 0.0,
        prepare_s: 0.0,
    }
}

/// Runs a shard; the tracer fails on call `fail_on` (1-based) when given.
fn run(
    s: &Setup,
    out: &Path,
    shard: Shard,
    batch_size: usize,
    fail_on: Option<usize>,
) -> adag_circuit::Result<Vec<u64>> {
    let mut calls = 0;
    let mut traced = Vec::new();
    let mut tracer = |b: &[PreparedPrompt]| -> Result<Vec<PromptCircuit>, String> {
        calls += 1;
        if Some(calls) == fail_on {
            return Err("killed".into());
        }
        traced.extend(b.iter().map(|p| p.prompt_id));
        let inputs: Vec<PromptInput> = b
            .iter()
            .map(|p| PromptInput {
                tokens: p.tokens.clone(),
                targets: p.targets.clone(),
            })
            .collect();
        let c = trace_prompts(&s.m.model, &inputs, &s.opts).map_err(|e| e.to_string())?;
        Ok(c)
    };
    let prompts = &s.prompts[shard.range(s.dataset.len())];
    pipeline::run(
        &spec(out, s, shard, batch_size),
        prompts,
        &s.m.tokenizer,
        &mut tracer,
        &mut |_| {},
    )?;
    Ok(traced)
}

/// Circuits equal up to float rounding of batched vs single forward passes.
fn assert_same(a: &Circuit, b: &Circuit) {
    let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * (1.0 + x.abs().max(y.abs()));
    let all_close =
        |x: &[f32], y: &[f32]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close(*p, *q));
    assert_eq!(a.prompts.len(), b.prompts.len());
    for (p, q) in a.prompts.iter().zip(&b.prompts) {
        assert_eq!(
            (p.prompt_id, &p.token_ids, &p.target_ids),
            (q.prompt_id, &q.token_ids, &q.target_ids)
        );
        assert!(all_close(&p.target_logits, &q.target_logits) && close(p.goal, q.goal));
    }
    assert_eq!(a.nodes.len(), b.nodes.len(), "node count");
    for (n, m) in a.nodes.iter().zip(&b.nodes) {
        assert_eq!(
            (n.prompt_id, n.layer, n.position, n.neuron, n.polarity),
            (m.prompt_id, m.layer, m.position, m.neuron, m.polarity)
        );
        assert!(
            close(n.activation, m.activation) && close(n.attribution, m.attribution),
            "{n:?} vs {m:?}"
        );
        assert!(
            all_close(&n.input_profile, &m.input_profile)
                && all_close(&n.output_profile, &m.output_profile)
        );
    }
    assert_eq!(a.edges.len(), b.edges.len(), "edge count");
    for (e, f) in a.edges.iter().zip(&b.edges) {
        assert_eq!(
            (
                e.prompt_id,
                e.source_layer,
                e.source_position,
                e.source_neuron,
                e.target_layer,
                e.target_position,
                e.target_neuron
            ),
            (
                f.prompt_id,
                f.source_layer,
                f.source_position,
                f.source_neuron,
                f.target_layer,
                f.target_position,
                f.target_neuron
            )
        );
        assert!(close(e.weight, f.weight) && close(e.attribution, f.attribution));
    }
}

#[test]
fn batch_size_shards_and_resume_do_not_change_the_circuit() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("b1");
    run(&s, &one, Shard::ALL, 1, None).unwrap();
    let (reference, _) = read_circuit(&one).unwrap();
    assert_eq!(reference.prompts.len(), 7);
    assert!(
        reference.nodes.iter().any(|n| n.layer >= 0 && n.layer < 3),
        "some neurons selected"
    );

    // Batch size 3 (padded batches of different lengths).
    let b3 = dir.path().join("b3");
    run(&s, &b3, Shard::ALL, 3, None).unwrap();
    assert_same(&read_circuit(&b3).unwrap().0, &reference);

    // Two shards with batch size 2, merged.
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| {
            let d = dir.path().join(format!("s{i}"));
            run(&s, &d, Shard { index: i, count: 2 }, 2, None).unwrap();
            d
        })
        .collect();
    let merged = dir.path().join("merged");
    merge(&shards, &merged, false).unwrap();
    assert_same(&read_circuit(&merged).unwrap().0, &reference);

    // Killed in the second batch, resumed with batch size 2: only the rest is traced.
    let resumed = dir.path().join("resumed");
    assert!(run(&s, &resumed, Shard::ALL, 3, Some(2)).is_err());
    let traced = run(&s, &resumed, Shard::ALL, 2, None).unwrap();
    assert_eq!(traced, vec![3, 4, 5, 6]);
    assert_same(&read_circuit(&resumed).unwrap().0, &reference);
}
