//! `adag plot`: one prompt's tokens → clusters → outputs graph as DOT, SVG and PNG (drawn by
//! Graphviz when it is installed, whose layout is better, else by adag itself).

use std::path::PathBuf;

use adag_analysis::plot::ClusterGraph;
use adag_analysis::ClusterState;
use anyhow::{Context, Result};

/// Arguments of `adag plot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A circuit directory with a cluster state (`adag cluster`).
    pub circuit: PathBuf,
    /// Prompt id.
    #[arg(long)]
    pub prompt: u64,
    /// Strongest edges to keep (plus each cluster's strongest in and out edge).
    #[arg(long, default_value_t = 50)]
    pub max_edges: usize,
    /// Cluster-state file (default: CIRCUIT/clusters.json).
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Output prefix (default: CIRCUIT/plot-PROMPT): writes .dot, .svg and .png (the PNG by
    /// Graphviz's `dot` when it is on PATH, else by adag).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Write only the DOT file.
    #[arg(long)]
    pub dot_only: bool,
}

/// Runs `adag plot`.
pub fn run(args: Args) -> Result<()> {
    let (circuit, _) = adag_circuit::read_circuit(&args.circuit)
        .with_context(|| format!("reading circuit {}", args.circuit.display()))?;
    let cs_path = args
        .clusters
        .clone()
        .unwrap_or_else(|| ClusterState::default_path(&args.circuit));
    let clusters = ClusterState::read(&cs_path)
        .with_context(|| format!("run `adag cluster {}` first", args.circuit.display()))?;
    let g = ClusterGraph::build(&circuit, &clusters, args.prompt, args.max_edges)?;
    let prefix = args
        .out
        .unwrap_or_else(|| args.circuit.join(format!("plot-{}", args.prompt)));
    let with = |ext: &str| PathBuf::from(format!("{}.{ext}", prefix.display()));
    let dot = with("dot");
    adag_circuit::store::write_atomic(&dot, g.to_dot().as_bytes())?;
    let mut written = vec![dot.display().to_string()];
    if !args.dot_only {
        adag_circuit::store::write_atomic(&with("svg"), g.to_svg().as_bytes())?;
        written.push(with("svg").display().to_string());
        let png = with("png");
        let graphviz = std::process::Command::new("dot")
            .arg("-Tpng")
            .arg(&dot)
            .arg("-o")
            .arg(&png)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !graphviz {
            adag_circuit::store::write_atomic(&png, &g.to_png())?;
        }
        written.push(format!(
            "{} ({})",
            png.display(),
            if graphviz { "Graphviz" } else { "adag" }
        ));
    }
    println!(
        "{} nodes, {} edges → {}",
        g.nodes.len(),
        g.edges.len(),
        written.join(", ")
    );
    Ok(())
}
