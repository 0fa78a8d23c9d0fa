//! `adag label --mode rich`: the labeller sees each cluster's top units with their own
//! dashboard exemplars. Checked on a feature circuit of the demo model, whose transcoders ship
//! dashboards (`models/demo/transcoders/features`, found without a flag), with the offline
//! `rules` backend: the requests it received are read back from the LLM cache.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{fails, ok, s};
use adag_analysis::{ClusterState, Profiles};

#[test]
fn rich_labels_show_the_top_units_exemplars_from_their_dashboards() {
    let dash = Path::new("models/demo/transcoders/features");
    if !crate::common::root()
        .join(dash)
        .join("index.json.gz")
        .is_file()
    {
        println!("skipped: the demo transcoders' dashboards are absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("features");
    ok(&[
        "trace",
        "--model",
        "models/demo",
        "--transcoders",
        "models/demo/transcoders",
        "--dataset",
        "fixtures/datasets/capitals.jsonl",
        "--out",
        s(&c),
        "--quiet",
    ]);
    ok(&["cluster", s(&c), "--k", "3"]);
    let (circ, _) = adag_circuit::read_circuit(&c).unwrap();
    let state = ClusterState::read(&ClusterState::default_path(&c)).unwrap();
    let p = Profiles::from_circuit(&circ);

    // The unit of C0 with the largest |mean attribution|, computed here from the circuit.
    let mut mean: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for pr in &p.prompts {
        for u in &pr.units {
            let e = mean.entry(p.units[u.unit].key()).or_default();
            e.0 += u.attribution as f64;
            e.1 += 1.0;
        }
    }
    let root = crate::common::root();
    let with_dashboard = |key: &str| {
        let mut it = key.split(',');
        let l: usize = it.next().unwrap().parse().unwrap();
        let i: usize = it.next().unwrap().parse().unwrap();
        adag_features::write::read_detail(&root.join(dash), l, i)
            .unwrap()
            .filter(|d| {
                d["examples_quantiles"][0]["examples"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            })
            .map(|d| (l, i, d))
    };
    let c0 = &state.clusters[0];
    let mut members: Vec<&String> = c0.units.iter().collect();
    members.sort_by(|a, b| {
        let m = |k: &String| (mean[k].0 / mean[k].1).abs();
        m(b).total_cmp(&m(a))
    });
    let (l, i, detail) = members
        .iter()
        .find_map(|k| with_dashboard(k))
        .expect("some C0 unit has a dashboard");

    // A description for that unit, as `adag describe-units --out` writes them.
    let descs = dir.path().join("units.json");
    std::fs::write(
        &descs,
        serde_json::json!([{"layer": l, "index": i, "description": "the word quokka", "excerpts": []}])
            .to_string(),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let text = ok(&[
        "label",
        s(&c),
        "--mode",
        "rich",
        "--backend",
        "rules",
        "--cache",
        s(&cache),
        "--unit-descriptions",
        s(&descs),
    ]);
    assert!(
        text.contains("rich mode:") && text.contains("transcoders/features"),
        "{text}"
    );

    // The request about C0, read back from the cache.
    let mut c0_prompt = None;
    for e in std::fs::read_dir(&cache).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        let user = v["request"]["messages"][1]["content"]
            .as_str()
            .unwrap()
            .to_string();
        if user.starts_with("Group C0\n") {
            c0_prompt = Some(user);
        }
    }
    let prompt = c0_prompt.expect("a label request for C0");
    print!("{prompt}");
    let name = format!("L{l} #{i} (");
    let line = prompt
        .lines()
        .find(|x| x.starts_with(&format!("- {name}")))
        .unwrap_or_else(|| panic!("no line for {name} in\n{prompt}"));
    assert!(line.ends_with(": the word quokka"), "{line}");
    // Its strongest context, peak token highlighted, as `describe-units` shows it.
    let top = &detail["examples_quantiles"][0]["examples"][0];
    let acts: Vec<f64> = top["tokens_acts_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    let peak = (0..acts.len())
        .max_by(|&a, &b| acts[a].total_cmp(&acts[b]))
        .unwrap();
    let token = top["tokens"][peak].as_str().unwrap().trim().to_string();
    let excerpt = adag_describe::unit::unit_excerpts(&detail, 1)
        .unwrap()
        .remove(0);
    assert!(
        excerpt.contains("{{") && excerpt.contains(&token),
        "{excerpt}"
    );
    assert!(
        prompt.contains(excerpt.trim()),
        "{excerpt:?} not in\n{prompt}"
    );
    // Units are listed most |mean attribution| first, at most 10 per cluster.
    let shown: Vec<&str> = prompt.lines().filter(|x| x.starts_with("- L")).collect();
    assert!(!shown.is_empty() && shown.len() <= 10, "{shown:?}");

    // No dashboards: a clear error naming where it looked and how to make them.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = fails(&[
        "label",
        s(&c),
        "--mode",
        "rich",
        "--backend",
        "rules",
        "--no-cache",
        "--features-dir",
        s(&empty),
    ]);
    assert!(e.contains("--mode rich needs dashboards"), "{e}");
    assert!(
        e.contains("no index.json.gz") && e.contains("--mode per-cluster"),
        "{e}"
    );
}
