//! `adag cluster`: multi-view clustering of a circuit's units (spectral k-means, Ward or
//! Leiden on the same similarity).

use std::path::PathBuf;

use adag_analysis::{
    cluster_by, ClusterOptions, ClusterState, Combine, Profiles, SimilarityOptions,
};
use anyhow::{Context, Result};

/// Arguments of `adag cluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A circuit directory (from `adag trace` or `adag merge`).
    pub circuit: PathBuf,
    /// Number of clusters.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// How input- and output-view similarities combine: harmonic or mean.
    #[arg(long, default_value = "harmonic")]
    pub combine: Combine,
    /// Weight each prompt's cosine by sqrt(|A_i||A_j|).
    #[arg(long)]
    pub weight_by_attribution: bool,
    /// Seed of the eigensolver start vector and k-means++.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// k-means restarts.
    #[arg(long, default_value_t = 10)]
    pub n_init: usize,
    /// Range A..B of k searched for the largest eigengap (default 2..max(2k, 20), capped at
    /// units − 1).
    #[arg(long, value_parser = parse_k_range)]
    pub k_range: Option<[usize; 2]>,
    /// How the units are partitioned: kmeans (k-means++ on the spectral embedding, seeded
    /// restarts), ward (agglomerative on the embedding, Ward's linkage: deterministic, no
    /// equal-size bias) or leiden (modularity on the similarity graph; finds the number of
    /// clusters itself, so --k is ignored).
    #[arg(long, default_value = "kmeans")]
    pub method: adag_analysis::Method,
    /// Leiden: resolution γ of the modularity (larger: more, smaller clusters).
    #[arg(long, default_value_t = 1.0)]
    pub resolution: f64,
    /// Leiden: keep only each unit's KNN most similar neighbours (the reference's kNN graph);
    /// 0 keeps every positive similarity, the graph the spectral methods use.
    #[arg(long, default_value_t = 0)]
    pub knn: usize,
    /// Hypothesis clusters instead: units whose per-prompt attribution tells prompts with this
    /// label from the others (AUROC ≥ --min-auroc: `for`; ≤ 1 − it: `against`; the rest).
    #[arg(long, conflicts_with = "method")]
    pub hypothesis: Option<String>,
    /// AUROC threshold of --hypothesis.
    #[arg(long, default_value_t = 0.8)]
    pub min_auroc: f64,
    /// Cluster-state file to write (default: CIRCUIT/clusters.json).
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Also show the clusters as named supernodes on the per-prompt graphs that
    /// `adag trace --graph-dir DIR --slug S` wrote here.
    #[arg(long)]
    pub graph_dir: Option<PathBuf>,
    /// Slug prefix of those graphs.
    #[arg(long, default_value = "trace")]
    pub slug: String,
}

/// Runs `adag cluster`.
pub fn run(args: Args) -> Result<()> {
    let (circuit, _) = adag_circuit::read_circuit(&args.circuit)
        .with_context(|| format!("reading circuit {}", args.circuit.display()))?;
    let profiles = Profiles::from_circuit(&circuit);
    let opts = ClusterOptions {
        k: args.k,
        similarity: SimilarityOptions {
            combine: args.combine,
            weight_by_attribution: args.weight_by_attribution,
        },
        seed: args.seed,
        n_init: args.n_init,
        k_range: args.k_range,
    };
    let (clustering, opts, groups) = match &args.hypothesis {
        None if args.method == adag_analysis::Method::Leiden => {
            let leiden = adag_analysis::LeidenOptions {
                resolution: args.resolution,
                knn: args.knn,
            };
            let c = adag_analysis::cluster_leiden(&profiles, &opts, &leiden)?;
            let opts = ClusterOptions { k: c.k(), ..opts };
            (c, opts, None)
        }
        None => (cluster_by(&profiles, &opts, args.method)?, opts, None),
        Some(label) => {
            let aurocs = adag_analysis::hypothesis::unit_aurocs(&profiles, &circuit, label)?;
            let (given, names) =
                adag_analysis::hypothesis::hypothesis_labels(&aurocs, args.min_auroc);
            let opts = ClusterOptions {
                k: names.len(),
                ..opts
            };
            let c = adag_analysis::cluster_given(
                &profiles,
                &opts,
                &format!("hypothesis {label:?} (AUROC ≥ {})", args.min_auroc),
                &given,
            )?;
            // Cluster ids are by attribution: map each back to its group.
            let mut group_of = vec![""; opts.k];
            for (&new, &old) in c.labels.iter().zip(&given) {
                group_of[new] = names[old];
            }
            (c, opts, Some((label.clone(), group_of)))
        }
    };
    let mut state = clustering.to_state(&args.circuit.display().to_string(), &profiles, &opts);
    if let Some((label, group_of)) = &groups {
        for (c, g) in state.clusters.iter_mut().zip(group_of) {
            c.name = format!("{g} {label}");
            println!("{}: {} ({} units)", c.id, c.name, c.units.len());
        }
    }
    let out = args
        .out
        .unwrap_or_else(|| ClusterState::default_path(&args.circuit));
    state.write(&out)?;
    if let Some(dir) = &args.graph_dir {
        let n = adag_analysis::write_cluster_supernodes(&state, dir, &args.slug)
            .with_context(|| format!("adding clusters to the graphs in {}", dir.display()))?;
        println!(
            "clusters added as supernodes to {n} graph(s) in {}",
            dir.display()
        );
    }
    let d = &state.diagnostics;
    println!(
        "{} units over {} prompts into {} clusters ({}) → {}",
        profiles.units.len(),
        profiles.prompts.len(),
        opts.k,
        state.diagnostics.method,
        out.display()
    );
    if let Some(l) = &d.leiden {
        println!(
            "leiden (resolution {}, {}) found {} clusters",
            l.resolution,
            if l.knn == 0 {
                "all positive similarities".to_string()
            } else {
                format!("{}-NN graph", l.knn)
            },
            opts.k
        );
    }
    println!(
        "eigengap {:.4} (largest gap at k = {} in {}..{}), silhouette {:.3}, modularity {:.4}, intra/inter similarity {:.3}/{:.3}, sign conflicts {:.1}%, {} eigensolver",
        d.eigengap,
        d.suggested_k,
        d.k_range[0],
        d.k_range[1],
        d.silhouette,
        d.modularity.unwrap_or(f64::NAN),
        d.intra_similarity,
        d.inter_similarity,
        100.0 * d.sign_conflict_rate,
        d.eigensolver
    );
    println!(
        "{:<6} {:>6} {:>8} {:>12}  top units (most Σ|attribution|)",
        "id", "units", "prompts", "attribution"
    );
    for c in &state.clusters {
        let top = state.top_units(&profiles, &c.id, 4);
        println!(
            "{:<6} {:>6} {:>8} {:>12.4}  {}",
            c.id,
            c.units.len(),
            c.n_prompts,
            c.attribution,
            top.join(" ")
        );
    }
    Ok(())
}

/// `A..B` (or `A..=B`, the same: both ends included) with 1 ≤ A ≤ B.
fn parse_k_range(s: &str) -> std::result::Result<[usize; 2], String> {
    let (a, b) = s
        .split_once("..=")
        .or_else(|| s.split_once(".."))
        .ok_or_else(|| format!("{s:?}: expected A..B, e.g. 2..30"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?}: {x:?} is not a whole number"))
    };
    let (a, b) = (num(a)?, num(b)?);
    if a == 0 || a > b {
        return Err(format!("{s:?}: need 1 ≤ A ≤ B"));
    }
    Ok([a, b])
}
