//! `adag attribute` states each target's accounting (text and `--json`) on the demo model.

use crate::common::ok;

const PROMPT: &str = "The capital of the state containing Dallas is";

#[test]
fn attribute_json_reports_a_closed_accounting_on_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.safetensors");
    let text = ok(&[
        "attribute",
        "--prompt",
        PROMPT,
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let j: serde_json::Value = serde_json::from_str(&text).expect("stdout is JSON");
    let t = &j["targets"][0];
    assert_eq!(t["token"], " Austin", "{text}");
    assert!(t["probability"].as_f64().unwrap() > 0.5, "{text}");
    // The parts sum to the value: recompute the residual from the printed parts.
    let a = &t["accounting"];
    let mut sum = a["features"].as_f64().unwrap()
        + a["errors"].as_f64().unwrap()
        + a["tokens"].as_f64().unwrap();
    for term in a["terms"].as_array().unwrap() {
        sum += term["value"].as_f64().unwrap();
    }
    let value = a["value"].as_f64().unwrap();
    assert!(
        (value - sum).abs() < 1e-4 * value.abs().max(1.0),
        "{value} vs {sum}: {text}"
    );
    assert!(
        j["accounting_worst_relative_residual"].as_f64().unwrap() < 1e-4,
        "{text}"
    );
    let names: Vec<&str> = a["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"transcoder decoder biases"), "{names:?}");
    assert!(names.contains(&"BOS position MLP outputs"), "{names:?}");
    // Issue 14's bar for the headline graph: errors carry at most 5% of the influence on the
    // answer, and at least 80% reaches the tokens through features alone.
    let score = |name: &str| j["scores"][name].as_f64().unwrap();
    assert!(score("completeness") >= 0.95, "{text}");
    assert!(score("replacement") >= 0.8, "{text}");
    assert_eq!(j["outputs"]["graph"], out.to_str().unwrap());
    // The graph file keeps the same accounting.
    let g = adag_graph::Graph::load(&out).unwrap();
    let stored = &g.meta.accounting.unwrap().targets[0];
    assert!((stored.account.value as f64 - value).abs() < 1e-6);
}

#[test]
fn attribute_prints_one_accounting_line_per_target() {
    let text = ok(&[
        "attribute",
        "--prompt",
        PROMPT,
        "--max-n-logits",
        "2",
        "--desired-logit-prob",
        "0.9999",
    ]);
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("accounting"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("\" Austin\"") && lines[0].contains("residual"),
        "{text}"
    );
}
