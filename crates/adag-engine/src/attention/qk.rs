//! QK attributions: one attention score as a bilinear form of the graph's nodes.
//!
//! The pre-softmax score of head `h` at layer `l` for query position `q` and key position `k`
//! (Gemma-2: before the soft-cap) is `scale · q_vec · k_vec`, with
//!
//! ```text
//! q_vec = R_q · D_q · (W_Q[h] · (resid_pre[q] ⊙ w_ln1 / s_ln1[q]) + b_Q[h])
//! k_vec = R_k · D_k · (W_K[g] · (resid_pre[k] ⊙ w_ln1 / s_ln1[k]) + b_K[g])
//! ```
//!
//! where `g` is the head's key/value group, `R_p` the rotary rotation at position `p` (the
//! layer's rope: Gemma-3's local rope on sliding-window layers), and `D` the q/k norm
//! (Qwen3, Gemma-3) with its denominator frozen at the clean run: `diag(w_norm / s_norm)`.
//! Frozen are the ln1 denominators, the q/k-norm denominators and, for the residual streams,
//! everything the graph freezes. So `q_vec = A_q · resid_pre[q] + R_q D_q b_Q` with
//! `A_q = R_q D_q W_Q[h] diag(w/s)` — RoPE enters as the position-pair bilinear form
//! `(A_q)ᵀ A_k`, i.e. `(R_q W_Q)ᵀ (R_k W_K)` with the norms folded in.
//!
//! `resid_pre[p]` of the frozen model is the sum of every source's direct effect (features or
//! neurons, errors, tokens, at positions `≤ p` through the frozen attention below `l`) plus
//! constants no node carries (decoder and attention biases, a BOS position without nodes). The
//! contribution of every source to `q_vec` is one backward pass seeded with the `d_head` rows of
//! `A_q` at `resid_pre[q]`; the constant part is `q_vec` minus their sum. The same for keys.
//! The score is then `Σ_ij scale · q_i · k_j` over query-side components `i` and key-side `j`.

use adag_core::{HookName, Site};
use adag_model::layers::{apply_rope, Rope};
use adag_model::{ActivationCache, Transformer};
use candle_core::{DType, Tensor};

use crate::basis::PromptNodes;
use crate::error::{Context, Error, Result};
use crate::frozen::{FrozenModel, MlpPath, Visitor, WriteSite};
use crate::reading::RowCollector;

/// Which attention score to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QkSite {
    /// Layer.
    pub layer: usize,
    /// Query head.
    pub head: usize,
    /// Query position.
    pub query_pos: usize,
    /// Key position (`≤ query_pos`).
    pub key_pos: usize,
}

/// One score split into query-side and key-side components.
///
/// Components are the collector's columns (active nodes, then errors `layer · n_pos + pos`,
/// then tokens), plus a last one: the constants no node carries (biases, BOS without nodes).
#[derive(Debug, Clone)]
pub struct QkAttribution {
    /// What was explained.
    pub site: QkSite,
    /// `scale · q_vec · k_vec`: the pre-softmax (pre-soft-cap) score.
    pub score: f32,
    /// Components per side (`n_cols + 1`).
    pub n_components: usize,
    /// `[n_components, d_head]` each component's part of the rotated query.
    pub query_parts: Vec<f32>,
    /// `[n_components, d_head]` each component's part of the rotated key.
    pub key_parts: Vec<f32>,
    /// The attention scale (`1/√d_head`, or Gemma's `query_pre_attn_scalar^-1/2`).
    pub scale: f32,
    /// Head dimension.
    pub d_head: usize,
}

impl QkAttribution {
    fn row<'a>(&self, v: &'a [f32], i: usize) -> &'a [f32] {
        &v[i * self.d_head..(i + 1) * self.d_head]
    }

    fn total(&self, v: &[f32]) -> Vec<f32> {
        let mut t = vec![0.0f32; self.d_head];
        for i in 0..self.n_components {
            for (a, b) in t.iter_mut().zip(self.row(v, i)) {
                *a += b;
            }
        }
        t
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The pairwise term of query component `i` and key component `j`.
    pub fn pair(&self, i: usize, j: usize) -> f32 {
        self.scale * Self::dot(self.row(&self.query_parts, i), self.row(&self.key_parts, j))
    }

    /// Each query component's total: `scale · q_i · k_vec` (they sum to the score).
    pub fn query_marginals(&self) -> Vec<f32> {
        let k = self.total(&self.key_parts);
        (0..self.n_components)
            .map(|i| self.scale * Self::dot(self.row(&self.query_parts, i), &k))
            .collect()
    }

    /// Each key component's total: `scale · q_vec · k_j` (they sum to the score).
    pub fn key_marginals(&self) -> Vec<f32> {
        let q = self.total(&self.query_parts);
        (0..self.n_components)
            .map(|j| self.scale * Self::dot(&q, self.row(&self.key_parts, j)))
            .collect()
    }

    /// The `top` pairwise terms `(i, j, term)` by `|term|`, among components with a non-zero
    /// part on their side.
    pub fn top_pairs(&self, top: usize) -> Vec<(usize, usize, f32)> {
        let live = |v: &[f32]| -> Vec<usize> {
            (0..self.n_components)
                .filter(|&i| self.row(v, i).iter().any(|&x| x != 0.0))
                .collect()
        };
        let (qs, ks) = (live(&self.query_parts), live(&self.key_parts));
        let mut all: Vec<(usize, usize, f32)> = qs
            .iter()
            .flat_map(|&i| ks.iter().map(move |&j| (i, j)))
            .map(|(i, j)| (i, j, self.pair(i, j)))
            .collect();
        all.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
        all.truncate(top);
        all
    }
}

/// Backward from `resid_pre` of layer `layer` at position `pos` for the rows of `vectors`
/// `[n, d_model]`: like [`FrozenModel::vjp`] but without layer `layer`'s attention (the score
/// reads the residual stream before it).
fn vjp_from_resid_pre(
    frozen: &FrozenModel,
    layer: usize,
    pos: usize,
    vectors: &Tensor,
    write: WriteSite,
    mlp: &dyn MlpPath,
    visit: &mut dyn Visitor,
) -> Result<()> {
    let (n, d) = vectors.dims2().ctx("seed shape")?;
    let t = pos + 1;
    let mut g = Tensor::zeros((n, t, d), frozen.dtype(), vectors.device())
        .and_then(|z| z.narrow(1, 0, pos))
        .and_then(|z| Tensor::cat(&[z, vectors.to_dtype(frozen.dtype())?.unsqueeze(1)?], 1))
        .ctx("seeding resid_pre")?;
    for l in (0..layer).rev() {
        let g_write = frozen.to_write_site(l, write, &g, t)?;
        visit.write_site(l, &g_write)?;
        if let Some((site, g_read)) = mlp.vjp(l, &g_write)? {
            g = (g + frozen.read_to_resid_mid(l, site, &g_read, t)?).ctx("MLP path")?;
        }
        g = frozen.attention_vjp(l, &g, t)?;
    }
    visit.embed(&g)
}

/// `(A, v)` for one side: `A = R_p D W diag(w/s)` `[d_head, d_model]` and the rotated vector
/// `v = R_p D (W x + b)`, plus its bias part `R_p D b`.
struct Side {
    a: Tensor,
    vec: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
fn side(
    model: &Transformer,
    cache: &ActivationCache,
    item: usize,
    layer: usize,
    pos: usize,
    lin: &adag_model::layers::Linear,
    norm: Option<&adag_model::layers::RmsNorm>,
    group: usize,
) -> Result<Side> {
    let cfg = &model.cfg;
    let dh = cfg.d_head;
    let dev = model.device();
    let f = |x: Tensor| x.to_dtype(DType::F32);
    let h = |site| HookName::Block(layer, site);
    let normalized = cache
        .item(h(Site::Ln1Normalized), item)?
        .get(pos)
        .and_then(f)
        .ctx("ln1 normalized")?;
    let inv_s = cache
        .item(h(Site::Ln1Scale), item)?
        .get(pos)
        .and_then(f)
        .and_then(|s| s.recip())
        .ctx("ln1 scale")?;
    let w1 = model.weights.blocks[layer]
        .ln1
        .effective_weight()
        .and_then(f)
        .ctx("ln1 weight")?;
    let w = lin
        .weight
        .narrow(0, group * dh, dh)
        .and_then(f)
        .ctx("projection rows")?;
    let b = match &lin.bias {
        Some(b) => b
            .narrow(0, group * dh, dh)
            .and_then(f)
            .ctx("projection bias")?,
        None => Tensor::zeros(dh, DType::F32, dev).ctx("bias")?,
    };
    let x = (&normalized * &w1).ctx("ln1 output")?;
    let raw = w
        .matmul(&x.unsqueeze(1).ctx("x")?)
        .and_then(|r| r.squeeze(1))
        .and_then(|r| r + &b)
        .ctx("projection")?;
    // D = w_norm / s_norm (s frozen at this run), or the identity.
    let dn = match norm {
        Some(n) => {
            let s = n
                .compute_scale(&raw.unsqueeze(0).ctx("raw")?)
                .ctx("q/k norm scale")?;
            n.effective_weight()
                .and_then(f)
                .and_then(|wn| wn.broadcast_div(&s.squeeze(0)?))
                .ctx("q/k norm")?
        }
        None => Tensor::ones(dh, DType::F32, dev).ctx("norm")?,
    };
    let rope_cfg = match (&cfg.rope_local, cfg.sliding_window.get(layer)) {
        (Some(local), Some(Some(_))) => local,
        _ => &cfg.rope,
    };
    let (cos, sin) = Rope::new(rope_cfg, dh, dev).tables(&[vec![pos as u32]], DType::F32)?;
    let rotate = |m: &Tensor| -> Result<Tensor> {
        // m [r, dh]: rows rotated as vectors of the head dimension.
        let r = m.dim(0).ctx("rows")?;
        apply_rope(&m.reshape((1, 1, r, dh)).ctx("rows")?, &cos, &sin)
            .and_then(|x| x.reshape((r, dh)))
            .ctx("rotary embedding")
    };
    // M = D W diag(w1/s): rotate its columns (rows of Mᵀ).
    let m = w
        .broadcast_mul(
            &w1.broadcast_mul(&inv_s)
                .ctx("ln1 fold")?
                .unsqueeze(0)
                .ctx("w")?,
        )
        .and_then(|m| m.broadcast_mul(&dn.unsqueeze(1)?))
        .ctx("folding norms")?;
    let a = rotate(&m.t().ctx("transpose")?.contiguous().ctx("c")?)?
        .t()
        .and_then(|a| a.contiguous())
        .ctx("A")?;
    let v = rotate(&(&raw * &dn).ctx("normed")?.unsqueeze(0).ctx("v")?)?
        .squeeze(0)
        .and_then(|v| v.to_vec1::<f32>())
        .ctx("rotated vector")?;
    Ok(Side { a, vec: v })
}

/// Splits the score at `site` into query-side and key-side components of `nodes` (a basis
/// bound to the prompt of `cache`'s item `item`, read and written as the graph does).
pub fn qk_attribution(
    frozen: &FrozenModel,
    cache: &ActivationCache,
    item: usize,
    nodes: &dyn PromptNodes,
    write: WriteSite,
    site: QkSite,
) -> Result<QkAttribution> {
    let model = frozen.model();
    let cfg = &model.cfg;
    let QkSite {
        layer,
        head,
        query_pos,
        key_pos,
    } = site;
    if layer >= cfg.n_layers
        || head >= cfg.n_heads
        || key_pos > query_pos
        || query_pos >= frozen.n_pos()
    {
        return Err(Error::Invalid(format!(
            "QK site L{layer}.H{head} query {query_pos} key {key_pos} is outside the model ({} layers, {} heads) or the prompt ({} positions), or the key comes after the query",
            cfg.n_layers,
            cfg.n_heads,
            frozen.n_pos()
        )));
    }
    let attn = &model.weights.blocks[layer].attn;
    let q = side(
        model,
        cache,
        item,
        layer,
        query_pos,
        &attn.q,
        attn.q_norm.as_ref(),
        head,
    )?;
    let k = side(
        model,
        cache,
        item,
        layer,
        key_pos,
        &attn.k,
        attn.k_norm.as_ref(),
        head / cfg.n_rep(),
    )?;
    let (n_layers, n_pos) = (cfg.n_layers, frozen.n_pos());
    let n_active = nodes.active().len();
    let n_cols = n_active + (n_layers + 1) * n_pos;
    let dh = cfg.d_head;
    let parts = |s: &Side, pos: usize| -> Result<Vec<f32>> {
        let mut rows = vec![0.0f32; dh * n_cols];
        let mut c = RowCollector::new(
            nodes.groups(),
            nodes.tokens(),
            n_active + n_layers * n_pos,
            n_cols,
            &mut rows,
        );
        let seeds = s.a.to_dtype(frozen.dtype()).ctx("seeds")?;
        vjp_from_resid_pre(frozen, layer, pos, &seeds, write, nodes.mlp_path(), &mut c)?;
        // rows is [dh, n_cols]: transpose to [n_cols + 1, dh] with the constant last.
        let mut out = vec![0.0f32; (n_cols + 1) * dh];
        for r in 0..dh {
            for col in 0..n_cols {
                out[col * dh + r] = rows[r * n_cols + col];
            }
        }
        for r in 0..dh {
            let sum: f32 = (0..n_cols).map(|col| out[col * dh + r]).sum();
            out[n_cols * dh + r] = s.vec[r] - sum;
        }
        Ok(out)
    };
    let query_parts = parts(&q, query_pos)?;
    let key_parts = parts(&k, key_pos)?;
    let scale = cfg.attn_scale as f32;
    let score = scale * q.vec.iter().zip(&k.vec).map(|(a, b)| a * b).sum::<f32>();
    Ok(QkAttribution {
        site,
        score,
        n_components: n_cols + 1,
        query_parts,
        key_parts,
        scale,
        d_head: dh,
    })
}
