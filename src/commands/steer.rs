//! `adag steer`: scale a cluster's traced neurons and report cluster and output effects.

use std::path::PathBuf;

use adag_analysis::steer::{
    summarise, summary_csv, write_summary_parquet, Scope, Steerer, SteeringSummary, Target,
};
use adag_analysis::ClusterState;
use adag_model::{ModelTokenizer, Transformer};
use anyhow::{bail, Context, Result};

/// Arguments of `adag steer`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A circuit directory with a cluster state (`adag cluster`).
    pub circuit: PathBuf,
    /// Cluster to steer (id or name); omit with --sweep.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Steer one neuron instead: LAYER:NEURON.
    #[arg(long, conflicts_with = "cluster")]
    pub neuron: Option<String>,
    /// Factors (0 ablates, 2 amplifies).
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    pub scale: Vec<f32>,
    /// Scale the neurons at every position, not only where they were traced.
    #[arg(long)]
    pub all_positions: bool,
    /// Every cluster at every scale; writes a summary table (--out as CSV and Parquet).
    #[arg(long)]
    pub sweep: bool,
    /// Only these prompt ids (default: every prompt where the target was traced).
    #[arg(long, value_delimiter = ',')]
    pub prompts: Vec<u64>,
    /// Greedy tokens to generate under steering.
    #[arg(long, default_value_t = 0)]
    pub generate: usize,
    /// Model directory or hub id (default: the circuit manifest's model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub load: crate::common::LoadArgs,
    /// Cluster-state file (default: CIRCUIT/clusters.json).
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Output prefix: writes PREFIX.json (per prompt), PREFIX.csv and PREFIX.parquet (summary);
    /// with --judge, PREFIX.asr.{csv,parquet} and PREFIX.samples.jsonl (every continuation with
    /// its verdict and reason).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Scale every traced unit except the cluster's (the reference's complement steering).
    #[arg(long)]
    pub complement: bool,
    #[command(flatten)]
    pub asr: crate::commands::steer_asr::AsrArgs,
}

/// Runs `adag steer`.
pub fn run(args: Args) -> Result<()> {
    let (circuit, manifest) = adag_circuit::read_circuit(&args.circuit)
        .with_context(|| format!("reading circuit {}", args.circuit.display()))?;
    let cs_path = args
        .clusters
        .clone()
        .unwrap_or_else(|| ClusterState::default_path(&args.circuit));
    let clusters = ClusterState::read(&cs_path)
        .with_context(|| format!("run `adag cluster {}` first", args.circuit.display()))?;
    let model_dir = crate::common::resolve_model(
        &args
            .model
            .clone()
            .unwrap_or_else(|| PathBuf::from(&manifest.model)),
    )?;
    let model = Transformer::load(&model_dir, &args.load.load_options()?)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let tok = ModelTokenizer::from_dir(&model_dir).ok();
    let show = |ids: &[u32]| -> String {
        tok.as_ref()
            .and_then(|t| t.decode(ids, false).ok())
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| format!("{ids:?}"))
    };
    // A feature circuit is steered through its transcoders, a neuron circuit in the MLPs.
    let basis: Box<dyn adag_engine::Basis> = match manifest.transcoders() {
        Some(tc) => Box::new(
            crate::common::load_transcoders(&tc, model.device())
                .with_context(|| format!("loading the circuit's transcoders {}", tc.display()))?,
        ),
        None => Box::new(adag_engine::NeuronBasis::default()),
    };
    let steerer = Steerer::new(&model, basis.as_ref(), &circuit, &clusters);
    let scope = if args.all_positions {
        Scope::AllPositions
    } else {
        Scope::Traced
    };
    let cluster_target = |id: String| {
        if args.complement {
            Target::Complement(id)
        } else {
            Target::Cluster(id)
        }
    };
    let targets: Vec<Target> = if args.sweep {
        clusters
            .clusters
            .iter()
            .map(|c| cluster_target(c.id.clone()))
            .collect()
    } else if let Some(c) = &args.cluster {
        let id = clusters
            .find(c)
            .map(|c| c.id.clone())
            .unwrap_or_else(|| c.clone());
        vec![cluster_target(id)]
    } else if let Some(n) = &args.neuron {
        if args.complement {
            bail!("--complement needs --cluster or --sweep");
        }
        let (l, i) = n
            .split_once(':')
            .and_then(|(l, i)| Some((l.parse().ok()?, i.parse().ok()?)))
            .with_context(|| format!("--neuron {n:?}: expected LAYER:NEURON"))?;
        vec![Target::Neuron {
            layer: l,
            neuron: i,
        }]
    } else {
        bail!("give --cluster C, --neuron L:N or --sweep");
    };
    if args.asr.judge.is_some() {
        let prompts = |t: &Target| {
            if args.prompts.is_empty() {
                steerer.prompts_of(t, scope)
            } else {
                args.prompts.clone()
            }
        };
        return crate::commands::steer_asr::run(
            &args.asr,
            &steerer,
            &circuit,
            &targets,
            &args.scale,
            scope,
            &prompts,
            tok.as_ref(),
            args.out.as_deref(),
            &args.circuit,
        );
    }
    let mut summaries: Vec<SteeringSummary> = Vec::new();
    let mut per_prompt = Vec::new();
    // Per scale, each cluster's per-prompt results (the sweep's diversity statistics).
    let mut by_scale: Vec<Vec<Vec<adag_analysis::steer::PromptSteering>>> =
        vec![Vec::new(); args.scale.len()];
    for target in &targets {
        steerer.check(target)?;
        let prompts = if args.prompts.is_empty() {
            steerer.prompts_of(target, scope)
        } else {
            args.prompts.clone()
        };
        if prompts.is_empty() && !args.sweep {
            bail!(
                "{target} is not traced on any prompt of {} (--all-positions scales it on \
                 every prompt)",
                args.circuit.display()
            );
        }
        for (si, &scale) in args.scale.iter().enumerate() {
            let mut rows = Vec::new();
            for &p in &prompts {
                let r = steerer.steer_prompt(p, target, scale, scope, args.generate)?;
                if !args.sweep {
                    let ratio: Vec<String> = r
                        .target_logits
                        .iter()
                        .zip(&r.steered_logits)
                        .zip(&r.targets)
                        .map(|((o, s), t)| format!("{} {:.3}→{:.3}", show(&[*t]), o, s))
                        .collect();
                    println!(
                        "prompt {p} {target} ×{scale}: {} entries, KL {:.4}, top {} → {}; {}{}",
                        r.n_scaled,
                        r.kl,
                        show(&[r.top_before[0].id]),
                        show(&[r.top_after[0].id]),
                        ratio.join(", "),
                        if r.generated.is_empty() {
                            String::new()
                        } else {
                            format!("; generates {}", show(&r.generated))
                        }
                    );
                }
                rows.push(r);
            }
            summaries.push(summarise(&target.to_string(), scale, &rows));
            per_prompt.push(serde_json::json!({
                "target": target.to_string(), "scale": scale, "prompts": rows
            }));
            by_scale[si].push(rows);
        }
    }
    // "fixed norm": the final norm's denominator held at its unsteered value (see
    // adag_analysis::steer for why a confident model's raw logit barely rises under
    // amplification).
    println!(
        "{:<10} {:>6} {:>8} {:>10} {:>12} {:>12} {:>12} {:>8}",
        "target",
        "scale",
        "prompts",
        "mean KL",
        "top ratio",
        "top Δlogit",
        "(fixed norm)",
        "top1 Δ"
    );
    for s in &summaries {
        println!(
            "{:<10} {:>6} {:>8} {:>10.4} {:>12.3} {:>12.3} {:>12.3} {:>7.0}%",
            s.target,
            s.scale,
            s.n_prompts,
            s.mean_kl,
            s.mean_top_target_ratio,
            s.mean_top_target_delta,
            s.mean_top_target_delta_fixed_norm,
            100.0 * s.top1_changed
        );
    }
    let mut diversity = Vec::new();
    if args.sweep && targets.len() > 1 {
        // The reference's diversity statistics: do the clusters do different things?
        println!(
            "diversity across {} clusters: distinct top input positions {:.2} per prompt",
            targets.len(),
            adag_analysis::diversity::input_diversity(&circuit, &clusters)
        );
        for (si, &scale) in args.scale.iter().enumerate() {
            let refs: Vec<&[_]> = by_scale[si].iter().map(|v| v.as_slice()).collect();
            let d = adag_analysis::diversity::output_diversity(scale, &refs);
            println!(
                "  ×{scale}: distinct steered top-1 / top-2 / top-10 tokens per prompt {:.2} / \
                 {:.2} / {:.2} (over {} prompts every cluster was steered on)",
                d.unique_top1, d.unique_top2, d.unique_top10, d.n_prompts
            );
            diversity.push(d);
        }
    }
    if let Some(out) = &args.out {
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", out.display()));
        adag_circuit::store::write_atomic(&with("csv"), summary_csv(&summaries).as_bytes())?;
        write_summary_parquet(&with("parquet"), &summaries)?;
        adag_circuit::store::write_atomic(
            &with("json"),
            &serde_json::to_vec_pretty(&serde_json::json!({
                "summary": summaries, "diversity": diversity, "runs": per_prompt
            }))?,
        )?;
        println!("→ {}.{{csv,parquet,json}}", out.display());
    }
    Ok(())
}
