//! Random Gemma-2 checkpoints written to disk in the Hub's layout, at real sizes: config.json
//! as google/gemma-2-2b ships it and bf16 safetensors shards with an index, so a benchmark
//! measures the same load path (mmap, shard routing, bf16 → compute dtype) a real download
//! would take.
//!
//! Weights are uniform with the variance of `N(0, 1/fan_in)` (norm weights `N(0, 0.1²)`, used as
//! `1 + w`): the distribution only has to keep activations O(1); a cheap generator keeps writing
//! 5 GB well under a minute on two cores.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::Error;

type Result<T> = std::result::Result<T, Error>;

/// Sizes of a Gemma-2 model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemma2Shape {
    /// `hidden_size`.
    pub d_model: usize,
    /// `num_hidden_layers`.
    pub n_layers: usize,
    /// `num_attention_heads`.
    pub n_heads: usize,
    /// `num_key_value_heads`.
    pub n_kv_heads: usize,
    /// `head_dim`.
    pub d_head: usize,
    /// `intermediate_size`.
    pub d_mlp: usize,
    /// `vocab_size`.
    pub d_vocab: usize,
}

impl Gemma2Shape {
    /// google/gemma-2-2b.
    pub const GEMMA_2_2B: Gemma2Shape = Gemma2Shape {
        d_model: 2304,
        n_layers: 26,
        n_heads: 8,
        n_kv_heads: 4,
        d_head: 256,
        d_mlp: 9216,
        d_vocab: 256000,
    };

    /// config.json as google/gemma-2-2b writes it, with these sizes.
    pub fn config_json(&self) -> String {
        format!(
            r#"{{
  "architectures": ["Gemma2ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "attn_logit_softcapping": 50.0,
  "bos_token_id": 2,
  "cache_implementation": "hybrid",
  "eos_token_id": 1,
  "final_logit_softcapping": 30.0,
  "head_dim": {},
  "hidden_act": "gelu_pytorch_tanh",
  "hidden_activation": "gelu_pytorch_tanh",
  "hidden_size": {},
  "initializer_range": 0.02,
  "intermediate_size": {},
  "max_position_embeddings": 8192,
  "model_type": "gemma2",
  "num_attention_heads": {},
  "num_hidden_layers": {},
  "num_key_value_heads": {},
  "pad_token_id": 0,
  "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "vocab_size": {}
}}
"#,
            self.d_head,
            self.d_model,
            self.d_mlp,
            self.n_heads,
            self.n_layers,
            self.n_kv_heads,
            self.d_vocab
        )
    }

    /// Every tensor of the checkpoint, `(name, shape, fan_in)` (`fan_in` 0 marks a norm).
    fn tensors(&self) -> Vec<(String, Vec<usize>, usize)> {
        let (d, f) = (self.d_model, self.d_mlp);
        let (hq, hkv) = (self.n_heads * self.d_head, self.n_kv_heads * self.d_head);
        let mut v = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.d_vocab, d],
            d,
        )];
        for l in 0..self.n_layers {
            let p = format!("model.layers.{l}");
            for (name, shape, fan_in) in [
                ("self_attn.q_proj.weight", vec![hq, d], d),
                ("self_attn.k_proj.weight", vec![hkv, d], d),
                ("self_attn.v_proj.weight", vec![hkv, d], d),
                ("self_attn.o_proj.weight", vec![d, hq], hq),
                ("mlp.gate_proj.weight", vec![f, d], d),
                ("mlp.up_proj.weight", vec![f, d], d),
                ("mlp.down_proj.weight", vec![d, f], f),
                ("input_layernorm.weight", vec![d], 0),
                ("post_attention_layernorm.weight", vec![d], 0),
                ("pre_feedforward_layernorm.weight", vec![d], 0),
                ("post_feedforward_layernorm.weight", vec![d], 0),
            ] {
                v.push((format!("{p}.{name}"), shape, fan_in));
            }
        }
        v.push(("model.norm.weight".to_string(), vec![d], 0));
        v
    }
}

/// xorshift64*: uniform floats in `[-a, a)`, fast enough for billions of weights.
struct Uniform(u64);

impl Uniform {
    fn fill(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let u =
                    (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                (2.0 * u - 1.0) * a
            })
            .collect()
    }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `config.json`, bf16 shards of at most `shard_bytes` each and
/// `model.safetensors.index.json` into `dir`. Returns the bytes of weights written.
pub fn write_gemma2_checkpoint(
    dir: &Path,
    shape: &Gemma2Shape,
    shard_bytes: usize,
    seed: u64,
) -> Result<u64> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let mut rng = Uniform(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Group tensors into shards first, so each shard is built and written alone: peak memory is
    // one shard, not the model.
    let mut shards: Vec<Vec<(String, Vec<usize>, usize)>> = vec![Vec::new()];
    let mut bytes = 0usize;
    for t in shape.tensors() {
        let size = 2 * t.1.iter().product::<usize>();
        if bytes > 0 && bytes + size > shard_bytes {
            shards.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        shards.last_mut().expect("one shard at least").push(t);
    }
    let n = shards.len();
    let mut index = Vec::new();
    let mut total = 0u64;
    for (i, shard) in shards.into_iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        let path = dir.join(&file);
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (name, shape, fan_in) in shard {
            let count: usize = shape.iter().product();
            // Uniform on [-a, a) has variance a²/3.
            let a = if fan_in == 0 {
                0.1 * 3f32.sqrt()
            } else {
                (3.0 / fan_in as f32).sqrt()
            };
            let t = Tensor::from_vec(rng.fill(count, a), shape, &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::BF16))
                .map_err(|e| write_err(&path, e))?;
            total += 2 * count as u64;
            index.push(format!("    \"{name}\": \"{file}\""));
            map.insert(name, t);
        }
        candle_core::safetensors::save(&map, &path).map_err(|e| write_err(&path, e))?;
    }
    let index_json = format!(
        "{{\n  \"metadata\": {{\"total_size\": {total}}},\n  \"weight_map\": {{\n{}\n  }}\n}}\n",
        index.join(",\n")
    );
    let p = dir.join("model.safetensors.index.json");
    std::fs::write(&p, index_json).map_err(|e| write_err(&p, e))?;
    let p = dir.join("config.json");
    std::fs::write(&p, shape.config_json()).map_err(|e| write_err(&p, e))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adag_model::{LoadOptions, Transformer};

    /// A small shape through the same writer loads in adag with every tensor used and the
    /// config resolved as Gemma-2 (so the real-size checkpoint is a valid one, not just bytes).
    #[test]
    fn written_checkpoint_loads_with_every_tensor_used() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Gemma2Shape {
            d_model: 32,
            n_layers: 3,
            n_heads: 4,
            n_kv_heads: 2,
            d_head: 16,
            d_mlp: 64,
            d_vocab: 50,
        };
        let bytes = write_gemma2_checkpoint(dir.path(), &shape, 20_000, 1).unwrap();
        let m = Transformer::load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(m.cfg.architecture, adag_model::Architecture::Gemma2);
        assert_eq!(m.cfg.sliding_window, vec![Some(4096), None, Some(4096)]);
        assert_eq!(bytes as usize, 2 * (m.cfg.n_params()));
        let shards = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".safetensors")
            })
            .count();
        assert!(shards > 1, "expected several shards, got {shards}");
        let logits = m.logits(&[2, 10, 20]).unwrap();
        let max = logits
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max.is_finite() && max > 0.0);
    }

    #[test]
    fn gemma_2_2b_config_resolves_to_its_real_sizes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            Gemma2Shape::GEMMA_2_2B.config_json(),
        )
        .unwrap();
        let c = adag_model::ModelConfig::from_dir(dir.path()).unwrap();
        // 2.61B parameters, as the model card says.
        assert_eq!(c.n_params(), 2_614_341_888);
    }
}
