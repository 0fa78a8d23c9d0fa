//! Per-architecture adapters: HuggingFace tensor names → adag's canonical block.
//!
//! All four families share one block skeleton (`ln1 → attn → [ln1_post] → + → ln2 → mlp →
//! [ln2_post] → +`); what differs is only which tensors exist and what they are called. Gemma-2
//! is the trap: its `post_attention_layernorm` is the norm *on the attention output* (our
//! `ln1_post`), while in Llama/Qwen the same name is the MLP's input norm (our `ln2`).

use candle_core::{DType, Device};

use crate::config::{Architecture, ModelConfig};
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::weights::WeightFiles;

/// Attention weights of one block.
#[derive(Debug, Clone)]
pub struct AttnWeights {
    /// `[n_heads·d_head, d_model]`
    pub q: Linear,
    /// `[n_kv_heads·d_head, d_model]`
    pub k: Linear,
    /// `[n_kv_heads·d_head, d_model]`
    pub v: Linear,
    /// `[d_model, n_heads·d_head]`
    pub o: Linear,
    /// Qwen3/Gemma-3 per-head query norm, `[d_head]`.
    pub q_norm: Option<RmsNorm>,
    /// Qwen3/Gemma-3 per-head key norm, `[d_head]`.
    pub k_norm: Option<RmsNorm>,
}

/// Gated MLP weights of one block.
#[derive(Debug, Clone)]
pub struct MlpWeights {
    /// `[d_mlp, d_model]`
    pub gate: Linear,
    /// `[d_mlp, d_model]`
    pub up: Linear,
    /// `[d_model, d_mlp]`
    pub down: Linear,
}

/// One transformer block in canonical form.
#[derive(Debug, Clone)]
pub struct BlockWeights {
    /// Norm before attention.
    pub ln1: RmsNorm,
    /// Attention.
    pub attn: AttnWeights,
    /// Gemma-2: norm on the attention output.
    pub ln1_post: Option<RmsNorm>,
    /// Norm before the MLP.
    pub ln2: RmsNorm,
    /// Gated MLP.
    pub mlp: MlpWeights,
    /// Gemma-2: norm on the MLP output.
    pub ln2_post: Option<RmsNorm>,
}

/// All weights in canonical form.
#[derive(Debug, Clone)]
pub struct TransformerWeights {
    /// `W_E` `[d_vocab, d_model]` (raw: Gemma's sqrt(d_model) is applied in the forward pass).
    pub embed: candle_core::Tensor,
    /// Blocks in order.
    pub blocks: Vec<BlockWeights>,
    /// Final norm.
    pub ln_final: RmsNorm,
    /// `W_U` `[d_vocab, d_model]` (the same tensor as `embed` when tied).
    pub unembed: candle_core::Tensor,
}

/// Loads every tensor `cfg` calls for from `files`, checking each shape against the config.
pub fn load(
    cfg: &ModelConfig,
    files: &WeightFiles,
    dtype: DType,
    device: &Device,
) -> Result<TransformerWeights> {
    let get = |name: &str, shape: &[usize]| files.load(name, shape, dtype, device);
    let (d, dh, f) = (cfg.d_model, cfg.d_head, cfg.d_mlp);
    let (hq, hkv) = (cfg.n_heads * dh, cfg.n_kv_heads * dh);
    let norm = |name: &str, width: usize| -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: get(name, &[width])?,
            eps: cfg.norm_eps,
            offset: cfg.norm_offset,
        })
    };
    let linear = |prefix: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
        Ok(Linear {
            weight: get(&format!("{prefix}.weight"), &[out, inp])?,
            bias: if bias {
                Some(get(&format!("{prefix}.bias"), &[out])?)
            } else {
                None
            },
        })
    };
    let gemma = matches!(
        cfg.architecture,
        Architecture::Gemma2 | Architecture::Gemma3
    );

    let block = |l: usize| -> Result<BlockWeights> {
        let p = format!("model.layers.{l}");
        let attn = AttnWeights {
            q: linear(&format!("{p}.self_attn.q_proj"), hq, d, cfg.qkv_bias)?,
            k: linear(&format!("{p}.self_attn.k_proj"), hkv, d, cfg.qkv_bias)?,
            v: linear(&format!("{p}.self_attn.v_proj"), hkv, d, cfg.qkv_bias)?,
            o: linear(&format!("{p}.self_attn.o_proj"), d, hq, cfg.o_bias)?,
            q_norm: cfg
                .qk_norm
                .then(|| norm(&format!("{p}.self_attn.q_norm.weight"), dh))
                .transpose()?,
            k_norm: cfg
                .qk_norm
                .then(|| norm(&format!("{p}.self_attn.k_norm.weight"), dh))
                .transpose()?,
        };
        let mlp = MlpWeights {
            gate: linear(&format!("{p}.mlp.gate_proj"), f, d, cfg.mlp_bias)?,
            up: linear(&format!("{p}.mlp.up_proj"), f, d, cfg.mlp_bias)?,
            down: linear(&format!("{p}.mlp.down_proj"), d, f, cfg.mlp_bias)?,
        };
        let (ln1_post, ln2, ln2_post) = if gemma {
            (
                Some(norm(&format!("{p}.post_attention_layernorm.weight"), d)?),
                norm(&format!("{p}.pre_feedforward_layernorm.weight"), d)?,
                Some(norm(&format!("{p}.post_feedforward_layernorm.weight"), d)?),
            )
        } else {
            (
                None,
                norm(&format!("{p}.post_attention_layernorm.weight"), d)?,
                None,
            )
        };
        Ok(BlockWeights {
            ln1: norm(&format!("{p}.input_layernorm.weight"), d)?,
            attn,
            ln1_post,
            ln2,
            mlp,
            ln2_post,
        })
    };
    // Layers load on candle's CPU threads at once (see `adag_core::map_in_order`).
    let blocks =
        adag_core::map_in_order(cfg.n_layers, candle_core::utils::get_num_threads(), &block)?;
    let embed = get("model.embed_tokens.weight", &[cfg.d_vocab, d])?;
    // Tied checkpoints usually omit lm_head.weight; some store a copy anyway, which we ignore.
    let unembed = if cfg.tie_embeddings {
        embed.clone()
    } else {
        get("lm_head.weight", &[cfg.d_vocab, d])?
    };
    let ln_final = norm("model.norm.weight", d)?;
    files.check_all_used()?;
    Ok(TransformerWeights {
        embed,
        blocks,
        ln_final,
        unembed,
    })
}
