//! From a resolved run config to the engine's tracing options and the run's identity, shared by the `adag trace`
//! command and the Python package so both trace with exactly the same settings.

use adag_engine::neuron::{NeuronOptions, RelpRule, LLAMA_31_8B_INSTRUCT_BLACKLIST};

use std::path::Path;

use crate::config::{Resolved, Rule};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::prepare::{is_llama31_8b_instruct, PromptOptions};
use crate::store::{fingerprint, fingerprint_json, DatasetInfo};

fn engine_rule(r: Rule) -> RelpRule {
    match r {
        Rule::HalfRule => RelpRule::HalfRule,
        Rule::NoHalfRule => RelpRule::NoHalfRule,
        Rule::StopGate => RelpRule::StopGate,
    }
}

/// The engine's options for a resolved run. `model_id` decides whether the model's known
/// neuron blacklist applies; `backward_batch` is seeds per backward pass (no effect on results).
pub fn neuron_options(
    r: &Resolved,
    model_id: Option<&str>,
    backward_batch: usize,
) -> NeuronOptions {
    let mut blacklist = Vec::new();
    if r.apply_blacklist && model_id.is_some_and(is_llama31_8b_instruct) {
        blacklist.extend(LLAMA_31_8B_INSTRUCT_BLACKLIST);
    }
    // An explicit list is always applied; apply_blacklist toggles the model's known list.
    blacklist.extend(r.blacklist.iter().copied());
    NeuronOptions {
        k: r.k,
        percentage_threshold: r.percentage_threshold,
        edge_threshold: r.edge_threshold,
        rule: engine_rule(r.rule),
        center_logits: r.center_logits,
        ignore_bos: r.ignore_bos,
        blacklist,
        batch_size: backward_batch,
    }
}

/// A run's identity — what determines its rows: the adag version, the model's config and name,
/// the dataset's content, the prompt and engine settings; not the batch size, shard, paths or
/// device — together with the dataset's description for the manifest. `adag trace` and the
/// Python package both take it from here, so either can resume the other's run. `model_dir` is
/// the folder `config.json` is read from (a hub reference's downloaded copy).
pub fn run_identity(
    r: &Resolved,
    model_dir: &Path,
    model_id: Option<&str>,
    prompt_opts: &PromptOptions,
    opts: &NeuronOptions,
    basis: &crate::TraceBasis,
    dataset: &Dataset,
) -> Result<(DatasetInfo, serde_json::Value)> {
    let json = |key: &str, v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| Error::Config {
            source_name: "run identity".into(),
            key: key.into(),
            message: e.to_string(),
        })
    };
    let config_json = std::fs::read_to_string(model_dir.join("config.json")).unwrap_or_default();
    let mut engine_opts = json("engine", serde_json::to_value(opts))?;
    if let Some(o) = engine_opts.as_object_mut() {
        o.remove("batch_size"); // seeds per backward pass: no effect on results
    }
    let items = json("dataset", serde_json::to_value(&dataset.items))?;
    let dataset_info = DatasetInfo {
        path: r.dataset.display().to_string(),
        n_prompts: dataset.len(),
        fingerprint: fingerprint_json(&items),
    };
    let mut identity = serde_json::json!({
        "adag_version": env!("CARGO_PKG_VERSION"),
        "model": {
            "config_json": fingerprint(&config_json),
            "name": r.model.file_name().map(|n| n.to_string_lossy().into_owned()),
            "model_id": model_id,
            "dtype": r.dtype,
        },
        "dataset": dataset_info.fingerprint,
        "prompts": json("prompts", serde_json::to_value(prompt_opts))?,
        "true_answers": r.true_answers,
        "engine": engine_opts,
    });
    // A feature circuit is another run than a neuron circuit of the same prompts.
    if let (Some(b), Some(map)) = (basis.identity(), identity.as_object_mut()) {
        map.insert("transcoders".into(), b);
    }
    Ok((dataset_info, identity))
}
