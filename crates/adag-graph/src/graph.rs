//! The attribution graph value.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A target of attribution at the last position: a token's de-meaned logit, or a custom
/// direction such as a logit difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitTarget {
    /// Display string (the decoded token, or e.g. `" Austin" - " Dallas"`).
    pub token: String,
    /// Vocabulary index; custom targets get the virtual index `d_vocab + i` (as circuit-tracer).
    pub vocab_idx: u32,
}

/// Everything about a graph that is not a tensor. Stored as JSON in the graph file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GraphMeta {
    /// adag's version that wrote the graph.
    pub adag_version: String,
    /// `"transcoder"` or `"neuron"`.
    pub basis: String,
    /// Model directory or name.
    pub model: String,
    /// Feature-set identifier for the frontend (circuit-tracer's `scan`): the transcoder
    /// directory or repo.
    pub scan: Option<String>,
    /// The prompt as given.
    pub prompt: String,
    /// Each input token decoded on its own.
    pub token_strings: Vec<String>,
    /// Number of transformer layers.
    pub n_layers: usize,
    /// Vocabulary size of the model.
    pub d_vocab: usize,
    /// Attribution settings (max_n_logits, batch_size, ...).
    #[serde(default)]
    pub settings: serde_json::Value,
    /// Replacement and completeness scores, when computed.
    #[serde(default)]
    pub scores: Option<crate::GraphScores>,
    /// Exact decomposition of every target and feature value (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<crate::Accounting>,
    /// Seconds per phase.
    #[serde(default)]
    pub timings: serde_json::Value,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A selected transcoder feature (or neuron), with its index into `active_features`.
    Feature {
        /// Layer.
        layer: u32,
        /// Token position.
        pos: u32,
        /// Feature (or neuron) index within the layer.
        feature: u32,
        /// Row of `active_features`.
        active_index: u32,
    },
    /// The transcoder's reconstruction error at (layer, pos).
    Error {
        /// Layer.
        layer: u32,
        /// Token position.
        pos: u32,
    },
    /// An input token's embedding.
    Token {
        /// Token position.
        pos: u32,
        /// Token id.
        token: u32,
    },
    /// A logit target.
    Logit {
        /// Index into `logit_targets`.
        index: u32,
    },
}

/// A dense attribution graph in circuit-tracer's layout.
///
/// Node order (both for rows and columns of `adjacency`):
/// `[selected features (ascending active index, i.e. (layer, pos, feature) order) |
///   errors (index layer·n_pos + pos) | tokens (pos) | logits (target order)]`.
/// `adjacency[t·n + s]` is the direct effect of source `s` on target `t`; only feature and
/// logit rows are non-zero, and every source lies in an earlier layer (or is a token), so the
/// matrix is acyclic.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Metadata.
    pub meta: GraphMeta,
    /// `[n_nodes × n_nodes]`, row-major, rows are targets.
    pub adjacency: Vec<f32>,
    /// `[n_active]` of (layer, pos, feature) for **all** active features, selected or not.
    pub active_features: Vec<[u32; 3]>,
    /// `[n_active]` activation of every active feature.
    pub activation_values: Vec<f32>,
    /// Indices into `active_features` of the features that are nodes, ascending.
    pub selected_features: Vec<u32>,
    /// Input token ids (including a prepended BOS).
    pub input_tokens: Vec<u32>,
    /// The logit targets.
    pub logit_targets: Vec<LogitTarget>,
    /// Their weights in influence computations (next-token probabilities in salient mode).
    pub logit_probabilities: Vec<f32>,
}

impl Graph {
    /// Number of token positions.
    pub fn n_pos(&self) -> usize {
        self.input_tokens.len()
    }
    /// Number of feature nodes.
    pub fn n_features(&self) -> usize {
        self.selected_features.len()
    }
    /// Number of error nodes (`n_layers · n_pos`).
    pub fn n_errors(&self) -> usize {
        self.meta.n_layers * self.n_pos()
    }
    /// Number of logit nodes.
    pub fn n_logits(&self) -> usize {
        self.logit_targets.len()
    }
    /// Total node count.
    pub fn n_nodes(&self) -> usize {
        self.n_features() + self.n_errors() + self.n_pos() + self.n_logits()
    }
    /// Index of the error node at (layer, pos).
    pub fn error_index(&self, layer: usize, pos: usize) -> usize {
        self.n_features() + layer * self.n_pos() + pos
    }
    /// Index of the token node at `pos`.
    pub fn token_index(&self, pos: usize) -> usize {
        self.n_features() + self.n_errors() + pos
    }
    /// Index of logit target `k`.
    pub fn logit_index(&self, k: usize) -> usize {
        self.n_features() + self.n_errors() + self.n_pos() + k
    }
    /// Edge weight from `source` to `target`.
    pub fn edge(&self, target: usize, source: usize) -> f32 {
        self.adjacency[target * self.n_nodes() + source]
    }

    /// What node `i` is.
    pub fn node_kind(&self, i: usize) -> NodeKind {
        let (f, e, p) = (self.n_features(), self.n_errors(), self.n_pos());
        if i < f {
            let active_index = self.selected_features[i];
            let [layer, pos, feature] = self.active_features[active_index as usize];
            NodeKind::Feature {
                layer,
                pos,
                feature,
                active_index,
            }
        } else if i < f + e {
            let j = i - f;
            NodeKind::Error {
                layer: (j / p) as u32,
                pos: (j % p) as u32,
            }
        } else if i < f + e + p {
            let pos = i - f - e;
            NodeKind::Token {
                pos: pos as u32,
                token: self.input_tokens[pos],
            }
        } else {
            NodeKind::Logit {
                index: (i - f - e - p) as u32,
            }
        }
    }

    /// Feature node `i` as `[layer, position, feature]` with its activation; None for the
    /// other kinds.
    pub fn feature(&self, i: usize) -> Option<([u32; 3], f32)> {
        let a = *self.selected_features.get(i)? as usize;
        Some((self.active_features[a], self.activation_values[a]))
    }

    /// The weight vector of influence computations: 0 everywhere but the logits.
    pub fn logit_weights(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.n_nodes()];
        let off = self.logit_index(0);
        w[off..].copy_from_slice(&self.logit_probabilities);
        w
    }

    /// Checks that sizes agree with each other.
    ///
    /// Sizes declared by a file (`n_layers`) are checked against the adjacency actually present
    /// before any node count is computed, so an absurd declaration is an error, never an
    /// overflow; a non-finite adjacency entry or activation is refused here, naming it, because
    /// influence would otherwise fail later with a misleading "not acyclic".
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Inconsistent(m));
        if self.input_tokens.is_empty() {
            return bad("the graph has no input tokens".into());
        }
        if self.logit_targets.is_empty() {
            return bad("the graph has no logit targets".into());
        }
        let n = self
            .meta
            .n_layers
            .checked_mul(self.n_pos())
            .and_then(|e| e.checked_add(self.n_features() + self.n_pos() + self.n_logits()))
            .filter(|n| n.checked_mul(*n) == Some(self.adjacency.len()));
        let Some(n) = n else {
            return bad(format!(
                "n_layers = {} with {} positions, {} features and {} logits does not match an adjacency of {} entries",
                self.meta.n_layers,
                self.n_pos(),
                self.n_features(),
                self.n_logits(),
                self.adjacency.len()
            ));
        };
        if let Some(k) = self.adjacency.iter().position(|x| !x.is_finite()) {
            return bad(format!(
                "adjacency[{}, {}] is {} (edges must be finite)",
                k / n,
                k % n,
                self.adjacency[k]
            ));
        }
        if let Some(k) = self.activation_values.iter().position(|x| !x.is_finite()) {
            return bad(format!(
                "activation_values[{k}] is {} (activations must be finite)",
                self.activation_values[k]
            ));
        }
        if self.adjacency.len() != n * n {
            return bad(format!(
                "adjacency has {} entries, expected {n}×{n}",
                self.adjacency.len()
            ));
        }
        if self.activation_values.len() != self.active_features.len() {
            return bad(format!(
                "{} activation values for {} active features",
                self.activation_values.len(),
                self.active_features.len()
            ));
        }
        if self.logit_probabilities.len() != self.logit_targets.len() {
            return bad(format!(
                "{} logit probabilities for {} logit targets",
                self.logit_probabilities.len(),
                self.logit_targets.len()
            ));
        }
        if let Some(&s) = self
            .selected_features
            .iter()
            .find(|&&s| s as usize >= self.active_features.len())
        {
            return bad(format!(
                "selected feature {s} is not an active feature index"
            ));
        }
        if !self.selected_features.windows(2).all(|w| w[0] < w[1]) {
            return bad("selected_features must be strictly ascending".into());
        }
        if let Some(f) = self
            .active_features
            .iter()
            .find(|f| f[0] as usize >= self.meta.n_layers || f[1] as usize >= self.n_pos())
        {
            return bad(format!(
                "active feature {f:?} lies outside {} layers × {} positions",
                self.meta.n_layers,
                self.n_pos()
            ));
        }
        Ok(())
    }
}
