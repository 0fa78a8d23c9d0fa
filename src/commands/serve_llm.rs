//! `adag serve-llm`: a model served as an OpenAI-compatible endpoint (see `adag_llm::server`).

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::common::ModelArgs;

/// Arguments of `adag serve-llm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to bind. The default only accepts connections from this machine; use 0.0.0.0
    /// to serve a trusted network (there is no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = adag_llm::server::DEFAULT_PORT)]
    port: u16,
    /// Model name clients must use (`model` in requests); default: the directory's name.
    #[arg(long)]
    name: Option<String>,
}

/// Loads the model and serves it until interrupted.
pub fn run(args: Args) -> Result<()> {
    let dir = &args.model.model_dir()?;
    let mut model = adag_llm::local::LocalModel::load(dir, &args.model.load_options()?)
        .with_context(|| format!("loading the model to serve from {}", dir.display()))?;
    if let Some(n) = &args.name {
        model = model.with_name(n.clone());
    }
    let server = adag_llm::server::LlmServer::start(Arc::new(model), args.host, args.port)?;
    eprintln!(
        "serving model `{}` from {} at {} (OpenAI-compatible: GET /v1/models, POST /v1/chat/completions); \
         use --backend openai:{} ; Ctrl-C to stop",
        server.name(),
        dir.display(),
        server.base_url(),
        server.base_url()
    );
    server.wait()?;
    Ok(())
}
