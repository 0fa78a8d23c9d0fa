//! Bases: what the one attribution driver needs to know about a kind of node.
//!
//! The engine has one backward pass ([`FrozenModel::vjp`](crate::FrozenModel::vjp)) and one
//! driver ([`attribute`](crate::attribute)). A basis only says, for a prompt:
//! - which of its nodes are active, with their activations (this order defines node indices);
//! - how a node *reads* the residual stream: its seed row at the basis's read site (a
//!   transcoder's encoder row, a neuron's RelP read vector);
//! - how a node *writes*: its source vector at the write site, grouped by (layer, position)
//!   (a decoder row times the activation, a `W_down` column times the activation), with error
//!   vectors where the basis leaves a remainder;
//! - what crosses the MLP in the linearised model between a write and a lower read
//!   ([`MlpPath`]): a transcoder's skip, or nothing.
//!
//! Transcoder sets (PLT, CLT, with or without skip) and MLP neurons implement [`Basis`]; the
//! driver, influence ranking, graph assembly and every graph-level tool serve both.

use adag_core::{HookName, Site};
use adag_model::{ActivationCache, CacheFilter, ModelConfig, Transformer};
use candle_core::{DType, Tensor};

use crate::error::{Context, Error, Result};
use crate::frozen::{MlpPath, ReadSite, StopMlp, WriteSite};
use crate::neuron::{RelpMlp, RelpRule};
use crate::reading::SourceGroup;
use crate::transcoder::{Components, SkipPath, TranscoderSet};

/// The kinds of basis, as graph files name them (`metadata.basis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasisKind {
    /// Transcoder features, with error nodes.
    Transcoder,
    /// MLP neurons, no error nodes.
    Neuron,
}

impl BasisKind {
    /// The name stored in graph metadata.
    pub fn name(self) -> &'static str {
        match self {
            BasisKind::Transcoder => "transcoder",
            BasisKind::Neuron => "neuron",
        }
    }
}

/// A kind of node the driver can attribute through.
pub trait Basis {
    /// Which basis this is.
    fn kind(&self) -> BasisKind;
    /// Where its nodes read and write.
    fn sites(&self) -> (ReadSite, WriteSite);
    /// What the forward pass must cache for [`Basis::prompt`] (besides the frozen model's).
    fn cache_filter(&self) -> CacheFilter;
    /// Checks that the basis fits the model.
    fn check_model(&self, cfg: &ModelConfig) -> Result<()>;
    /// The basis bound to batch item `item` of a forward pass over `model`.
    fn prompt<'a>(
        &'a self,
        model: &'a Transformer,
        cache: &'a ActivationCache,
        item: usize,
    ) -> Result<Box<dyn PromptNodes + 'a>>;
    /// The transcoder set, when this basis is one (graph accounting names its biases).
    fn transcoders(&self) -> Option<&TranscoderSet> {
        None
    }
    /// A short description for graph metadata (`scan`).
    fn scan(&self) -> Option<String> {
        None
    }
}

/// A basis bound to one prompt.
pub trait PromptNodes: Sync {
    /// Active nodes `(layer, position, index)`, lexicographically ordered.
    fn active(&self) -> &[[u32; 3]];
    /// Activation of each active node.
    fn activations(&self) -> &[f32];
    /// `groups[layer][pos]`: the write vectors of every source at that write site (active
    /// nodes in columns `0..n_active`, error vectors in `n_active + layer·n_pos + pos`).
    fn groups(&self) -> &[Vec<Option<SourceGroup>>];
    /// `[n_pos, d_model]` token vectors, in the model's dtype.
    fn tokens(&self) -> &Tensor;
    /// Seed rows `[m, d_model]` (model dtype) that make `nodes` (indices into
    /// [`PromptNodes::active`]) the targets of a backward pass at the basis's read site.
    fn seeds(&self, nodes: &[usize]) -> Result<Tensor>;
    /// What crosses each MLP between a node's write and a lower node's read.
    fn mlp_path(&self) -> &dyn MlpPath;
}

impl Basis for TranscoderSet {
    fn kind(&self) -> BasisKind {
        BasisKind::Transcoder
    }
    fn sites(&self) -> (ReadSite, WriteSite) {
        (self.read, self.write)
    }
    fn cache_filter(&self) -> CacheFilter {
        CacheFilter::sites([self.read.site(), self.write.site()])
    }
    fn check_model(&self, cfg: &ModelConfig) -> Result<()> {
        TranscoderSet::check_model(self, cfg)
    }
    fn prompt<'a>(
        &'a self,
        model: &'a Transformer,
        cache: &'a ActivationCache,
        item: usize,
    ) -> Result<Box<dyn PromptNodes + 'a>> {
        Ok(Box::new(TranscoderPrompt {
            comps: self.components(cache, item, model.dtype())?,
            skip: SkipPath(self),
        }))
    }
    fn transcoders(&self) -> Option<&TranscoderSet> {
        Some(self)
    }
    fn scan(&self) -> Option<String> {
        Some(self.scan.clone())
    }
}

struct TranscoderPrompt<'a> {
    comps: Components,
    skip: SkipPath<'a>,
}

impl PromptNodes for TranscoderPrompt<'_> {
    fn active(&self) -> &[[u32; 3]] {
        &self.comps.active
    }
    fn activations(&self) -> &[f32] {
        &self.comps.activations
    }
    fn groups(&self) -> &[Vec<Option<SourceGroup>>] {
        &self.comps.groups
    }
    fn tokens(&self) -> &Tensor {
        &self.comps.tokens
    }
    fn seeds(&self, nodes: &[usize]) -> Result<Tensor> {
        let idx: Vec<u32> = nodes.iter().map(|&i| i as u32).collect();
        let ids = Tensor::new(idx.as_slice(), self.comps.encoders.device()).ctx("feature ids")?;
        self.comps
            .encoders
            .index_select(&ids, 0)
            .ctx("feature seeds")
    }
    fn mlp_path(&self) -> &dyn MlpPath {
        &self.skip
    }
}

/// MLP neurons as graph nodes: a neuron `a = act(z)·u` reads the MLP input through its RelP
/// read vector and writes `a·W_down[:, i]`; MLPs are stopped between nodes (every MLP output
/// is a sum of neuron writes, so there is no error). By default position 0 (BOS) has no
/// nodes, as circuit-tracer zeroes it for features; its MLP output is then a constant.
#[derive(Debug, Clone)]
pub struct NeuronBasis {
    /// How the gated MLP is linearised.
    pub rule: RelpRule,
    /// Neurons never made nodes: (layer, neuron).
    pub blacklist: Vec<(usize, u32)>,
    /// Make position 0's neurons nodes too (ADAG's tracer keeps them in the computation).
    pub bos_nodes: bool,
}

impl Default for NeuronBasis {
    fn default() -> Self {
        NeuronBasis {
            rule: RelpRule::HalfRule,
            blacklist: Vec::new(),
            bos_nodes: false,
        }
    }
}

impl Basis for NeuronBasis {
    fn kind(&self) -> BasisKind {
        BasisKind::Neuron
    }
    fn sites(&self) -> (ReadSite, WriteSite) {
        (ReadSite::MlpIn, WriteSite::MlpOut)
    }
    fn cache_filter(&self) -> CacheFilter {
        CacheFilter::sites([Site::MlpPre, Site::MlpPreLinear, Site::MlpPost])
            .union(&CacheFilter::only([HookName::Embed]))
    }
    fn check_model(&self, cfg: &ModelConfig) -> Result<()> {
        if let Some(&(l, i)) = self
            .blacklist
            .iter()
            .find(|&&(l, i)| l >= cfg.n_layers || i as usize >= cfg.d_mlp)
        {
            return Err(Error::Invalid(format!(
                "blacklisted neuron ({l}, {i}) is outside the model ({} layers, {} neurons)",
                cfg.n_layers, cfg.d_mlp
            )));
        }
        Ok(())
    }
    fn prompt<'a>(
        &'a self,
        model: &'a Transformer,
        cache: &'a ActivationCache,
        item: usize,
    ) -> Result<Box<dyn PromptNodes + 'a>> {
        Ok(Box::new(NeuronPrompt::new(self, model, cache, item, None)?))
    }
}

/// [`NeuronBasis`] bound to one prompt.
pub struct NeuronPrompt<'a> {
    relp: RelpMlp<'a>,
    active: Vec<[u32; 3]>,
    activations: Vec<f32>,
    groups: Vec<Vec<Option<SourceGroup>>>,
    tokens: Tensor,
    stop: StopMlp,
}

impl<'a> NeuronPrompt<'a> {
    /// Binds `basis` to batch item `item`. With `only`, the nodes are exactly those neurons
    /// (in their given order, which must be lexicographic), active or not, and every other
    /// neuron's write is carried by the error node of its (layer, position) (the cache must
    /// hold `mlp.hook_out`); otherwise every neuron with `a ≠ 0` outside the blacklist (and
    /// position 0 unless `bos_nodes`) is a node and there are no errors.
    pub fn new(
        basis: &NeuronBasis,
        model: &'a Transformer,
        cache: &ActivationCache,
        item: usize,
        only: Option<&[[u32; 3]]>,
    ) -> Result<Self> {
        let relp = RelpMlp::new(model, cache, item, basis.rule)?;
        let first = if basis.bos_nodes { 0 } else { 1 };
        Self::with_relp(relp, &basis.blacklist, first, model, cache, item, only)
    }

    /// [`NeuronPrompt::new`] with the prompt's RelP MLPs already frozen (a caller that scored
    /// neurons with them first).
    pub fn with_relp(
        relp: RelpMlp<'a>,
        blacklist: &[(usize, u32)],
        first_position: usize,
        model: &'a Transformer,
        cache: &ActivationCache,
        item: usize,
        only: Option<&[[u32; 3]]>,
    ) -> Result<Self> {
        let (n_layers, dt) = (model.cfg.n_layers, model.dtype());
        let tokens = cache
            .item(HookName::Embed, item)?
            .to_dtype(dt)
            .ctx("embeddings")?;
        let n_pos = tokens.dim(0).ctx("embeddings")?;
        let acts: Vec<Vec<Vec<f32>>> = (0..n_layers)
            .map(|l| {
                cache
                    .item(HookName::Block(l, Site::MlpPost), item)
                    .map_err(Error::from)
                    .and_then(|a| {
                        a.to_dtype(DType::F32)
                            .and_then(|a| a.to_vec2::<f32>())
                            .ctx("neuron activations")
                    })
            })
            .collect::<Result<_>>()?;
        let (active, activations): (Vec<[u32; 3]>, Vec<f32>) = match only {
            Some(keys) => keys
                .iter()
                .map(|&k| (k, acts[k[0] as usize][k[1] as usize][k[2] as usize]))
                .unzip(),
            None => {
                let mut found = Vec::new();
                for (l, layer) in acts.iter().enumerate() {
                    for (p, row) in layer.iter().enumerate().skip(first_position) {
                        for (i, &a) in row.iter().enumerate() {
                            if a != 0.0 && !blacklist.contains(&(l, i as u32)) {
                                found.push(([l as u32, p as u32, i as u32], a));
                            }
                        }
                    }
                }
                found.into_iter().unzip()
            }
        };
        let dev = model.device().clone();
        let mut groups: Vec<Vec<Option<SourceGroup>>> = (0..n_layers)
            .map(|_| (0..n_pos).map(|_| None).collect())
            .collect();
        // Active nodes are lexicographic: each (layer, position) is one contiguous run.
        let mut start = 0;
        while start < active.len() {
            let [l, p, _] = active[start];
            let end = start
                + active[start..]
                    .iter()
                    .take_while(|k| k[0] == l && k[1] == p)
                    .count();
            let ids: Vec<u32> = active[start..end].iter().map(|k| k[2]).collect();
            let scale = Tensor::from_vec(activations[start..end].to_vec(), (end - start, 1), &dev)
                .ctx("activations")?;
            let rows = model.weights.blocks[l as usize]
                .mlp
                .down
                .weight
                .index_select(&Tensor::new(ids.as_slice(), &dev).ctx("ids")?, 1)
                .and_then(|r| r.t())
                .and_then(|r| r.to_dtype(DType::F32))
                .and_then(|r| r.broadcast_mul(&scale))
                .and_then(|r| r.to_dtype(dt))
                .ctx("neuron write vectors")?;
            groups[l as usize][p as usize] = Some(SourceGroup {
                rows,
                cols: (start as u32..end as u32).collect(),
            });
            start = end;
        }
        // A chosen subset of neurons leaves the others' writes out of the graph; they become
        // the error node of each (layer, position): the MLP's output minus the chosen neurons'
        // writes, so every row still adds up to its target (the traced graph's accounting).
        if only.is_some() {
            let n_active = active.len() as u32;
            for (l, row) in groups.iter_mut().enumerate() {
                let out = cache
                    .item(HookName::Block(l, Site::MlpOut), item)?
                    .to_dtype(DType::F32)
                    .ctx("MLP outputs")?;
                for (p, group) in row.iter_mut().enumerate() {
                    let col = n_active + (l * n_pos + p) as u32;
                    let mut rest = out.get(p).ctx("MLP output")?;
                    if let Some(g) = group.as_ref() {
                        let written = g
                            .rows
                            .to_dtype(DType::F32)
                            .and_then(|r| r.sum(0))
                            .ctx("chosen neurons' writes")?;
                        rest = (rest - written).ctx("other neurons' writes")?;
                    }
                    let rest = rest
                        .unsqueeze(0)
                        .and_then(|r| r.to_dtype(dt))
                        .ctx("error vector")?;
                    *group = Some(match group.take() {
                        Some(g) => SourceGroup {
                            rows: Tensor::cat(&[&g.rows, &rest], 0).ctx("source rows")?,
                            cols: g.cols.into_iter().chain([col]).collect(),
                        },
                        None => SourceGroup {
                            rows: rest,
                            cols: vec![col],
                        },
                    });
                }
            }
        }
        Ok(NeuronPrompt {
            relp,
            active,
            activations,
            groups,
            tokens,
            stop: StopMlp,
        })
    }

    /// The RelP MLPs of the prompt.
    pub fn relp(&self) -> &RelpMlp<'a> {
        &self.relp
    }
}

impl PromptNodes for NeuronPrompt<'_> {
    fn active(&self) -> &[[u32; 3]] {
        &self.active
    }
    fn activations(&self) -> &[f32] {
        &self.activations
    }
    fn groups(&self) -> &[Vec<Option<SourceGroup>>] {
        &self.groups
    }
    fn tokens(&self) -> &Tensor {
        &self.tokens
    }
    fn seeds(&self, nodes: &[usize]) -> Result<Tensor> {
        // One read-vector call per run of nodes in the same layer.
        let mut parts = Vec::new();
        let mut start = 0;
        while start < nodes.len() {
            let l = self.active[nodes[start]][0];
            let end = start
                + nodes[start..]
                    .iter()
                    .take_while(|&&n| self.active[n][0] == l)
                    .count();
            let pos: Vec<u32> = nodes[start..end]
                .iter()
                .map(|&n| self.active[n][1])
                .collect();
            let ids: Vec<u32> = nodes[start..end]
                .iter()
                .map(|&n| self.active[n][2])
                .collect();
            parts.push(self.relp.read_vectors(l as usize, &pos, &ids)?);
            start = end;
        }
        if parts.is_empty() {
            return Err(Error::Invalid("no neurons to seed".into()));
        }
        Tensor::cat(&parts, 0)
            .and_then(|t| t.to_dtype(self.tokens.dtype()))
            .ctx("neuron seeds")
    }
    fn mlp_path(&self) -> &dyn MlpPath {
        &self.stop
    }
}
