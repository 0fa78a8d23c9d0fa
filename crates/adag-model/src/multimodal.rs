//! The text model inside a multimodal checkpoint (`Gemma3ForConditionalGeneration`).
//!
//! Gemma-3 4B–27B ship as image+text models: config.json nests the language model's settings
//! under `text_config`, and the weights keep the language model under a prefix next to a vision
//! tower adag never runs. Attribution only needs the text model, so the config is unwrapped into
//! a plain `Gemma3ForCausalLM` one and the tensors are renamed on lookup ([`text_prefix`]).

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::config::HfConfig;
use crate::error::{Error, Result};

/// The multimodal class whose text model adag loads.
pub const GEMMA3_MULTIMODAL: &str = "Gemma3ForConditionalGeneration";

/// Where a multimodal checkpoint stores what a text-only one calls `model.`: the Hub's files
/// (written by transformers 4.x) use `language_model.model.`, transformers 5 writes
/// `model.language_model.`.
pub const TEXT_PREFIXES: [&str; 2] = ["language_model.model.", "model.language_model."];

/// Tensors of the image side, present in a multimodal checkpoint and not needed for text.
pub const IMAGE_PREFIXES: [&str; 4] = [
    "vision_tower.",
    "multi_modal_projector.",
    "model.vision_tower.",
    "model.multi_modal_projector.",
];

/// `Gemma3TextConfig`'s defaults (transformers): the Hub's multimodal configs give only what
/// differs from them (gemma-3-4b's `text_config` names six fields), so they must be filled in
/// exactly as transformers does or the model would be a different one.
fn gemma3_text_defaults() -> Value {
    json!({
        "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "pad_token_id": 0,
        "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": true,
        "rope_theta": 1_000_000.0, "attention_bias": false, "query_pre_attn_scalar": 256,
        "sliding_window": 4096, "final_logit_softcapping": null, "attn_logit_softcapping": null,
        "rope_scaling": null, "rope_local_base_freq": 10000.0, "sliding_window_pattern": 6
    })
}

/// For a `Gemma3ForConditionalGeneration` config, the equivalent `Gemma3ForCausalLM` config of
/// its text model (`text_config` over transformers' defaults; token ids from the top level when
/// `text_config` has none); `None` for any other architecture.
pub fn text_config(hf: &HfConfig, path: &Path) -> Result<Option<HfConfig>> {
    let arch = hf.architectures.as_ref().and_then(|a| a.first());
    if arch.map(String::as_str) != Some(GEMMA3_MULTIMODAL) {
        return Ok(None);
    }
    let bad = |reason: String| Error::BadConfig {
        path: path.to_path_buf(),
        field: "text_config".into(),
        reason,
    };
    let text = match &hf.text_config {
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad(format!("must be an object, found {other}"))),
        None => return Err(bad(format!("required by {GEMMA3_MULTIMODAL} but missing"))),
    };
    let mut merged: Map<String, Value> = match gemma3_text_defaults() {
        Value::Object(m) => m,
        _ => unreachable!("the defaults are an object literal"),
    };
    for (key, v) in [
        ("bos_token_id", &hf.bos_token_id),
        ("eos_token_id", &hf.eos_token_id),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_null()) {
            merged.insert(key.into(), v.clone());
        }
    }
    merged.extend(text.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.insert("architectures".into(), json!(["Gemma3ForCausalLM"]));
    serde_json::from_value(Value::Object(merged))
        .map(Some)
        .map_err(|e| bad(format!("not a valid Gemma-3 text config: {e}")))
}

#[cfg(test)]
mod tests {
    use crate::config::{ModelConfig, RopeConfig, RopeScaling};

    use super::*;

    /// google/gemma-3-4b-it's config.json (vision side shortened). The expected values are what
    /// transformers 4.57 resolves: `Gemma3Config(text_config=...).text_config`.
    const GEMMA3_4B: &str = r#"{"architectures":["Gemma3ForConditionalGeneration"],
        "boi_token_index":255999,"eoi_token_index":256000,"eos_token_id":[1,106],
        "image_token_index":262144,"initializer_range":0.02,"mm_tokens_per_image":256,
        "model_type":"gemma3","text_config":{"hidden_size":2560,"intermediate_size":10240,
        "model_type":"gemma3_text","num_hidden_layers":34,
        "rope_scaling":{"factor":8.0,"rope_type":"linear"},"sliding_window":1024},
        "torch_dtype":"bfloat16","vision_config":{"hidden_size":1152,"image_size":896}}"#;

    #[test]
    fn gemma3_4b_text_config_gets_transformers_defaults() {
        let hf: HfConfig = serde_json::from_str(GEMMA3_4B).unwrap();
        let c = ModelConfig::from_hf(&hf, Path::new("config.json")).unwrap();
        assert_eq!(c.architecture, crate::config::Architecture::Gemma3);
        assert_eq!(
            (
                c.d_model,
                c.n_layers,
                c.n_heads,
                c.n_kv_heads,
                c.d_head,
                c.d_mlp
            ),
            (2560, 34, 8, 4, 256, 10240)
        );
        assert_eq!((c.d_vocab, c.n_ctx), (262208, Some(131072)));
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(2), Some(1)));
        assert!((c.attn_scale - 1.0 / 16.0).abs() < 1e-12 && c.norm_eps == 1e-6);
        assert!(c.tie_embeddings && c.qk_norm && c.final_softcap.is_none());
        assert_eq!(
            (c.rope.theta, c.rope.scaling),
            (1e6, RopeScaling::Linear { factor: 8.0 })
        );
        assert_eq!(
            c.rope_local,
            Some(RopeConfig {
                theta: 1e4,
                scaling: RopeScaling::None
            })
        );
        let globals: Vec<usize> = (0..34).filter(|&l| c.sliding_window[l].is_none()).collect();
        assert_eq!(globals, vec![5, 11, 17, 23, 29]);
        assert!(c.sliding_window.iter().flatten().all(|&w| w == 1024));
    }

    #[test]
    fn a_text_config_that_is_not_an_object_is_named() {
        let hf: HfConfig = serde_json::from_str(
            r#"{"architectures":["Gemma3ForConditionalGeneration"],"text_config":3}"#,
        )
        .unwrap();
        let e = ModelConfig::from_hf(&hf, Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config.json: field `text_config`: must be an object, found 3"
        );
    }
}
