//! Where the committed demo bundle lives, so that every command can default to it.
//!
//! The bundle is `models/demo/` at the repository root (model, tokenizer, `MODEL_CARD.md`) with
//! the transcoders in `models/demo/transcoders/`. It is found, in order, through
//! `$ADAG_DEMO_MODEL`, next to the running executable (`target/{debug,release}/adag` → the
//! repository root two levels up), the current directory, and the source tree this crate was
//! compiled from.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn not_found(message: String) -> Error {
    Error::Input(message)
}

/// The bundle directory, relative to the repository root.
pub const BUNDLE_REL: &str = "models/demo";

fn is_bundle(dir: &Path) -> bool {
    dir.join("config.json").is_file() && dir.join("model.safetensors").is_file()
}

/// Directories that are tried, in order.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ADAG_DEMO_MODEL") {
        out.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            out.push(anc.join(BUNDLE_REL));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(BUNDLE_REL));
    }
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(BUNDLE_REL),
    );
    out
}

/// The bundled demo model's directory, or an error listing every place looked at.
pub fn default_model_dir() -> Result<PathBuf> {
    let tried = candidates();
    for c in &tried {
        if is_bundle(c) {
            return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
        }
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(not_found(format!(
        "no --model given and the bundled demo model was not found (looked in: {}); pass \
         --model DIR, set ADAG_DEMO_MODEL, or run from the adag repository",
        list.join(", ")
    )))
}

/// The bundled demo transcoders: the cross-layer transcoder (`<model dir>/clt`), trained
/// with its decoder bias fixed at zero, because its graphs carry the answer in features (the
/// per-layer set in `transcoders/` leaves a large layer-3 error node on the README prompt).
pub fn default_transcoders_dir() -> Result<PathBuf> {
    let dir = default_model_dir()?.join("clt");
    if dir.join("config.yaml").is_file() {
        Ok(dir)
    } else {
        Err(not_found(format!(
            "no --transcoders given and {} has no config.yaml",
            dir.display()
        )))
    }
}
