//! `adag attribute --head-loadings` end to end (issue 20): every kept link of the demo graph
//! carries head loadings that sum to its weight, the graph file stores them, targets carry
//! `qk_tracing_results` whose contributors sum to the score, and the viewer shows "via L.H: %"
//! under each edge and the QK breakdown in the node panel (headless Chromium; without it the
//! browser part says why and passes).

use std::time::Duration;

use crate::common;
// adag-serve's WebDriver helpers, loaded once for the test binary by dashboards_viewer.
use crate::dashboards_viewer::serve_common;

use serde_json::Value;
use serve_common::webdriver::{Browser, BROWSER_LOCK};

#[test]
fn head_loadings_and_qk_in_files_and_viewer() {
    let tmp = tempfile::tempdir().unwrap();
    let graphs = tmp.path().join("graphs");
    let file = tmp.path().join("g.safetensors");
    common::ok(&[
        "attribute",
        "--prompt",
        "The capital of the state containing Dallas is",
        "--head-loadings",
        "--out",
        common::s(&file),
        "--slug",
        "dallas",
        "--graph-dir",
        common::s(&graphs),
    ]);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(graphs.join("dallas.json")).unwrap()).unwrap();
    let links = doc["links"].as_array().unwrap();
    assert!(!links.is_empty());
    for l in links {
        let h = &l["head_loadings"];
        let w = l["weight"].as_f64().unwrap();
        let parts: f64 = h["heads"]
            .as_array()
            .unwrap_or_else(|| panic!("link without head loadings: {l}"))
            .iter()
            .map(|x| x[2].as_f64().unwrap())
            .sum::<f64>()
            + h["direct"].as_f64().unwrap();
        assert!(
            (parts - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{l}: parts sum to {parts}"
        );
    }
    let (g, heads) = adag_graph::Graph::load_with_heads(&file).unwrap();
    let heads = heads.expect("the graph file stores head loadings");
    assert_eq!(heads.edges.len(), links.len());
    assert_eq!(heads.n_layers, g.meta.n_layers);

    let traced: Vec<&Value> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["adag_qk_tracing"].is_array())
        .collect();
    assert!(!traced.is_empty(), "no node has qk_tracing_results");
    for n in &traced {
        // Neuronpedia's shape: one object with its three lists (the node's strongest score).
        let np = &n["qk_tracing_results"];
        assert_eq!(np, &n["adag_qk_tracing"][0], "{n}");
        for field in [
            "pair_wise_contributors",
            "top_q_marginal_contributors",
            "top_k_marginal_contributors",
        ] {
            assert!(np[field].is_array(), "{field}: {np}");
        }
        for r in n["adag_qk_tracing"].as_array().unwrap() {
            let score = r["score"].as_f64().unwrap();
            for side in ["top_q_marginal_contributors", "top_k_marginal_contributors"] {
                let list = r[side].as_array().unwrap();
                assert!(!list.is_empty() && list.len() <= 10, "{side}: {r}");
            }
            assert!(r["key_pos"].as_u64() <= r["query_pos"].as_u64(), "{r}");
            assert!(score.is_finite());
        }
    }

    let _g = BROWSER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(b) = Browser::launch() else { return };
    let id = traced[0]["node_id"].as_str().unwrap();
    let server = adag_serve::Server::start(adag_serve::ServeConfig::new(&graphs).port(0)).unwrap();
    b.goto(&format!(
        "http://{}/?slug=dallas&clickedId={id}",
        server.addr()
    ));
    let load = Duration::from_secs(60);
    b.wait_for("document.querySelector('#edges-incoming .via')", load);
    let via = b.text("#edges-incoming .via");
    assert!(via.starts_with("via ") && via.contains('%'), "{via}");
    assert!(
        via.contains("L") && via.contains(".H") || via.contains("direct"),
        "{via}"
    );
    let qk = b.text("details.qk summary");
    let first = &traced[0]["adag_qk_tracing"][0];
    assert!(
        qk.starts_with(&format!("L{}.H{}", first["layer"], first["head"])),
        "{qk}"
    );
}
