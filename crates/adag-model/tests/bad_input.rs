//! Every kind of bad model directory gets an error that names the file, tensor or field and
//! says what was expected. Each test copies a good fixture into a temporary directory and breaks
//! one thing.

use std::path::{Path, PathBuf};

use adag_model::{Batch, Error, LoadOptions, LoadedModel, ModelTokenizer, Transformer};
use candle_core::{Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

/// A writable copy of a fixture.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> (Error, String) {
    let e = Transformer::load(dir, &LoadOptions::default()).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

/// Rewrites model.safetensors through `f` (which edits the name → tensor map).
fn edit_weights(dir: &Path, f: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    f(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn missing_config_json() {
    let dir = copy_of("llama");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::MissingFile { .. }), "{msg}");
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn config_json_that_is_not_json() {
    let dir = copy_of("llama");
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 64,").unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(
        matches!(e, Error::BadFile { .. })
            && msg.contains("config.json")
            && msg.contains("not a valid config.json"),
        "{msg}"
    );
}

#[test]
fn missing_weights() {
    let dir = copy_of("llama");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::MissingFile { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("index.json"),
        "{msg}"
    );
}

#[test]
fn missing_shard_is_named() {
    let dir = copy_of("qwen2");
    std::fs::remove_file(dir.path().join("model-00003-of-00004.safetensors")).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::MissingFile { .. }), "{msg}");
    assert!(
        msg.contains("model-00003-of-00004.safetensors") && msg.contains("index.json"),
        "{msg}"
    );
}

#[test]
fn truncated_safetensors() {
    let dir = copy_of("llama");
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::BadFile { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn corrupt_safetensors_header() {
    let dir = copy_of("qwen2");
    let path = dir.path().join("model-00001-of-00004.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..24].copy_from_slice(b"this is garbage!");
    std::fs::write(&path, &bytes).unwrap();
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("model-00001-of-00004.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );
}

#[test]
fn tensor_with_wrong_shape() {
    let dir = copy_of("llama");
    edit_weights(dir.path(), |t| {
        t.insert(
            "model.layers.1.mlp.up_proj.weight".into(),
            Tensor::zeros((100, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("model.layers.1.mlp.up_proj.weight")
            && msg.contains("[128, 64]")
            && msg.contains("[100, 64]"),
        "{msg}"
    );
}

#[test]
fn missing_tensor() {
    let dir = copy_of("gemma2");
    edit_weights(dir.path(), |t| {
        t.remove("model.layers.2.pre_feedforward_layernorm.weight");
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains("model.layers.2.pre_feedforward_layernorm.weight")
            && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn untied_config_without_lm_head() {
    let dir = copy_of("llama");
    edit_config(dir.path(), |c| c["tie_word_embeddings"] = false.into());
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("lm_head.weight") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn config_contradicting_the_weights() {
    let dir = copy_of("qwen3");
    edit_config(dir.path(), |c| c["intermediate_size"] = 96.into());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("mlp.gate_proj.weight")
            && msg.contains("from config.json")
            && msg.contains("[96, 64]"),
        "{msg}"
    );
    let dir = copy_of("llama");
    edit_config(dir.path(), |c| c["num_hidden_layers"] = 5.into());
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("model.layers.3.") && msg.contains("not found"),
        "{msg}"
    );
}

#[test]
fn unknown_architecture() {
    let dir = copy_of("llama");
    edit_config(dir.path(), |c| {
        c["architectures"] = serde_json::json!(["MixtralForCausalLM"])
    });
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::UnsupportedArchitecture { .. }), "{msg}");
    for name in [
        "MixtralForCausalLM",
        "LlamaForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Gemma2ForCausalLM",
    ] {
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn missing_tokenizer() {
    let dir = copy_of("llama");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let e = LoadedModel::load(dir.path(), &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

#[test]
fn empty_prompt_and_bad_token_ids() {
    let tok = ModelTokenizer::from_dir(&fixture("qwen2")).unwrap();
    let e = Error::from(tok.prompt_ids("", false).unwrap_err());
    assert!(
        matches!(e, Error::Input(_)) && e.to_string().contains("empty"),
        "{e}"
    );
    let e = Batch::new(vec![vec![1, 2], vec![]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("sequence 1") && e.contains("no tokens"), "{e}");
    let model = Transformer::load(&fixture("qwen2"), &LoadOptions::default()).unwrap();
    let e = model.logits(&[1, 320]).unwrap_err().to_string();
    assert!(
        e.contains("token id 320") && e.contains("320 entries"),
        "{e}"
    );
}

#[test]
fn fewer_layers_in_config_than_in_checkpoint() {
    let dir = copy_of("llama");
    edit_config(dir.path(), |c| c["num_hidden_layers"] = 1.into());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::UnusedTensors { .. }), "{msg}");
    assert!(
        msg.contains("18 tensors")
            && msg.contains("`model.layers.1.input_layernorm.weight`")
            && msg.contains("num_hidden_layers"),
        "{msg}"
    );
}

#[test]
fn rope_scaling_as_a_string() {
    let dir = copy_of("llama");
    edit_config(dir.path(), |c| c["rope_scaling"] = "llama3".into());
    let (e, msg) = load_err(dir.path());
    assert!(matches!(e, Error::BadConfig { .. }), "{msg}");
    assert!(
        msg.contains("config.json") && msg.contains("`rope_scaling`") && msg.contains("\"llama3\""),
        "{msg}"
    );
}

#[test]
fn integer_weights_are_refused() {
    let dir = copy_of("llama");
    edit_weights(dir.path(), |t| {
        let w = t["model.norm.weight"]
            .to_dtype(candle_core::DType::I64)
            .unwrap();
        t.insert("model.norm.weight".into(), w);
    });
    let (_, msg) = load_err(dir.path());
    assert!(
        msg.contains("`model.norm.weight`") && msg.contains("stored as I64"),
        "{msg}"
    );
}

#[test]
fn non_finite_weights_name_the_first_bad_layer() {
    let dir = copy_of("llama");
    edit_weights(dir.path(), |t| {
        let w = &t["model.layers.1.mlp.down_proj.weight"];
        let nan = (w * f64::NAN).unwrap();
        t.insert("model.layers.1.mlp.down_proj.weight".into(), nan);
    });
    let model = Transformer::load(dir.path(), &LoadOptions::default()).unwrap();
    let e = model.logits(&[0, 5, 6]).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "non-finite values in the forward pass of batch item 0: first at blocks.1.hook_resid_post (check the checkpoint's weights and config.json)"
    );
}

#[test]
fn prompt_longer_than_the_context() {
    let dir = copy_of("llama");
    edit_config(dir.path(), |c| c["max_position_embeddings"] = 4.into());
    let model = Transformer::load(dir.path(), &LoadOptions::default()).unwrap();
    model.logits(&[0, 5, 6, 7]).unwrap();
    let e = model.logits(&[0, 5, 6, 7, 8]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the prompt has 5 tokens, more than the model's context of 4 tokens (max_position_embeddings in config.json)"
    );
}

#[test]
fn tensor_in_two_shards_follows_the_weight_map() {
    // Shard 1 holds a doubled final norm; shard 2 holds every tensor with the original one. The
    // index assigns the norm to shard 1, so the model must equal the single file with the norm
    // doubled (a routing that lets the later shard win would silently use the original).
    let dir = copy_of("llama");
    let path = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let doubled = (&tensors["model.norm.weight"] * 2.0).unwrap();
    let mut expected = tensors.clone();
    expected.insert("model.norm.weight".into(), doubled.clone());
    let want_dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(dir.path().join(f), want_dir.path().join(f)).unwrap();
    }
    candle_core::safetensors::save(&expected, want_dir.path().join("model.safetensors")).unwrap();

    std::fs::remove_file(&path).unwrap();
    let one: std::collections::HashMap<String, Tensor> =
        [("model.norm.weight".to_string(), doubled)].into();
    candle_core::safetensors::save(&one, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(
        &tensors,
        dir.path().join("model-00002-of-00002.safetensors"),
    )
    .unwrap();
    let weight_map: serde_json::Map<String, serde_json::Value> = tensors
        .keys()
        .map(|k| {
            let shard = if k == "model.norm.weight" { 1 } else { 2 };
            (
                k.clone(),
                format!("model-0000{shard}-of-00002.safetensors").into(),
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({ "weight_map": weight_map }).to_string(),
    )
    .unwrap();

    let opts = LoadOptions::default();
    let got = Transformer::load(dir.path(), &opts)
        .unwrap()
        .logits(&[0, 5, 6])
        .unwrap();
    let want = Transformer::load(want_dir.path(), &opts)
        .unwrap()
        .logits(&[0, 5, 6])
        .unwrap();
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
}
