//! The README's demo graph in a real headless Chromium: `adag serve DIR` (no `--features-dir`)
//! finds the dashboards of the transcoders that made the graph from its metadata, and the node
//! panel shows a feature's examples with per-token highlighting, density and logits; hovering
//! the node shows its top tokens. Without Chromium the test says why and passes (on CI it fails).

#[path = "../../crates/adag-serve/tests/common/mod.rs"]
#[allow(unused_imports)]
pub(crate) mod serve_common;

use std::time::Duration;

use crate::common;

use serde_json::{json, Value};
use serve_common::webdriver::{Browser, BROWSER_LOCK};

const LOAD: Duration = Duration::from_secs(60);

#[test]
fn demo_graph_feature_shows_its_dashboard() {
    let _g = BROWSER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(b) = Browser::launch() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let graphs = tmp.path().join("graphs");
    common::ok(&[
        "attribute",
        "--prompt",
        "The capital of the state containing Dallas is",
        "--slug",
        "dallas",
        "--graph-dir",
        common::s(&graphs),
    ]);
    // The feature of the graph to click: one whose dashboard has top examples.
    let doc: Value =
        serde_json::from_slice(&std::fs::read(graphs.join("dallas.json")).unwrap()).unwrap();
    let dashboards = common::root().join("models/demo/clt/features");
    let (node, detail) = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["feature_type"] == json!("cross layer transcoder"))
        .find_map(|n| {
            let layer: usize = n["layer"].as_str()?.parse().ok()?;
            let id = n["node_id"].as_str()?;
            let f: usize = id.split('_').nth(1)?.parse().ok()?;
            let d = adag_features::write::read_detail(&dashboards, layer, f).ok()??;
            let has = !d["examples_quantiles"][0]["examples"]
                .as_array()?
                .is_empty();
            has.then(|| (n.clone(), d))
        })
        .expect("a feature of the demo graph with examples");
    let id = node["node_id"].as_str().unwrap();

    let server = adag_serve::Server::start(adag_serve::ServeConfig::new(&graphs).port(0)).unwrap();
    b.goto(&format!(
        "http://{}/?slug=dallas&clickedId={id}",
        server.addr()
    ));
    b.wait_for(
        "window.adag && window.adag.ready && document.body.dataset.rendered === '1'",
        LOAD,
    );
    b.wait_for(
        "document.querySelector('#feature-detail .logit-list.top')",
        LOAD,
    );
    let text = b.text("#feature-detail").to_lowercase();
    assert!(
        text.contains("activation frequency") && text.contains("top activations"),
        "{text}"
    );
    // The examples are the dashboard's, token by token, each highlighted at its peak.
    let top = detail["examples_quantiles"][0]["examples"]
        .as_array()
        .unwrap();
    let shown = b.exec(
        "return [...document.querySelectorAll('#feature-detail .example')].map(e => \
         [...e.querySelectorAll('.tok')].map(t => [t.textContent, getComputedStyle(t).backgroundColor]));",
        vec![],
    );
    let shown = shown.as_array().unwrap();
    assert!(shown.len() >= top.len().min(4), "{shown:?}");
    for (ex, spans) in top.iter().take(4).zip(shown) {
        let spans = spans.as_array().unwrap();
        let toks: Vec<&str> = spans.iter().map(|s| s[0].as_str().unwrap()).collect();
        let want: Vec<&str> = ex["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(toks, want);
        let peak = ex["train_token_ind"].as_u64().unwrap() as usize;
        assert_ne!(
            spans[peak][1],
            json!("rgba(0, 0, 0, 0)"),
            "peak highlighted"
        );
        for (s, a) in spans.iter().zip(ex["tokens_acts_list"].as_array().unwrap()) {
            if a.as_f64() == Some(0.0) {
                assert_eq!(s[1], json!("rgba(0, 0, 0, 0)"), "inactive token plain");
            }
        }
    }
    let logits = b.exec(
        "return [...document.querySelectorAll('#feature-detail .logit-list.top span')].length;",
        vec![],
    );
    assert_eq!(
        logits,
        json!(detail["top_logits"].as_array().unwrap().len())
    );
    b.screenshot(
        &std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-node-panel.png"),
    );

    // Hovering the node shows the tokens it fires on most (the peak of its first example).
    let p = b.exec(
        "return window.adag.screenPos(arguments[0]);",
        vec![json!(id)],
    );
    b.move_to(p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap());
    b.wait_for("document.querySelector('#tooltip .tt-top')", LOAD);
    let first = &top[0];
    let peak_tok = first["tokens"][first["train_token_ind"].as_u64().unwrap() as usize]
        .as_str()
        .unwrap();
    let tip = b.text("#tooltip .tt-top");
    assert!(
        tip.starts_with("fires on: ") && tip.contains(&format!("\"{peak_tok}\"")),
        "{tip}"
    );
}
