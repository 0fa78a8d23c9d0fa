//! Feature interventions: set, scale or zero transcoder features and see what the model does.
//!
//! As circuit-tracer's `feature_intervention`: setting feature `f` of layer `l` at position `p`
//! to `v` adds `(v − a) · W_dec[f]` to the MLP output at the transcoder's write site (to every
//! output layer of a cross-layer transcoder), where `a` is the feature's current activation.
//! - **Open loop**: the model runs with its real MLPs; `a` is re-encoded from the perturbed run
//!   when layer `l` is reached, so downstream features react. Attention patterns are optionally
//!   frozen at the clean run; norm scales are live.
//! - **Constrained**: every norm scale, attention pattern and MLP output is frozen at the clean
//!   run (transcoder skips stay live) and `a` is the clean activation: exactly the linear model
//!   of an attribution graph, in which the effect of a change is what the graph's edges predict.
//!
//! Positions can be open-ended ([`Position::From`]) so an intervention also applies to tokens
//! produced by [`generate`].

use adag_core::{HookName, Site};
use adag_model::{ActivationCache, Batch, CacheFilter, ForwardHooks, Transformer};
use candle_core::{DType, Tensor};

use crate::constrained::Constrained;
use crate::error::{Context, Error, Result};
use crate::transcoder::TranscoderSet;

/// Which positions an intervention touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// One position.
    At(usize),
    /// This position and every later one (including generated tokens).
    From(usize),
}

impl Position {
    fn covers(self, p: usize) -> bool {
        match self {
            Position::At(q) => p == q,
            Position::From(q) => p >= q,
        }
    }
}

/// What to do to the feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Set the activation to this value.
    Set(f32),
    /// Multiply the activation by this factor (0 ablates).
    Scale(f32),
}

/// One feature intervention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intervention {
    /// Layer of the feature.
    pub layer: usize,
    /// Positions.
    pub pos: Position,
    /// Feature index.
    pub feature: u32,
    /// Set or scale.
    pub action: Action,
}

impl std::str::FromStr for Intervention {
    type Err = Error;
    /// `LAYER:POS:FEATURE=VALUE` (set), `LAYER:POS:FEATURE*FACTOR` (scale); `POS` may be `N+`
    /// for "N and every later position".
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!("intervention `{s}`: expected LAYER:POS:FEATURE=VALUE or LAYER:POS:FEATURE*FACTOR (POS may be N+)"))
        };
        let (lhs, action) = if let Some((l, v)) = s.split_once('=') {
            (l, Action::Set(v.trim().parse().map_err(|_| bad())?))
        } else if let Some((l, v)) = s.split_once('*') {
            (l, Action::Scale(v.trim().parse().map_err(|_| bad())?))
        } else {
            return Err(bad());
        };
        let parts: Vec<&str> = lhs.split(':').map(str::trim).collect();
        let [layer, pos, feature] = parts[..] else {
            return Err(bad());
        };
        let pos = match pos.strip_suffix('+') {
            Some(p) => Position::From(p.parse().map_err(|_| bad())?),
            None => Position::At(pos.parse().map_err(|_| bad())?),
        };
        Ok(Intervention {
            layer: layer.parse().map_err(|_| bad())?,
            pos,
            feature: feature.parse().map_err(|_| bad())?,
            action,
        })
    }
}

/// How the rest of the model responds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real MLPs downstream; optionally attention patterns frozen at the clean run.
    OpenLoop {
        /// Freeze attention patterns.
        freeze_attention: bool,
    },
    /// Everything frozen: the attribution graph's linear model.
    Constrained,
}

/// Logits and feature activations of an intervened run.
pub struct InterventionOutput {
    /// `[n_pos, d_vocab]` (under `Mode::Constrained`, without Gemma-2's final soft-cap, as the
    /// linear model has none)
    pub logits: Tensor,
    /// Per layer `[n_pos, d_tc]`: post-activation values encoded from this run's inputs
    /// (pre-activations under `Mode::Constrained`, which is what graph edges predict), with the
    /// interventions applied.
    pub activations: Vec<Tensor>,
}

fn target_value(action: Action, current: f32) -> f32 {
    match action {
        Action::Set(v) => v,
        Action::Scale(k) => current * k,
    }
}

/// Open-loop hooks: encode at each read site, add decoder deltas at write sites.
struct OpenLoop<'a> {
    tc: &'a TranscoderSet,
    interventions: &'a [Intervention],
    clean: Option<&'a ActivationCache>,
    /// Pending `[n_pos, d_model]` additions per output layer.
    deltas: Vec<Option<Tensor>>,
    activations: Vec<Option<Tensor>>,
    failure: Option<Error>,
}

impl OpenLoop<'_> {
    fn at_read(&mut self, l: usize, x: &Tensor) -> Result<()> {
        let x = x.get(0).ctx("read site")?;
        let n_pos = x.dim(0).ctx("read site")?;
        let mut acts = self
            .tc
            .activate(l, &self.tc.pre_activations(l, &x)?)?
            .to_vec2::<f32>()
            .ctx("activations")?;
        let mut feats = Vec::new();
        let mut rows = Vec::new();
        for iv in self.interventions.iter().filter(|iv| iv.layer == l) {
            for (p, row) in acts.iter_mut().enumerate().take(n_pos) {
                if iv.pos.covers(p) {
                    let f = iv.feature as usize;
                    let current = row[f];
                    let new = target_value(iv.action, current);
                    row[f] = new;
                    if new != current {
                        feats.push(iv.feature);
                        rows.push((p, new - current));
                    }
                }
            }
        }
        self.add_decoder_deltas(l, &feats, &rows, n_pos, x.device())?;
        let flat: Vec<f32> = acts.into_iter().flatten().collect();
        self.activations[l] =
            Some(Tensor::from_vec(flat, (n_pos, self.tc.d_tc), x.device()).ctx("activations")?);
        Ok(())
    }

    fn add_decoder_deltas(
        &mut self,
        l: usize,
        feats: &[u32],
        rows: &[(usize, f32)],
        n_pos: usize,
        dev: &candle_core::Device,
    ) -> Result<()> {
        if feats.is_empty() {
            return Ok(());
        }
        let dec = self.tc.decoder_rows(l, feats, dev)?; // [m, n_out, d]
        for j in 0..dec.dim(1).ctx("decoder")? {
            let out = l + j;
            let mut acc = match self.deltas[out].take() {
                Some(a) => a,
                None => Tensor::zeros((n_pos, self.tc.d_model), DType::F32, dev).ctx("delta")?,
            };
            for (i, &(p, dv)) in rows.iter().enumerate() {
                let v = dec
                    .get(i)
                    .and_then(|r| r.get(j))
                    .and_then(|r| r * dv as f64)
                    .and_then(|r| r.unsqueeze(0))
                    .ctx("decoder row")?;
                let idx = Tensor::new(&[p as u32], dev).ctx("position")?;
                acc = acc.index_add(&idx, &v, 0).ctx("delta")?;
            }
            self.deltas[out] = Some(acc);
        }
        Ok(())
    }
}

impl ForwardHooks for OpenLoop<'_> {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        match hook {
            HookName::Block(_, Site::AttnPattern) if self.clean.is_some() => self
                .clean
                .map(|c| c.get(hook).cloned())
                .unwrap_or(Ok(value)),
            HookName::Block(l, site) if site == self.tc.read.site() => {
                if let Err(e) = self.at_read(l, &value) {
                    self.failure.get_or_insert(e);
                }
                Ok(value)
            }
            HookName::Block(l, site) if site == self.tc.write.site() => match &self.deltas[l] {
                Some(d) => d
                    .to_dtype(value.dtype())
                    .and_then(|d| d.unsqueeze(0))
                    .and_then(|d| value + d)
                    .map_err(|e| adag_model::Error::Candle {
                        context: "intervention".into(),
                        source: e,
                    }),
                None => Ok(value),
            },
            _ => Ok(value),
        }
    }
}

fn check(
    tc: &TranscoderSet,
    model: &Transformer,
    interventions: &[Intervention],
    n_pos: usize,
) -> Result<()> {
    tc.check_model(&model.cfg)?;
    for iv in interventions {
        if iv.layer >= tc.n_layers() || iv.feature as usize >= tc.d_tc {
            return Err(Error::Invalid(format!(
                "intervention on layer {} feature {}: the set has {} layers × {} features",
                iv.layer,
                iv.feature,
                tc.n_layers(),
                tc.d_tc
            )));
        }
        if let Position::At(p) = iv.pos {
            if p >= n_pos {
                return Err(Error::Invalid(format!(
                    "intervention at position {p}: the prompt has {n_pos} tokens"
                )));
            }
        }
    }
    Ok(())
}

/// Runs `tokens` with `interventions` applied.
pub fn feature_intervention(
    model: &Transformer,
    tokens: &[u32],
    tc: &TranscoderSet,
    interventions: &[Intervention],
    mode: Mode,
) -> Result<InterventionOutput> {
    check(tc, model, interventions, tokens.len())?;
    let batch = Batch::single(tokens)?;
    let n = tc.n_layers();
    match mode {
        Mode::OpenLoop { freeze_attention } => {
            let clean = if freeze_attention {
                Some(model.forward(&batch, &CacheFilter::sites([Site::AttnPattern]))?)
            } else {
                None
            };
            let mut hooks = OpenLoop {
                tc,
                interventions,
                clean: clean.as_ref().map(|c| &c.cache),
                deltas: vec![None; n],
                activations: vec![None; n],
                failure: None,
            };
            let out = model.forward_with(&batch, &CacheFilter::none(), &mut hooks)?;
            if let Some(e) = hooks.failure {
                return Err(e);
            }
            let activations = hooks
                .activations
                .into_iter()
                .map(|a| a.ok_or_else(|| Error::Invalid("a layer was not encoded".into())))
                .collect::<Result<_>>()?;
            Ok(InterventionOutput {
                logits: out.logits.get(0).ctx("logits")?,
                activations,
            })
        }
        Mode::Constrained => {
            let clean = model.forward(&batch, &Constrained::clean_filter(tc))?;
            let mut run = Constrained::new(&clean.cache, tc);
            // Deltas against the clean activations, written where each feature's decoders write.
            for l in 0..n {
                let x0 = clean.cache.item(HookName::Block(l, tc.read.site()), 0)?;
                let acts = tc
                    .activate(l, &tc.pre_activations(l, &x0)?)?
                    .to_vec2::<f32>()
                    .ctx("clean activations")?;
                for iv in interventions.iter().filter(|iv| iv.layer == l) {
                    let dec = tc
                        .decoder_rows(l, &[iv.feature], model.device())?
                        .get(0)
                        .ctx("decoder")?;
                    for (p, row) in acts.iter().enumerate() {
                        if iv.pos.covers(p) {
                            let a = row[iv.feature as usize];
                            let dv = target_value(iv.action, a) - a;
                            for j in 0..dec.dim(0).ctx("decoder")? {
                                run.add_write(
                                    l + j,
                                    p,
                                    &(dec.get(j).ctx("decoder row")? * dv as f64).ctx("delta")?,
                                )?;
                            }
                        }
                    }
                }
            }
            run.run(model, tokens)?;
            let logits = run.linear_logits(model)?;
            let activations = (0..n)
                .map(|l| run.pre_activations(l))
                .collect::<Result<_>>()?;
            Ok(InterventionOutput {
                logits,
                activations,
            })
        }
    }
}

/// Greedy generation of `n_new` tokens with `interventions` applied on every step (open loop,
/// attention live; each step reruns the whole sequence, so a `Position::From` intervention
/// covers the new tokens). Returns the new token ids and the next-token logits of every step.
pub fn generate(
    model: &Transformer,
    tokens: &[u32],
    tc: &TranscoderSet,
    interventions: &[Intervention],
    n_new: usize,
) -> Result<(Vec<u32>, Vec<Tensor>)> {
    // Generation past the context would run (and allocate) without bound on positions the model
    // never saw: refuse before the first step, naming the total.
    model.cfg.check_len(
        tokens.len().saturating_add(n_new),
        &format!("the prompt plus {n_new} generated tokens"),
    )?;
    let mut seq = tokens.to_vec();
    let mut new = Vec::with_capacity(n_new);
    let mut logits = Vec::with_capacity(n_new);
    for _ in 0..n_new {
        let out = feature_intervention(
            model,
            &seq,
            tc,
            interventions,
            Mode::OpenLoop {
                freeze_attention: false,
            },
        )?;
        let last = out.logits.get(seq.len() - 1).ctx("logits")?;
        let next = last
            .argmax(0)
            .and_then(|t| t.to_scalar::<u32>())
            .ctx("argmax")?;
        logits.push(last);
        seq.push(next);
        new.push(next);
    }
    Ok((new, logits))
}
