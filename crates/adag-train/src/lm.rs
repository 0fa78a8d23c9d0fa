//! The demo language model's architecture and trainable parameters, and its HuggingFace layout.
//!
//! The parameters are candle `Var`s keyed by their HF tensor names; the forward pass is
//! adag-model's own [`Transformer`] built from the `Var`s' tensors with autograd on, so the
//! model that is trained is exactly the model that adag (and `transformers`) later loads.

use std::collections::BTreeMap;
use std::path::Path;

use adag_model::arch::{AttnWeights, BlockWeights, MlpWeights, TransformerWeights};
use adag_model::config::HfConfig;
use adag_model::layers::{Linear, RmsNorm};
use adag_model::{LoadOptions, ModelConfig, Transformer};
use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Context, Error, Result};
use crate::io::write_atomic;
use crate::rng::Rng;

/// Size of a Llama-architecture demo model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LmShape {
    /// Residual width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Attention heads (as many key/value heads: no GQA at this size).
    pub n_heads: usize,
    /// SwiGLU hidden width.
    pub d_mlp: usize,
    /// Vocabulary size (from the trained tokenizer).
    pub d_vocab: usize,
}

impl LmShape {
    /// HF `config.json` for this shape (Llama, RoPE θ = 10000, RMSNorm ε = 1e-5, untied).
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.d_vocab,
            "hidden_size": self.d_model,
            "intermediate_size": self.d_mlp,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_heads,
            "head_dim": self.d_model / self.n_heads,
            "hidden_act": "silu",
            // RoPE has no learnt positions, so this only bounds the context servers accept: long
            // enough for description prompts (`adag serve-llm` on the demo model), though the
            // model was trained on rows of at most 40 tokens.
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "attention_bias": false,
            "mlp_bias": false,
            "tie_word_embeddings": false,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 2,
            "torch_dtype": "float32",
            "initializer_range": 0.02
        })
    }

    /// The resolved config, parsed by adag-model from [`LmShape::config_json`] exactly as a
    /// saved directory would be.
    pub fn model_config(&self) -> Result<ModelConfig> {
        if self.n_heads == 0
            || !self.d_model.is_multiple_of(self.n_heads)
            || !(self.d_model / self.n_heads).is_multiple_of(2)
        {
            return Err(Error::Config(format!(
                "d_model {} must split into {} heads of even width",
                self.d_model, self.n_heads
            )));
        }
        let hf: HfConfig = serde_json::from_value(self.config_json())
            .map_err(|e| Error::Config(format!("demo config.json: {e}")))?;
        ModelConfig::from_hf(&hf, Path::new("config.json")).context("resolving the demo config")
    }
}

/// Trainable parameters, keyed by HF tensor name (sorted, so iteration order is fixed).
pub struct LmParams {
    /// Shape they were built for.
    pub shape: LmShape,
    /// Resolved config.
    pub cfg: ModelConfig,
    /// `model.embed_tokens.weight`, `model.layers.0.self_attn.q_proj.weight`, ...
    pub vars: BTreeMap<String, Var>,
}

fn randn(rng: &mut Rng, shape: &[usize], std: f64, dev: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Tensor::from_vec(v, shape, dev).context("initial weights")
}

impl LmParams {
    /// GPT-2-style init from `seed`: N(0, 0.02²) everywhere, output projections scaled by
    /// 1/sqrt(2·n_layers), norms at 1.
    pub fn init(shape: LmShape, seed: u64, dev: &Device) -> Result<Self> {
        let cfg = shape.model_config()?;
        let mut rng = Rng::derive(seed, "init");
        let (d, f, v) = (shape.d_model, shape.d_mlp, shape.d_vocab);
        let std = 0.02;
        let out_std = std / (2.0 * shape.n_layers as f64).sqrt();
        let mut vars = BTreeMap::new();
        let mut put = |name: String, t: Tensor| -> Result<()> {
            vars.insert(name, Var::from_tensor(&t).context("making a Var")?);
            Ok(())
        };
        put(
            "model.embed_tokens.weight".into(),
            randn(&mut rng, &[v, d], std, dev)?,
        )?;
        for l in 0..shape.n_layers {
            let p = format!("model.layers.{l}");
            for (n, rows, cols, s) in [
                ("self_attn.q_proj", d, d, std),
                ("self_attn.k_proj", d, d, std),
                ("self_attn.v_proj", d, d, std),
                ("self_attn.o_proj", d, d, out_std),
                ("mlp.gate_proj", f, d, std),
                ("mlp.up_proj", f, d, std),
                ("mlp.down_proj", d, f, out_std),
            ] {
                put(
                    format!("{p}.{n}.weight"),
                    randn(&mut rng, &[rows, cols], s, dev)?,
                )?;
            }
            for n in ["input_layernorm", "post_attention_layernorm"] {
                put(
                    format!("{p}.{n}.weight"),
                    Tensor::ones(d, DType::F32, dev).context("norm")?,
                )?;
            }
        }
        put(
            "model.norm.weight".into(),
            Tensor::ones(d, DType::F32, dev).context("norm")?,
        )?;
        put("lm_head.weight".into(), randn(&mut rng, &[v, d], std, dev)?)?;
        Ok(LmParams { shape, cfg, vars })
    }

    fn t(&self, name: &str) -> Result<Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| Error::Config(format!("missing parameter {name}")))
    }

    /// Whether weight decay applies (matrices yes; norm gains no).
    pub fn decays(name: &str) -> bool {
        !name.ends_with("norm.weight")
    }

    /// adag-model's forward pass over the current parameter tensors, differentiable.
    pub fn transformer(&self) -> Result<Transformer> {
        let lin = |name: String| -> Result<Linear> {
            Ok(Linear {
                weight: self.t(&name)?,
                bias: None,
            })
        };
        let norm = |name: String| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: self.t(&name)?,
                eps: self.cfg.norm_eps,
                offset: false,
            })
        };
        let mut blocks = Vec::new();
        for l in 0..self.shape.n_layers {
            let p = format!("model.layers.{l}");
            blocks.push(BlockWeights {
                ln1: norm(format!("{p}.input_layernorm.weight"))?,
                attn: AttnWeights {
                    q: lin(format!("{p}.self_attn.q_proj.weight"))?,
                    k: lin(format!("{p}.self_attn.k_proj.weight"))?,
                    v: lin(format!("{p}.self_attn.v_proj.weight"))?,
                    o: lin(format!("{p}.self_attn.o_proj.weight"))?,
                    q_norm: None,
                    k_norm: None,
                },
                ln1_post: None,
                ln2: norm(format!("{p}.post_attention_layernorm.weight"))?,
                mlp: MlpWeights {
                    gate: lin(format!("{p}.mlp.gate_proj.weight"))?,
                    up: lin(format!("{p}.mlp.up_proj.weight"))?,
                    down: lin(format!("{p}.mlp.down_proj.weight"))?,
                },
                ln2_post: None,
            });
        }
        let weights = TransformerWeights {
            embed: self.t("model.embed_tokens.weight")?,
            blocks,
            ln_final: norm("model.norm.weight".into())?,
            unembed: self.t("lm_head.weight")?,
        };
        let opts = LoadOptions {
            dtype: DType::F32,
            device: self
                .vars
                .values()
                .next()
                .map_or(Device::Cpu, |v| v.device().clone()),
        };
        Ok(Transformer::from_weights(self.cfg.clone(), weights, &opts).with_autograd(true))
    }

    /// Total number of parameters.
    pub fn n_params(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Writes `config.json` and `model.safetensors` (f32) into `dir`, atomically.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        save_safetensors(&dir.join("model.safetensors"), &tensors)?;
        let cfg = serde_json::to_string_pretty(&self.shape.config_json())
            .map_err(|e| Error::Config(e.to_string()))?;
        write_atomic(&dir.join("config.json"), cfg.as_bytes())
    }
}

/// Serialises f32 tensors to a safetensors file, atomically.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (name, t) in tensors {
        let v = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .context(name)?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        data.push((name.clone(), bytes, t.dims().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Config(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
