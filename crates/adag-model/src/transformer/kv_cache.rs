//! Incremental decoding: a key/value cache and a forward pass over only the new tokens.
//!
//! Generation that re-runs the whole sequence for each new token costs O(n·(p+n))
//! token-forwards for n tokens after a p-token prompt. Keys and values of past positions never
//! change (attention is causal), so they are kept per layer and each new token costs one
//! token-forward plus attention over the cached keys.
//!
//! The cached pass runs the same block code as [`Transformer::forward`] (the same norms, rope,
//! soft-caps, masks built by the same function), with the queries at positions after the cache
//! and the cached keys and values put before the new ones. It is for a single sequence (batch
//! 1, no padding) and has no hooks and no activation cache: it exists to generate text, not to
//! be traced. Sliding-window layers keep every key and mask the old ones, which is exact and
//! keeps one storage scheme for all layers.

use candle_core::Tensor;

use super::{in_layer, mask_rows, Transformer};
use crate::error::{Context, Error, Result};

/// Keys and values of the positions a sequence has run through so far, per layer.
///
/// Made by [`Transformer::kv_cache`] or [`Transformer::prefill`]; only meaningful with the model
/// that filled it. Cloning is cheap (tensors are shared and never modified in place), so a
/// cached prompt can be forked into several continuations.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
}

/// One layer's keys and values, each `[1, n_kv_heads, len, d_head]` after rope (and Qwen3's
/// k-norm), in the model's dtype; `None` while empty.
#[derive(Debug, Clone, Default)]
pub(super) struct LayerKv {
    kv: Option<(Tensor, Tensor)>,
}

impl LayerKv {
    /// Appends new keys and values along the position axis and returns all of them.
    ///
    /// A concatenation (a copy of the cache per step, as large as reading it for attention)
    /// rather than writes into a preallocated buffer: tensors are never mutated in place, so
    /// clones of a cache stay independent and rolling back is a narrow.
    pub(super) fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match &self.kv {
            None => (k, v),
            Some((pk, pv)) => (
                Tensor::cat(&[pk, &k], 2).context("appending to the key cache")?,
                Tensor::cat(&[pv, &v], 2).context("appending to the value cache")?,
            ),
        };
        self.kv = Some(kv.clone());
        Ok(kv)
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        if len == 0 {
            self.kv = None;
            return Ok(());
        }
        if let Some((k, v)) = &self.kv {
            if k.dim(2).context("key cache")? > len {
                let cut = |t: &Tensor| t.narrow(2, 0, len).and_then(|t| t.contiguous());
                self.kv = Some((
                    cut(k).context("truncating the key cache")?,
                    cut(v).context("truncating the value cache")?,
                ));
            }
        }
        Ok(())
    }
}

impl KvCache {
    /// Positions cached (the length of the sequence run so far).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before any token has run.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on, e.g. to continue a shared prompt differently.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for layer in &mut self.layers {
            layer.truncate(len)?;
        }
        self.len = len;
        Ok(())
    }

    /// Bytes held by the cached keys and values.
    pub fn memory_bytes(&self) -> usize {
        self.layers
            .iter()
            .filter_map(|l| l.kv.as_ref())
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }
}

impl Transformer {
    /// An empty cache for this model.
    pub fn kv_cache(&self) -> KvCache {
        KvCache {
            layers: vec![LayerKv::default(); self.cfg.n_layers],
            len: 0,
        }
    }

    /// Runs `ids` after the `cache.len()` positions already cached and appends them to the
    /// cache; returns their logits `[ids.len(), d_vocab]` in f32, equal to the rows of
    /// [`Transformer::logits`] over the whole sequence.
    pub fn forward_cached(&self, cache: &mut KvCache, ids: &[u32]) -> Result<Tensor> {
        self.run_cached(cache, ids, false)
    }

    /// Starts a sequence: runs `ids` and returns the next-token logits `[d_vocab]` (f32) and the
    /// cache to continue with [`Transformer::step`].
    pub fn prefill(&self, ids: &[u32]) -> Result<(Tensor, KvCache)> {
        let mut cache = self.kv_cache();
        let logits = self.run_cached(&mut cache, ids, true)?;
        Ok((logits.get(0).context("slicing logits")?, cache))
    }

    /// Appends `ids` (usually the one token just generated) to the sequence in `cache` and
    /// returns the next-token logits `[d_vocab]` (f32).
    pub fn step(&self, cache: &mut KvCache, ids: &[u32]) -> Result<Tensor> {
        self.run_cached(cache, ids, true)?
            .get(0)
            .context("slicing logits")
    }

    /// The cached forward; `last_only` unembeds only the last position (all generation needs,
    /// and the unembedding of a long prompt over a large vocabulary is not free). On failure
    /// the cache is rolled back to what it held before, so it stays usable.
    fn run_cached(&self, cache: &mut KvCache, ids: &[u32], last_only: bool) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::Input(
                "no new tokens given to the cached forward".into(),
            ));
        }
        if cache.layers.len() != self.cfg.n_layers {
            return Err(Error::Input(format!(
                "the KV cache has {} layers but the model has {} (a cache from another model?)",
                cache.layers.len(),
                self.cfg.n_layers
            )));
        }
        self.check_vocab(ids)?;
        // Generation stops at the context: positions past it were never trained.
        self.cfg.check_len(
            cache.len + ids.len(),
            "the prompt with its generated tokens",
        )?;
        let past = cache.len;
        let out = self.run_cached_unchecked(cache, ids, last_only);
        match out {
            Ok(logits) => {
                cache.len = past + ids.len();
                Ok(logits)
            }
            Err(e) => {
                // Layers before the failure already appended; drop what they added.
                for layer in &mut cache.layers {
                    layer.truncate(past)?;
                }
                Err(e)
            }
        }
    }

    fn run_cached_unchecked(
        &self,
        cache: &mut KvCache,
        ids: &[u32],
        last_only: bool,
    ) -> Result<Tensor> {
        let (past, t) = (cache.len, ids.len());
        let mut site = |_, x: Tensor| -> Result<Tensor> { Ok(x) };
        let mut h = self.embed(ids, 1, t)?;
        let positions: Vec<u32> = (past..past + t).map(|p| p as u32).collect();
        let ropes = self.layer_ropes(&[positions])?;
        let masks = self.layer_masks(|win| {
            Tensor::from_vec(
                mask_rows(0, past, t, past + t, win),
                (1, 1, t, past + t),
                &self.device,
            )
            .context("building the attention mask")
        })?;
        for ((l, block), kv) in self
            .weights
            .blocks
            .iter()
            .enumerate()
            .zip(&mut cache.layers)
        {
            let (cos, sin) = &ropes[l];
            h = self
                .block(
                    l,
                    block,
                    h,
                    (cos, sin),
                    &masks[l],
                    Some(kv),
                    false,
                    &mut site,
                )
                .map_err(|e| in_layer(l, e))?;
        }
        if last_only {
            h = h.narrow(1, t - 1, 1).context("last position")?;
        }
        // `unembed` returns f32 `[1, rows, d_vocab]`.
        self.unembed(&h, false, &mut site)?
            .get(0)
            .context("slicing logits")
    }
}
