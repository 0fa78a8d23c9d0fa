//! adag-graph: attribution graphs as values, and everything done to them after attribution.
//!
//! Pipeline role: the engine (adag-engine) produces a dense [`Graph`]; this crate prunes it
//! ([`prune`]), scores it ([`graph_scores`]), saves and loads it ([`Graph::save`], one
//! safetensors file readable from Python with `safetensors` alone) and exports it for the
//! circuit-tracer/Neuronpedia frontend ([`frontend::write_graph_files`]).
//!
//! Node order is circuit-tracer's and is documented on [`Graph`]:
//! `[features | errors (layer-major) | tokens | logits]`, rows are targets, columns sources.
//!
//! ```
//! use adag_graph::{influence, normalize};
//! // 0 ← 1 ← 2 (node 2 feeds 1, 1 feeds 0), weight on node 0.
//! let n = 3;
//! let mut a = vec![0.0f32; n * n];
//! a[0 * n + 1] = 2.0;
//! a[1 * n + 2] = -1.0;
//! let infl = influence(&normalize(&a, n), n, &[1.0, 0.0, 0.0]).unwrap();
//! assert_eq!(infl, vec![0.0, 1.0, 1.0]);
//! ```
#![deny(missing_docs)]

pub mod accounting;
mod edge_mask;
pub mod error;
pub mod file;
pub mod frontend;
mod graph;
pub mod heads;
mod prune;
#[cfg(test)]
mod prune_dense;
mod rows;

pub use accounting::{Accounting, NodeAccount, TargetAccount, Term};
pub use edge_mask::EdgeMask;
pub use error::{Error, Result};
pub use graph::{Graph, GraphMeta, LogitTarget, NodeKind};
pub use heads::HeadLoadings;
pub use prune::{
    find_threshold, graph_scores, influence, normalize, prune, prune_and_score, pruned_graph,
    GraphScores, PruneResult,
};
