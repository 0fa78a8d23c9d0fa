//! Safetensors checkpoints, single-file or sharded, memory-mapped, with every error naming its
//! file and tensor.
//!
//! candle's `VarBuilder` would do the loading, but its errors name neither the shard nor the
//! config field a shape came from; a researcher with a 4-shard checkpoint needs both. So this
//! module keeps the routing table (tensor name → shard) itself and checks shapes before loading.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{Context, Error, Result};

/// The weight files of one model directory.
pub struct WeightFiles {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// tensor name → index into `files`
    route: HashMap<String, usize>,
}

impl WeightFiles {
    /// Opens `dir/model.safetensors`, or the shards listed by `dir/model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let paths = if index.exists() {
            shard_paths(dir, &index)?
        } else if single.exists() {
            vec![single]
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
                route.insert(name, files.len());
            }
            files.push((path, st));
        }
        Ok(WeightFiles { files, route })
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
        self.route.contains_key(name)
    }

    /// Loads `name`, checking it has `shape`, converted to `dtype` on `device`.
    pub fn load(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let &i = self.route.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            files: self.describe(),
        })?;
        let (path, st) = &self.files[i];
        let view = st
            .get(name)
            .context_with(|| format!("reading tensor `{name}` from {}", path.display()))?;
        if view.shape() != shape {
            return Err(Error::TensorShape {
                name: name.to_string(),
                file: path.clone(),
                expected: shape.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        st.load(name, device)
            .and_then(|t| t.to_dtype(dtype))
            .context_with(|| format!("loading tensor `{name}` from {}", path.display()))
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

fn shard_paths(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
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
    names
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
        .collect()
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
