//! Circuit directories: final files, per-batch parts (resume), the manifest, and merging.
//!
//! # Layout
//!
//! ```text
//! out/
//!   manifest.json      written last: the run is complete when it exists
//!   nodes.parquet      ┐
//!   edges.parquet      ├ the circuit (see crate::circuit for the columns)
//!   prompts.parquet    ┘
//!   run.json           what this directory is a run of (identity + shard); kept for resume checks
//!   parts/             while running: part-{first:08}-{end:08}.{nodes,edges,prompts}.parquet,
//!                      one set per finished batch of prompt ids [first, end); removed when done
//! ```
//!
//! Every file is written to a temporary name in the same directory and renamed into place, so a
//! job killed at any moment leaves whole files only. A part counts as finished when its
//! `.prompts.parquet` exists (it is written after the part's nodes and edges). A restarted run
//! with the same identity skips finished prompt ranges and traces the rest (the batch size may
//! differ); the final tables are the parts in prompt order, so a resumed run writes the same
//! rows as an uninterrupted one. Final tables and merges are streamed part by part, so memory
//! stays bounded by one batch however large the dataset.
//!
//! `manifest.json` holds: `format` (`"adag-circuit"`), `format_version` (1), `adag_version`,
//! `model`, `model_id`, `identity` (the settings and inputs that determine the rows: config,
//! dataset fingerprint, model), `fingerprint` (a hash of `identity`), `config` (the whole
//! resolved config), `dataset` (`path`, `n_prompts`, `fingerprint`), `shard` (`index`,
//! `count`; absent for a merged circuit), `merged_shards`, `prompt_range` (`[first, end)`),
//! `n_prompts`, `n_nodes`, `n_edges`, `timings` (seconds: `load`, `prepare`, `trace`,
//! `write`, `total`; `prompts_per_s`; `resumed_prompts`), `traced_at_unix`.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::circuit::{self, Circuit};
use crate::error::{Error, Result};
use crate::shard::Shard;

/// Version of the directory format written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// The manifest of a finished circuit (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub adag_version: String,
    pub model: String,
    pub model_id: Option<String>,
    pub identity: serde_json::Value,
    pub fingerprint: String,
    pub config: serde_json::Value,
    pub dataset: DatasetInfo,
    pub shard: Option<Shard>,
    #[serde(default)]
    pub merged_shards: Vec<Shard>,
    pub prompt_range: (u64, u64),
    pub n_prompts: usize,
    pub n_nodes: usize,
    pub n_edges: usize,
    pub timings: Timings,
    pub traced_at_unix: u64,
}

impl Manifest {
    /// The transcoders a feature circuit was traced with (`adag trace --transcoders`); None
    /// for a neuron circuit.
    pub fn transcoders(&self) -> Option<std::path::PathBuf> {
        (self.config.get("basis").and_then(|b| b.as_str()) == Some("transcoder"))
            .then(|| self.config.get("transcoders")?.as_str().map(Into::into))
            .flatten()
    }
}

/// Where the prompts came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// The dataset file as given.
    pub path: String,
    /// Prompts in the whole dataset (all shards).
    pub n_prompts: usize,
    /// Hash of the dataset's items.
    pub fingerprint: String,
}

/// Seconds per phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Timings {
    pub load: f64,
    pub prepare: f64,
    pub trace: f64,
    pub write: f64,
    pub total: f64,
    pub prompts_per_s: f64,
    /// Prompts found finished at start (resume).
    pub resumed_prompts: usize,
}

/// What a directory is a run of: written at start as `run.json`, compared on restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStamp {
    /// Settings and inputs that determine the rows.
    pub identity: serde_json::Value,
    /// Hash of `identity`.
    pub fingerprint: String,
    /// The shard traced here.
    pub shard: Shard,
    /// Its prompt ids.
    pub prompt_range: (u64, u64),
}

/// FNV-1a (64-bit) of a string, in hex: a stable fingerprint with no dependency (not a
/// cryptographic hash; it only has to notice a changed config or dataset).
pub fn fingerprint(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Fingerprint of a JSON value (keys sorted, so the same settings give the same hash).
pub fn fingerprint_json(v: &serde_json::Value) -> String {
    fingerprint(&v.to_string())
}

/// Writes `bytes` to `path` atomically through the workspace's one [`adag_core::write_atomic`]
/// (temporary file in the same folder, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    adag_core::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

/// A circuit directory.
#[derive(Debug, Clone)]
pub struct CircuitDir {
    /// Its path.
    pub path: PathBuf,
}

impl CircuitDir {
    /// The directory at `path` (not created until something is written).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CircuitDir { path: path.into() }
    }

    /// `manifest.json`.
    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("manifest.json")
    }

    fn parts_dir(&self) -> PathBuf {
        self.path.join("parts")
    }

    fn part_path(&self, r: &Range<u64>, table: &str) -> PathBuf {
        self.parts_dir()
            .join(format!("part-{:08}-{:08}.{table}.parquet", r.start, r.end))
    }

    /// Reads `manifest.json`, if the run is complete.
    pub fn manifest(&self) -> Result<Option<Manifest>> {
        let p = self.manifest_path();
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::circuit(&p, format!("not a circuit manifest: {e}")))
    }

    /// Checks that this directory holds no other run, then records `stamp` as `run.json`.
    ///
    /// A directory with a different identity (changed config, dataset or model) or a different
    /// shard is refused, naming what differs, unless `overwrite` (then its circuit files are
    /// removed first).
    pub fn begin(&self, stamp: &RunStamp, overwrite: bool) -> Result<()> {
        let run = self.path.join("run.json");
        if run.exists() {
            let text = std::fs::read_to_string(&run).map_err(|e| Error::io(&run, e))?;
            let old: std::result::Result<RunStamp, _> = serde_json::from_str(&text);
            let differs = match &old {
                Ok(o) if o.fingerprint == stamp.fingerprint && o.shard == stamp.shard => None,
                Ok(o) if o.fingerprint == stamp.fingerprint => Some(format!(
                    "it is shard {} and this run is shard {}",
                    o.shard, stamp.shard
                )),
                Ok(o) => Some(format!(
                    "its settings differ in: {}",
                    differing_keys(&o.identity, &stamp.identity).join(", ")
                )),
                Err(e) => Some(format!("its run.json is unreadable ({e})")),
            };
            if let Some(why) = differs {
                if !overwrite {
                    return Err(Error::circuit(
                        &self.path,
                        format!("holds another run ({why}); choose another output directory or pass --overwrite"),
                    ));
                }
                self.clear()?;
            }
        } else if self.manifest_path().exists() || self.parts_dir().exists() {
            if !overwrite {
                return Err(Error::circuit(
                    &self.path,
                    "holds circuit files without a run.json; choose another output directory or pass --overwrite",
                ));
            }
            self.clear()?;
        }
        self.remove_stale_temp_files()?;
        let json =
            serde_json::to_vec_pretty(stamp).map_err(|e| Error::circuit(&run, e.to_string()))?;
        write_atomic(&run, &json)
    }

    /// Removes the temporary files a killed `adag trace` left here (`.tmp-{PID}-*.parquet` and
    /// `.json`, see [`adag_core::stale_temp_files`]); they are never finished files.
    fn remove_stale_temp_files(&self) -> Result<()> {
        for dir in [self.path.clone(), self.parts_dir()] {
            if !dir.is_dir() {
                continue;
            }
            for suffix in [".parquet", ".json"] {
                let stale =
                    adag_core::stale_temp_files(&dir, suffix).map_err(|e| Error::io(&dir, e))?;
                for f in stale {
                    std::fs::remove_file(&f).map_err(|e| Error::io(&f, e))?;
                }
            }
        }
        Ok(())
    }

    /// Removes this directory's circuit files (not unrelated files).
    fn clear(&self) -> Result<()> {
        let parts = self.parts_dir();
        if parts.exists() {
            std::fs::remove_dir_all(&parts).map_err(|e| Error::io(&parts, e))?;
        }
        for f in [
            "manifest.json",
            "run.json",
            "nodes.parquet",
            "edges.parquet",
            "prompts.parquet",
        ] {
            let p = self.path.join(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }

    /// Prompt ranges of finished parts, sorted.
    pub fn finished_parts(&self) -> Result<Vec<Range<u64>>> {
        let dir = self.parts_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                // Left by a killed writer; never a finished file.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(range) = name
                .strip_prefix("part-")
                .and_then(|s| s.strip_suffix(".prompts.parquet"))
                .and_then(|s| s.split_once('-'))
                .and_then(|(a, b)| Some(a.parse::<u64>().ok()?..b.parse::<u64>().ok()?))
            else {
                continue;
            };
            out.push(range);
        }
        out.sort_by_key(|r| r.start);
        for w in out.windows(2) {
            if w[0].end > w[1].start {
                return Err(Error::circuit(
                    &dir,
                    format!(
                        "parts {:?} and {:?} overlap; remove the directory and rerun",
                        w[0], w[1]
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Prompt ids already traced (from finished parts).
    pub fn finished_ids(&self) -> Result<BTreeSet<u64>> {
        Ok(self.finished_parts()?.into_iter().flatten().collect())
    }

    /// Writes one finished batch, prompts file last (it marks the part finished).
    pub fn write_part(&self, range: &Range<u64>, c: &Circuit) -> Result<()> {
        let p = self.part_path(range, "nodes");
        write_atomic(&p, &circuit::nodes_parquet(&p, &c.nodes)?)?;
        let p = self.part_path(range, "edges");
        write_atomic(&p, &circuit::edges_parquet(&p, &c.edges)?)?;
        let p = self.part_path(range, "prompts");
        write_atomic(&p, &circuit::prompts_parquet(&p, &c.prompts)?)
    }

    /// Reads every finished part, in prompt order.
    pub fn read_parts(&self) -> Result<Circuit> {
        let mut c = Circuit::default();
        for r in self.finished_parts()? {
            c.extend(Circuit {
                nodes: circuit::read_nodes(&self.part_path(&r, "nodes"))?,
                edges: circuit::read_edges(&self.part_path(&r, "edges"))?,
                prompts: circuit::read_prompts(&self.part_path(&r, "prompts"))?,
            });
        }
        Ok(c)
    }
}

impl CircuitDir {
    /// The part files of `parts`, per table (nodes, edges, prompts), in the given order.
    pub fn part_sources(&self, parts: &[Range<u64>]) -> [Vec<PathBuf>; 3] {
        ["nodes", "edges", "prompts"].map(|t| parts.iter().map(|r| self.part_path(r, t)).collect())
    }

    /// Writes the final tables by streaming `sources` (per table: nodes, edges, prompts; files
    /// in prompt order) so memory stays bounded by one row group however big the circuit,
    /// then the manifest that `manifest` makes from the row counts (nodes, edges, prompts),
    /// then removes the parts.
    pub fn finish_from(
        &self,
        sources: &[Vec<PathBuf>; 3],
        manifest: impl FnOnce([usize; 3]) -> Manifest,
    ) -> Result<Manifest> {
        let names = ["nodes.parquet", "edges.parquet", "prompts.parquet"];
        let mut counts = [0usize; 3];
        for (i, name) in names.iter().enumerate() {
            let out = self.path.join(name);
            let empty = match i {
                0 => circuit::nodes_parquet(&out, &[])?,
                1 => circuit::edges_parquet(&out, &[])?,
                _ => circuit::prompts_parquet(&out, &[])?,
            };
            counts[i] = circuit::concat_parquet(&sources[i], &out, &empty)?;
        }
        let manifest = manifest(counts);
        let m = self.manifest_path();
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::circuit(&m, e.to_string()))?;
        write_atomic(&m, &json)?;
        let parts = self.parts_dir();
        if parts.exists() {
            std::fs::remove_dir_all(&parts).map_err(|e| Error::io(&parts, e))?;
        }
        Ok(manifest)
    }
}

/// Top-level keys whose values differ between two identities.
fn differing_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(serde_json::Value::Object(x)), Some(serde_json::Value::Object(y))) => {
                let sub = differing_keys(
                    &serde_json::Value::Object(x.clone()),
                    &serde_json::Value::Object(y.clone()),
                );
                out.extend(sub.into_iter().map(|s| format!("{k}.{s}")));
            }
            (x, y) if x != y => out.push(k.clone()),
            _ => {}
        }
    }
    out
}

/// Reads the manifest of a complete circuit directory, checking its format.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let d = CircuitDir::new(dir);
    let manifest = d.manifest()?.ok_or_else(|| {
        let hint = match d.finished_parts() {
            Ok(p) if !p.is_empty() => format!(
                "; {} batches are finished: rerun the same `adag trace` to resume",
                p.len()
            ),
            _ => String::new(),
        };
        Error::circuit(
            dir,
            format!("no manifest.json: not a finished circuit{hint}"),
        )
    })?;
    if manifest.format != "adag-circuit" || manifest.format_version > FORMAT_VERSION {
        return Err(Error::circuit(
            dir,
            format!(
                "format {} version {} is not one this adag reads (adag-circuit ≤ {FORMAT_VERSION})",
                manifest.format, manifest.format_version
            ),
        ));
    }
    Ok(manifest)
}

/// Reads a complete circuit directory: its tables and manifest (all in memory; for big
/// circuits read the Parquet files with a dataframe library instead).
pub fn read_circuit(dir: &Path) -> Result<(Circuit, Manifest)> {
    let manifest = read_manifest(dir)?;
    let c = Circuit {
        nodes: circuit::read_nodes(&dir.join("nodes.parquet"))?,
        edges: circuit::read_edges(&dir.join("edges.parquet"))?,
        prompts: circuit::read_prompts(&dir.join("prompts.parquet"))?,
    };
    Ok((c, manifest))
}

/// Merges finished shard directories into one circuit at `out` and returns its manifest.
///
/// The shards must be runs of the same identity (config, dataset, model) with the same shard
/// count and distinct indices; all N must be present unless `allow_partial`. Rows are
/// concatenated in shard order, which is prompt order, so the result equals an unsharded run.
pub fn merge(shard_dirs: &[PathBuf], out: &Path, allow_partial: bool) -> Result<Manifest> {
    if shard_dirs.is_empty() {
        return Err(Error::circuit(out, "no shard directories to merge"));
    }
    let mut shards = Vec::new();
    for d in shard_dirs {
        shards.push((d.clone(), read_manifest(d)?));
    }
    let first = shards[0].1.clone();
    let mut seen: Vec<Shard> = Vec::new();
    for (d, m) in &shards {
        if m.fingerprint != first.fingerprint {
            return Err(Error::circuit(
                d,
                format!(
                    "is a different run from {} (settings differ in: {})",
                    shard_dirs[0].display(),
                    differing_keys(&first.identity, &m.identity).join(", ")
                ),
            ));
        }
        let parts: Vec<Shard> = match m.shard {
            Some(s) => vec![s],
            None => m.merged_shards.clone(),
        };
        for s in parts {
            if s.count != first_count(&first) {
                return Err(Error::circuit(
                    d,
                    format!(
                        "is shard {s}, but {} has {} shards",
                        shard_dirs[0].display(),
                        first_count(&first)
                    ),
                ));
            }
            if seen.contains(&s) {
                return Err(Error::circuit(d, format!("shard {s} is given twice")));
            }
            seen.push(s);
        }
    }
    let count = first_count(&first);
    let missing: Vec<String> = (0..count)
        .filter(|i| !seen.iter().any(|s| s.index == *i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(Error::circuit(
            out,
            format!(
                "shards {} of {count} are missing (pass --partial to merge what is there)",
                missing.join(", ")
            ),
        ));
    }
    shards.sort_by_key(|(_, m)| m.prompt_range.0);
    seen.sort_by_key(|s| s.index);
    let mut timings = Timings::default();
    for (_, m) in shards.iter() {
        timings.load += m.timings.load;
        timings.prepare += m.timings.prepare;
        timings.trace += m.timings.trace;
        timings.write += m.timings.write;
        timings.total += m.timings.total;
        timings.resumed_prompts += m.timings.resumed_prompts;
    }
    let d = CircuitDir::new(out);
    if d.manifest_path().exists() || out.join("run.json").exists() {
        return Err(Error::circuit(
            out,
            "already holds a circuit; choose another output directory",
        ));
    }
    let sources = ["nodes.parquet", "edges.parquet", "prompts.parquet"].map(|f| {
        shards
            .iter()
            .map(|(dir, _)| dir.join(f))
            .collect::<Vec<_>>()
    });
    let range = (
        shards.iter().map(|s| s.1.prompt_range.0).min().unwrap_or(0),
        shards.iter().map(|s| s.1.prompt_range.1).max().unwrap_or(0),
    );
    let traced_at_unix = shards.iter().map(|s| s.1.traced_at_unix).max().unwrap_or(0);
    d.finish_from(&sources, |[n_nodes, n_edges, n_prompts]| {
        timings.prompts_per_s = if timings.trace > 0.0 {
            n_prompts as f64 / timings.trace
        } else {
            0.0
        };
        Manifest {
            shard: None,
            merged_shards: seen,
            prompt_range: range,
            n_prompts,
            n_nodes,
            n_edges,
            timings,
            traced_at_unix,
            ..first
        }
    })
}

fn first_count(m: &Manifest) -> usize {
    m.shard
        .map(|s| s.count)
        .or_else(|| m.merged_shards.first().map(|s| s.count))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_keys_are_named() {
        let a = serde_json::json!({"config": {"k": 5, "edge_threshold": 0.01}, "model": "m"});
        let b = serde_json::json!({"config": {"k": 3, "edge_threshold": 0.01}, "model": "m"});
        assert_eq!(differing_keys(&a, &b), vec!["config.k".to_string()]);
    }

    #[test]
    fn resume_removes_stale_temp_files_of_a_killed_run() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_path_buf();
        let dir = CircuitDir::new(&d);
        let stamp = RunStamp {
            identity: serde_json::json!({"k": 1}),
            fingerprint: "f".into(),
            shard: Shard { index: 0, count: 1 },
            prompt_range: (0, 2),
        };
        dir.begin(&stamp, false).unwrap();
        std::fs::create_dir_all(d.join("parts")).unwrap();
        let stale = [
            d.join(".tmp-4242-nodes.parquet"),
            d.join(".tmp-4242-manifest.json"),
            d.join("parts/.tmp-4242-part-00000000-00000002.edges.parquet"),
        ];
        for f in &stale {
            std::fs::write(f, b"half").unwrap();
        }
        std::fs::write(d.join("notes.parquet"), b"user's").unwrap();
        dir.begin(&stamp, false).unwrap();
        for f in &stale {
            assert!(!f.exists(), "{} was left behind", f.display());
        }
        assert!(d.join("notes.parquet").exists());
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary files left: {names:?}");
    }
}
