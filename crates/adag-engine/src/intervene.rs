//! Interventions on graph nodes, in either basis: set, scale or zero transcoder features or MLP
//! neurons and see what the model does. `adag intervene` and `adag steer` both run on this.
//!
//! As circuit-tracer's `feature_intervention`: setting feature `f` of layer `l` at position `p`
//! to `v` adds `(v − a) · W_dec[f]` to the MLP output at the transcoder's write site (to every
//! output layer of a cross-layer transcoder), where `a` is the feature's current activation.
//! A neuron is set where it lives, in `mlp.hook_post` (the input of `down_proj`), which is the
//! same as adding `(v − a) · W_down[:, i]` to the MLP output.
//! - **Open loop**: the model runs with its real MLPs; `a` is re-encoded from the perturbed run
//!   when layer `l` is reached (a neuron's is its live value), so downstream units react.
//!   Attention patterns are optionally frozen at the clean run; norm scales are live.
//! - **Constrained**: every norm scale, attention pattern and MLP output is frozen at the clean
//!   run (transcoder skips stay live) and `a` is the clean activation: exactly the linear model
//!   of an attribution graph, in which the effect of a change is what the graph's edges predict.
//!   Reported activations are then the linear model's: a feature's pre-activation, a neuron's
//!   clean value plus its RelP response to the change at its input.
//!
//! Positions can be open-ended ([`Position::From`]) so an intervention also applies to tokens
//! produced by [`generate`].

use adag_core::{HookName, Site};
use adag_model::{ActivationCache, Batch, CacheFilter, ForwardHooks, Transformer};
use candle_core::{DType, Tensor};

use crate::basis::{Basis, BasisKind};
use crate::constrained::Constrained;
use crate::error::{Context, Error, Result};
use crate::frozen::MlpJvp;
use crate::neuron::{RelpMlp, RelpRule};
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

/// One intervention on a feature or a neuron.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intervention {
    /// Layer of the unit.
    pub layer: usize,
    /// Positions.
    pub pos: Position,
    /// Feature or neuron index.
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

/// Logits and unit activations of an intervened run.
pub struct InterventionOutput {
    /// `[n_pos, d_vocab]` (under `Mode::Constrained`, without Gemma-2's final soft-cap, as the
    /// linear model has none)
    pub logits: Tensor,
    /// Per layer `[n_pos, width]` (features: `d_tc`, neurons: `d_mlp`): the values in this run
    /// with the interventions applied (under `Mode::Constrained`, the linear model's: what graph
    /// edges predict).
    pub activations: Vec<Tensor>,
}

fn target_value(action: Action, current: f32) -> f32 {
    match action {
        Action::Set(v) => v,
        Action::Scale(k) => current * k,
    }
}

/// Open-loop hooks of a transcoder basis: encode at each read site, add decoder deltas at
/// write sites.
struct FeatureLoop<'a> {
    tc: &'a TranscoderSet,
    interventions: &'a [Intervention],
    /// Pending `[n_pos, d_model]` additions per output layer.
    deltas: Vec<Option<Tensor>>,
    activations: Vec<Option<Tensor>>,
    failure: Option<Error>,
}

impl FeatureLoop<'_> {
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

impl ForwardHooks for FeatureLoop<'_> {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        match hook {
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

/// Open-loop hooks of the neuron basis: set or scale entries of `mlp.hook_post`, keeping
/// every layer's (edited) values.
struct NeuronLoop<'a> {
    interventions: &'a [Intervention],
    activations: Vec<Option<Tensor>>,
}

impl ForwardHooks for NeuronLoop<'_> {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        let HookName::Block(l, Site::MlpPost) = hook else {
            return Ok(value);
        };
        let ctx = |e| adag_model::Error::Candle {
            context: format!("editing neurons of layer {l}"),
            source: e,
        };
        let here: Vec<&Intervention> = self
            .interventions
            .iter()
            .filter(|iv| iv.layer == l)
            .collect();
        let mut edited = value;
        if !here.is_empty() {
            // Edits apply in order, so two on one entry compose; untouched entries get an
            // exact zero added.
            let (_, t, d) = edited.dims3().map_err(ctx)?;
            let cur = edited
                .get(0)
                .and_then(|v| v.to_dtype(DType::F32))
                .and_then(|v| v.flatten_all())
                .and_then(|v| v.to_vec1::<f32>())
                .map_err(ctx)?;
            let mut new = cur.clone();
            for iv in here {
                let i = iv.feature as usize;
                for p in (0..t).filter(|&p| iv.pos.covers(p)) {
                    new[p * d + i] = target_value(iv.action, new[p * d + i]);
                }
            }
            let delta: Vec<f32> = new.iter().zip(&cur).map(|(n, c)| n - c).collect();
            edited = Tensor::from_vec(delta, (1, t, d), edited.device())
                .and_then(|x| x.to_dtype(edited.dtype()))
                .and_then(|x| &edited + x)
                .map_err(ctx)?;
        }
        if self.activations.len() <= l {
            self.activations.resize(l + 1, None);
        }
        self.activations[l] = Some(
            edited
                .get(0)
                .and_then(|v| v.to_dtype(DType::F32))
                .map_err(ctx)?,
        );
        Ok(edited)
    }
}

/// The open-loop hooks of an intervention, in either basis; see the module docs. A caller that
/// composes them with hooks of its own (steering holds the final norm fixed) drives them
/// directly and reads [`OpenLoop::activations`] after the run.
pub struct OpenLoop<'a> {
    units: Units<'a>,
    clean: Option<&'a ActivationCache>,
}

enum Units<'a> {
    Features(FeatureLoop<'a>),
    Neurons(NeuronLoop<'a>),
}

impl<'a> OpenLoop<'a> {
    /// Hooks applying `interventions` to units of `basis`; with `clean`, attention patterns are
    /// held at that run's (which must cache `AttnPattern`).
    pub fn new(
        model: &Transformer,
        basis: &'a dyn Basis,
        interventions: &'a [Intervention],
        clean: Option<&'a ActivationCache>,
    ) -> Self {
        let n = model.cfg.n_layers;
        let units = match basis.transcoders() {
            Some(tc) => Units::Features(FeatureLoop {
                tc,
                interventions,
                deltas: vec![None; n],
                activations: vec![None; n],
                failure: None,
            }),
            None => Units::Neurons(NeuronLoop {
                interventions,
                activations: vec![None; n],
            }),
        };
        OpenLoop { units, clean }
    }

    /// Per layer `[n_pos, width]`: the units' values in the run, interventions applied.
    pub fn activations(self) -> Result<Vec<Tensor>> {
        let acts = match self.units {
            Units::Features(f) => {
                if let Some(e) = f.failure {
                    return Err(e);
                }
                f.activations
            }
            Units::Neurons(n) => n.activations,
        };
        acts.into_iter()
            .map(|a| a.ok_or_else(|| Error::Invalid("a layer was not reached".into())))
            .collect()
    }
}

impl ForwardHooks for OpenLoop<'_> {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        if let (HookName::Block(_, Site::AttnPattern), Some(c)) = (hook, self.clean) {
            return c.get(hook).cloned();
        }
        match &mut self.units {
            Units::Features(f) => f.edit(hook, value),
            Units::Neurons(n) => n.edit(hook, value),
        }
    }
}

/// Width of a layer's units in `basis`.
fn width(basis: &dyn Basis, model: &Transformer) -> usize {
    match basis.transcoders() {
        Some(tc) => tc.d_tc,
        None => model.cfg.d_mlp,
    }
}

fn check(
    basis: &dyn Basis,
    model: &Transformer,
    interventions: &[Intervention],
    n_pos: usize,
) -> Result<()> {
    basis.check_model(&model.cfg)?;
    let (n_layers, w) = (model.cfg.n_layers, width(basis, model));
    let unit = match basis.kind() {
        BasisKind::Transcoder => "feature",
        BasisKind::Neuron => "neuron",
    };
    for iv in interventions {
        if iv.layer >= n_layers || iv.feature as usize >= w {
            return Err(Error::Invalid(format!(
                "intervention on layer {} {unit} {}: there are {n_layers} layers × {w} {unit}s",
                iv.layer, iv.feature
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

/// Runs `tokens` with `interventions` on units of `basis` (a
/// [`TranscoderSet`] or a [`NeuronBasis`](crate::NeuronBasis)) applied.
pub fn intervene(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
    interventions: &[Intervention],
    mode: Mode,
) -> Result<InterventionOutput> {
    check(basis, model, interventions, tokens.len())?;
    let batch = Batch::single(tokens)?;
    match mode {
        Mode::OpenLoop { freeze_attention } => {
            let clean = if freeze_attention {
                Some(model.forward(&batch, &CacheFilter::sites([Site::AttnPattern]))?)
            } else {
                None
            };
            let mut hooks = OpenLoop::new(
                model,
                basis,
                interventions,
                clean.as_ref().map(|c| &c.cache),
            );
            let out = model.forward_with(&batch, &CacheFilter::none(), &mut hooks)?;
            Ok(InterventionOutput {
                logits: out.logits.get(0).ctx("logits")?,
                activations: hooks.activations()?,
            })
        }
        Mode::Constrained => match basis.transcoders() {
            Some(tc) => constrained_features(model, tokens, tc, interventions),
            None => constrained_neurons(model, tokens, basis, interventions),
        },
    }
}

fn constrained_features(
    model: &Transformer,
    tokens: &[u32],
    tc: &TranscoderSet,
    interventions: &[Intervention],
) -> Result<InterventionOutput> {
    let n = tc.n_layers();
    let clean = model.forward(&Batch::single(tokens)?, &Constrained::clean_filter(tc))?;
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

fn constrained_neurons(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
    interventions: &[Intervention],
) -> Result<InterventionOutput> {
    let n = model.cfg.n_layers;
    let filter = Constrained::clean_filter(basis).union(&CacheFilter::sites([
        Site::MlpPre,
        Site::MlpPreLinear,
        Site::MlpPost,
    ]));
    let clean = model.forward(&Batch::single(tokens)?, &filter)?;
    let post = |l: usize| -> Result<Tensor> {
        clean
            .cache
            .item(HookName::Block(l, Site::MlpPost), 0)?
            .to_dtype(DType::F32)
            .ctx("neuron activations")
    };
    let mut run = Constrained::new(&clean.cache, basis);
    for iv in interventions {
        let acts = post(iv.layer)?.to_vec2::<f32>().ctx("neuron activations")?;
        // The neuron's column only, not the whole matrix, converted to f32.
        let w_down = model.weights.blocks[iv.layer]
            .mlp
            .down
            .weight
            .t()
            .and_then(|w| w.get(iv.feature as usize))
            .and_then(|w| w.to_dtype(DType::F32))
            .ctx("down_proj column")?;
        for (p, row) in acts.iter().enumerate() {
            if iv.pos.covers(p) {
                let a = row[iv.feature as usize];
                let dv = target_value(iv.action, a) - a;
                run.add_write(iv.layer, p, &(&w_down * dv as f64).ctx("delta")?)?;
            }
        }
    }
    run.run(model, tokens)?;
    let logits = run.linear_logits(model)?;
    // The linear model's neurons: clean values, plus the RelP response to the change at their
    // input, plus the set/scale edits themselves.
    let rule = RelpRule::HalfRule;
    let relp = RelpMlp::new(model, &clean.cache, 0, rule)?;
    let mut activations = Vec::with_capacity(n);
    for l in 0..n {
        let x0 = clean
            .cache
            .item(HookName::Block(l, Site::MlpIn), 0)?
            .to_dtype(DType::F32)
            .ctx("clean MLP input")?;
        let dx = (run.input(l)?.to_dtype(DType::F32).ctx("MLP input")? - x0)
            .and_then(|d| d.unsqueeze(0))
            .and_then(|d| d.to_dtype(model.dtype()))
            .ctx("input change")?;
        let mut da = None;
        relp.jvp(l, &dx, &mut |_, t: &Tensor| {
            da = Some(
                t.get(0)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .ctx("tangent")?,
            );
            Ok(())
        })?;
        let clean_l = post(l)?;
        let mut a = (&clean_l + da.ok_or_else(|| Error::Invalid("no tangent".into()))?)
            .ctx("linear activations")?;
        let here: Vec<&Intervention> = interventions.iter().filter(|iv| iv.layer == l).collect();
        if !here.is_empty() {
            let clean_rows = clean_l.to_vec2::<f32>().ctx("neuron activations")?;
            let mut rows = a.to_vec2::<f32>().ctx("linear activations")?;
            for iv in here {
                for (p, row) in rows.iter_mut().enumerate() {
                    if iv.pos.covers(p) {
                        let c = clean_rows[p][iv.feature as usize];
                        row[iv.feature as usize] = target_value(iv.action, c);
                    }
                }
            }
            let (t, d) = (rows.len(), model.cfg.d_mlp);
            a = Tensor::from_vec(rows.concat(), (t, d), a.device()).ctx("activations")?;
        }
        activations.push(a);
    }
    Ok(InterventionOutput {
        logits,
        activations,
    })
}

/// Greedy generation of `n_new` tokens with `interventions` applied on every step (open loop,
/// attention live; each step reruns the whole sequence, so a `Position::From` intervention
/// covers the new tokens). Returns the new token ids and the next-token logits of every step.
pub fn generate(
    model: &Transformer,
    tokens: &[u32],
    basis: &dyn Basis,
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
        let out = intervene(
            model,
            &seq,
            basis,
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
