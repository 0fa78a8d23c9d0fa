//! Exact decoder refit: with the sparse code fixed, the best decoder is a least-squares solution.
//!
//! After the JumpReLU thresholds are chosen, which features fire on which token no longer
//! changes, and the reconstruction `ŷ = Σ_i acts_i · W_i (+ b)` is linear in the decoder. So
//! instead of more gradient steps the decoder is solved for: the normal equations
//! `(AᵀA + λ·I) W = AᵀY` over every training token, in f64, by Cholesky.
//!
//! Why it matters for graphs: the error node of a layer is exactly `y − ŷ`. On the demo CLT,
//! 300 Adam refit steps left the layer-3 error at 0.24% of the MLP output variance; the exact
//! solution leaves 0.07%, and the README prompt's completeness goes from 0.934 to above 0.97.
//!
//! The codes are sparse (a few tens of active features per token out of thousands), so `AᵀA`
//! and `AᵀY` are accumulated from each token's non-zeros rather than by dense products:
//! `O(nnz² + nnz·d)` per token, and exact in f64.

use candle_core::{DType, Device, Tensor};
use faer::prelude::Solve;
use faer::{Mat, Side};

use crate::error::{Context, Error, Result};

/// The ridge the trainers use, relative to the mean diagonal of `AᵀA`: small enough not to bias
/// the fit (1e-4 cost the demo CLT's README prompt 0.004 of completeness, 1e-2 0.03), large
/// enough to keep never-firing features' zero columns solvable.
pub const REFIT_RIDGE: f64 = 1e-6;

/// Tokens converted to host vectors at a time (bounds the extra memory to a few MB per code).
const CHUNK: usize = 4096;

/// The least-squares decoder of `y` from the codes.
pub struct Decoder {
    /// One `[k_i, d]` block per code, in the order given.
    pub blocks: Vec<Tensor>,
    /// The fitted intercept `[d]`, when one was asked for.
    pub bias: Option<Tensor>,
}

/// Solves `min_W Σ_t ‖y_t − Σ_i codes_i[t] · W_i − b‖² + λ‖W‖²` over all rows `t`.
///
/// - `codes`: one `[n, k_i]` activation matrix per source (a CLT's output layer `j` reads the
///   codes of layers `0..=j`; a per-layer transcoder has one);
/// - `y`: `[n, d]` targets (the MLP outputs minus any fixed bias);
/// - `intercept`: also fit a bias `b` (a learned decoder bias), which is not penalised;
/// - `ridge`: `λ` relative to the mean diagonal of `AᵀA`, so it does not depend on the
///   activations' scale. It only has to keep the system positive definite: features that never
///   fire (zero columns) get a zero decoder.
pub fn least_squares_decoder(
    codes: &[&Tensor],
    y: &Tensor,
    intercept: bool,
    ridge: f64,
) -> Result<Decoder> {
    let (n, d) = y.dims2().context("refit targets")?;
    let widths: Vec<usize> = codes
        .iter()
        .map(|c| match c.dims2() {
            Ok((rows, k)) if rows == n => Ok(k),
            _ => Err(Error::Config(format!(
                "refit: every code needs {n} rows like the targets, got {:?}",
                c.dims()
            ))),
        })
        .collect::<Result<_>>()?;
    let offsets: Vec<usize> = widths
        .iter()
        .scan(0, |at, k| {
            let o = *at;
            *at += k;
            Some(o)
        })
        .collect();
    let m_feat: usize = widths.iter().sum();
    let m = m_feat + usize::from(intercept);
    let mut gram = vec![0f64; m * m];
    let mut rhs = vec![0f64; m * d];
    let mut nz: Vec<(usize, f64)> = Vec::new();
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        let host = |t: &Tensor| -> Result<Vec<f32>> {
            t.narrow(0, start, len)
                .and_then(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
                .context("refit chunk")
        };
        let parts: Vec<Vec<f32>> = codes.iter().map(|c| host(c)).collect::<Result<_>>()?;
        let ys = host(y)?;
        for r in 0..len {
            nz.clear();
            for ((part, &k), &off) in parts.iter().zip(&widths).zip(&offsets) {
                for (f, &v) in part[r * k..(r + 1) * k].iter().enumerate() {
                    if v != 0.0 {
                        nz.push((off + f, v as f64));
                    }
                }
            }
            if intercept {
                nz.push((m_feat, 1.0));
            }
            let yr = &ys[r * d..(r + 1) * d];
            for &(p, vp) in &nz {
                let row = &mut gram[p * m..(p + 1) * m];
                for &(q, vq) in &nz {
                    row[q] += vp * vq;
                }
                for (acc, &yc) in rhs[p * d..(p + 1) * d].iter_mut().zip(yr) {
                    *acc += vp * yc as f64;
                }
            }
        }
    }
    let mean_diag = (0..m_feat).map(|p| gram[p * m + p]).sum::<f64>() / m_feat.max(1) as f64;
    let lambda = ridge * mean_diag.max(f64::MIN_POSITIVE);
    let g = Mat::<f64>::from_fn(m, m, |p, q| {
        gram[p * m + q] + if p == q && p < m_feat { lambda } else { 0.0 }
    });
    let b = Mat::<f64>::from_fn(m, d, |p, c| rhs[p * d + c]);
    let llt = g.llt(Side::Lower).map_err(|e| {
        Error::Config(format!(
            "refit: the normal equations are not positive definite ({e:?}); raise the ridge \
             (now {ridge:e} of the mean diagonal)"
        ))
    })?;
    let w = llt.solve(&b);
    let to_tensor = |rows: std::ops::Range<usize>| -> Result<Tensor> {
        let k = rows.len();
        let v: Vec<f32> = rows
            .flat_map(|p| (0..d).map(move |c| (p, c)))
            .map(|(p, c)| w[(p, c)] as f32)
            .collect();
        Tensor::from_vec(v, (k, d), &Device::Cpu)
            .and_then(|t| t.to_device(y.device()))
            .context("refit decoder")
    };
    let blocks = offsets
        .iter()
        .zip(&widths)
        .map(|(&o, &k)| to_tensor(o..o + k))
        .collect::<Result<_>>()?;
    let bias = match intercept {
        true => Some(to_tensor(m_feat..m)?.squeeze(0).context("refit bias")?),
        false => None,
    };
    Ok(Decoder { blocks, bias })
}

/// One output's exact refit as the trainers run it: with a learned decoder bias the bias is
/// fitted too and replaced in `b_dec`; with a fixed one it is subtracted from the targets first.
/// Returns the decoder block of each code, in order.
pub fn refit_decoder(
    codes: &[&Tensor],
    y: &Tensor,
    b_dec: &mut Tensor,
    learn_bias: bool,
) -> Result<Vec<Tensor>> {
    let target = match learn_bias {
        true => y.clone(),
        false => y.broadcast_sub(b_dec).context("refit target")?,
    };
    let fit = least_squares_decoder(codes, &target, learn_bias, REFIT_RIDGE)?;
    if let Some(b) = fit.bias {
        *b_dec = b;
    }
    Ok(fit.blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn sparse(rng: &mut Rng, n: usize, k: usize, density: f64) -> Vec<f32> {
        (0..n * k)
            .map(|_| match rng.uniform() < density {
                true => (rng.uniform() * 2.0 + 0.1) as f32,
                false => 0.0,
            })
            .collect()
    }

    #[test]
    fn recovers_the_decoder_and_bias_that_generated_the_targets() {
        // y = a0·W0 + a1·W1 + b exactly: the solution must be W0, W1, b (up to the tiny ridge).
        let mut rng = Rng::new(3);
        let (n, k0, k1, d) = (3000, 12, 7, 5);
        let dev = Device::Cpu;
        let a0 = Tensor::from_vec(sparse(&mut rng, n, k0, 0.2), (n, k0), &dev).unwrap();
        let a1 = Tensor::from_vec(sparse(&mut rng, n, k1, 0.3), (n, k1), &dev).unwrap();
        let mut normal = |shape: (usize, usize)| {
            let v: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| rng.normal() as f32)
                .collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let (w0, w1, b) = (normal((k0, d)), normal((k1, d)), normal((1, d)));
        let y = (a0.matmul(&w0).unwrap() + a1.matmul(&w1).unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let fit = least_squares_decoder(&[&a0, &a1], &y, true, 1e-12).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(diff(&fit.blocks[0], &w0) < 1e-3, "W0");
        assert!(diff(&fit.blocks[1], &w1) < 1e-3, "W1");
        assert!(diff(&fit.bias.unwrap(), &b.squeeze(0).unwrap()) < 1e-3, "b");
    }

    #[test]
    fn the_solution_is_the_minimum_of_the_squared_error() {
        // Noisy targets: the residual is orthogonal to every code column (normal equations),
        // so no perturbation of the decoder lowers the error; a never-firing feature gets 0.
        let mut rng = Rng::new(8);
        let (n, k, d) = (2000, 10, 4);
        let dev = Device::Cpu;
        let mut a = sparse(&mut rng, n, k, 0.25);
        for r in 0..n {
            a[r * k + 9] = 0.0;
        }
        let a = Tensor::from_vec(a, (n, k), &dev).unwrap();
        let y: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let y = Tensor::from_vec(y, (n, d), &dev).unwrap();
        let fit = least_squares_decoder(&[&a], &y, false, 1e-9).unwrap();
        let w = &fit.blocks[0];
        let sse = |w: &Tensor| {
            (a.matmul(w).unwrap() - &y)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let best = sse(w);
        let residual = (&y - a.matmul(w).unwrap()).unwrap();
        let grad = a.t().unwrap().matmul(&residual).unwrap();
        let g_max = grad
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            g_max < 1e-2,
            "residual not orthogonal to the codes: {g_max}"
        );
        for step in [1e-2f64, -1e-2] {
            let bumped = (w + step).unwrap();
            assert!(
                sse(&bumped) > best,
                "a shifted decoder fits better ({step})"
            );
        }
        let dead = w.narrow(0, 9, 1).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(dead.to_scalar::<f32>().unwrap(), 0.0);
        assert!(fit.bias.is_none());
    }

    #[test]
    fn mismatched_rows_are_refused_with_the_shapes() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((10, 3), DType::F32, &dev).unwrap();
        let y = Tensor::zeros((9, 2), DType::F32, &dev).unwrap();
        let err = least_squares_decoder(&[&a], &y, false, 1e-6)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("9 rows") && err.contains("[10, 3]"), "{err}");
    }
}
