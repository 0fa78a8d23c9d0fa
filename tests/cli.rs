//! The `adag` binary as a user runs it, on the committed fixtures.

mod common;

use common::{fails, ok};

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
    assert!(pruned.contains("pruned to"), "{pruned}");
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
