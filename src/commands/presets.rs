//! `adag presets`: circuit-tracer's transcoder sets by name, with their model, basis and how
//! much of each is already in the HF cache.

use std::path::Path;

use adag_hub::presets::{GEMMA_SCOPE_2, PRESETS};
use anyhow::Result;

/// Arguments of `adag presets`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Bytes of `repo` in the HF cache (its blobs), 0 when absent. Sizes of sets not downloaded are
/// not known without asking the hub, so only what is on disk is shown.
fn cached_bytes(cache: &Path, repo: &str) -> u64 {
    let rc = adag_hub::cache::RepoCache::new(cache, repo);
    std::fs::read_dir(rc.dir.join("blobs"))
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn human(bytes: u64) -> String {
    match bytes {
        0 => "-".into(),
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

/// Runs `adag presets`.
pub fn run(args: Args) -> Result<()> {
    let cache = adag_hub::HubConfig::from_env().cache;
    let repo_of = |r: &str| r.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
    if args.json {
        let rows: Vec<_> = PRESETS
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "transcoders": format!("hf://{}", p.reference),
                    "model": p.model, "basis": p.basis,
                    "cached_bytes": cached_bytes(&cache, &repo_of(p.reference)),
                })
            })
            .chain(GEMMA_SCOPE_2.iter().map(|(r, m)| {
                serde_json::json!({
                    "name": null, "transcoders": format!("hf://{r}/transcoder_all/<set>"),
                    "model": m, "basis": "PLT (GemmaScope-2; name a set folder)",
                    "cached_bytes": cached_bytes(&cache, r),
                })
            }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<34} {:<34} {:>10}  basis",
        "name", "transcoders", "model", "cached"
    );
    for p in PRESETS {
        println!(
            "{:<28} {:<34} {:<34} {:>10}  {}",
            p.name,
            p.reference,
            p.model,
            human(cached_bytes(&cache, &repo_of(p.reference))),
            p.basis
        );
    }
    println!("\nGemma-3 (GemmaScope-2): pass hf://REPO/transcoder_all/<set folder>");
    for (r, m) in GEMMA_SCOPE_2 {
        println!("  {r:<32} {m:<34} {:>10}", human(cached_bytes(&cache, r)));
    }
    println!("\nHF cache: {}", cache.display());
    Ok(())
}
