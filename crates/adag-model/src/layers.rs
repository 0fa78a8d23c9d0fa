//! The building blocks of every supported architecture: linear maps, RMSNorm that reports its
//! denominator, and rotary embeddings.
//!
//! RMSNorm returns its scale because the linearised backward freezes exactly that quantity:
//! `normalized = x / scale · w`, with `scale = sqrt(mean(x²) + eps)` held constant.

use candle_core::{DType, Device, Tensor, D};

use crate::config::{RopeConfig, RopeScaling};
use crate::error::{Context, Result};

/// Up to this many rows, [`matmul_wt`] computes `x Wᵀ` on the CPU as `(W xᵀ)ᵀ`.
///
/// Why: for `x Wᵀ` with a row-major result, the gemm kernel under candle transposes the
/// problem and repacks the whole weight matrix into column panels on every call; with few rows
/// that repacking costs more than the product itself (a 23-token forward of a 12-layer,
/// d_model-512 model ran at 9% of the matmul peak, two thirds of it packing). As `W xᵀ` the
/// weight is read in place and only the small `x` is packed. Measured crossover on 2 cores:
/// about 200 rows (`adag bench forward --tokens N`); 3x faster at 23 rows, 1.4x at 128.
const SHORT_ROWS: usize = 160;

/// `x Wᵀ` for `x` `[rows, k]` and a weight `W` stored `[n, k]`, in the layout that is fastest
/// for the number of rows (see [`SHORT_ROWS`]); the result is `[rows, n]`, contiguous.
pub fn matmul_wt(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if x.dim(0)? <= SHORT_ROWS && x.device().is_cpu() {
        w.matmul(&x.t()?)?.t()?.contiguous()
    } else {
        x.matmul(&w.t()?)
    }
}

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
        let y = matmul_wt(&x.reshape((rows, d_in))?, &self.weight)?;
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

    /// Both layouts of `x Wᵀ` (below and above [`SHORT_ROWS`]) give the product, checked in
    /// f64 against a plain triple loop, and a contiguous `[rows, n]` result.
    #[test]
    fn matmul_wt_is_x_times_w_transposed_in_both_layouts() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (k, n) = (37, 53);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        for rows in [1, 23, SHORT_ROWS, SHORT_ROWS + 1, 300] {
            let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
            let got = matmul_wt(&x, &w)?;
            assert_eq!(got.dims(), [rows, n]);
            assert!(got.is_contiguous());
            let (xv, wv) = (x.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
            let got = got.to_vec2::<f32>()?;
            for i in 0..rows {
                for j in 0..n {
                    let want: f64 = (0..k).map(|c| xv[i][c] as f64 * wv[j][c] as f64).sum();
                    let diff = (got[i][j] as f64 - want).abs();
                    assert!(
                        diff < 1e-4,
                        "rows {rows}, ({i}, {j}): {} vs {want}",
                        got[i][j]
                    );
                }
            }
        }
        Ok(())
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
