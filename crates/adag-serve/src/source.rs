//! Where graphs come from: the [`GraphSource`] seam.
//!
//! Today there is one source, [`JsonDir`]: a folder of `{slug}.json` files in circuit-tracer's
//! frontend schema plus an optional `graph-metadata.json` (`{"graphs": [metadata, ...]}`), which
//! is what `adag attribute --graph-dir` and circuit-tracer's `create_graph_files` write.
//! Neuron-basis circuits over a dataset (Parquet directories) will be another implementation of
//! the same trait: each prompt becomes one graph (a slug), clusters become `qParams.supernodes`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::state;

/// A collection of graphs the viewer can list, open and save UI state to.
pub trait GraphSource: Send + Sync {
    /// The graphs, as their `metadata` objects; each has a `"slug"` that [`GraphSource::load`]
    /// accepts.
    fn list(&self) -> Result<Vec<Value>>;
    /// One graph.
    fn load(&self, slug: &str) -> Result<Arc<Graph>>;
    /// Replaces the graph's saved UI state (`qParams`), atomically.
    fn save_state(&self, slug: &str, qparams: &Value) -> Result<()>;
}

/// Whether `slug` is a plain file stem: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 200 bytes.
/// Anything else (separators, `..`, NUL, leading dots) can never name a graph.
pub fn is_valid_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// File name of the graph list in a graph directory.
pub const GRAPH_LIST_FILE: &str = "graph-metadata.json";

/// A file's modification time and size: when either changes, the file is read again.
type Stamp = (SystemTime, u64);

struct Cached {
    stamp: Stamp,
    graph: Arc<Graph>,
}

/// A directory of circuit-tracer frontend JSON graphs. Parsed graphs are cached and re-read when
/// the file's modification time or size changes.
pub struct JsonDir {
    dir: PathBuf,
    /// `dir` with symlinks resolved: every graph file's real path must lie under it.
    real_dir: PathBuf,
    cache: Mutex<HashMap<String, Cached>>,
    meta_cache: Mutex<HashMap<String, (Stamp, Value)>>,
    write_lock: Mutex<()>,
}

impl JsonDir {
    /// Opens a graph directory (it must exist).
    pub fn new(dir: impl Into<PathBuf>) -> Result<JsonDir> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(Error::NotADirectory { path: dir });
        }
        let real_dir = dir.canonicalize().map_err(|e| Error::read(&dir, e))?;
        Ok(JsonDir {
            dir,
            real_dir,
            cache: Mutex::new(HashMap::new()),
            meta_cache: Mutex::new(HashMap::new()),
            write_lock: Mutex::new(()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, slug: &str) -> Result<PathBuf> {
        if !is_valid_slug(slug) || slug == GRAPH_LIST_FILE.trim_end_matches(".json") {
            return Err(Error::BadSlug(slug.to_string()));
        }
        self.inside(&self.dir.join(format!("{slug}.json")))
            .ok_or_else(|| Error::UnknownGraph {
                slug: slug.to_string(),
                dir: self.dir.clone(),
            })
    }

    /// The real path of `path` (symlinks resolved) if it is a regular file inside the folder.
    /// A link to a file elsewhere is treated as absent: it is neither served, listed nor
    /// written through, and a save writes the link's target, so a link stays a link.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let real = path.canonicalize().ok()?;
        (real.starts_with(&self.real_dir) && real.is_file()).then_some(real)
    }

    fn stamp(path: &Path) -> Result<Stamp> {
        let m = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
        Ok((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    }

    /// The `metadata` object of one graph file, read without building the graph.
    fn metadata_of(&self, slug: &str, path: &Path) -> Result<Value> {
        let stamp = Self::stamp(path)?;
        if let Some((s, v)) = lock(&self.meta_cache).get(slug) {
            if *s == stamp {
                return Ok(v.clone());
            }
        }
        #[derive(serde::Deserialize)]
        struct MetaOnly {
            metadata: Box<RawValue>,
        }
        let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
        let m: MetaOnly = serde_json::from_slice(&bytes).map_err(|e| Error::Schema {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let v: Value = serde_json::from_str(m.metadata.get()).map_err(|e| Error::Schema {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        lock(&self.meta_cache).insert(slug.to_string(), (stamp, v.clone()));
        Ok(v)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a consistent map; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GraphSource for JsonDir {
    fn list(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        if let Some(list_path) = self.inside(&self.dir.join(GRAPH_LIST_FILE)) {
            let bytes = std::fs::read(&list_path).map_err(|e| Error::read(&list_path, e))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Schema {
                path: list_path.clone(),
                reason: e.to_string(),
            })?;
            if let Some(graphs) = v.get("graphs").and_then(Value::as_array) {
                for g in graphs {
                    let Some(slug) = g.get("slug").and_then(Value::as_str) else {
                        continue;
                    };
                    if self.path_of(slug).is_ok() && seen.insert(slug.to_string()) {
                        out.push(g.clone());
                    }
                }
            }
        }
        // Graph files that the list does not mention (e.g. copied in by hand).
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::read(&self.dir, e))?;
        let mut extra: Vec<(String, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(slug) = name.strip_suffix(".json") else {
                continue;
            };
            if name != GRAPH_LIST_FILE && is_valid_slug(slug) && !seen.contains(slug) {
                if let Some(real) = self.inside(&p) {
                    extra.push((slug.to_string(), real));
                }
            }
        }
        extra.sort();
        for (slug, path) in extra {
            // A JSON file that is not a graph is simply not listed.
            if let Ok(mut meta) = self.metadata_of(&slug, &path) {
                if let Some(obj) = meta.as_object_mut() {
                    obj.insert("slug".into(), Value::String(slug.clone()));
                    out.push(meta);
                }
            }
        }
        Ok(out)
    }

    fn load(&self, slug: &str) -> Result<Arc<Graph>> {
        let path = self.path_of(slug)?;
        let stamp = Self::stamp(&path)?;
        if let Some(c) = lock(&self.cache).get(slug) {
            if c.stamp == stamp {
                return Ok(c.graph.clone());
            }
        }
        let graph = Arc::new(Graph::load(&path)?);
        lock(&self.cache).insert(
            slug.to_string(),
            Cached {
                stamp,
                graph: graph.clone(),
            },
        );
        Ok(graph)
    }

    fn save_state(&self, slug: &str, qparams: &Value) -> Result<()> {
        let path = self.path_of(slug)?;
        let _guard = lock(&self.write_lock);
        state::write_qparams(&path, qparams)?;
        lock(&self.cache).remove(slug);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["austin", "a.b-c_d", "X9"] {
            assert!(is_valid_slug(ok), "{ok}");
        }
        for bad in [
            "", "..", ".hidden", "a/b", "a\\b", "../x", "a b", "a\0", "é",
        ] {
            assert!(!is_valid_slug(bad), "{bad:?}");
        }
    }
}
