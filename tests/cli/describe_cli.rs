//! `adag describe` and `adag label` end to end on a real circuit of the bundled demo model:
//! trace a few two-hop capitals prompts, cluster them, describe (in-process simulator, and the
//! chat simulator) with the offline `rules` backend, label, and check what lands in the
//! cluster-state and descriptions files. Skipped, with the reason printed, when
//! `models/demo/config.json` is absent.

use std::path::{Path, PathBuf};

use crate::common::{fails, ok as adag, serve_llm};
use adag_analysis::ClusterState;
use adag_describe::DescriptionsFile;

fn demo() -> Option<PathBuf> {
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
    if m.join("config.json").exists() {
        Some(m)
    } else {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        None
    }
}

/// A traced and clustered circuit of six two-hop prompts.
fn circuit(dir: &Path, model: &Path) -> PathBuf {
    let ds = dir.join("capitals.jsonl");
    let cities = [
        "Dallas", "Houston", "Chicago", "Miami", "Seattle", "Detroit",
    ];
    let lines: Vec<String> = cities
        .iter()
        .map(|c| {
            serde_json::json!({
                "prompt": format!("The capital of the state containing {c} is"),
                "label": c
            })
            .to_string()
        })
        .collect();
    std::fs::write(&ds, lines.join("\n")).unwrap();
    let circuit = dir.join("circuit");
    let c = circuit.to_str().unwrap();
    let graphs = dir.join("graphs");
    adag(&[
        "trace",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        ds.to_str().unwrap(),
        "--out",
        c,
        "--quiet",
        "--graph-dir",
        graphs.to_str().unwrap(),
    ]);
    adag(&["cluster", c, "--k", "4"]);
    circuit
}

#[test]
fn describe_and_label_a_demo_circuit_in_process_and_through_a_chat_simulator() {
    let Some(model) = demo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let circuit = circuit(dir.path(), &model);
    let c = circuit.to_str().unwrap();
    let state_path = ClusterState::default_path(&circuit);
    let desc_path = DescriptionsFile::default_path(&state_path);

    let out = adag(&["describe", c, "--backend", "rules", "--samples", "2"]);
    assert!(out.contains("in-process"), "{out}");
    assert!(out.contains("LLM usage (rules"), "no usage report:\n{out}");
    let state = ClusterState::read(&state_path).unwrap();
    let file = DescriptionsFile::read_or_new(&desc_path, &circuit, &state_path).unwrap();
    // The table gives each score its n, interval and p, and says so when none is significant.
    assert!(out.contains("input r (n, 95% CI, p)"), "{out}");
    let significant = file.clusters.values().any(|e| {
        let d = e.description.as_ref().unwrap();
        [&d.best_input, &d.best_output].iter().any(|b| {
            b.as_ref()
                .and_then(|b| adag_describe::score::significance(b.score?, b.n_scored))
                .is_some_and(|(_, (lo, _))| lo > 0.0)
        })
    });
    assert_eq!(
        out.contains("no score is significant"),
        !significant,
        "{out}"
    );
    assert_eq!(file.clusters.len(), state.clusters.len());
    let mut scored = 0;
    for cl in &state.clusters {
        let d = file.clusters[&cl.id].description.as_ref().unwrap();
        // Every cluster reads its prompts: a positive input side exists and is described.
        let best = d.best_input.as_ref().expect("an input description");
        assert_eq!(cl.input_description, Some(best.signed_text()));
        assert_eq!(cl.description, d.combined());
        for e in &d.explanations {
            // Pads and BOS are never shown; at least one span is highlighted on the input side.
            for x in &e.excerpts {
                assert!(!x.contains("<|pad|>") && !x.contains("<|bos|>"), "{x}");
            }
            if e.threshold.is_some() {
                assert!(
                    e.excerpts.iter().any(|x| x.contains("{{")),
                    "{:?}",
                    e.excerpts
                );
            }
            if let Some(s) = e.score {
                assert!(s.is_finite() && (-1.0..=1.0).contains(&s));
                scored += 1;
            }
        }
        // Scored records are held out from the ones shown (pools of more than one record).
        for p in &d.pools {
            if !p.scored_on_shown {
                assert!(p.scored.iter().all(|id| !p.explain.contains(id)), "{p:?}");
            }
        }
    }
    assert!(scored > 0, "no explanation got a defined score");

    // A rerun is answered from the cache beside the state (nothing paid) and, the local
    // simulator being deterministic, writes the same descriptions; without the cache too.
    assert!(circuit.join("llm-cache").is_dir());
    let before = std::fs::read_to_string(&desc_path).unwrap();
    let out = adag(&["describe", c, "--backend", "rules", "--samples", "2"]);
    assert!(out.contains(": 0 calls + "), "{out}");
    assert!(out.contains("0 input + 0 output tokens paid"), "{out}");
    let after = std::fs::read_to_string(&desc_path).unwrap();
    let strip = |s: &str| s.split("\"totals\"").next().unwrap().to_string();
    assert_eq!(strip(&after), strip(&before));
    adag(&[
        "describe",
        c,
        "--backend",
        "rules",
        "--samples",
        "2",
        "--no-cache",
    ]);
    assert_eq!(
        strip(&std::fs::read_to_string(&desc_path).unwrap()),
        strip(&before)
    );

    // Labels land in the cluster-state file, next to the descriptions, and on the viewer's
    // graphs as supernode names.
    let graphs = dir.path().join("graphs");
    let out = adag(&[
        "label",
        c,
        "--backend",
        "rules",
        "--graph-dir",
        graphs.to_str().unwrap(),
    ]);
    let graph: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("trace-0.json")).unwrap())
            .unwrap();
    let names: Vec<String> = graph["qParams"]["supernodes"]
        .as_array()
        .expect("supernodes on the graph")
        .iter()
        .map(|g| g[0].as_str().unwrap().to_string())
        .collect();
    assert!(!names.is_empty());
    let state = ClusterState::read(&state_path).unwrap();
    for cl in &state.clusters {
        let l = cl.label.as_deref().expect("a label");
        let words = l.trim_start_matches("not[").trim_end_matches(']');
        assert!((1..=3).contains(&words.split_whitespace().count()), "{l}");
        assert!(out.contains(l), "{out}");
        assert!(
            cl.input_description.is_some(),
            "labelling kept the descriptions"
        );
    }
    // Every supernode of prompt 0's graph is named "id: label" by its cluster ...
    let labels: Vec<String> = state
        .clusters
        .iter()
        .filter_map(|c| c.label.as_deref().map(|l| format!("{}: {l}", c.id)))
        .collect();
    assert!(
        names.iter().all(|n| labels.contains(n)),
        "{names:?} vs {labels:?}"
    );
    // ... and carries its cluster's description for the viewer, keyed by cluster id.
    for n in &names {
        let id = n.split(':').next().unwrap();
        let shown = graph["metadata"]["supernode_descriptions"][id].as_str();
        assert!(shown.is_some(), "no description for {n}");
        let c = state.clusters.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.description.as_deref(), shown, "{n}");
    }
    let file = DescriptionsFile::read_or_new(&desc_path, &circuit, &state_path).unwrap();
    assert!(file
        .clusters
        .values()
        .all(|e| e.label.is_some() && e.description.is_some()));

    // Batch mode and the chat simulator over the backend.
    adag(&["label", c, "--backend", "rules", "--mode", "batch"]);
    let out = adag(&[
        "describe",
        c,
        "--backend",
        "rules",
        "--simulator",
        "backend",
        "--samples",
        "1",
        "--only",
        "C0",
    ]);
    assert!(out.contains("chat rules"), "{out}");
    // A separate chat backend for the simulator reports its own usage.
    let out = adag(&[
        "describe",
        c,
        "--backend",
        "rules",
        "--simulator",
        "chat:rules",
        "--samples",
        "1",
        "--only",
        "C1",
        "--no-cache",
    ]);
    assert!(out.contains("simulator: LLM usage (rules"), "{out}");
}

#[test]
fn describe_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&[
        "describe",
        dir.path().to_str().unwrap(),
        "--backend",
        "rules",
    ]);
    assert!(
        err.contains("manifest.json") || err.contains("circuit"),
        "{err}"
    );
    let Some(model) = demo() else { return };
    let circuit = circuit(dir.path(), &model);
    for (args, want) in [
        (
            vec!["--backend", "rules", "--simulator", "magic"],
            "--simulator",
        ),
        (vec!["--backend", "rules", "--only", "C99"], "C99"),
        (vec!["--backend", "nonsense"], "nonsense"),
    ] {
        let mut a = vec!["describe", circuit.to_str().unwrap()];
        a.extend(args);
        let err = fails(&a);
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

/// `adag serve-llm` on the demo model as a real OpenAI-compatible endpoint: the explainer,
/// the chat simulator and the labeller talk HTTP to it, with real inference. The demo model
/// writes no `[DESCRIPTION]` lines (it knows capitals and sums, not interpretability), so its
/// replies are recorded as malformed and the label falls back; the run must still complete
/// and say so. Then the rule-based explainer writes the descriptions and the served demo model
/// is asked to simulate them (real generation; it cannot follow the format, which the run
/// reports instead of inventing scores). The quality path is a real simulator model.
#[test]
fn describe_and_label_against_adag_serve_llm() {
    let Some(model) = demo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let circuit = circuit(dir.path(), &model);
    let c = circuit.to_str().unwrap();
    let (_server, base) = serve_llm(&["--port", "0", "--model", model.to_str().unwrap()]);
    let spec = format!("openai:{base}");
    let args = [
        "describe",
        c,
        "--backend",
        &spec,
        "--simulator",
        "backend",
        "--samples",
        "1",
        "--max-rounds",
        "2",
        // Real generations, kept short: the demo model has no KV cache to make 100 tokens
        // on a 600-token prompt cheap, and writes no description at any length.
        "--explainer-max-tokens",
        "12",
        "--only",
        "C0",
    ];
    let out = adag(&args);
    assert!(out.contains("LLM usage (openai-compatible"), "{out}");
    let state_path = ClusterState::default_path(&circuit);
    let desc_path = DescriptionsFile::default_path(&state_path);
    let file = DescriptionsFile::read_or_new(&desc_path, &circuit, &state_path).unwrap();
    let d = file.clusters["C0"].description.as_ref().unwrap();
    // Every reply is either an explanation or recorded as unusable: 2 rounds per side and sign.
    let asked = d.explanations.len() + d.unusable.len();
    let sides = d.pools.len();
    assert!(
        sides >= 1 && asked <= 2 * sides && asked >= sides,
        "{asked} replies, {sides} sides"
    );
    // Real generations came back (the prompts fit the served context): nothing was rejected.
    assert!(
        d.unusable
            .iter()
            .all(|u| !matches!(u.reason, adag_describe::parse::Unusable::Rejected(_))),
        "{:?}",
        d.unusable
    );
    let again = adag(&args);
    assert!(
        again.contains(": 0 calls + "),
        "rerun not from cache:\n{again}"
    );

    let out = adag(&["label", c, "--backend", &spec, "--only", "C0"]);
    assert!(out.contains("C0"), "{out}");
    let state = ClusterState::read(&state_path).unwrap();
    let label = state.clusters[0].label.as_deref().expect("a label for C0");
    assert!(!label.is_empty());
    let file = DescriptionsFile::read_or_new(&desc_path, &circuit, &state_path).unwrap();
    let l = file.clusters["C0"].label.as_ref().unwrap();
    assert_eq!(l.label, label);
    assert!(!l.problems.is_empty() || l.source == adag_describe::label::LabelSource::Llm);

    let sim = format!("chat:{spec}");
    let out = adag(&[
        "describe",
        c,
        "--backend",
        "rules",
        "--simulator",
        &sim,
        "--samples",
        "1",
        "--only",
        "C1",
    ]);
    assert!(
        out.contains("simulator: LLM usage (openai-compatible"),
        "{out}"
    );
    // The served model really generated (output tokens paid) ...
    let sim_line = out
        .lines()
        .find(|l| l.starts_with("simulator: LLM usage"))
        .unwrap();
    let paid_out: u64 = sim_line
        .split(" output tokens paid")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{sim_line}"));
    assert!(paid_out > 0, "{sim_line}");
    // ... but a 1.3M-parameter model cannot follow the fill-in-the-blanks format: the blanks
    // it left are counted, and explanations it could not simulate stay unscored rather than
    // getting an invented score.
    let file = DescriptionsFile::read_or_new(&desc_path, &circuit, &state_path).unwrap();
    let d = file.clusters["C1"].description.as_ref().unwrap();
    assert!(!d.explanations.is_empty(), "{d:?}");
    let unfilled: usize = out
        .split(" simulator blanks left unfilled")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let input_scored = d
        .explanations
        .iter()
        .filter(|e| e.side == adag_describe::Side::Input && e.score.is_some())
        .count();
    assert!(unfilled > 0 || input_scored > 0, "{out}");
    for e in &d.explanations {
        if let Some(s) = e.score {
            assert!(s.is_finite() && (-1.0..=1.0).contains(&s), "{e:?}");
        }
    }
}

/// `adag describe-units` describes single units from their dashboards: the explainer sees the
/// unit's top contexts with its peaks highlighted (the offline `rules` explainer names the most
/// highlighted token, so the description must name the top example's peak token), the JSON
/// output round-trips, and a unit outside the dashboards is a clean error.
#[test]
fn describe_units_from_dashboards() {
    let dir = tempfile::tempdir().unwrap();
    let dash = crate::common::root().join("models/demo/transcoders/features");
    let out = dir.path().join("units.json");
    let text = adag(&[
        "describe-units",
        dash.to_str().unwrap(),
        "--unit",
        "2:349",
        "--backend",
        "rules",
        "--no-cache",
        "--out",
        out.to_str().unwrap(),
    ]);
    let detail = adag_features::write::read_detail(&dash, 2, 349)
        .unwrap()
        .unwrap();
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
    assert!(
        text.contains(&format!("L2 #349: the token \"{token}\"")),
        "{text}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written[0]["layer"], 2);
    assert_eq!(written[0]["index"], 349);
    assert!(written[0]["excerpts"][0].as_str().unwrap().contains("{{"));
    let e = fails(&[
        "describe-units",
        dash.to_str().unwrap(),
        "--unit",
        "2:999999",
        "--backend",
        "rules",
        "--no-cache",
    ]);
    assert!(e.contains("unit 2:999999"), "{e}");
}
