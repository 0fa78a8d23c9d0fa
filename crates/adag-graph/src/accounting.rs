//! Graph accounting: where every unit of a node's value comes from.
//!
//! An attribution graph's edges are exact direct effects in the frozen linear model, but the
//! graph's sources (features, errors, tokens) are not everything that writes to the residual
//! stream: decoder biases, attention biases, and the BOS position (whose MLP output is no node)
//! write too. Without naming them, a target row's edges need not sum to anything a reader can
//! check, and a strongly positive logit can look as if it came from nowhere. [`Accounting`]
//! states, per target logit and per feature, `value = features + errors + tokens + Σ terms +
//! residual`, where each term is measured on its own in the frozen linear model and the residual
//! is only floating-point rounding.

use serde::{Deserialize, Serialize};

/// One named constant contribution (a bias, the BOS position, …) to a node's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// What writes it, e.g. `"transcoder decoder biases"`.
    pub name: String,
    /// Its contribution to the node's value.
    pub value: f32,
}

/// The decomposition of one node's value in the frozen linear model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAccount {
    /// The value being explained: a target's de-meaned logit, or a feature's pre-activation.
    pub value: f32,
    /// Σ of the edges from the graph's feature nodes.
    pub features: f32,
    /// Σ of the edges from error nodes.
    pub errors: f32,
    /// Σ of the edges from token (embedding) nodes.
    pub tokens: f32,
    /// Every other contribution, each measured separately.
    pub terms: Vec<Term>,
    /// `value − (features + errors + tokens + Σ terms)`: floating-point rounding only.
    pub residual: f32,
}

impl NodeAccount {
    /// The residual relative to the largest part of the sum (or the value), so that a large
    /// cancellation of big parts is judged at their scale.
    pub fn relative_residual(&self) -> f32 {
        let scale = self
            .terms
            .iter()
            .map(|t| t.value.abs())
            .chain([self.value, self.features, self.errors, self.tokens].map(f32::abs))
            .fold(0.0f32, f32::max);
        if scale == 0.0 {
            self.residual.abs()
        } else {
            self.residual.abs() / scale
        }
    }

    /// Sets `residual` from the parts.
    pub fn close(&mut self) {
        let sum: f64 = [self.features, self.errors, self.tokens]
            .iter()
            .chain(self.terms.iter().map(|t| &t.value))
            .map(|&x| x as f64)
            .sum();
        self.residual = (self.value as f64 - sum) as f32;
    }

    /// Value of the term called `name` (0 when absent).
    pub fn term(&self, name: &str) -> f32 {
        self.terms
            .iter()
            .find(|t| t.name == name)
            .map_or(0.0, |t| t.value)
    }
}

/// Accounting of a whole graph, stored in its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Accounting {
    /// One per logit target, in `logit_targets` order. The value is the de-meaned logit; the
    /// model's own (linear) logit is that plus `demean_constant`.
    pub targets: Vec<TargetAccount>,
    /// One per feature node, in node order (`selected_features`); the value is the
    /// pre-activation.
    pub features: Vec<NodeAccount>,
}

/// A target's account plus the constant that de-meaning removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetAccount {
    /// The decomposition of the de-meaned logit.
    #[serde(flatten)]
    pub account: NodeAccount,
    /// The mean logit over the vocabulary (`x · mean W_U`), which de-meaning subtracts; None
    /// for custom (difference) targets.
    pub demean_constant: Option<f32>,
}

impl Accounting {
    /// The largest relative residual over every node.
    pub fn worst_relative_residual(&self) -> f32 {
        self.targets
            .iter()
            .map(|t| &t.account)
            .chain(&self.features)
            .map(NodeAccount::relative_residual)
            .fold(0.0, f32::max)
    }
}
