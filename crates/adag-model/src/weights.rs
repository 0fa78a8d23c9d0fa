//! Safetensors checkpoints, single-file or sharded, memory-mapped, with every error naming its
//! file and tensor.
//!
//! candle's `VarBuilder` would do the loading, but its errors name neither the shard nor the
//! config field a shape came from; a researcher with a 4-shard checkpoint needs both. So this
//! module keeps the routing table (tensor name → shard) itself and checks shapes before loading.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{Context, Error, Result};
use crate::multimodal::{IMAGE_PREFIXES, TEXT_PREFIXES};

/// The weight files of one model directory.
pub struct WeightFiles {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// tensor name → index into `files`
    route: HashMap<String, usize>,
    /// Names handed out by [`WeightFiles::load`], so that tensors the config never asked for
    /// (a checkpoint with more layers than `num_hidden_layers`) are noticed.
    /// (Behind a lock: layers load on several threads.)
    loaded: Mutex<BTreeSet<String>>,
    /// A multimodal checkpoint's prefix for the text model (`language_model.model.`), stored
    /// in place of `model.`; `None` for a text-only checkpoint.
    text_prefix: Option<&'static str>,
}

impl WeightFiles {
    /// Opens `dir/model.safetensors`, or the shards listed by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let (paths, weight_map) = if index.exists() {
            shard_paths(dir, &index)?
        } else if single.exists() {
            (vec![single], BTreeMap::new())
        } else {
            return Err(Error::MissingFile {
                path: single,
                what: format!(
                    "no weights: expected model.safetensors or model.safetensors.index.json in {}",
                    dir.display()
                ),
            });
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut route = HashMap::new();
        for path in paths {
            if !path.exists() {
                return Err(Error::MissingFile {
                    path,
                    what: "shard listed in model.safetensors.index.json".into(),
                });
            }
            // SAFETY: the file is mapped read-only; adag never writes model files, and a file
            // changed underneath a running process is outside what any mmap loader can guard.
            let st = unsafe { MmapedSafetensors::new(&path) }.map_err(|e| Error::BadFile {
                path: path.clone(),
                reason: format!(
                    "not a valid safetensors file (truncated or corrupt?): {}",
                    root_cause(&e)
                ),
            })?;
            for (name, _) in st.tensors() {
                // First shard wins unless the index says otherwise (below).
                route.entry(name).or_insert(files.len());
            }
            files.push((path, st));
        }
        // A tensor stored in two shards is read from the one the index's weight_map names.
        for (name, shard) in &weight_map {
            let i = files
                .iter()
                .position(|(p, _)| p == &dir.join(shard))
                .ok_or_else(|| Error::BadFile {
                    path: index.clone(),
                    reason: format!("weight_map names unknown shard `{shard}`"),
                })?;
            if files[i].1.get(name).is_err() {
                return Err(Error::BadFile {
                    path: index.clone(),
                    reason: format!(
                        "weight_map puts tensor `{name}` in {shard}, which does not contain it"
                    ),
                });
            }
            route.insert(name.clone(), i);
        }
        // A multimodal checkpoint (Gemma-3 4B+) keeps the text model under a prefix; found by
        // where the embedding is, since a text-only checkpoint has it at `model.`.
        let text_prefix = if route.contains_key("model.embed_tokens.weight") {
            None
        } else {
            TEXT_PREFIXES
                .into_iter()
                .find(|p| route.contains_key(&format!("{p}embed_tokens.weight")))
        };
        Ok(WeightFiles {
            files,
            route,
            loaded: Mutex::new(BTreeSet::new()),
            text_prefix,
        })
    }

    /// The name under which the checkpoint stores the text-only name `name`.
    fn stored<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        match (self.text_prefix, name.strip_prefix("model.")) {
            (Some(p), Some(rest)) => format!("{p}{rest}").into(),
            (Some("language_model.model."), None) if name == "lm_head.weight" => {
                "language_model.lm_head.weight".into()
            }
            _ => name.into(),
        }
    }

    /// Refuses a checkpoint holding tensors the config did not ask for (once every needed
    /// tensor was loaded): `num_hidden_layers: 1` on a 3-layer checkpoint would otherwise run a
    /// different, 1-layer model without a word. A tied checkpoint's spare `lm_head.weight` and
    /// the rotary buffers some exporters keep are not weights and are allowed.
    pub fn check_all_used(&self) -> Result<()> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let unused: Vec<&String> = {
            let mut v: Vec<&String> = self
                .route
                .keys()
                .filter(|n| !loaded.contains(*n))
                .filter(|n| *n != "lm_head.weight" && !n.ends_with("rotary_emb.inv_freq"))
                // A multimodal checkpoint's image side and spare tied head are not text weights.
                .filter(|n| {
                    self.text_prefix.is_none()
                        || !(IMAGE_PREFIXES.iter().any(|p| n.starts_with(p))
                            || *n == "language_model.lm_head.weight")
                })
                .collect();
            v.sort();
            v
        };
        if unused.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = unused.iter().take(5).map(|n| format!("`{n}`")).collect();
        Err(Error::UnusedTensors {
            files: self.describe(),
            count: unused.len(),
            names: format!(
                "{}{}",
                shown.join(", "),
                if unused.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        })
    }

    /// The list of files, for messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        names.join(", ")
    }

    /// Whether a tensor exists in any file.
    pub fn contains(&self, name: &str) -> bool {
        self.route.contains_key(self.stored(name).as_ref())
    }

    /// Loads `name`, checking it has `shape`, converted to `dtype` on `device`.
    pub fn load(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let stored_name = self.stored(name);
        let name = stored_name.as_ref();
        let &i = self.route.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            files: self.describe(),
        })?;
        let (path, st) = &self.files[i];
        let view = st
            .get(name)
            .context_with(|| format!("reading tensor `{name}` from {}", path.display()))?;
        let stored = view.dtype();
        if !matches!(
            stored,
            safetensors::Dtype::F16
                | safetensors::Dtype::BF16
                | safetensors::Dtype::F32
                | safetensors::Dtype::F64
        ) {
            // Casting integers to floats would run a silently different model.
            return Err(Error::BadFile {
                path: path.clone(),
                reason: format!(
                    "tensor `{name}` is stored as {stored:?}; weights must be F32, F16, BF16 or F64"
                ),
            });
        }
        if view.shape() != shape {
            return Err(Error::TensorShape {
                name: name.to_string(),
                file: path.clone(),
                expected: shape.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        let t = st
            .load(name, device)
            .and_then(|t| t.to_dtype(dtype))
            .context_with(|| format!("loading tensor `{name}` from {}", path.display()))?;
        // The tensor is a copy: the mapped pages it came from need not stay resident (a 5 GB
        // checkpoint would otherwise count twice in the peak memory while loading).
        adag_core::release_mapped_pages(view.data());
        Ok(t)
    }
}

/// The message of a candle error without the path it wraps (we print the path ourselves).
fn root_cause(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithPath { inner, .. } => inner.to_string(),
        other => other.to_string(),
    }
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The shard files an index lists, and its weight_map (tensor → shard file name).
fn shard_paths(dir: &Path, index: &Path) -> Result<(Vec<PathBuf>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::BadFile {
        path: index.to_path_buf(),
        reason: e.to_string(),
    })?;
    let idx: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: index.to_path_buf(),
        reason: format!("expected {{\"weight_map\": {{tensor: file}}}}: {e}"),
    })?;
    let mut names: Vec<&String> = idx.weight_map.values().collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Error::BadFile {
            path: index.to_path_buf(),
            reason: "weight_map is empty".into(),
        });
    }
    let paths = names
        .into_iter()
        .map(|n| {
            // Shard names are file names inside the model directory, never paths elsewhere.
            if n.contains('/') || n.contains('\\') || n == ".." {
                Err(Error::BadFile {
                    path: index.to_path_buf(),
                    reason: format!("shard name `{n}` is not a plain file name"),
                })
            } else {
                Ok(dir.join(n))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((paths, idx.weight_map))
}

impl WeightFiles {
    /// How many tensors are stored in each on-disk dtype (e.g. `{"BF16": 291}`).
    pub fn disk_dtypes(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, st) in &self.files {
            for (_, view) in st.tensors() {
                *counts.entry(format!("{:?}", view.dtype())).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Number of shard files.
    pub fn n_files(&self) -> usize {
        self.files.len()
    }
}
