//! The frontend JSON matches circuit-tracer's `create_graph_files` field by field, so its
//! frontend and Neuronpedia open adag's graphs.

use adag_graph::{frontend, prune, Graph, GraphMeta, LogitTarget};
use serde_json::Value;

/// 2 features (layer 0 pos 1 feature 5; layer 1 pos 2 feature 3), 2 layers × 3 positions of
/// errors, 3 tokens, 2 logits: 2 + 6 + 3 + 2 = 13 nodes.
fn graph() -> Graph {
    let n = 13;
    let mut a = vec![0.0f32; n * n];
    let (f0, f1, tok, logit) = (0, 1, 8, 11);
    a[f1 * n + f0] = 2.0; // feature 0 → feature 1
    a[f0 * n + tok + 1] = 1.5; // token 1 → feature 0
    a[logit * n + f1] = 3.0;
    a[logit * n + 2 + 3 + 2] = -0.5; // error (layer 1, pos 2) → logit 0
    a[(logit + 1) * n + f0] = 1.0;
    a[logit * n + tok + 2] = 0.25;
    Graph {
        meta: GraphMeta {
            basis: "transcoder".into(),
            scan: Some("my/transcoders".into()),
            prompt: "a b".into(),
            token_strings: vec!["<s>".into(), "a".into(), " b".into()],
            n_layers: 2,
            d_vocab: 50,
            ..Default::default()
        },
        adjacency: a,
        active_features: vec![[0, 1, 5], [1, 2, 3], [1, 2, 9]],
        activation_values: vec![0.7, 1.2, 0.1],
        selected_features: vec![0, 1],
        input_tokens: vec![1, 17, 23],
        logit_targets: vec![
            LogitTarget {
                token: " c".into(),
                vocab_idx: 42,
            },
            LogitTarget {
                token: " d".into(),
                vocab_idx: 7,
            },
        ],
        logit_probabilities: vec![0.6, 0.3],
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn nodes_links_metadata_and_qparams_follow_the_reference_schema() {
    let g = graph();
    let p = prune(&g, 1.0, 1.0).unwrap();
    let doc = frontend::graph_json(&g, &p, "ab", 0.8).unwrap();
    assert_eq!(keys(&doc), ["links", "metadata", "nodes", "qParams"]);
    assert_eq!(
        doc["metadata"],
        serde_json::json!({"slug": "ab", "scan": "my/transcoders", "transcoder_list": [], "prompt_tokens": ["<s>", "a", " b"],
                           "prompt": "a b", "node_threshold": 0.8, "schema_version": 1,
                           // adag's own: where the graph came from (for finding dashboards).
                           "model": "", "basis": "transcoder"})
    );
    assert_eq!(
        doc["qParams"],
        serde_json::json!({"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""})
    );

    let node_fields = [
        "activation",
        "clerp",
        "ctx_idx",
        "feature",
        "feature_type",
        "influence",
        "is_target_logit",
        "jsNodeId",
        "layer",
        "node_id",
        "reverse_ctx_idx",
        "run_idx",
        "token_prob",
    ];
    let nodes = doc["nodes"].as_array().unwrap();
    for n in nodes {
        assert_eq!(keys(n), node_fields, "{n}");
        assert_eq!(n["run_idx"], 0);
        assert_eq!(n["reverse_ctx_idx"], 0);
        assert!(n["layer"].is_string());
    }
    let by_id = |id: &str| {
        nodes
            .iter()
            .find(|n| n["node_id"] == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    };
    let f = by_id("1_3_2");
    assert_eq!(f["feature"], (1 + 3) * (1 + 3 + 1) / 2 + 3); // cantor(1, 3)
    assert_eq!(f["layer"], "1");
    assert_eq!(f["ctx_idx"], 2);
    assert_eq!(f["feature_type"], "cross layer transcoder");
    assert_eq!(f["jsNodeId"], "1_3-0");
    assert!((f["activation"].as_f64().unwrap() - 1.2).abs() < 1e-6);
    assert!(f["influence"].is_number());
    let e = by_id("1_-1_2");
    assert_eq!(
        (
            e["feature"].as_i64(),
            e["feature_type"].as_str(),
            e["jsNodeId"].as_str()
        ),
        (Some(-1), Some("mlp reconstruction error"), Some("1_-1-2"))
    );
    assert!(e["activation"].is_null());
    let t = by_id("E_17_1");
    assert_eq!(
        (
            t["feature"].as_i64(),
            t["layer"].as_str(),
            t["feature_type"].as_str(),
            t["jsNodeId"].as_str()
        ),
        (Some(1), Some("E"), Some("embedding"), Some("E_17-1"))
    );
    // Token nodes name their token, so a viewer need not look it up in the prompt.
    assert_eq!(t["clerp"], "Emb: \"a\"");
    // Every token node is kept, linked or not.
    assert_eq!(by_id("E_1_0")["clerp"], "Emb: \"<s>\"");
    let l = by_id("3_42_2");
    assert_eq!(l["layer"], "3");
    assert_eq!(l["feature"], 42);
    assert_eq!(l["ctx_idx"], 2);
    assert_eq!(l["feature_type"], "logit");
    assert_eq!(l["jsNodeId"], "L_42-2");
    assert_eq!(l["is_target_logit"], true);
    assert_eq!(l["clerp"], "Output \" c\" (p=0.600)");
    assert!((l["token_prob"].as_f64().unwrap() - 0.6).abs() < 1e-6);
    assert!(l["influence"].is_null());
    assert_eq!(by_id("3_7_2")["is_target_logit"], false);

    // Links carry the raw signed weight A[target, source].
    let links = doc["links"].as_array().unwrap();
    for link in links {
        assert_eq!(keys(link), ["source", "target", "weight"]);
    }
    let w = |s: &str, t: &str| {
        links
            .iter()
            .find(|l| l["source"] == s && l["target"] == t)
            .map(|l| l["weight"].as_f64().unwrap())
    };
    assert_eq!(w("1_-1_2", "3_42_2"), Some(-0.5));
    assert_eq!(w("0_5_1", "1_3_2"), Some(2.0));
    assert_eq!(w("E_17_1", "0_5_1"), Some(1.5));
    // Error ids never collide with feature ids (circuit-tracer issue #78).
    let ids: std::collections::HashSet<&str> = nodes
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), nodes.len());
}

#[test]
fn graph_files_are_written_and_metadata_upserted() {
    let dir = tempfile::tempdir().unwrap();
    let g = graph();
    let p = prune(&g, 0.8, 0.98).unwrap();
    frontend::write_graph_files(&g, &p, "one", dir.path(), 0.8).unwrap();
    frontend::write_graph_files(&g, &p, "one", dir.path(), 0.8).unwrap();
    frontend::write_graph_files(&g, &p, "two", dir.path(), 0.8).unwrap();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("graph-metadata.json")).unwrap(),
    )
    .unwrap();
    let slugs: Vec<&str> = index["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["one", "two"]);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("one.json")).unwrap())
            .unwrap();
    assert_eq!(doc["metadata"]["slug"], "one");
    assert!(frontend::write_graph_files(&g, &p, "../evil", dir.path(), 0.8).is_err());
}
