//! Export for the circuit-tracer / Neuronpedia frontend: `{slug}.json` plus an upsert into
//! `graph-metadata.json`, field for field as circuit-tracer's `create_graph_files` writes them.
//!
//! # Wire format
//! `{slug}.json` = `{"metadata", "qParams", "nodes", "links"}`.
//! - `metadata`: `slug`, `scan`, `transcoder_list`, `prompt_tokens`, `prompt`, `node_threshold`,
//!   `schema_version` (1).
//! - `qParams`: `pinnedIds` [], `supernodes` [], `linkType` "both", `clickedId` "", `sg_pos` "".
//! - every node: `node_id`, `feature`, `layer` (string), `ctx_idx`, `feature_type`, `token_prob`,
//!   `is_target_logit`, `run_idx`, `reverse_ctx_idx`, `jsNodeId`, `clerp`, `influence`,
//!   `activation`:
//!
//! | kind | node_id | feature | layer | feature_type | jsNodeId |
//! |---|---|---|---|---|---|
//! | feature | `{l}_{f}_{p}` | cantor(l, f) | `l` | `cross layer transcoder` (`mlp neuron` for neurons) | `{l}_{f}-0` |
//! | error | `{l}_-1_{p}` | −1 | `l` | `mlp reconstruction error` | `{l}_-1-{p}` |
//! | token | `E_{tok}_{p}` | p | `E` | `embedding` | `E_{tok}-{p}` |
//!
//! Token nodes carry `clerp` `Emb: "{token text}"`, logits `Output "{token}" (p=0.123)`; a
//! neuron graph's error nodes `other neurons L{l} @{p}` (the neurons its selection left out).
//! | logit | `{L+1}_{vocab}_{P-1}` | vocab | `L+1` | `logit` | `L_{vocab}-{P-1}` |
//!
//! Error ids use circuit-tracer's later collision-free scheme: the earlier `0_{l}_{p}` could equal
//! a layer-0 feature's id (circuit-tracer issue #78). `influence` is the cumulative influence
//! share from pruning (null for logits); `links` are `{source, target, weight}` with the raw
//! signed adjacency entry, for every kept edge between kept nodes.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::file::write_atomic;
use crate::graph::{Graph, NodeKind};
use crate::prune::PruneResult;

/// A node's `feature_type` in the frontend schema: the one vocabulary that the exporter writes
/// and the viewer's server (adag-serve) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureType {
    /// An input token (`"embedding"`, layer `"E"`).
    Embedding,
    /// A target logit (`"logit"`).
    Logit,
    /// A reconstruction error node (`"mlp reconstruction error"`).
    Error,
    /// An MLP neuron of a neuron-basis graph (`"mlp neuron"`).
    Neuron,
    /// A transcoder feature (`"cross layer transcoder"`, as circuit-tracer writes for every
    /// transcoder; any unknown `feature_type` reads as a feature).
    Feature,
}

impl FeatureType {
    /// The string written to `feature_type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FeatureType::Embedding => "embedding",
            FeatureType::Logit => "logit",
            FeatureType::Error => "mlp reconstruction error",
            FeatureType::Neuron => "mlp neuron",
            FeatureType::Feature => "cross layer transcoder",
        }
    }

    /// The kind a `feature_type` string names.
    pub fn parse(t: &str) -> FeatureType {
        [
            FeatureType::Embedding,
            FeatureType::Logit,
            FeatureType::Error,
            FeatureType::Neuron,
        ]
        .into_iter()
        .find(|k| k.as_str() == t)
        .unwrap_or(FeatureType::Feature)
    }

    /// Embeddings and logits frame the graph and are never pruned.
    pub fn is_frame(self) -> bool {
        matches!(self, FeatureType::Embedding | FeatureType::Logit)
    }
}

/// Cantor pairing of (layer, feature): the frontend's global feature index.
pub fn cantor(layer: u64, feature: u64) -> u64 {
    (layer + feature) * (layer + feature + 1) / 2 + feature
}

/// The frontend's `node_id` of node `i`.
pub fn node_id(graph: &Graph, i: usize) -> String {
    let last = graph.n_pos() - 1;
    match graph.node_kind(i) {
        NodeKind::Feature {
            layer,
            pos,
            feature,
            ..
        } => format!("{layer}_{feature}_{pos}"),
        NodeKind::Error { layer, pos } => format!("{layer}_-1_{pos}"),
        NodeKind::Token { pos, token } => format!("E_{token}_{pos}"),
        NodeKind::Logit { index } => {
            format!(
                "{}_{}_{last}",
                graph.meta.n_layers + 1,
                graph.logit_targets[index as usize].vocab_idx
            )
        }
    }
}

fn node_json(graph: &Graph, prune: &PruneResult, i: usize) -> Value {
    let last = graph.n_pos() - 1;
    let infl = prune.cumulative_scores[i];
    let feature_type = if graph.meta.basis == "neuron" {
        FeatureType::Neuron
    } else {
        FeatureType::Feature
    };
    let (feature, layer, ctx, ftype, js, token_prob, is_target, clerp, influence, activation) =
        match graph.node_kind(i) {
            NodeKind::Feature {
                layer,
                pos,
                feature,
                active_index,
            } => (
                json!(cantor(layer as u64, feature as u64)),
                layer.to_string(),
                pos as usize,
                feature_type,
                format!("{layer}_{feature}-0"),
                0.0,
                false,
                String::new(),
                json!(infl),
                json!(graph.activation_values[active_index as usize]),
            ),
            NodeKind::Error { layer, pos } => (
                json!(-1),
                layer.to_string(),
                pos as usize,
                FeatureType::Error,
                format!("{layer}_-1-{pos}"),
                0.0,
                false,
                // In a neuron graph the error node is the neurons left out of it (adag trace's
                // total-effect selection), not a reconstruction error.
                if graph.meta.basis == "neuron" {
                    format!("other neurons L{layer} @{pos}")
                } else {
                    String::new()
                },
                json!(infl),
                Value::Null,
            ),
            NodeKind::Token { pos, token } => (
                json!(pos),
                "E".to_string(),
                pos as usize,
                FeatureType::Embedding,
                format!("E_{token}-{pos}"),
                0.0,
                false,
                // The token text, so that every frontend names the node without the prompt.
                match graph.meta.token_strings.get(pos as usize) {
                    Some(t) => format!("Emb: \"{t}\""),
                    None => String::new(),
                },
                json!(infl),
                Value::Null,
            ),
            NodeKind::Logit { index } => {
                let t = &graph.logit_targets[index as usize];
                let p = graph.logit_probabilities[index as usize];
                (
                    json!(t.vocab_idx),
                    (graph.meta.n_layers + 1).to_string(),
                    last,
                    FeatureType::Logit,
                    format!("L_{}-{last}", t.vocab_idx),
                    p,
                    index == 0,
                    format!("Output \"{}\" (p={p:.3})", t.token),
                    Value::Null,
                    Value::Null,
                )
            }
        };
    json!({
        "node_id": node_id(graph, i),
        "feature": feature,
        "layer": layer,
        "ctx_idx": ctx,
        "feature_type": ftype.as_str(),
        "token_prob": token_prob,
        "is_target_logit": is_target,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js,
        "clerp": clerp,
        "influence": influence,
        "activation": activation,
    })
}

/// The accounting of node `i` (a feature's pre-activation or a target's de-meaned logit split
/// into its parts), for the viewer's node panel; None for errors, tokens and graphs without
/// accounting.
fn node_account(graph: &Graph, i: usize) -> Option<Value> {
    let acc = graph.meta.accounting.as_ref()?;
    let v = match graph.node_kind(i) {
        NodeKind::Feature { .. } => serde_json::to_value(acc.features.get(i)?),
        NodeKind::Logit { index, .. } => serde_json::to_value(acc.targets.get(index as usize)?),
        _ => return None,
    };
    v.ok()
}

/// Extra fields merged into the frontend JSON: per node (by `node_id`) and into `metadata`.
/// adag's viewer reads `input_profile` / `output_profile` on neuron nodes and
/// `metadata.target_logit_tokens`; other frontends ignore unknown fields.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// `node_id` → fields added to that node.
    pub nodes: std::collections::BTreeMap<String, serde_json::Map<String, Value>>,
    /// Fields added to `metadata`.
    pub metadata: serde_json::Map<String, Value>,
    /// `(source node_id, target node_id)` → fields added to that link (head loadings).
    pub links: std::collections::BTreeMap<(String, String), serde_json::Map<String, Value>>,
}

impl Extras {
    /// Adds each kept edge's head loadings to its link (see [`crate::heads`]).
    pub fn add_head_loadings(&mut self, graph: &Graph, heads: &crate::HeadLoadings) {
        for (e, &[t, s]) in heads.edges.iter().enumerate() {
            let mut m = serde_json::Map::new();
            m.insert("head_loadings".into(), heads.link_json(e));
            self.links
                .insert((node_id(graph, s as usize), node_id(graph, t as usize)), m);
        }
    }
}

/// The `{slug}.json` document for a pruned graph.
pub fn graph_json(
    graph: &Graph,
    prune: &PruneResult,
    slug: &str,
    node_threshold: f32,
) -> Result<Value> {
    graph_json_with(graph, prune, slug, node_threshold, &Extras::default())
}

/// [`graph_json`] with extra fields merged in.
pub fn graph_json_with(
    graph: &Graph,
    prune: &PruneResult,
    slug: &str,
    node_threshold: f32,
    extras: &Extras,
) -> Result<Value> {
    graph.validate()?;
    let n = graph.n_nodes();
    if prune.node_mask.len() != n || prune.edge_mask.len() != n * n {
        return Err(Error::Inconsistent(
            "prune result does not match the graph's size".into(),
        ));
    }
    let mut links = Vec::new();
    let mut in_link = vec![false; n];
    for (t, s) in prune.edge_mask.edges() {
        if prune.node_mask[t] && prune.node_mask[s] {
            let mut link = json!({
                "source": node_id(graph, s),
                "target": node_id(graph, t),
                "weight": graph.edge(t, s),
            });
            if !extras.links.is_empty() {
                let key = (node_id(graph, s), node_id(graph, t));
                if let (Some(obj), Some(extra)) = (link.as_object_mut(), extras.links.get(&key)) {
                    obj.extend(extra.clone());
                }
            }
            links.push(link);
            in_link[t] = true;
            in_link[s] = true;
        }
    }
    let nodes: Vec<Value> = (0..n)
        .filter(|&i| {
            in_link[i]
                || matches!(
                    graph.node_kind(i),
                    NodeKind::Token { .. } | NodeKind::Logit { .. }
                )
        })
        .map(|i| {
            let mut node = node_json(graph, prune, i);
            if let (Some(obj), Some(account)) = (node.as_object_mut(), node_account(graph, i)) {
                obj.insert("accounting".into(), account);
            }
            if let (Some(obj), Some(extra)) =
                (node.as_object_mut(), extras.nodes.get(&node_id(graph, i)))
            {
                obj.extend(extra.clone());
            }
            node
        })
        .collect();
    let mut metadata = metadata_json(graph, slug, node_threshold);
    if let Some(obj) = metadata.as_object_mut() {
        // The viewer's node panel reads this to say where each logit's and feature's value
        // comes from (issue 14); other frontends ignore the unknown field.
        if let Some(acc) = &graph.meta.accounting {
            let acc = serde_json::to_value(acc).map_err(|e| {
                Error::Inconsistent(format!("graph accounting does not serialise: {e}"))
            })?;
            obj.insert("accounting".into(), acc);
        }
        obj.extend(extras.metadata.clone());
    }
    Ok(json!({
        "metadata": metadata,
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }))
}

fn metadata_json(graph: &Graph, slug: &str, node_threshold: f32) -> Value {
    let scan = graph.meta.scan.clone().unwrap_or_default();
    json!({
        "slug": slug,
        "scan": scan,
        "transcoder_list": [],
        "prompt_tokens": graph.meta.token_strings,
        "prompt": graph.meta.prompt,
        // As typed (0.8), not the f32 widened (0.800000011920929).
        "node_threshold": adag_core::decimal::f32_as_typed(node_threshold),
        "schema_version": 1,
        // Where the graph came from, so that `adag serve` finds the dashboards of its
        // transcoders or neurons without a flag (adag_serve::dashboards); other frontends
        // ignore unknown fields.
        "model": graph.meta.model,
        "basis": graph.meta.basis,
    })
}

/// Writes `{dir}/{slug}.json` and upserts its metadata into `{dir}/graph-metadata.json`.
pub fn write_graph_files(
    graph: &Graph,
    prune: &PruneResult,
    slug: &str,
    dir: &Path,
    node_threshold: f32,
) -> Result<()> {
    write_graph_files_with(graph, prune, slug, dir, node_threshold, &Extras::default())
}

/// [`write_graph_files`] with extra fields merged in.
pub fn write_graph_files_with(
    graph: &Graph,
    prune: &PruneResult,
    slug: &str,
    dir: &Path,
    node_threshold: f32,
    extras: &Extras,
) -> Result<()> {
    if slug.is_empty() || slug.contains(['/', '\\']) || slug.starts_with('.') {
        return Err(Error::Inconsistent(format!(
            "slug `{slug}` must be a plain file name"
        )));
    }
    let doc = graph_json_with(graph, prune, slug, node_threshold, extras)?;
    let text =
        serde_json::to_string_pretty(&doc).map_err(|e| Error::Inconsistent(e.to_string()))?;
    write_atomic(&dir.join(format!("{slug}.json")), text.as_bytes())?;

    let meta_path = dir.join("graph-metadata.json");
    let mut index: Value = match std::fs::read_to_string(&meta_path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| Error::BadFile {
            path: meta_path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?,
        Err(_) => json!({"graphs": []}),
    };
    let graphs = index
        .get_mut("graphs")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::BadFile {
            path: meta_path.clone(),
            reason: "expected {\"graphs\": [...]}".into(),
        })?;
    graphs.retain(|g| g.get("slug").and_then(Value::as_str) != Some(slug));
    graphs.push(doc["metadata"].clone());
    let text =
        serde_json::to_string_pretty(&index).map_err(|e| Error::Inconsistent(e.to_string()))?;
    write_atomic(&meta_path, text.as_bytes())
}
