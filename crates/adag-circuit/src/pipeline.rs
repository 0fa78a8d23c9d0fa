//! The tracing loop: batches of prepared prompts through a [`Tracer`], each finished batch
//! written as its own part (so a killed job resumes where it stopped), then the final circuit.
//!
//! The tracer is a trait so this crate does not depend on the engine: the `adag` binary
//! implements it with `adag_engine::neuron::trace_prompts`, tests with a deterministic fake.

use std::time::Instant;

use adag_model::ModelTokenizer;

use adag_engine::circuit::PromptCircuit;

use crate::circuit::Circuit;
use crate::error::{Error, Result};
use crate::prepare::PreparedPrompt;
use crate::shard::Shard;
use crate::store::{fingerprint_json, CircuitDir, DatasetInfo, Manifest, RunStamp, Timings};

/// Traces a batch of prompts: one [`PromptCircuit`] per input, in order.
pub trait Tracer {
    /// Traces `batch`; an error message should say what failed (it is reported with the
    /// batch's prompt ids).
    fn trace(
        &mut self,
        batch: &[PreparedPrompt],
    ) -> std::result::Result<Vec<PromptCircuit>, String>;
}

impl<F> Tracer for F
where
    F: FnMut(&[PreparedPrompt]) -> std::result::Result<Vec<PromptCircuit>, String>,
{
    fn trace(
        &mut self,
        batch: &[PreparedPrompt],
    ) -> std::result::Result<Vec<PromptCircuit>, String> {
        self(batch)
    }
}

/// What a run is, besides its prompts.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The circuit directory.
    pub out: std::path::PathBuf,
    /// Settings and inputs that determine the rows (compared on resume; see
    /// [`crate::store`]). Must not contain the batch size, the shard or the output path.
    pub identity: serde_json::Value,
    /// The whole resolved config, for the manifest.
    pub config: serde_json::Value,
    /// Model directory or name.
    pub model: String,
    /// The reference's model id, if known.
    pub model_id: Option<String>,
    /// The dataset.
    pub dataset: DatasetInfo,
    /// This job's shard.
    pub shard: Shard,
    /// Prompts per traced batch.
    pub batch_size: usize,
    /// Replace a directory holding another run.
    pub overwrite: bool,
    /// Seconds spent loading the model and preparing prompts (for the manifest).
    pub load_s: f64,
    /// Seconds spent preparing prompts.
    pub prepare_s: f64,
}

/// Progress after each batch, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Prompts finished (including those found finished at start).
    pub done: usize,
    /// Prompts in this shard.
    pub total: usize,
    /// Prompts found finished at start.
    pub resumed: usize,
}

/// Runs `prompts` (this shard's, in prompt-id order) and writes the circuit; returns its
/// manifest. `progress` is called once at start and after every batch.
pub fn run(
    spec: &RunSpec,
    prompts: &[PreparedPrompt],
    tok: &ModelTokenizer,
    tracer: &mut dyn Tracer,
    progress: &mut dyn FnMut(Progress),
) -> Result<Manifest> {
    let start = Instant::now();
    let range = spec.shard.range(spec.dataset.n_prompts);
    let range = (range.start as u64, range.end as u64);
    if let Some(p) = prompts
        .iter()
        .find(|p| p.prompt_id < range.0 || p.prompt_id >= range.1)
    {
        return Err(Error::circuit(
            &spec.out,
            format!(
                "prompt {} is outside shard {} ({:?})",
                p.prompt_id, spec.shard, range
            ),
        ));
    }
    if spec.batch_size == 0 {
        return Err(Error::circuit(&spec.out, "batch size 0"));
    }
    let dir = CircuitDir::new(&spec.out);
    let fingerprint = fingerprint_json(&spec.identity);
    dir.begin(
        &RunStamp {
            identity: spec.identity.clone(),
            fingerprint: fingerprint.clone(),
            shard: spec.shard,
            prompt_range: range,
        },
        spec.overwrite,
    )?;
    if let Some(m) = dir.manifest()? {
        // Already complete (begin() checked that it is this run): nothing to trace.
        if m.fingerprint == fingerprint && m.shard == Some(spec.shard) {
            let n = prompts.len();
            progress(Progress {
                done: n,
                total: n,
                resumed: n,
            });
            return Ok(m);
        }
    }
    let done = dir.finished_ids()?;
    let todo: Vec<&PreparedPrompt> = prompts
        .iter()
        .filter(|p| !done.contains(&p.prompt_id))
        .collect();
    let resumed = prompts.len() - todo.len();
    let mut report = Progress {
        done: resumed,
        total: prompts.len(),
        resumed,
    };
    progress(report);
    let (mut trace_s, mut write_s) = (0.0, 0.0);
    // Batches are runs of consecutive ids, so each part is one id range.
    let mut batches: Vec<Vec<PreparedPrompt>> = Vec::new();
    for p in todo {
        match batches.last_mut() {
            Some(b)
                if b.len() < spec.batch_size
                    && b.last().map(|l| l.prompt_id + 1) == Some(p.prompt_id) =>
            {
                b.push(p.clone())
            }
            _ => batches.push(vec![p.clone()]),
        }
    }
    for batch in batches {
        let first = batch[0].prompt_id;
        let end = first + batch.len() as u64;
        let t0 = Instant::now();
        let traced = tracer.trace(&batch).map_err(|message| Error::Trace {
            first,
            end,
            message,
        })?;
        trace_s += t0.elapsed().as_secs_f64();
        if traced.len() != batch.len() {
            return Err(Error::Trace {
                first,
                end,
                message: format!(
                    "the tracer returned {} circuits for {} prompts",
                    traced.len(),
                    batch.len()
                ),
            });
        }
        let t1 = Instant::now();
        let mut c = Circuit::default();
        for (p, t) in batch.iter().zip(&traced) {
            let strings = tok
                .token_strings(&t.targets)
                .map_err(|source| Error::Tokenizer {
                    prompt_id: p.prompt_id,
                    source: Box::new(source),
                })?;
            c.push(p, t, strings);
        }
        dir.write_part(&(first..end), &c)?;
        write_s += t1.elapsed().as_secs_f64();
        report.done += batch.len();
        progress(report);
    }
    let t2 = Instant::now();
    let parts = dir.finished_parts()?;
    let sources = dir.part_sources(&parts);
    let mut ids: Vec<u64> = Vec::new();
    for p in &sources[2] {
        ids.extend(crate::circuit::read_prompts(p)?.iter().map(|r| r.prompt_id));
    }
    let expected: Vec<u64> = prompts.iter().map(|p| p.prompt_id).collect();
    if ids != expected {
        return Err(Error::circuit(
            &spec.out,
            format!("the finished parts hold prompts {ids:?}, expected {expected:?}; remove the directory and rerun"),
        ));
    }
    let total = start.elapsed().as_secs_f64() + spec.load_s + spec.prepare_s;
    let traced_now = prompts.len() - resumed;
    let make = |[n_nodes, n_edges, n_prompts]: [usize; 3]| Manifest {
        format: "adag-circuit".into(),
        format_version: crate::store::FORMAT_VERSION,
        adag_version: env!("CARGO_PKG_VERSION").into(),
        model: spec.model.clone(),
        model_id: spec.model_id.clone(),
        identity: spec.identity.clone(),
        fingerprint,
        config: spec.config.clone(),
        dataset: spec.dataset.clone(),
        shard: Some(spec.shard),
        merged_shards: Vec::new(),
        prompt_range: range,
        n_prompts,
        n_nodes,
        n_edges,
        timings: Timings {
            load: spec.load_s,
            prepare: spec.prepare_s,
            trace: trace_s,
            write: write_s + t2.elapsed().as_secs_f64(),
            total,
            prompts_per_s: if trace_s > 0.0 {
                traced_now as f64 / trace_s
            } else {
                0.0
            },
            resumed_prompts: resumed,
        },
        traced_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    dir.finish_from(&sources, make)
}
