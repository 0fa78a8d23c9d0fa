//! Attention's frozen backward for `f32` gradients in CPU memory, as strided products that
//! write where the next step reads.
//!
//! Through candle the backward is three products with copies between them: the `W_O`
//! product's output permuted to per-head blocks, the pattern's cone cut out, the pattern
//! product's output permuted back, and a separate pass for the residual add. Each copy moves as
//! many bytes as its product writes, and candle's element-wise pool serialises the two
//! concurrent passes' adds. Here the gemm crate, which candle runs underneath, is called with
//! strides instead, on a position-major `[t, n, d]` copy of the gradient:
//!
//! 1. the copy times `W_O'` gives every head's `g_z`, split into one `[t, n·dh]` block per
//!    head;
//! 2. each head's pattern (keys × queries, read in place from the grouped pattern) times its
//!    block accumulates into its key/value group's `g_v[kv]`, `[t, n·dh]`;
//! 3. the groups' blocks side by side times `W_V'` accumulate into the copy itself, which is
//!    the residual add, and the copy is handed back as an `[n, t, d]` view.
//!
//! Steps 1 and 3 are one product each, with the block splits as copies: per-head products
//! (dh output columns, or dh terms) read and wrote the whole gradient once per head, which
//! cost more than the copies (on the side-by-side fixture, 8 heads: 7–10% less CPU time in
//! the feature rows, sixteen alternating runs).
//!
//! A gradient that arrives as such a view (the previous layer's output) is copied with one
//! `memcpy`; one in `[n, t, d]` order is gathered. The sums are the same as candle's path; only
//! their order differs within `f32` rounding (the tests below compare both on every fixture
//! architecture).

use std::time::Instant;

use candle_core::{CpuStorage, Device, Storage, Tensor};

use crate::cpu_gemm::{parallelism, Strided};
use crate::error::{Context, Result};

/// The shapes of one layer's backward.
pub(crate) struct Heads {
    /// Query heads, key/value heads, head width, query heads per key/value head, model width.
    pub h: usize,
    pub kv: usize,
    pub dh: usize,
    pub rep: usize,
    pub d: usize,
}

impl Heads {
    /// The shapes of `cfg`'s attention.
    pub fn of(cfg: &adag_model::ModelConfig) -> Self {
        Heads {
            h: cfg.n_heads,
            kv: cfg.n_kv_heads,
            dh: cfg.d_head,
            rep: cfg.n_rep(),
            d: cfg.d_model,
        }
    }
}

/// A tensor's elements as an `f32` CPU slice from its first element, if it is a contiguous
/// `f32` tensor in CPU memory (`storage` and `layout` from `Tensor::storage_and_layout`).
fn f32_slice<'a>(storage: &'a Storage, layout: &candle_core::Layout) -> Option<&'a [f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(v)) if layout.is_contiguous() => {
            let start = layout.start_offset();
            v.get(start..start + layout.shape().elem_count())
        }
        _ => None,
    }
}

/// `dst (+)= lhs · rhs` for row-major operands given by pointer and row stride.
///
/// # Safety
/// As [`crate::cpu_gemm::product`].
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    mnk: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    parallelism: gemm::Parallelism,
) {
    crate::cpu_gemm::product(
        mnk,
        Strided::rows(dst, dst_rs),
        accumulate,
        Strided::rows(lhs, lhs_rs),
        Strided::rows(rhs, rhs_rs),
        parallelism,
    )
}

/// `src`, laid out `[outer, inner, width]`, copied to `[inner, outer, width]`: the gradient
/// into position-major order, and blocks between one-per-head and side by side.
fn transpose_blocks(src: &[f32], outer: usize, inner: usize, width: usize) -> Vec<f32> {
    assert_eq!(src.len(), outer * inner * width, "blocks to transpose");
    filled(src.len(), |dst| {
        for (i, block) in src.chunks_exact(width.max(1)).enumerate() {
            let (o, j) = (i / inner, i % inner);
            // SAFETY: block (j, o) of the [inner, outer, width] buffer; the blocks of `src`
            // cover it exactly once (lengths checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    block.as_ptr(),
                    dst.add((j * outer + o) * width),
                    width,
                )
            };
        }
    })
}

/// An uninitialised buffer of `len` floats that `fill` writes completely before it is read.
fn filled(len: usize, fill: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill(v.as_mut_ptr());
    // SAFETY: `fill` wrote all `len` elements (every caller's products cover their buffer).
    unsafe { v.set_len(len) };
    v
}

/// The backward of one layer's attention from `g_mid` `[n, t, d]` to `resid_pre`, with the
/// thread-seconds of its three steps, or `None` when an operand is not a contiguous `f32` CPU
/// tensor (the caller then runs candle's path).
///
/// `w_o` is `W_O'` `[d, h·dh]`, `w_v` is `W_V'` `[kv·dh, d]`, `pattern` the grouped pattern
/// `[kv, T, rep, T]` (keys × queries per head, norms folded in) of which the first `t` keys
/// and queries are read.
pub(crate) fn attention_vjp_f32(
    shape: &Heads,
    g_mid: &Tensor,
    w_o: &Tensor,
    w_v: &Tensor,
    pattern: &Tensor,
) -> Option<Result<(Tensor, [f64; 3])>> {
    let Heads { h, kv, dh, rep, d } = *shape;
    let (n, t, gd) = g_mid.dims3().ok()?;
    let (_, big_t, _, _) = pattern.dims4().ok()?;
    if gd != d
        || w_o.dims() != [d, h * dh]
        || w_v.dims() != [kv * dh, d]
        || pattern.dims() != [kv, big_t, rep, big_t]
        || h != kv * rep
        || t > big_t
    {
        return None;
    }
    let parallelism = parallelism();
    let (g_s, g_l) = g_mid.storage_and_layout();
    let (o_s, o_l) = w_o.storage_and_layout();
    let (v_s, v_l) = w_v.storage_and_layout();
    let (p_s, p_l) = pattern.storage_and_layout();
    let w_o = f32_slice(&o_s, o_l)?;
    let w_v = f32_slice(&v_s, v_l)?;
    let p = f32_slice(&p_s, p_l)?;
    let Storage::Cpu(CpuStorage::F32(g)) = &*g_s else {
        return None;
    };
    let g = g.get(g_l.start_offset()..)?;
    let position_major = g_l.stride() == [d, n * d, 1];
    if !(position_major || g_l.is_contiguous()) || g.len() < n * t * d {
        return None;
    }
    let clock = Instant::now();
    // The gradient, position-major (row (q, i) is g[i, q]): the first product's input, and
    // then the buffer the third accumulates into.
    let mut buf = if position_major {
        g[..t * n * d].to_vec()
    } else {
        transpose_blocks(&g[..n * t * d], n, t, d)
    };
    drop(g_s);
    let gp = &buf;
    let block = t * n * dh;
    // 1. g_z[h] = gp · W_O'[:, h·dh..(h+1)·dh], [t·n, dh] = [t, n·dh]: one product over all
    // heads, then split into per-head blocks (a product per head would pack all of gp each).
    let rows = t * n;
    let z = filled(rows * h * dh, |dst| {
        // SAFETY: dst is t·n rows of h·dh; gp t·n rows of d; W_O' d rows of h·dh.
        unsafe {
            product(
                (rows, h * dh, d),
                dst,
                h * dh,
                false,
                gp.as_ptr(),
                d,
                w_o.as_ptr(),
                h * dh,
                parallelism,
            )
        }
    });
    let g_z = transpose_blocks(&z, rows, h, dh);
    drop(z);
    let o_proj = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    // 2. g_v[kv] = Σ_r P[kv, :t, r, :t] · g_z[kv·rep + r], [t, n·dh].
    // A short prompt's products (t × t times [t, n·dh], 17 MFLOP at 23 tokens) run on one
    // thread: too small to split while the other pass thread keeps the second core busy (split,
    // their thread time was twice as long on the side-by-side fixture). Long prompts split.
    let mix_parallelism = if 2 * t * t * n * dh < 1 << 26 {
        gemm::Parallelism::None
    } else {
        parallelism
    };
    let g_v = filled(kv * block, |dst| {
        for group in 0..kv {
            for r in 0..rep {
                let head = group * rep + r;
                // SAFETY: keys × queries of head `head` start at
                // (group·T·rep + r)·T with row stride rep·T; t ≤ T of each.
                unsafe {
                    product(
                        (t, n * dh, t),
                        dst.add(group * block),
                        n * dh,
                        r > 0,
                        p.as_ptr().add((group * big_t * rep + r) * big_t),
                        rep * big_t,
                        g_z.as_ptr().add(head * block),
                        n * dh,
                        mix_parallelism,
                    )
                };
            }
        }
    });
    let pattern_mix = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    // 3. buf += Σ_kv g_v[kv] · W_V'[kv·dh.., :]: the residual stream plus what attention
    // sends back, position-major. The groups side by side, [t·n, kv·dh], make it one product
    // with kv·dh terms per output instead of kv products of dh that each read and write buf.
    let gv = transpose_blocks(&g_v, kv, rows, dh);
    drop(g_v);
    // SAFETY: buf is t·n rows of d; gv t·n rows of kv·dh; W_V' kv·dh rows of d.
    unsafe {
        product(
            (rows, d, kv * dh),
            buf.as_mut_ptr(),
            d,
            true,
            gv.as_ptr(),
            kv * dh,
            w_v.as_ptr(),
            d,
            parallelism,
        )
    };
    // Handed back as the [n, t, d] view of the position-major buffer: no copy, and the next
    // layer's backward and the edge reading both take it as it is.
    let out = Tensor::from_vec(buf, (t, n, d), &Device::Cpu)
        .and_then(|b| b.transpose(0, 1))
        .ctx("attention backward");
    let v_proj = clock.elapsed().as_secs_f64();
    Some(out.map(|out| (out, [o_proj, pattern_mix, v_proj])))
}

/// `dots[i, key] = Σ_q g[i, q] · l[key, q·d..(q+1)·d]` `[n, t]` for an `f32` CPU gradient `g`
/// `[n, t, d]` and `l` `[T, T·d]` (`T ≥ t`; keys and positions past `t` are not read): the
/// bottom layer's token edges ([`crate::frozen::FrozenModel::token_dots`]), one product per
/// position reading `g` where it lies, contiguous or the position-major view
/// [`attention_vjp_f32`] hands back (candle's `reshape` would copy that view whole first).
/// `None` where an operand is not an `f32` CPU tensor of those shapes with unit stride along
/// `d`.
pub(crate) fn token_dots_f32(g: &Tensor, l: &Tensor) -> Option<Result<Tensor>> {
    let (n, t, d) = g.dims3().ok()?;
    let (big_t, width) = l.dims2().ok()?;
    if big_t < t || width != big_t * d {
        return None;
    }
    let (l_s, l_l) = l.storage_and_layout();
    let lv = f32_slice(&l_s, l_l)?;
    let (g_s, g_l) = g.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(gv)) = &*g_s else {
        return None;
    };
    let gv = gv.get(g_l.start_offset()..)?;
    let &[s_row, s_pos, s_dim] = g_l.stride() else {
        return None;
    };
    let reach = n.saturating_sub(1) * s_row + t.saturating_sub(1) * s_pos + d;
    if s_dim != 1 || n == 0 || t == 0 || gv.len() < reach {
        return None;
    }
    let mut out = vec![0f32; n * t];
    for q in 0..t {
        // SAFETY: out is n rows of t; g's rows at position q are n rows of d, `s_row` apart,
        // within `gv` (its reach checked above); lᵀ's block for position q is element
        // (j, key) = lv[key·T·d + q·d + j] for key < t ≤ T, within the T·T·d elements of `l`.
        unsafe {
            crate::cpu_gemm::product(
                (n, t, d),
                Strided::rows(out.as_mut_ptr(), t),
                true,
                Strided {
                    ptr: gv.as_ptr().add(q * s_pos),
                    rs: s_row,
                    cs: 1,
                },
                Strided {
                    ptr: lv.as_ptr().add(q * d),
                    rs: 1,
                    cs: big_t * d,
                },
                gemm::Parallelism::None,
            )
        };
    }
    Some(Tensor::from_vec(out, (n, t), &Device::Cpu).ctx("token edges"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use adag_model::{Batch, LoadOptions, LoadedModel};
    use candle_core::{Device, Tensor};

    use crate::frozen::FrozenModel;

    fn max_diff(a: &Tensor, b: &Tensor) -> (f32, f32) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        (diff, scale)
    }

    /// A fixture model and its forward pass over `prompt`, cached for freezing.
    fn forward_on(name: &str, prompt: &str) -> (LoadedModel, usize, adag_model::ForwardOutput) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
        let m = LoadedModel::load(&root.join(name), &LoadOptions::default()).unwrap();
        let tokens = m.tokenizer.prompt_ids(prompt, false).unwrap();
        let out = m
            .model
            .forward(
                &Batch::single(&tokens).unwrap(),
                &FrozenModel::cache_filter(),
            )
            .unwrap();
        (m, tokens.len(), out)
    }

    #[test]
    fn strided_products_give_candles_backward_on_every_architecture() {
        for name in ["llama", "qwen2", "qwen3", "gemma2", "gemma3"] {
            let (m, n_tokens, out) = forward_on(name, "The keys to the cabinet are on the table");
            let frozen = FrozenModel::new(&m.model, &out.cache, 0).unwrap();
            let d = m.model.cfg.d_model;
            let n = 5;
            for l in 0..m.model.cfg.n_layers {
                // The whole prompt, and a causal cone shorter than it.
                for t in [n_tokens, 3] {
                    let g = Tensor::randn(0f32, 1.0, (n, t, d), &Device::Cpu).unwrap();
                    // The same gradient as a position-major view, the layout the fast path
                    // hands to the next layer.
                    let g_pm = g
                        .transpose(0, 1)
                        .and_then(|x| x.contiguous())
                        .and_then(|x| x.transpose(0, 1))
                        .unwrap();
                    assert!(!g_pm.is_contiguous());
                    let want = frozen.attention_vjp_candle(l, &g, t).unwrap();
                    for (what, input) in [("[n, t, d]", &g), ("position-major", &g_pm)] {
                        let (w_o, w_v, p) = frozen.attention_operators(l);
                        let heads = super::Heads::of(&m.model.cfg);
                        let (got, _) = super::attention_vjp_f32(&heads, input, w_o, w_v, p)
                            .expect("an f32 CPU gradient takes the strided path")
                            .unwrap();
                        let (diff, scale) = max_diff(&got, &want);
                        assert!(
                            diff <= 1e-5 * (1.0 + scale),
                            "{name} layer {l}, t {t}, {what}: differs by {diff} (scale {scale})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn other_layouts_and_dtypes_are_left_to_candle() {
        let (m, t, out) = forward_on("llama", "The keys to the");
        let frozen = FrozenModel::new(&m.model, &out.cache, 0).unwrap();
        let cfg = &m.model.cfg;
        let heads = super::Heads::of(cfg);
        let (w_o, w_v, p) = frozen.attention_operators(0);
        let g = Tensor::randn(0f32, 1.0, (2, t, cfg.d_model), &Device::Cpu).unwrap();
        // A view with the model dimension strided, and a bf16 gradient.
        let odd = g
            .transpose(0, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(0, 2)
            .unwrap();
        assert!(super::attention_vjp_f32(&heads, &odd, w_o, w_v, p).is_none());
        let half = g.to_dtype(candle_core::DType::BF16).unwrap();
        assert!(super::attention_vjp_f32(&heads, &half, w_o, w_v, p).is_none());
        // A wrong model width is not this path's to judge either.
        let narrow = g
            .narrow(2, 0, cfg.d_model - 1)
            .unwrap()
            .contiguous()
            .unwrap();
        assert!(super::attention_vjp_f32(&heads, &narrow, w_o, w_v, p).is_none());
    }
}
