//! `adag prune` and `adag export`: work on a saved graph file.

use std::path::PathBuf;

use adag_graph::{frontend, prune, prune_and_score, pruned_graph, Graph, NodeKind, PruneResult};
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
    /// How many kept nodes and edges to list (0: all).
    #[arg(long, default_value_t = 30)]
    top: usize,
    /// Write the pruned graph here (same file format: kept features only, dropped edges zeroed).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
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

/// Runs `adag prune`: the graph's scores, then every kept node and the strongest kept edges.
pub fn run_prune(a: PruneArgs) -> Result<()> {
    check(a.node_threshold, a.edge_threshold)?;
    let mut g = load(&a.graph)?;
    let (pruned, scores) = prune_and_score(&g, a.node_threshold, a.edge_threshold)?;
    g.meta.scores = Some(scores);
    let kept: Vec<usize> = (0..g.n_nodes()).filter(|&i| pruned.node_mask[i]).collect();
    let n_edges = pruned.edge_mask.count();
    println!(
        "{}: {} nodes, {} features; kept {} nodes, {n_edges} edges (node threshold {}, edge threshold {})",
        a.graph.display(),
        g.n_nodes(),
        g.n_features(),
        kept.len(),
        a.node_threshold,
        a.edge_threshold
    );
    if let Some(s) = g.meta.scores {
        println!(
            "scores: replacement {:.3}, completeness {:.3}",
            s.replacement, s.completeness
        );
    }
    print_kept(&g, &pruned, &kept, a.node_threshold, a.top);
    if let Some(out) = &a.out {
        pruned_graph(&g, &pruned)?
            .save(out)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// (kind, layer, activation) of node `i` for the tables.
fn describe_node(g: &Graph, i: usize) -> (&'static str, String, usize, String) {
    match g.node_kind(i) {
        NodeKind::Feature {
            layer,
            pos,
            active_index,
            ..
        } => (
            "feature",
            layer.to_string(),
            pos as usize,
            format!("{:.3}", g.activation_values[active_index as usize]),
        ),
        NodeKind::Error { layer, pos } => ("error", layer.to_string(), pos as usize, "-".into()),
        NodeKind::Token { pos, .. } => ("token", "E".into(), pos as usize, "-".into()),
        NodeKind::Logit { index } => (
            "logit",
            "logit".into(),
            g.n_pos() - 1,
            format!("p={:.3}", g.logit_probabilities[index as usize]),
        ),
    }
}

/// Kept nodes by influence (features, errors, tokens, logits alike) and kept edges by |weight|.
fn print_kept(g: &Graph, pruned: &PruneResult, kept: &[usize], threshold: f32, top: usize) {
    let limit = if top == 0 { usize::MAX } else { top };
    let token = |p: usize| {
        g.meta
            .token_strings
            .get(p)
            .map(|t| format!("{t:?}"))
            .unwrap_or_default()
    };
    let label = |i: usize| match g.node_kind(i) {
        NodeKind::Logit { index } => format!("{:?}", g.logit_targets[index as usize].token),
        _ => token(describe_node(g, i).2),
    };
    let mut nodes = kept.to_vec();
    // Logits have no influence of their own: list them first, then the rest by influence.
    nodes.sort_by(|&x, &y| {
        let lx = matches!(g.node_kind(x), NodeKind::Logit { .. });
        let ly = matches!(g.node_kind(y), NodeKind::Logit { .. });
        ly.cmp(&lx)
            .then(pruned.cumulative_scores[x].total_cmp(&pruned.cumulative_scores[y]))
    });
    println!("\nkept nodes (influence = cumulative share, smaller is more influential):");
    println!(
        "  {:<16} {:<8} {:>5} {:>4}  {:<14} {:>9} {:>10}",
        "id", "kind", "layer", "pos", "token", "influence", "activation"
    );
    for &i in nodes.iter().take(limit) {
        let (kind, layer, pos, act) = describe_node(g, i);
        let infl = match kind {
            "logit" => "-".to_string(),
            _ => format!("{:.3}", pruned.cumulative_scores[i]),
        };
        println!(
            "  {:<16} {:<8} {:>5} {:>4}  {:<14} {:>9} {:>10}",
            frontend::node_id(g, i),
            kind,
            layer,
            pos,
            label(i),
            infl,
            act
        );
    }
    if nodes.len() > limit {
        println!("  … {} more (--top 0 lists all)", nodes.len() - limit);
    }
    let n_feat = (0..g.n_features()).filter(|&i| pruned.node_mask[i]).count();
    if n_feat == 0 {
        // Influence is ranked over all nodes: error and token nodes can fill the share alone.
        let first = (0..g.n_features())
            .map(|i| pruned.cumulative_scores[i])
            .min_by(f32::total_cmp);
        match first {
            Some(c) => println!(
                "  no feature node survives: the nodes within {threshold} of the influence are errors and tokens; the most influential feature comes at {c:.3} (raise --node-threshold above that)"
            ),
            None => println!("  the graph has no feature nodes"),
        }
    }

    let mut edges: Vec<(usize, usize)> = pruned.edge_mask.edges().collect();
    edges.sort_by(|a, b| g.edge(b.0, b.1).abs().total_cmp(&g.edge(a.0, a.1).abs()));
    println!("\nkept edges (source → target, by |weight|):");
    for &(t, s) in edges.iter().take(limit) {
        println!(
            "  {:<16} {:<14} → {:<16} {:<14} {:>+9.3}",
            frontend::node_id(g, s),
            label(s),
            frontend::node_id(g, t),
            label(t),
            g.edge(t, s)
        );
    }
    if edges.len() > limit {
        println!("  … {} more (--top 0 lists all)", edges.len() - limit);
    }
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
    println!("view: adag serve {}", a.graph_dir.display());
    Ok(())
}
