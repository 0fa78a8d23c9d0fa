//! The `adag` binary as a user runs it, on the committed fixtures.

use crate::common;

use crate::common::{fails, ok};

#[test]
fn inspect_every_fixture() {
    for (name, arch) in [
        ("llama", "LlamaForCausalLM"),
        ("qwen2", "Qwen2ForCausalLM"),
        ("qwen3", "Qwen3ForCausalLM"),
        ("gemma2", "Gemma2ForCausalLM"),
    ] {
        let dir = format!("fixtures/models/{name}");
        let text = ok(&["inspect", "--model", &dir]);
        assert!(text.contains(arch), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&ok(&["inspect", "--model", &dir, "--json"])).unwrap();
        assert_eq!(json["architecture"], arch);
        assert_eq!(json["tokenizer"]["chat_template"], true);
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "-m", "fixtures/models/qwen2", "--json"])).unwrap();
    assert_eq!(json["weight_files"], 4);
    assert_eq!(json["tokenizer"]["tokenizer_adds_bos"], false);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "-m", "fixtures/models/llama", "--json"])).unwrap();
    assert_eq!(json["tied_embeddings"], true);
    assert_eq!(json["tokenizer"]["bos"]["token"], "<|begin_of_text|>");
    assert_eq!(json["tokenizer"]["tokenizer_adds_bos"], true);
}

#[test]
fn run_shows_tokens_and_a_distribution() {
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "run",
        "--model",
        "fixtures/models/llama",
        "--prompt",
        "The capital of Texas is",
        "--top-k",
        "7",
        "--json",
    ]))
    .unwrap();
    let tokens = json["tokens"].as_array().unwrap();
    assert_eq!(
        tokens[0]["token"], "<|begin_of_text|>",
        "Llama's tokenizer adds BOS"
    );
    let top = json["top"].as_array().unwrap();
    assert_eq!(top.len(), 7);
    let probs: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
    assert!(
        probs.windows(2).all(|w| w[0] >= w[1]),
        "sorted by probability: {probs:?}"
    );
    assert!(probs.iter().sum::<f64>() <= 1.0 + 1e-6);

    let chat: serde_json::Value = serde_json::from_str(&ok(&[
        "run",
        "-m",
        "fixtures/models/qwen3",
        "-p",
        "Hi",
        "--chat",
        "--json",
    ]))
    .unwrap();
    let toks: Vec<&str> = chat["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(toks[0], "<|im_start|>");
    assert!(
        toks.ends_with(&["<|im_start|>", "assistant", "\n"])
            || toks.join("").ends_with("<|im_start|>assistant\n"),
        "{toks:?}"
    );

    let text = ok(&["run", "-m", "fixtures/models/gemma2", "-p", "36+59="]);
    assert!(
        text.contains("next token (top 10)") && text.contains("<bos>"),
        "{text}"
    );
}

#[test]
fn errors_are_clean() {
    let e = fails(&["run", "-m", "fixtures/models/llama", "-p", ""]);
    assert!(e.contains("empty"), "{e}");
    let e = fails(&["inspect", "-m", "fixtures/no-such-model"]);
    assert!(e.contains("config.json"), "{e}");
    let e = fails(&[
        "run",
        "-m",
        "fixtures/models/llama",
        "-p",
        "x",
        "--device",
        "cuda",
    ]);
    assert!(e.contains("cuda") || e.contains("CUDA"), "{e}");
}

#[test]
fn attribute_prune_export_and_intervene_on_fixture_transcoders() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.safetensors");
    let graphs = dir.path().join("graphs");
    let text = ok(&[
        "attribute",
        "--transcoders",
        "fixtures/transcoders/llama-plt",
        "--prompt",
        "The capital of the state containing Dallas is",
        "--out",
        out.to_str().unwrap(),
        "--slug",
        "dallas",
        "--graph-dir",
        graphs.to_str().unwrap(),
    ]);
    assert!(
        text.contains("targets:") && text.contains("top features by influence"),
        "{text}"
    );
    // The model defaulted to config.yaml's model_name (the llama fixture), whose BOS leads.
    assert!(text.contains("0:<|begin_of_text|>"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("dallas.json")).unwrap())
            .unwrap();
    assert_eq!(json["metadata"]["slug"], "dallas");
    assert!(!json["links"].as_array().unwrap().is_empty());
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("graph-metadata.json")).unwrap())
            .unwrap();
    assert_eq!(index["graphs"].as_array().unwrap().len(), 1);

    let pruned = ok(&[
        "prune",
        "--graph",
        out.to_str().unwrap(),
        "--node-threshold",
        "0.5",
    ]);
    assert!(pruned.contains("kept nodes"), "{pruned}");
    ok(&[
        "export",
        "--graph",
        out.to_str().unwrap(),
        "--slug",
        "again",
        "--graph-dir",
        graphs.to_str().unwrap(),
    ]);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("graph-metadata.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["graphs"].as_array().unwrap().len(),
        2,
        "upsert adds a new slug"
    );

    let iv = ok(&[
        "intervene",
        "-t",
        "fixtures/transcoders/llama-plt",
        "-p",
        "36+59=",
        "--set",
        "1:5:3*0",
        "--set",
        "0:4+:7=5",
        "--generate",
        "3",
    ]);
    assert!(iv.contains("clean") && iv.contains("intervened"), "{iv}");

    let e = fails(&[
        "attribute",
        "-t",
        "fixtures/transcoders/llama-plt",
        "-p",
        "x",
        "--slug",
        "s",
    ]);
    assert!(e.contains("--graph-dir"), "{e}");
    let e = fails(&["attribute", "-t", "fixtures/models/llama", "-p", "x"]);
    assert!(e.contains("config.yaml"), "{e}");
    let e = fails(&[
        "attribute",
        "-t",
        "fixtures/transcoders/gemma2-clt",
        "-m",
        "fixtures/models/llama",
        "-p",
        "x",
    ]);
    assert!(e.contains("layers"), "{e}");
    let e = fails(&[
        "intervene",
        "-t",
        "fixtures/transcoders/llama-plt",
        "-p",
        "x",
        "--set",
        "1:2",
    ]);
    assert!(e.contains("LAYER:POS:FEATURE"), "{e}");
}

#[test]
fn attribute_on_the_demo_model_with_its_cross_layer_transcoder() {
    // The bundled CLT read by the engine's native-CLT loader: if the trainer's files and the
    // engine disagreed on any convention (decoder slots, bias, threshold), the error nodes
    // would carry most of the MLP outputs and completeness would collapse.
    let out = ok(&[
        "attribute",
        "--transcoders",
        "models/demo/clt",
        "--prompt",
        "The capital of the state containing Dallas is",
    ]);
    assert!(out.contains("\" Austin\""), "{out}");
    let score = |name: &str| -> f64 {
        let at = out.find(&format!("{name} ")).expect(name) + name.len() + 1;
        out[at..]
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(score("completeness") > 0.9, "{out}");
    assert!(score("replacement") > 0.8, "{out}");
}

/// What a newcomer meets: `prune` lists what it kept (even when only errors and tokens survive)
/// and writes it; commands that write graphs say how to view them; `intervene` and `run` print
/// tokens readably and echo what was done.
#[test]
fn newcomer_output_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.safetensors");
    let graphs = dir.path().join("graphs");
    let attr = common::adag(&[
        "attribute",
        "-t",
        "models/demo/clt",
        "-p",
        "The capital of the state containing Dallas is",
        "--out",
        common::s(&g),
        "--slug",
        "dallas",
        "--graph-dir",
        common::s(&graphs),
    ]);
    assert!(attr.status.success());
    let err = String::from_utf8_lossy(&attr.stderr);
    assert_eq!(
        err.lines().last(),
        Some(format!("view: adag serve {}", graphs.display()).as_str()),
        "{err}"
    );
    // The metadata keeps the threshold as typed, not the f32 widened; token nodes carry their
    // text.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(graphs.join("dallas.json")).unwrap())
            .unwrap();
    assert_eq!(doc["metadata"]["node_threshold"].as_f64(), Some(0.8));
    let dallas = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "E_1082_7")
        .unwrap();
    assert_eq!(dallas["clerp"], "Emb: \" Dallas\"");

    // At 0.2 only error and token nodes hold the influence: the table says so, not nothing.
    let out = dir.path().join("p.safetensors");
    let pruned = ok(&[
        "prune",
        "-g",
        common::s(&g),
        "--node-threshold",
        "0.2",
        "--top",
        "0",
        "--out",
        common::s(&out),
    ]);
    let rows: Vec<&str> = pruned
        .lines()
        .skip_while(|l| !l.starts_with("kept nodes"))
        .skip(2)
        .take_while(|l| l.starts_with("  ") && !l.starts_with("  no feature"))
        .collect();
    let kept: usize = pruned
        .split("kept ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rows.len(), kept, "{pruned}");
    assert!(
        rows.iter()
            .any(|r| r.contains("E_1082_7") && r.contains("token") && r.contains("\" Dallas\"")),
        "{pruned}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("logit") && r.contains("\" Austin\"")),
        "{pruned}"
    );
    assert!(pruned.contains("no feature node survives"), "{pruned}");
    assert!(pruned.contains("kept edges"), "{pruned}");
    assert!(
        pruned.ends_with(&format!("wrote {}\n", out.display())),
        "{pruned}"
    );
    // The written graph is the pruned one: pruning it keeps the same kept nodes.
    let again = ok(&[
        "prune",
        "-g",
        common::s(&out),
        "--node-threshold",
        "1",
        "--top",
        "0",
    ]);
    assert!(again.contains(": 46 nodes, 0 features;"), "{again}");

    // A threshold that keeps features lists them with their activations.
    let pruned = ok(&[
        "prune",
        "-g",
        common::s(&g),
        "--node-threshold",
        "0.5",
        "--top",
        "0",
    ]);
    let features: Vec<&str> = pruned.lines().filter(|l| l.contains(" feature ")).collect();
    assert!(!features.is_empty(), "{pruned}");
    assert!(!pruned.contains("no feature node survives"), "{pruned}");

    let export = ok(&[
        "export",
        "-g",
        common::s(&g),
        "--slug",
        "again",
        "--graph-dir",
        common::s(&graphs),
    ]);
    assert!(
        export.ends_with(&format!("view: adag serve {}\n", graphs.display())),
        "{export}"
    );

    // intervene: readable tokens, the interventions echoed with their clean activations, the
    // logit changes, and a note when the feature was not active.
    let iv = ok(&[
        "intervene",
        "--transcoders",
        "models/demo/transcoders",
        "-p",
        "The capital of the state containing Dallas is",
        "--set",
        "3:8:36*0",
        "--set",
        "0:1:5*0",
        "--top-k",
        "3",
    ]);
    assert!(
        iv.contains("L3 F36 @8 × 0        pos 8   ␣is             1.2646 → 0.0000\n"),
        "{iv}"
    );
    assert!(iv.contains("L0 F5 @1 × 0         pos 1   The             0.0000 → 0.0000  (inactive here: scaling changes nothing)"), "{iv}");
    assert!(iv.contains("logit changes (clean top 3):"), "{iv}");
    let austin = iv
        .lines()
        .find(|l| l.trim_start().starts_with("␣Austin "))
        .unwrap();
    let nums: Vec<f64> = austin
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        (nums[0] + nums[2] - nums[1]).abs() < 2e-4,
        "Δ = after − clean: {austin}"
    );
    assert!(
        nums[2] < 0.0,
        "ablating a say-Austin feature lowers Austin: {austin}"
    );

    // Byte tokens of a random-weight model: bytes, never U+FFFD or raw control characters.
    let iv = ok(&[
        "intervene",
        "-t",
        "fixtures/transcoders/llama-plt",
        "-p",
        "36+59=",
        "--set",
        "1:5:3*0",
        "--generate",
        "3",
    ]);
    assert!(
        !iv.contains('\u{FFFD}') && !iv.chars().any(|c| c.is_control() && c != '\n'),
        "{iv}"
    );
    assert!(
        iv.contains("\\x"),
        "partial UTF-8 bytes are shown as \\xNN: {iv}"
    );

    // run: a space-only token and a newline are visible.
    let run = ok(&["run", "-m", "models/demo", "-p", "a  b\nc"]);
    let toks: Vec<&str> = run
        .lines()
        .skip_while(|l| !l.contains("pos       id  token"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    assert_eq!(toks, ["<|bos|>", "a", "␣", "␣b", "↵", "c"], "{run}");
}
