//! The constrained model: the real forward pass with every norm denominator and attention
//! pattern frozen at a clean run's values and every MLP output frozen to its clean value (plus a
//! transcoder's skip path, which stays live). This is exactly the linear model an attribution
//! graph describes, in any basis, run through the model's own forward code, so it is the oracle
//! of the engine's exactness tests and the "constrained" mode of interventions.

use adag_core::{HookName, Site};
use adag_model::{ActivationCache, Batch, CacheFilter, ForwardHooks, Transformer};
use candle_core::{DType, Tensor};

use crate::basis::Basis;
use crate::error::{Context, Result};
use crate::frozen::FrozenModel;
use crate::transcoder::TranscoderSet;

/// Hooks that freeze a single-prompt forward pass at `clean` and add perturbations.
pub struct Constrained<'a> {
    clean: &'a ActivationCache,
    /// Where the basis reads and writes.
    read: Site,
    write: Site,
    /// The transcoders whose skip path stays live (none for neurons).
    transcoders: Option<&'a TranscoderSet>,
    /// Added at each layer's write site, `[1, n_pos, d_model]`.
    pub write_deltas: Vec<Option<Tensor>>,
    /// Added to `hook_embed`, `[1, n_pos, d_model]`.
    pub embed_delta: Option<Tensor>,
    /// The read-site value of each layer in this run, `[1, n_pos, d_model]`.
    pub inputs: Vec<Option<Tensor>>,
    /// `ln_final.hook_normalized` of this run.
    pub final_normalized: Option<Tensor>,
    /// Compute the logits (default); `false` stops after the final norm, for callers that read
    /// only [`Constrained::final_normalized`] (graph accounting).
    pub logits: bool,
}

impl<'a> Constrained<'a> {
    /// The cache a clean run must keep for [`Constrained`] in `basis`.
    pub fn clean_filter(basis: &dyn Basis) -> CacheFilter {
        let (read, write) = basis.sites();
        FrozenModel::cache_filter().union(&CacheFilter::sites([read.site(), write.site()]))
    }

    /// Hooks over a clean run's cache (batch of one prompt) with no perturbation, freezing
    /// the MLP outputs at `basis`'s write site.
    pub fn new(clean: &'a ActivationCache, basis: &'a dyn Basis) -> Self {
        let (read, write) = basis.sites();
        // One slot per layer whose write site the clean run cached (all of them, with
        // `clean_filter`).
        let n = (0..)
            .take_while(|&l| clean.get(HookName::Block(l, write.site())).is_ok())
            .count();
        Constrained {
            clean,
            read: read.site(),
            write: write.site(),
            transcoders: basis.transcoders(),
            write_deltas: vec![None; n],
            embed_delta: None,
            inputs: vec![None; n],
            final_normalized: None,
            logits: true,
        }
    }

    /// Adds `delta` `[d_model]` at layer `layer`'s write site, position `pos`.
    pub fn add_write(&mut self, layer: usize, pos: usize, delta: &Tensor) -> Result<()> {
        let clean = self.clean.get(HookName::Block(layer, self.write))?;
        self.write_deltas[layer] =
            Some(add_at(self.write_deltas[layer].take(), clean, pos, delta)?);
        Ok(())
    }

    /// Adds `delta` `[d_model]` to the embedding at `pos`.
    pub fn add_embed(&mut self, pos: usize, delta: &Tensor) -> Result<()> {
        let clean = self.clean.get(HookName::Embed)?;
        self.embed_delta = Some(add_at(self.embed_delta.take(), clean, pos, delta)?);
        Ok(())
    }

    /// Runs `tokens` through `model` under these hooks.
    pub fn run(&mut self, model: &Transformer, tokens: &[u32]) -> Result<Tensor> {
        let out = model.forward_with(&Batch::single(tokens)?, &CacheFilter::none(), self)?;
        Ok(out.logits)
    }

    /// Logits `[n_pos, d_vocab]` of the last run without Gemma-2's final soft-cap: the linear
    /// model's logits, which is what graph edges into logit nodes predict.
    pub fn linear_logits(&self, model: &Transformer) -> Result<Tensor> {
        let n = self
            .final_normalized
            .as_ref()
            .ok_or_else(|| crate::Error::Invalid("run first".into()))?;
        let w = model
            .weights
            .ln_final
            .effective_weight()
            .ctx("final norm")?;
        let u = model
            .weights
            .unembed
            .to_dtype(DType::F32)
            .ctx("unembedding")?;
        n.get(0)
            .and_then(|n| n.broadcast_mul(&w))
            .and_then(|x| x.matmul(&u.t()?))
            .ctx("linear logits")
    }

    /// The value `[n_pos, d_model]` at layer `l`'s read site in the last run.
    pub fn input(&self, l: usize) -> Result<Tensor> {
        self.inputs[l]
            .as_ref()
            .ok_or_else(|| {
                crate::Error::Invalid(format!("layer {l} input not recorded; run first"))
            })?
            .get(0)
            .ctx("input")
    }

    /// Pre-activations `[n_pos, d_tc]` of layer `l`'s transcoder in the last run.
    pub fn pre_activations(&self, l: usize) -> Result<Tensor> {
        let tc = self.transcoders.ok_or_else(|| {
            crate::Error::Invalid("pre-activations need a transcoder basis".into())
        })?;
        tc.pre_activations(l, &self.input(l)?)
    }
}

fn add_at(acc: Option<Tensor>, like: &Tensor, pos: usize, delta: &Tensor) -> Result<Tensor> {
    let (_, t, d) = like.dims3().ctx("site shape")?;
    let acc = match acc {
        Some(a) => a,
        None => Tensor::zeros((1, t, d), DType::F32, like.device()).ctx("delta")?,
    };
    let idx = Tensor::new(&[pos as u32], like.device()).ctx("position")?;
    let row = delta
        .to_dtype(DType::F32)
        .and_then(|r| r.reshape((1, d)))
        .ctx("delta row")?;
    acc.reshape((t, d))
        .and_then(|a| a.index_add(&idx, &row, 0))
        .and_then(|a| a.reshape((1, t, d)))
        .ctx("adding delta")
}

fn plus(v: Tensor, delta: &Option<Tensor>) -> adag_model::Result<Tensor> {
    match delta {
        Some(d) => {
            d.to_dtype(v.dtype())
                .and_then(|d| v + d)
                .map_err(|e| adag_model::Error::Candle {
                    context: "perturbation".into(),
                    source: e,
                })
        }
        None => Ok(v),
    }
}

impl ForwardHooks for Constrained<'_> {
    fn wants_logits(&self) -> bool {
        self.logits
    }
    /// The write site's value is always the clean one plus the skip change and perturbations,
    /// never the MLP's own output; when the write site is `hook_mlp_out` after Gemma-2's
    /// post-norm, the (zero) `mlp.hook_out` goes through a norm whose scale is frozen too.
    fn replaces_mlp(&self, layer: usize) -> bool {
        layer < self.write_deltas.len()
    }
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        match hook {
            HookName::Embed => plus(value, &self.embed_delta),
            HookName::LnFinalScale => self.clean.get(hook).cloned(),
            HookName::LnFinalNormalized => {
                self.final_normalized = Some(value.clone());
                Ok(value)
            }
            HookName::Block(
                _,
                Site::Ln1Scale
                | Site::Ln1PostScale
                | Site::Ln2Scale
                | Site::Ln2PostScale
                | Site::AttnPattern,
            ) => self.clean.get(hook).cloned(),
            HookName::Block(l, site) if site == self.read => {
                self.inputs[l] = Some(value.clone());
                Ok(value)
            }
            HookName::Block(l, site) if site == self.write => {
                // Frozen MLP output, plus the change of the skip path, plus perturbations.
                let clean = self.clean.get(hook)?.clone();
                let mut v = clean;
                if let (Some(tc), Some(x), Some(x0)) = (
                    self.transcoders,
                    &self.inputs[l],
                    self.clean.get(HookName::Block(l, self.read)).ok(),
                ) {
                    let wrap = |e: crate::Error| adag_model::Error::Input(e.to_string());
                    if let (Some(s), Some(s0)) = (
                        tc.skip(
                            l,
                            &x.get(0).map_err(|e| adag_model::Error::Candle {
                                context: "skip".into(),
                                source: e,
                            })?,
                        )
                        .map_err(wrap)?,
                        tc.skip(
                            l,
                            &x0.get(0).map_err(|e| adag_model::Error::Candle {
                                context: "skip".into(),
                                source: e,
                            })?,
                        )
                        .map_err(wrap)?,
                    ) {
                        let ds = (s - s0)
                            .and_then(|d| d.unsqueeze(0))
                            .and_then(|d| d.to_dtype(v.dtype()));
                        v = ds
                            .and_then(|d| v + d)
                            .map_err(|e| adag_model::Error::Candle {
                                context: "skip delta".into(),
                                source: e,
                            })?;
                    }
                }
                plus(v, &self.write_deltas[l])
            }
            _ => Ok(value),
        }
    }
}
