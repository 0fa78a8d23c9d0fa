//! Results on disk: the cluster-state file gets the best descriptions and labels (what the
//! viewer and `adag plot` show), and a descriptions file beside it keeps everything else.
//!
//! # The descriptions file (version 1)
//!
//! `<state stem>.descriptions.json` next to the cluster state (`clusters.descriptions.json`
//! for `clusters.json`), written atomically:
//!
//! ```json
//! {
//!   "format": "adag-descriptions", "version": 1,
//!   "circuit": "capitals", "cluster_state": "capitals/clusters.json",
//!   "explainer": "openai-compatible http://… (model …)", "simulator": "in-process models/demo (10 score tokens)",
//!   "labeller": "…", "options": { "samples": 5, "max_rounds": 10, … },
//!   "clusters": {
//!     "C0": {
//!       "description": { "cluster": "C0",
//!         "explanations": [{"side": "input", "sign": "pos", "text": "…", "sample_index": 0,
//!                           "score": 0.41, "exemplars": [3, 17, …], "excerpts": ["… {{Dallas}} …"],
//!                           "threshold": 0.12}, …],
//!         "best_input": {…}, "best_output": {…},
//!         "pools": [{"side": "input", "sign": "pos", "explain": […], "scored": […], "scored_on_shown": false}],
//!         "unusable": [{"side": "input", "sign": "neg", "sample_index": 3, "reason": {"kind": "malformed", "detail": "…"}}],
//!         "notes": [] },
//!       "label": { "cluster": "C0", "label": "Texas", "source": "llm", "problems": [] }
//!     }
//!   },
//!   "totals": { "calls": 120, "cached_calls": 0, "usage": {"input_tokens": …, "output_tokens": …}, … }
//! }
//! ```
//!
//! `adag describe` fills `description` (and the header), `adag label` fills `label`; each keeps
//! what the other wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use adag_analysis::ClusterState;
use serde::{Deserialize, Serialize};

use crate::describe::{ClusterDescription, DescribeOptions, Explanation};
use crate::error::{Error, Result};
use crate::label::LabelResult;
use crate::llm::Totals;

/// One cluster's entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterEntry {
    /// What `adag describe` produced.
    #[serde(default)]
    pub description: Option<ClusterDescription>,
    /// What `adag label` produced.
    #[serde(default)]
    pub label: Option<LabelResult>,
}

/// The descriptions file (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescriptionsFile {
    /// Always `"adag-descriptions"`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// The circuit directory.
    pub circuit: String,
    /// The cluster-state file.
    pub cluster_state: String,
    /// The explainer backend.
    #[serde(default)]
    pub explainer: Option<String>,
    /// The simulator.
    #[serde(default)]
    pub simulator: Option<String>,
    /// The labeller backend.
    #[serde(default)]
    pub labeller: Option<String>,
    /// Options of the last `adag describe`.
    #[serde(default)]
    pub options: Option<DescribeOptions>,
    /// Per cluster id.
    pub clusters: BTreeMap<String, ClusterEntry>,
    /// Calls and tokens of the last run.
    #[serde(default)]
    pub totals: Totals,
}

impl DescriptionsFile {
    /// The default path beside a cluster-state file.
    pub fn default_path(state: &Path) -> PathBuf {
        let stem = state
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "clusters".into());
        state.with_file_name(format!("{stem}.descriptions.json"))
    }

    /// An empty file for a circuit and state.
    pub fn new(circuit: &Path, state: &Path) -> Self {
        DescriptionsFile {
            format: "adag-descriptions".into(),
            version: 1,
            circuit: circuit.display().to_string(),
            cluster_state: state.display().to_string(),
            explainer: None,
            simulator: None,
            labeller: None,
            options: None,
            clusters: BTreeMap::new(),
            totals: Totals::default(),
        }
    }

    /// Reads the file at `path`, or a new one when there is none.
    pub fn read_or_new(path: &Path, circuit: &Path, state: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new(circuit, state))
            }
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let f: DescriptionsFile = serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: format!("not an adag descriptions file: {e}"),
        })?;
        if f.format != "adag-descriptions" || f.version != 1 {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "format {:?} version {}; expected adag-descriptions version 1",
                    f.format, f.version
                ),
            });
        }
        Ok(f)
    }

    /// Writes it atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: format!("serialising: {e}"),
        })?;
        adag_circuit::store::write_atomic(path, &json)?;
        Ok(())
    }
}

/// Puts the best descriptions into the cluster state: input, output and the combined
/// `"input | output"` (reference format). A neg-side input description keeps its sign
/// ([`crate::describe::NEG_MARKER`]), so the viewer and the labeller read it as such.
pub fn apply_descriptions(state: &mut ClusterState, ds: &[ClusterDescription]) {
    for d in ds {
        if let Some(c) = state.clusters.iter_mut().find(|c| c.id == d.cluster) {
            c.input_description = d.best_input.as_ref().map(Explanation::signed_text);
            c.output_description = d.best_output.as_ref().map(|e| e.text.clone());
            c.description = d.combined();
        }
    }
}

/// Puts labels into the cluster state.
pub fn apply_labels(state: &mut ClusterState, labels: &[LabelResult]) {
    for l in labels {
        if let Some(c) = state.clusters.iter_mut().find(|c| c.id == l.cluster) {
            c.label = Some(l.label.clone());
        }
    }
}
