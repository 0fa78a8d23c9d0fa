//! The basis a dataset is traced in, and the tracing of one batch: shared by `adag trace` and
//! the Python package, so both give the same circuit (and either resumes the other's run).
//!
//! Neurons go through the neuron tracer (`adag_engine::neuron::trace_prompts`: one batched
//! forward pass, total-effect selection first, rows for the selected neurons only). Features
//! go through the engine's attribution driver (each prompt's full graph, no feature cap) and
//! are read as an ADAG circuit by `adag_engine::circuit_from_graph`, with the same targets
//! (answers, or the top k) and thresholds; their targets are de-meaned logits.

use adag_engine::neuron::{trace_prompts, trace_prompts_with_graphs, NeuronOptions, PromptInput};
use adag_engine::{
    accounted_target_values, attribute, circuit_from_graph, AttributeOptions, CircuitOptions,
    TargetSpec, TranscoderSet,
};
use adag_graph::{Graph, GraphMeta};
use adag_model::Transformer;

use crate::prepare::PreparedPrompt;
use crate::PromptCircuit;

/// What a circuit's nodes are.
pub enum TraceBasis {
    /// The model's MLP neurons (ADAG).
    Neurons,
    /// Transcoder features.
    Features(TranscoderSet),
}

impl TraceBasis {
    /// What the run identity records of the basis (None for neurons, so that neuron runs keep
    /// the identity they always had).
    pub fn identity(&self) -> Option<serde_json::Value> {
        match self {
            TraceBasis::Neurons => None,
            TraceBasis::Features(tc) => {
                Some(serde_json::json!({ "source": tc.source, "scan": tc.scan }))
            }
        }
    }

    /// The manifest's `config`: the resolved run, the engine's options, and the basis with its
    /// transcoders (read back by [`crate::Manifest::transcoders`]).
    pub fn manifest_config(
        &self,
        run: &crate::Resolved,
        engine: &NeuronOptions,
    ) -> serde_json::Value {
        let (basis, transcoders) = match self {
            TraceBasis::Neurons => ("neuron", None),
            TraceBasis::Features(tc) => ("transcoder", Some(tc.source.display().to_string())),
        };
        serde_json::json!({
            "run": run,
            "engine": engine,
            "basis": basis,
            "transcoders": transcoders,
        })
    }
}

/// One traced batch: a circuit per prompt, and for features each prompt's attribution graph.
pub struct TracedBatch {
    /// In prompt order.
    pub circuits: Vec<PromptCircuit>,
    /// The graph each circuit was read from (features: always; neurons: when asked for).
    pub graphs: Vec<Graph>,
}

/// Traces `batch` in `basis` with the run's options; `meta` describes a prompt's graph and
/// `token_str` decodes target tokens; `graphs` keeps every prompt's attribution graph (the
/// one its circuit was read from) for export. An error is the engine's message (with the
/// prompt id for features), as the pipeline reports a failed batch.
pub fn trace_batch(
    model: &Transformer,
    basis: &TraceBasis,
    batch: &[PreparedPrompt],
    opts: &NeuronOptions,
    meta: &dyn Fn(&PreparedPrompt) -> GraphMeta,
    token_str: &dyn Fn(u32) -> String,
    graphs: bool,
) -> Result<TracedBatch, String> {
    match basis {
        TraceBasis::Neurons => {
            let inputs: Vec<PromptInput> = batch
                .iter()
                .map(|p| PromptInput {
                    tokens: p.tokens.clone(),
                    targets: p.targets.clone(),
                })
                .collect();
            if !graphs {
                return Ok(TracedBatch {
                    circuits: trace_prompts(model, &inputs, opts).map_err(|e| format!("{e:#}"))?,
                    graphs: Vec::new(),
                });
            }
            let (circuits, mut graphs, _) =
                trace_prompts_with_graphs(model, &inputs, opts).map_err(|e| format!("{e:#}"))?;
            for (g, p) in graphs.iter_mut().zip(batch) {
                // The engine fills what it knows (basis, sizes, settings); the prompt's
                // description comes from the caller, as for feature graphs.
                let described = meta(p);
                g.meta = GraphMeta {
                    basis: std::mem::take(&mut g.meta.basis),
                    n_layers: g.meta.n_layers,
                    d_vocab: g.meta.d_vocab,
                    settings: g.meta.settings.take(),
                    ..described
                };
                for t in &mut g.logit_targets {
                    t.token = token_str(t.vocab_idx);
                }
            }
            Ok(TracedBatch { circuits, graphs })
        }
        TraceBasis::Features(tc) => {
            let mut out = TracedBatch {
                circuits: Vec::with_capacity(batch.len()),
                graphs: Vec::with_capacity(batch.len()),
            };
            for p in batch {
                let fail = |e: adag_engine::Error| format!("prompt {}: {e:#}", p.prompt_id);
                let options = AttributeOptions {
                    targets: match &p.targets {
                        Some(t) if !t.is_empty() => TargetSpec::Tokens(t.clone()),
                        _ => TargetSpec::TopK(opts.k),
                    },
                    batch_size: opts.batch_size,
                    max_feature_nodes: None,
                    ..Default::default()
                };
                let g =
                    attribute(model, &p.tokens, tc, &options, meta(p), token_str).map_err(fail)?;
                let values = accounted_target_values(&g).map_err(fail)?;
                out.circuits.push(
                    circuit_from_graph(&g, &values, &CircuitOptions::from(opts)).map_err(fail)?,
                );
                out.graphs.push(g);
            }
            Ok(out)
        }
    }
}
