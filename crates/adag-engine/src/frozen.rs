//! The linearised model of one prompt, and its batched vector–Jacobian product.
//!
//! Freezing every attention pattern and norm denominator at their forward values makes each
//! block affine in the residual stream:
//!
//! ```text
//! resid_mid  = r + post1( W_O · Σ_k P[q,k] · W_V · (r_k / s1_k ⊙ w1) )
//! resid_post = resid_mid + mlp_out          (mlp_out: whatever the MLP path says)
//! ```
//!
//! so one backward pass from any seed gives exact direct effects. The MLP is not frozen here: a
//! [`MlpPath`] says how gradient crosses it (constant, a transcoder's linear skip, or RelP through
//! the gated MLP), which is all that distinguishes the bases. Seeds at layer `L`, position `p`
//! need no work above `L` or after `p`: each batch runs only the layers at and below its highest
//! seed, on the positions up to its last seed (the causal cone).

use adag_core::{HookName, Site};
use adag_model::{ActivationCache, CacheFilter, Transformer};
use candle_core::{DType, Tensor};

use crate::error::{Context, Error, Result};
use crate::tally::{Kernel, KernelTally};
use std::time::Instant;

/// Where target nodes at layer `L` read the residual stream (the input hook of a transcoder, or
/// of the MLP for neurons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadSite {
    /// `hook_resid_mid`: the residual stream before the MLP's norm.
    ResidMid,
    /// `ln2.hook_normalized`: `resid_mid / scale`, before the norm weight.
    Ln2Normalized,
    /// `mlp.hook_in`: the MLP input, `resid_mid / scale ⊙ w`.
    MlpIn,
}

impl ReadSite {
    /// The site for a TransformerLens hook name (block-relative), if it is one targets can read.
    pub fn from_site(site: Site) -> Option<Self> {
        match site {
            Site::ResidMid => Some(ReadSite::ResidMid),
            Site::Ln2Normalized => Some(ReadSite::Ln2Normalized),
            Site::MlpIn => Some(ReadSite::MlpIn),
            _ => None,
        }
    }

    /// The matching cache site.
    pub fn site(self) -> Site {
        match self {
            ReadSite::ResidMid => Site::ResidMid,
            ReadSite::Ln2Normalized => Site::Ln2Normalized,
            ReadSite::MlpIn => Site::MlpIn,
        }
    }
}

/// Where source nodes at layer `l` write: gradients are reported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteSite {
    /// `hook_mlp_out`: what the MLP adds to the residual stream (after Gemma-2's post-norm).
    HookMlpOut,
    /// `mlp.hook_out`: the MLP's own output, before Gemma-2's post-feedforward norm (the same as
    /// `hook_mlp_out` for the other architectures).
    MlpOut,
}

impl WriteSite {
    /// The site for a TransformerLens hook name, if sources can write there.
    pub fn from_site(site: Site) -> Option<Self> {
        match site {
            Site::HookMlpOut => Some(WriteSite::HookMlpOut),
            Site::MlpOut => Some(WriteSite::MlpOut),
            _ => None,
        }
    }

    /// The matching cache site.
    pub fn site(self) -> Site {
        match self {
            WriteSite::HookMlpOut => Site::HookMlpOut,
            WriteSite::MlpOut => Site::MlpOut,
        }
    }
}

/// How gradient crosses the MLP of a layer in the linearised model.
pub trait MlpPath: Sync {
    /// Given the gradient at the layer's write site `[n, T', d_model]`, the gradient it sends to
    /// a read site of the same layer, or `None` when the MLP is a constant.
    fn vjp(&self, layer: usize, grad_write: &Tensor) -> Result<Option<(ReadSite, Tensor)>>;

    /// Floating-point operations of one `vjp` call on `rows` gradient rows (for throughput
    /// reports; multiply-adds count two).
    fn flops(&self, _layer: usize, _rows: usize) -> f64 {
        0.0
    }
}

/// The MLP as a constant: gradient stops there (direct effects).
pub struct StopMlp;

impl MlpPath for StopMlp {
    fn vjp(&self, _: usize, _: &Tensor) -> Result<Option<(ReadSite, Tensor)>> {
        Ok(None)
    }
}

/// The forward (tangent) map of the MLP in the linearised model, for forward-mode passes.
pub trait MlpJvp {
    /// Given the tangent at the layer's `mlp.hook_in` `[n, t, d_model]`, the tangent of the
    /// MLP's output at `mlp.hook_out` `[n, t, d_model]`; `on_neurons` sees the tangent of the
    /// neuron activations `[n, t, d_mlp]` on the way.
    fn jvp(
        &self,
        layer: usize,
        tangent_in: &Tensor,
        on_neurons: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor>;

    /// Floating-point operations of one `jvp` call on `rows` tangent rows.
    fn flops(&self, _layer: usize, _rows: usize) -> f64 {
        0.0
    }
}

/// Receives gradients as the backward pass reaches them.
pub trait Visitor {
    /// Gradient `[n, T', d_model]` at layer `layer`'s write site (layers arrive top-down). With
    /// [`Visitor::takes_row_prefix`], `grad` may hold only the first `k ≤ n` rows: the rows
    /// after them are zero there (their seeds lie at or below this layer).
    fn write_site(&mut self, layer: usize, grad: &Tensor) -> Result<()>;
    /// Whether `write_site` accepts the nonzero prefix of the batch instead of all `n` rows.
    /// A visitor that reads edges can skip the zero rows' products; one that stores gradients
    /// by row keeps the default and gets every row.
    fn takes_row_prefix(&self) -> bool {
        false
    }
    /// Gradient `[n, T', d_model]` at `hook_embed`.
    fn embed(&mut self, grad: &Tensor) -> Result<()>;
    /// The vectors `[T, d_model]` the gradient at `hook_embed` is read against, when one dot
    /// product per row and position with them is all this visitor reads there (token edges).
    /// The pass may then hand [`Visitor::embed_dots`] those products, computed through the
    /// bottom layer's attention directly, instead of calling [`Visitor::embed`].
    fn embed_reads(&self) -> Option<Tensor> {
        None
    }
    /// `dots[i, p]` `[n, T']`: row `i`'s gradient at `hook_embed`, position `p`, dotted with
    /// [`Visitor::embed_reads`]`[p]`. Called only for a visitor that names such vectors.
    fn embed_dots(&mut self, _dots: &Tensor) -> Result<()> {
        Err(Error::Invalid(
            "this visitor reads whole embedding gradients, not dot products".into(),
        ))
    }
}

/// `grad` `[n, t, d]` at `hook_embed` dotted with each position's vector of `tokens` `[≥t, d]`:
/// `[n, t]` token edges, in `grad`'s dtype. The one definition of that read, whether a visitor
/// takes it from the whole gradient or the pass computes it for [`Visitor::embed_dots`].
pub(crate) fn embedding_dots(grad: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (_, t, _) = grad.dims3().ctx("gradient at the embeddings")?;
    tokens
        .narrow(0, 0, t)
        .and_then(|x| x.to_dtype(grad.dtype()))
        .and_then(|x| grad.broadcast_mul(&x))
        .and_then(|x| x.sum(2))
        .ctx("token edges")
}

/// A batch of seeds: row `i` injects `vectors[i]` as the gradient at the read site of
/// `layers[i]`, position `positions[i]`. Layer `n_layers` means the final norm's output (the
/// unembedding's input), where logit directions are injected.
#[derive(Debug, Clone)]
pub struct Seeds {
    /// `[n, d_model]`
    pub vectors: Tensor,
    /// Read layer of each seed.
    pub layers: Vec<usize>,
    /// Position of each seed.
    pub positions: Vec<usize>,
}

/// Indices of the seeds read at `layer`.
fn seeds_at(seeds: &Seeds, layer: usize) -> Vec<usize> {
    (0..seeds.layers.len())
        .filter(|&i| seeds.layers[i] == layer)
        .collect()
}

/// Whether the rows seeded at layer `l` (`at_layer`) are exactly the rows after the `k` already
/// under way, with no later row seeded at or above `l`: the order of a batch sorted by
/// descending layer, where those rows can start on their own.
fn joins_fresh(seeds: &Seeds, at_layer: &[usize], l: usize, k: usize) -> bool {
    at_layer.first().is_some_and(|&first| {
        first == k
            && at_layer.iter().enumerate().all(|(j, &i)| i == k + j)
            && seeds.layers[k + at_layer.len()..].iter().all(|&s| s < l)
    })
}

struct Norm {
    /// `[T, 1]` 1/scale
    inv_scale: Tensor,
    /// `[d]` effective weight
    weight: Tensor,
}

impl Norm {
    /// `g ⊙ w / scale` on the first `t` positions of `g` `[n, t, d]`.
    fn apply(&self, g: &Tensor, t: usize) -> candle_core::Result<Tensor> {
        g.broadcast_mul(&self.inv_scale.narrow(0, 0, t)?)?
            .broadcast_mul(&self.weight)
    }
}

struct FrozenLayer {
    ln1: Norm,
    /// `[H, T, T]` pattern transposed (keys × queries), contiguous.
    pattern_t: Tensor,
    ln1_post: Option<Norm>,
    ln2: Norm,
    ln2_post: Option<Norm>,
    /// Backward operators with the frozen norms folded in, so the backward through attention
    /// is three matrix products and no elementwise pass over the gradient:
    /// `W_O` with Gemma-2's post-attention norm weight folded into its rows, `[d, n_heads·d_head]`.
    w_o_bwd: Tensor,
    /// `W_V ⊙ w_ln1` (columns scaled), `[n_kv_heads·d_head, d]`.
    w_v_bwd: Tensor,
    /// Pattern grouped by key/value head, `[kv, key, rep, query]`, times `1/scale_ln1[key]` and
    /// (Gemma-2) `1/scale_ln1_post[query]`: one matmul per group sums the query heads sharing a
    /// key/value head.
    pattern_grouped: Tensor,
}

/// The frozen (linear) model of one prompt.
pub struct FrozenModel<'m> {
    model: &'m Transformer,
    n_pos: usize,
    layers: Vec<FrozenLayer>,
    ln_final: Norm,
    dtype: DType,
    tally: KernelTally,
    /// [`FrozenModel::bottom_reads`], once built, with the id of the token vectors it used.
    bottom: std::sync::Mutex<Option<(candle_core::TensorId, Tensor)>>,
}

/// The most memory [`FrozenModel::token_dots`] may keep for its per-prompt matrix.
const BOTTOM_READS_BYTES: usize = 64 << 20;

fn norm(
    cache: &ActivationCache,
    item: usize,
    hook: HookName,
    w: &adag_model::layers::RmsNorm,
    dt: DType,
) -> Result<Norm> {
    let s = cache.item(hook, item)?;
    Ok(Norm {
        inv_scale: s
            .to_dtype(DType::F32)
            .and_then(|s| s.recip())
            .and_then(|s| s.to_dtype(dt))
            .ctx("frozen norm scale")?,
        weight: w
            .effective_weight()
            .and_then(|w| w.to_dtype(dt))
            .ctx("frozen norm weight")?,
    })
}

/// The folded backward operators of layer `l` (see [`FrozenLayer`]).
fn fold_attention(
    model: &Transformer,
    l: usize,
    pattern_t: &Tensor,
    ln1: &Norm,
    ln1_post: Option<&Norm>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let cfg = &model.cfg;
    let w = &model.weights.blocks[l].attn;
    let dt = model.dtype();
    let (kv, rep) = (cfg.n_kv_heads, cfg.n_rep());
    let t = pattern_t.dim(1).ctx("pattern")?;
    let w_o = match ln1_post {
        Some(post) => {
            w.o.weight
                .broadcast_mul(&post.weight.unsqueeze(1).ctx("weight")?)
                .ctx("folding ln1_post")?
        }
        None => w.o.weight.clone(),
    };
    let w_v =
        w.v.weight
            .broadcast_mul(&ln1.weight.unsqueeze(0).ctx("weight")?)
            .ctx("folding ln1")?;
    // [H, k, q] → [kv, rep, k, q] → [kv, k, rep, q], keys scaled by 1/s1, queries by 1/s1_post.
    let mut p = pattern_t
        .reshape((kv, rep, t, t))
        .and_then(|p| p.permute((0, 2, 1, 3)))
        .and_then(|p| p.contiguous())
        .ctx("grouping pattern")?;
    p = p
        .broadcast_mul(&ln1.inv_scale.reshape((1, t, 1, 1)).ctx("scale")?)
        .ctx("folding 1/s1")?;
    if let Some(post) = ln1_post {
        p = p
            .broadcast_mul(&post.inv_scale.reshape((1, 1, 1, t)).ctx("scale")?)
            .ctx("folding 1/s1_post")?;
    }
    let to = |x: Tensor| x.to_dtype(dt).and_then(|x| x.contiguous()).ctx("dtype");
    Ok((to(w_o)?, to(w_v)?, to(p)?))
}

impl<'m> FrozenModel<'m> {
    /// What the forward pass must cache for [`FrozenModel::new`].
    pub fn cache_filter() -> CacheFilter {
        CacheFilter::sites([
            Site::Ln1Scale,
            Site::AttnPattern,
            Site::Ln1PostScale,
            Site::Ln2Scale,
            Site::Ln2PostScale,
        ])
        .union(&CacheFilter::only([
            HookName::Embed,
            HookName::LnFinalScale,
        ]))
    }

    /// Freezes batch item `item` of a forward pass over `model`.
    pub fn new(model: &'m Transformer, cache: &ActivationCache, item: usize) -> Result<Self> {
        let cfg = &model.cfg;
        let dt = model.dtype();
        let n_pos = *cache
            .len
            .get(item)
            .ok_or_else(|| Error::Invalid(format!("batch item {item} not in the cache")))?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for (l, w) in model.weights.blocks.iter().enumerate() {
            let h = |site| HookName::Block(l, site);
            let pattern_t = cache
                .item(h(Site::AttnPattern), item)?
                .to_dtype(dt)
                .and_then(|p| p.transpose(1, 2))
                .and_then(|p| p.contiguous())
                .ctx("frozen attention pattern")?;
            let post = |site, n: &Option<adag_model::layers::RmsNorm>| -> Result<Option<Norm>> {
                n.as_ref()
                    .map(|n| norm(cache, item, h(site), n, dt))
                    .transpose()
            };
            let ln1 = norm(cache, item, h(Site::Ln1Scale), &w.ln1, dt)?;
            let ln1_post = post(Site::Ln1PostScale, &w.ln1_post)?;
            let (w_o_bwd, w_v_bwd, pattern_grouped) =
                fold_attention(model, l, &pattern_t, &ln1, ln1_post.as_ref())?;
            layers.push(FrozenLayer {
                ln1,
                pattern_t,
                ln1_post,
                ln2: norm(cache, item, h(Site::Ln2Scale), &w.ln2, dt)?,
                ln2_post: post(Site::Ln2PostScale, &w.ln2_post)?,
                w_o_bwd,
                w_v_bwd,
                pattern_grouped,
            });
        }
        let ln_final = norm(
            cache,
            item,
            HookName::LnFinalScale,
            &model.weights.ln_final,
            dt,
        )?;
        Ok(FrozenModel {
            model,
            n_pos,
            layers,
            ln_final,
            dtype: dt,
            tally: KernelTally::default(),
            bottom: std::sync::Mutex::new(None),
        })
    }

    /// Floating-point operations of the matrix products run by [`FrozenModel::vjp`] so far.
    pub fn flops(&self) -> f64 {
        self.tally.flops()
    }

    /// Operations and thread-seconds per [`Kernel`] so far, and the wall-clock time of the
    /// batches of passes, as `{"passes_wall_s": s, "kernels": {kernel: {"flops": f,
    /// "thread_s": s}}}`.
    pub fn kernel_report(&self) -> serde_json::Value {
        self.tally.report()
    }

    /// Counts `f` operations without a clock.
    pub(crate) fn count(&self, f: f64) {
        self.tally.add(Kernel::Other, f, None);
    }

    /// Counts `f` operations of `kernel` and the time since `since`.
    pub(crate) fn count_kernel(&self, kernel: Kernel, f: f64, since: Instant) {
        self.tally.add(kernel, f, Some(since));
    }

    /// Counts the wall-clock time since `since` of a batch of passes.
    pub(crate) fn count_wall(&self, since: Instant) {
        self.tally.add_wall(since);
    }

    /// Counts `f` operations of `kernel` that took `secs` thread-seconds.
    pub(crate) fn count_seconds(&self, kernel: Kernel, f: f64, secs: f64) {
        self.tally.add_seconds(kernel, f, secs);
    }

    /// Layer `l`'s folded attention backward operators `(W_O', W_V', grouped pattern)` (see
    /// [`FrozenLayer`]), for the per-head backward of [`crate::attention`].
    pub(crate) fn attention_operators(&self, l: usize) -> (&Tensor, &Tensor, &Tensor) {
        let fl = &self.layers[l];
        (&fl.w_o_bwd, &fl.w_v_bwd, &fl.pattern_grouped)
    }

    /// Number of positions of the prompt.
    pub fn n_pos(&self) -> usize {
        self.n_pos
    }

    /// Dtype of the backward computation.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The model.
    pub fn model(&self) -> &Transformer {
        self.model
    }

    /// Maps gradients at a read site of layer `l` to `resid_mid` (the transpose of the read
    /// site's frozen Jacobian), on the first `t` positions.
    pub fn read_to_resid_mid(
        &self,
        l: usize,
        site: ReadSite,
        g: &Tensor,
        t: usize,
    ) -> Result<Tensor> {
        let ln2 = &self.layers[l].ln2;
        match site {
            ReadSite::ResidMid => Ok(g.clone()),
            ReadSite::Ln2Normalized => g
                .broadcast_mul(&ln2.inv_scale.narrow(0, 0, t).ctx("scale")?)
                .ctx("ln2 backward"),
            ReadSite::MlpIn => ln2.apply(g, t).ctx("ln2 backward"),
        }
    }

    /// Maps a gradient at `hook_mlp_out` of layer `l` to the write site.
    pub(crate) fn to_write_site(
        &self,
        l: usize,
        site: WriteSite,
        g: &Tensor,
        t: usize,
    ) -> Result<Tensor> {
        match (site, &self.layers[l].ln2_post) {
            (WriteSite::MlpOut, Some(post)) => post.apply(g, t).ctx("ln2_post backward"),
            _ => Ok(g.clone()),
        }
    }

    /// Seeds transformed to gradients at the residual stream (resid_mid of their layer, or the
    /// last resid_post for logits), as `[m, d]` with their flat row index `(i − first)·t + pos`
    /// in a buffer whose row 0 is seed `first`.
    fn seed_rows(
        &self,
        seeds: &Seeds,
        rows: &[usize],
        site: ReadSite,
        t: usize,
        first: usize,
    ) -> Result<(Tensor, Tensor)> {
        let dev = seeds.vectors.device();
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx_t = Tensor::new(idx.as_slice(), dev).ctx("seed index")?;
        let v = seeds
            .vectors
            .index_select(&idx_t, 0)
            .and_then(|v| v.to_dtype(self.dtype))
            .ctx("seed vectors")?;
        let pos: Vec<u32> = rows.iter().map(|&r| seeds.positions[r] as u32).collect();
        let pos_t = Tensor::new(pos.as_slice(), dev).ctx("seed positions")?;
        let layer = seeds.layers[rows[0]];
        let scaled = if layer == self.layers.len() {
            let inv = self
                .ln_final
                .inv_scale
                .index_select(&pos_t, 0)
                .ctx("final scale")?;
            v.broadcast_mul(&inv)
                .and_then(|v| v.broadcast_mul(&self.ln_final.weight))
                .ctx("final norm backward")?
        } else {
            let ln2 = &self.layers[layer].ln2;
            match site {
                ReadSite::ResidMid => v,
                ReadSite::Ln2Normalized => v
                    .broadcast_mul(&ln2.inv_scale.index_select(&pos_t, 0).ctx("scale")?)
                    .ctx("ln2 backward")?,
                ReadSite::MlpIn => v
                    .broadcast_mul(&ln2.inv_scale.index_select(&pos_t, 0).ctx("scale")?)
                    .and_then(|v| v.broadcast_mul(&ln2.weight))
                    .ctx("ln2 backward")?,
            }
        };
        let flat: Vec<u32> = rows
            .iter()
            .map(|&r| ((r - first) * t + seeds.positions[r]) as u32)
            .collect();
        Ok((scaled, Tensor::new(flat.as_slice(), dev).ctx("seed rows")?))
    }

    /// Grows `g` `[k, t, d]` (the nonzero prefix of a batch) to the first `k'` rows that reach
    /// `layer` and injects the seeds read at `layer`. When those seeds are exactly the new rows
    /// (a batch sorted by descending layer), the new rows are built on their own and appended:
    /// one copy of `g` instead of a zero-fill and an index-add over all of it.
    fn grow_and_inject(
        &self,
        g: Tensor,
        seeds: &Seeds,
        layer: usize,
        site: ReadSite,
        t: usize,
    ) -> Result<Tensor> {
        let (k, _, d) = g.dims3().ctx("gradient shape")?;
        let k_new = seeds
            .layers
            .iter()
            .rposition(|&s| s >= layer)
            .map_or(0, |i| i + 1)
            .max(k);
        let at_layer = seeds_at(seeds, layer);
        let dev = seeds.vectors.device();
        if k_new > k && at_layer.iter().all(|&i| i >= k) {
            let fresh = Tensor::zeros(((k_new - k) * t, d), self.dtype, dev).ctx("gradient")?;
            let fresh = if at_layer.is_empty() {
                fresh
            } else {
                let (vals, idx) = self.seed_rows(seeds, &at_layer, site, t, k)?;
                fresh.index_add(&idx, &vals, 0).ctx("injecting seeds")?
            };
            let fresh = fresh.reshape((k_new - k, t, d)).ctx("gradient")?;
            if k == 0 {
                return Ok(fresh);
            }
            return Tensor::cat(&[&g, &fresh], 0).ctx("gradient buffer");
        }
        self.inject_rows(self.pad_rows(g, k_new)?, seeds, &at_layer, site, t)
    }

    /// Backward through block `l`'s attention for the rows reaching `layer` `l`: the prefix `g`
    /// `[k, t, d]` already under way, and the rows whose seeds are read at `l`.
    ///
    /// A row that starts at `l` is nonzero at its seed's position only, so its `W_O` and `W_V`
    /// products take one vector per row instead of `t` positions' worth
    /// ([`FrozenModel::seeded_attention`]). A row at layer `L` crosses `L + 1` attention
    /// layers, so on a graph with seeds spread over 12 layers this saves about a fifth of the
    /// backward's products. Where the new rows are not exactly the seeds at `l` (a batch not
    /// sorted by layer) the dense path runs instead; the rows are the same.
    fn attend_and_grow(
        &self,
        g: Tensor,
        seeds: &Seeds,
        l: usize,
        site: ReadSite,
        t: usize,
    ) -> Result<Tensor> {
        let k = g.dim(0).ctx("gradient shape")?;
        let at_layer = seeds_at(seeds, l);
        if !joins_fresh(seeds, &at_layer, l, k) {
            let clock = Instant::now();
            let g = self.grow_and_inject(g, seeds, l, site, t)?;
            self.count_kernel(Kernel::Seeds, 0.0, clock);
            return self.attention_vjp(l, &g, t);
        }
        let new = self.seeded_attention(l, seeds, &at_layer, site, t)?;
        if k == 0 {
            return Ok(new);
        }
        let old = self.attention_vjp(l, &g, t)?;
        let clock = Instant::now();
        let g = Tensor::cat(&[&old, &new], 0).ctx("gradient buffer")?;
        self.count_kernel(Kernel::Seeds, 0.0, clock);
        Ok(g)
    }

    /// The gradient at `resid_pre` of layer `l` `[m, t, d]` of the seeds `rows` (all read at
    /// `l`, consecutive): each seed at its position plus what attention sends back from it.
    /// With one query position per row, `W_O` and `W_V` are products over the `m` rows alone
    /// (one vector per row and head), and only the pattern's weights spread them over the
    /// keys: no product here spans `t · d_model` per row.
    fn seeded_attention(
        &self,
        l: usize,
        seeds: &Seeds,
        rows: &[usize],
        site: ReadSite,
        t: usize,
    ) -> Result<Tensor> {
        let cfg = &self.model.cfg;
        let fl = &self.layers[l];
        let (h, kv, dh, rep, d) = (
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_head,
            cfg.n_rep(),
            cfg.d_model,
        );
        let m = rows.len();
        let clock = Instant::now();
        let (vals, idx) = self.seed_rows(seeds, rows, site, t, rows[0])?;
        self.count_kernel(Kernel::Seeds, 0.0, clock);
        // g_z at each seed's position, grouped by key/value head: [kv, m·rep, dh].
        let clock = Instant::now();
        let g_z = vals
            .matmul(&fl.w_o_bwd)
            .and_then(|g| g.reshape((m, kv, rep, dh)))
            .and_then(|g| g.transpose(0, 1))
            .and_then(|g| g.contiguous())
            .and_then(|g| g.reshape((kv, m * rep, dh)))
            .ctx("o_proj backward")?;
        self.count_kernel(Kernel::OProj, 2.0 * (m * d * h * dh) as f64, clock);
        // With one query, every key gets the same vector per head, scaled by its pattern
        // weight: u_h = g_z_h · W_V'_h once per row and head, [m, h, d] (instead of `t` keys'
        // worth of W_V' products).
        let clock = Instant::now();
        let u = g_z
            .matmul(&fl.w_v_bwd.reshape((kv, dh, d)).ctx("W_V' by group")?)
            .and_then(|u| u.reshape((kv, m, rep, d)))
            .and_then(|u| u.transpose(0, 1))
            .and_then(|u| u.contiguous())
            .and_then(|u| u.reshape((m, h, d)))
            .ctx("v_proj backward")?;
        self.count_kernel(Kernel::VProj, 2.0 * (m * h * dh * d) as f64, clock);
        // Each row's query column of the grouped pattern, [kv, key, rep, m] → [m, key, h],
        // times its u: [m, t, d], plus the seed itself at its position.
        let clock = Instant::now();
        let pos: Vec<u32> = rows.iter().map(|&r| seeds.positions[r] as u32).collect();
        let pos = Tensor::new(pos.as_slice(), vals.device()).ctx("seed positions")?;
        let g = fl
            .pattern_grouped
            .index_select(&pos, 3)
            .and_then(|p| p.narrow(1, 0, t))
            .and_then(|p| p.permute((3, 1, 0, 2)))
            .and_then(|p| p.contiguous())
            .and_then(|p| p.reshape((m, t, h)))
            .and_then(|p| p.matmul(&u))
            .and_then(|g| g.reshape((m * t, d)))
            .and_then(|g| g.index_add(&idx, &vals, 0))
            .and_then(|g| g.reshape((m, t, d)))
            .ctx("pattern backward")?;
        self.count_kernel(Kernel::PatternMix, 2.0 * (m * t * h * d) as f64, clock);
        Ok(g)
    }

    /// Token edges of the rows `g` `[k, t, d]` (the gradient at layer 0's `resid_mid`, after
    /// its MLP path): `dots[i, p]` = the gradient at `hook_embed` dotted with `tok[p]`, `[k, t]`,
    /// without the gradient at `hook_embed` itself.
    ///
    /// Below layer 0's attention only the token edges are read, so its three products (`W_O'`,
    /// the pattern, `W_V'`, about `4·t·d²` per row) are not needed. The gradient at the
    /// embeddings is `g + Σ_h P_hᵀ (g W_O'_h) W_V'_g` (query head `h` of key/value group `g`,
    /// `P_h[q, key]` the frozen pattern with the norms folded in), so a row's edge at `key` is
    /// `Σ_q g[q] · L[key, q]` with `L[key, q] = δ(q, key)·tok[key] + Σ_h P_h[q, key]·K_h[key]` and
    /// `K_h[key] = W_O'_h · (W_V'_g · tok[key])`. `L` does not depend on the pass (a pass over
    /// the first `t` positions reads its first `t` keys and positions), so it is built once per
    /// prompt ([`FrozenModel::bottom_reads`]), and a pass's edges are one product per position,
    /// `2·t²·d` per row in all. On the side-by-side fixture (23 tokens, most features in the
    /// lowest layers) layer 0's three products were a quarter of the backward's operations.
    ///
    /// `None` (the caller then runs the three products) where `L`, `T²·d` floats, would pass
    /// [`BOTTOM_READS_BYTES`] (prompts past about 180 tokens at `d_model` 512, 85 at 2304), or
    /// where the three products cost less.
    pub(crate) fn token_dots(&self, g: &Tensor, tok: &Tensor, t: usize) -> Result<Option<Tensor>> {
        let crate::attention_cpu::Heads { h, kv, dh, d, .. } =
            crate::attention_cpu::Heads::of(&self.model.cfg);
        let (k, _, _) = g.dims3().ctx("gradient shape")?;
        let direct_cost = t * d * h * dh + h * t * t * dh + t * kv * dh * d;
        let read_cost = t * t * d;
        let big_t = self.n_pos;
        if read_cost >= direct_cost
            || k == 0
            || big_t * big_t * d * self.dtype.size_in_bytes() > BOTTOM_READS_BYTES
        {
            return Ok(None);
        }
        let clock = Instant::now();
        let l = self.bottom_reads(tok)?;
        let dots = match crate::attention_cpu::token_dots_f32(g, &l) {
            Some(dots) => dots?,
            None => {
                let l = l
                    .narrow(0, 0, t)
                    .and_then(|l| l.narrow(1, 0, t * d))
                    .ctx("token reads")?;
                g.reshape((k, t * d))
                    .and_then(|g| g.matmul(&l.t()?))
                    .ctx("token reads")?
            }
        };
        self.count_kernel(Kernel::BottomLayer, 2.0 * (k * read_cost) as f64, clock);
        Ok(Some(dots))
    }

    /// `L` of [`FrozenModel::token_dots`] for the whole prompt, `[T, T·d]` (row `key`, column
    /// block `q`), built from `tok` `[≥T, d]` on first use and kept for later passes (both pass
    /// threads share it); rebuilt for another tensor of token vectors.
    fn bottom_reads(&self, tok: &Tensor) -> Result<Tensor> {
        let mut cached = self.bottom.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, l)) = cached.as_ref() {
            if *id == tok.id() {
                return Ok(l.clone());
            }
        }
        let fl = &self.layers[0];
        let crate::attention_cpu::Heads { h, kv, dh, rep, d } =
            crate::attention_cpu::Heads::of(&self.model.cfg);
        let t = self.n_pos;
        let x = tok
            .narrow(0, 0, t)
            .and_then(|x| x.to_dtype(self.dtype))
            .ctx("token vectors")?;
        // K: U = tok · W_V'ᵀ [t, kv·dh] per query head [h, t, dh], times W_O'_hᵀ: [key, h, d].
        let wo = fl
            .w_o_bwd
            .reshape((d, h, dh))
            .and_then(|w| w.permute((1, 2, 0)))
            .and_then(|w| w.contiguous())
            .ctx("W_O' by head")?;
        let kmat = x
            .matmul(&fl.w_v_bwd.t().ctx("W_V'")?)
            .and_then(|u| u.reshape((t, kv, 1, dh)))
            .and_then(|u| u.broadcast_as((t, kv, rep, dh)))
            .and_then(|u| u.contiguous())
            .and_then(|u| u.reshape((t, h, dh)))
            .and_then(|u| u.transpose(0, 1))
            .and_then(|u| u.contiguous())
            .and_then(|u| u.matmul(&wo))
            .and_then(|km| km.transpose(0, 1))
            .and_then(|km| km.contiguous())
            .ctx("token reads")?;
        // The pattern as [key, query, head] (group g's head r is head g·rep + r), times K:
        // [key, query, d], plus each token at its own position.
        let l = fl
            .pattern_grouped
            .narrow(1, 0, t)
            .and_then(|p| p.narrow(3, 0, t))
            .and_then(|p| p.permute((1, 3, 0, 2)))
            .and_then(|p| p.contiguous())
            .and_then(|p| p.reshape((t, t, h)))
            .and_then(|p| p.matmul(&kmat))
            .and_then(|l| {
                let eye = Tensor::eye(t, self.dtype, x.device())?.unsqueeze(2)?;
                l + eye.broadcast_mul(&x.unsqueeze(1)?)?
            })
            .and_then(|l| l.reshape((t, t * d)))
            .ctx("token reads")?;
        let flops = 2.0 * (t * (kv * dh * d + h * dh * d + t * h * d)) as f64;
        self.tally.add(Kernel::BottomLayer, flops, None);
        *cached = Some((tok.id(), l.clone()));
        Ok(l)
    }

    /// `g` `[k, t, d]` with zero rows appended up to `n` rows (unchanged when `k ≥ n`).
    fn pad_rows(&self, g: Tensor, n: usize) -> Result<Tensor> {
        let (k, t, d) = g.dims3().ctx("gradient shape")?;
        if n <= k {
            return Ok(g);
        }
        let zeros = Tensor::zeros((n - k, t, d), self.dtype, g.device()).ctx("gradient buffer")?;
        Tensor::cat(&[&g, &zeros], 0).ctx("gradient buffer")
    }

    /// Adds the seeds whose read layer is `layer` into `g` `[n, t, d]`.
    pub(crate) fn inject(
        &self,
        g: Tensor,
        seeds: &Seeds,
        layer: usize,
        site: ReadSite,
        t: usize,
    ) -> Result<Tensor> {
        self.inject_rows(g, seeds, &seeds_at(seeds, layer), site, t)
    }

    /// Adds seeds `rows` into `g` `[n, t, d]`.
    fn inject_rows(
        &self,
        g: Tensor,
        seeds: &Seeds,
        rows: &[usize],
        site: ReadSite,
        t: usize,
    ) -> Result<Tensor> {
        if rows.is_empty() {
            return Ok(g);
        }
        let (n, _, d) = g.dims3().ctx("gradient shape")?;
        let (vals, idx) = self.seed_rows(seeds, rows, site, t, 0)?;
        g.reshape((n * t, d))
            .and_then(|g| g.index_add(&idx, &vals, 0))
            .and_then(|g| g.reshape((n, t, d)))
            .ctx("injecting seeds")
    }

    /// Forward through block `l`'s attention in the frozen model: the tangent added to the
    /// residual stream by attention, for a tangent `r` `[n, t, d]` at `resid_pre`.
    fn attention_jvp(&self, l: usize, r: &Tensor, t: usize) -> Result<Tensor> {
        let cfg = &self.model.cfg;
        let fl = &self.layers[l];
        let w = &self.model.weights.blocks[l].attn;
        let (n, _, d) = r.dims3().ctx("tangent shape")?;
        let (h, kv, dh, rep) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.n_rep());
        let x = fl.ln1.apply(r, t).ctx("ln1 forward")?;
        // v = x W_Vᵀ, grouped per key/value head: [kv, t_k, n·dh]
        let v = x
            .reshape((n * t, d))
            .and_then(|x| x.matmul(&w.v.weight.t()?))
            .and_then(|v| v.reshape((n, t, kv, dh)))
            .and_then(|v| v.permute((2, 1, 0, 3)))
            .and_then(|v| v.contiguous())
            .and_then(|v| v.reshape((kv, 1, t, n * dh)))
            .and_then(|v| v.broadcast_as((kv, rep, t, n * dh)))
            .and_then(|v| v.reshape((h, t, n * dh)))
            .ctx("v_proj forward")?;
        // z_h = P_h v: the pattern [H, q, k] is the transpose of the stored one.
        let p = fl
            .pattern_t
            .narrow(1, 0, t)
            .and_then(|p| p.narrow(2, 0, t))
            .and_then(|p| p.transpose(1, 2))
            .and_then(|p| p.contiguous())
            .ctx("pattern cone")?;
        let z = p
            .matmul(&v)
            .and_then(|z| z.reshape((h, t, n, dh)))
            .and_then(|z| z.permute((2, 1, 0, 3)))
            .and_then(|z| z.contiguous())
            .and_then(|z| z.reshape((n * t, h * dh)))
            .ctx("pattern forward")?;
        let o = z
            .matmul(&w.o.weight.t().ctx("o_proj")?)
            .and_then(|o| o.reshape((n, t, d)))
            .ctx("o_proj forward")?;
        self.count(
            2.0 * (n * t) as f64 * (d * h * dh + kv * dh * d) as f64
                + 2.0 * (h * t * t * n * dh) as f64,
        );
        match &fl.ln1_post {
            Some(post) => post.apply(&o, t).ctx("ln1_post forward"),
            None => Ok(o),
        }
    }

    /// Forward-mode pass of the frozen model: pushes the tangent `embed` `[n, t, d_model]`
    /// (at `hook_embed`) up through every layer, with `mlp` giving the MLP's tangent map. The
    /// transpose of [`FrozenModel::vjp`]; used where there are fewer tangents than seeds.
    pub fn jvp(
        &self,
        embed: &Tensor,
        mlp: &dyn MlpJvp,
        on_neurons: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let (_, t, _) = embed.dims3().ctx("tangent shape")?;
        let mut r = embed.to_dtype(self.dtype).ctx("tangent dtype")?;
        for l in 0..self.layers.len() {
            r = (&r + self.attention_jvp(l, &r, t)?).ctx("residual")?;
            let x = self.layers[l].ln2.apply(&r, t).ctx("ln2 forward")?;
            let (n, _, _) = x.dims3().ctx("tangent shape")?;
            self.count(MlpJvp::flops(mlp, l, n * t));
            let out = mlp.jvp(l, &x, on_neurons)?;
            let out = match &self.layers[l].ln2_post {
                Some(post) => post.apply(&out, t).ctx("ln2_post forward")?,
                None => out,
            };
            r = (r + out).ctx("residual")?;
        }
        Ok(())
    }

    /// Backward through block `l`'s attention: from the gradient at `resid_mid` to `resid_pre`.
    /// Three matrix products with the frozen norms folded into the operators (see
    /// [`FrozenLayer`]).
    pub(crate) fn attention_vjp(&self, l: usize, g_mid: &Tensor, t: usize) -> Result<Tensor> {
        let fl = &self.layers[l];
        let heads = crate::attention_cpu::Heads::of(&self.model.cfg);
        let fast = crate::attention_cpu::attention_vjp_f32(
            &heads,
            g_mid,
            &fl.w_o_bwd,
            &fl.w_v_bwd,
            &fl.pattern_grouped,
        );
        let Some(fast) = fast else {
            return self.attention_vjp_candle(l, g_mid, t);
        };
        let (g, [o_proj, pattern_mix, v_proj]) = fast?;
        let (n, _, d) = g.dims3().ctx("gradient shape")?;
        let (h, kv, dh) = (heads.h, heads.kv, heads.dh);
        self.count_seconds(Kernel::OProj, 2.0 * (n * t * d * h * dh) as f64, o_proj);
        self.count_seconds(
            Kernel::PatternMix,
            2.0 * (h * t * t * n * dh) as f64,
            pattern_mix,
        );
        self.count_seconds(Kernel::VProj, 2.0 * (n * t * kv * dh * d) as f64, v_proj);
        Ok(g)
    }

    /// [`FrozenModel::attention_vjp`] through candle's operations, for any device and dtype.
    pub(crate) fn attention_vjp_candle(
        &self,
        l: usize,
        g_mid: &Tensor,
        t: usize,
    ) -> Result<Tensor> {
        let cfg = &self.model.cfg;
        let fl = &self.layers[l];
        let (n, _, d) = g_mid.dims3().ctx("gradient shape")?;
        let (h, kv, dh, rep) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.n_rep());
        // attn_out = post(z W_Oᵀ)  ⇒  g_z = g W_O' ; arranged [kv, rep·t, n·dh].
        let clock = Instant::now();
        let g_z = g_mid
            .reshape((n * t, d))
            .and_then(|g| g.matmul(&fl.w_o_bwd))
            .and_then(|g| g.reshape((n, t, h, dh)))
            .and_then(|g| g.permute((2, 1, 0, 3)))
            .and_then(|g| g.contiguous())
            .and_then(|g| g.reshape((kv, rep * t, n * dh)))
            .ctx("o_proj backward")?;
        self.count_kernel(Kernel::OProj, 2.0 * (n * t * d * h * dh) as f64, clock);
        let clock = Instant::now();
        // Keys × (query heads of the group, queries): sums over the group's heads in the product.
        let p = fl
            .pattern_grouped
            .narrow(1, 0, t)
            .and_then(|p| p.narrow(3, 0, t))
            .and_then(|p| p.contiguous())
            .and_then(|p| p.reshape((kv, t, rep * t)))
            .ctx("pattern cone")?;
        let g_v = p
            .matmul(&g_z)
            .and_then(|g| g.reshape((kv, t, n, dh)))
            .and_then(|g| g.permute((2, 1, 0, 3)))
            .and_then(|g| g.contiguous())
            .and_then(|g| g.reshape((n * t, kv * dh)))
            .ctx("pattern backward")?;
        self.count_kernel(Kernel::PatternMix, 2.0 * (h * t * t * n * dh) as f64, clock);
        let clock = Instant::now();
        // v = (r ⊙ w / s) W_Vᵀ  ⇒  g_r = g_v W_V' (the 1/s is already in the pattern).
        let g = g_v
            .matmul(&fl.w_v_bwd)
            .and_then(|g| g.reshape((n, t, d)))
            .and_then(|g_x| g_mid + g_x)
            .ctx("v_proj backward")?;
        self.count_kernel(Kernel::VProj, 2.0 * (n * t * kv * dh * d) as f64, clock);
        Ok(g)
    }

    /// The batched vector–Jacobian product of the frozen model for `seeds`.
    ///
    /// Seeds at layer `L < n_layers` are injected at `read` of layer `L`; seeds at `n_layers` at
    /// the final norm's output. Going down, `visit.write_site(l, g)` receives the gradient at the
    /// `write` site of every layer below the highest seed, and `visit.embed` the gradient at the
    /// embeddings. Only positions up to the last seed's are computed.
    pub fn vjp(
        &self,
        seeds: &Seeds,
        read: ReadSite,
        write: WriteSite,
        mlp: &dyn MlpPath,
        visit: &mut dyn Visitor,
    ) -> Result<()> {
        let n = seeds.layers.len();
        if n == 0 {
            return Ok(());
        }
        if seeds.positions.len() != n || seeds.vectors.dim(0).ctx("seed shape")? != n {
            return Err(Error::Invalid(
                "seed vectors, layers and positions differ in length".into(),
            ));
        }
        let n_layers = self.layers.len();
        if let Some(&bad) = seeds.layers.iter().find(|&&l| l > n_layers) {
            return Err(Error::Invalid(format!(
                "seed layer {bad} above the model's {n_layers} layers"
            )));
        }
        if let Some(&bad) = seeds.positions.iter().find(|&&p| p >= self.n_pos) {
            return Err(Error::Invalid(format!(
                "seed position {bad} beyond the prompt's {} positions",
                self.n_pos
            )));
        }
        let t = seeds.positions.iter().max().map_or(0, |&p| p + 1);
        let top = *seeds.layers.iter().max().unwrap_or(&0);
        let d = self.model.cfg.d_model;
        let dev = seeds.vectors.device();
        // Row i is zero above its seed's layer. Only the prefix of rows up to the last seed at
        // or above the current layer is computed (`g` grows as the pass goes down), so a batch
        // sorted by descending layer costs each row only the layers below its seed.
        let mut g = Tensor::zeros((0, t, d), self.dtype, dev).ctx("gradient buffer")?;
        if top == n_layers {
            let clock = Instant::now();
            g = self.grow_and_inject(g, seeds, n_layers, read, t)?;
            self.count_kernel(Kernel::Seeds, 0.0, clock);
        }
        for l in (0..top.min(n_layers - 1) + 1).rev() {
            if l < top {
                let k = g.dim(0).ctx("gradient shape")?;
                let clock = Instant::now();
                let g_write = self.to_write_site(l, write, &g, t)?;
                self.count_kernel(Kernel::MlpPath, 0.0, clock);
                if visit.takes_row_prefix() || k == n {
                    visit.write_site(l, &g_write)?;
                } else {
                    visit.write_site(l, &self.pad_rows(g_write.clone(), n)?)?;
                }
                let clock = Instant::now();
                if let Some((site, g_read)) = mlp.vjp(l, &g_write)? {
                    g = (g + self.read_to_resid_mid(l, site, &g_read, t)?).ctx("MLP path")?;
                }
                self.count_kernel(Kernel::MlpPath, mlp.flops(l, k * t), clock);
            }
            if l == 0 {
                if let Some(dots) = self.bottom_token_dots(&g, seeds, read, t, &*visit)? {
                    return visit.embed_dots(&dots);
                }
            }
            g = self.attend_and_grow(g, seeds, l, read, t)?;
        }
        let g = self.pad_rows(g, n)?;
        visit.embed(&g)
    }

    /// The token edges `[n, t]` of every row of the batch at the bottom layer, for a visitor
    /// that reads only those ([`Visitor::embed_reads`]): the rows under way (`g`, at layer 0's
    /// `resid_mid`) through [`FrozenModel::token_dots`], the rows seeded at layer 0 through
    /// their own attention (one position each). `None` where that does not apply or does not
    /// pay; the pass then goes through layer 0 as any other.
    fn bottom_token_dots(
        &self,
        g: &Tensor,
        seeds: &Seeds,
        read: ReadSite,
        t: usize,
        visit: &dyn Visitor,
    ) -> Result<Option<Tensor>> {
        let Some(tok) = visit.embed_reads() else {
            return Ok(None);
        };
        let n = seeds.layers.len();
        let k = g.dim(0).ctx("gradient shape")?;
        let at_layer = seeds_at(seeds, 0);
        if !at_layer.is_empty() && !joins_fresh(seeds, &at_layer, 0, k) {
            return Ok(None);
        }
        let Some(old) = self.token_dots(g, &tok, t)? else {
            return Ok(None);
        };
        let mut parts = vec![old];
        if !at_layer.is_empty() {
            let new = self.seeded_attention(0, seeds, &at_layer, read, t)?;
            let clock = Instant::now();
            parts.push(embedding_dots(&new, &tok)?);
            self.count_kernel(Kernel::BottomLayer, 2.0 * new.elem_count() as f64, clock);
        }
        let rows = k + at_layer.len();
        if rows < n {
            parts.push(Tensor::zeros((n - rows, t), self.dtype, g.device()).ctx("token reads")?);
        }
        Ok(Some(Tensor::cat(&parts, 0).ctx("token reads")?))
    }
}
