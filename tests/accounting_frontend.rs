//! The viewer's graph JSON carries the same accounting as the graph file (issue 14).

mod common;
use common::ok;

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
}
