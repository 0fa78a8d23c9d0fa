//! The instrumented forward pass: one block skeleton for every architecture, recording the
//! quantities the linearised backward passes freeze or read.
//!
//! Batches of prompts with different lengths are left-padded; each item's positions count from
//! its first real token, and padded keys are masked, so every item computes exactly what it
//! computes alone.

use std::path::Path;

use adag_core::{HookName, Site};
use candle_core::{DType, Device, Tensor};

use crate::arch::{self, BlockWeights, TransformerWeights};
use crate::cache::{ActivationCache, CacheFilter};
use crate::config::ModelConfig;
use crate::error::{Context, Error, Result};
use crate::layers::{apply_rope, Rope};
use crate::weights::WeightFiles;

mod kv_cache;
pub use kv_cache::KvCache;
use kv_cache::LayerKv;

/// A batch of token sequences, left-padded to a common width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The unpadded sequences.
    pub tokens: Vec<Vec<u32>>,
    /// Left-pad offset of each item.
    pub pad: Vec<usize>,
    /// Padded width.
    pub width: usize,
}

impl Batch {
    /// Builds a batch; every sequence must be non-empty.
    pub fn new(tokens: Vec<Vec<u32>>) -> Result<Self> {
        if tokens.is_empty() {
            return Err(Error::Input("empty batch: no sequences given".into()));
        }
        if let Some(i) = tokens.iter().position(Vec::is_empty) {
            return Err(Error::Input(format!(
                "sequence {i} of the batch has no tokens (empty prompt?)"
            )));
        }
        let width = tokens.iter().map(Vec::len).max().unwrap_or(0);
        let pad = tokens.iter().map(|t| width - t.len()).collect();
        Ok(Batch { tokens, pad, width })
    }

    /// A batch of one sequence.
    pub fn single(tokens: &[u32]) -> Result<Self> {
        Self::new(vec![tokens.to_vec()])
    }

    /// Number of sequences.
    pub fn size(&self) -> usize {
        self.tokens.len()
    }

    /// Unpadded lengths.
    pub fn lens(&self) -> Vec<usize> {
        self.tokens.iter().map(Vec::len).collect()
    }

    fn padded_ids(&self) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.size() * self.width);
        for (t, &pad) in self.tokens.iter().zip(&self.pad) {
            ids.extend(std::iter::repeat_n(0, pad));
            ids.extend_from_slice(t);
        }
        ids
    }

    /// Position ids: each item counts from 0 at its first real token; pads get 0.
    fn positions(&self) -> Vec<Vec<u32>> {
        self.pad
            .iter()
            .map(|&pad| {
                (0..self.width)
                    .map(|i| i.saturating_sub(pad) as u32)
                    .collect()
            })
            .collect()
    }

    /// Additive attention mask `[batch, 1, q, k]` in f32: 0 where allowed, -inf elsewhere.
    /// Causal, padded keys masked, optional sliding window (see [`mask_rows`]).
    fn mask(&self, window: Option<usize>, device: &Device) -> Result<Tensor> {
        let w = self.width;
        let m: Vec<f32> = self
            .pad
            .iter()
            .flat_map(|&pad| mask_rows(pad, 0, w, w, window))
            .collect();
        Tensor::from_vec(m, (self.size(), 1, w, w), device).context("building the attention mask")
    }
}

/// Additive mask rows (f32, row-major `[n_q, n_k]`: 0 where allowed, -inf elsewhere) for the
/// queries at key positions `first_q..first_q + n_q` of one sequence whose first `pad` keys are
/// padding. Causal, with an optional sliding window. A padded query attends to itself so that
/// its row stays finite; no real query ever reads a padded key.
///
/// Shared by the full forward (`first_q = 0`, square) and the cached one (queries after the
/// cached keys), so both mask exactly alike.
fn mask_rows(
    pad: usize,
    first_q: usize,
    n_q: usize,
    n_k: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let mut m = vec![f32::NEG_INFINITY; n_q * n_k];
    for (i, row) in m.chunks_mut(n_k).enumerate() {
        let q = first_q + i;
        if q < pad {
            row[q] = 0.0;
            continue;
        }
        let lo = window.map_or(pad, |win| pad.max((q + 1).saturating_sub(win)));
        row[lo..=q].fill(0.0);
    }
    m
}

/// Logits and, when asked for, the activation cache.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// `[batch, pos, d_vocab]`, f32, padded coordinates.
    pub logits: Tensor,
    /// The cached hooks.
    pub cache: ActivationCache,
}

impl ForwardOutput {
    /// Logits of batch item `b` at its real positions: `[len, d_vocab]`.
    pub fn item_logits(&self, b: usize) -> Result<Tensor> {
        let (pad, len) = (self.cache.pad[b], self.cache.len[b]);
        self.logits
            .get(b)
            .and_then(|t| t.narrow(0, pad, len))
            .context("slicing logits")
    }

    /// Next-token logits of batch item `b` (its last position): `[d_vocab]`.
    pub fn last_logits(&self, b: usize) -> Result<Tensor> {
        let w = self.logits.dim(1).context("logits shape")?;
        self.logits
            .get(b)
            .and_then(|t| t.get(w - 1))
            .context("slicing logits")
    }
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Dtype of weights and activations (f32 on CPU; bf16/f16 are for GPUs).
    pub dtype: DType,
    /// Where tensors live.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// A loaded model, ready to run.
#[derive(Debug, Clone)]
pub struct Transformer {
    /// Resolved configuration.
    pub cfg: ModelConfig,
    /// Canonical weights.
    pub weights: TransformerWeights,
    rope: Rope,
    /// Gemma-3's rope for sliding-window layers.
    rope_local: Option<Rope>,
    dtype: DType,
    device: Device,
    autograd: bool,
}

impl Transformer {
    /// Loads `dir/config.json` and the safetensors weights.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let cfg = ModelConfig::from_dir(dir)?;
        let files = WeightFiles::open(dir)?;
        Self::from_files(cfg, &files, opts)
    }

    /// Builds the model from a resolved config and opened weight files.
    pub fn from_files(cfg: ModelConfig, files: &WeightFiles, opts: &LoadOptions) -> Result<Self> {
        let weights = arch::load(&cfg, files, opts.dtype, &opts.device)?;
        Ok(Self::from_weights(cfg, weights, opts))
    }

    /// Assembles a model from weights already in canonical form (shapes are trusted).
    pub fn from_weights(cfg: ModelConfig, weights: TransformerWeights, opts: &LoadOptions) -> Self {
        let rope = Rope::new(&cfg.rope, cfg.d_head, &opts.device);
        let rope_local = cfg
            .rope_local
            .as_ref()
            .map(|r| Rope::new(r, cfg.d_head, &opts.device));
        Transformer {
            cfg,
            weights,
            rope,
            rope_local,
            dtype: opts.dtype,
            device: opts.device.clone(),
            autograd: false,
        }
    }

    /// Makes every op of the forward pass differentiable by candle's autograd (for training,
    /// and as a test oracle). The default uses a fused softmax that has no backward.
    pub fn with_autograd(mut self, on: bool) -> Self {
        self.autograd = on;
        self
    }

    /// Floating-point operations of one forward pass over `batch × pos` tokens (multiply-adds
    /// counted as two), as computed: attention scores over the full padded square.
    pub fn forward_flops(&self, batch: usize, pos: usize) -> f64 {
        let c = &self.cfg;
        let (d, hq, hkv) = (
            c.d_model as f64,
            (c.n_heads * c.d_head) as f64,
            (c.n_kv_heads * c.d_head) as f64,
        );
        let per_token_layer =
            2.0 * (d * hq * 2.0 + d * hkv * 2.0 + 3.0 * d * c.d_mlp as f64) + 4.0 * pos as f64 * hq;
        let tokens = (batch * pos) as f64;
        tokens * (c.n_layers as f64 * per_token_layer + 2.0 * d * c.d_vocab as f64)
    }

    /// Dtype of weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device of weights and activations.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[len, d_vocab]` for one sequence, nothing cached.
    pub fn logits(&self, tokens: &[u32]) -> Result<Tensor> {
        self.forward(&Batch::single(tokens)?, &CacheFilter::none())?
            .item_logits(0)
    }

    /// Runs the batch, keeping the hooks `filter` selects.
    pub fn forward(&self, batch: &Batch, filter: &CacheFilter) -> Result<ForwardOutput> {
        self.forward_with(batch, filter, &mut NoHooks)
    }

    /// Runs the batch, passing every hook site through `hooks` (which may replace the value:
    /// frozen scales and patterns, interventions, steering) and keeping what `filter` selects
    /// (the values after editing).
    pub fn forward_with(
        &self,
        batch: &Batch,
        filter: &CacheFilter,
        hooks: &mut dyn ForwardHooks,
    ) -> Result<ForwardOutput> {
        self.check_vocab(batch.tokens.iter().flatten())?;
        self.cfg.check_prompt_len(batch.width)?;
        let (b, w) = (batch.size(), batch.width);
        let wants_logits = hooks.wants_logits();
        let last_only = hooks.last_logits_only();
        let skip_mlp: Vec<bool> = (0..self.weights.blocks.len())
            .map(|l| hooks.replaces_mlp(l))
            .collect();
        let mut cache = ActivationCache::new(batch.pad.clone(), batch.lens());
        let mut site = |hook: HookName, t: Tensor| -> Result<Tensor> {
            let t = hooks.edit(hook, t)?;
            if filter.wants(hook) {
                cache.insert(hook, t.clone());
            }
            Ok(t)
        };

        let mut h = site(HookName::Embed, self.embed(&batch.padded_ids(), b, w)?)?;
        let ropes = self.layer_ropes(&batch.positions())?;
        let masks = self.layer_masks(|win| batch.mask(win, &self.device))?;
        for (l, block) in self.weights.blocks.iter().enumerate() {
            let (cos, sin) = &ropes[l];
            h = self
                .block(
                    l,
                    block,
                    h,
                    (cos, sin),
                    &masks[l],
                    None,
                    skip_mlp[l],
                    &mut site,
                )
                .map_err(|e| in_layer(l, e))?;
        }
        if !wants_logits {
            self.norm(
                &self.weights.ln_final,
                &h,
                HookName::LnFinalScale,
                HookName::LnFinalNormalized,
                &mut site,
            )?;
            let logits = Tensor::zeros((b, w, 0), DType::F32, &self.device).context("logits")?;
            return Ok(ForwardOutput { logits, cache });
        }
        let logits = self.unembed(&h, last_only, &mut site)?;
        let out = ForwardOutput { logits, cache };
        self.check_finite(batch, &out)?;
        Ok(out)
    }

    /// Refuses non-finite next-token logits (NaN/Inf weights, an overflowing dtype) instead of
    /// printing NaN probabilities or writing NaN attributions. A non-finite value at any position
    /// reaches the last one through causal attention, so the last position of each item is
    /// checked (one `[d_vocab]` read per item); only on failure is the batch re-run layer by
    /// layer to name the first layer whose residual stream is non-finite.
    fn check_finite(&self, batch: &Batch, out: &ForwardOutput) -> Result<()> {
        for item in 0..batch.size() {
            let last = out
                .last_logits(item)?
                .to_dtype(DType::F32)
                .and_then(|t| t.to_vec1::<f32>())
                .context("reading logits")?;
            if last.iter().all(|x| x.is_finite()) {
                continue;
            }
            let at = self.first_non_finite(batch, item)?;
            return Err(Error::NonFinite {
                item,
                at: at.unwrap_or_else(|| "the logits".into()),
            });
        }
        Ok(())
    }

    /// The first hook (`hook_embed` or `blocks.{l}.hook_resid_post`) where batch item `item`'s
    /// residual stream holds a non-finite value, re-running the batch without hooks.
    fn first_non_finite(&self, batch: &Batch, item: usize) -> Result<Option<String>> {
        let (b, w) = (batch.size(), batch.width);
        let finite = |h: &Tensor| -> Result<bool> {
            let v = h
                .get(item)
                .and_then(|t| t.narrow(0, batch.pad[item], batch.tokens[item].len()))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .context("reading the residual stream")?;
            Ok(v.iter().all(|x| x.is_finite()))
        };
        let mut site = |_, x: Tensor| -> Result<Tensor> { Ok(x) };
        let mut h = self.embed(&batch.padded_ids(), b, w)?;
        if !finite(&h)? {
            return Ok(Some(HookName::Embed.to_string()));
        }
        let (cos, sin) = self.rope.tables(&batch.positions(), self.dtype)?;
        let masks = self.layer_masks(|win| batch.mask(win, &self.device))?;
        for (l, block) in self.weights.blocks.iter().enumerate() {
            h = self
                .block(l, block, h, (&cos, &sin), &masks[l], None, false, &mut site)
                .map_err(|e| in_layer(l, e))?;
            if !finite(&h)? {
                return Ok(Some(HookName::Block(l, Site::ResidPost).to_string()));
            }
        }
        Ok(None)
    }

    /// Per layer, the `(cos, sin)` tables: one shared pair, or (Gemma-3) the local rope's pair on
    /// sliding-window layers and the global one elsewhere. Each table is built once.
    pub(crate) fn layer_ropes(&self, positions: &[Vec<u32>]) -> Result<Vec<(Tensor, Tensor)>> {
        let global = self.rope.tables(positions, self.dtype)?;
        let local = match &self.rope_local {
            Some(r) => Some(r.tables(positions, self.dtype)?),
            None => None,
        };
        Ok(self
            .cfg
            .sliding_window
            .iter()
            .map(|w| match (w, &local) {
                (Some(_), Some(loc)) => loc.clone(),
                _ => global.clone(),
            })
            .collect())
    }

    /// Refuses token ids outside the vocabulary (candle's index_select would panic or read
    /// garbage on some devices instead of failing cleanly).
    fn check_vocab<'a>(&self, tokens: impl IntoIterator<Item = &'a u32>) -> Result<()> {
        match tokens
            .into_iter()
            .find(|&&t| t as usize >= self.cfg.d_vocab)
        {
            Some(bad) => Err(Error::Input(format!(
                "token id {bad} is out of range: the model's vocabulary has {} entries",
                self.cfg.d_vocab
            ))),
            None => Ok(()),
        }
    }

    /// Embeds `ids` (row-major `[b, w]`) into the residual stream `[b, w, d_model]`, with
    /// Gemma's embedding scale.
    fn embed(&self, ids: &[u32], b: usize, w: usize) -> Result<Tensor> {
        let ids = Tensor::from_slice(ids, b * w, &self.device).context("token ids")?;
        let h = self
            .weights
            .embed
            .index_select(&ids, 0)
            .and_then(|t| t.reshape((b, w, self.cfg.d_model)))
            .context("embedding lookup")?;
        match self.cfg.embed_scale {
            Some(scale) => {
                // transformers multiplies by sqrt(d_model) rounded to the activation dtype.
                let s = Tensor::new(&[scale as f32], &self.device)
                    .and_then(|t| t.to_dtype(self.dtype))
                    .and_then(|t| t.to_dtype(DType::F64))
                    .and_then(|t| t.to_vec1::<f64>())
                    .context("embedding scale")?[0];
                (h * s).context("embedding scale")
            }
            None => Ok(h),
        }
    }

    /// One attention mask per layer: `build(None)` for full causal attention and
    /// `build(Some(window))` for sliding-window layers, each distinct mask built once.
    fn layer_masks(&self, build: impl Fn(Option<usize>) -> Result<Tensor>) -> Result<Vec<Tensor>> {
        let mut built: std::collections::BTreeMap<Option<usize>, Tensor> = Default::default();
        self.cfg
            .sliding_window
            .iter()
            .map(|&win| {
                if let Some(m) = built.get(&win) {
                    return Ok(m.clone());
                }
                let m = build(win)?;
                built.insert(win, m.clone());
                Ok(m)
            })
            .collect()
    }

    /// Final norm, unembedding and Gemma-2's final soft-cap: residual `[b, w, d_model]` to f32
    /// logits `[b, w, d_vocab]`, or `[b, 1, d_vocab]` at the last position when `last_only`
    /// (the final norm's hooks still see every position).
    fn unembed(
        &self,
        h: &Tensor,
        last_only: bool,
        site: &mut impl FnMut(HookName, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let x = self.norm(
            &self.weights.ln_final,
            h,
            HookName::LnFinalScale,
            HookName::LnFinalNormalized,
            site,
        )?;
        let x = if last_only {
            let w = x.dim(1).context("residual shape")?;
            x.narrow(1, w - 1, 1).context("last position")?
        } else {
            x
        };
        let unembed = crate::layers::Linear {
            weight: self.weights.unembed.clone(),
            bias: None,
        };
        let logits = unembed
            .forward(&x)
            .and_then(|t| t.to_dtype(DType::F32))
            .context("unembedding")?;
        match self.cfg.final_softcap {
            Some(cap) => ((logits / cap).and_then(|t| t.tanh()).and_then(|t| t * cap))
                .context("final logit soft-cap"),
            None => Ok(logits),
        }
    }

    /// RMSNorm with its scale and `x / scale` passed through the hook sites.
    fn norm(
        &self,
        norm: &crate::layers::RmsNorm,
        x: &Tensor,
        scale_hook: HookName,
        normalized_hook: HookName,
        site: &mut impl FnMut(HookName, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let scale = site(scale_hook, norm.compute_scale(x).context("norm scale")?)?;
        let (y, normed) = norm.normalize(x, &scale).context("norm")?;
        site(normalized_hook, normed)?;
        Ok(y)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: usize,
        w: &BlockWeights,
        resid_pre: Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: &Tensor,
        past: Option<&mut LayerKv>,
        skip_mlp: bool,
        site: &mut impl FnMut(HookName, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let hook = |s| HookName::Block(l, s);
        let resid_pre = site(hook(Site::ResidPre), resid_pre)?;
        let x = self.norm(
            &w.ln1,
            &resid_pre,
            hook(Site::Ln1Scale),
            hook(Site::Ln1Normalized),
            site,
        )?;

        let z = self.attention(l, w, &x, cos, sin, mask, past, site)?;
        let mut attn_out = w.attn.o.forward(&z).context("o_proj")?;
        if let Some(norm) = &w.ln1_post {
            let scale = site(
                hook(Site::Ln1PostScale),
                norm.compute_scale(&attn_out).context("ln1_post")?,
            )?;
            attn_out = norm.normalize(&attn_out, &scale).context("ln1_post")?.0;
        }
        let attn_out = site(hook(Site::AttnOut), attn_out)?;
        let resid_mid = site(
            hook(Site::ResidMid),
            (&resid_pre + &attn_out).context("residual after attention")?,
        )?;

        let normed = self.norm(
            &w.ln2,
            &resid_mid,
            hook(Site::Ln2Scale),
            hook(Site::Ln2Normalized),
            site,
        )?;
        let x2 = site(hook(Site::MlpIn), normed)?;
        let raw = if skip_mlp {
            // The hooks overwrite the MLP's output: its value would be thrown away.
            let zeros = x2.zeros_like().context("MLP output")?;
            site(hook(Site::MlpOut), zeros)?
        } else {
            let gate = site(
                hook(Site::MlpPre),
                w.mlp.gate.forward(&x2).context("gate_proj")?,
            )?;
            let up = site(
                hook(Site::MlpPreLinear),
                w.mlp.up.forward(&x2).context("up_proj")?,
            )?;
            let act = self.cfg.activation.apply(&gate);
            let post = site(
                hook(Site::MlpPost),
                act.and_then(|a| a * &up).context("MLP activation")?,
            )?;
            site(
                hook(Site::MlpOut),
                w.mlp.down.forward(&post).context("down_proj")?,
            )?
        };
        let mlp_out = match &w.ln2_post {
            Some(norm) => {
                let scale = site(
                    hook(Site::Ln2PostScale),
                    norm.compute_scale(&raw).context("ln2_post")?,
                )?;
                norm.normalize(&raw, &scale).context("ln2_post")?.0
            }
            None => raw,
        };
        let mlp_out = site(hook(Site::HookMlpOut), mlp_out)?;
        site(
            hook(Site::ResidPost),
            (resid_mid + &mlp_out).context("residual after MLP")?,
        )
    }

    /// Returns the heads' mixed values `[batch, pos, n_heads·d_head]`; the pattern
    /// `[batch, n_heads, q, k]` passes through the `attn.hook_pattern` site.
    ///
    /// With `past`, this layer's cached keys and values come before the new ones (the queries
    /// are the last `pos` positions and `mask` is `[1, 1, pos, cached + pos]`), and the new ones
    /// are appended to the cache.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        l: usize,
        w: &BlockWeights,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        past: Option<&mut LayerKv>,
        site: &mut impl FnMut(HookName, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3().context("attention input")?;
        let (h, kv, dh, rep) = (cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.n_rep());
        let heads = |y: Tensor, n: usize| {
            y.reshape((b, t, n, dh))
                .and_then(|y| y.transpose(1, 2))
                .and_then(|y| y.contiguous())
        };
        let mut q = w
            .attn
            .q
            .forward(x)
            .and_then(|y| heads(y, h))
            .context("q_proj")?;
        let mut k = w
            .attn
            .k
            .forward(x)
            .and_then(|y| heads(y, kv))
            .context("k_proj")?;
        let v = w
            .attn
            .v
            .forward(x)
            .and_then(|y| heads(y, kv))
            .context("v_proj")?;
        if let Some(n) = &w.attn.q_norm {
            q = n.forward(&q).context("q_norm")?.0;
        }
        if let Some(n) = &w.attn.k_norm {
            k = n.forward(&k).context("k_norm")?.0;
        }
        let q = apply_rope(&q, cos, sin).context("rotary embedding of queries")?;
        let k = apply_rope(&k, cos, sin).context("rotary embedding of keys")?;
        let (k, v) = match past {
            Some(past) => past.append(k, v)?,
            None => (k, v),
        };
        let tk = k.dim(2).context("keys")?;
        // Query heads h·rep..(h+1)·rep share key/value head h: fold them into the row dimension
        // instead of copying keys and values `rep` times.
        let q = q
            .reshape((b, kv, rep * t, dh))
            .context("grouping query heads")?;
        let scores = q
            .matmul(&k.t().context("keys transpose")?)
            .and_then(|s| s.reshape((b, h, t, tk)))
            .and_then(|s| s * cfg.attn_scale)
            .and_then(|s| s.to_dtype(DType::F32))
            .context("attention scores")?;
        let scores = match cfg.attn_softcap {
            Some(cap) => ((scores / cap).and_then(|s| s.tanh()).and_then(|s| s * cap))
                .context("attention soft-cap")?,
            None => scores,
        };
        let pattern = scores
            .broadcast_add(mask)
            .and_then(|s| {
                if self.autograd {
                    candle_nn::ops::softmax(&s, candle_core::D::Minus1)
                } else {
                    candle_nn::ops::softmax_last_dim(&s)
                }
            })
            .and_then(|p| p.to_dtype(self.dtype))
            .context("attention softmax")?;
        let pattern = site(HookName::Block(l, Site::AttnPattern), pattern)?;
        pattern
            .reshape((b, kv, rep * t, tk))
            .and_then(|p| p.matmul(&v))
            .and_then(|z| z.reshape((b, h, t, dh)))
            .and_then(|z| z.transpose(1, 2))
            .and_then(|z| z.reshape((b, t, h * dh)))
            .context("attention values")
    }
}

/// Prefixes a candle error's context with the layer it happened in.
fn in_layer(l: usize, e: Error) -> Error {
    match e {
        Error::Candle { context, source } => Error::Candle {
            context: format!("layer {l}: {context}"),
            source,
        },
        other => other,
    }
}

/// Sees every hook site of a forward pass in order and may replace its value.
///
/// Sites are visited in forward order with batch-first padded tensors (see
/// [`adag_core::Site`] for shapes). Replacing a `*.hook_scale` replaces the norm's denominator
/// (the normalised value is then computed from it); replacing `attn.hook_pattern` replaces the
/// attention probabilities. This is how frozen (linearised) runs, interventions and steering
/// are expressed without a second forward implementation.
pub trait ForwardHooks {
    /// Returns the value to continue with (by default, `value` unchanged).
    fn edit(&mut self, hook: HookName, value: Tensor) -> Result<Tensor>;

    /// `false` stops the pass after the final norm (whose hooks still run) and leaves
    /// [`ForwardOutput::logits`] empty (`[b, w, 0]`), for hooks that read only the final
    /// residual: at a 256k vocabulary the unembedding is most of a short prompt's forward pass.
    fn wants_logits(&self) -> bool {
        true
    }

    /// `true` computes [`ForwardOutput::logits`] at each item's last position only
    /// (`[b, 1, d_vocab]`; [`ForwardOutput::last_logits`] reads them as usual), for callers
    /// that need only the next-token distribution: attribution unembeds one position, not the
    /// prompt's (at gemma-2-2b's 256k vocabulary and 64 tokens, 75 GFLOP of the forward pass).
    fn last_logits_only(&self) -> bool {
        false
    }

    /// `true` when these hooks replace block `layer`'s MLP output (at `mlp.hook_out` or
    /// `hook_mlp_out`) without reading it: the pass then skips the MLP and hands the hooks
    /// zeros there, and no MLP-internal hook of that layer runs. The constrained model freezes
    /// every MLP output, so its runs (graph accounting's four per graph) skip every MLP.
    fn replaces_mlp(&self, _layer: usize) -> bool {
        false
    }
}

/// Hooks that change nothing.
pub struct NoHooks;

/// Hooks that change nothing and ask for the last position's logits only
/// ([`ForwardHooks::last_logits_only`]).
pub struct LastLogitsOnly;

impl ForwardHooks for LastLogitsOnly {
    fn edit(&mut self, _: HookName, value: Tensor) -> Result<Tensor> {
        Ok(value)
    }

    fn last_logits_only(&self) -> bool {
        true
    }
}

impl ForwardHooks for NoHooks {
    fn edit(&mut self, _: HookName, value: Tensor) -> Result<Tensor> {
        Ok(value)
    }
}

/// Softmax over the last dimension in f32: next-token probabilities from logits.
pub fn probabilities(logits: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32).context("softmax")?)
        .context("softmax")
}
