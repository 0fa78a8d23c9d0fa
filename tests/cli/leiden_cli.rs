//! `adag cluster --method leiden` on the bundled demo model's capitals circuit: the properties
//! Leiden promises, checked on what the command writes. Skipped, with the reason printed, when
//! `models/demo/config.json` is absent.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{fails, ok, s};
use adag_analysis::leiden::{similarity_modularity, Graph};
use adag_analysis::{similarity, ClusterState, Profiles};
use adag_train::corpus::{eval_items, Task};

/// Traces the two-hop capitals prompts on the demo model into `dir/circuit`.
fn capitals(dir: &Path, model: &Path) -> std::path::PathBuf {
    let ds = dir.join("capitals.jsonl");
    let items: Vec<String> = eval_items()
        .into_iter()
        .filter(|i| i.task == Task::TwoHop)
        .map(|i| serde_json::json!({"prompt": i.prompt, "answers": [i.answer]}).to_string())
        .collect();
    std::fs::write(&ds, items.join("\n")).unwrap();
    let circuit = dir.join("circuit");
    ok(&[
        "trace",
        "--model",
        s(model),
        "--dataset",
        s(&ds),
        "--out",
        s(&circuit),
        "--quiet",
    ]);
    circuit
}

/// Leiden on the capitals circuit: every unit is in exactly one cluster; each cluster is
/// connected in the affinity graph `max(S, 0)` (the refinement's guarantee); its modularity
/// (recomputed here from the similarity) is what the diagnostics report and at least that of
/// spectral k-means with the same number of clusters; the same seed gives the same file; a
/// larger resolution gives more clusters; a bad resolution is a clean error.
#[test]
fn leiden_clusters_the_demo_capitals_circuit() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
    if !model.join("config.json").exists() {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let circuit = capitals(dir.path(), &model);
    let c = s(&circuit);
    let out = dir.path().join("leiden.json");
    let text = ok(&["cluster", c, "--method", "leiden", "--out", s(&out)]);
    print!("{text}");
    assert!(text.contains("found"), "{text}");
    let state = ClusterState::read(&out).unwrap();
    let (circ, _) = adag_circuit::read_circuit(&circuit).unwrap();
    let p = Profiles::from_circuit(&circ);
    let k = state.clusters.len();
    assert_eq!(state.options.k, k);
    assert!(k >= 2, "{k} clusters");

    // Every unit exactly once, and the map agrees with the member lists.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for cl in &state.clusters {
        assert!(!cl.units.is_empty(), "{} is empty", cl.id);
        for u in &cl.units {
            assert!(seen.insert(u, &cl.id).is_none(), "{u} in two clusters");
        }
    }
    assert_eq!(seen.len(), p.units.len());
    for u in &p.units {
        assert_eq!(state.cluster_of(u), seen.get(u.key().as_str()).copied());
    }

    // Labels in unit order, then connectivity and modularity on the affinity graph.
    let labels: Vec<usize> = p
        .units
        .iter()
        .map(|u| {
            let id = state.cluster_of(u).unwrap();
            state.clusters.iter().position(|c| c.id == id).unwrap()
        })
        .collect();
    let sim = similarity(&p, &state.options.similarity);
    let g = Graph::from_similarity(&sim, 0);
    for cl in 0..k {
        let members: Vec<usize> = (0..p.units.len()).filter(|&v| labels[v] == cl).collect();
        let mut reached = vec![false; p.units.len()];
        let mut stack = vec![members[0]];
        reached[members[0]] = true;
        while let Some(v) = stack.pop() {
            for &(u, _) in g.neighbours(v) {
                if labels[u] == cl && !reached[u] {
                    reached[u] = true;
                    stack.push(u);
                }
            }
        }
        assert!(
            members.iter().all(|&v| reached[v]),
            "cluster C{cl} is not connected"
        );
    }
    let q = similarity_modularity(&sim, &labels, 1.0);
    let reported = state.diagnostics.modularity.unwrap();
    assert!((q - reported).abs() < 1e-6, "{q} vs reported {reported}");

    let spectral = dir.path().join("spectral.json");
    ok(&["cluster", c, "--k", &k.to_string(), "--out", s(&spectral)]);
    let qs = ClusterState::read(&spectral)
        .unwrap()
        .diagnostics
        .modularity
        .unwrap();
    println!("modularity: leiden {q:.4} ({k} clusters), spectral k-means {qs:.4}");
    assert!(q >= qs - 1e-9, "leiden {q} < spectral {qs}");

    let again = dir.path().join("again.json");
    ok(&["cluster", c, "--method", "leiden", "--out", s(&again)]);
    let again = ClusterState::read(&again).unwrap();
    assert_eq!(again.cluster_map, state.cluster_map);

    let fine = dir.path().join("fine.json");
    ok(&[
        "cluster",
        c,
        "--method",
        "leiden",
        "--resolution",
        "3",
        "--out",
        s(&fine),
    ]);
    let kf = ClusterState::read(&fine).unwrap().clusters.len();
    assert!(kf > k, "resolution 3 gave {kf} clusters, 1 gave {k}");

    let e = fails(&["cluster", c, "--method", "leiden", "--resolution", "0"]);
    assert!(
        e.contains("--resolution 0: expected a positive number"),
        "{e}"
    );
}
