//! `adag describe` and `adag label`: explainer–simulator descriptions and short labels of a
//! circuit's clusters (adag-describe), written into the cluster-state file.

use std::path::{Path, PathBuf};

use crate::common::{DeviceArg, DtypeArg};
use adag_analysis::ClusterState;
use adag_describe::score::significance;
use adag_describe::{
    apply_descriptions, apply_labels, build_records, describe_cluster, label_clusters,
    label_inputs, ChatSimulator, ClusterRecords, DescribeOptions, DescriptionsFile, LabelMode,
    LabelOptions, LocalSimulator, LocalSimulatorOptions, Meter, RecordOptions, ScoreTokens,
    Simulator, Totals,
};
use adag_llm::{BackendConfig, Llm, LlmBackend, LlmOptions, Prices};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// Where the circuit, its cluster state and the model that traced it are.
#[derive(Debug, clap::Args)]
pub struct Inputs {
    /// A circuit directory (`adag trace`) that has been clustered (`adag cluster`).
    pub circuit: PathBuf,
    /// Cluster-state file (default: CIRCUIT/clusters.json); descriptions and labels are
    /// written into it.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// The traced model's directory, for its tokenizer's pad and BOS tokens (default: the
    /// circuit manifest's model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Show the BOS token to the explainer and simulator (hidden by default).
    #[arg(long)]
    pub show_bos: bool,
    /// Weight each neuron's input profile by its attribution before summing a cluster's
    /// (the reference's `weight_attr_by_attribution`).
    #[arg(long)]
    pub weight_by_attribution: bool,
    /// Only these clusters (ids), comma-separated.
    #[arg(long = "only", value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The LLM backend and its cache.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// The LLM: `openai:URL[,model=NAME,key-env=VAR]` (vLLM, llama.cpp, Ollama, OpenAI,
    /// `adag serve-llm`), `anthropic[:MODEL]` (key from $ANTHROPIC_API_KEY), `local[:DIR]`
    /// (a model in-process; default the demo model) or `rules` (offline rule-based explainer
    /// naming the most highlighted token: dry runs and tests, not a language model).
    #[arg(long)]
    pub backend: String,
    /// Model name sent to the endpoint (default: the backend's).
    #[arg(long)]
    pub llm_model: Option<String>,
    /// Cache of requests and replies, so a rerun pays nothing twice (default: llm-cache/
    /// beside the cluster state).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Call the backend for every request, without the cache.
    #[arg(long, conflicts_with = "cache")]
    pub no_cache: bool,
    /// Prices for the cost report: INPUT/OUTPUT dollars per million tokens, e.g. 1/5.
    #[arg(long)]
    pub prices: Option<Prices>,
    /// Tries per request (rate limits and server errors are retried with backoff).
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// Arguments of `adag describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Who scores explanations: `local` (the bundled demo model in-process), `local:DIR`
    /// (a model directory in-process), `backend` (the explainer's chat backend, blanks
    /// filled) or `chat:SPEC` (another chat backend, e.g. a vLLM with logprobs while an
    /// Anthropic model explains).
    #[arg(long, default_value = "local")]
    pub simulator: String,
    /// Which tokens of the local simulator mean 0..10: `digits` ("0".."10" where single
    /// tokens) or `vocab-ids` (ids 0..10, Transluce's finetuned simulator).
    #[arg(long, default_value = "digits")]
    pub score_tokens: ScoreTokens,
    /// Records per forward pass of the local simulator.
    #[arg(long, default_value_t = 8)]
    pub sim_batch: usize,
    /// `--simulator backend`: records per request on the input side (the reference's API
    /// simulator took up to 25).
    #[arg(long, default_value_t = 1)]
    pub sim_records_per_call: usize,
    /// Device of the local simulator (cuda needs an adag built with `--features cuda`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub sim_device: DeviceArg,
    /// Dtype of the local simulator (bf16 for an 8B model on a GPU).
    #[arg(long, value_enum, default_value = "f32")]
    pub sim_dtype: DtypeArg,
    /// Explanations per side and sign.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Most rounds of asking again for refused or malformed replies.
    #[arg(long, default_value_t = 10)]
    pub max_rounds: usize,
    /// Distinct highlighted spans per explainer prompt.
    #[arg(long, default_value_t = 1)]
    pub min_highlights: usize,
    /// Seed of the exemplar draws.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Most tokens of an explainer reply (raise it for models that reason before the
    /// `[DESCRIPTION]` line).
    #[arg(long, default_value_t = 100)]
    pub explainer_max_tokens: u32,
    /// Only the input side.
    #[arg(long, conflicts_with = "output_only")]
    pub input_only: bool,
    /// Only the output side.
    #[arg(long)]
    pub output_only: bool,
}

/// Arguments of `adag label`.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// `per-cluster` (one call per cluster), `rich` (the same, also showing each cluster's top
    /// units with their own top activating contexts from `adag features` dashboards) or
    /// `batch` (one call for all).
    #[arg(long, default_value = "per-cluster")]
    pub mode: LabelMode,
    /// Rich mode: the dashboards of the circuit's units (`adag features --out DIR`). Default:
    /// `<transcoders>/features` for a feature circuit, `<model>/features/neurons` (what
    /// `adag features --basis neurons` writes) for a neuron circuit.
    #[arg(long)]
    pub features_dir: Option<PathBuf>,
    /// Rich mode: units shown per cluster (most |mean attribution| first).
    #[arg(long, default_value_t = 10)]
    pub rich_units: usize,
    /// Rich mode: top activating contexts shown per unit.
    #[arg(long, default_value_t = 3)]
    pub rich_excerpts: usize,
    /// Rich mode: unit descriptions to show too (the JSON `adag describe-units --out` writes).
    #[arg(long)]
    pub unit_descriptions: Option<PathBuf>,
    /// Also show the labels as supernodes on the graphs `adag trace --graph-dir DIR` wrote.
    #[arg(long)]
    pub graph_dir: Option<PathBuf>,
    /// Slug prefix of those graphs.
    #[arg(long, default_value = "trace")]
    pub slug: String,
}

/// The circuit, its cluster state (and where it lives) and the clusters' records.
struct Loaded {
    circuit: adag_circuit::Circuit,
    /// The transcoders of a feature circuit (None: a neuron circuit).
    transcoders: Option<PathBuf>,
    model_dir: PathBuf,
    state_path: PathBuf,
    state: ClusterState,
    records: Vec<ClusterRecords>,
}

fn load(inputs: &Inputs) -> Result<Loaded> {
    let (circuit, manifest) = adag_circuit::read_circuit(&inputs.circuit)
        .with_context(|| format!("reading circuit {}", inputs.circuit.display()))?;
    let state_path = inputs
        .clusters
        .clone()
        .unwrap_or_else(|| ClusterState::default_path(&inputs.circuit));
    let state = ClusterState::read(&state_path).with_context(|| {
        format!(
            "reading the cluster state (run `adag cluster {}` first)",
            inputs.circuit.display()
        )
    })?;
    let model_dir = crate::common::resolve_model(
        &inputs
            .model
            .clone()
            .unwrap_or_else(|| PathBuf::from(&manifest.model)),
    )?;
    let tok = adag_model::ModelTokenizer::from_dir(&model_dir).with_context(|| {
        format!(
            "reading the traced model's tokenizer in {} (for its pad and BOS tokens; give \
             --model DIR if the model moved)",
            model_dir.display()
        )
    })?;
    let ropts = RecordOptions {
        weight_by_attribution: inputs.weight_by_attribution,
        ..RecordOptions::from_tokenizer(&tok, inputs.show_bos)
    };
    let mut records = build_records(&circuit, &state, &ropts)?;
    if !inputs.only.is_empty() {
        for id in &inputs.only {
            if state.clusters.iter().all(|c| &c.id != id) {
                bail!(
                    "--only {id}: no such cluster in {} (ids are C0..C{})",
                    state_path.display(),
                    state.clusters.len().saturating_sub(1)
                );
            }
        }
        records.retain(|r| inputs.only.contains(&r.cluster));
    }
    Ok(Loaded {
        transcoders: manifest.transcoders(),
        circuit,
        model_dir,
        state_path,
        state,
        records,
    })
}

/// The backend named by `--backend`, wrapped with the cache and retries.
fn backend(args: &BackendArgs, state_path: &Path) -> Result<Llm> {
    backend_for(&args.backend, "--backend", args, state_path)
}

/// The backend named by `spec` (from the flag `flag`), with `args`' cache and retry settings.
fn backend_for(spec: &str, flag: &str, args: &BackendArgs, state_path: &Path) -> Result<Llm> {
    let mut opts = LlmOptions::default()
        .max_attempts(args.max_attempts)
        .timeout(Duration::from_secs(args.timeout));
    if !args.no_cache {
        let dir = args.cache.clone().unwrap_or_else(|| {
            state_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("llm-cache")
        });
        opts = opts.cache_dir(dir);
    }
    if let Some(p) = args.prices {
        opts = opts.prices(p);
    }
    let llm = if spec == "rules" {
        Llm::new(Box::new(adag_describe::rules::RuleBackend), opts)?
    } else {
        let cfg: BackendConfig = spec.parse().with_context(|| format!("{flag} {spec:?}"))?;
        Llm::from_config(&cfg, opts).with_context(|| format!("{flag} {spec:?}"))?
    };
    Ok(llm)
}

fn bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(what.to_string());
    pb
}

fn report(llm: &Llm, totals: &Totals) {
    println!("{}", llm.report());
    println!(
        "{} unusable replies (refused, malformed or rejected), {} simulator blanks left unfilled",
        totals.unusable_replies, totals.missing_predictions
    );
}

fn fmt_score(s: Option<f64>) -> String {
    s.map(|v| format!("{v:+.3}"))
        .unwrap_or_else(|| "  n/a".into())
}

/// Runs `adag describe`.
pub fn run_describe(args: DescribeArgs) -> Result<()> {
    let Loaded {
        model_dir,
        state_path,
        mut state,
        records,
        ..
    } = load(&args.inputs)?;
    let explainer = backend(&args.backend, &state_path)?;
    let meter = Meter::new();
    let local;
    let chat;
    let sim_llm = match args.simulator.strip_prefix("chat:") {
        Some(spec) => Some(backend_for(
            spec,
            "--simulator chat:",
            &args.backend,
            &state_path,
        )?),
        None => None,
    };
    let simulator: &dyn Simulator = match args.simulator.as_str() {
        "backend" => {
            chat = ChatSimulator::new(&explainer, &meter, args.backend.llm_model.clone())
                .with_concurrency(args.backend.concurrency)
                .with_records_per_call(args.sim_records_per_call);
            &chat
        }
        s if s.starts_with("chat:") => {
            let b = sim_llm.as_ref().map(|b| b as &dyn LlmBackend);
            chat = ChatSimulator::new(b.unwrap_or(&explainer), &meter, None)
                .with_concurrency(args.backend.concurrency)
                .with_records_per_call(args.sim_records_per_call);
            &chat
        }
        s if s == "local" || s.starts_with("local:") => {
            let dir = match s.strip_prefix("local:") {
                Some(d) => PathBuf::from(d),
                None => crate::common::default_model(),
            };
            // Circuit token ids mean the same only to the traced model's own tokenizer; any
            // other simulator gets the token texts re-encoded.
            let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            let opts = LocalSimulatorOptions {
                score_tokens: args.score_tokens,
                batch_size: args.sim_batch,
                reencode: !same(&dir, &model_dir),
                load: adag_model::LoadOptions {
                    dtype: args.sim_dtype.into(),
                    device: crate::common::device(args.sim_device)?,
                },
            };
            local = LocalSimulator::load(&dir, &opts)?;
            &local
        }
        other => {
            bail!("--simulator {other:?}: expected `local`, `local:DIR`, `backend` or `chat:SPEC`")
        }
    };
    let opts = DescribeOptions {
        samples: args.samples,
        max_rounds: args.max_rounds,
        min_highlights: args.min_highlights,
        seed: args.seed,
        model: args.backend.llm_model.clone(),
        input_side: !args.output_only,
        output_side: !args.input_only,
        concurrency: args.backend.concurrency,
        max_tokens: args.explainer_max_tokens,
        ..Default::default()
    };
    let desc_path = DescriptionsFile::default_path(&state_path);
    let mut file = DescriptionsFile::read_or_new(&desc_path, &args.inputs.circuit, &state_path)?;
    file.explainer = Some(explainer.describe().to_string());
    file.simulator = Some(simulator.describe());
    file.options = Some(opts.clone());
    println!(
        "describing {} clusters: explainer {}, simulator {}",
        records.len(),
        explainer.describe(),
        simulator.describe()
    );
    let pb = bar(records.len(), "describe");
    let mut done = Vec::new();
    for cr in &records {
        pb.set_message(cr.cluster.clone());
        let d = describe_cluster(cr, &explainer, simulator, &meter, &opts)
            .with_context(|| format!("describing cluster {}", cr.cluster))?;
        file.clusters
            .entry(d.cluster.clone())
            .or_default()
            .description = Some(d.clone());
        done.push(d);
        // Written after every cluster, so an interrupted run keeps what it paid for.
        apply_descriptions(&mut state, &done);
        state.write(&state_path)?;
        file.totals = meter.totals();
        file.write(&desc_path)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    println!(
        "{:<5} {:>30} {:>30}  best input | best output",
        "id", "input r (n, 95% CI, p)", "output r (n, 95% CI, p)"
    );
    let mut any_significant = false;
    for d in &done {
        let mut cell = |e: Option<&adag_describe::Explanation>| -> String {
            let Some(e) = e else { return "-".into() };
            match e
                .score
                .and_then(|r| Some((r, significance(r, e.n_scored)?)))
            {
                Some((r, (p, (lo, hi)))) => {
                    if lo > 0.0 {
                        any_significant = true;
                    }
                    format!("{r:+.3} ({}, {lo:+.2}..{hi:+.2}, {p:.1e})", e.n_scored)
                }
                None => fmt_score(e.score),
            }
        };
        let (i, o) = (cell(d.best_input.as_ref()), cell(d.best_output.as_ref()));
        println!(
            "{:<5} {:>30} {:>30}  {} | {}",
            d.cluster,
            i,
            o,
            d.best_input
                .as_ref()
                .map(|e| e.signed_text())
                .unwrap_or_else(|| "-".into()),
            d.best_output
                .as_ref()
                .map(|e| e.text.as_str())
                .unwrap_or("-"),
        );
    }
    if !any_significant {
        println!(
            "no score is significant: every best description's 95% interval reaches 0 or below \
             (with this simulator the winners are noise)"
        );
    }
    println!(
        "descriptions → {} (best per side) and {} (all explanations, scores, exemplars)",
        state_path.display(),
        desc_path.display()
    );
    report(&explainer, &meter.totals());
    if let Some(b) = &sim_llm {
        println!("simulator: {}", b.report());
    }
    Ok(())
}

/// Runs `adag label`.
pub fn run_label(args: LabelArgs) -> Result<()> {
    let Loaded {
        circuit,
        transcoders,
        model_dir,
        state_path,
        mut state,
        records,
    } = load(&args.inputs)?;
    let labeller = backend(&args.backend, &state_path)?;
    let meter = Meter::new();
    let mut inputs = label_inputs(&state, &records);
    inputs.retain(|i| records.iter().any(|r| r.cluster == i.id));
    if args.mode == LabelMode::Rich {
        add_unit_contexts(
            &args,
            &circuit,
            transcoders,
            &model_dir,
            &state,
            &mut inputs,
        )?;
    }
    if inputs
        .iter()
        .all(|i| i.input.is_none() && i.output.is_none())
    {
        eprintln!(
            "note: no cluster has descriptions yet (run `adag describe` first); labelling from \
             the top prompts{} only",
            if args.mode == LabelMode::Rich {
                " and the units' exemplars"
            } else {
                ""
            }
        );
    }
    let pb = bar(inputs.len(), "label");
    let labels = label_clusters(
        &inputs,
        &records,
        &labeller,
        &meter,
        &LabelOptions {
            mode: args.mode,
            model: args.backend.llm_model.clone(),
            concurrency: args.backend.concurrency,
        },
        |r| {
            pb.set_message(r.cluster.clone());
            pb.inc(1);
        },
    )?;
    pb.finish_and_clear();
    apply_labels(&mut state, &labels);
    state.write(&state_path)?;
    let desc_path = DescriptionsFile::default_path(&state_path);
    let mut file = DescriptionsFile::read_or_new(&desc_path, &args.inputs.circuit, &state_path)?;
    file.labeller = Some(labeller.describe().to_string());
    for l in &labels {
        file.clusters.entry(l.cluster.clone()).or_default().label = Some(l.clone());
    }
    file.totals = meter.totals();
    file.write(&desc_path)?;
    if let Some(dir) = &args.graph_dir {
        let n = adag_analysis::write_cluster_supernodes(&state, dir, &args.slug).with_context(
            || {
                format!(
                    "adding labelled clusters to the graphs in {}",
                    dir.display()
                )
            },
        )?;
        println!(
            "labels shown as supernodes on {n} graph(s) in {}",
            dir.display()
        );
    }
    for l in &labels {
        let src = match l.source {
            adag_describe::label::LabelSource::Llm => "",
            adag_describe::label::LabelSource::Fallback => "  (fallback)",
        };
        println!("{:<5} {}{src}", l.cluster, l.label);
    }
    println!("labels → {}", state_path.display());
    report(&labeller, &meter.totals());
    Ok(())
}

/// Rich mode: fills each label input's top units with their dashboard exemplars.
fn add_unit_contexts(
    args: &LabelArgs,
    circuit: &adag_circuit::Circuit,
    transcoders: Option<PathBuf>,
    model_dir: &Path,
    state: &ClusterState,
    inputs: &mut [adag_describe::prompts::LabelInput],
) -> Result<()> {
    let dir = match (&args.features_dir, &transcoders) {
        (Some(d), _) => d.clone(),
        (None, Some(tc)) => {
            let tc = if tc.is_file() {
                tc.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                tc.clone()
            };
            tc.join("features")
        }
        (None, None) => model_dir.join("features").join("neurons"),
    };
    if !dir.join("index.json.gz").is_file() {
        let make = match &transcoders {
            Some(tc) => format!("adag features --transcoders {}", tc.display()),
            None => format!(
                "adag features --basis neurons --model {}",
                model_dir.display()
            ),
        };
        bail!(
            "--mode rich needs dashboards of the circuit's units, and {} has none (no \
             index.json.gz): make them with `{make}`, give --features-dir DIR, or label without \
             them (--mode per-cluster)",
            dir.display()
        );
    }
    let descriptions = match &args.unit_descriptions {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            adag_describe::rich::read_unit_descriptions(&bytes, &p.display().to_string())?
        }
        None => Default::default(),
    };
    let profiles = adag_analysis::Profiles::from_circuit(circuit);
    let opts = adag_describe::rich::RichOptions {
        units: args.rich_units,
        excerpts: args.rich_excerpts,
    };
    let mut lookup = |l: usize, i: usize| {
        adag_features::write::read_detail(&dir, l, i)
            .map_err(|e| adag_describe::Error::Input(e.to_string()))
    };
    let found =
        adag_describe::rich::unit_contexts(state, &profiles, &opts, &descriptions, &mut lookup)?;
    let shown: usize = found.by_cluster.values().map(Vec::len).sum();
    println!(
        "rich mode: {shown} units with exemplars from {}{}",
        dir.display(),
        if found.missing.is_empty() {
            String::new()
        } else {
            format!(
                " ({} units not in the dashboards or never active there, skipped)",
                found.missing.len()
            )
        }
    );
    for i in inputs.iter_mut() {
        i.units = found.by_cluster.get(&i.id).cloned().unwrap_or_default();
    }
    Ok(())
}

/// Arguments of `adag describe-units`.
#[derive(Debug, clap::Args)]
pub struct UnitsArgs {
    /// A dashboard folder written by `adag features` (e.g. models/demo/transcoders/features).
    pub dashboards: PathBuf,
    /// Units to describe, LAYER:INDEX (repeatable, or comma-separated).
    #[arg(
        long = "unit",
        value_name = "L:I",
        value_delimiter = ',',
        required = true
    )]
    pub units: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Top activating contexts shown to the explainer per unit.
    #[arg(long, default_value_t = 10)]
    pub excerpts: usize,
    /// Also write the descriptions here as JSON (`[{layer, index, description, excerpts}]`).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

/// Runs `adag describe-units`: one description per feature or neuron from its dashboard's top
/// activating contexts (ADAG's neuron-description role, for units outside any circuit).
pub fn run_units(args: UnitsArgs) -> Result<()> {
    let mut units = Vec::with_capacity(args.units.len());
    for u in &args.units {
        let (l, i) = u
            .split_once(':')
            .and_then(|(l, i)| {
                Some((
                    l.trim().parse::<usize>().ok()?,
                    i.trim().parse::<usize>().ok()?,
                ))
            })
            .with_context(|| format!("--unit {u:?}: expected LAYER:INDEX"))?;
        units.push((l, i));
    }
    if !args.dashboards.join("index.json.gz").is_file() {
        bail!(
            "{}: no index.json.gz (a dashboard folder is what `adag features --out DIR` writes)",
            args.dashboards.display()
        );
    }
    // The cache sits beside the output (or in the working directory), never inside the
    // dashboard folder, which may be the committed demo bundle.
    let beside = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("descriptions.json"));
    let llm = backend(&args.backend, &beside)?;
    let meter = Meter::new();
    let mut out = Vec::new();
    for (l, i) in units {
        let detail = adag_features::write::read_detail(&args.dashboards, l, i)?
            .with_context(|| format!("unit {l}:{i} is not in {}", args.dashboards.display()))?;
        let d = adag_describe::unit::describe_unit(
            &llm,
            &meter,
            &detail,
            args.backend.llm_model.clone(),
            args.excerpts,
        )
        .with_context(|| format!("describing unit {l}:{i}"))?;
        println!("L{l} #{i}: {}", d.text);
        out.push(serde_json::json!({
            "layer": l, "index": i, "description": d.text, "excerpts": d.excerpts,
        }));
    }
    println!("{}", llm.report());
    if let Some(p) = &args.out {
        adag_core::write_atomic(p, serde_json::to_string_pretty(&out)?.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
