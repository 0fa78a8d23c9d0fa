//! `Gemma3ForConditionalGeneration` checkpoints load as their text model.
//!
//! The directory is the Gemma-3 fixture rewritten the way transformers saves the multimodal
//! class (checked against transformers 4.57's `save_pretrained`: `language_model.model.*`
//! beside `vision_tower.*` and `multi_modal_projector.*`; transformers 5 writes
//! `model.language_model.*`), with a `text_config` that, like the Hub's, leaves out every field
//! equal to transformers' default. It must reproduce the fixture's transformers reference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use adag_model::{LoadOptions, Transformer};
use candle_core::{Device, Tensor};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/gemma3")
}

/// The fixture as a multimodal checkpoint whose text model lives under `text_prefix` and
/// whose image side under `image_prefix`.
fn multimodal(text_prefix: &str, image_prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture();
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut out: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| {
            let rest = k
                .strip_prefix("model.")
                .expect("text-only names start with model.");
            (format!("{text_prefix}{rest}"), v)
        })
        .collect();
    let img =
        |shape: &[usize]| Tensor::zeros(shape, candle_core::DType::BF16, &Device::Cpu).unwrap();
    out.insert(
        format!("{image_prefix}vision_tower.vision_model.embeddings.patch_embedding.weight"),
        img(&[16, 3, 14, 14]),
    );
    out.insert(
        format!("{image_prefix}multi_modal_projector.mm_input_projection_weight"),
        img(&[16, 32]),
    );
    candle_core::safetensors::save(&out, dir.path().join("model.safetensors")).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    // Only what differs from Gemma3TextConfig's defaults, as gemma-3-4b's config.json does;
    // rope_theta, rope_local_base_freq, rms_norm_eps, the activation, tying, bos and the 5:1
    // pattern all come from the defaults. eos comes from the top level.
    let cfg = r#"{"architectures":["Gemma3ForConditionalGeneration"],"model_type":"gemma3",
        "eos_token_id":[1,5],"mm_tokens_per_image":4,"torch_dtype":"bfloat16",
        "text_config":{"model_type":"gemma3_text","vocab_size":320,"hidden_size":32,
          "num_hidden_layers":6,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
          "intermediate_size":64,"max_position_embeddings":256,"query_pre_attn_scalar":24,
          "sliding_window":3,"rope_scaling":{"rope_type":"linear","factor":8.0}},
        "vision_config":{"model_type":"siglip_vision_model","hidden_size":16,"patch_size":14}}"#;
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    dir
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn gemma3_conditional_generation_loads_its_text_model_in_both_layouts() {
    let text_only = Transformer::load(&fixture(), &LoadOptions::default()).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
            .unwrap();
    let reference =
        candle_core::safetensors::load(fixture().join("reference.safetensors"), &Device::Cpu)
            .unwrap();
    for (text, image) in [
        ("language_model.model.", ""),
        ("model.language_model.", "model."),
    ] {
        let dir = multimodal(text, image);
        let model = Transformer::load(dir.path(), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(model.cfg, text_only.cfg, "{text}: resolved config differs");
        for (i, p) in meta["prompts"].as_array().unwrap().iter().enumerate() {
            let ids: Vec<u32> = p["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let logits = model.logits(&ids).unwrap();
            let d = max_abs_diff(&logits, &reference[&format!("seq{i}.logits")]);
            assert!(d <= 1e-4, "{text} seq{i}: |adag - transformers| = {d:e}");
            assert_eq!(
                max_abs_diff(&logits, &text_only.logits(&ids).unwrap()),
                0.0,
                "{text}: differs from the text-only checkpoint"
            );
        }
    }
}

#[test]
fn multimodal_checkpoints_still_refuse_unknown_text_tensors_and_a_missing_text_config() {
    let dir = multimodal("language_model.model.", "");
    let path = dir.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    t.insert(
        "language_model.model.layers.6.mlp.up_proj.weight".into(),
        Tensor::zeros((64, 32), candle_core::DType::BF16, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, &path).unwrap();
    let e = Transformer::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`language_model.model.layers.6.mlp.up_proj.weight`"),
        "{e}"
    );

    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("text_config");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = Transformer::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: field `text_config`: required by Gemma3ForConditionalGeneration but missing",
            cfg_path.display()
        )
    );
}
