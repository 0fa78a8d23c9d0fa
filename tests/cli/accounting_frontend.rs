//! The viewer's graph JSON carries the same accounting as the graph file (issue 14).

use crate::common::ok;

#[test]
fn frontend_json_carries_the_graph_accounting() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.safetensors");
    let gdir = dir.path().join("graphs");
    ok(&[
        "attribute",
        "--prompt",
        "The capital of the state containing Dallas is",
        "--out",
        out.to_str().unwrap(),
        "--graph-dir",
        gdir.to_str().unwrap(),
        "--slug",
        "dallas",
    ]);
    let json_file = gdir.join("dallas.json");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    let stored = adag_graph::Graph::load(&out)
        .unwrap()
        .meta
        .accounting
        .unwrap();
    let exported: adag_graph::Accounting =
        serde_json::from_value(j["metadata"]["accounting"].clone()).expect("metadata.accounting");
    assert_eq!(exported, stored);

    // Each logit and each kept feature carries its own account (the viewer's node panel reads
    // it): logits in target order, features by their row in the graph's feature list.
    let graph = adag_graph::Graph::load(&out).unwrap();
    let nodes = j["nodes"].as_array().unwrap();
    let (mut logits, mut features) = (0, 0);
    for n in nodes {
        let Some(acc) = n.get("accounting") else {
            assert!(
                n["feature_type"] != "logit" && n["feature_type"] != "cross layer transcoder",
                "{n}"
            );
            continue;
        };
        let parts = acc["features"].as_f64().unwrap()
            + acc["errors"].as_f64().unwrap()
            + acc["tokens"].as_f64().unwrap()
            + acc["terms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["value"].as_f64().unwrap())
                .sum::<f64>()
            + acc["residual"].as_f64().unwrap();
        let value = acc["value"].as_f64().unwrap();
        assert!((parts - value).abs() <= 1e-3 * value.abs().max(1.0), "{n}");
        if n["feature_type"] == "logit" {
            let k = graph
                .logit_targets
                .iter()
                .position(|t| serde_json::json!(t.vocab_idx) == n["feature"])
                .unwrap();
            assert_eq!(
                acc["value"].as_f64().unwrap() as f32,
                stored.targets[k].account.value
            );
            logits += 1;
        } else {
            features += 1;
        }
    }
    assert_eq!(logits, stored.targets.len());
    assert!(features > 0);
}
