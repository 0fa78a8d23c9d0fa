//! `adag trace`: circuits for a dataset of prompts, written as Parquet tables — of MLP
//! neurons (default), or of transcoder features with `--transcoders`.
//!
//! Glue only: the run config, datasets, prompt preparation, parts/resume, shards and the
//! Parquet files are `adag_circuit`; the tracing is `adag_engine::neuron::trace_prompts` for
//! neurons, and the engine's attribution driver read as a circuit
//! (`adag_engine::circuit_from_graph`) for features.

use std::path::PathBuf;
use std::time::Instant;

use adag_circuit::circuit::answers_predicted;
use adag_circuit::config::{Answers, BlacklistEntry, Rule, RunConfig};
use adag_circuit::pipeline::{self, RunSpec};
use adag_circuit::prepare::{
    detect_model_id, is_llama31_8b_instruct, prepare, PreparedPrompt, PromptOptions,
};
use adag_circuit::{neuron_options, run_identity};
use adag_circuit::{trace_batch, TraceBasis};
use adag_circuit::{Dataset, PromptCircuit, Shard};
use adag_engine::neuron::neuron_graph_extras;
use adag_graph::{frontend, prune, Graph, GraphMeta};
use adag_model::LoadedModel;
use anyhow::{bail, Context, Result};

use crate::common::{device, DeviceArg, DtypeArg};

/// Arguments of `adag trace`. Every run-config key is also a flag here and overrides the file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run config (YAML with the reference's prep.py keys; see crates/adag-circuit/src/config.rs).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Dataset file: .jsonl, .csv or .yaml (prompt, seed, label, answers).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Circuit directory to write (config key `output_path`).
    #[arg(long, short = 'o', visible_alias = "output-path")]
    pub out: Option<PathBuf>,
    /// HuggingFace model: a directory, `org/name[@rev]` or `hf://…` (config key `model`;
    /// default: the bundled demo model, as for `adag attribute`).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Trace transcoder features instead of neurons: a transcoder directory, its config.yaml,
    /// or a preset. Each prompt's full attribution graph (no feature cap) is read as an ADAG
    /// circuit with the same thresholds; targets are de-meaned logits, as circuit-tracer's,
    /// and error nodes are left out of the circuit (what they carry is what its features and
    /// tokens do not explain). The neuron options (rule, blacklist) do not apply.
    #[arg(long, short = 't')]
    pub transcoders: Option<PathBuf>,
    /// The model's HF id, for model-specific choices (default: detected from the model directory).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Keep neurons with |A| ≥ this × |goal| [default: 0.005].
    #[arg(long)]
    pub percentage_threshold: Option<f32>,
    /// Drop edges with |w| below this [default: 0.01].
    #[arg(long)]
    pub edge_threshold: Option<f32>,
    /// Number of top-k targets when no answers are given [default: 5].
    #[arg(long)]
    pub k: Option<usize>,
    /// Prompts per traced batch, the unit of resume [default: 1].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Mask the model's known neuron blacklist (Llama-3.1-8B-Instruct) [default: true].
    #[arg(long, overrides_with = "no_apply_blacklist")]
    pub apply_blacklist: bool,
    /// Do not mask the model's known blacklist (`--blacklist` entries still apply).
    #[arg(long, overrides_with = "apply_blacklist")]
    pub no_apply_blacklist: bool,
    /// Extra neurons to mask, LAYER/NEURON (repeatable; replaces the config's list; applied
    /// even with --no-apply-blacklist).
    #[arg(long = "blacklist", value_name = "L/N")]
    pub blacklist: Vec<String>,
    /// MLP linearisation: half_rule, no_half_rule or stop_gate [default: half_rule].
    #[arg(long)]
    pub rule: Option<String>,
    /// The reference's spelling: false = stop_gate.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub use_relp_grad: Option<bool>,
    /// The reference's spelling of no_half_rule.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub disable_half_rule: Option<bool>,
    /// Subtract the mean logit from each target.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub center_logits: Option<bool>,
    /// Keep nodes at position 0 (BOS) in the outputs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub keep_bos: Option<bool>,
    /// Drop nodes at position 0 from the outputs [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub ignore_bos: Option<bool>,
    /// System message before every prompt.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Seed for dataset items that have none.
    #[arg(long)]
    pub seed_response: Option<String>,
    /// One answer per prompt, in dataset order (repeatable); targets are their first tokens.
    #[arg(long = "true-answers", value_name = "ANSWER")]
    pub true_answers: Vec<String>,
    /// Use the chat template when there is one [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub use_chat_format: Option<bool>,
    /// Dtype of weights and activations [default: f32].
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Device [default: cpu].
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// Trace shard I of N (0-based); default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Accepted for the reference's configs; no effect.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub verbose: Option<bool>,
    /// Replace an output directory that holds another run.
    #[arg(long)]
    pub overwrite: bool,
    /// Keep no nodes or edges for prompts whose given answers the model does not predict
    /// (goal ≤ 0): their rows in prompts.parquet stay, with `predicted` false, so the skip is
    /// visible. Without it such prompts are traced (and warned about): their attributions are
    /// fractions of a non-positive goal, which inflates the circuit.
    #[arg(long)]
    pub skip_unpredicted: bool,
    /// Seeds per backward pass inside the engine (memory vs speed; no effect on results).
    #[arg(long, default_value_t = 128)]
    pub backward_batch: usize,
    /// Also write each prompt's neuron graph here: `{slug}-{prompt_id}.safetensors` (the graph
    /// file, as `adag attribute --out`) and `.json` (circuit-tracer frontend JSON).
    #[arg(long)]
    pub graph_dir: Option<PathBuf>,
    /// Pruning of those graphs' frontend JSON: keep nodes up to this share of cumulative
    /// influence (as `adag attribute`).
    #[arg(long, default_value_t = 0.8)]
    pub graph_node_threshold: f32,
    /// Pruning of those graphs' frontend JSON: keep edges up to this share of cumulative
    /// influence.
    #[arg(long, default_value_t = 0.98)]
    pub graph_edge_threshold: f32,
    /// Slug prefix of those graphs: `{slug}-{prompt_id}` (default: `trace`).
    #[arg(long)]
    pub slug: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Open the per-prompt graphs in the browser viewer afterwards (implies --graph-dir,
    /// by default `graphs/`).
    #[arg(long)]
    pub serve: bool,
    /// Viewer port (with --serve).
    #[arg(long, default_value_t = 8041)]
    pub port: u16,
}

impl Args {
    /// The flags as a config layer over the file.
    fn overrides(&self) -> Result<RunConfig> {
        Ok(RunConfig {
            dataset: self.dataset.clone(),
            output_path: self.out.clone(),
            model: self.model.clone(),
            model_id: self.model_id.clone(),
            percentage_threshold: self.percentage_threshold,
            edge_threshold: self.edge_threshold,
            k: self.k,
            batch_size: self.batch_size,
            // A plain flag pair: the last one given wins and sets both keys, so it overrides
            // either spelling in the config file; neither flag leaves the file's choice.
            apply_blacklist: (self.apply_blacklist || self.no_apply_blacklist)
                .then_some(self.apply_blacklist),
            no_apply_blacklist: (self.apply_blacklist || self.no_apply_blacklist)
                .then_some(self.no_apply_blacklist),
            blacklist: (!self.blacklist.is_empty()).then(|| {
                self.blacklist
                    .iter()
                    .cloned()
                    .map(BlacklistEntry::Text)
                    .collect()
            }),
            rule: self
                .rule
                .as_deref()
                .map(|r| r.parse::<Rule>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--rule: {e}"))?,
            use_relp_grad: self.use_relp_grad,
            disable_half_rule: self.disable_half_rule,
            center_logits: self.center_logits,
            keep_bos: self.keep_bos,
            ignore_bos: self.ignore_bos,
            system_prompt: self.system_prompt.clone(),
            seed_response: self.seed_response.clone(),
            true_answers: (!self.true_answers.is_empty()).then(|| {
                self.true_answers
                    .iter()
                    .cloned()
                    .map(Answers::One)
                    .collect()
            }),
            use_chat_format: self.use_chat_format,
            dtype: self.dtype.map(|d| format!("{d:?}").to_lowercase()),
            device: self.device.map(|d| format!("{d:?}").to_lowercase()),
            shard: self.shard.clone(),
            verbose: self.verbose,
        })
    }
}

/// Runs `adag trace`.
pub fn run(mut args: Args) -> Result<()> {
    let t_start = Instant::now();
    if args.serve && args.graph_dir.is_none() {
        args.graph_dir = Some(PathBuf::from("graphs"));
    }
    if args.slug.is_some() && args.graph_dir.is_none() {
        bail!("--slug names the graphs written to --graph-dir; give --graph-dir too");
    }
    let (file_cfg, source) = match &args.config {
        Some(p) => (RunConfig::from_file(p)?, p.display().to_string()),
        None => (RunConfig::default(), "command line".to_string()),
    };
    let mut cfg = file_cfg.merge(args.overrides()?);
    cfg.model.get_or_insert_with(crate::common::default_model);
    let r = cfg.resolve(&source)?;
    let shard = match &r.shard {
        Some(s) => Shard::parse(s).map_err(|e| anyhow::anyhow!("--shard: {e}"))?,
        None => Shard::from_env()
            .map_err(|e| anyhow::anyhow!("shard from SLURM: {e}"))?
            .unwrap_or(Shard::ALL),
    };
    let dataset = Dataset::load(&r.dataset)?;
    if let Some(a) = &r.true_answers {
        if a.len() != dataset.len() {
            bail!(
                "{source}: `true_answers` has {} entries but the dataset {} has {} prompts",
                a.len(),
                r.dataset.display(),
                dataset.len()
            );
        }
    }
    // `model` may be a hub id (`org/name`, `hf://…`): its id keys the model-specific choices
    // (chat template, blacklist), and the snapshot folder is what gets loaded.
    let hub_id = match adag_hub::Reference::parse(&r.model.to_string_lossy()) {
        Ok(adag_hub::Reference::Hub(h)) => Some(h.repo),
        _ => None,
    };
    let model_dir = crate::common::resolve_model(&r.model)?;
    let model_id = r
        .model_id
        .clone()
        .or(hub_id)
        .or_else(|| detect_model_id(&model_dir));
    let load_opts = adag_model::LoadOptions {
        // Checked when the config was resolved.
        dtype: adag_model::parse_dtype(&r.dtype).unwrap_or(candle_core::DType::F32),
        device: device(if r.device == "cuda" {
            DeviceArg::Cuda
        } else {
            DeviceArg::Cpu
        })?,
    };
    let m = LoadedModel::load(&model_dir, &load_opts)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let load_s = t_start.elapsed().as_secs_f64();

    let t_prep = Instant::now();
    let prompt_opts = PromptOptions {
        system_prompt: r.system_prompt.clone(),
        default_seed: r.seed_response.clone(),
        use_chat_format: r.use_chat_format,
        llama31_stripped_template: r.use_chat_format
            && model_id.as_deref().is_some_and(is_llama31_8b_instruct),
    };
    let range = shard.range(dataset.len());
    let prompts: Vec<PreparedPrompt> = range
        .clone()
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
        .with_context(|| format!("preparing prompts of {}", r.dataset.display()))?;
    let model_cfg = &m.model.cfg;
    r.check_blacklist(model_cfg.n_layers, model_cfg.d_mlp, &source)?;
    // Every prompt fits the context before any is traced (a 10k-token item would otherwise
    // grow activations without bound mid-run).
    for p in &prompts {
        let what = format!("prompt {} of {}", p.prompt_id, r.dataset.display());
        model_cfg.check_len(p.tokens.len(), &what)?;
    }
    let prepare_s = t_prep.elapsed().as_secs_f64();

    let opts = neuron_options(&r, model_id.as_deref(), args.backward_batch);
    let basis = match &args.transcoders {
        Some(p) => {
            let dir = crate::common::resolve_transcoders(p)?;
            let tc = crate::common::load_transcoders(&dir, &load_opts.device)
                .with_context(|| format!("loading transcoders {}", dir.display()))?;
            tc.check_model(model_cfg)?;
            TraceBasis::Features(tc)
        }
        None => TraceBasis::Neurons,
    };
    let (dataset_info, mut identity) = run_identity(
        &r,
        &model_dir,
        model_id.as_deref(),
        &prompt_opts,
        &opts,
        &basis,
        &dataset,
    )?;
    // Skipping changes the stored circuit, so a resumed run must not mix the two.
    if let (true, Some(map)) = (args.skip_unpredicted, identity.as_object_mut()) {
        map.insert("skip_unpredicted".into(), true.into());
    }
    let spec = RunSpec {
        out: r.output_path.clone(),
        identity,
        config: basis.manifest_config(&r, &opts),
        // Absolute, so that `adag steer DIR` / `adag describe DIR` work from any directory.
        model: std::fs::canonicalize(&r.model)
            .unwrap_or_else(|_| r.model.clone())
            .display()
            .to_string(),
        model_id: model_id.clone(),
        dataset: dataset_info,
        shard,
        batch_size: r.batch_size,
        overwrite: args.overwrite,
        load_s,
        prepare_s,
    };

    let n_layers = m.model.cfg.n_layers;
    let graph_export = args
        .graph_dir
        .clone()
        .map(|dir| (dir, args.slug.clone().unwrap_or_else(|| "trace".into())));
    let tok = &m.tokenizer;
    let model_name = r.model.display().to_string();
    let decode = |t: u32| {
        tok.token_strings(&[t])
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default()
    };
    let graph_meta = |p: &PreparedPrompt| GraphMeta {
        adag_version: env!("CARGO_PKG_VERSION").to_string(),
        model: model_name.clone(),
        prompt: p.text.clone(),
        token_strings: p.token_strings.clone(),
        n_layers,
        d_vocab: tok.vocab_size(),
        ..Default::default()
    };
    let export = |g: &Graph,
                  extras: &frontend::Extras,
                  p: &PreparedPrompt|
     -> std::result::Result<(), String> {
        let Some((dir, slug)) = &graph_export else {
            return Ok(());
        };
        let name = format!("{slug}-{}", p.prompt_id);
        g.save(&dir.join(format!("{name}.safetensors")))
            .map_err(|e| format!("writing graph file {name}: {e:#}"))?;
        let pruned = prune(g, args.graph_node_threshold, args.graph_edge_threshold)
            .map_err(|e| format!("pruning graph {name}: {e:#}"))?;
        frontend::write_graph_files_with(g, &pruned, &name, dir, args.graph_node_threshold, extras)
            .map_err(|e| format!("writing graph {name}: {e:#}"))
    };
    let mut tracer = |batch: &[PreparedPrompt]| -> std::result::Result<Vec<PromptCircuit>, String> {
        let mut traced = trace_batch(
            &m.model,
            &basis,
            batch,
            &opts,
            &graph_meta,
            &decode,
            graph_export.is_some(),
        )?;
        // Given answers the model does not predict (goal ≤ 0) inflate a circuit silently:
        // attributions are fractions of the goal.
        let skipped: Vec<bool> = batch
            .iter()
            .zip(&traced.circuits)
            .map(|(p, t)| {
                let unpredicted = !answers_predicted(&p.answers, t.goal);
                if unpredicted {
                    eprintln!(
                        "warning: prompt {}: the model does not predict its answers {:?} \
                         (goal {:.3} ≤ 0); its attributions are fractions of a non-positive goal{}",
                        p.prompt_id,
                        p.answers,
                        t.goal,
                        if args.skip_unpredicted {
                            "; skipped (--skip-unpredicted)"
                        } else {
                            "; --skip-unpredicted leaves it out"
                        }
                    );
                }
                unpredicted && args.skip_unpredicted
            })
            .collect();
        if graph_export.is_some() {
            for (i, (p, c)) in batch.iter().zip(&traced.circuits).enumerate() {
                if skipped[i] {
                    continue;
                }
                let g = traced
                    .graphs
                    .get(i)
                    .ok_or_else(|| format!("prompt {}: no graph was kept", p.prompt_id))?;
                // Neuron graphs carry each neuron's ADAG profiles into the viewer.
                let extras = match basis {
                    TraceBasis::Neurons => neuron_graph_extras(c, g, &decode),
                    TraceBasis::Features(_) => frontend::Extras::default(),
                };
                export(g, &extras, p)?;
            }
        }
        // A skipped prompt keeps its prompts.parquet row (predicted = false) and no nodes.
        for (c, _) in traced
            .circuits
            .iter_mut()
            .zip(&skipped)
            .filter(|(_, s)| **s)
        {
            c.nodes.clear();
            c.edges.clear();
        }
        Ok(traced.circuits)
    };

    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(prompts.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} prompts  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let mut first = true;
    let manifest = pipeline::run(&spec, &prompts, tok, &mut tracer, &mut |p| {
        if first {
            first = false;
            if p.resumed > 0 {
                bar.println(format!(
                    "resuming: {} of {} prompts already traced",
                    p.resumed, p.total
                ));
            }
            bar.set_position(p.done as u64);
            bar.reset_eta();
        } else {
            bar.set_position(p.done as u64);
        }
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} prompts (shard {}, ids {}..{}), {} nodes, {} edges; {:.1} s tracing ({:.2} prompts/s){}",
        r.output_path.display(),
        manifest.n_prompts,
        shard,
        manifest.prompt_range.0,
        manifest.prompt_range.1,
        manifest.n_nodes,
        manifest.n_edges,
        manifest.timings.trace,
        manifest.timings.prompts_per_s,
        if manifest.timings.resumed_prompts > 0 {
            format!("; {} resumed", manifest.timings.resumed_prompts)
        } else {
            String::new()
        }
    );
    if let Some((dir, slug)) = &graph_export {
        println!("graphs: {}/{slug}-{{prompt_id}}.json", dir.display());
        if !args.serve {
            println!("view: adag serve {}", dir.display());
        }
        if args.serve {
            adag_serve::serve_blocking(
                adag_serve::ServeConfig::new(dir.clone())
                    .slug(format!("{slug}-0"))
                    .port(args.port),
            )?;
        }
    }
    Ok(())
}
