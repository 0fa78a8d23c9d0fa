//! The pipeline with a deterministic fake tracer: Parquet round trip, shards merged equal one
//! run, a resumed run equals an uninterrupted one, and runs refuse to mix.
//!
//! The fake's output for a prompt depends on that prompt only, like the real tracer's (whose
//! batch-size invariance is tested in the binary's CLI tests on the fixture model), so any
//! difference here comes from the pipeline: batching, parts, resume, shards or merge.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use adag_circuit::pipeline::{self, RunSpec};
use adag_circuit::prepare::{prepare, PreparedPrompt, PromptOptions};
use adag_circuit::store::{fingerprint_json, DatasetInfo};
use adag_circuit::{merge, read_circuit, Circuit, Dataset, Shard};
use adag_circuit::{CircuitEdge, CircuitNode, PromptCircuit};
use adag_model::ModelTokenizer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> ModelTokenizer {
    ModelTokenizer::from_dir(&root().join("fixtures/models/llama")).unwrap()
}

fn prompts(tok: &ModelTokenizer) -> (Dataset, Vec<PreparedPrompt>) {
    let d = Dataset::load(&root().join("fixtures/datasets/capitals.jsonl")).unwrap();
    let opts = PromptOptions {
        use_chat_format: true,
        ..Default::default()
    };
    let p = d
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| prepare(tok, it, i as u64, None, &opts).unwrap())
        .collect();
    (d, p)
}

/// A deterministic stand-in for the engine: a function of the prompt's tokens.
fn fake(p: &PreparedPrompt) -> PromptCircuit {
    let t = &p.tokens;
    let n = t.len() as u32;
    let last = n - 1;
    let targets = p
        .targets
        .clone()
        .unwrap_or_else(|| vec![t[0] % 50 + 100, t[t.len() - 1] % 50 + 150]);
    let logits: Vec<f32> = targets.iter().map(|&v| v as f32 / 10.0).collect();
    let goal = logits.iter().sum();
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (pos, &tok) in t.iter().enumerate() {
        let pos = pos as u32;
        let a = ((tok as f32) * 0.37 + pos as f32).sin();
        nodes.push(CircuitNode {
            layer: (tok % 3) as i32,
            position: pos,
            index: tok * 7 % 128,
            activation: a,
            attribution: a / 3.0,
            input_profile: (0..n)
                .map(|s| {
                    if s <= pos {
                        1.0 / (pos + 1) as f32
                    } else {
                        0.0
                    }
                })
                .collect(),
            output_profile: logits.iter().map(|l| a / l).collect(),
        });
        nodes.push(CircuitNode {
            layer: -1,
            position: pos,
            index: tok,
            activation: 1.0,
            attribution: 0.1,
            input_profile: vec![],
            output_profile: vec![],
        });
        edges.push(CircuitEdge {
            source: (-1, pos, tok),
            target: ((tok % 3) as i32, pos, tok * 7 % 128),
            weight: 0.5,
            attribution: a / 2.0,
        });
    }
    for (j, &v) in targets.iter().enumerate() {
        nodes.push(CircuitNode {
            layer: 3,
            position: last,
            index: v,
            activation: logits[j],
            attribution: logits[j] / goal,
            input_profile: vec![],
            output_profile: vec![],
        });
    }
    PromptCircuit {
        tokens: t.clone(),
        target_probs: targets.iter().map(|&v| 1.0 / v as f32).collect(),
        target_logits: logits,
        targets,
        goal,
        nodes,
        edges,
    }
}

fn spec(out: &Path, d: &Dataset, shard: Shard, batch_size: usize, k: usize) -> RunSpec {
    let identity = serde_json::json!({"model": "llama", "config": {"k": k}, "dataset": "capitals"});
    RunSpec {
        out: out.into(),
        identity,
        config: serde_json::json!({"k": k, "batch_size": batch_size}),
        model: "fixtures/models/llama".into(),
        model_id: None,
        dataset: DatasetInfo {
            path: d.path.display().to_string(),
            n_prompts: d.len(),
            fingerprint: fingerprint_json(&serde_json::to_value(&d.items).unwrap()),
        },
        shard,
        batch_size,
        overwrite: false,
        load_s: 0.0,
        prepare_s: 0.0,
    }
}

fn shard_prompts(all: &[PreparedPrompt], n: usize, s: Shard) -> Vec<PreparedPrompt> {
    all[s.range(n)].to_vec()
}

fn run_fake(
    spec: &RunSpec,
    prompts: &[PreparedPrompt],
    tok: &ModelTokenizer,
) -> adag_circuit::Result<()> {
    let mut tracer = |b: &[PreparedPrompt]| Ok(b.iter().map(fake).collect());
    pipeline::run(spec, prompts, tok, &mut tracer, &mut |_| {}).map(|_| ())
}

fn expected(tok: &ModelTokenizer, prompts: &[PreparedPrompt]) -> Circuit {
    let mut c = Circuit::default();
    for p in prompts {
        let t = fake(p);
        let s = tok.token_strings(&t.targets).unwrap();
        c.push(p, &t, s);
    }
    c
}

#[test]
fn parquet_round_trip() {
    let tok = tokenizer();
    let (d, all) = prompts(&tok);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    run_fake(&spec(&out, &d, Shard::ALL, 3, 5), &all, &tok).unwrap();
    let (c, m) = read_circuit(&out).unwrap();
    assert_eq!(c, expected(&tok, &all));
    assert_eq!(m.n_prompts, 7);
    assert_eq!(m.n_nodes, c.nodes.len());
    assert_eq!(c.prompts[3].answers, vec![" Olympia".to_string()]);
    assert_eq!(c.prompts[4].seed.as_deref(), Some("[EMPTY]"));
    assert_eq!(c.prompts[5].seed, None);
    assert_eq!(c.prompts[0].label.as_deref(), Some("texas"));
    assert!(c.nodes.iter().any(|n| n.polarity == -1) && c.nodes.iter().any(|n| n.polarity == 1));
    // For tools/check_circuit_parquet.py: keep a copy when asked.
    if let Ok(keep) = std::env::var("ADAG_KEEP_CIRCUIT") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for f in [
            "nodes.parquet",
            "edges.parquet",
            "prompts.parquet",
            "manifest.json",
        ] {
            std::fs::copy(out.join(f), keep.join(f)).unwrap();
        }
    }
    // Parts are gone once the circuit is final.
    assert!(!out.join("parts").exists());
    for f in [
        "nodes.parquet",
        "edges.parquet",
        "prompts.parquet",
        "manifest.json",
        "run.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
}

#[test]
fn batch_size_does_not_change_rows() {
    let tok = tokenizer();
    let (d, all) = prompts(&tok);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_fake(&spec(&a, &d, Shard::ALL, 1, 5), &all, &tok).unwrap();
    run_fake(&spec(&b, &d, Shard::ALL, 4, 5), &all, &tok).unwrap();
    assert_eq!(read_circuit(&a).unwrap().0, read_circuit(&b).unwrap().0);
}

#[test]
fn merged_shards_equal_one_run() {
    let tok = tokenizer();
    let (d, all) = prompts(&tok);
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    run_fake(&spec(&one, &d, Shard::ALL, 2, 5), &all, &tok).unwrap();
    let mut shard_dirs = Vec::new();
    for i in 0..3 {
        let s = Shard { index: i, count: 3 };
        let out = dir.path().join(format!("shard{i}"));
        run_fake(
            &spec(&out, &d, s, 2, 5),
            &shard_prompts(&all, d.len(), s),
            &tok,
        )
        .unwrap();
        shard_dirs.push(out);
    }
    // Any order of arguments.
    shard_dirs.reverse();
    let merged = dir.path().join("merged");
    let m = merge(&shard_dirs, &merged, false).unwrap();
    assert_eq!(m.n_prompts, 7);
    assert_eq!(m.prompt_range, (0, 7));
    assert_eq!(
        read_circuit(&merged).unwrap().0,
        read_circuit(&one).unwrap().0
    );

    // A missing shard is named; --partial merges what is there.
    let e = merge(&shard_dirs[..2], &dir.path().join("m2"), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shards 0 of 3 are missing"), "{e}");
    merge(&shard_dirs[..2], &dir.path().join("m3"), true).unwrap();
    // The same shard twice.
    let e = merge(
        &[shard_dirs[0].clone(), shard_dirs[0].clone()],
        &dir.path().join("m4"),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("given twice"), "{e}");
    // A shard of another run.
    let other = dir.path().join("other");
    let s = Shard { index: 0, count: 3 };
    run_fake(
        &spec(&other, &d, s, 2, 3),
        &shard_prompts(&all, d.len(), s),
        &tok,
    )
    .unwrap();
    let e = merge(
        &[other, shard_dirs[0].clone(), shard_dirs[1].clone()],
        &dir.path().join("m5"),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("different run") && e.contains("config.k"), "{e}");
}

#[test]
fn resumed_run_equals_uninterrupted() {
    let tok = tokenizer();
    let (d, all) = prompts(&tok);
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    run_fake(&spec(&clean, &d, Shard::ALL, 2, 5), &all, &tok).unwrap();

    // Killed during the third batch (prompts 4..6): two parts are finished.
    let out = dir.path().join("resumed");
    let calls = Cell::new(0);
    let mut failing = |b: &[PreparedPrompt]| {
        calls.set(calls.get() + 1);
        if calls.get() == 3 {
            Err("simulated crash".to_string())
        } else {
            Ok(b.iter().map(fake).collect())
        }
    };
    let e = pipeline::run(
        &spec(&out, &d, Shard::ALL, 2, 5),
        &all,
        &tok,
        &mut failing,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("tracing prompts 4..6: simulated crash"), "{e}");
    let e = read_circuit(&out).unwrap_err().to_string();
    assert!(e.contains("2 batches are finished"), "{e}");

    // Restart with another batch size: only prompts 4..7 are traced.
    let traced = std::cell::RefCell::new(Vec::new());
    let mut counting = |b: &[PreparedPrompt]| {
        traced.borrow_mut().extend(b.iter().map(|p| p.prompt_id));
        Ok(b.iter().map(fake).collect())
    };
    let mut first_report = None;
    let m = pipeline::run(
        &spec(&out, &d, Shard::ALL, 3, 5),
        &all,
        &tok,
        &mut counting,
        &mut |p| {
            first_report.get_or_insert(p);
        },
    )
    .unwrap();
    assert_eq!(*traced.borrow(), vec![4, 5, 6]);
    assert_eq!(m.timings.resumed_prompts, 4);
    assert_eq!(first_report.unwrap().done, 4);
    assert_eq!(
        read_circuit(&out).unwrap().0,
        read_circuit(&clean).unwrap().0
    );
}

#[test]
fn a_directory_holds_one_run() {
    let tok = tokenizer();
    let (d, all) = prompts(&tok);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    run_fake(&spec(&out, &d, Shard::ALL, 2, 5), &all, &tok).unwrap();
    let e = run_fake(&spec(&out, &d, Shard::ALL, 2, 3), &all, &tok)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("holds another run (its settings differ in: config.k)"),
        "{e}"
    );
    let mut s = spec(&out, &d, Shard::ALL, 2, 3);
    s.overwrite = true;
    run_fake(&s, &all, &tok).unwrap();
    assert_eq!(read_circuit(&out).unwrap().1.identity["config"]["k"], 3);
    // Rerunning a finished run traces nothing.
    let mut never =
        |_: &[PreparedPrompt]| -> Result<Vec<PromptCircuit>, String> { panic!("traced again") };
    pipeline::run(&s, &all, &tok, &mut never, &mut |_| {}).unwrap();
}

#[test]
fn fixture_formats_agree() {
    let d = |f: &str| {
        Dataset::load(&root().join("fixtures/datasets").join(f))
            .unwrap()
            .items
    };
    let jsonl = d("capitals.jsonl");
    assert_eq!(jsonl.len(), 7);
    assert_eq!(d("capitals.csv"), jsonl);
    assert_eq!(d("capitals.yaml"), jsonl);
}

#[test]
fn more_shards_than_prompts() {
    // 7 prompts over 8 shards: the last shard is empty and still a valid circuit.
    let tok = tokenizer();
    let (d, all) = prompts(&tok);
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    run_fake(&spec(&one, &d, Shard::ALL, 2, 5), &all, &tok).unwrap();
    let shards: Vec<PathBuf> = (0..8)
        .map(|i| {
            let s = Shard { index: i, count: 8 };
            let out = dir.path().join(format!("s{i}"));
            run_fake(
                &spec(&out, &d, s, 2, 5),
                &shard_prompts(&all, d.len(), s),
                &tok,
            )
            .unwrap();
            out
        })
        .collect();
    let (empty, m) = read_circuit(&shards[7]).unwrap();
    assert_eq!((empty, m.n_prompts), (Circuit::default(), 0));
    let merged = dir.path().join("merged");
    merge(&shards, &merged, false).unwrap();
    assert_eq!(
        read_circuit(&merged).unwrap().0,
        read_circuit(&one).unwrap().0
    );
}
