//! The circuit pipeline around the engine: datasets in, Parquet circuits (of neurons or
//! transcoder features) out.
//!
//! Pipeline role: `adag trace` reads a run config ([`config`]) and a dataset ([`dataset`]),
//! turns each item into the tokens the model sees exactly as Transluce's ADAG reference does
//! ([`prepare`]: chat template, seed response, traced position, targets), runs batches through
//! a [`pipeline::Tracer`] ([`tracer::trace_batch`]: neurons or transcoder features) and writes
//! a circuit directory ([`store`]) of Parquet tables ([`circuit`]) that pandas, polars and
//! duckdb read directly. Big datasets are split into SLURM array shards ([`shard`]) and merged
//! back ([`store::merge`]); a killed job resumes from its finished batches.
//!
//! The Parquet tables replace the reference's Python-only `CircuitData` pickle with the same
//! columns, in unpadded positions (see `shared/reference/adag.md` §3).
//!
//! ```
//! use adag_circuit::shard::Shard;
//! // np.array_split semantics: 10 prompts over 4 jobs
//! assert_eq!(Shard::parse("1/4").unwrap().range(10), 3..6);
//! ```

#![deny(missing_docs)]

pub mod circuit;
pub mod config;
pub mod dataset;
pub mod engine_options;
pub mod error;
pub mod pipeline;
pub mod prepare;
pub mod shard;
pub mod store;
pub mod tracer;

pub use adag_engine::circuit::{CircuitEdge, CircuitNode, PromptCircuit};
pub use circuit::{Circuit, EdgeRow, NodeRow, PromptRow};
pub use config::{Resolved, Rule, RunConfig};
pub use dataset::{Dataset, DatasetItem};
pub use engine_options::{neuron_options, run_identity};
pub use error::{Error, Result};
pub use pipeline::{Progress, RunSpec, Tracer};
pub use prepare::{prepare, PreparedPrompt, PromptOptions};
pub use shard::Shard;
pub use store::{merge, read_circuit, CircuitDir, Manifest};
pub use tracer::{trace_batch, TraceBasis, TracedBatch};
