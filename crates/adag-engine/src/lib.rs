//! adag-engine: the linearised backward engine and the bases that plug into it.
//!
//! Pipeline role: between the forward pass (adag-model) and the graph (adag-graph). A forward
//! pass caches the frozen quantities (norm denominators, attention patterns); [`FrozenModel`]
//! turns them into a linear model of the prompt and runs batched vector–Jacobian products
//! through it. A [`Basis`] only says how its nodes read from and write to the residual stream:
//! transcoder features ([`transcoder`]) read at their input hook with encoder rows and write
//! decoder rows at their output hook; MLP neurons ([`NeuronBasis`]) read through their RelP
//! read vectors and write `W_down` columns; the basis's [`MlpPath`] says what crosses an MLP
//! between nodes (a transcoder's skip, or nothing).
//!
//! One driver (the `driver` module) binds a prompt to the frozen model and a basis, computes
//! rows by batched backward passes and assembles the graph; two node-selection strategies sit
//! on it: [`attribute`] (circuit-tracer's influence ranking under a node budget, any basis)
//! and [`neuron`]'s tracer (ADAG's total-effect threshold, so at dataset scale only the
//! selected neurons get rows). Both return a graph; [`circuit_from_graph`] and the neuron
//! tracer read ADAG circuits off it; [`intervene`] sets or scales nodes of either basis.
#![deny(missing_docs)]

pub mod accounting;
pub mod attention;
mod attention_cpu;
pub mod attribute;
pub mod basis;
pub mod circuit;
pub mod constrained;
mod cpu_gemm;
mod driver;
pub mod error;
pub mod frozen;
pub mod intervene;
pub mod neuron;
pub mod reading;
pub mod tally;
pub mod targets;
pub mod transcoder;

pub use attribute::{attribute, attribute_with_progress, prepare_tokens, AttributeOptions};
pub use basis::{Basis, BasisKind, NeuronBasis, NeuronPrompt, PromptNodes};
pub use circuit::{accounted_target_values, circuit_from_graph, CircuitOptions};
pub use error::{Error, Result};
pub use frozen::{FrozenModel, MlpJvp, MlpPath, ReadSite, Seeds, StopMlp, Visitor, WriteSite};
pub use targets::{CustomTarget, TargetSpec};
pub use transcoder::TranscoderSet;
