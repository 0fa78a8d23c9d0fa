//! Random transcoder sets written in circuit-tracer's native formats: for tests and benchmarks.
//!
//! Encoder rows are `N(0, 1/d_model)`, so on unit-RMS inputs a pre-activation is roughly
//! `N(0, 1)`; the bias (ReLU, TopK) or threshold (JumpReLU) is the normal quantile that leaves
//! about `density` of the features active.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::Error;

type Result<T> = std::result::Result<T, Error>;

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for candle_core::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::Candle {
            context: what.into(),
            source,
        })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct RandomSpec {
    /// Cross-layer (true) or per-layer.
    pub cross_layer: bool,
    /// Layers.
    pub n_layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// Features per layer.
    pub d_tc: usize,
    /// `relu`, `jump_relu` or `topk`.
    pub activation: String,
    /// TopK's k.
    pub k: usize,
    /// Write a `W_skip` (per-layer sets only).
    pub skip: bool,
    /// `feature_input_hook`.
    pub input_hook: String,
    /// `feature_output_hook`.
    pub output_hook: String,
    /// Target fraction of active features on unit-RMS inputs.
    pub density: f64,
    /// Seed of the generator.
    pub seed: u64,
}

/// Inverse of the standard normal tail: `z` with `P(N(0,1) > z) ≈ p` (Acklam-free bisection).
fn normal_quantile_upper(p: f64) -> f64 {
    let tail = |z: f64| 0.5 * libm_erfc(z / std::f64::consts::SQRT_2);
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn libm_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn save(tensors: HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(&tensors, path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a random set into `dir` (created if needed), with its `config.yaml`.
pub fn write_random_transcoders(dir: &Path, spec: &RandomSpec) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dev = Device::Cpu;
    // candle's CPU generator cannot be seeded; a seeded ChaCha stream makes sets reproducible.
    let rng = std::cell::RefCell::new(rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed));
    let (d, f, n) = (spec.d_model, spec.d_tc, spec.n_layers);
    let z = normal_quantile_upper(spec.density);
    let randn = |shape: &[usize], std: f64| -> Result<Tensor> {
        let count: usize = shape.iter().product();
        let mut r = rng.borrow_mut();
        let v: Vec<f32> = (0..count)
            .map(|_| r.sample::<f64, _>(rand_distr::StandardNormal) as f32 * std as f32)
            .collect();
        Tensor::from_vec(v, shape, &dev).ctx("random tensor")
    };
    for l in 0..n {
        let w_enc = randn(&[f, d], (1.0 / d as f64).sqrt())?;
        let (b_enc, threshold) = match spec.activation.as_str() {
            "jump_relu" => (
                Tensor::zeros(f, DType::F32, &dev).ctx("b_enc")?,
                Some((Tensor::ones(f, DType::F32, &dev).ctx("threshold")? * z).ctx("threshold")?),
            ),
            _ => (
                (Tensor::ones(f, DType::F32, &dev).ctx("b_enc")? * -z).ctx("b_enc")?,
                None,
            ),
        };
        let b_dec = randn(&[d], 0.05)?;
        let dec_std = 0.5 / (d as f64).sqrt();
        if spec.cross_layer {
            let mut enc: HashMap<String, Tensor> = HashMap::new();
            enc.insert(format!("W_enc_{l}"), w_enc);
            enc.insert(format!("b_enc_{l}"), b_enc);
            enc.insert(format!("b_dec_{l}"), b_dec);
            if let Some(t) = threshold {
                enc.insert(format!("threshold_{l}"), t);
            }
            save(enc, &dir.join(format!("W_enc_{l}.safetensors")))?;
            let dec: HashMap<String, Tensor> =
                [(format!("W_dec_{l}"), randn(&[f, n - l, d], dec_std)?)].into();
            save(dec, &dir.join(format!("W_dec_{l}.safetensors")))?;
        } else {
            let mut t: HashMap<String, Tensor> = HashMap::new();
            t.insert("W_enc".into(), w_enc);
            t.insert("b_enc".into(), b_enc);
            t.insert("W_dec".into(), randn(&[f, d], dec_std)?);
            t.insert("b_dec".into(), b_dec);
            if let Some(th) = threshold {
                t.insert("activation_function.threshold".into(), th);
            }
            if spec.skip {
                t.insert("W_skip".into(), randn(&[d, d], 0.3 / (d as f64).sqrt())?);
            }
            save(t, &dir.join(format!("layer_{l}.safetensors")))?;
        }
    }
    let kind = if spec.cross_layer {
        "cross_layer_transcoder"
    } else {
        "transcoder_set"
    };
    let mut yaml = format!(
        "model_kind: {kind}\nfeature_input_hook: {}\nfeature_output_hook: {}\nactivation: {}\n",
        spec.input_hook, spec.output_hook, spec.activation
    );
    if spec.activation == "topk" {
        yaml.push_str(&format!("k: {}\n", spec.k));
    }
    std::fs::write(dir.join("config.yaml"), yaml).map_err(|e| Error::Write {
        path: dir.join("config.yaml"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantiles() {
        assert!((super::normal_quantile_upper(0.1) - 1.2816).abs() < 1e-3);
        assert!((super::normal_quantile_upper(0.01) - 2.3263).abs() < 1e-3);
        assert!((super::normal_quantile_upper(0.5)).abs() < 1e-6);
    }
}
