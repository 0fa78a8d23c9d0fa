//! What the forward pass keeps: [`CacheFilter`] says which hooks, [`ActivationCache`] holds them.
//!
//! Tensors are stored in *padded* batch coordinates, `[batch, pos, ...]`, exactly as the forward
//! pass computed them; [`ActivationCache::pad`] gives each item's left-pad offset so callers can
//! map back to unpadded positions (position `p` of item `b` is row `pad[b] + p`).

use std::collections::{BTreeMap, BTreeSet};

use adag_core::{HookName, Site};
use candle_core::Tensor;

use crate::error::{Error, Result};

/// Which hooks to keep. The default keeps nothing (plain inference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheFilter {
    sites: BTreeSet<Site>,
    embed: bool,
    ln_final: bool,
    layers: Option<BTreeSet<usize>>,
}

impl CacheFilter {
    /// Keep nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Keep every hook of every layer.
    pub fn all() -> Self {
        CacheFilter {
            sites: Site::ALL.into_iter().collect(),
            embed: true,
            ln_final: true,
            layers: None,
        }
    }

    /// What the linearised backward needs: norm scales, attention patterns, the residual at
    /// every block boundary, the MLP input, gate, up, neuron activations and outputs.
    pub fn attribution() -> Self {
        CacheFilter {
            sites: [
                Site::ResidPre,
                Site::Ln1Scale,
                Site::AttnPattern,
                Site::Ln1PostScale,
                Site::ResidMid,
                Site::Ln2Scale,
                Site::Ln2Normalized,
                Site::MlpIn,
                Site::MlpPre,
                Site::MlpPreLinear,
                Site::MlpPost,
                Site::MlpOut,
                Site::Ln2PostScale,
                Site::HookMlpOut,
            ]
            .into_iter()
            .collect(),
            embed: true,
            ln_final: true,
            layers: None,
        }
    }

    /// Keep exactly these hooks (the layer of each block hook is honoured).
    pub fn only(hooks: impl IntoIterator<Item = HookName>) -> Self {
        let mut f = CacheFilter {
            layers: Some(BTreeSet::new()),
            ..Default::default()
        };
        for h in hooks {
            match h {
                HookName::Embed => f.embed = true,
                HookName::LnFinalScale | HookName::LnFinalNormalized => f.ln_final = true,
                HookName::Block(l, site) => {
                    f.sites.insert(site);
                    f.layers.get_or_insert_with(BTreeSet::new).insert(l);
                }
            }
        }
        f
    }

    /// Keep these sites on every layer.
    pub fn sites(sites: impl IntoIterator<Item = Site>) -> Self {
        CacheFilter {
            sites: sites.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Everything either filter keeps. Layer restrictions combine as a union too; a filter
    /// without a restriction keeps every layer.
    pub fn union(&self, other: &CacheFilter) -> Self {
        let layers = match (&self.layers, &other.layers) {
            (Some(a), Some(b)) if !self.sites.is_empty() && !other.sites.is_empty() => {
                Some(a.union(b).copied().collect())
            }
            (Some(a), _) if other.sites.is_empty() => Some(a.clone()),
            (_, Some(b)) if self.sites.is_empty() => Some(b.clone()),
            _ => None,
        };
        CacheFilter {
            sites: self.sites.union(&other.sites).copied().collect(),
            embed: self.embed || other.embed,
            ln_final: self.ln_final || other.ln_final,
            layers,
        }
    }

    /// Restrict block hooks to these layers.
    pub fn layers(mut self, layers: impl IntoIterator<Item = usize>) -> Self {
        self.layers = Some(layers.into_iter().collect());
        self
    }

    /// Whether `hook` is kept.
    pub fn wants(&self, hook: HookName) -> bool {
        match hook {
            HookName::Embed => self.embed,
            HookName::LnFinalScale | HookName::LnFinalNormalized => self.ln_final,
            HookName::Block(l, site) => {
                self.sites.contains(&site) && self.layers.as_ref().is_none_or(|ls| ls.contains(&l))
            }
        }
    }

    /// Whether anything at all is kept.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty() && !self.embed && !self.ln_final
    }
}

/// Hook name → tensor, plus the batch geometry needed to read it.
#[derive(Debug, Clone, Default)]
pub struct ActivationCache {
    tensors: BTreeMap<HookName, Tensor>,
    /// Left-pad offset of each batch item.
    pub pad: Vec<usize>,
    /// Unpadded length of each batch item.
    pub len: Vec<usize>,
}

impl ActivationCache {
    pub(crate) fn new(pad: Vec<usize>, len: Vec<usize>) -> Self {
        ActivationCache {
            tensors: BTreeMap::new(),
            pad,
            len,
        }
    }

    pub(crate) fn insert(&mut self, hook: HookName, t: Tensor) {
        self.tensors.insert(hook, t);
    }

    /// The cached tensor, or an error naming the hook and how to get it cached.
    pub fn get(&self, hook: HookName) -> Result<&Tensor> {
        self.tensors.get(&hook).ok_or_else(|| {
            Error::Input(format!(
                "hook `{hook}` was not cached; include it in the CacheFilter of the forward pass"
            ))
        })
    }

    /// Whether `hook` is present.
    pub fn contains(&self, hook: HookName) -> bool {
        self.tensors.contains_key(&hook)
    }

    /// All cached hooks in forward order.
    pub fn iter(&self) -> impl Iterator<Item = (&HookName, &Tensor)> {
        self.tensors.iter()
    }

    /// Number of cached tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when nothing was cached.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Bytes held by the cached tensors.
    pub fn memory_bytes(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// The rows of batch item `b` for one hook, in unpadded positions: `[len, ...]`
    /// (for attention patterns `[head, len, len]`).
    pub fn item(&self, hook: HookName, b: usize) -> Result<Tensor> {
        let t = self.get(hook)?;
        let (pad, len) = match (self.pad.get(b), self.len.get(b)) {
            (Some(&p), Some(&l)) => (p, l),
            _ => {
                return Err(Error::Input(format!(
                    "batch item {b} out of range ({} items)",
                    self.pad.len()
                )))
            }
        };
        let ctx = |e| Error::Candle {
            context: format!("slicing `{hook}` for batch item {b}"),
            source: e,
        };
        let t = t.get(b).map_err(ctx)?;
        if matches!(hook, HookName::Block(_, Site::AttnPattern)) {
            t.narrow(1, pad, len)
                .and_then(|t| t.narrow(2, pad, len))
                .map_err(ctx)
        } else {
            t.narrow(0, pad, len).map_err(ctx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_what_they_say() {
        let all = CacheFilter::all();
        assert!(all.wants(HookName::Block(5, Site::MlpPost)) && all.wants(HookName::Embed));
        assert!(CacheFilter::none().is_empty());
        let only = CacheFilter::only([HookName::Block(1, Site::AttnPattern)]);
        assert!(only.wants(HookName::Block(1, Site::AttnPattern)));
        assert!(!only.wants(HookName::Block(0, Site::AttnPattern)));
        assert!(!only.wants(HookName::Block(1, Site::MlpPost)));
        assert!(!only.wants(HookName::Embed));
        let u = CacheFilter::sites([Site::Ln1Scale]).union(&CacheFilter::only([HookName::Embed]));
        assert!(u.wants(HookName::Block(9, Site::Ln1Scale)) && u.wants(HookName::Embed));
        assert!(!u.wants(HookName::Block(9, Site::Ln2Scale)));
        let attr = CacheFilter::attribution().layers([2]);
        assert!(
            attr.wants(HookName::Block(2, Site::Ln1Scale))
                && !attr.wants(HookName::Block(1, Site::Ln1Scale))
        );
    }
}
