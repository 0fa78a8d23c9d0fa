//! `adag prune` and `adag export`: work on a saved graph file.

use std::path::PathBuf;

use adag_graph::{frontend, graph_scores, prune, Graph};
use anyhow::{bail, Context, Result};

/// Arguments of `adag prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Graph file written by `adag attribute --out`.
    #[arg(long, short = 'g')]
    graph: PathBuf,
    /// Keep nodes up to this share of cumulative influence.
    #[arg(long, default_value_t = 0.8)]
    node_threshold: f32,
    /// Keep edges up to this share of cumulative influence.
    #[arg(long, default_value_t = 0.98)]
    edge_threshold: f32,
    /// How many top features to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Arguments of `adag export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Graph file written by `adag attribute --out`.
    #[arg(long, short = 'g')]
    graph: PathBuf,
    /// Name of the graph in the frontend.
    #[arg(long)]
    slug: String,
    /// Output directory (`{slug}.json`, `graph-metadata.json`).
    #[arg(long)]
    graph_dir: PathBuf,
    /// Keep nodes up to this share of cumulative influence.
    #[arg(long, default_value_t = 0.8)]
    node_threshold: f32,
    /// Keep edges up to this share of cumulative influence.
    #[arg(long, default_value_t = 0.98)]
    edge_threshold: f32,
}

fn load(path: &std::path::Path) -> Result<Graph> {
    Graph::load(path).with_context(|| format!("reading graph {}", path.display()))
}

fn check(node: f32, edge: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&node) || !(0.0..=1.0).contains(&edge) {
        bail!("thresholds are shares of cumulative influence and must lie in [0, 1]");
    }
    Ok(())
}

/// Runs `adag prune`: prints what survives pruning and the graph's scores.
pub fn run_prune(a: PruneArgs) -> Result<()> {
    check(a.node_threshold, a.edge_threshold)?;
    let mut g = load(&a.graph)?;
    let pruned = prune(&g, a.node_threshold, a.edge_threshold)?;
    g.meta.scores = Some(graph_scores(&g)?);
    super::attribute::print_summary(&g, &pruned, a.top);
    Ok(())
}

/// Runs `adag export`: the circuit-tracer frontend JSON of a saved graph.
pub fn run_export(a: ExportArgs) -> Result<()> {
    check(a.node_threshold, a.edge_threshold)?;
    let g = load(&a.graph)?;
    let pruned = prune(&g, a.node_threshold, a.edge_threshold)?;
    frontend::write_graph_files(&g, &pruned, &a.slug, &a.graph_dir, a.node_threshold)?;
    println!(
        "wrote {}",
        a.graph_dir.join(format!("{}.json", a.slug)).display()
    );
    Ok(())
}
