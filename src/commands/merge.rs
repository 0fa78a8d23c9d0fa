//! `adag merge`: shard circuit directories into one.

use std::path::PathBuf;

use anyhow::Result;

/// Arguments of `adag merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Finished shard directories (from `adag trace --shard I/N`), in any order.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The merged circuit directory.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Merge even when some shards are missing.
    #[arg(long)]
    pub partial: bool,
}

/// Runs `adag merge`.
pub fn run(args: Args) -> Result<()> {
    let m = adag_circuit::merge(&args.shards, &args.out, args.partial)?;
    println!(
        "{}: {} shards of {}, {} prompts, {} nodes, {} edges",
        args.out.display(),
        m.merged_shards.len(),
        m.merged_shards.first().map(|s| s.count).unwrap_or(0),
        m.n_prompts,
        m.n_nodes,
        m.n_edges
    );
    Ok(())
}
