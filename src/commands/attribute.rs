//! `adag attribute`: an attribution graph for one prompt, over transcoder features (default) or
//! MLP neurons (`--basis neurons`), built by the engine's one driver.

use std::path::PathBuf;

use adag_engine::{attribute, prepare_tokens, AttributeOptions, CustomTarget, TargetSpec};
use adag_graph::{frontend, prune_and_score, Graph, GraphMeta, NodeKind, PruneResult};
use adag_model::{LoadedModel, ModelTokenizer};
use anyhow::{bail, Context, Result};

use crate::common::{printable, ModelArgs};

/// Arguments of `adag attribute`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The prompt.
    #[arg(long, short = 'p')]
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Transcoder directory or its config.yaml (default: the bundled demo transcoders).
    #[arg(long, short = 't')]
    pub transcoders: Option<PathBuf>,
    /// The graph's nodes: transcoder features (with error nodes), or the model's own MLP
    /// neurons (RelP-linearised, no error nodes, no transcoders needed).
    #[arg(long, value_enum, default_value = "transcoders")]
    pub basis: BasisArg,
    /// Write the graph file here (safetensors; readable from Python with `safetensors`).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Name of the graph in the frontend JSON (needs --graph-dir).
    #[arg(long)]
    pub slug: Option<String>,
    /// Directory of frontend JSON files (`{slug}.json`, `graph-metadata.json`).
    #[arg(long)]
    pub graph_dir: Option<PathBuf>,
    /// At most this many logit targets.
    #[arg(long, default_value_t = 10)]
    pub max_n_logits: usize,
    /// Stop adding targets once their probability reaches this.
    #[arg(long, default_value_t = 0.95)]
    pub desired_logit_prob: f32,
    /// Explain these tokens' logits instead of the most likely ones (each must be one token).
    #[arg(long = "target", value_name = "TOKEN")]
    pub targets: Vec<String>,
    /// Explain the logit difference TOKEN − MINUS.
    #[arg(long, num_args = 2, value_names = ["TOKEN", "MINUS"])]
    pub logit_diff: Option<Vec<String>>,
    /// Seeds per backward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// At most this many feature nodes (the most influential).
    #[arg(long, default_value_t = 7500)]
    pub max_feature_nodes: usize,
    /// Pruning: keep nodes up to this share of cumulative influence.
    #[arg(long, default_value_t = 0.8)]
    pub node_threshold: f32,
    /// Pruning: keep edges up to this share of cumulative influence.
    #[arg(long, default_value_t = 0.98)]
    pub edge_threshold: f32,
    /// How many top features to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Open the graph in the browser viewer afterwards (writes the frontend JSON to
    /// --graph-dir, by default `graphs/`, under --slug, by default made from the prompt).
    #[arg(long)]
    pub serve: bool,
    /// Viewer port (with --serve).
    #[arg(long, default_value_t = 8041)]
    pub port: u16,
    /// Also split every kept edge by the attention head that carried it (per-(layer, head)
    /// parts plus residual/direct, summing to the edge; see docs/attention.md), stored in the
    /// graph file and on each link of the frontend JSON. Off by default: it reruns the kept
    /// targets' rows with the head axis kept, about 1 + layers × heads times their cost.
    #[arg(long)]
    pub head_loadings: bool,
    /// With --head-loadings: explain this many attention scores behind the strongest kept
    /// edges (each edge's largest head, query = target position, key = source position) as
    /// query × key terms, in each target node's `qk_tracing_results` (frontend JSON).
    #[arg(long, default_value_t = 5)]
    pub qk_sites: usize,
    /// Print a machine-readable JSON summary on stdout (targets, probabilities, accounting,
    /// scores, node counts, output paths) instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// The node basis of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BasisArg {
    /// Transcoder features (circuit-tracer's graphs).
    Transcoders,
    /// MLP neurons.
    Neurons,
}

/// The model directory and the basis `--basis`, `--model` and `--transcoders` name, with the
/// defaults of [`resolve_paths`] (transcoders) or the demo model (neurons).
pub fn load_basis(
    basis: BasisArg,
    model: &Option<PathBuf>,
    transcoders: &Option<PathBuf>,
    device: &candle_core::Device,
) -> Result<(PathBuf, Box<dyn adag_engine::Basis>)> {
    Ok(match basis {
        BasisArg::Transcoders => {
            let (model_dir, tc_dir) = resolve_paths(model, transcoders)?;
            let tc = crate::common::load_transcoders(&tc_dir, device)
                .with_context(|| format!("loading transcoders {}", tc_dir.display()))?;
            (model_dir, Box::new(tc))
        }
        BasisArg::Neurons => {
            if transcoders.is_some() {
                bail!("--transcoders has no use with --basis neurons (the nodes are the model's MLP neurons)");
            }
            let model_dir = match model {
                Some(m) => crate::common::resolve_model(m)?,
                None => crate::common::default_model(),
            };
            (model_dir, Box::new(adag_engine::NeuronBasis::default()))
        }
    })
}

/// The single token a string encodes to, or an error saying how many it has.
pub fn single_token(tok: &ModelTokenizer, s: &str) -> Result<u32> {
    let ids = tok.encode(s, false)?;
    match ids[..] {
        [id] => Ok(id),
        _ => bail!(
            "target {s:?} is {} tokens ({ids:?}); a target must be exactly one token",
            ids.len()
        ),
    }
}

/// Resolves `--transcoders` and `--model` defaults.
pub fn resolve_paths(
    model: &Option<PathBuf>,
    transcoders: &Option<PathBuf>,
) -> Result<(PathBuf, PathBuf)> {
    let tc = match transcoders {
        Some(p) => crate::common::resolve_transcoders(p)?,
        None => adag_train::bundle::default_transcoders_dir()
            .context("no --transcoders given and the bundled demo transcoders are missing")?,
    };
    let model = match model {
        Some(m) => crate::common::resolve_model(m)?,
        None => {
            let cfg = if tc.is_dir() {
                tc.join("config.yaml")
            } else {
                tc.clone()
            };
            let named = adag_engine::TranscoderSet::config_model_name(&cfg)?;
            let base = cfg.parent().map(PathBuf::from).unwrap_or_default();
            adag_hub::resolve_named_model(named.as_deref(), &base)
                .with_context(|| format!("the model named by {}", cfg.display()))?
                .unwrap_or_else(crate::common::default_model)
        }
    };
    Ok((model, tc))
}

/// Runs `adag attribute`.
pub fn run(mut args: Args) -> Result<()> {
    if args.serve {
        args.graph_dir
            .get_or_insert_with(|| PathBuf::from("graphs"));
        if args.slug.is_none() {
            args.slug = Some(slug_from(&args.prompt));
        }
    }
    if args.slug.is_some() != args.graph_dir.is_some() {
        bail!(
            "--slug and --graph-dir go together (the frontend JSON is {{graph-dir}}/{{slug}}.json)"
        );
    }
    let opts = args.model.load_options()?;
    let (model_dir, basis) = load_basis(
        args.basis,
        &args.model.model,
        &args.transcoders,
        &opts.device,
    )?;
    let m = LoadedModel::load(&model_dir, &opts)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let tokens = prepare_tokens(&m.tokenizer, &args.prompt)?;
    let targets = if let Some(pair) = &args.logit_diff {
        let (x, y) = (
            single_token(&m.tokenizer, &pair[0])?,
            single_token(&m.tokenizer, &pair[1])?,
        );
        let label = format!("{:?} − {:?}", pair[0], pair[1]);
        let c: CustomTarget =
            adag_engine::targets::logit_difference(&m.model.weights.unembed, x, y, label, 1.0)?;
        TargetSpec::Custom(vec![c])
    } else if !args.targets.is_empty() {
        TargetSpec::Tokens(
            args.targets
                .iter()
                .map(|t| single_token(&m.tokenizer, t))
                .collect::<Result<_>>()?,
        )
    } else {
        TargetSpec::Salient {
            max_n_logits: args.max_n_logits,
            desired_logit_prob: args.desired_logit_prob,
        }
    };
    let options = AttributeOptions {
        targets,
        batch_size: args.batch_size,
        max_feature_nodes: Some(args.max_feature_nodes),
        update_interval: 4,
        progress: true,
    };
    let meta = GraphMeta {
        adag_version: env!("CARGO_PKG_VERSION").to_string(),
        model: model_dir.display().to_string(),
        prompt: args.prompt.clone(),
        token_strings: m.tokenizer.token_strings(&tokens)?,
        ..Default::default()
    };
    let tok = &m.tokenizer;
    let name = |i: u32| {
        tok.token_strings(&[i])
            .ok()
            .and_then(|v| v.into_iter().next())
            .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    let mut graph = attribute(&m.model, &tokens, basis.as_ref(), &options, meta, &name)?;
    let (pruned, scores) = prune_and_score(&graph, args.node_threshold, args.edge_threshold)?;
    graph.meta.scores = Some(scores);
    eprint_timings(&graph, started.elapsed().as_secs_f64());
    let heads = if args.head_loadings {
        let clock = std::time::Instant::now();
        let kept: Vec<(usize, usize)> = pruned
            .edge_mask
            .edges()
            .filter(|&(t, s)| pruned.node_mask[t] && pruned.node_mask[s])
            .collect();
        // Each row holds 1 + layers × heads channels: a smaller batch bounds the memory.
        let batch = (args.batch_size / 8).max(1);
        let h = adag_engine::attention::head_loadings(
            &m.model,
            &tokens,
            basis.as_ref(),
            &graph,
            &kept,
            batch,
        )?;
        eprintln!(
            "head loadings: {} kept edges in {:.2}s",
            h.edges.len(),
            clock.elapsed().as_secs_f64()
        );
        Some(h)
    } else {
        None
    };

    if let Some(out) = &args.out {
        match &heads {
            Some(h) => graph.save_with_heads(out, h),
            None => graph.save(out),
        }
        .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    if let (Some(slug), Some(dir)) = (&args.slug, &args.graph_dir) {
        let mut extras = frontend::Extras::default();
        if let Some(h) = &heads {
            extras.add_head_loadings(&graph, h);
            let sites = adag_engine::attention::default_sites(&graph, h, args.qk_sites);
            let traced = adag_engine::attention::qk_tracing(
                &m.model,
                &tokens,
                basis.as_ref(),
                &graph,
                &sites,
                10,
            )?;
            for (t, entry) in traced {
                let fields = extras
                    .nodes
                    .entry(frontend::node_id(&graph, t))
                    .or_default();
                // Neuronpedia's field is one object per node: the node's strongest traced
                // score (sites come strongest first); every traced score of the node is in
                // adag's `adag_qk_tracing` list.
                fields
                    .entry("qk_tracing_results")
                    .or_insert_with(|| entry.clone());
                match fields.get_mut("adag_qk_tracing") {
                    Some(serde_json::Value::Array(list)) => list.push(entry),
                    _ => {
                        fields.insert("adag_qk_tracing".into(), serde_json::json!([entry]));
                    }
                }
            }
        }
        frontend::write_graph_files_with(&graph, &pruned, slug, dir, args.node_threshold, &extras)?;
        eprintln!("wrote {}/{slug}.json", dir.display());
    }
    if args.json {
        let frontend_json = match (&args.slug, &args.graph_dir) {
            (Some(slug), Some(dir)) => Some(dir.join(format!("{slug}.json"))),
            _ => None,
        };
        let summary = json_summary(
            &graph,
            &pruned,
            args.out.as_deref(),
            frontend_json.as_deref(),
        );
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&graph, &pruned, args.top);
        print_accounting(&graph);
    }
    if let (false, Some(dir)) = (args.serve, &args.graph_dir) {
        eprintln!("view: adag serve {}", dir.display());
    }
    if args.out.is_none() && args.slug.is_none() {
        eprintln!("(nothing saved: add --out graph.safetensors, --slug NAME --graph-dir DIR, or --serve for the viewer)");
    }
    if let (true, Some(slug), Some(dir)) = (args.serve, &args.slug, &args.graph_dir) {
        let mut config = adag_serve::ServeConfig::new(dir.clone())
            .slug(slug.clone())
            .port(args.port);
        // Dashboards written by `adag features` sit next to the transcoders by convention.
        if let Some(tc) = basis.transcoders() {
            let dashboards = tc.source.join("features");
            if dashboards.join("index.json.gz").is_file() {
                config = config.features_dir(dashboards);
            }
        }
        adag_serve::serve_blocking(config)?;
    }
    Ok(())
}

/// A file-name-safe slug from a prompt: lower-case words joined by `-`, at most 48 characters.
pub fn slug_from(prompt: &str) -> String {
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let mut slug = String::new();
    for w in words {
        if slug.len() + w.len() + 1 > 48 {
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&w);
    }
    if slug.is_empty() {
        "graph".into()
    } else {
        slug
    }
}

/// The phase timing report on stderr, as circuit-tracer prints it.
pub fn eprint_timings(graph: &Graph, total: f64) {
    let t = &graph.meta.timings;
    let parts: Vec<String> = [
        "precompute",
        "targets",
        "logit_attribution",
        "feature_attribution",
        "assembly",
        "accounting",
    ]
    .iter()
    .filter_map(|k| {
        t.get(*k)
            .and_then(|v| v.as_f64())
            .map(|v| format!("{k} {v:.2}s"))
    })
    .collect();
    eprintln!("phases: {} (total {total:.2}s)", parts.join(", "));
}

/// Targets, scores, pruned size and the most influential features, on stdout.
pub fn print_summary(graph: &Graph, pruned: &PruneResult, top: usize) {
    let toks: Vec<String> = graph
        .meta
        .token_strings
        .iter()
        .map(|s| printable(s))
        .collect();
    println!(
        "prompt tokens: {}",
        toks.iter()
            .enumerate()
            .map(|(i, t)| format!("{i}:{t}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("targets:");
    for (t, p) in graph.logit_targets.iter().zip(&graph.logit_probabilities) {
        println!("  {:<20} p={p:.4}", format!("{:?}", t.token));
    }
    let n = graph.n_nodes();
    let kept_nodes = pruned.node_mask.iter().filter(|&&k| k).count();
    let kept_edges = pruned.edge_mask.iter().filter(|&&k| k).count();
    let unit = if graph.meta.basis == "neuron" {
        "neuron"
    } else {
        "feature"
    };
    println!(
        "graph: {} active {unit}s, {} {unit} nodes, {} nodes in all; pruned to {kept_nodes} nodes, {kept_edges} edges",
        graph.active_features.len(),
        graph.n_features(),
        n
    );
    if let Some(s) = graph.meta.scores {
        println!(
            "scores: replacement {:.3}, completeness {:.3}",
            s.replacement, s.completeness
        );
    }
    let mut feats: Vec<usize> = (0..graph.n_features())
        .filter(|&i| pruned.node_mask[i])
        .collect();
    feats.sort_by(|&a, &b| pruned.cumulative_scores[a].total_cmp(&pruned.cumulative_scores[b]));
    println!("top {unit}s by influence (layer, position, {unit}, activation, token):");
    for &i in feats.iter().take(top) {
        if let NodeKind::Feature {
            layer,
            pos,
            feature,
            active_index,
        } = graph.node_kind(i)
        {
            let tok = toks.get(pos as usize).cloned().unwrap_or_default();
            println!(
                "  L{layer:<3} pos {pos:<3} #{feature:<7} act {:>8.3}  cum. influence {:.3}  {tok}",
                graph.activation_values[active_index as usize], pruned.cumulative_scores[i]
            );
        }
    }
}

/// One line per target: how its de-meaned logit splits into the graph's edges and the named
/// terms, so that a reader can see where a logit the edges do not explain comes from.
pub fn print_accounting(graph: &Graph) {
    let Some(acc) = &graph.meta.accounting else {
        return;
    };
    println!("accounting (de-meaned logit = Σ feature, error and token edges + named terms):");
    for (t, a) in graph.logit_targets.iter().zip(&acc.targets) {
        let n = &a.account;
        let mut parts = vec![
            format!("features {:+.3}", n.features),
            format!("errors {:+.3}", n.errors),
            format!("tokens {:+.3}", n.tokens),
        ];
        parts.extend(
            n.terms
                .iter()
                .map(|t| format!("{} {:+.3}", t.name, t.value)),
        );
        let demean = a
            .demean_constant
            .map(|c| format!("; logit {:.3} = that + mean logit {c:.3}", n.value + c))
            .unwrap_or_default();
        println!(
            "  {:<14} {:.3} = {} (residual {:.1e}){demean}",
            format!("{:?}", t.token),
            n.value,
            parts.join(" + "),
            n.residual
        );
    }
}

/// The `--json` summary: everything a script needs to check a run without parsing text.
pub fn json_summary(
    graph: &Graph,
    pruned: &PruneResult,
    out: Option<&std::path::Path>,
    frontend_json: Option<&std::path::Path>,
) -> serde_json::Value {
    let acc = graph.meta.accounting.as_ref();
    let targets: Vec<serde_json::Value> = graph
        .logit_targets
        .iter()
        .zip(&graph.logit_probabilities)
        .enumerate()
        .map(|(k, (t, p))| {
            serde_json::json!({
                "token": t.token,
                "vocab_idx": t.vocab_idx,
                "probability": p,
                "accounting": acc.and_then(|a| a.targets.get(k)),
            })
        })
        .collect();
    serde_json::json!({
        "prompt": graph.meta.prompt,
        "model": graph.meta.model,
        "transcoders": graph.meta.scan,
        "targets": targets,
        "scores": graph.meta.scores,
        "accounting_worst_relative_residual": acc.map(|a| a.worst_relative_residual()),
        "nodes": {
            "active_features": graph.active_features.len(),
            "feature_nodes": graph.n_features(),
            "all": graph.n_nodes(),
            "pruned_nodes": pruned.node_mask.iter().filter(|&&k| k).count(),
            "pruned_edges": pruned.edge_mask.iter().filter(|&&k| k).count(),
        },
        "outputs": {
            "graph": out,
            "frontend_json": frontend_json,
        },
    })
}
