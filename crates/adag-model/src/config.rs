//! `config.json` as HuggingFace writes it ([`HfConfig`]), and the resolved, architecture-free
//! description the forward pass runs on ([`ModelConfig`]).
//!
//! The two are kept apart (as candle's llama.rs does) because Hub configs drift: rope settings
//! moved from `rope_theta`/`rope_scaling` to `rope_parameters` in transformers 5, Gemma-2 names
//! its activation `hidden_activation`, Qwen signals sliding windows three different ways. All of
//! that is settled once, here, with an error naming the field when something does not fit.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The architectures adag implements, by their `architectures[0]` string in config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// `LlamaForCausalLM` (Llama 2/3, 3.1, 3.2 with `llama3` rope scaling).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5): q/k/v biases.
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head q/k RMSNorm, explicit `head_dim`.
    Qwen3,
    /// `Gemma2ForCausalLM`: four norms per block, soft-capping, sliding windows.
    Gemma2,
    /// `Gemma3ForCausalLM` (text model): Gemma-2's four norms plus per-head q/k norms, 5:1
    /// local/global layers with their own rope bases, no soft-caps by default.
    Gemma3,
}

impl Architecture {
    /// Every supported architecture.
    pub const ALL: [Architecture; 5] = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma2,
        Architecture::Gemma3,
    ];

    /// The class name transformers uses.
    pub fn hf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
            Architecture::Gemma2 => "Gemma2ForCausalLM",
            Architecture::Gemma3 => "Gemma3ForCausalLM",
        }
    }

    fn from_hf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.hf_name() == name)
    }
}

/// The MLP's gate nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// SiLU (`silu`, `swish`): Llama, Qwen.
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`): Gemma-2.
    GeluTanh,
    /// Exact GELU (`gelu`).
    GeluErf,
}

impl Activation {
    /// Applies the nonlinearity elementwise.
    pub fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::Silu => x.silu(),
            Activation::GeluTanh => x.gelu(),
            Activation::GeluErf => x.gelu_erf(),
        }
    }
}

/// How rotary frequencies are rescaled for long context.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// `linear`: positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's piecewise rescaling of frequencies by wavelength.
    Llama3 {
        /// Divisor for long wavelengths.
        factor: f64,
        /// Wavelengths above `original_max / low_freq_factor` are divided by `factor`.
        low_freq_factor: f64,
        /// Wavelengths below `original_max / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
}

/// Rotary position embedding settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    /// Base of the frequency ladder.
    pub theta: f64,
    /// Frequency rescaling.
    pub scaling: RopeScaling,
}

/// Everything the forward pass needs, with names from TransformerLens (`d_model`, `n_heads`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which family's adapter loaded the weights.
    pub architecture: Architecture,
    /// Residual stream width.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub d_head: usize,
    /// MLP hidden width (number of neurons per layer).
    pub d_mlp: usize,
    /// Vocabulary size of the embedding and unembedding.
    pub d_vocab: usize,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Gemma's RMSNorm multiplies by `(1 + w)` instead of `w`.
    pub norm_offset: bool,
    /// Embeddings multiplied by this (Gemma: sqrt(d_model)).
    pub embed_scale: Option<f64>,
    /// Rotary embedding settings (of every layer, or of the full-attention layers when
    /// `rope_local` is set).
    pub rope: RopeConfig,
    /// Gemma-3: the rope of sliding-window layers (`rope_local_base_freq`, never rescaled).
    #[serde(default)]
    pub rope_local: Option<RopeConfig>,
    /// Multiplier of q·k (1/sqrt(d_head), or Gemma-2's `query_pre_attn_scalar^-1/2`).
    pub attn_scale: f64,
    /// Gemma-2: scores → cap·tanh(scores/cap) before masking.
    pub attn_softcap: Option<f64>,
    /// Gemma-2: logits → cap·tanh(logits/cap).
    pub final_softcap: Option<f64>,
    /// Per layer, the sliding-window length, or `None` for full causal attention.
    pub sliding_window: Vec<Option<usize>>,
    /// MLP gate nonlinearity.
    pub activation: Activation,
    /// q/k/v projections carry biases (Qwen2; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// The output projection carries a bias (Llama with `attention_bias`).
    pub o_bias: bool,
    /// gate/up/down carry biases (Llama with `mlp_bias`).
    pub mlp_bias: bool,
    /// Qwen3's per-head RMSNorm on queries and keys.
    pub qk_norm: bool,
    /// Gemma-2's norms after attention and after the MLP.
    pub post_norms: bool,
    /// The unembedding is the embedding matrix.
    pub tie_embeddings: bool,
    /// `bos_token_id` from config.json, if any.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` from config.json (the first, when a list).
    pub eos_token_id: Option<u32>,
    /// The context length (`max_position_embeddings`), when config.json gives it. Prompts longer
    /// than this are refused ([`ModelConfig::check_prompt_len`]) before anything is allocated.
    #[serde(default)]
    pub n_ctx: Option<usize>,
}

/// config.json as written by transformers. Every field is optional here; [`ModelConfig::from_hf`]
/// says which ones the architecture requires.
#[derive(Debug, Clone, Default, Deserialize)]
#[allow(missing_docs)]
pub struct HfConfig {
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub vocab_size: Option<usize>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub max_position_embeddings: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub hidden_act: Option<String>,
    pub hidden_activation: Option<String>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<Value>,
    pub rope_parameters: Option<Value>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub tie_word_embeddings: Option<bool>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub query_pre_attn_scalar: Option<f64>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    pub max_window_layers: Option<usize>,
    pub layer_types: Option<Vec<String>>,
    pub sliding_window_pattern: Option<usize>,
    pub rope_local_base_freq: Option<f64>,
    pub bos_token_id: Option<Value>,
    pub eos_token_id: Option<Value>,
    /// `Gemma3ForConditionalGeneration`: the language model's settings (see `multimodal`).
    pub text_config: Option<Value>,
}

impl HfConfig {
    /// Reads and parses `path` (a config.json).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: path.to_path_buf(),
                what: "every HuggingFace model directory has a config.json".into(),
            },
            _ => Error::BadFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("not a valid config.json: {e}"),
        })
    }
}

/// The largest size field (`num_hidden_layers`, `hidden_size`, ...) adag accepts. Real models
/// stay far below it (2^31 would already be a 2^31-wide vocabulary); an absurd declaration is
/// refused naming its field before a `Vec` of that length is asked for (which would abort or
/// panic with "capacity overflow"). The checkpoint itself then checks every shape.
const MAX_SIZE: usize = 1 << 31;

/// Resolves HF configs, remembering which file they came from for error messages.
struct Resolver<'a> {
    path: &'a Path,
}

impl Resolver<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> Error {
        Error::BadConfig {
            path: self.path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn req<T: Copy>(&self, v: Option<T>, field: &str) -> Result<T> {
        v.ok_or_else(|| self.err(field, "required by this architecture but missing"))
    }

    fn positive(&self, v: Option<usize>, field: &str) -> Result<usize> {
        match self.req(v, field)? {
            0 => Err(self.err(field, "must be positive, found 0")),
            n if n > MAX_SIZE => Err(self.err(
                field,
                format!("{n} is beyond any real model (at most {MAX_SIZE})"),
            )),
            n => Ok(n),
        }
    }

    /// Gemma-3's two ropes `(global, local)`. Hub configs carry `rope_theta` + `rope_scaling`
    /// (global) and `rope_local_base_freq` (local, plain); transformers 5 writes
    /// `rope_parameters: {full_attention: {...}, sliding_attention: {...}}`.
    fn gemma3_ropes(&self, hf: &HfConfig) -> Result<(RopeConfig, RopeConfig)> {
        let per_type = hf
            .rope_parameters
            .as_ref()
            .filter(|p| p.get("full_attention").is_some());
        if let Some(p) = per_type {
            let one = |key: &str| -> Result<RopeConfig> {
                let inner = p.get(key).cloned().ok_or_else(|| {
                    self.err(&format!("rope_parameters.{key}"), "missing for Gemma-3")
                })?;
                let sub = HfConfig {
                    rope_parameters: Some(inner),
                    ..HfConfig::default()
                };
                self.rope_from(&sub, &format!("rope_parameters.{key}"))
            };
            return Ok((one("full_attention")?, one("sliding_attention")?));
        }
        let global = self.rope(hf)?;
        let theta = hf.rope_local_base_freq.unwrap_or(10000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(self.err(
                "rope_local_base_freq",
                format!("must be a positive number, found {theta}"),
            ));
        }
        Ok((
            global,
            RopeConfig {
                theta,
                scaling: RopeScaling::None,
            },
        ))
    }

    fn rope(&self, hf: &HfConfig) -> Result<RopeConfig> {
        self.rope_from(hf, "rope_parameters")
    }

    fn rope_from(&self, hf: &HfConfig, params_field: &str) -> Result<RopeConfig> {
        // transformers 5 writes `rope_parameters` (with `rope_theta` inside); Hub checkpoints
        // carry `rope_theta` plus `rope_scaling`.
        let (params, field) = match (&hf.rope_parameters, &hf.rope_scaling) {
            (Some(p), _) if !p.is_null() => (Some(p), params_field),
            (_, Some(s)) if !s.is_null() => (Some(s), "rope_scaling"),
            _ => (None, "rope_scaling"),
        };
        let theta_inner = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64);
        let theta = hf.rope_theta.or(theta_inner).unwrap_or(10000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(self.err(
                "rope_theta",
                format!("must be a positive number, found {theta}"),
            ));
        }
        let Some(p) = params else {
            return Ok(RopeConfig {
                theta,
                scaling: RopeScaling::None,
            });
        };
        if !p.is_object() {
            // A string such as "llama3" would otherwise silently become plain RoPE.
            return Err(self.err(
                field,
                format!("must be an object with `rope_type` and its parameters, found {p}"),
            ));
        }
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |key: &str| -> Result<f64> {
            let v = p.get(key).and_then(Value::as_f64).ok_or_else(|| {
                self.err(
                    &format!("{field}.{key}"),
                    format!("required for rope_type `{kind}`"),
                )
            })?;
            // Every rope parameter divides a frequency or a position: zero or negative gives
            // inf/NaN rotations.
            if !(v.is_finite() && v > 0.0) {
                return Err(self.err(
                    &format!("{field}.{key}"),
                    format!("must be a positive number, found {v}"),
                ));
            }
            Ok(v)
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: num("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            },
            other => {
                return Err(self.err(
                    &format!("{field}.rope_type"),
                    format!("`{other}` is not supported (supported: default, linear, llama3)"),
                ))
            }
        };
        Ok(RopeConfig { theta, scaling })
    }

    fn activation(&self, hf: &HfConfig, arch: Architecture) -> Result<Activation> {
        // Gemma-2's modelling code reads `hidden_activation`; the others `hidden_act`.
        let (field, name) = match (arch, &hf.hidden_activation, &hf.hidden_act) {
            (Architecture::Gemma2 | Architecture::Gemma3, Some(a), _) => {
                ("hidden_activation", a.as_str())
            }
            (_, _, Some(a)) => ("hidden_act", a.as_str()),
            (Architecture::Gemma2 | Architecture::Gemma3, None, None) => {
                ("hidden_activation", "gelu_pytorch_tanh")
            }
            _ => ("hidden_act", "silu"),
        };
        match name {
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::GeluErf),
            other => Err(self.err(
                field,
                format!("activation `{other}` not supported (silu, gelu_pytorch_tanh, gelu)"),
            )),
        }
    }

    fn sliding(
        &self,
        hf: &HfConfig,
        arch: Architecture,
        n_layers: usize,
    ) -> Result<Vec<Option<usize>>> {
        let window = || self.positive(hf.sliding_window, "sliding_window");
        if let Some(types) = &hf.layer_types {
            if types.len() != n_layers {
                return Err(self.err(
                    "layer_types",
                    format!(
                        "has {} entries but num_hidden_layers is {n_layers}",
                        types.len()
                    ),
                ));
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(None),
                    "sliding_attention" => window().map(Some),
                    other => Err(self.err("layer_types", format!("unknown layer type `{other}`"))),
                })
                .collect();
        }
        match arch {
            // Gemma-2 alternates, starting with a sliding layer.
            Architecture::Gemma2 => {
                let w = window()?;
                Ok((0..n_layers).map(|l| (l % 2 == 0).then_some(w)).collect())
            }
            // Gemma-3 (configs without `layer_types`): every `sliding_window_pattern`-th layer
            // is global, the rest slide (transformers: `(i + 1) % pattern != 0`).
            Architecture::Gemma3 => {
                let w = window()?;
                let pattern = match hf.sliding_window_pattern {
                    Some(_) => {
                        self.positive(hf.sliding_window_pattern, "sliding_window_pattern")?
                    }
                    None => 6,
                };
                Ok((0..n_layers)
                    .map(|l| (!(l + 1).is_multiple_of(pattern)).then_some(w))
                    .collect())
            }
            Architecture::Qwen2 | Architecture::Qwen3 if hf.use_sliding_window == Some(true) => {
                let w = window()?;
                let from = hf.max_window_layers.unwrap_or(0);
                Ok((0..n_layers).map(|l| (l >= from).then_some(w)).collect())
            }
            _ => Ok(vec![None; n_layers]),
        }
    }
}

fn token_id(v: &Option<Value>) -> Option<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::Array(a)) => a
            .first()
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

impl ModelConfig {
    /// Refuses a prompt of `len` tokens when it exceeds the context (`n_ctx`), before the
    /// forward pass allocates `len`-sized activations (a 10k-token prompt on a 2k-context model
    /// otherwise grows without bound and runs past the positions the model was trained on).
    pub fn check_prompt_len(&self, len: usize) -> Result<()> {
        self.check_len(len, "the prompt")
    }

    /// [`ModelConfig::check_prompt_len`], naming the input (a dataset item, a generation).
    pub fn check_len(&self, len: usize, what: &str) -> Result<()> {
        match self.n_ctx {
            Some(limit) if len > limit => Err(Error::PromptTooLong {
                what: what.into(),
                len,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Reads `dir/config.json` and resolves it.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        Self::from_hf(&HfConfig::from_file(&path)?, &path)
    }

    /// Resolves a parsed config; `path` only names the file in errors.
    pub fn from_hf(hf: &HfConfig, path: &Path) -> Result<Self> {
        if let Some(text) = crate::multimodal::text_config(hf, path)? {
            return Self::from_hf(&text, path);
        }
        let r = Resolver { path };
        let supported = || Architecture::ALL.map(Architecture::hf_name).join(", ");
        let arch_name = hf
            .architectures
            .as_ref()
            .and_then(|a| a.first())
            .ok_or_else(|| {
                r.err(
                    "architectures",
                    format!("missing; supported: {}", supported()),
                )
            })?;
        let architecture = Architecture::from_hf_name(arch_name).ok_or_else(|| {
            Error::UnsupportedArchitecture {
                path: PathBuf::from(path),
                arch: arch_name.clone(),
                supported: supported(),
            }
        })?;
        let d_model = r.positive(hf.hidden_size, "hidden_size")?;
        let n_layers = r.positive(hf.num_hidden_layers, "num_hidden_layers")?;
        let n_heads = r.positive(hf.num_attention_heads, "num_attention_heads")?;
        let n_kv_heads = match hf.num_key_value_heads {
            Some(_) => r.positive(hf.num_key_value_heads, "num_key_value_heads")?,
            None => n_heads,
        };
        if !n_heads.is_multiple_of(n_kv_heads) {
            return Err(r.err(
                "num_key_value_heads",
                format!("{n_kv_heads} does not divide num_attention_heads = {n_heads}"),
            ));
        }
        let d_head = match hf.head_dim {
            Some(_) => r.positive(hf.head_dim, "head_dim")?,
            None if d_model % n_heads == 0 => d_model / n_heads,
            None => {
                return Err(r.err(
                    "head_dim",
                    format!("missing, and hidden_size {d_model} is not divisible by num_attention_heads {n_heads}"),
                ))
            }
        };
        if d_head % 2 != 0 {
            return Err(r.err(
                "head_dim",
                format!("rotary embeddings need an even head_dim, found {d_head}"),
            ));
        }
        let norm_eps = hf.rms_norm_eps.unwrap_or(1e-6);
        if !(norm_eps.is_finite() && norm_eps >= 0.0) {
            return Err(r.err(
                "rms_norm_eps",
                format!("must be a non-negative number, found {norm_eps}"),
            ));
        }
        let n_ctx = match hf.max_position_embeddings {
            Some(_) => Some(r.positive(hf.max_position_embeddings, "max_position_embeddings")?),
            None => None,
        };
        let gemma3 = architecture == Architecture::Gemma3;
        let gemma = architecture == Architecture::Gemma2 || gemma3;
        let attn_scale = match (gemma, hf.query_pre_attn_scalar) {
            (true, Some(s)) if s > 0.0 => s.powf(-0.5),
            (true, Some(s)) => {
                return Err(r.err(
                    "query_pre_attn_scalar",
                    format!("must be positive, found {s}"),
                ))
            }
            _ => (d_head as f64).powf(-0.5),
        };
        let attention_bias = hf.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            Architecture::Llama => (attention_bias, attention_bias),
            Architecture::Qwen3 | Architecture::Gemma2 | Architecture::Gemma3 => {
                (attention_bias, false)
            }
        };
        let (rope, rope_local) = if gemma3 {
            let (g, l) = r.gemma3_ropes(hf)?;
            (g, Some(l))
        } else {
            (r.rope(hf)?, None)
        };
        Ok(ModelConfig {
            architecture,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads,
            d_head,
            d_mlp: r.positive(hf.intermediate_size, "intermediate_size")?,
            d_vocab: r.positive(hf.vocab_size, "vocab_size")?,
            norm_eps,
            norm_offset: gemma,
            embed_scale: gemma.then(|| (d_model as f64).sqrt()),
            rope,
            rope_local,
            attn_scale,
            attn_softcap: if gemma {
                hf.attn_logit_softcapping
            } else {
                None
            },
            final_softcap: if gemma {
                hf.final_logit_softcapping
            } else {
                None
            },
            sliding_window: r.sliding(hf, architecture, n_layers)?,
            activation: r.activation(hf, architecture)?,
            qkv_bias,
            o_bias,
            mlp_bias: architecture == Architecture::Llama && hf.mlp_bias.unwrap_or(false),
            qk_norm: architecture == Architecture::Qwen3 || gemma3,
            post_norms: gemma,
            // Gemma ties by default; the others untie unless told.
            tie_embeddings: hf.tie_word_embeddings.unwrap_or(gemma),
            bos_token_id: token_id(&hf.bos_token_id),
            eos_token_id: token_id(&hf.eos_token_id),
            n_ctx,
        })
    }

    /// Number of query heads sharing one key/value head.
    pub fn n_rep(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Parameter count (tied embeddings counted once).
    pub fn n_params(&self) -> usize {
        let (d, h, kv, dh, f) = (
            self.d_model,
            self.n_heads,
            self.n_kv_heads,
            self.d_head,
            self.d_mlp,
        );
        let attn = d * h * dh * 2 + d * kv * dh * 2;
        let mlp = 3 * d * f;
        let norms = d * if self.post_norms { 4 } else { 2 } + if self.qk_norm { 2 * dh } else { 0 };
        let embed = self.d_vocab * d * if self.tie_embeddings { 1 } else { 2 };
        self.n_layers * (attn + mlp + norms) + embed + d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(json: &str) -> Result<ModelConfig> {
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        ModelConfig::from_hf(&hf, Path::new("config.json"))
    }

    const LLAMA: &str = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,"vocab_size":100,
        "rope_theta":500000.0,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
        "original_max_position_embeddings":64,"rope_type":"llama3"},"tie_word_embeddings":true}"#;

    #[test]
    fn llama3_rope_from_legacy_and_v5_layouts() {
        let a = resolve(LLAMA).unwrap();
        let v5 = LLAMA
            .replace(
                r#""rope_theta":500000.0,"rope_scaling""#,
                r#""rope_parameters""#,
            )
            .replace(
                r#""rope_type":"llama3"}"#,
                r#""rope_type":"llama3","rope_theta":500000.0}"#,
            );
        let b = resolve(&v5).unwrap();
        assert_eq!(a.rope, b.rope);
        assert_eq!(a.rope.theta, 500000.0);
        assert!(matches!(a.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(a.d_head, 16);
        assert!(a.tie_embeddings);
    }

    #[test]
    fn unknown_architecture_lists_supported() {
        let e = resolve(&LLAMA.replace("LlamaForCausalLM", "MistralForCausalLM"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MistralForCausalLM")
                && e.contains("Gemma2ForCausalLM")
                && e.contains("Qwen3ForCausalLM"),
            "{e}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = resolve(&LLAMA.replace(r#""hidden_size":64,"#, ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hidden_size`") && e.contains("missing"), "{e}");
        let e = resolve(&LLAMA.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("num_key_value_heads") && e.contains("does not divide"),
            "{e}"
        );
        let e = resolve(&LLAMA.replace("llama3", "yarn"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rope_scaling.rope_type") && e.contains("yarn"),
            "{e}"
        );
    }

    #[test]
    fn gemma2_defaults_alternate_sliding_layers() {
        let c = resolve(
            r#"{"architectures":["Gemma2ForCausalLM"],"hidden_size":64,"num_hidden_layers":4,
            "num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"intermediate_size":128,
            "vocab_size":100,"query_pre_attn_scalar":256,"sliding_window":4096,
            "attn_logit_softcapping":50.0,"final_logit_softcapping":30.0}"#,
        )
        .unwrap();
        assert_eq!(c.sliding_window, vec![Some(4096), None, Some(4096), None]);
        assert!((c.attn_scale - 1.0 / 16.0).abs() < 1e-12);
        assert!(c.tie_embeddings && c.norm_offset && c.post_norms);
        assert_eq!(c.activation, Activation::GeluTanh);
        assert_eq!(c.embed_scale, Some(8.0));
    }

    #[test]
    fn absurd_sizes_are_refused_naming_the_field() {
        for n in ["9223372036854775808", "1000000000000"] {
            let e = resolve(&LLAMA.replace(
                r#""num_hidden_layers":2"#,
                &format!(r#""num_hidden_layers":{n}"#),
            ))
            .unwrap_err()
            .to_string();
            assert_eq!(
                e,
                format!(
                    "config.json: field `num_hidden_layers`: {n} is beyond any real model (at most 2147483648)"
                )
            );
        }
    }

    #[test]
    fn rope_scaling_as_a_string_is_an_error() {
        let json = LLAMA.replace(
            r#"{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
        "original_max_position_embeddings":64,"rope_type":"llama3"}"#,
            r#""llama3""#,
        );
        assert!(json.contains(r#""rope_scaling":"llama3""#), "{json}");
        let e = resolve(&json).unwrap_err().to_string();
        assert!(
            e.contains("field `rope_scaling`") && e.contains(r#"must be an object"#),
            "{e}"
        );
    }

    #[test]
    fn zero_rope_factor_and_negative_eps_are_errors() {
        let e = resolve(&LLAMA.replace(r#""factor":8.0"#, r#""factor":0.0"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config.json: field `rope_scaling.factor`: must be a positive number, found 0"
        );
        let e = resolve(&LLAMA.replace(
            r#""vocab_size":100,"#,
            r#""vocab_size":100,"rms_norm_eps":-1e-5,"#,
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "config.json: field `rms_norm_eps`: must be a non-negative number, found -0.00001"
        );
    }

    #[test]
    fn prompt_length_is_checked_against_max_position_embeddings() {
        let c = resolve(&LLAMA.replace(
            r#""vocab_size":100,"#,
            r#""vocab_size":100,"max_position_embeddings":8,"#,
        ))
        .unwrap();
        assert_eq!(c.n_ctx, Some(8));
        c.check_prompt_len(8).unwrap();
        assert_eq!(
            c.check_prompt_len(9).unwrap_err().to_string(),
            "the prompt has 9 tokens, more than the model's context of 8 tokens (max_position_embeddings in config.json)"
        );
        // Without the field nothing is known, and nothing is refused.
        assert_eq!(resolve(LLAMA).unwrap().n_ctx, None);
    }

    /// Bounded fuzz: seeded random mutations of config.json values (extreme numbers, wrong
    /// types) resolve to a config or an error, never a panic.
    #[test]
    fn mutated_configs_never_panic() {
        let base: Value = serde_json::from_str(LLAMA).unwrap();
        let keys: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
        let extra = [
            "max_position_embeddings",
            "rms_norm_eps",
            "head_dim",
            "sliding_window",
            "layer_types",
            "query_pre_attn_scalar",
            "bos_token_id",
            "rope_parameters",
        ];
        let values = [
            "0",
            "-1",
            "1e308",
            "-1e308",
            "18446744073709551615",
            "9223372036854775808",
            "4294967296",
            "0.5",
            "\"llama3\"",
            "null",
            "[]",
            "{}",
            "[\"sliding_attention\"]",
            "true",
            "{\"rope_type\":\"linear\",\"factor\":-2}",
            "{\"rope_type\":\"llama3\"}",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            // xorshift64*: a fixed seed keeps the test reproducible.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        };
        let mut ok = 0;
        for _ in 0..3000 {
            let mut v = base.clone();
            for _ in 0..1 + next() % 3 {
                let k = (next() as usize) % (keys.len() + extra.len());
                let key = match keys.get(k) {
                    Some(key) => key.as_str(),
                    None => extra[k - keys.len()],
                };
                let val: Value =
                    serde_json::from_str(values[(next() as usize) % values.len()]).unwrap();
                v[key] = val;
            }
            // Type errors surface in the parse; both outcomes are fine, a panic is not.
            if let Ok(hf) = serde_json::from_value::<HfConfig>(v) {
                if ModelConfig::from_hf(&hf, Path::new("config.json")).is_ok() {
                    ok += 1;
                }
            }
        }
        assert!(ok > 0);
    }

    const GEMMA3: &str = r#"{"architectures":["Gemma3ForCausalLM"],"hidden_size":64,
        "num_hidden_layers":7,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,
        "intermediate_size":128,"vocab_size":100,"query_pre_attn_scalar":256,"sliding_window":512,
        "rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "rope_scaling":{"rope_type":"linear","factor":8.0}}"#;

    #[test]
    fn gemma3_five_local_one_global_with_two_ropes() {
        let c = resolve(GEMMA3).unwrap();
        let w = Some(512);
        assert_eq!(c.sliding_window, vec![w, w, w, w, w, None, w]);
        assert_eq!(c.rope.theta, 1e6);
        assert_eq!(c.rope.scaling, RopeScaling::Linear { factor: 8.0 });
        assert_eq!(
            c.rope_local,
            Some(RopeConfig {
                theta: 10000.0,
                scaling: RopeScaling::None
            })
        );
        assert!(c.qk_norm && c.post_norms && c.norm_offset && c.tie_embeddings);
        assert_eq!((c.attn_softcap, c.final_softcap), (None, None));
        assert!((c.attn_scale - 1.0 / 16.0).abs() < 1e-12);
        assert_eq!(c.embed_scale, Some(8.0));
        assert_eq!(c.activation, Activation::GeluTanh);
    }

    #[test]
    fn gemma3_transformers5_rope_parameters_per_layer_type() {
        let v5 = GEMMA3
            .replace(
                r#""rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "rope_scaling":{"rope_type":"linear","factor":8.0}"#,
                r#""rope_parameters":{"full_attention":{"rope_type":"linear","factor":8.0,
                "rope_theta":1000000.0},"sliding_attention":{"rope_type":"default",
                "rope_theta":10000.0}}"#,
            )
            .replace(
                r#""sliding_window":512"#,
                r#""sliding_window":512,"layer_types":["sliding_attention","sliding_attention",
                "sliding_attention","sliding_attention","sliding_attention","full_attention",
                "sliding_attention"]"#,
            );
        assert_ne!(v5, GEMMA3);
        let (a, b) = (resolve(GEMMA3).unwrap(), resolve(&v5).unwrap());
        assert_eq!((a.rope, a.rope_local), (b.rope, b.rope_local));
        assert_eq!(a.sliding_window, b.sliding_window);
        let e = resolve(&v5.replace("sliding_attention\":{", "x\":{"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rope_parameters.sliding_attention"), "{e}");
    }
}
