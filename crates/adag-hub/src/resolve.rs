//! What every entry point (the CLI's `--model`/`--transcoders`, a trace config's `model:`, a
//! circuit manifest, the Python package) does with a model or transcoder argument: a local path
//! stays as it is, a hub reference is fetched into the HF cache and becomes its snapshot folder.
//! One function per kind of argument, so the CLI, `adag describe` and `adag.Model.load` cannot
//! disagree about what `org/name` means.

use std::cell::OnceCell;
use std::path::PathBuf;

use crate::{presets, Hub, Reference, Result};

/// A model argument: a local directory as is, or a hub reference (`org/name[@rev]`, `hf://…`)
/// fetched (config, tokenizer and weights only) into the HF cache configured by the environment
/// (`HF_ENDPOINT`, `HF_HUB_CACHE`/`HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN`).
pub fn resolve_model(arg: &str) -> Result<PathBuf> {
    match Reference::parse(arg)? {
        Reference::Local(p) => Ok(p),
        Reference::Hub(r) => {
            tracing::info!("model {r}");
            Hub::from_env()?.model(&r)
        }
    }
}

/// A transcoder argument: a local directory or config.yaml, a preset name (`adag presets`;
/// a local path of that name wins), or a hub reference fetched into the HF cache.
pub fn resolve_transcoders(arg: &str) -> Result<PathBuf> {
    let text = match presets::preset(arg) {
        Some(p) if !std::path::Path::new(arg).exists() => format!("hf://{}", p.reference),
        _ => arg.to_string(),
    };
    match Reference::parse(&text)? {
        Reference::Local(p) => Ok(p),
        Reference::Hub(r) => {
            tracing::info!("transcoders {r}");
            Hub::from_env()?.transcoders(&r)
        }
    }
}

/// A resolver for the entries of a transcoder config's `transcoders:` list: `hf://` entries
/// are fetched through the HF cache (the client is built on the first such entry, so a local
/// set never reads the hub's environment); anything else is left to the loader (`Ok(None)`).
/// The error is a string because the loader that calls it belongs to another crate.
pub fn listed_file_resolver() -> impl Fn(&str) -> std::result::Result<Option<PathBuf>, String> {
    let client: OnceCell<Hub> = OnceCell::new();
    move |entry: &str| {
        if !entry.starts_with("hf://") {
            return Ok(None);
        }
        let hub = match client.get() {
            Some(h) => h,
            None => {
                let h = Hub::from_env().map_err(|e| e.to_string())?;
                client.get_or_init(|| h)
            }
        };
        hub.resolve_listed(entry).map_err(|e| e.to_string())
    }
}

/// The model a transcoder config's `model_name` names, for callers given transcoders but no
/// model: a local model directory (the name as a path, or relative to the config's folder
/// `config_dir`), else a hub id (`org/name`) fetched as circuit-tracer would; `None` when there
/// is no name or it is neither (the caller then uses its default model).
pub fn resolve_named_model(
    name: Option<&str>,
    config_dir: &std::path::Path,
) -> Result<Option<PathBuf>> {
    let Some(name) = name else {
        return Ok(None);
    };
    let local = [PathBuf::from(name), config_dir.join(name)]
        .into_iter()
        .find(|p| p.join("config.json").exists());
    if local.is_some() {
        return Ok(local);
    }
    match Reference::parse(name) {
        Ok(Reference::Hub(_)) => resolve_model(name).map(Some),
        _ => Ok(None),
    }
}
