//! `adag correlate`: attribution of clusters, units, cluster edges and unit edges against a
//! per-prompt metric.

use std::path::PathBuf;

use adag_analysis::correlate::{correlate_with, to_csv, CorrelateOptions, Level, Metric};
use adag_analysis::ClusterState;
use anyhow::{Context, Result};

/// Arguments of `adag correlate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A circuit directory.
    pub circuit: PathBuf,
    /// Per-prompt metric: CSV/TSV whose header has a prompt_id (integer ids) or else a label
    /// column (labels, even numeric ones), or a JSON object of prompt ids (`{"label": {...}}`
    /// for labels).
    #[arg(long)]
    pub metric: PathBuf,
    /// The metric's value column (default: the first column besides the key).
    #[arg(long)]
    pub column: Option<String>,
    /// What to correlate: cluster, neuron, edge (cluster → cluster) or neuron-edge
    /// (unit → unit). Repeatable. Only the levels asked for are tested (each level is its own
    /// q-value family); the unit levels hold thousands of tests.
    #[arg(long, value_delimiter = ',', default_value = "cluster")]
    pub level: Vec<LevelArg>,
    /// Rows of items present on fewer prompts are flagged (`*` and `low_n` in the CSV); the
    /// metric must cover at least this many prompts.
    #[arg(long, default_value_t = 10)]
    pub min_prompts: usize,
    /// Permutation p-values from this many seeded shuffles of the metric per row (0: none).
    #[arg(long, default_value_t = 0)]
    pub permutations: usize,
    /// Seed of the permutations.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
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
        rows.extend(correlate_with(
            &circuit,
            clusters.as_ref(),
            &metric,
            level,
            &CorrelateOptions {
                min_prompts: args.min_prompts,
                permutations: args.permutations,
                seed: args.seed,
            },
        )?);
    }
    rows.sort_by(|a, b| b.pearson_r.abs().total_cmp(&a.pearson_r.abs()));
    if let Some(out) = &args.out {
        adag_circuit::store::write_atomic(out, to_csv(&rows).as_bytes())?;
        println!("{} rows → {}", rows.len(), out.display());
    }
    println!("{} prompts with a metric", metric.values.len());
    println!(
        "{:<11} {:<24} {:>6} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "level", "item", "n", "r", "p", "q (BH)", "p (perm)", "rho", "p"
    );
    for r in rows.iter().take(args.top) {
        let n = format!("{}{}", r.n, if r.low_n { "*" } else { "" });
        let perm = r
            .permutation_p
            .map(|p| format!("{p:.2e}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<11} {:<24} {:>6} {:>8.3} {:>9.2e} {:>9.2e} {:>9} {:>8.3} {:>9.2e}",
            level_name(r.level),
            r.item,
            n,
            r.pearson_r,
            r.pearson_p,
            r.pearson_q,
            perm,
            r.spearman_rho,
            r.spearman_p
        );
    }
    if rows.iter().any(|r| r.low_n) {
        println!(
            "* n below --min-prompts {}: read with care",
            args.min_prompts
        );
    }
    let discoveries = rows.iter().filter(|r| r.pearson_q < 0.05).count();
    if discoveries == 0 {
        println!(
            "no row has q < 0.05: none of the {} correlations is significant after \
             Benjamini–Hochberg correction",
            rows.len()
        );
    } else {
        println!("{discoveries} of {} rows have q < 0.05", rows.len());
    }
    Ok(())
}
