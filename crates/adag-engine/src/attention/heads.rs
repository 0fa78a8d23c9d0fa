//! The frozen model's backward pass with the head axis kept.
//!
//! In the frozen model the gradient at `resid_pre` of layer `l` is
//! `g_pre = g_mid + Σ_h A_{l,h}ᵀ g_mid`, where `A_{l,h}` is head `h`'s OV map (pattern, `W_V`,
//! `W_O`, frozen norms). Unrolling this recursion, the gradient at any write site below is a sum
//! of *channels*: channel 0 carries the seeds down through the residual stream and the MLP paths
//! only (no attention); channel `1 + l·H + h` carries `A_{l,h}ᵀ g_mid` — the head's share of the
//! *full* gradient at layer `l` — down through residual and MLP paths. Each path from a source
//! to a seed is thus counted once, in the channel of the **first head it crosses above the
//! source** (the one that reads the source's position). So the channels sum exactly to the
//! ordinary VJP, and for a source at layer `l`, channel `(l + 1, h)` equals the change of the
//! edge when head `h` of layer `l + 1` has its OV zeroed (every path through that head crosses
//! it first). All channels run as one batch of `n · C` gradient rows: the MLP backward and the
//! reads are the ordinary batched products on more rows.

use candle_core::Tensor;

use crate::error::{Context, Error, Result};
use crate::frozen::{FrozenModel, MlpPath, ReadSite, Seeds, Visitor, WriteSite};

/// How [`vjp_by_head`] lays out its gradient rows: row `i · n_channels + c` is seed `i`'s
/// channel `c`; channel 0 is residual/direct, channel `1 + l · n_heads + h` is head `h` of
/// layer `l`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadChannels {
    /// Heads per layer.
    pub n_heads: usize,
    /// Layers.
    pub n_layers: usize,
}

impl HeadChannels {
    /// Channels per seed: `1 + n_layers · n_heads`.
    pub fn n_channels(&self) -> usize {
        1 + self.n_layers * self.n_heads
    }

    /// The channel of head `head` at layer `layer`.
    pub fn channel(&self, layer: usize, head: usize) -> usize {
        1 + layer * self.n_heads + head
    }
}

/// Per-head backward through layer `l`'s frozen attention: `[n, t, d]` at `resid_mid` to
/// `[n, H, t, d]` at `resid_pre`, one slice per query head (the residual term excluded). The
/// same three products as the ordinary backward, with the head axis kept instead of summed:
/// the grouped pattern is split into its `rep` query heads and `W_V` applied per key/value head.
pub fn heads_vjp(frozen: &FrozenModel, l: usize, g_mid: &Tensor, t: usize) -> Result<Tensor> {
    let cfg = &frozen.model().cfg;
    let (w_o, w_v, grouped) = frozen.attention_operators(l);
    let (n, _, d) = g_mid.dims3().ctx("gradient shape")?;
    let (h, kv, dh, rep) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.n_rep());
    // g_z = g W_O' per head: [H, q, n·dh].
    let g_z = g_mid
        .reshape((n * t, d))
        .and_then(|g| g.matmul(w_o))
        .and_then(|g| g.reshape((n, t, h, dh)))
        .and_then(|g| g.permute((2, 1, 0, 3)))
        .and_then(|g| g.contiguous())
        .and_then(|g| g.reshape((h, t, n * dh)))
        .ctx("per-head o_proj backward")?;
    // [kv, key, rep, query] → [kv·rep = H, key, query] (head index kv_i·rep + r, as the model).
    let p = grouped
        .narrow(1, 0, t)
        .and_then(|p| p.narrow(3, 0, t))
        .and_then(|p| p.permute((0, 2, 1, 3)))
        .and_then(|p| p.contiguous())
        .and_then(|p| p.reshape((h, t, t)))
        .ctx("per-head pattern")?;
    // g_v per head [H, key, n·dh], grouped by key/value head for W_V': [kv, rep·t·n, dh].
    let g_v = p
        .matmul(&g_z)
        .and_then(|g| g.reshape((kv, rep * t * n, dh)))
        .ctx("per-head pattern backward")?;
    let w_v = w_v.reshape((kv, dh, d)).ctx("grouping W_V")?;
    let out = g_v
        .matmul(&w_v)
        .and_then(|g| g.reshape((h, t, n, d)))
        .and_then(|g| g.permute((2, 0, 1, 3)))
        .and_then(|g| g.contiguous())
        .ctx("per-head v_proj backward")?;
    frozen.count(
        2.0 * (n * t) as f64 * (d * h * dh) as f64
            + 2.0 * (h * t * t * n * dh) as f64
            + 2.0 * (h * t * n * dh * d) as f64,
    );
    Ok(out)
}

/// Adds the seeds read at `layer` into channel 0 of `g` `[n, C, t, d]`.
fn inject_residual(
    frozen: &FrozenModel,
    g: Tensor,
    seeds: &Seeds,
    layer: usize,
    read: ReadSite,
) -> Result<Tensor> {
    if !seeds.layers.contains(&layer) {
        return Ok(g);
    }
    let (_, c, t, _) = g.dims4().ctx("gradient shape")?;
    let res = g
        .narrow(1, 0, 1)
        .and_then(|r| r.squeeze(1))
        .ctx("channel 0")?;
    let res = frozen.inject(res, seeds, layer, read, t)?;
    let mut parts = vec![res.unsqueeze(1).ctx("channel 0")?];
    if c > 1 {
        parts.push(g.narrow(1, 1, c - 1).ctx("head channels")?);
    }
    Tensor::cat(&parts, 1).ctx("channels")
}

/// [`FrozenModel::vjp`] with the gradient split into channels by head (see the module doc).
///
/// `visit` receives gradients of `n · C` rows (`C` = [`HeadChannels::n_channels`]), laid out
/// as [`HeadChannels`] says; summing a seed's channels gives exactly what
/// [`FrozenModel::vjp`] reports for it. Costs about `C` times the ordinary backward for the
/// MLP paths and the reads, plus the per-head attention products.
pub fn vjp_by_head(
    frozen: &FrozenModel,
    seeds: &Seeds,
    read: ReadSite,
    write: WriteSite,
    mlp: &dyn MlpPath,
    visit: &mut dyn Visitor,
) -> Result<HeadChannels> {
    let cfg = &frozen.model().cfg;
    let ch = HeadChannels {
        n_heads: cfg.n_heads,
        n_layers: cfg.n_layers,
    };
    let n = seeds.layers.len();
    if n == 0 {
        return Ok(ch);
    }
    if seeds.positions.len() != n || seeds.vectors.dim(0).ctx("seed shape")? != n {
        return Err(Error::Invalid(
            "seed vectors, layers and positions differ in length".into(),
        ));
    }
    let n_layers = cfg.n_layers;
    if let Some(&bad) = seeds.layers.iter().find(|&&l| l > n_layers) {
        return Err(Error::Invalid(format!(
            "seed layer {bad} above the model's {n_layers} layers"
        )));
    }
    if let Some(&bad) = seeds.positions.iter().find(|&&p| p >= frozen.n_pos()) {
        return Err(Error::Invalid(format!(
            "seed position {bad} beyond the prompt's {} positions",
            frozen.n_pos()
        )));
    }
    let c = ch.n_channels();
    let h = ch.n_heads;
    let t = seeds.positions.iter().max().map_or(0, |&p| p + 1);
    let top = *seeds.layers.iter().max().unwrap_or(&0);
    let d = cfg.d_model;
    let dev = seeds.vectors.device();
    let mut g = Tensor::zeros((n, c, t, d), frozen.dtype(), dev).ctx("gradient buffer")?;
    if top == n_layers {
        g = inject_residual(frozen, g, seeds, n_layers, read)?;
    }
    for l in (0..top.min(n_layers - 1) + 1).rev() {
        if l < top {
            let mut flat = g.reshape((n * c, t, d)).ctx("channel rows")?;
            let g_write = frozen.to_write_site(l, write, &flat, t)?;
            visit.write_site(l, &g_write)?;
            frozen.count(mlp.flops(l, n * c * t));
            if let Some((site, g_read)) = mlp.vjp(l, &g_write)? {
                flat = (flat + frozen.read_to_resid_mid(l, site, &g_read, t)?).ctx("MLP path")?;
            }
            g = flat.reshape((n, c, t, d)).ctx("channel rows")?;
        }
        g = inject_residual(frozen, g, seeds, l, read)?;
        let g_mid = g.sum(1).ctx("full gradient at resid_mid")?;
        let parts = heads_vjp(frozen, l, &g_mid, t)?;
        // Layer l's channels are still zero (nothing above writes them): place the parts there.
        let (lo, hi) = (ch.channel(l, 0), ch.channel(l, 0) + h);
        let mut pieces = vec![g.narrow(1, 0, lo).ctx("channels")?, parts];
        if hi < c {
            pieces.push(g.narrow(1, hi, c - hi).ctx("channels")?);
        }
        g = Tensor::cat(&pieces, 1).ctx("channels")?;
    }
    visit.embed(&g.reshape((n * c, t, d)).ctx("channel rows")?)?;
    Ok(ch)
}
