//! Attribution against a per-prompt metric (reference §8, `2_correlate_asr.py` and
//! `3_describe_and_correlate.py`).
//!
//! For every item (a cluster, a unit, a cluster→cluster edge or a unit→unit edge) the
//! per-prompt value is its summed attribution on that prompt: Σ node attribution of the
//! cluster's (unit's) nodes, or Σ edge attribution of the edges from one cluster's (unit's)
//! nodes to another's. At cluster level embeddings count as the pseudo-cluster `tokens` and
//! logits as `outputs`; at unit level they keep their token: `tok{id}` and `out{id}`, so an
//! edge reads `tok412->L0N17+` or `L3N5-->out99`. Positions are summed, as for units. Only
//! prompts where the item is present count (the reference's convention), and items present on
//! fewer than `min_prompts` prompts are flagged `low_n`. Rows are sorted by |Pearson r|, strongest
//! first.
//!
//! A metric that covers fewer than `min_prompts` (at least 3) of the circuit's prompts is an
//! error rather than an empty table: no item could be reported, and an empty table reads as
//! "nothing correlates".
//!
//! # Metric file
//!
//! CSV (or TSV) with a header. The key column is `prompt_id` if the header has one (every key
//! must then be an integer prompt id), else `label` (every key must be a label of the circuit,
//! numeric or not): the header decides, the keys' look never does. The value column is the one
//! named by `column`, else the first other column. Also accepted: a JSON object of prompt ids
//! `{"<prompt_id>": value, ...}`, or of labels wrapped as `{"label": {"<label>": value, ...}}`.
//!
//! # Multiple testing
//!
//! A table holds hundreds to thousands of tests, so a raw p of 5e-4 is expected by chance.
//! Each row carries its Benjamini–Hochberg q-value over the rows of its level (the family
//! tested together), and optionally a permutation p-value: the metric shuffled among the
//! item's prompts `permutations` times (seeded), `p = (1 + #{|r_perm| ≥ |r|}) / (1 + N)`,
//! which assumes nothing about normality. Rows whose n is below `min_prompts` are kept
//! but flagged `low_n` (and still counted in the q-value family); items on fewer than 3 prompts
//! have no correlation and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use adag_circuit::Circuit;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterState;
use crate::error::{read, Error, Result};
use crate::profiles::Unit;
use crate::stats;

/// A per-prompt metric, keyed by prompt id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metric {
    /// prompt id → value.
    pub values: BTreeMap<u64, f64>,
}

/// What the keys of a metric file name: decided by the header (CSV) or the wrapper (JSON),
/// never by whether a key looks like a number (a numeric label is a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    PromptId,
    Label,
}

impl Metric {
    /// Reads a metric file (see the module docs), resolving labels through the circuit.
    pub fn read(path: &Path, column: Option<&str>, circuit: &Circuit) -> Result<Metric> {
        let bytes = read(path)?;
        let text = String::from_utf8_lossy(&bytes);
        let bad = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut by_label: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for p in &circuit.prompts {
            if let Some(l) = &p.label {
                by_label.entry(l.as_str()).or_default().push(p.prompt_id);
            }
        }
        let mut values = BTreeMap::new();
        let mut put = |kind: KeyKind, key: &str, v: f64, line: usize| -> Result<()> {
            match kind {
                KeyKind::PromptId => {
                    let id = key.parse::<u64>().map_err(|_| {
                        bad(format!("line {line}: prompt_id {key:?} is not an integer"))
                    })?;
                    values.insert(id, v);
                }
                KeyKind::Label => {
                    let ids = by_label.get(key).ok_or_else(|| {
                        bad(format!(
                            "line {line}: {key:?} is not a label of the circuit"
                        ))
                    })?;
                    ids.iter().for_each(|&id| {
                        values.insert(id, v);
                    });
                }
            }
            Ok(())
        };
        if text.trim_start().starts_with('{') {
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: path.to_path_buf(),
                    source,
                })?;
            let obj = json
                .as_object()
                .ok_or_else(|| bad("not a JSON object".into()))?;
            let (kind, map) = match (obj.len(), obj.get("label"), obj.get("prompt_id")) {
                (1, Some(serde_json::Value::Object(m)), _) => (KeyKind::Label, m),
                (1, _, Some(serde_json::Value::Object(m))) => (KeyKind::PromptId, m),
                _ => (KeyKind::PromptId, obj),
            };
            for (k, v) in map {
                let v = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("the value of {k:?} is not a number")))?;
                put(kind, k, v, 1)?;
            }
            return Ok(Metric { values });
        }
        let sep = if text.lines().next().unwrap_or("").contains('\t') {
            '\t'
        } else {
            ','
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines
            .next()
            .ok_or_else(|| bad("empty metric file".into()))?;
        let cols: Vec<&str> = header.split(sep).map(str::trim).collect();
        let ids = cols.iter().position(|&c| c == "prompt_id");
        let labels = cols.iter().position(|&c| c == "label");
        let (key, kind) = match (ids, labels) {
            (Some(i), _) => (i, KeyKind::PromptId),
            (None, Some(l)) => (l, KeyKind::Label),
            (None, None) => return Err(bad("the header needs a prompt_id or label column".into())),
        };
        let val = match column {
            Some(name) => cols
                .iter()
                .position(|&c| c == name)
                .ok_or_else(|| bad(format!("no column {name:?} in the header {cols:?}")))?,
            None => (0..cols.len())
                .find(|&i| i != key && cols[i] != "label" && cols[i] != "prompt_id")
                .ok_or_else(|| bad("no value column besides the key".into()))?,
        };
        for (i, line) in lines {
            let f: Vec<&str> = line.split(sep).map(str::trim).collect();
            let (Some(k), Some(v)) = (f.get(key), f.get(val)) else {
                return Err(bad(format!("line {}: too few fields", i + 1)));
            };
            let v: f64 = v
                .parse()
                .map_err(|_| bad(format!("line {}: {v:?} is not a number", i + 1)))?;
            put(kind, k, v, i + 1)?;
        }
        Ok(Metric { values })
    }
}

/// What is correlated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Clusters of a cluster state.
    Cluster,
    /// Units (layer, neuron, polarity).
    Neuron,
    /// Cluster → cluster edges.
    Edge,
    /// Unit → unit edges (embeddings and logits by token id), summed over positions.
    NeuronEdge,
}

/// One row of the correlation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelationRow {
    /// `cluster`, `neuron`, `edge` or `neuron_edge`.
    pub level: Level,
    /// Cluster id, unit (`L3N117+`), `C1->C4` or `L0N5+->L2N9-`.
    pub item: String,
    /// Prompts where the item is present and the metric is known.
    pub n: usize,
    /// Pearson's r.
    pub pearson_r: f64,
    /// Its two-sided p-value.
    pub pearson_p: f64,
    /// Spearman's ρ.
    pub spearman_rho: f64,
    /// Its two-sided p-value.
    pub spearman_p: f64,
    /// Mean attribution over those prompts.
    pub mean_attribution: f64,
    /// Benjamini–Hochberg q-value of `pearson_p` among the rows of this level.
    pub pearson_q: f64,
    /// Permutation p-value of |r|, when permutations were asked for.
    pub permutation_p: Option<f64>,
    /// n is below the minimum asked for: read the row with care.
    pub low_n: bool,
}

/// Options of [`correlate_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelateOptions {
    /// Rows with fewer prompts are flagged `low_n`; the metric must cover at least this many.
    pub min_prompts: usize,
    /// Shuffles of the metric per row for a permutation p-value (0: none).
    pub permutations: usize,
    /// Seed of the shuffles.
    pub seed: u64,
}

impl Default for CorrelateOptions {
    fn default() -> Self {
        CorrelateOptions {
            min_prompts: 10,
            permutations: 0,
            seed: 42,
        }
    }
}

/// (prompt, layer, position, neuron) → (activation, is a neuron node).
fn node_key(c: &Circuit) -> BTreeMap<(u64, i32, u32, u32), (f32, bool)> {
    c.nodes
        .iter()
        .map(|n| {
            let neuron =
                n.layer >= 0 && !(n.input_profile.is_empty() && n.output_profile.is_empty());
            (
                (n.prompt_id, n.layer, n.position, n.neuron),
                (n.activation, neuron),
            )
        })
        .collect()
}

/// Per-prompt summed attribution of every item of a level.
pub fn item_values(
    circuit: &Circuit,
    clusters: Option<&ClusterState>,
    level: Level,
) -> Result<BTreeMap<String, BTreeMap<u64, f64>>> {
    let mut out: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let need = || {
        clusters.ok_or_else(|| {
            Error::Input(format!(
                "{level:?} correlation needs a cluster state: run `adag cluster` first"
            ))
        })
    };
    match level {
        Level::Neuron | Level::Cluster => {
            let cs = if level == Level::Cluster {
                Some(need()?)
            } else {
                None
            };
            for n in &circuit.nodes {
                if n.layer < 0 || (n.input_profile.is_empty() && n.output_profile.is_empty()) {
                    continue;
                }
                let unit = Unit::of_node(n.layer, n.neuron, n.activation);
                let item = match cs {
                    Some(cs) => match cs.cluster_of(&unit) {
                        Some(c) => c.to_string(),
                        None => continue,
                    },
                    None => unit.to_string(),
                };
                *out.entry(item).or_default().entry(n.prompt_id).or_default() +=
                    n.attribution as f64;
            }
        }
        Level::Edge | Level::NeuronEdge => {
            let cs = if level == Level::Edge {
                Some(need()?)
            } else {
                None
            };
            let act = node_key(circuit);
            let name = |p: u64, l: i32, pos: u32, neuron: u32| -> Option<String> {
                if l < 0 {
                    return Some(match cs {
                        Some(_) => "tokens".into(),
                        None => format!("tok{neuron}"),
                    });
                }
                let &(a, is_neuron) = act.get(&(p, l, pos, neuron))?;
                if !is_neuron {
                    return Some(match cs {
                        Some(_) => "outputs".into(),
                        None => format!("out{neuron}"),
                    });
                }
                let unit = Unit::of_node(l, neuron, a);
                match cs {
                    Some(cs) => cs.cluster_of(&unit).map(str::to_string),
                    None => Some(unit.to_string()),
                }
            };
            for e in &circuit.edges {
                let (Some(s), Some(t)) = (
                    name(
                        e.prompt_id,
                        e.source_layer,
                        e.source_position,
                        e.source_neuron,
                    ),
                    name(
                        e.prompt_id,
                        e.target_layer,
                        e.target_position,
                        e.target_neuron,
                    ),
                ) else {
                    continue;
                };
                // Inside one cluster an edge is the cluster's own business, not a link.
                if s == t && level == Level::Edge {
                    continue;
                }
                *out.entry(format!("{s}->{t}"))
                    .or_default()
                    .entry(e.prompt_id)
                    .or_default() += e.attribution as f64;
            }
        }
    }
    Ok(out)
}

/// Correlates every item of `level` with the metric (no permutations).
pub fn correlate(
    circuit: &Circuit,
    clusters: Option<&ClusterState>,
    metric: &Metric,
    level: Level,
    min_prompts: usize,
) -> Result<Vec<CorrelationRow>> {
    correlate_with(
        circuit,
        clusters,
        metric,
        level,
        &CorrelateOptions {
            min_prompts,
            permutations: 0,
            seed: 0,
        },
    )
}

/// Correlates every item of `level` with the metric, with q-values and optional permutation
/// p-values (see the module docs).
pub fn correlate_with(
    circuit: &Circuit,
    clusters: Option<&ClusterState>,
    metric: &Metric,
    level: Level,
    opts: &CorrelateOptions,
) -> Result<Vec<CorrelationRow>> {
    let covered = circuit
        .prompts
        .iter()
        .filter(|p| metric.values.contains_key(&p.prompt_id))
        .count();
    let needed = opts.min_prompts.max(3);
    if covered < needed {
        return Err(Error::Input(format!(
            "the metric covers {covered} of the circuit's {} prompts; correlation needs at \
             least {needed} (lower --min-prompts, or give a metric for more prompts)",
            circuit.prompts.len()
        )));
    }
    let items = item_values(circuit, clusters, level)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut rows = Vec::new();
    for (item, per_prompt) in items {
        let ids: BTreeSet<u64> = per_prompt
            .keys()
            .copied()
            .filter(|id| metric.values.contains_key(id))
            .collect();
        if ids.len() < 3 {
            continue;
        }
        let x: Vec<f64> = ids.iter().map(|id| per_prompt[id]).collect();
        let y: Vec<f64> = ids.iter().map(|id| metric.values[id]).collect();
        let (Some(r), Some(rho)) = (stats::pearson(&x, &y), stats::spearman(&x, &y)) else {
            continue;
        };
        let permutation_p = (opts.permutations > 0).then(|| {
            let mut shuffled = y.clone();
            let mut hits = 0usize;
            for _ in 0..opts.permutations {
                shuffled.shuffle(&mut rng);
                // A constant shuffle cannot happen (y is not constant: r exists).
                let rp = stats::pearson(&x, &shuffled).unwrap_or(0.0);
                if rp.abs() >= r.abs() - 1e-12 {
                    hits += 1;
                }
            }
            (1 + hits) as f64 / (1 + opts.permutations) as f64
        });
        rows.push(CorrelationRow {
            level,
            item,
            n: x.len(),
            pearson_r: r,
            pearson_p: stats::p_value(r, x.len()),
            spearman_rho: rho,
            spearman_p: stats::p_value(rho, x.len()),
            mean_attribution: x.iter().sum::<f64>() / x.len() as f64,
            pearson_q: 1.0,
            permutation_p,
            low_n: x.len() < needed,
        });
    }
    let q = stats::benjamini_hochberg(&rows.iter().map(|r| r.pearson_p).collect::<Vec<_>>());
    for (row, q) in rows.iter_mut().zip(q) {
        row.pearson_q = q;
    }
    rows.sort_by(|a, b| {
        b.pearson_r
            .abs()
            .total_cmp(&a.pearson_r.abs())
            .then_with(|| a.item.cmp(&b.item))
    });
    Ok(rows)
}

/// The table as CSV.
pub fn to_csv(rows: &[CorrelationRow]) -> String {
    let mut s =
        String::from("level,item,n,pearson_r,pearson_p,spearman_rho,spearman_p,mean_attribution,pearson_q,permutation_p,low_n\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            serde_json::to_value(r.level)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            r.item,
            r.n,
            r.pearson_r,
            r.pearson_p,
            r.spearman_rho,
            r.spearman_p,
            r.mean_attribution,
            r.pearson_q,
            r.permutation_p.map(|p| p.to_string()).unwrap_or_default(),
            r.low_n
        ));
    }
    s
}
