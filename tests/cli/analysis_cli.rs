//! `adag steer`, `adag correlate` and `adag plot` as a user runs them, on a real circuit: the
//! committed fixture dataset traced on the tiny llama model and clustered into 3 clusters.
//! Each test checks what the command promises to write (read back independently: CSV by
//! hand, Parquet with a plain arrow reader) and that bad input is a clean error (exit 2).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{fails, ok, s};
use adag_analysis::{ClusterState, Unit};
use adag_circuit::Circuit;

/// Traces the fixture dataset (7 prompts) into `dir/c`; with `cluster`, also clusters it.
fn circuit(dir: &Path, cluster: bool) -> PathBuf {
    let c = dir.join("c");
    ok(&[
        "trace",
        "--config",
        "fixtures/datasets/run.yaml",
        "--out",
        s(&c),
        "--quiet",
    ]);
    if cluster {
        ok(&["cluster", s(&c), "--k", "3"]);
    }
    c
}

fn read(c: &Path) -> (Circuit, ClusterState) {
    let (circ, _) = adag_circuit::read_circuit(c).unwrap();
    let state = ClusterState::read(&ClusterState::default_path(c)).unwrap();
    (circ, state)
}

/// Per cluster, per prompt: summed node attribution of the cluster's neuron nodes.
fn cluster_attribution(circ: &Circuit, cs: &ClusterState) -> BTreeMap<String, BTreeMap<u64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for n in &circ.nodes {
        if n.layer < 0 || n.input_profile.is_empty() {
            continue;
        }
        if let Some(c) = cs.cluster_of(&Unit::of_node(n.layer, n.neuron, n.activation)) {
            *out.entry(c.to_string())
                .or_default()
                .entry(n.prompt_id)
                .or_default() += n.attribution as f64;
        }
    }
    out
}

/// A CSV file as (header, rows of fields).
fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

const SWEEP_COLUMNS: [&str; 8] = [
    "target",
    "scale",
    "n_prompts",
    "mean_kl",
    "mean_top_target_ratio",
    "mean_top_target_delta",
    "mean_top_target_delta_fixed_norm",
    "top1_changed",
];

#[test]
fn steer_sweep_writes_one_row_per_cluster_and_scale_in_csv_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let c = circuit(dir.path(), true);
    let (circ, cs) = read(&c);
    let prefix = dir.path().join("sweep");
    ok(&[
        "steer",
        s(&c),
        "--sweep",
        "--scale",
        "0,1,2",
        "-o",
        s(&prefix),
    ]);
    let ids: Vec<String> = cs.clusters.iter().map(|c| c.id.clone()).collect();
    assert!(!ids.is_empty());
    let attribution = cluster_attribution(&circ, &cs);

    let (header, rows) = csv(&dir.path().join("sweep.csv"));
    assert_eq!(header, SWEEP_COLUMNS);
    assert_eq!(rows.len(), ids.len() * 3, "{rows:?}");
    let pairs: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(pairs.len(), rows.len(), "a (cluster, scale) pair repeats");
    for id in &ids {
        for scale in ["0", "1", "2"] {
            assert!(
                pairs.contains(&(id.clone(), scale.to_string())),
                "{id} ×{scale}"
            );
        }
    }
    let num = |r: &Vec<String>, col: &str| -> f64 {
        r[SWEEP_COLUMNS.iter().position(|&c| c == col).unwrap()]
            .parse()
            .unwrap()
    };
    for r in &rows {
        // Steered on every prompt where the cluster has traced nodes.
        assert_eq!(
            num(r, "n_prompts") as usize,
            attribution[&r[0]].len(),
            "{r:?}"
        );
        if r[1] == "1" {
            // Scaling by one is the identity: nothing may move.
            for col in [
                "mean_kl",
                "mean_top_target_delta",
                "mean_top_target_delta_fixed_norm",
                "top1_changed",
            ] {
                assert!(num(r, col).abs() < 1e-9, "{col} at scale 1: {r:?}");
            }
            assert!((num(r, "mean_top_target_ratio") - 1.0).abs() < 1e-9);
        } else {
            assert!(num(r, "mean_kl") > 0.0, "{r:?}");
        }
    }

    // The Parquet table: same columns, same rows, same values.
    use arrow_array::{Array, Float32Array, Float64Array, StringArray, UInt64Array};
    let file = std::fs::File::open(dir.path().join("sweep.parquet")).unwrap();
    let batches: Vec<arrow_array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let names: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, SWEEP_COLUMNS);
    let mut n = 0;
    for b in &batches {
        let col = |name: &str| b.column_by_name(name).unwrap();
        let target = col("target")
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let scale = col("scale")
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap();
        let prompts = col("n_prompts")
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        let delta = col("mean_top_target_delta")
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            let r = &rows[n + i];
            assert_eq!(target.value(i), r[0]);
            assert_eq!(scale.value(i), r[1].parse::<f32>().unwrap());
            assert_eq!(prompts.value(i), r[2].parse::<u64>().unwrap());
            assert_eq!(delta.value(i), num(r, "mean_top_target_delta"));
        }
        assert_eq!(delta.null_count(), 0);
        n += b.num_rows();
    }
    assert_eq!(n, rows.len());

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["summary"].as_array().unwrap().len(), rows.len());
}

#[test]
fn steer_one_cluster_and_one_neuron_with_generation() {
    let dir = tempfile::tempdir().unwrap();
    let c = circuit(dir.path(), true);
    let (circ, cs) = read(&c);
    let prefix = dir.path().join("c0");
    let text = ok(&[
        "steer",
        s(&c),
        "--cluster",
        &cs.clusters[0].id,
        "--scale",
        "0",
        "--generate",
        "2",
        "-o",
        s(&prefix),
    ]);
    assert!(text.contains("generates"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("c0.json")).unwrap()).unwrap();
    for run in json["runs"][0]["prompts"].as_array().unwrap() {
        assert_eq!(run["generated"].as_array().unwrap().len(), 2);
        // Ablation: the cluster's own traced entries are zero, so its ratio is 0.
        let id = &cs.clusters[0].id;
        assert!(run["cluster_ratios"][id].as_f64().unwrap().abs() < 1e-6);
    }

    // One neuron, on exactly the prompts where it was traced.
    let n = circ
        .nodes
        .iter()
        .find(|n| n.layer >= 0 && !n.input_profile.is_empty())
        .unwrap();
    let spec = format!("{}:{}", n.layer, n.neuron);
    let text = ok(&["steer", s(&c), "--neuron", &spec, "--scale", "2"]);
    let traced: BTreeSet<u64> = circ
        .nodes
        .iter()
        .filter(|m| (m.layer, m.neuron) == (n.layer, n.neuron) && !m.input_profile.is_empty())
        .map(|m| m.prompt_id)
        .collect();
    let steered = text.lines().filter(|l| l.starts_with("prompt ")).count();
    assert_eq!(steered, traced.len(), "{text}");
}

#[test]
fn correlate_sorts_by_strength_and_matches_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let c = circuit(dir.path(), true);
    let (circ, cs) = read(&c);
    let attribution = cluster_attribution(&circ, &cs);
    // The metric is an affine function of C0's attribution (keyed by label), so C0's row must
    // have r = ρ = 1; every other cluster row is checked against Pearson's r computed here.
    let c0 = &cs.clusters[0].id;
    let label: BTreeMap<u64, String> = circ
        .prompts
        .iter()
        .map(|p| (p.prompt_id, p.label.clone().unwrap()))
        .collect();
    let metric: BTreeMap<u64, f64> = circ
        .prompts
        .iter()
        .map(|p| {
            let x = attribution[c0].get(&p.prompt_id).copied().unwrap_or(0.0);
            (p.prompt_id, 3.0 * x - 1.0)
        })
        .collect();
    let mut text = String::from("label,asr\n");
    for (id, v) in &metric {
        text.push_str(&format!("{},{v}\n", label[id]));
    }
    let mpath = dir.path().join("asr.csv");
    std::fs::write(&mpath, text).unwrap();
    let out = dir.path().join("corr.csv");
    ok(&[
        "correlate",
        s(&c),
        "--metric",
        s(&mpath),
        "--min-prompts",
        "3",
        "--level",
        "cluster,neuron",
        "-o",
        s(&out),
    ]);
    let (header, rows) = csv(&out);
    assert_eq!(
        header,
        [
            "level",
            "item",
            "n",
            "pearson_r",
            "pearson_p",
            "spearman_rho",
            "spearman_p",
            "mean_attribution",
            "pearson_q",
            "permutation_p",
            "low_n"
        ]
    );
    let f = |r: &Vec<String>, i: usize| r[i].parse::<f64>().unwrap();
    let strength: Vec<f64> = rows.iter().map(|r| f(r, 3).abs()).collect();
    assert!(
        strength.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by |r|: {strength:?}"
    );
    let levels: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert!(
        levels.contains("cluster") && levels.contains("neuron"),
        "{levels:?}"
    );

    let c0_row = rows
        .iter()
        .find(|r| r[0] == "cluster" && &r[1] == c0)
        .expect("C0 row");
    assert_eq!(c0_row[2].parse::<usize>().unwrap(), attribution[c0].len());
    assert!((f(c0_row, 3) - 1.0).abs() < 1e-6, "{c0_row:?}");
    assert!((f(c0_row, 5) - 1.0).abs() < 1e-9, "{c0_row:?}");
    assert!(f(c0_row, 4) < 1e-6, "p of r = 1: {c0_row:?}");
    for r in rows.iter().filter(|r| r[0] == "cluster") {
        let per = &attribution[&r[1]];
        let (x, y): (Vec<f64>, Vec<f64>) = per.iter().map(|(id, v)| (*v, metric[id])).unzip();
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        let want = sxy / (sxx * syy).sqrt();
        assert!((f(r, 3) - want).abs() < 1e-6, "{r:?}: r should be {want}");
        assert!((f(r, 7) - mx).abs() < 1e-5, "{r:?}: mean should be {mx}");
    }
}

#[test]
fn plot_writes_valid_dot_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let c = circuit(dir.path(), true);
    let (circ, cs) = read(&c);
    let prefix = dir.path().join("p0");
    let text = ok(&["plot", s(&c), "--prompt", "0", "-o", s(&prefix)]);
    let dot = std::fs::read_to_string(dir.path().join("p0.dot")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("p0.svg")).unwrap();

    // DOT: one digraph, balanced braces, and every edge between declared nodes.
    assert!(dot.starts_with("digraph circuit {"), "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
    let declared: BTreeSet<&str> = dot
        .split(" \"")
        .filter_map(|t| t.split_once("\" [label="))
        .map(|(id, _)| id)
        .collect();
    let edges: Vec<(&str, &str)> = dot
        .lines()
        .filter(|l| !l.contains("style=invis"))
        .filter_map(|l| l.trim().split_once("\" -> \""))
        .map(|(a, b)| (a.trim_start_matches('"'), b.split('"').next().unwrap()))
        .collect();
    assert!(!edges.is_empty(), "{dot}");
    for (a, b) in &edges {
        assert!(declared.contains(a) && declared.contains(b), "{a} -> {b}");
    }
    // Every token of the prompt but BOS and every cluster with nodes on it is a node, and
    // invisible edges keep the tokens in prompt order on their rank.
    let prompt = &circ.prompts[0];
    assert_eq!(prompt.token_strings[0], "<|begin_of_text|>");
    assert!(!declared.contains("tok0"), "BOS is not drawn");
    assert!(!dot.contains("\"tok0\""), "{dot}");
    for i in 1..prompt.token_ids.len() {
        assert!(declared.contains(format!("tok{i}").as_str()));
    }
    let chain = (1..prompt.token_ids.len())
        .map(|i| format!("\"tok{i}\""))
        .collect::<Vec<_>>()
        .join(" -> ");
    let rank0 = dot
        .lines()
        .find(|l| l.contains("\"tok1\" [label="))
        .unwrap();
    assert!(
        rank0.contains("rank=same") && rank0.contains(&format!("{chain} [style=invis]")),
        "{rank0}"
    );
    // Targets show their token visibly and a probability that is not rounded away.
    for (i, t) in prompt.target_strings.iter().enumerate() {
        let at = dot.find(&format!("\"out{i}\" [label=\"")).unwrap();
        let label = dot[at..]
            .split("[label=\"")
            .nth(1)
            .unwrap()
            .split("\"];")
            .next()
            .unwrap();
        let shown = t.replace(' ', "␣").replace('\n', "↵");
        assert!(
            label.starts_with(&format!("&quot;{shown}&quot; p=")),
            "{label}"
        );
        assert!(!label.contains("p=0.00"), "{label}");
    }
    for n in circ.nodes.iter().filter(|n| n.prompt_id == 0) {
        if n.layer >= 0 && !n.input_profile.is_empty() {
            let cl = cs
                .cluster_of(&Unit::of_node(n.layer, n.neuron, n.activation))
                .unwrap();
            assert!(declared.contains(cl), "{cl} missing");
        }
    }

    // SVG: one document, a box per node, a line per DOT edge.
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(
        svg.matches("<rect").count(),
        declared.len() + 1,
        "background"
    );
    assert_eq!(svg.matches("<line").count(), edges.len());
    // Each edge has an arrowhead and starts and ends on a box border, never inside a box.
    assert_eq!(svg.matches("marker-end=\"url(#arrow-").count(), edges.len());
    assert!(svg.contains("<marker id=\"arrow-pos\"") && svg.contains("<marker id=\"arrow-neg\""));
    let num = |tag: &str, name: &str| -> f64 {
        let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        tag[at..].split('"').next().unwrap().parse().unwrap()
    };
    let boxes: Vec<[f64; 4]> = svg
        .split("<rect x=")
        .skip(1)
        .map(|t| {
            let t = format!(" x={t}");
            let (x, y) = (num(&t, "x"), num(&t, "y"));
            [x, y, x + num(&t, "width"), y + num(&t, "height")]
        })
        .collect();
    for l in svg.split("<line").skip(1) {
        for (xk, yk) in [("x1", "y1"), ("x2", "y2")] {
            let (x, y) = (num(l, xk), num(l, yk));
            let on_border = boxes.iter().any(|b| {
                let inside =
                    x >= b[0] - 0.11 && x <= b[2] + 0.11 && y >= b[1] - 0.11 && y <= b[3] + 0.11;
                let edge = (x - b[0]).abs() < 0.11
                    || (x - b[2]).abs() < 0.11
                    || (y - b[1]).abs() < 0.11
                    || (y - b[3]).abs() < 0.11;
                inside && edge
            });
            assert!(on_border, "({x}, {y}) is not on a box border: {l}");
        }
    }
    assert_eq!(svg.matches("<text").count(), declared.len() + 1, "title");

    // PNG: Graphviz's when installed, else adag's own, with the SVG's size.
    let png = std::fs::read(dir.path().join("p0.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let dim = |o: usize| u32::from_be_bytes(png[o..o + 4].try_into().unwrap());
    let graphviz = Command::new("dot").arg("-V").output().is_ok();
    assert!(
        text.contains(if graphviz { "(Graphviz)" } else { "(adag)" }),
        "{text}"
    );
    if !graphviz {
        let attr = |name: &str| -> u32 {
            let at = svg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            svg[at..].split('"').next().unwrap().parse().unwrap()
        };
        assert_eq!((dim(16), dim(20)), (attr("width"), attr("height")));
    }
    assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
}

#[test]
fn bad_input_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for cmd in [
        vec!["steer", s(&missing), "--cluster", "C0"],
        vec!["correlate", s(&missing), "--metric", "m.csv"],
        vec!["plot", s(&missing), "--prompt", "0"],
    ] {
        let e = fails(&cmd);
        assert!(e.contains("nope"), "{cmd:?}: {e}");
    }

    // A traced but unclustered circuit: steer, plot and cluster-level correlation say to
    // cluster it first.
    let c = circuit(dir.path(), false);
    let m = dir.path().join("metric.csv");
    std::fs::write(&m, "prompt_id,asr\n0,1\n1,2\n2,0\n3,5\n").unwrap();
    for cmd in [
        vec!["steer", s(&c), "--cluster", "C0"],
        vec!["plot", s(&c), "--prompt", "0"],
        vec!["correlate", s(&c), "--metric", s(&m), "--level", "cluster"],
    ] {
        let e = fails(&cmd);
        assert!(e.contains("adag cluster"), "{cmd:?}: {e}");
    }
    ok(&["cluster", s(&c), "--k", "3"]);

    let e = fails(&["steer", s(&c), "--cluster", "C99"]);
    assert!(e.contains("no cluster \"C99\"") && e.contains("C0"), "{e}");
    let e = fails(&["steer", s(&c), "--neuron", "x:1"]);
    assert!(e.contains("LAYER:NEURON"), "{e}");
    // The llama fixture has 3 MLP layers of 128 neurons.
    let e = fails(&["steer", s(&c), "--neuron", "7:1"]);
    assert!(e.contains("layer 7 is out of range"), "{e}");
    let e = fails(&["steer", s(&c), "--neuron", "0:128"]);
    assert!(
        e.contains("index 128 is out of range") && e.contains("128 neurons"),
        "{e}"
    );
    let (circ, _) = adag_circuit::read_circuit(&c).unwrap();
    let untraced = (0..128u32)
        .find(|&i| !circ.nodes.iter().any(|n| n.layer == 0 && n.neuron == i))
        .unwrap();
    let spec = format!("0:{untraced}");
    let e = fails(&["steer", s(&c), "--neuron", &spec]);
    assert!(e.contains("not traced on any prompt"), "{e}");
    ok(&[
        "steer",
        s(&c),
        "--neuron",
        &spec,
        "--all-positions",
        "--scale",
        "0",
    ]);
    let e = fails(&["plot", s(&c), "--prompt", "99"]);
    assert!(e.contains("no prompt 99"), "{e}");

    std::fs::write(&m, "prompt_id,asr\n0,0.5\n1,abc\n").unwrap();
    let e = fails(&["correlate", s(&c), "--metric", s(&m)]);
    assert!(
        e.contains("metric.csv") && e.contains("line 3") && e.contains("abc"),
        "{e}"
    );
    std::fs::write(&m, "asr\n0.5\n").unwrap();
    let e = fails(&["correlate", s(&c), "--metric", s(&m)]);
    assert!(e.contains("prompt_id or label"), "{e}");
    std::fs::write(&m, "prompt_id,asr\n0,0.5\n1,0.7\n").unwrap();
    let e = fails(&["correlate", s(&c), "--metric", s(&m), "--min-prompts", "3"]);
    assert!(
        e.contains("covers 2 of the circuit's 7 prompts") && e.contains("at least 3"),
        "{e}"
    );
    let e = fails(&[
        "correlate",
        s(&c),
        "--metric",
        s(&dir.path().join("none.csv")),
    ]);
    assert!(e.contains("none.csv"), "{e}");
}

/// Every basis through every stage: the demo model traced over a dataset in its transcoder
/// basis gives a feature circuit (units are transcoder features, the manifest names the
/// transcoders) that `cluster` groups and `steer` steers through the transcoders (×1 is the
/// identity, ablating a cluster moves the logits); and `attribute --basis neurons` gives a
/// pruned, scored neuron graph with no error nodes.
#[test]
fn feature_circuits_cluster_and_steer_and_neuron_graphs_prune() {
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
    let (circ, manifest) = adag_circuit::read_circuit(&c).unwrap();
    assert!(manifest
        .transcoders()
        .is_some_and(|t| t.ends_with("transcoders")));
    let tc = adag_engine::TranscoderSet::load(
        &manifest.transcoders().unwrap(),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let features: Vec<_> = circ
        .nodes
        .iter()
        .filter(|n| n.layer >= 0 && !n.input_profile.is_empty())
        .collect();
    assert!(features.len() > 20, "{} feature nodes", features.len());
    assert!(features
        .iter()
        .all(|n| (n.neuron as usize) < tc.d_tc && n.position > 0));
    // A feature's activation is what its transcoder encodes at that position.
    let m = adag_model::LoadedModel::load(Path::new("models/demo"), &Default::default()).unwrap();
    let prompt = &circ.prompts[0];
    let filter = adag_model::CacheFilter::sites([tc.read.site()]);
    let run = m
        .model
        .forward(
            &adag_model::Batch::single(&prompt.token_ids).unwrap(),
            &filter,
        )
        .unwrap();
    for n in features.iter().filter(|n| n.prompt_id == prompt.prompt_id) {
        let x = run
            .cache
            .item(
                adag_core::HookName::Block(n.layer as usize, tc.read.site()),
                0,
            )
            .unwrap();
        let a = tc
            .activate(
                n.layer as usize,
                &tc.pre_activations(n.layer as usize, &x).unwrap(),
            )
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()[n.position as usize][n.neuron as usize];
        assert!(
            (a - n.activation).abs() < 1e-4 * (1.0 + a.abs()),
            "{a} vs {}",
            n.activation
        );
    }

    ok(&["cluster", s(&c), "--k", "3"]);
    let out = dir.path().join("steer");
    ok(&[
        "steer",
        s(&c),
        "--cluster",
        "C0",
        "--scale",
        "1",
        "--scale",
        "0",
        "--out",
        s(&out),
    ]);
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    let runs = runs["runs"].as_array().unwrap();
    let prompts = |scale: f64| {
        runs.iter()
            .find(|r| r["scale"].as_f64() == Some(scale))
            .unwrap()["prompts"]
            .as_array()
            .unwrap()
            .clone()
    };
    for p in prompts(1.0) {
        assert_eq!(
            p["steered_logits"], p["target_logits"],
            "×1 is the identity"
        );
    }
    assert!(prompts(0.0)
        .iter()
        .any(|p| p["kl"].as_f64().unwrap() > 1e-3));

    let summary: serde_json::Value = serde_json::from_str(&ok(&[
        "attribute",
        "--basis",
        "neurons",
        "--prompt",
        "The capital of the state containing Dallas is",
        "--max-feature-nodes",
        "300",
        "--json",
    ]))
    .unwrap();
    assert_eq!(summary["scores"]["completeness"].as_f64(), Some(1.0));
    assert_eq!(summary["nodes"]["feature_nodes"].as_u64(), Some(300));
    assert!(summary["nodes"]["pruned_nodes"].as_u64().unwrap() < 300);
}
