//! The building blocks of every supported architecture: linear maps, RMSNorm that reports its
//! denominator, and rotary embeddings.
//!
//! RMSNorm returns its scale because the linearised backward freezes exactly that quantity:
//! `normalized = x / scale · w`, with `scale = sqrt(mean(x²) + eps)` held constant.

use candle_core::{DType, Device, Tensor, D};

use crate::config::{RopeConfig, RopeScaling};
use crate::error::{Context, Result};

/// `y = x Wᵀ + b`, with `W` stored `[out, in]` as in PyTorch.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Applies the map to `x` of shape `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let (&d_in, lead) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("linear input is a scalar".into()))?;
        let rows: usize = lead.iter().product();
        let y = x.reshape((rows, d_in))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = lead.to_vec();
        out.push(self.weight.dim(0)?);
        y.reshape(out)
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[0]
    }
}

/// RMSNorm over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `[d]`
    pub weight: Tensor,
    /// Stabiliser added to the mean square.
    pub eps: f64,
    /// Gemma multiplies by `(1 + w)`.
    pub offset: bool,
}

impl RmsNorm {
    /// Returns `(output, scale)`; `scale` has shape `[..., 1]` and is in f32.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (y, scale, _) = self.forward_parts(x)?;
        Ok((y, scale))
    }

    /// Returns `(output, scale, x / scale)`: the last is TransformerLens's `hook_normalized`
    /// (before the weight), in f32.
    ///
    /// Arithmetic follows transformers: statistics in f32; Llama/Qwen cast back to the input dtype
    /// before the weight multiply, Gemma multiplies by `1 + w` in f32 and casts last.
    pub fn forward_parts(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let scale = self.compute_scale(x)?;
        let (y, normed) = self.normalize(x, &scale)?;
        Ok((y, scale, normed))
    }

    /// `sqrt(mean(x²) + eps)` over the last dimension, in f32, shape `[..., 1]`.
    pub fn compute_scale(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        (x.to_dtype(DType::F32)?.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()
    }

    /// Normalises `x` by a given (possibly frozen) `scale`: returns `(output, x / scale)`.
    pub fn normalize(&self, x: &Tensor, scale: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let dtype = x.dtype();
        let normed = x
            .to_dtype(DType::F32)?
            .broadcast_div(&scale.to_dtype(DType::F32)?)?;
        let y = if self.offset {
            normed
                .broadcast_mul(&self.effective_weight()?)?
                .to_dtype(dtype)?
        } else {
            normed.to_dtype(dtype)?.broadcast_mul(&self.weight)?
        };
        Ok((y, normed))
    }

    /// The per-channel multiplier actually applied after dividing by the scale: `w`, or `1 + w`
    /// for Gemma. This is the diagonal of the frozen norm's linear map (times `1/scale`).
    pub fn effective_weight(&self) -> candle_core::Result<Tensor> {
        let w = self.weight.to_dtype(DType::F32)?;
        if self.offset {
            w + 1.0
        } else {
            Ok(w)
        }
    }
}

/// Inverse frequencies `[d_head/2]` of rotary embeddings, with the configured rescaling.
pub fn rope_inv_freq(rope: &RopeConfig, d_head: usize) -> Vec<f64> {
    let base: Vec<f64> = (0..d_head / 2)
        .map(|i| 1.0 / rope.theta.powf((2 * i) as f64 / d_head as f64))
        .collect();
    match rope.scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old = original_max_position_embeddings;
            let low_freq_wavelen = old / low_freq_factor;
            let high_freq_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// Cosine and sine tables for rotary embeddings, indexed by absolute position.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f64>,
    device: Device,
}

impl Rope {
    /// Prepares the frequencies; tables are built per call for the positions in use.
    pub fn new(rope: &RopeConfig, d_head: usize, device: &Device) -> Self {
        Rope {
            inv_freq: rope_inv_freq(rope, d_head),
            device: device.clone(),
        }
    }

    /// `(cos, sin)` of shape `[batch, 1, pos, d_head]` for integer `positions[b][p]`, in `dtype`.
    /// The half-split layout (`rotate_half`) matches transformers' Llama/Qwen/Gemma code.
    pub fn tables(&self, positions: &[Vec<u32>], dtype: DType) -> Result<(Tensor, Tensor)> {
        let b = positions.len();
        let p = positions.first().map_or(0, Vec::len);
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(b * p * half * 2);
        let mut sin = Vec::with_capacity(b * p * half * 2);
        for row in positions {
            for &pos in row {
                // transformers computes the angle in f32; doing the same keeps parity at long
                // positions, where f32 angle rounding is larger than the tolerance.
                let angles: Vec<f32> = self
                    .inv_freq
                    .iter()
                    .map(|&f| (f as f32) * (pos as f32))
                    .collect();
                for _ in 0..2 {
                    cos.extend(angles.iter().map(|a| a.cos()));
                    sin.extend(angles.iter().map(|a| a.sin()));
                }
            }
        }
        let shape = (b, 1, p, 2 * half);
        let cos = Tensor::from_vec(cos, shape, &self.device)
            .and_then(|t| t.to_dtype(dtype))
            .context("rope cos table")?;
        let sin = Tensor::from_vec(sin, shape, &self.device)
            .and_then(|t| t.to_dtype(dtype))
            .context("rope sin table")?;
        Ok((cos, sin))
    }
}

/// Applies rotary embeddings to `x` `[batch, heads, pos, d_head]`.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_rope_keeps_high_and_divides_low_frequencies() {
        let rope = RopeConfig {
            theta: 10000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64.0,
            },
        };
        let plain = rope_inv_freq(
            &RopeConfig {
                theta: 10000.0,
                scaling: RopeScaling::None,
            },
            16,
        );
        let scaled = rope_inv_freq(&rope, 16);
        for (p, s) in plain.iter().zip(&scaled) {
            let wavelen = 2.0 * std::f64::consts::PI / p;
            if wavelen < 16.0 {
                assert_eq!(p, s);
            } else if wavelen > 64.0 {
                assert!((p / 8.0 - s).abs() < 1e-15);
            } else {
                assert!(*s < *p && *s > p / 8.0, "medium band interpolates");
            }
        }
    }

    #[test]
    fn rmsnorm_scale_is_root_mean_square() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[3.0f32, 4.0]], &dev)?;
        let n = RmsNorm {
            weight: Tensor::new(&[1.0f32, 2.0], &dev)?,
            eps: 0.0,
            offset: false,
        };
        let (y, s) = n.forward(&x)?;
        let s = s.flatten_all()?.to_vec1::<f32>()?[0];
        assert!((s - (12.5f32).sqrt()).abs() < 1e-6);
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        assert!((y[0] - 3.0 / s).abs() < 1e-6 && (y[1] - 8.0 / s).abs() < 1e-6);
        let g = RmsNorm { offset: true, ..n };
        let y = g.forward(&x)?.0.flatten_all()?.to_vec1::<f32>()?;
        assert!((y[0] - 6.0 / s).abs() < 1e-6 && (y[1] - 12.0 / s).abs() < 1e-6);
        Ok(())
    }
}
