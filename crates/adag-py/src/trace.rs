//! `adag.trace`, `Circuit.cluster` and `Circuit.steer`: the `adag trace`, `adag cluster` and
//! `adag steer` pipelines on library functions, writing the same circuit directory.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use adag_analysis::steer::{summarise, Scope, Steerer, Target};
use adag_analysis::{
    cluster as spectral, ClusterOptions, ClusterState, Profiles, SimilarityOptions,
};
use adag_circuit::pipeline::{self, RunSpec};
use adag_circuit::prepare::{detect_model_id, is_llama31_8b_instruct, prepare, PromptOptions};
use adag_circuit::{
    neuron_options, run_identity, trace_batch, Dataset, PreparedPrompt, PromptCircuit, RunConfig,
    Shard, TraceBasis,
};
use adag_graph::GraphMeta;
use pyo3::prelude::*;

use crate::errors::{invalid, to_py};
use crate::interrupt::Interrupt;
use crate::model::Model;

const INTERRUPTED: &str = "interrupted";

/// Traces the dataset of `config` (a JSON object with `adag trace`'s run-config keys) with
/// `model` and writes the circuit directory `config.output_path`; returns that path.
#[pyfunction]
#[pyo3(signature = (model, config, overwrite=false, backward_batch=128, progress=None, transcoders=None))]
pub fn trace(
    py: Python<'_>,
    model: &Model,
    config: &str,
    overwrite: bool,
    backward_batch: usize,
    progress: Option<Py<PyAny>>,
    transcoders: Option<PathBuf>,
) -> PyResult<PathBuf> {
    let t_start = Instant::now();
    let cfg: RunConfig =
        serde_json::from_str(config).map_err(|e| invalid(format!("trace options: {e}")))?;
    let source = "adag.trace";
    let r = cfg.resolve(source).map_err(to_py)?;
    let interrupt = Interrupt::new(progress);
    let m = &model.inner;
    py.detach(|| {
        let dataset = Dataset::load(&r.dataset).map_err(to_py)?;
        if let Some(a) = &r.true_answers {
            if a.len() != dataset.len() {
                return Err(invalid(format!(
                    "{source}: `true_answers` has {} entries but the dataset {} has {} prompts",
                    a.len(),
                    r.dataset.display(),
                    dataset.len()
                )));
            }
        }
        let model_id = r.model_id.clone().or_else(|| detect_model_id(&r.model));
        let load_s = t_start.elapsed().as_secs_f64();
        let t_prep = Instant::now();
        let prompt_opts = PromptOptions {
            system_prompt: r.system_prompt.clone(),
            default_seed: r.seed_response.clone(),
            use_chat_format: r.use_chat_format,
            llama31_stripped_template: r.use_chat_format
                && model_id.as_deref().is_some_and(is_llama31_8b_instruct),
        };
        let prompts: Vec<PreparedPrompt> = (0..dataset.len())
            .map(|i| {
                let answers = r.true_answers.as_ref().map(|a| a[i].as_slice());
                prepare(
                    &m.tokenizer,
                    &dataset.items[i],
                    i as u64,
                    answers,
                    &prompt_opts,
                )
            })
            .collect::<adag_circuit::Result<_>>()
            .map_err(to_py)?;
        let prepare_s = t_prep.elapsed().as_secs_f64();
        let opts = neuron_options(&r, model_id.as_deref(), backward_batch);
        let basis = match &transcoders {
            Some(t) => {
                let tc = crate::model::load_transcoders(t)?;
                tc.check_model(&m.model.cfg).map_err(to_py)?;
                TraceBasis::Features(tc)
            }
            None => TraceBasis::Neurons,
        };
        let (dataset_info, identity) = run_identity(
            &r,
            &r.model,
            model_id.as_deref(),
            &prompt_opts,
            &opts,
            &basis,
            &dataset,
        )
        .map_err(to_py)?;
        let spec = RunSpec {
            out: r.output_path.clone(),
            identity,
            config: basis.manifest_config(&r, &opts),
            model: r.model.display().to_string(),
            model_id: model_id.clone(),
            dataset: dataset_info,
            shard: Shard::ALL,
            batch_size: r.batch_size,
            overwrite,
            load_s,
            prepare_s,
        };
        let done = Mutex::new((0usize, prompts.len()));
        let mut tracer =
            |batch: &[PreparedPrompt]| -> std::result::Result<Vec<PromptCircuit>, String> {
                let (d, t) = done.lock().map(|g| *g).unwrap_or((0, 0));
                if !interrupt.poll(d, t) {
                    return Err(INTERRUPTED.into());
                }
                let meta = |p: &PreparedPrompt| GraphMeta {
                    prompt: p.text.clone(),
                    token_strings: p.token_strings.clone(),
                    ..Default::default()
                };
                let decode = |t: u32| {
                    m.tokenizer
                        .token_strings(&[t])
                        .ok()
                        .and_then(|v| v.into_iter().next())
                        .unwrap_or_default()
                };
                trace_batch(&m.model, &basis, batch, &opts, &meta, &decode, false)
                    .map(|t| t.circuits)
            };
        let result = pipeline::run(&spec, &prompts, &m.tokenizer, &mut tracer, &mut |p| {
            if let Ok(mut g) = done.lock() {
                *g = (p.done, p.total);
            }
        });
        match result {
            Ok(_) => {
                let (d, t) = done.lock().map(|g| *g).unwrap_or((0, 0));
                if interrupt.poll(d, t) {
                    Ok(r.output_path.clone())
                } else {
                    Err(interrupt.error_or(invalid(INTERRUPTED)))
                }
            }
            Err(e) => Err(interrupt.error_or(to_py(e))),
        }
    })
}

/// Clusters a circuit's units as `adag cluster` does; writes and returns the cluster-state file.
#[pyfunction]
#[pyo3(signature = (circuit, k, combine="harmonic", weight_by_attribution=false, seed=42, n_init=10, out=None))]
#[allow(clippy::too_many_arguments)]
pub fn cluster(
    py: Python<'_>,
    circuit: PathBuf,
    k: usize,
    combine: &str,
    weight_by_attribution: bool,
    seed: u64,
    n_init: usize,
    out: Option<PathBuf>,
) -> PyResult<PathBuf> {
    let combine = combine
        .parse()
        .map_err(|e: String| invalid(format!("combine: {e}")))?;
    py.detach(|| {
        let (c, _) = adag_circuit::read_circuit(&circuit).map_err(to_py)?;
        let profiles = Profiles::from_circuit(&c);
        let opts = ClusterOptions {
            k,
            similarity: SimilarityOptions {
                combine,
                weight_by_attribution,
            },
            seed,
            n_init,
            k_range: None,
        };
        let clustering = spectral(&profiles, &opts).map_err(to_py)?;
        let state = clustering.to_state(&circuit.display().to_string(), &profiles, &opts);
        let out = out.unwrap_or_else(|| ClusterState::default_path(&circuit));
        state.write(&out).map_err(to_py)?;
        Ok(out)
    })
}

/// Steers a cluster (or a neuron `"LAYER:NEURON"` with `neuron=True`) at each scale, as
/// `adag steer`; returns JSON `{"summary": [...], "runs": [...]}`.
#[pyfunction]
#[pyo3(signature = (model, circuit, target, neuron=false, scales=vec![0.0, 2.0], all_positions=false, prompts=None, generate=0, clusters=None))]
#[allow(clippy::too_many_arguments)]
pub fn steer(
    py: Python<'_>,
    model: &Model,
    circuit: PathBuf,
    target: &str,
    neuron: bool,
    scales: Vec<f32>,
    all_positions: bool,
    prompts: Option<Vec<u64>>,
    generate: usize,
    clusters: Option<PathBuf>,
) -> PyResult<String> {
    py.detach(|| {
        let (c, manifest) = adag_circuit::read_circuit(&circuit).map_err(to_py)?;
        let cs_path = clusters.unwrap_or_else(|| ClusterState::default_path(&circuit));
        let cs = ClusterState::read(&cs_path).map_err(to_py)?;
        let basis: Box<dyn adag_engine::Basis> = match manifest.transcoders() {
            Some(tc) => Box::new(
                crate::model::load_transcoders(&tc)?,
            ),
            None => Box::new(adag_engine::NeuronBasis::default()),
        };
        let steerer = Steerer::new(&model.inner.model, basis.as_ref(), &c, &cs);
        let scope = if all_positions {
            Scope::AllPositions
        } else {
            Scope::Traced
        };
        let t = if neuron {
            let (l, i) = target
                .split_once(':')
                .and_then(|(l, i)| Some((l.parse().ok()?, i.parse().ok()?)))
                .ok_or_else(|| invalid(format!("neuron {target:?}: expected \"LAYER:NEURON\"")))?;
            Target::Neuron {
                layer: l,
                neuron: i,
            }
        } else {
            let id = cs
                .find(target)
                .map(|c| c.id.clone())
                .unwrap_or_else(|| target.to_string());
            Target::Cluster(id)
        };
        steerer.check(&t).map_err(to_py)?;
        let ids = match prompts {
            Some(p) if !p.is_empty() => p,
            _ => steerer.prompts_of(&t, scope),
        };
        if ids.is_empty() {
            return Err(invalid(format!(
                "{t} is not traced on any prompt of {} (all_positions=True scales it on every prompt)",
                circuit.display()
            )));
        }
        let mut summary = Vec::new();
        let mut runs = Vec::new();
        for &scale in &scales {
            let rows = ids
                .iter()
                .map(|&p| steerer.steer_prompt(p, &t, scale, scope, generate))
                .collect::<adag_analysis::Result<Vec<_>>>()
                .map_err(to_py)?;
            summary.push(summarise(&t.to_string(), scale, &rows));
            runs.push(serde_json::json!({"target": t.to_string(), "scale": scale, "prompts": rows}));
        }
        serde_json::to_string(&serde_json::json!({"summary": summary, "runs": runs})).map_err(to_py)
    })
}
