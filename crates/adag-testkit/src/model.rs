//! Models with random weights, built in memory: for benchmarks and tests at sizes no fixture
//! file should have.

use candle_core::Tensor;

use adag_model::arch::{AttnWeights, BlockWeights, MlpWeights, TransformerWeights};
use adag_model::config::{Activation, Architecture, ModelConfig, RopeConfig, RopeScaling};
use adag_model::error::{Context, Result};
use adag_model::layers::{Linear, RmsNorm};
use adag_model::transformer::{LoadOptions, Transformer};

/// A Llama-shaped config of the given size (GQA with 4 query heads per key/value head when the
/// head count allows it).
pub fn llama_config(d_model: usize, n_layers: usize, d_mlp: usize, d_vocab: usize) -> ModelConfig {
    let d_head = 64.min(d_model);
    let n_heads = (d_model / d_head).max(1);
    let n_kv_heads = if n_heads.is_multiple_of(4) {
        n_heads / 4
    } else {
        n_heads
    };
    ModelConfig {
        architecture: Architecture::Llama,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads,
        d_head,
        d_mlp,
        d_vocab,
        norm_eps: 1e-5,
        norm_offset: false,
        embed_scale: None,
        rope: RopeConfig {
            theta: 500000.0,
            scaling: RopeScaling::None,
        },
        rope_local: None,
        attn_scale: (d_head as f64).powf(-0.5),
        attn_softcap: None,
        final_softcap: None,
        sliding_window: vec![None; n_layers],
        activation: Activation::Silu,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: false,
        post_norms: false,
        tie_embeddings: false,
        bos_token_id: Some(0),
        eos_token_id: Some(1),
        n_ctx: None,
    }
}

/// Random weights for `cfg`: projections ~ N(0, 1/fan_in), norms ~ 1 + N(0, 0.1²).
pub fn random_transformer(cfg: ModelConfig, opts: &LoadOptions) -> Result<Transformer> {
    let dev = &opts.device;
    let dtype = opts.dtype;
    let mat = |out: usize, inp: usize| -> Result<Tensor> {
        Tensor::randn(0f32, (1.0 / inp as f64).sqrt() as f32, (out, inp), dev)
            .and_then(|t| t.to_dtype(dtype))
            .context("random weight")
    };
    let lin = |out: usize, inp: usize| -> Result<Linear> {
        Ok(Linear {
            weight: mat(out, inp)?,
            bias: None,
        })
    };
    let norm = |d: usize| -> Result<RmsNorm> {
        let w = (Tensor::randn(0f32, 0.1, d, dev).context("random norm")? + 1.0)
            .and_then(|t| t.to_dtype(dtype))
            .context("random norm")?;
        Ok(RmsNorm {
            weight: w,
            eps: cfg.norm_eps,
            offset: cfg.norm_offset,
        })
    };
    let (d, dh) = (cfg.d_model, cfg.d_head);
    let mut blocks = Vec::new();
    for _ in 0..cfg.n_layers {
        blocks.push(BlockWeights {
            ln1: norm(d)?,
            attn: AttnWeights {
                q: lin(cfg.n_heads * dh, d)?,
                k: lin(cfg.n_kv_heads * dh, d)?,
                v: lin(cfg.n_kv_heads * dh, d)?,
                o: lin(d, cfg.n_heads * dh)?,
                q_norm: None,
                k_norm: None,
            },
            ln1_post: None,
            ln2: norm(d)?,
            mlp: MlpWeights {
                gate: lin(cfg.d_mlp, d)?,
                up: lin(cfg.d_mlp, d)?,
                down: lin(d, cfg.d_mlp)?,
            },
            ln2_post: None,
        });
    }
    let embed = Tensor::randn(0f32, 1.0, (cfg.d_vocab, d), dev)
        .and_then(|t| t.to_dtype(dtype))
        .context("random embedding")?;
    let weights = TransformerWeights {
        embed,
        blocks,
        ln_final: norm(d)?,
        unembed: mat(cfg.d_vocab, d)?,
    };
    Ok(Transformer::from_weights(cfg, weights, opts))
}
