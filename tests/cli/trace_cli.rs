//! `adag trace` and `adag merge` as a user runs them, on the committed fixture dataset and the
//! tiny llama model. (Resume with the real tracer is tested in adag-circuit's tests/engine.rs,
//! where a batch can be made to fail deterministically.)

use crate::common::{fails, ok_env as ok, root, s};

#[test]
fn trace_shard_merge_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let cfg = "fixtures/datasets/run.yaml";
    let text = ok(
        &["trace", "--config", cfg, "--out", s(&one), "--quiet"],
        &[],
    );
    assert!(text.contains("7 prompts (shard 0/1, ids 0..7)"), "{text}");
    let (reference, manifest) = adag_circuit::read_circuit(&one).unwrap();
    assert_eq!(manifest.n_prompts, 7);
    assert_eq!(
        reference.prompts[0].target_ids.len(),
        3,
        "k: 3 from run.yaml"
    );
    assert_eq!(
        reference.prompts[3].target_strings.len(),
        1,
        "the item's answer is the target"
    );
    assert!(
        reference.nodes.iter().all(|n| n.position > 0),
        "keep_bos: false"
    );

    // SLURM array tasks pick their shard from the environment.
    let mut shards = Vec::new();
    for i in ["1", "0"] {
        let d = dir.path().join(format!("shard{i}"));
        let text = ok(
            &["trace", "--config", cfg, "--out", s(&d), "--quiet"],
            &[("SLURM_ARRAY_TASK_ID", i), ("SLURM_ARRAY_TASK_COUNT", "2")],
        );
        assert!(text.contains(&format!("shard {i}/2")), "{text}");
        shards.push(d);
    }
    let merged = dir.path().join("merged");
    let text = ok(
        &["merge", s(&shards[0]), s(&shards[1]), "--out", s(&merged)],
        &[],
    );
    assert!(text.contains("2 shards of 2, 7 prompts"), "{text}");
    assert_eq!(adag_circuit::read_circuit(&merged).unwrap().0, reference);

    // The same prompts from the CSV fixture (flag overrides the config's dataset): same circuit.
    let csv = dir.path().join("csv");
    ok(
        &[
            "trace",
            "-c",
            cfg,
            "--dataset",
            "fixtures/datasets/capitals.csv",
            "-o",
            s(&csv),
            "--quiet",
        ],
        &[],
    );
    assert_eq!(adag_circuit::read_circuit(&csv).unwrap().0, reference);

    // A finished directory with other settings is refused.
    let err = fails(&["trace", "-c", cfg, "-o", s(&one), "--k", "2", "--quiet"]);
    assert!(
        err.contains("holds another run")
            && err.contains("engine.k")
            && err.contains("--overwrite"),
        "{err}"
    );
    let err = fails(&["merge", s(&shards[0]), "--out", s(&dir.path().join("m2"))]);
    assert!(err.contains("shards 0 of 2 are missing"), "{err}");
}

#[test]
fn trace_errors_name_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.yaml");
    std::fs::write(&cfg, "dataset: d.jsonl\nbatch_sise: 2\n").unwrap();
    let err = fails(&["trace", "-c", s(&cfg)]);
    assert!(err.contains("`batch_sise`: unknown key"), "{err}");
    let data = dir.path().join("d.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"sead\": \"x\"}\n",
    )
    .unwrap();
    let err = fails(&[
        "trace",
        "--dataset",
        s(&data),
        "--model",
        "fixtures/models/llama",
        "--out",
        s(&dir.path().join("o")),
    ]);
    assert!(
        err.contains("d.jsonl: line 2: field `sead`: unknown field"),
        "{err}"
    );
    let err = fails(&[
        "trace",
        "--dataset",
        s(&data),
        "--model",
        "fixtures/models/llama",
    ]);
    assert!(err.contains("`output_path`: required"), "{err}");
}

#[test]
fn llama31_instruct_is_detected_from_the_directory() {
    // The tiny llama fixture under the name of the reference's model: its stripped chat
    // template and its blacklist apply (the blacklisted indices lie outside the tiny model).
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("Llama-3.1-8B-Instruct");
    std::fs::create_dir(&model).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(root().join("fixtures/models/llama").join(f), model.join(f)).unwrap();
    }
    let data = "fixtures/datasets/capitals.jsonl";
    let out = dir.path().join("on");
    ok(
        &[
            "trace",
            "-m",
            s(&model),
            "--dataset",
            data,
            "-o",
            s(&out),
            "--k",
            "2",
            "--quiet",
        ],
        &[],
    );
    let (c, m) = adag_circuit::read_circuit(&out).unwrap();
    assert_eq!(
        m.model_id.as_deref(),
        Some("meta-llama/Llama-3.1-8B-Instruct")
    );
    assert_eq!(
        m.config["engine"]["blacklist"].as_array().unwrap().len(),
        12
    );
    assert_eq!(
        m.config["engine"]["blacklist"][0],
        serde_json::json!([23, 306])
    );
    // Stripped template: an empty system header after BOS.
    assert_eq!(
        &c.prompts[0].token_strings[..11],
        [
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "s",
            "y",
            "st",
            "e",
            "m",
            "<|end_header_id|>",
            "\n",
            "\n",
            "<|eot_id|>"
        ]
    );
    let off = dir.path().join("off");
    ok(
        &[
            "trace",
            "-m",
            s(&model),
            "--dataset",
            data,
            "-o",
            s(&off),
            "--k",
            "2",
            "--no-apply-blacklist",
            "--blacklist",
            "L1/5",
            "--quiet",
        ],
        &[],
    );
    let m = adag_circuit::read_circuit(&off).unwrap().1;
    // The model's list is off; an explicit list still applies.
    assert_eq!(m.config["engine"]["blacklist"], serde_json::json!([[1, 5]]));
}

#[test]
fn trace_exports_neuron_graphs_like_transcoder_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let graphs = dir.path().join("graphs");
    ok(
        &[
            "trace",
            "--config",
            "fixtures/datasets/run.yaml",
            "--out",
            s(&dir.path().join("c")),
            "--graph-dir",
            s(&graphs),
            "--slug",
            "cap",
            "--quiet",
        ],
        &[],
    );
    // The frontend JSON: neurons as features, with their profiles and the decoded targets.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("cap-0.json")).unwrap()).unwrap();
    let neurons: Vec<&serde_json::Value> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["feature_type"] == "mlp neuron")
        .collect();
    assert!(!neurons.is_empty());
    for n in &neurons {
        let p: f64 = n["input_profile"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-3, "input profile sums to {p}");
        assert!(!n["output_profile"].as_array().unwrap().is_empty());
    }
    assert!(doc["metadata"]["target_logit_tokens"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    // The graph file: the same tools as transcoder graphs work on it.
    let file = graphs.join("cap-0.safetensors");
    let pruned = ok(&["prune", "--graph", s(&file)], &[]);
    assert!(
        pruned.contains("; kept ") && pruned.contains("kept nodes"),
        "{pruned}"
    );
    ok(
        &[
            "export",
            "--graph",
            s(&file),
            "--slug",
            "again",
            "--graph-dir",
            s(&graphs),
        ],
        &[],
    );
}

#[test]
fn clusters_become_named_supernodes_on_each_prompts_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (circuit, graphs) = (dir.path().join("c"), dir.path().join("graphs"));
    ok(
        &[
            "trace",
            "--config",
            "fixtures/datasets/run.yaml",
            "--out",
            s(&circuit),
            "--graph-dir",
            s(&graphs),
            "--quiet",
        ],
        &[],
    );
    let text = ok(
        &[
            "cluster",
            s(&circuit),
            "--k",
            "3",
            "--graph-dir",
            s(&graphs),
        ],
        &[],
    );
    assert!(text.contains("supernodes to 7 graph(s)"), "{text}");
    // The config names its model relative to itself; the manifest stores it absolute, so the
    // circuit works from any directory (`cd /tmp && adag steer DIR`).
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(circuit.join("manifest.json")).unwrap())
            .unwrap();
    let model = std::path::Path::new(manifest["model"].as_str().unwrap());
    assert!(
        model.is_absolute() && model.join("config.json").exists(),
        "{model:?}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(circuit.join("clusters.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = state["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("trace-0.json")).unwrap())
            .unwrap();
    let neurons: std::collections::HashSet<&str> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["feature_type"] == "mlp neuron")
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    let groups = doc["qParams"]["supernodes"].as_array().unwrap();
    assert!(!groups.is_empty());
    let mut seen = std::collections::HashSet::new();
    for g in groups {
        let g = g.as_array().unwrap();
        assert!(
            names.contains(&g[0].as_str().unwrap()),
            "{:?} is not a cluster",
            g[0]
        );
        for id in &g[1..] {
            let id = id.as_str().unwrap();
            assert!(
                neurons.contains(id),
                "{id} is not a neuron node of this graph"
            );
            assert!(seen.insert(id), "{id} is in two supernodes");
        }
    }
    // Every neuron node of the prompt belongs to some cluster (all units were clustered).
    assert_eq!(seen.len(), neurons.len());
}

/// A given answer the model does not predict (Fresno → " Austin": goal ≤ 0 on the demo model)
/// is warned about by prompt id, recorded as `predicted = false` in prompts.parquet, and
/// `--skip-unpredicted` keeps the row but drops its nodes and edges (the predicted prompt's
/// circuit is unchanged).
#[test]
fn unpredicted_answers_are_warned_recorded_and_skippable() {
    if !root().join("models/demo/config.json").exists() {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("d.jsonl");
    std::fs::write(
        &ds,
        "{\"prompt\":\"The capital of the state containing Dallas is\",\"answers\":[\" Austin\"]}\n\
         {\"prompt\":\"The capital of the state containing Fresno is\",\"answers\":[\" Austin\"]}\n",
    )
    .unwrap();
    let run = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec!["trace", "--dataset", s(&ds), "--out", s(&out), "--quiet"];
        args.extend(extra);
        let o = crate::common::adag(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        (adag_circuit::read_circuit(&out).unwrap().0, err)
    };
    let (all, err) = run("all", &[]);
    assert!(
        err.contains("warning: prompt 1: the model does not predict its answers [\" Austin\"]"),
        "{err}"
    );
    assert!(!err.contains("prompt 0:"), "{err}");
    let predicted: Vec<bool> = all.prompts.iter().map(|p| p.predicted).collect();
    assert_eq!(predicted, [true, false]);
    assert!(all.prompts[0].goal > 0.0 && all.prompts[1].goal <= 0.0);
    assert!(all.nodes.iter().any(|n| n.prompt_id == 1));

    let (kept, err) = run("kept", &["--skip-unpredicted"]);
    assert!(err.contains("skipped (--skip-unpredicted)"), "{err}");
    assert_eq!(kept.prompts.len(), 2);
    assert!(!kept.prompts[1].predicted);
    assert!(kept.nodes.iter().all(|n| n.prompt_id == 0));
    assert!(kept.edges.iter().all(|e| e.prompt_id == 0));
    let of0 = |c: &adag_circuit::Circuit| c.nodes.iter().filter(|n| n.prompt_id == 0).count();
    assert_eq!(of0(&kept), of0(&all));
}
