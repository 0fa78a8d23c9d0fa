//! The viewer in a real headless Chromium (through chromedriver): explore, pin, group,
//! annotate, save and reload; shareable URLs; neuron profiles and clusters; feature details
//! from both detail-file formats; and time to first render of a large graph.
//!
//! Without Chromium these tests print why and pass (on CI, `CI=true`, they fail instead).
//! Screenshots land in `target/tmp/adag-serve-screens/`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::webdriver::{Browser, BROWSER_LOCK};
use common::*;
use serde_json::{json, Value};

const LOAD: Duration = Duration::from_secs(60);

fn screens() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("adag-serve-screens")
}

fn browser() -> Option<(std::sync::MutexGuard<'static, ()>, Browser)> {
    let guard = BROWSER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    Browser::launch().map(|b| (guard, b))
}

fn open(b: &Browser, url: &str) {
    b.goto(url);
    b.wait_for(
        "window.adag && window.adag.ready && document.body.dataset.rendered === '1'",
        LOAD,
    );
}

fn pos(b: &Browser, id: &str) -> (f64, f64) {
    let p = b.exec(
        "return window.adag.screenPos(arguments[0]);",
        vec![json!(id)],
    );
    assert!(p.is_object(), "node {id} is not on screen");
    (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap())
}

fn state(b: &Browser, key: &str) -> Value {
    b.exec("return window.adag.state[arguments[0]];", vec![json!(key)])
}

fn fact(b: &Browser, name: &str) -> String {
    b.text(&format!("#node-panel tr[data-fact=\"{name}\"] td"))
}

/// The default view must be readable: no two canvas labels overlap, no label covers a node
/// other than its own, and the token row's labels fit their columns.
fn assert_labels_readable(b: &Browser) -> usize {
    let v = b.exec(
        r#"const v = window.adag.view;
           const r = v.nodeRadius();
           const boxes = v.labelBoxes.map(b => [b.x0, b.y0, b.x1, b.y1, b.id, b.text]);
           const nodes = v.vis.map(n => [n.sx, n.sy, n.id]);
           const cols = v.colX.map((x, p) => [x * v.t.sx + v.t.tx, (v.colW[p]) * v.t.sx]);
           return {boxes, nodes, r, cols};"#,
        vec![],
    );
    let boxes = v["boxes"].as_array().unwrap();
    let r = v["r"].as_f64().unwrap();
    let f = |b: &Value, i: usize| b[i].as_f64().unwrap();
    for (i, a) in boxes.iter().enumerate() {
        for c in &boxes[i + 1..] {
            let disjoint = f(a, 2) <= f(c, 0)
                || f(c, 2) <= f(a, 0)
                || f(a, 3) <= f(c, 1)
                || f(c, 3) <= f(a, 1);
            assert!(disjoint, "labels overlap: {} / {}", a[5], c[5]);
        }
        for n in v["nodes"].as_array().unwrap() {
            if n[2] == a[4] {
                continue;
            }
            let (x, y) = (f(n, 0), f(n, 1));
            let hit = x + r > f(a, 0) && x - r < f(a, 2) && y + r > f(a, 1) && y - r < f(a, 3);
            assert!(!hit, "label {} covers node {}", a[5], n[2]);
        }
    }
    boxes.len()
}

#[test]
fn explore_pin_group_annotate_save_reload() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    let server = ws.start();
    let base = format!("http://{}/", server.addr());
    open(&b, &format!("{base}?slug=austin-clt"));
    b.screenshot(&screens().join("austin-default.png"));
    let labels = assert_labels_readable(&b);
    assert!(labels >= 10, "only {labels} labels in the default view");
    assert_eq!(
        b.exec("return window.adag.view.vis.length;", vec![]),
        json!(27)
    );
    assert!(b.text("#status").contains("27 nodes · 42 links"));

    // Click a node: the panel tells what it is and lists its strongest edges.
    let (x, y) = pos(&b, "2_845_4");
    b.click_at(x, y, false);
    b.wait_for("document.getElementById('panel-title') && document.getElementById('panel-title').textContent === 'say Austin'", LOAD);
    assert_eq!(fact(&b, "kind"), "transcoder feature");
    assert_eq!(fact(&b, "layer"), "2");
    assert_eq!(fact(&b, "position"), "4 \" is\"");
    assert_eq!(fact(&b, "feature"), "845");
    assert_eq!(fact(&b, "activation"), "7.2");
    assert_eq!(fact(&b, "influence"), "0.143");
    let incoming = b.exec("return [...document.querySelectorAll('#edges-incoming li[data-node-id]')].map(li => li.dataset.nodeId);", vec![]);
    assert_eq!(
        incoming,
        json!(["1_1204_4", "1_530_3", "0_1_4", "1_771_2"]),
        "by |weight|"
    );
    let outgoing = b.text("#edges-outgoing");
    assert!(
        outgoing.contains("+3.4") && outgoing.contains("-0.6") && outgoing.contains("\" Austin\""),
        "{outgoing}"
    );
    assert_eq!(state(&b, "clickedId"), json!("2_845_4"));

    // Edges are clickable: follow the strongest input.
    b.click("#edges-incoming li[data-node-id=\"1_1204_4\"]");
    b.wait_for(
        "document.getElementById('panel-title').textContent === 'say a capital'",
        LOAD,
    );
    assert!(b
        .exec("return location.search;", vec![])
        .as_str()
        .unwrap()
        .contains("clickedId=1_1204_4"));

    // Hover highlights a node and shows a tooltip.
    let (hx, hy) = pos(&b, "0_2051_3");
    b.move_to(hx, hy);
    b.wait_for("window.adag.state.hoveredId === '0_2051_3'", LOAD);
    assert!(b.text("#tooltip").contains("Texas"));
    b.screenshot(&screens().join("austin-hover.png"));
    let vw = b.exec("return [innerWidth, innerHeight];", vec![]);
    b.move_to(
        vw[0].as_f64().unwrap() - 60.0,
        vw[1].as_f64().unwrap() / 2.0,
    );
    b.wait_for("window.adag.state.hoveredId === ''", LOAD);

    // Link type switch.
    b.click(".linktype button[data-link=\"inputs\"]");
    assert_eq!(state(&b, "linkType"), json!("inputs"));
    assert!(b
        .exec("return location.search;", vec![])
        .as_str()
        .unwrap()
        .contains("linkType=inputs"));

    // Pruning slider: the reference rule, influence ≤ threshold, tokens and logits always.
    b.exec("const s = document.getElementById('prune'); s.value = '0.5'; s.dispatchEvent(new Event('input'));", vec![]);
    let shown = b.exec(
        "return window.adag.view.visibleNodes().map(n => [n.kind, n.influence, n.id]);",
        vec![],
    );
    let shown = shown.as_array().unwrap();
    // 5 tokens + 3 logits + the three features with influence ≤ 0.5 (one is also clicked).
    assert_eq!(shown.len(), 11);
    for n in shown {
        let frame = n[0] == "embedding" || n[0] == "logit" || n[2] == "1_1204_4";
        assert!(frame || n[1].as_f64().unwrap() <= 0.5, "{n}");
    }
    assert_eq!(b.text("#prune-value"), "0.50");
    b.screenshot(&screens().join("austin-pruned.png"));
    b.exec("const s = document.getElementById('prune'); s.value = '1'; s.dispatchEvent(new Event('input'));", vec![]);

    // Zoom with the wheel and pan by dragging; "fit" restores.
    let t0 = b.exec("return {...window.adag.view.t};", vec![]);
    b.wheel(500.0, 300.0, -400);
    b.wait_for(&format!("window.adag.view.t.sx > {} * 1.3", t0["sx"]), LOAD);
    let t1 = b.exec("return {...window.adag.view.t};", vec![]);
    assert_eq!(
        b.exec("return [innerWidth, innerHeight];", vec![]),
        json!([1400, 900])
    );
    b.drag((300.0, 400.0), (420.0, 440.0));
    let t2 = b.exec("return {...window.adag.view.t};", vec![]);
    assert!(
        (t2["tx"].as_f64().unwrap() - t1["tx"].as_f64().unwrap() - 120.0).abs() < 3.0,
        "{t1} {t2}"
    );
    b.click("#fit");
    b.wait_for(
        &format!("Math.abs(window.adag.view.t.sx - {}) < 1e-9", t0["sx"]),
        LOAD,
    );

    // Pin two nodes with Ctrl+click.
    for id in ["0_2051_3", "2_845_4"] {
        let (x, y) = pos(&b, id);
        b.click_at(x, y, true);
    }
    b.wait_for("window.adag.state.pinnedIds.length === 2", LOAD);
    assert_eq!(state(&b, "pinnedIds"), json!(["0_2051_3", "2_845_4"]));
    assert_eq!(
        b.exec(
            "return document.querySelectorAll('#subgraph-pane .chip').length;",
            vec![]
        ),
        json!(2)
    );
    assert!(b
        .exec("return location.search;", vec![])
        .as_str()
        .unwrap()
        .contains("pinnedIds=0_2051_3%2C2_845_4"));

    // Group them into a named supernode.
    b.click(".chip[data-node-id=\"0_2051_3\"] input.sel");
    b.click(".chip[data-node-id=\"2_845_4\"] input.sel");
    b.type_into("#group-name", "Texas to Austin");
    b.click("#group-btn");
    b.wait_for(
        "document.querySelector('.supernode[data-name=\"Texas to Austin\"]')",
        LOAD,
    );
    assert_eq!(
        state(&b, "supernodes"),
        json!([["Texas to Austin", "0_2051_3", "2_845_4"]])
    );
    assert_eq!(b.exec("return document.querySelectorAll('.supernode[data-name=\"Texas to Austin\"] .chip').length;", vec![]), json!(2));
    assert!(b.text("#subgraph-svg-wrap").contains("Texas to Austin (2)"));

    // Annotate a node.
    let (x, y) = pos(&b, "2_845_4");
    b.click_at(x, y, false);
    b.wait_for(
        "document.getElementById('panel-title').textContent === 'say Austin'",
        LOAD,
    );
    b.type_into("#annotation", "final answer: Austin");
    b.wait_for(
        "document.getElementById('panel-title').textContent === 'final answer: Austin'",
        LOAD,
    );
    assert!(
        b.exec(
            "return document.getElementById('save').classList.contains('dirty');",
            vec![]
        ) == json!(true)
    );
    b.screenshot(&screens().join("austin-grouped.png"));
    assert_labels_readable(&b);

    // Save, then check the file.
    b.click("#save");
    b.wait_for("document.body.dataset.saved === '1'", LOAD);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(ws.graph_file("austin-clt")).unwrap()).unwrap();
    assert_eq!(
        saved["qParams"]["pinnedIds"],
        json!(["0_2051_3", "2_845_4"])
    );
    assert_eq!(
        saved["qParams"]["supernodes"],
        json!([["Texas to Austin", "0_2051_3", "2_845_4"]])
    );
    assert_eq!(
        saved["qParams"]["annotations"],
        json!({"2_845_4": "final answer: Austin"})
    );
    assert_eq!(saved["qParams"]["linkType"], json!("inputs"));
    assert_eq!(saved["nodes"].as_array().unwrap().len(), 27);

    // Reload from a bare URL: the state comes back from the file.
    open(&b, &format!("{base}?slug=austin-clt"));
    assert_eq!(state(&b, "pinnedIds"), json!(["0_2051_3", "2_845_4"]));
    assert_eq!(
        state(&b, "supernodes"),
        json!([["Texas to Austin", "0_2051_3", "2_845_4"]])
    );
    assert_eq!(state(&b, "linkType"), json!("inputs"));
    assert!(b.text("#subgraph-pane").contains("Texas to Austin"));
    assert_eq!(b.text("#panel-title"), "final answer: Austin");
    assert_eq!(
        b.exec(
            "return document.getElementById('annotation').value;",
            vec![]
        ),
        json!("final answer: Austin")
    );
    let on_canvas = b.exec(
        "return window.adag.view.labelBoxes.map(b => b.text);",
        vec![],
    );
    assert!(
        on_canvas
            .as_array()
            .unwrap()
            .contains(&json!("final answer: Austin")),
        "{on_canvas}"
    );
    b.screenshot(&screens().join("austin-reloaded.png"));
    assert_labels_readable(&b);

    // Ungroup keeps the pins.
    b.click(".supernode[data-name=\"Texas to Austin\"] .ungroup");
    b.wait_for("window.adag.state.supernodes.length === 0", LOAD);
    assert_eq!(state(&b, "pinnedIds"), json!(["0_2051_3", "2_845_4"]));
}

#[test]
fn url_state_is_shareable() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    let server = ws.start();
    let sn = serde_json::to_string(&json!([["capital words", "0_112_1", "1_1204_4"]])).unwrap();
    let q = format!(
        "?slug=austin-clt&pinnedIds=0_112_1,1_1204_4,E_8421_3&supernodes={}&clickedId=1_530_3&linkType=outputs&pruningThreshold=0.9",
        urlencode(&sn)
    );
    open(&b, &format!("http://{}/{q}", server.addr()));
    assert_eq!(
        state(&b, "pinnedIds"),
        json!(["0_112_1", "1_1204_4", "E_8421_3"])
    );
    assert_eq!(
        state(&b, "supernodes"),
        json!([["capital words", "0_112_1", "1_1204_4"]])
    );
    assert_eq!(state(&b, "linkType"), json!("outputs"));
    assert_eq!(state(&b, "pruningThreshold"), json!(0.9));
    assert_eq!(b.text("#panel-title"), "Texas (the entity)");
    assert!(b.text("#subgraph-pane").contains("capital words"));
    // The file is untouched until the user saves.
    let file: Value =
        serde_json::from_slice(&std::fs::read(ws.graph_file("austin-clt")).unwrap()).unwrap();
    assert_eq!(file["qParams"]["pinnedIds"], json!([]));
    b.screenshot(&screens().join("austin-shared-url.png"));
    assert_labels_readable(&b);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

#[test]
fn neuron_circuit_shows_profiles_and_clusters() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    let server = ws.start();
    open(
        &b,
        &format!("http://{}/?slug=capital-neurons", server.addr()),
    );
    // Clusters saved as supernodes appear with their labels.
    let names = b.exec(
        "return [...document.querySelectorAll('.supernode')].map(s => s.dataset.name);",
        vec![],
    );
    assert_eq!(names, json!(["C1: France", "C2: say capital"]));
    // A described cluster shows its description under the name; an undescribed one shows none.
    let descs = b.exec(
        "return [...document.querySelectorAll('.supernode')].map(s => { const d = s.querySelector('.sn-desc'); return d ? d.textContent : null; });",
        vec![],
    );
    assert_eq!(
        descs,
        json!([
            "the token \" France\" and other country names | promotes their capitals",
            null
        ])
    );
    let svg = b.text("#subgraph-svg-wrap");
    assert!(
        svg.contains("C1: France (3)") && svg.contains("C2: say capital (2)"),
        "{svg}"
    );
    let (x, y) = pos(&b, "2_1441_4");
    b.click_at(x, y, false);
    b.wait_for("document.getElementById('panel-title') && document.getElementById('panel-title').textContent === 'say Paris'", LOAD);
    assert_eq!(fact(&b, "kind"), "MLP neuron");
    assert_eq!(fact(&b, "neuron"), "1441");
    // Input profile: one highlighted span per prompt token, strongest on " France".
    let prof = b.exec("return [...document.querySelectorAll('#input-profile .tok')].map(t => [t.textContent, Number(t.dataset.weight), getComputedStyle(t).backgroundColor]);", vec![]);
    let prof = prof.as_array().unwrap();
    assert_eq!(prof.len(), 5);
    assert_eq!(prof[3][0], json!(" France"));
    assert_eq!(prof[3][1], json!(0.55));
    assert_ne!(prof[3][2], prof[0][2], "the strongest token is highlighted");
    assert_eq!(
        prof[0][2],
        json!("rgba(0, 0, 0, 0)"),
        "a zero weight is not"
    );
    let out = b.text("#output-profile");
    assert!(
        out.contains("Paris") && out.contains("Lyon") && out.contains("-0.1"),
        "{out}"
    );
    b.screenshot(&screens().join("neurons.png"));
    assert_labels_readable(&b);
}

#[test]
fn feature_details_from_binary_and_json_files() {
    let Some((_g, b)) = browser() else { return };
    // Binary format only (no per-feature JSON): index.json.gz + layer_i.bin, read with Range.
    let ws = Workspace::new();
    let src = fixture_graphs().join("features/adag-demo-clt");
    let mut feats = Vec::new();
    for (l, f) in [(2usize, 845usize), (0, 2051)] {
        let cantor = (l + f) * (l + f + 1) / 2 + f;
        let v: Value =
            serde_json::from_slice(&std::fs::read(src.join(format!("{cantor}.json"))).unwrap())
                .unwrap();
        feats.push((l, f, v));
    }
    write_binary_features(&ws.features().join("adag-demo-clt"), 3, 4096, &feats);
    let server = ws.start();
    open(
        &b,
        &format!(
            "http://{}/?slug=austin-clt&clickedId=2_845_4",
            server.addr()
        ),
    );
    b.wait_for(
        "document.querySelector('#feature-detail .logit-list.top')",
        LOAD,
    );
    let detail = b.text("#feature-detail").to_lowercase();
    assert!(
        detail.contains("top activations")
            && detail.contains("top logits")
            && detail.contains("bottom logits"),
        "{detail}"
    );
    assert!(
        detail.contains("austin") && detail.contains("houston"),
        "{detail}"
    );
    let n_examples = b.exec(
        "return document.querySelectorAll('#feature-detail .example').length;",
        vec![],
    );
    assert_eq!(n_examples, json!(4));
    b.screenshot(&screens().join("feature-detail-binary.png"));
    // A feature without a record says so rather than failing.
    b.click("#edges-incoming li[data-node-id=\"1_1204_4\"]");
    b.wait_for("document.getElementById('feature-detail') && /no feature-detail files/.test(document.getElementById('feature-detail').textContent)", LOAD);
    drop(server);

    // The per-feature JSON fallback, from the committed fixture folder.
    let server = adag_serve::Server::start(
        adag_serve::ServeConfig::new(ws.graphs())
            .port(0)
            .features_dir(fixture_graphs().join("features")),
    )
    .unwrap();
    open(
        &b,
        &format!(
            "http://{}/?slug=austin-clt&clickedId=1_1204_4",
            server.addr()
        ),
    );
    b.wait_for(
        "document.querySelector('#feature-detail .logit-list.top')",
        LOAD,
    );
    assert!(b
        .text("#feature-detail")
        .to_lowercase()
        .contains("subsample interval 0"));
}

#[test]
fn large_graph_first_render_under_two_seconds() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    std::fs::write(
        ws.graph_file("big5k"),
        synthetic_graph("big5k", 16, 60, 5_000, 100_000),
    )
    .unwrap();
    let server = ws.start();
    let url = format!("http://{}/?slug=big5k", server.addr());
    // Cold: the server has not parsed the file yet. Warm: a second visit.
    let mut figures = Vec::new();
    for run in ["cold", "warm"] {
        let t0 = Instant::now();
        open(&b, &url);
        let wall = t0.elapsed();
        let ms = b
            .exec("return window.adag.firstRenderMs;", vec![])
            .as_f64()
            .unwrap();
        let (nodes, links) = (
            b.exec("return window.adag.model.nodes.length;", vec![]),
            b.exec("return window.adag.model.links.length;", vec![]),
        );
        eprintln!("5k nodes / 100k links, {run}: first render {ms:.0} ms after navigation start ({nodes} nodes, {links} links drawn; wall {wall:?})");
        figures.push(ms);
    }
    b.screenshot(&screens().join("big-5k.png"));
    assert!(
        figures[0] < 2000.0,
        "time to first render {:.0} ms",
        figures[0]
    );
    assert!(
        figures[1] < 2000.0,
        "time to first render {:.0} ms",
        figures[1]
    );
    // It stays interactive: a zoom redraw is quick.
    let t = b.exec(
        "const v = window.adag.view; const t0 = performance.now(); v.zoomAt(400, 300, 2); v.draw(); return performance.now() - t0;",
        vec![],
    );
    eprintln!("redraw after zoom: {:.1} ms", t.as_f64().unwrap());
    assert!(t.as_f64().unwrap() < 500.0);
}

#[test]
fn huge_graph_gets_a_screen_sized_view() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    std::fs::write(
        ws.graph_file("huge"),
        synthetic_graph("huge", 20, 100, 10_000, 1_000_000),
    )
    .unwrap();
    let server = ws.start();
    let t0 = Instant::now();
    open(&b, &format!("http://{}/?slug=huge", server.addr()));
    let wall = t0.elapsed();
    let view = b.exec("return window.adag.model.view;", vec![]);
    let (n, l) = (
        b.exec("return window.adag.model.nodes.length;", vec![])
            .as_u64()
            .unwrap(),
        b.exec("return window.adag.model.links.length;", vec![])
            .as_u64()
            .unwrap(),
    );
    eprintln!("10k nodes / 1M links: rendered in {wall:?} (first render at {} ms), sent {n} nodes / {l} links", b.exec("return window.adag.firstRenderMs;", vec![]));
    assert_eq!(view["total_links"], json!(1_000_000));
    assert!(l <= 60_000 && n <= 12_000, "{n} {l}");
    assert!(b
        .text("#status")
        .contains("screen view of 10000 nodes / 1000000 links"));
    let t = b.exec("const v = window.adag.view; const t0 = performance.now(); v.draw(); return performance.now() - t0;", vec![]);
    assert!(t.as_f64().unwrap() < 500.0, "redraw {t} ms");
    b.screenshot(&screens().join("huge-10k-1m.png"));
}

// ---- defects a newcomer met (issue 14) ----

/// Rewrites a fixture graph in the workspace.
fn edit_graph(ws: &Workspace, slug: &str, f: impl FnOnce(&mut Value)) {
    let path = ws.graph_file(slug);
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut doc);
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn embedding_nodes_show_their_token_even_without_a_clerp() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    // Older exports wrote an empty clerp on token nodes: the viewer said "token 3".
    edit_graph(&ws, "austin-clt", |doc| {
        for n in doc["nodes"].as_array_mut().unwrap() {
            if n["feature_type"] == "embedding" {
                n["clerp"] = json!("");
            }
        }
    });
    let server = ws.start();
    open(
        &b,
        &format!(
            "http://{}/?slug=austin-clt&clickedId=E_8421_3",
            server.addr()
        ),
    );
    assert_eq!(b.text("#panel-title"), "\" Texas\"");
    let (x, y) = pos(&b, "E_8421_3");
    b.move_to(x, y);
    b.wait_for("window.adag.state.hoveredId === 'E_8421_3'", LOAD);
    assert!(
        b.text("#tooltip").starts_with("\" Texas\" · token @ 3"),
        "{}",
        b.text("#tooltip")
    );
}

#[test]
fn pruning_updates_the_status_and_lays_out_the_survivors() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    let server = ws.start();
    open(&b, &format!("http://{}/?slug=austin-clt", server.addr()));
    let before = b.text("#status");
    assert!(!before.contains("showing"), "{before}");
    b.exec("const s = document.getElementById('prune'); s.value = '0.5'; s.dispatchEvent(new Event('input'));", vec![]);
    b.wait_for(
        "/showing/.test(document.getElementById('status').textContent)",
        LOAD,
    );
    let status = b.text("#status");
    let vis = b.exec("return window.adag.view.visibleNodes().length;", vec![]);
    assert!(
        status.contains(&format!("showing {vis} nodes")) && status.contains("(prune ≤ 0.50)"),
        "{status}"
    );
    // Every cell's survivors are centred in their column, as if the dropped nodes never were
    // (before, they kept their slots among all nodes and sat in the cell's left corner). The
    // check means something only if some cell lost nodes.
    b.wait_for("window.adag.view.drawn > 1", LOAD);
    let cells = b.exec(
        r#"const v = window.adag.view, m = window.adag.model;
           const vis = new Set(v.visibleNodes());
           const cells = {};
           for (const n of m.nodes) {
             if (n.kind === 'logit' || n.kind === 'embedding') continue;
             const k = n.row + ':' + n.ctx;
             cells[k] = cells[k] || {all: 0, xs: [], centre: v.colX[n.ctx] + v.colW[n.ctx] / 2};
             cells[k].all++;
             if (vis.has(n)) cells[k].xs.push(n.x);
           }
           return Object.values(cells);"#,
        vec![],
    );
    let mut thinned = 0;
    for c in cells.as_array().unwrap() {
        let xs: Vec<f64> = c["xs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        if xs.is_empty() {
            continue;
        }
        if xs.len() < c["all"].as_u64().unwrap() as usize {
            thinned += 1;
        }
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - c["centre"].as_f64().unwrap()).abs() < 1.0, "{c}");
    }
    assert!(thinned > 0, "no cell lost nodes at 0.5: {cells}");
    b.screenshot(&screens().join("austin-pruned-relayout.png"));
    b.exec("const s = document.getElementById('prune'); s.value = '1'; s.dispatchEvent(new Event('input'));", vec![]);
    b.wait_for(
        "!/showing/.test(document.getElementById('status').textContent)",
        LOAD,
    );
}

/// An 88-token prompt with six logits whose labels are wide.
fn long_prompt_graph() -> Value {
    let words = [
        " The",
        " capital",
        " of",
        " the",
        " state",
        " containing",
        " Dallas",
        " is",
        ",",
        " and",
        " everyone",
        " knows",
        " that",
        "\n",
    ];
    let tokens: Vec<String> = (0..88)
        .map(|p| words[p % words.len()].to_string())
        .collect();
    let last = tokens.len() - 1;
    let mut nodes = Vec::new();
    let mut links = Vec::new();
    for (p, _) in tokens.iter().enumerate() {
        nodes.push(json!({"node_id": format!("E_{}_{p}", 100 + p), "feature": p, "layer": "E", "ctx_idx": p,
            "feature_type": "embedding", "clerp": "", "influence": 0.5, "activation": null}));
    }
    for (k, t) in [
        " Austin",
        " Dallas",
        " Houston",
        " San Antonio",
        " the",
        " Texas",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("3_{}_{last}", 900 + k);
        nodes.push(
            json!({"node_id": id, "feature": 900 + k, "layer": "3", "ctx_idx": last,
            "feature_type": "logit", "token_prob": 0.3 / (k + 1) as f64, "is_target_logit": k == 0,
            "clerp": format!("Output \"{t}\" (p=0.1)"), "influence": null, "activation": null}),
        );
        links.push(
            json!({"source": format!("1_{k}_{last}"), "target": id, "weight": 1.0 + k as f64}),
        );
    }
    for l in 0..2 {
        for p in (0..88).step_by(3) {
            nodes.push(json!({"node_id": format!("{l}_{p}_{p}"), "feature": p, "layer": l.to_string(),
                "ctx_idx": p, "feature_type": "cross layer transcoder", "clerp": "", "influence": 0.3,
                "activation": 1.0}));
        }
    }
    for k in 0..6 {
        nodes.push(json!({"node_id": format!("1_{k}_{last}"), "feature": k, "layer": "1", "ctx_idx": last,
            "feature_type": "cross layer transcoder", "clerp": "", "influence": 0.1, "activation": 2.0}));
    }
    json!({"metadata": {"slug": "long", "scan": "x", "prompt_tokens": tokens, "prompt": tokens.concat(),
        "node_threshold": 0.8, "schema_version": 1},
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes, "links": links})
}

#[test]
fn a_long_prompt_gets_a_readable_axis_and_every_logit_label() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    std::fs::write(
        ws.graph_file("long"),
        serde_json::to_vec(&long_prompt_graph()).unwrap(),
    )
    .unwrap();
    let server = ws.start();
    open(&b, &format!("http://{}/?slug=long", server.addr()));
    b.screenshot(&screens().join("long-prompt.png"));
    // Slanted labels with the token itself (not "…" or "T…"); where even upright labels would
    // touch, every k-th position is labelled.
    let boxes = b.exec(
        "return window.adag.view.tokenBoxes.map(t => [t.p, t.text, t.rotated, t.full]);",
        vec![],
    );
    let boxes = boxes.as_array().unwrap();
    assert_eq!(boxes.len(), 88);
    let labelled: Vec<&Value> = boxes.iter().filter(|t| t[1] != "").collect();
    assert!(labelled.len() >= 29, "{labelled:?}");
    for t in boxes {
        assert_eq!(t[2], json!(true), "{t}");
        assert!(
            t[1] == "" || t[1] == t[3],
            "the whole token or nothing: {t}"
        );
    }
    assert_eq!(boxes[5][3], json!(" containing"));
    assert_eq!(boxes[13][3], json!("↵"));
    // Hovering a position's label (or its tick) shows its full token.
    let p = b.exec(
        r#"const v = window.adag.view, t = v.tokenBoxes[5], r = v.canvas.getBoundingClientRect();
           return [r.left + t.cx - 20 / Math.tan(t.angle), r.top + t.y0 + 2 + 20];"#,
        vec![],
    );
    b.move_to(p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
    b.wait_for(
        "document.getElementById('tooltip').dataset.token === '5'",
        LOAD,
    );
    assert_eq!(b.text("#tooltip"), "token 5: \" containing\"");
    // Every logit keeps a label, and none overlaps another.
    let logit_labels = b.exec(
        "const m = window.adag.model; return window.adag.view.labelBoxes.filter(b => m.byId.get(b.id).kind === 'logit').map(b => b.text);",
        vec![],
    );
    assert_eq!(logit_labels.as_array().unwrap().len(), 6, "{logit_labels}");
    assert!(
        logit_labels.to_string().contains("San Antonio"),
        "{logit_labels}"
    );
    assert_labels_readable(&b);
}

#[test]
fn the_tooltip_follows_an_annotation() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    let server = ws.start();
    open(
        &b,
        &format!(
            "http://{}/?slug=austin-clt&clickedId=2_845_4",
            server.addr()
        ),
    );
    let (x, y) = pos(&b, "2_845_4");
    b.move_to(x, y);
    b.wait_for("window.adag.state.hoveredId === '2_845_4'", LOAD);
    assert!(b.text("#tooltip").starts_with("say Austin"));
    b.type_into("#annotation", "answer feature");
    b.wait_for(
        "document.getElementById('tooltip').textContent.startsWith('answer feature')",
        LOAD,
    );
}

#[test]
fn the_subgraph_pane_is_roomy_and_boxes_drag_and_stay() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    // As `adag cluster` writes it: supernodes, nothing pinned.
    edit_graph(&ws, "capital-neurons", |doc| {
        doc["qParams"]["pinnedIds"] = json!([]);
    });
    let server = ws.start();
    let url = format!("http://{}/?slug=capital-neurons", server.addr());
    open(&b, &url);
    // The clusters are pinned on open, as the reference does.
    let pinned = state(&b, "pinnedIds");
    for id in ["0_402_3", "0_2733_3", "1_96_3", "1_3050_4", "2_1441_4"] {
        assert!(pinned.as_array().unwrap().contains(&json!(id)), "{pinned}");
    }
    assert_eq!(
        b.exec(
            "return document.body.querySelector('#save').classList.contains('dirty');",
            vec![]
        ),
        json!(false)
    );
    let svg = b.text("#subgraph-svg-wrap");
    assert!(
        svg.contains("C1: France (3)") && svg.contains("C2: say capital (2)"),
        "{svg}"
    );
    // The list is wide enough and no name is cut; the diagram uses the width.
    let m = b.exec(
        r#"const side = document.querySelector('#subgraph-pane .sg-side');
           const cut = [...document.querySelectorAll('#subgraph-pane .chip label, #subgraph-pane .sn-head span')]
             .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);
           const wrap = document.getElementById('subgraph-svg-wrap').getBoundingClientRect();
           const boxes = [...document.querySelectorAll('#subgraph-svg .unit')].map(g => g.getBoundingClientRect());
           const texts = [...document.querySelectorAll('#subgraph-svg .unit text')].map(t => t.textContent);
           return {side: side.getBoundingClientRect().width, cut, texts,
                   span: (Math.max(...boxes.map(r => r.right)) - Math.min(...boxes.map(r => r.left))) / wrap.width};"#,
        vec![],
    );
    assert!(m["side"].as_f64().unwrap() >= 300.0, "{m}");
    assert_eq!(m["cut"], json!([]), "{m}");
    assert!(!m["texts"].to_string().contains('…'), "{m}");
    assert!(m["span"].as_f64().unwrap() > 0.6, "{m}");
    b.screenshot(&screens().join("subgraph-roomy.png"));

    // Drag the C1 box 90 px right and 20 px down: it moves, and its position is saved.
    let r = b.exec(
        "const r = document.querySelector('#subgraph-svg .unit[data-key=\"sn:C1: France\"]').getBoundingClientRect(); return [r.left + 10, r.top + 10];",
        vec![],
    );
    let (x, y) = (r[0].as_f64().unwrap(), r[1].as_f64().unwrap());
    b.drag((x, y), (x + 90.0, y + 20.0));
    b.wait_for("window.adag.state.sgPos['sn:C1: France']", LOAD);
    let moved = b.exec(
        "const r = document.querySelector('#subgraph-svg .unit[data-key=\"sn:C1: France\"]').getBoundingClientRect(); return [r.left + 10, r.top + 10];",
        vec![],
    );
    assert!(
        (moved[0].as_f64().unwrap() - x - 90.0).abs() < 2.0,
        "{moved}"
    );
    assert!(
        (moved[1].as_f64().unwrap() - y - 20.0).abs() < 2.0,
        "{moved}"
    );
    b.click("#save");
    b.wait_for("document.body.dataset.saved === '1'", LOAD);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(ws.graph_file("capital-neurons")).unwrap()).unwrap();
    let sg: Value = serde_json::from_str(saved["qParams"]["sg_pos"].as_str().unwrap()).unwrap();
    assert!(sg["sn:C1: France"].is_array(), "{sg}");
    open(&b, &url);
    let again = b.exec(
        "const r = document.querySelector('#subgraph-svg .unit[data-key=\"sn:C1: France\"]').getBoundingClientRect(); return [r.left + 10, r.top + 10];",
        vec![],
    );
    assert_eq!(again, moved, "the saved position comes back");
}

#[test]
fn the_node_panel_shows_where_a_logit_comes_from() {
    let Some((_g, b)) = browser() else { return };
    let ws = Workspace::new();
    // The export's per-node accounting (tests/accounting_frontend.rs checks the export itself).
    edit_graph(&ws, "austin-clt", |doc| {
        for n in doc["nodes"].as_array_mut().unwrap() {
            if n["node_id"] == "4_19816_4" {
                n["accounting"] = json!({
                    "value": 17.5, "features": -62.5, "errors": 28.5, "tokens": 0.5,
                    "terms": [{"name": "transcoder decoder biases", "value": 51.0}],
                    "residual": 0.0, "demean_constant": -3.5
                });
            }
        }
    });
    let server = ws.start();
    open(
        &b,
        &format!(
            "http://{}/?slug=austin-clt&clickedId=4_19816_4",
            server.addr()
        ),
    );
    let table = b.text("#accounting");
    for part in [
        "de-meaned logit",
        "17.5",
        "− feature edges",
        "62.5",
        "+ error edges",
        "+ transcoder decoder biases",
        "51",
        "residual (rounding)",
    ] {
        assert!(table.contains(part), "{part:?} missing from {table:?}");
    }
    assert!(
        b.text("#node-panel")
            .contains("logit 14 = 17.5 + mean logit -3.5"),
        "{}",
        b.text("#node-panel")
    );
}
