//! Multi-view clustering of a circuit's units, its diagnostics and the cluster-state file.
//!
//! [`cluster`] runs the whole chain: [`Profiles`] → [`similarity`] → [`spectral::embed`] →
//! [`spectral::kmeans`], names clusters `C0, C1, …` by decreasing summed |attribution| (so
//! names do not depend on k-means' arbitrary label order), and computes [`Diagnostics`].
//! The result is written as a [`ClusterState`] JSON file beside the circuit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{read, Error, Result};
use crate::leiden::LeidenOptions;
use crate::profiles::{Profiles, Unit};
use crate::similarity::{similarity, Similarity, SimilarityOptions};
use crate::spectral;

/// File name of the cluster state inside a circuit directory.
pub const CLUSTER_STATE_FILE: &str = "clusters.json";

/// Options of [`cluster`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterOptions {
    /// Number of clusters.
    pub k: usize,
    /// Similarity options (view combination, attribution weighting).
    pub similarity: SimilarityOptions,
    /// Seed of the eigensolver's start vector and of k-means++.
    pub seed: u64,
    /// k-means restarts (the best inertia wins).
    pub n_init: usize,
    /// Range `[a, b]` of k searched for the largest eigengap ([`Diagnostics::suggested_k`]);
    /// `None`: `[2, min(max(2k, 20), units − 1)]`.
    #[serde(default)]
    pub k_range: Option<[usize; 2]>,
}

impl ClusterOptions {
    /// The k range searched for the eigengap on `n` units (see [`ClusterOptions::k_range`]),
    /// clamped to `[1, n − 1]` since λ_{k+1} must exist.
    pub fn k_range_for(&self, n: usize) -> [usize; 2] {
        let hi_cap = n.saturating_sub(1).max(1);
        let [a, b] = self.k_range.unwrap_or([2, (2 * self.k).max(20)]);
        let b = b.min(hi_cap);
        [a.clamp(1, b), b]
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            k: 20,
            similarity: SimilarityOptions::default(),
            seed: 42,
            n_init: 10,
            k_range: None,
        }
    }
}

/// Quality figures of a clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// The largest eigenvalues of the normalised affinity, descending (up to λ_{b+1} for the
    /// searched range `[a, b]`).
    pub eigenvalues: Vec<f64>,
    /// `λ_k − λ_{k+1}`: a large gap says the graph has about k well-separated groups.
    pub eigengap: f64,
    /// The k in [`Diagnostics::k_range`] with the largest gap `λ_k − λ_{k+1}`.
    pub suggested_k: usize,
    /// The range `[a, b]` searched for `suggested_k` (`[0, 0]` in files from before it was
    /// recorded, which searched only 1..=k).
    #[serde(default)]
    pub k_range: [usize; 2],
    /// Mean silhouette with distance `1 − (S+1)/2` (singletons score 0), in [−1, 1].
    pub silhouette: f64,
    /// Mean similarity over pairs of units in the same cluster.
    pub intra_similarity: f64,
    /// Mean similarity over pairs in different clusters.
    pub inter_similarity: f64,
    /// `intra / inter` (∞ written as null when inter is 0).
    pub intra_inter_ratio: Option<f64>,
    /// Share of units whose net output sign (Σ output profile over prompts and targets)
    /// differs from their cluster's majority sign: clusters mixing promoters and suppressors.
    pub sign_conflict_rate: f64,
    /// `"dense"` or `"partial"` eigensolver.
    pub eigensolver: String,
    /// How the embedding was partitioned: `"kmeans"` or `"ward"` (absent in older files:
    /// k-means).
    #[serde(default = "kmeans_name")]
    pub method: String,
    /// Seconds spent on similarity, eigensolver and k-means.
    pub seconds: BTreeMap<String, f64>,
    /// Modularity (resolution 1) of the clusters on the affinity graph `max(S, 0)` without
    /// self-loops: the quality Leiden maximises, computed for every method so that they can be
    /// compared (absent in older files).
    #[serde(default)]
    pub modularity: Option<f64>,
    /// The Leiden options, when the method was Leiden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leiden: Option<LeidenOptions>,
}

/// One cluster in a [`ClusterState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Stable id, `C0`, `C1`, … by decreasing summed |attribution|.
    pub id: String,
    /// Display name (the id until someone names it).
    pub name: String,
    /// Member unit keys (`"layer,neuron,polarity"`), in (layer, neuron, polarity) order.
    pub units: Vec<String>,
    /// Σ node attribution of the members over all prompts.
    pub attribution: f64,
    /// Σ |node attribution| of the members over all prompts.
    pub abs_attribution: f64,
    /// Number of prompts on which some member is traced.
    pub n_prompts: usize,
    /// Description of what the cluster reads (input view), when generated.
    #[serde(default)]
    pub input_description: Option<String>,
    /// Description of what the cluster writes (output view), when generated.
    #[serde(default)]
    pub output_description: Option<String>,
    /// Combined description, when generated.
    #[serde(default)]
    pub description: Option<String>,
    /// A 1–3-word label, when generated.
    #[serde(default)]
    pub label: Option<String>,
}

/// The cluster-state file (`clusters.json` in the circuit directory).
///
/// # Format (version 1)
///
/// ```json
/// {
///   "format": "adag-cluster-state", "version": 1,
///   "circuit": "capitals",
///   "options": {"k": 20, "similarity": {"combine": "harmonic", "weight_by_attribution": false},
///               "seed": 42, "n_init": 10},
///   "cluster_map": {"3,117,1": "C0", "3,117,-1": "C4", ...},
///   "clusters": [{"id": "C0", "name": "C0", "units": ["3,117,1", ...], "attribution": 2.1,
///                 "abs_attribution": 2.3, "n_prompts": 40, "input_description": null,
///                 "output_description": null, "description": null, "label": null}, ...],
///   "diagnostics": {"eigenvalues": [...], "eigengap": 0.12, "suggested_k": 6,
///                   "silhouette": 0.31, ...}
/// }
/// ```
///
/// **Mapping a node to its cluster** (what the viewer does): a neuron node of any prompt at
/// (layer, position, neuron) with activation a belongs to unit `"{layer},{neuron},{sign(a)}"`
/// (sign 1, −1 or 0); `cluster_map[unit]` is its cluster id, and an absent key means
/// unclustered. Positions are not part of the key: a unit is summed over positions, so all
/// positions of a neuron with the same sign share a cluster. (The reference keyed rows by
/// layer, token, neuron and polarity, and some of its lookups dropped the polarity, which
/// merged a neuron's positive and negative units; adag's key always has it.) Embedding and
/// logit nodes are never clustered. `clusters` is in id order; `name`, descriptions and
/// `label` may be edited by tools and people, the rest is written by `adag cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Always `"adag-cluster-state"`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The circuit directory the clustering was computed from (as given).
    pub circuit: String,
    /// The options used.
    pub options: ClusterOptions,
    /// Unit key → cluster id.
    pub cluster_map: BTreeMap<String, String>,
    /// The clusters, in id order.
    pub clusters: Vec<ClusterInfo>,
    /// Quality figures.
    pub diagnostics: Diagnostics,
}

impl ClusterState {
    /// The default path: `clusters.json` inside the circuit directory.
    pub fn default_path(circuit_dir: &Path) -> PathBuf {
        circuit_dir.join(CLUSTER_STATE_FILE)
    }

    /// Reads a cluster-state file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = read(path)?;
        let s: ClusterState = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if s.format != "adag-cluster-state" || s.version != 1 {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "not an adag cluster state v1 (format {:?}, version {})",
                    s.format, s.version
                ),
            });
        }
        Ok(s)
    }

    /// Writes it atomically (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        adag_circuit::store::write_atomic(path, &json)?;
        Ok(())
    }

    /// The cluster of a unit.
    pub fn cluster_of(&self, unit: &Unit) -> Option<&str> {
        self.cluster_map.get(&unit.key()).map(String::as_str)
    }

    /// The `n` member units of cluster `id` with the most Σ|attribution| over the prompts
    /// of `profiles` (ties: unit order), as `"layer,neuron,polarity"` keys: what a table's
    /// "top units" column should show, rather than the lowest ids.
    pub fn top_units(&self, profiles: &Profiles, id: &str, n: usize) -> Vec<String> {
        let mut weight: BTreeMap<String, f64> = BTreeMap::new();
        for p in &profiles.prompts {
            for u in &p.units {
                *weight.entry(profiles.units[u.unit].key()).or_default() +=
                    u.attribution.abs() as f64;
            }
        }
        let Some(c) = self.clusters.iter().find(|c| c.id == id) else {
            return Vec::new();
        };
        let mut units: Vec<(&String, f64)> = c
            .units
            .iter()
            .map(|u| (u, weight.get(u).copied().unwrap_or(0.0)))
            .collect();
        units.sort_by(|a, b| b.1.total_cmp(&a.1));
        units.into_iter().take(n).map(|(u, _)| u.clone()).collect()
    }

    /// The cluster with this id or name.
    pub fn find(&self, id_or_name: &str) -> Option<&ClusterInfo> {
        self.clusters
            .iter()
            .find(|c| c.id == id_or_name)
            .or_else(|| self.clusters.iter().find(|c| c.name == id_or_name))
    }
}

/// The result of [`cluster`].
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// The units, in canonical order.
    pub units: Vec<Unit>,
    /// Cluster index (0..k, C{index}) of each unit.
    pub labels: Vec<usize>,
    /// Quality figures.
    pub diagnostics: Diagnostics,
}

/// Clusters the units of `profiles`.
fn kmeans_name() -> String {
    Method::KMeans.to_string()
}

/// How the spectral embedding is partitioned into k clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// k-means++ with seeded restarts (the reference's default).
    #[default]
    KMeans,
    /// Agglomerative clustering with Ward's linkage ([`crate::ward`]).
    Ward,
    /// Leiden on the affinity graph ([`crate::leiden`], default options; see
    /// [`cluster_leiden`]): the number of clusters is found, not given.
    Leiden,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::KMeans => "kmeans",
            Method::Ward => "ward",
            Method::Leiden => "leiden",
        })
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "kmeans" | "spectral" => Ok(Method::KMeans),
            "ward" => Ok(Method::Ward),
            "leiden" => Ok(Method::Leiden),
            _ => Err(format!("{s:?}: expected kmeans, ward or leiden")),
        }
    }
}

/// Clusters with k-means on the spectral embedding ([`cluster_by`] with [`Method::KMeans`]).
pub fn cluster(profiles: &Profiles, opts: &ClusterOptions) -> Result<Clustering> {
    cluster_by(profiles, opts, Method::KMeans)
}

/// Clusters the units: similarity, spectral embedding, then `method`; the same diagnostics
/// whatever the method. [`Method::Leiden`] ignores `opts.k` and runs [`cluster_leiden`] with
/// default options.
pub fn cluster_by(
    profiles: &Profiles,
    opts: &ClusterOptions,
    method: Method,
) -> Result<Clustering> {
    if method == Method::Leiden {
        return cluster_leiden(profiles, opts, &LeidenOptions::default());
    }
    cluster_inner(profiles, opts, &method.to_string(), &|emb| match method {
        Method::KMeans => {
            spectral::kmeans(&emb.rows, emb.dim, opts.k, opts.n_init, opts.seed).labels
        }
        Method::Ward => crate::ward::ward(&emb.rows, emb.dim, opts.k),
        Method::Leiden => unreachable!("Leiden returned above"),
    })
}

/// A given assignment (`labels[unit]` in 0..k, e.g. hypothesis clusters) with the same
/// naming and diagnostics as a computed one; `method` is recorded in the diagnostics.
pub fn cluster_given(
    profiles: &Profiles,
    opts: &ClusterOptions,
    method: &str,
    labels: &[usize],
) -> Result<Clustering> {
    if labels.len() != profiles.units.len() || labels.iter().any(|&l| l >= opts.k) {
        return Err(Error::Input(format!(
            "{method}: {} labels in 0..{} for {} units",
            labels.len(),
            opts.k,
            profiles.units.len()
        )));
    }
    cluster_inner(profiles, opts, method, &|_| labels.to_vec())
}

/// Leiden clustering ([`crate::leiden`]) of the units on the affinity graph of the same
/// similarity the spectral methods use (`opts.similarity`, seeded by `opts.seed`); `opts.k`
/// is ignored: the result has as many clusters as Leiden finds ([`Clustering::k`]), and the
/// diagnostics (eigengap at that k, silhouette, …) are the other methods'.
pub fn cluster_leiden(
    profiles: &Profiles,
    opts: &ClusterOptions,
    leiden: &LeidenOptions,
) -> Result<Clustering> {
    let n = profiles.units.len();
    if n == 0 {
        return Err(Error::Input(
            "the circuit has no neuron nodes to cluster".into(),
        ));
    }
    if !(leiden.resolution.is_finite() && leiden.resolution > 0.0) {
        return Err(Error::Input(format!(
            "--resolution {}: expected a positive number",
            leiden.resolution
        )));
    }
    let mut seconds = BTreeMap::new();
    let t = std::time::Instant::now();
    let s = similarity(profiles, &opts.similarity);
    seconds.insert("similarity".to_string(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let g = crate::leiden::Graph::from_similarity(&s, leiden.knn);
    let labels = crate::leiden::leiden(&g, leiden.resolution, opts.seed);
    seconds.insert("leiden".to_string(), t.elapsed().as_secs_f64());
    let k = labels.iter().max().map_or(1, |&m| m + 1);
    let opts = ClusterOptions { k, ..*opts };
    let t = std::time::Instant::now();
    let k_range = opts.k_range_for(n);
    let emb = spectral::embed_eigs(
        &s,
        k,
        (k_range[1] + 1).max(k + 1),
        opts.seed,
        n > spectral::DENSE_LIMIT,
    )?;
    seconds.insert("eigensolver".to_string(), t.elapsed().as_secs_f64());
    let mut c = finish(
        profiles, &opts, "leiden", &s, &emb, labels, seconds, k_range,
    );
    c.diagnostics.leiden = Some(*leiden);
    Ok(c)
}

fn cluster_inner(
    profiles: &Profiles,
    opts: &ClusterOptions,
    method: &str,
    partition: &dyn Fn(&spectral::Embedding) -> Vec<usize>,
) -> Result<Clustering> {
    let n = profiles.units.len();
    if n == 0 {
        return Err(Error::Input(
            "the circuit has no neuron nodes to cluster".into(),
        ));
    }
    if opts.k == 0 || opts.k > n {
        return Err(Error::Input(format!(
            "--k {} is out of range: the circuit has {n} units (layer, neuron, polarity)",
            opts.k
        )));
    }
    let mut seconds = BTreeMap::new();
    let t = std::time::Instant::now();
    let s = similarity(profiles, &opts.similarity);
    seconds.insert("similarity".to_string(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let k_range = opts.k_range_for(n);
    let emb = spectral::embed_eigs(
        &s,
        opts.k,
        k_range[1] + 1,
        opts.seed,
        n > spectral::DENSE_LIMIT,
    )?;
    seconds.insert("eigensolver".to_string(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let labels = partition(&emb);
    seconds.insert(method.to_string(), t.elapsed().as_secs_f64());
    Ok(finish(
        profiles, opts, method, &s, &emb, labels, seconds, k_range,
    ))
}

/// Names clusters by attribution and computes the diagnostics (shared by every method).
#[allow(clippy::too_many_arguments)]
fn finish(
    profiles: &Profiles,
    opts: &ClusterOptions,
    method: &str,
    s: &Similarity,
    emb: &spectral::Embedding,
    labels: Vec<usize>,
    mut seconds: BTreeMap<String, f64>,
    k_range: [usize; 2],
) -> Clustering {
    let n = profiles.units.len();
    // Rename clusters by decreasing Σ|attribution| (ties: smallest member first).
    let mut abs = vec![0f64; opts.k];
    for p in &profiles.prompts {
        for u in &p.units {
            abs[labels[u.unit]] += u.attribution.abs() as f64;
        }
    }
    let first: Vec<usize> = (0..opts.k)
        .map(|c| labels.iter().position(|&l| l == c).unwrap_or(n))
        .collect();
    let mut order: Vec<usize> = (0..opts.k).collect();
    order.sort_by(|&a, &b| abs[b].total_cmp(&abs[a]).then(first[a].cmp(&first[b])));
    let mut rename = vec![0; opts.k];
    for (new, &old) in order.iter().enumerate() {
        rename[old] = new;
    }
    let labels: Vec<usize> = labels.iter().map(|&l| rename[l]).collect();
    let t = std::time::Instant::now();
    let mut diagnostics = diagnose(profiles, s, &labels, opts.k, &emb.eigenvalues, k_range);
    seconds.insert("diagnostics".to_string(), t.elapsed().as_secs_f64());
    diagnostics.eigensolver = emb.solver.to_string();
    diagnostics.method = method.to_string();
    diagnostics.seconds = seconds;
    Clustering {
        units: profiles.units.clone(),
        labels,
        diagnostics,
    }
}

fn diagnose(
    p: &Profiles,
    s: &Similarity,
    labels: &[usize],
    k: usize,
    eig: &[f64],
    k_range: [usize; 2],
) -> Diagnostics {
    let n = labels.len();
    let eigengap = if eig.len() > k {
        eig[k - 1] - eig[k]
    } else {
        0.0
    };
    let suggested_k = (k_range[0].max(1)..=k_range[1].min(eig.len().saturating_sub(1)))
        .max_by(|&a, &b| {
            (eig[a - 1] - eig[a])
                .total_cmp(&(eig[b - 1] - eig[b]))
                .then(b.cmp(&a))
        })
        .unwrap_or(1);
    let sizes = {
        let mut c = vec![0usize; k];
        labels.iter().for_each(|&l| c[l] += 1);
        c
    };
    let (mut intra, mut n_intra, mut inter, mut n_inter) = (0f64, 0usize, 0f64, 0usize);
    let mut sil = 0f64;
    let mut per_cluster = vec![0f64; k];
    for i in 0..n {
        per_cluster.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..n {
            if i == j {
                continue;
            }
            let v = s.get(i, j) as f64;
            per_cluster[labels[j]] += (1.0 - (v + 1.0) / 2.0).max(0.0);
            if labels[i] == labels[j] {
                intra += v;
                n_intra += 1;
            } else {
                inter += v;
                n_inter += 1;
            }
        }
        let own = labels[i];
        if sizes[own] > 1 {
            let a = per_cluster[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| per_cluster[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            if b.is_finite() && a.max(b) > 0.0 {
                sil += (b - a) / a.max(b);
            }
        }
    }
    let intra = if n_intra > 0 {
        intra / n_intra as f64
    } else {
        0.0
    };
    let inter = if n_inter > 0 {
        inter / n_inter as f64
    } else {
        0.0
    };
    // Net output sign per unit.
    let mut net = vec![0f64; n];
    for pr in &p.prompts {
        for u in &pr.units {
            net[u.unit] += u.output.iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    let mut pos = vec![0usize; k];
    let mut neg = vec![0usize; k];
    for i in 0..n {
        if net[i] > 0.0 {
            pos[labels[i]] += 1;
        } else if net[i] < 0.0 {
            neg[labels[i]] += 1;
        }
    }
    let conflicts: usize = (0..k).map(|c| pos[c].min(neg[c])).sum();
    Diagnostics {
        eigenvalues: eig.to_vec(),
        k_range,
        eigengap,
        suggested_k,
        silhouette: sil / n as f64,
        intra_similarity: intra,
        inter_similarity: inter,
        intra_inter_ratio: (inter != 0.0).then(|| intra / inter),
        sign_conflict_rate: conflicts as f64 / n as f64,
        eigensolver: String::new(),
        method: String::new(),
        seconds: BTreeMap::new(),
        modularity: Some(crate::leiden::similarity_modularity(s, labels, 1.0)),
        leiden: None,
    }
}

impl Clustering {
    /// Number of clusters (1 + the largest label).
    pub fn k(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m + 1)
    }

    /// The cluster-state file of this clustering.
    pub fn to_state(
        &self,
        circuit: &str,
        profiles: &Profiles,
        opts: &ClusterOptions,
    ) -> ClusterState {
        let k = opts.k.max(self.k());
        let mut attribution = vec![0f64; k];
        let mut abs = vec![0f64; k];
        let mut prompts = vec![std::collections::BTreeSet::new(); k];
        for p in &profiles.prompts {
            for u in &p.units {
                let c = self.labels[u.unit];
                attribution[c] += u.attribution as f64;
                abs[c] += u.attribution.abs() as f64;
                prompts[c].insert(p.prompt_id);
            }
        }
        let mut members = vec![Vec::new(); k];
        let mut cluster_map = BTreeMap::new();
        for (u, &c) in self.units.iter().zip(&self.labels) {
            members[c].push(u.key());
            cluster_map.insert(u.key(), format!("C{c}"));
        }
        let clusters = (0..k)
            .map(|c| ClusterInfo {
                id: format!("C{c}"),
                name: format!("C{c}"),
                units: std::mem::take(&mut members[c]),
                attribution: attribution[c],
                abs_attribution: abs[c],
                n_prompts: prompts[c].len(),
                input_description: None,
                output_description: None,
                description: None,
                label: None,
            })
            .collect();
        ClusterState {
            format: "adag-cluster-state".into(),
            version: 1,
            circuit: circuit.to_string(),
            options: *opts,
            cluster_map,
            clusters,
            diagnostics: self.diagnostics.clone(),
        }
    }
}
