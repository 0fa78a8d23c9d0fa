//! Clusters as supernodes: names unique per cluster, descriptions keyed by cluster id.

mod common;

use adag_analysis::write_cluster_supernodes;
use common::state;
use serde_json::json;

/// Two clusters sharing the label `is` stay two supernodes (`C0: is`, `C1: is`), each with
/// its own description; an unlabelled cluster keeps its bare id.
#[test]
fn clusters_sharing_a_label_keep_their_own_names_and_descriptions() {
    let mut cs = state(&[("0,1,1", "C0"), ("1,2,1", "C1"), ("2,3,-1", "C2")]);
    for (c, d) in cs.clusters.iter_mut().zip(["reads is", "writes is"]) {
        c.label = Some("is".into());
        c.description = Some(d.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let node = |id: &str, act: f64| json!({"node_id": id, "feature_type": "mlp neuron", "activation": act});
    let doc = json!({
        "metadata": {"slug": "s-0"},
        "qParams": {"pinnedIds": []},
        "nodes": [node("0_1_4", 1.0), node("1_2_4", 2.0), node("2_3_1", -1.0)],
        "links": [],
    });
    let path = dir.path().join("s-0.json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(write_cluster_supernodes(&cs, dir.path(), "s").unwrap(), 1);
    let out: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        out["qParams"]["supernodes"],
        json!([["C0: is", "0_1_4"], ["C1: is", "1_2_4"], ["C2", "2_3_1"]])
    );
    assert_eq!(
        out["metadata"]["supernode_descriptions"],
        json!({"C0": "reads is", "C1": "writes is"})
    );
}
