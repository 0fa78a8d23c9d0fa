//! Which files of a repository adag needs, fetched through [`Hub`]: for a model the config,
//! tokenizer and weights (the index and its shards, or the single file); for a transcoder set
//! its `config.yaml` and the layers it lists or the `layer_{i}` / `W_enc_{i}` files it has.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{io, Error, Result};
use crate::hub::Hub;
use crate::reference::HubRef;

/// Files a model directory may hold besides its weights; all optional but `config.json`.
const MODEL_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
];

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

/// The `weight_map` of `model.safetensors.index.json`.
#[derive(Deserialize)]
struct Index {
    weight_map: std::collections::BTreeMap<String, String>,
}

/// The keys of a transcoder `config.yaml` that decide which files exist.
#[derive(Deserialize)]
struct TranscoderYaml {
    model_kind: Option<String>,
    transcoders: Option<Vec<String>>,
}

impl Hub {
    /// [`Hub::try_file`] for a file adag can do without: offline (`HF_HUB_OFFLINE`), one the
    /// cache lacks counts as absent, as transformers treats optional files offline, so a model
    /// that `huggingface_hub` cached without its optional files still loads. A file adag needs
    /// goes through [`Hub::file`] and still names what is missing.
    fn optional_file(&self, repo: &str, revision: &str, file: &str) -> Result<Option<PathBuf>> {
        match self.try_file(repo, revision, file) {
            Err(Error::OfflineMissing { .. }) => Ok(None),
            other => other,
        }
    }

    /// Fetches what adag reads of a model repository and returns its local folder.
    pub fn model(&self, r: &HubRef) -> Result<PathBuf> {
        let f = |name: &str| join(&r.path, name);
        self.file(&r.repo, &r.revision, &f("config.json"))?;
        for name in &MODEL_FILES[1..] {
            self.optional_file(&r.repo, &r.revision, &f(name))?;
        }
        match self.optional_file(&r.repo, &r.revision, &f("model.safetensors.index.json"))? {
            Some(index) => {
                let text = std::fs::read_to_string(&index).map_err(io(&index))?;
                let idx: Index = serde_json::from_str(&text).map_err(|e| Error::Http {
                    url: index.display().to_string(),
                    reason: format!("not a safetensors index: {e}"),
                })?;
                let shards: BTreeSet<&String> = idx.weight_map.values().collect();
                for s in shards {
                    self.file(&r.repo, &r.revision, &f(s))?;
                }
            }
            None => {
                self.file(&r.repo, &r.revision, &f("model.safetensors"))?;
            }
        }
        self.folder(r)
    }

    /// Fetches a transcoder set's `config.yaml` and, when it lists no files, its
    /// `layer_{i}.safetensors` (per-layer) or `W_enc_{i}`/`W_dec_{i}` (cross-layer) files, and
    /// returns its local folder. Listed files (`transcoders:`) are fetched when loaded, through
    /// [`Hub::resolve_listed`].
    pub fn transcoders(&self, r: &HubRef) -> Result<PathBuf> {
        let cfg_path = self.file(&r.repo, &r.revision, &join(&r.path, "config.yaml"))?;
        let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
        let cfg: TranscoderYaml = serde_norway::from_str(&text).map_err(|e| Error::Http {
            url: cfg_path.display().to_string(),
            reason: format!("not a valid config.yaml: {e}"),
        })?;
        if cfg.transcoders.is_none() {
            let clt = cfg.model_kind.as_deref() == Some("cross_layer_transcoder");
            for i in 0.. {
                let names = if clt {
                    vec![
                        format!("W_enc_{i}.safetensors"),
                        format!("W_dec_{i}.safetensors"),
                    ]
                } else {
                    vec![format!("layer_{i}.safetensors")]
                };
                let first = self.optional_file(&r.repo, &r.revision, &join(&r.path, &names[0]))?;
                if first.is_none() {
                    break;
                }
                for n in &names[1..] {
                    self.file(&r.repo, &r.revision, &join(&r.path, n))?;
                }
            }
        }
        self.folder(r)
    }

    /// Resolves one entry of a `transcoders:` list: an `hf://` URI is fetched; anything else is
    /// left to the caller (`None`).
    pub fn resolve_listed(&self, entry: &str) -> Result<Option<PathBuf>> {
        if !entry.starts_with("hf://") {
            return Ok(None);
        }
        match crate::Reference::parse(entry)? {
            crate::Reference::Hub(h) if !h.path.is_empty() => {
                self.file(&h.repo, &h.revision, &h.path).map(Some)
            }
            _ => Err(Error::BadReference {
                reference: entry.to_string(),
                reason: "a `transcoders:` entry must name a file inside the repository".into(),
            }),
        }
    }

    fn folder(&self, r: &HubRef) -> Result<PathBuf> {
        let snap = self
            .snapshot_dir(&r.repo, &r.revision)
            .ok_or_else(|| Error::NotFound {
                repo: r.repo.clone(),
                revision: r.revision.clone(),
                file: r.path.clone(),
                endpoint: self.config().endpoint.clone(),
            })?;
        Ok(if r.path.is_empty() {
            snap
        } else {
            snap.join(&r.path)
        })
    }
}
