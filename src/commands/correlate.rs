//! `adag correlate`: attribution of clusters, units, cluster edges and unit edges against a
//! per-prompt metric.

use std::path::PathBuf;

use adag_analysis::correlate::{correlate, to_csv, Level, Metric};
use adag_analysis::ClusterState;
use anyhow::{Context, Result};

/// Arguments of `adag correlate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A circuit directory.
    pub circuit: PathBuf,
    /// Per-prompt metric: CSV/TSV with a prompt_id or label column, or a JSON object.
    #[arg(long)]
    pub metric: PathBuf,
    /// The metric's value column (default: the first column besides the key).
    #[arg(long)]
    pub column: Option<String>,
    /// What to correlate: cluster, neuron, edge (cluster → cluster) or neuron-edge
    /// (unit → unit). Repeatable.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cluster,neuron,edge,neuron-edge"
    )]
    pub level: Vec<LevelArg>,
    /// Items present on fewer prompts are left out.
    #[arg(long, default_value_t = 10)]
    pub min_prompts: usize,
    /// Cluster-state file (default: CIRCUIT/clusters.json).
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Write the full table as CSV here.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Rows to print.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

/// A correlation level.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum LevelArg {
    /// Clusters.
    Cluster,
    /// Units (layer, neuron, polarity).
    Neuron,
    /// Cluster → cluster edges.
    Edge,
    /// Unit → unit edges (embeddings and logits by token id).
    NeuronEdge,
}

/// The level as the table and CSV write it.
fn level_name(l: Level) -> &'static str {
    match l {
        Level::Cluster => "cluster",
        Level::Neuron => "neuron",
        Level::Edge => "edge",
        Level::NeuronEdge => "neuron_edge",
    }
}

/// Runs `adag correlate`.
pub fn run(args: Args) -> Result<()> {
    let (circuit, _) = adag_circuit::read_circuit(&args.circuit)
        .with_context(|| format!("reading circuit {}", args.circuit.display()))?;
    let metric = Metric::read(&args.metric, args.column.as_deref(), &circuit)?;
    let cs_path = args
        .clusters
        .clone()
        .unwrap_or_else(|| ClusterState::default_path(&args.circuit));
    let clusters = if cs_path.exists() {
        Some(ClusterState::read(&cs_path)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for l in &args.level {
        let level = match l {
            LevelArg::Cluster => Level::Cluster,
            LevelArg::Neuron => Level::Neuron,
            LevelArg::Edge => Level::Edge,
            LevelArg::NeuronEdge => Level::NeuronEdge,
        };
        let needs_clusters = matches!(level, Level::Cluster | Level::Edge);
        if needs_clusters && clusters.is_none() {
            let all_need = args
                .level
                .iter()
                .all(|l| matches!(l, LevelArg::Cluster | LevelArg::Edge));
            if args.clusters.is_some() || all_need {
                anyhow::bail!(
                    "{} not found: run `adag cluster {}` first",
                    cs_path.display(),
                    args.circuit.display()
                );
            }
            eprintln!("(no {}: skipping {level:?} level)", cs_path.display());
            continue;
        }
        rows.extend(correlate(
            &circuit,
            clusters.as_ref(),
            &metric,
            level,
            args.min_prompts,
        )?);
    }
    rows.sort_by(|a, b| b.pearson_r.abs().total_cmp(&a.pearson_r.abs()));
    if let Some(out) = &args.out {
        adag_circuit::store::write_atomic(out, to_csv(&rows).as_bytes())?;
        println!("{} rows → {}", rows.len(), out.display());
    }
    println!("{} prompts with a metric", metric.values.len());
    println!(
        "{:<11} {:<24} {:>5} {:>8} {:>9} {:>8} {:>9}",
        "level", "item", "n", "r", "p", "rho", "p"
    );
    for r in rows.iter().take(args.top) {
        println!(
            "{:<11} {:<24} {:>5} {:>8.3} {:>9.2e} {:>8.3} {:>9.2e}",
            level_name(r.level),
            r.item,
            r.n,
            r.pearson_r,
            r.pearson_p,
            r.spearman_rho,
            r.spearman_p
        );
    }
    Ok(())
}
