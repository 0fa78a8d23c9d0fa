//! `adag serve`: the graph viewer in the browser.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Arguments of `adag serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder of graphs (`{slug}.json` in circuit-tracer's frontend schema, as written by
    /// `adag attribute --graph-dir`, plus `graph-metadata.json`).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = adag_serve::DEFAULT_PORT)]
    port: u16,
    /// Address to bind. The default only accepts connections from this machine; use 0.0.0.0
    /// to share the viewer on a trusted network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Folder of feature-detail files: `index.json.gz` + `layer_{i}.bin`, or `{index}.json`,
    /// optionally in one subfolder per transcoder set (the graph's `metadata.scan`). Default:
    /// the bundled demo transcoders' `features/` folder, when it exists.
    #[arg(long)]
    features_dir: Option<PathBuf>,
    /// Graph to open in the printed URL.
    #[arg(long)]
    slug: Option<String>,
}

/// Runs `adag serve` until interrupted.
pub fn run(args: Args) -> Result<()> {
    let mut config = adag_serve::ServeConfig::new(&args.dir)
        .port(args.port)
        .host(args.host);
    // Without a flag: the dashboards of the bundled demo transcoders (`adag features` writes
    // them to `<transcoders>/features`), so the README's graphs show their examples.
    let features_dir = args.features_dir.clone().or_else(|| {
        adag_train::bundle::default_transcoders_dir()
            .ok()
            .map(|t| t.join("features"))
            .filter(|d| d.join("index.json.gz").is_file())
    });
    if let Some(f) = &features_dir {
        config = config.features_dir(f);
    }
    if let Some(s) = &args.slug {
        config = config.slug(s);
    }
    adag_serve::serve_blocking(config)
        .with_context(|| format!("serving graphs from {}", args.dir.display()))
}
