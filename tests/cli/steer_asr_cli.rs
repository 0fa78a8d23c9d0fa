//! `adag steer --judge`: steering success rates on the demo model (two-hop capitals), offline
//! with the `answer` rule judge and through `adag serve-llm` as an LLM judge.

use std::path::{Path, PathBuf};

use crate::common::{fails, ok, s, serve_llm};

/// Traces the first 8 demo capitals prompts and clusters them (k = 4); None without the demo.
fn demo_circuit(dir: &Path) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("models/demo/config.json").exists() {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        return None;
    }
    let text = std::fs::read_to_string(root.join("fixtures/datasets/demo-capitals.jsonl")).unwrap();
    let ds = dir.join("capitals.jsonl");
    std::fs::write(&ds, text.lines().take(8).collect::<Vec<_>>().join("\n")).unwrap();
    let c = dir.join("circuit");
    ok(&["trace", "--dataset", s(&ds), "--out", s(&c), "--quiet"]);
    ok(&["cluster", s(&c), "--k", "4"]);
    Some(c)
}

fn rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The sweep over all clusters at 0×/1× with the offline `answer` judge, greedy: the demo
/// model gives every answer unsteered (eval.json), so every cluster's rate at 1× is 1 (5/5 per
/// prompt, Wilson interval below 1); ablating clusters breaks answers, so some cluster's rate
/// at 0× is below 1. The table is written as CSV and Parquet and every continuation with its
/// verdict. Complement steering runs through the same sweep.
#[test]
fn asr_sweep_on_the_demo_with_the_answer_judge() {
    let dir = tempfile::tempdir().unwrap();
    let Some(c) = demo_circuit(dir.path()) else {
        return;
    };
    let out = dir.path().join("asr");
    let common = [
        "steer",
        s(&c),
        "--sweep",
        "--scale",
        "0,1",
        "--judge",
        "answer",
        "--samples",
        "2",
        "--max-tokens",
        "2",
        "--temperature",
        "0",
        "--all-positions",
        "-o",
        s(&out),
    ];
    let table = ok(&common);
    assert!(table.contains("95% CI (Wilson)"), "{table}");
    let csv = std::fs::read_to_string(dir.path().join("asr.asr.csv")).unwrap();
    let lines: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(lines.len(), 8, "4 clusters × 2 scales:\n{csv}");
    let rate = |l: &Vec<&str>| l[6].parse::<f64>().unwrap();
    for l in lines.iter().filter(|l| l[1] == "1") {
        assert_eq!(
            rate(l),
            1.0,
            "unsteered, the demo answers every prompt:\n{csv}"
        );
        assert_eq!(l[3], "16", "8 prompts × 2 samples:\n{csv}");
        assert!(l[7].parse::<f64>().unwrap() < 1.0, "{csv}");
    }
    assert!(
        lines.iter().any(|l| l[1] == "0" && rate(l) < 1.0),
        "ablating no cluster changed an answer:\n{csv}"
    );
    assert!(dir.path().join("asr.asr.parquet").exists());
    let samples = rows(&dir.path().join("asr.samples.jsonl"));
    assert_eq!(samples.len(), 8 * 16);
    assert!(samples.iter().all(|s| s["reason"]
        .as_str()
        .is_some_and(|r| r.contains("the answers"))));

    let mut comp = common.to_vec();
    comp.push("--complement");
    let table = ok(&comp);
    assert!(table.contains("not C0"), "{table}");

    let e = fails(&["steer", s(&c), "--sweep", "--judge", "startswith:x"]);
    assert!(
        e.contains("--judge: judge \"startswith:x\": expected answer"),
        "{e}"
    );
}

/// The LLM judge through `adag serve-llm` (the demo model as the judge): every continuation
/// reaches it with the rubric and gets a verdict or an unclear reply, kept with its text.
/// The demo model cannot follow the yes/no format, so the counts are only checked to add up.
#[test]
fn asr_with_an_llm_judge_served_by_serve_llm() {
    let dir = tempfile::tempdir().unwrap();
    let Some(c) = demo_circuit(dir.path()) else {
        return;
    };
    let (_server, base) = serve_llm(&["--port", "0"]);
    let out = dir.path().join("llm");
    let judge = format!("llm:openai:{base}");
    ok(&[
        "steer",
        s(&c),
        "--cluster",
        "C0",
        "--scale",
        "2",
        "--judge",
        &judge,
        "--samples",
        "2",
        "--max-tokens",
        "2",
        "--seed",
        "3",
        "-o",
        s(&out),
    ]);
    let samples = rows(&dir.path().join("llm.samples.jsonl"));
    assert!(!samples.is_empty());
    let csv = std::fs::read_to_string(dir.path().join("llm.asr.csv")).unwrap();
    let row: Vec<usize> = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .skip(3)
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(row.iter().sum::<usize>(), samples.len(), "{csv}");
    for s in &samples {
        if s["success"].is_null() {
            assert!(s["reason"].is_string(), "{s}");
        }
    }
    // The cache holds the judge's requests: a rerun answers from it.
    assert!(c.join("llm-cache").exists());
}
