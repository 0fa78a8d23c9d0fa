//! Graph files in circuit-tracer's frontend schema, and the screen-sized view the server sends.
//!
//! # File format (`{slug}.json`)
//!
//! ```text
//! {"metadata": {"slug", "scan", "prompt_tokens": [str], "prompt", "node_threshold", ...},
//!  "qParams":  {"pinnedIds": [id], "supernodes": [[name, id, ...]], "linkType", "clickedId", "sg_pos"},
//!  "nodes":    [{"node_id", "feature", "layer": str, "ctx_idx", "feature_type", "token_prob",
//!                "is_target_logit", "jsNodeId", "clerp", "influence", "activation", ...}],
//!  "links":    [{"source": node_id, "target": node_id, "weight": signed float}]}
//! ```
//!
//! `feature_type` decides a node's kind: `"embedding"`, `"logit"`, `"mlp reconstruction error"`
//! (either id scheme, `0_{l}_{p}` or `{l}_-1_{p}`), `"mlp neuron"`; anything else is a
//! transcoder feature. `influence` is circuit-tracer's cumulative score: lower is more important,
//! and the pruning threshold keeps nodes with `influence ≤ t` (a missing influence counts as 0,
//! as in the reference frontend).
//!
//! Nodes are kept as raw JSON, so every field (including adag's extras such as `input_profile`)
//! reaches the browser unchanged; only `node_id`, `feature_type` and `influence` are read here.
//! Links are interned to node indices: 16 bytes per link, so a 1M-link graph costs ~16 MB.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

pub use adag_graph::frontend::FeatureType;

struct Node {
    id: String,
    kind: FeatureType,
    influence: Option<f64>,
    raw: Box<RawValue>,
}

#[derive(Clone, Copy)]
struct Link {
    source: u32,
    target: u32,
    weight: f64,
    /// Index into `Graph::link_heads` of the link's `head_loadings` (adag attribute
    /// --head-loadings), or `u32::MAX`.
    heads: u32,
}

/// A parsed graph file.
pub struct Graph {
    metadata: Box<RawValue>,
    qparams: Option<Box<RawValue>>,
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// `head_loadings` of the links that have them, passed through unparsed.
    link_heads: Vec<Box<RawValue>>,
    duplicate_ids: Vec<String>,
    dangling_links: usize,
}

#[derive(Deserialize)]
struct FileRepr<'a> {
    metadata: Box<RawValue>,
    #[serde(rename = "qParams", default)]
    qparams: Option<Box<RawValue>>,
    nodes: Vec<Box<RawValue>>,
    #[serde(borrow)]
    links: Vec<LinkRepr<'a>>,
}

#[derive(Deserialize)]
struct LinkRepr<'a> {
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    target: Cow<'a, str>,
    weight: f64,
    #[serde(default)]
    head_loadings: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct NodeFields {
    node_id: String,
    #[serde(default)]
    feature_type: Option<String>,
    #[serde(default)]
    layer: Option<serde_json::Value>,
    #[serde(default)]
    influence: Option<f64>,
}

/// Limits for [`Graph::view`]: how much of the graph a screen can usefully show.
#[derive(Debug, Clone)]
pub struct ViewRequest {
    /// At most this many nodes (embeddings, logits and `keep` always count and are always sent).
    pub max_nodes: usize,
    /// At most this many links, the strongest by |weight|.
    pub max_links: usize,
    /// Only nodes with `influence ≤ threshold` (the reference's pruning threshold).
    pub threshold: f64,
    /// Node ids sent whatever their influence (pinned and clicked nodes).
    pub keep: Vec<String>,
}

impl Default for ViewRequest {
    fn default() -> Self {
        ViewRequest {
            max_nodes: 5_000,
            max_links: 30_000,
            threshold: 1.0,
            keep: Vec::new(),
        }
    }
}

/// Counts that describe a view, sent as the `view` field next to `nodes` and `links`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ViewSummary {
    /// Nodes in the file.
    pub total_nodes: usize,
    /// Links in the file (excluding links to unknown node ids).
    pub total_links: usize,
    /// Nodes sent.
    pub nodes: usize,
    /// Links sent.
    pub links: usize,
    /// Whether `max_nodes` cut nodes that pass the threshold.
    pub truncated_nodes: bool,
    /// Whether `max_links` cut links between sent nodes.
    pub truncated_links: bool,
    /// The highest influence among sent, prunable nodes when nodes were cut; a client whose
    /// pruning slider goes above it must ask again with that threshold.
    pub influence_cut: Option<f64>,
    /// Node ids that occur more than once (the old error-id scheme can collide, circuit-tracer
    /// issue #78); links attach to the first occurrence.
    pub duplicate_ids: Vec<String>,
    /// Links dropped because an endpoint is not a node of the file.
    pub dangling_links: usize,
}

impl Graph {
    /// Reads and parses `{slug}.json`.
    pub fn load(path: &Path) -> Result<Graph> {
        let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
        Graph::parse(&bytes).map_err(|reason| Error::Schema {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a graph from JSON bytes; the error says what is wrong and where.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Graph, String> {
        let file: FileRepr = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut nodes = Vec::with_capacity(file.nodes.len());
        let mut index: HashMap<String, u32> = HashMap::with_capacity(file.nodes.len());
        let mut duplicate_ids = Vec::new();
        for (i, raw) in file.nodes.into_iter().enumerate() {
            let f: NodeFields =
                serde_json::from_str(raw.get()).map_err(|e| format!("node {i}: {e}"))?;
            let kind = match (&f.feature_type, &f.layer) {
                (Some(t), _) => FeatureType::parse(t),
                (None, Some(serde_json::Value::String(l))) if l == "E" => FeatureType::Embedding,
                _ => FeatureType::Feature,
            };
            let n = u32::try_from(nodes.len()).map_err(|_| "more than 2^32 nodes".to_string())?;
            if index.contains_key(&f.node_id) {
                duplicate_ids.push(f.node_id.clone());
            } else {
                index.insert(f.node_id.clone(), n);
            }
            nodes.push(Node {
                id: f.node_id,
                kind,
                influence: f.influence,
                raw,
            });
        }
        let mut links = Vec::with_capacity(file.links.len());
        let mut dangling_links = 0;
        let mut link_heads = Vec::new();
        for l in file.links {
            match (index.get(l.source.as_ref()), index.get(l.target.as_ref())) {
                (Some(&source), Some(&target)) => links.push(Link {
                    source,
                    target,
                    weight: l.weight,
                    heads: match l.head_loadings {
                        Some(h) => {
                            link_heads.push(h);
                            (link_heads.len() - 1) as u32
                        }
                        None => u32::MAX,
                    },
                }),
                _ => dangling_links += 1,
            }
        }
        Ok(Graph {
            metadata: file.metadata,
            qparams: file.qparams,
            nodes,
            links,
            link_heads,
            duplicate_ids,
            dangling_links,
        })
    }

    /// The raw `metadata` object.
    pub fn metadata(&self) -> &RawValue {
        &self.metadata
    }

    /// Number of nodes in the file.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of links between known nodes.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Selects what to send for a screen: all frame nodes (embeddings, logits) and `keep`
    /// nodes, then the most influential nodes under the threshold up to `max_nodes`, then the
    /// strongest links among them up to `max_links`. Returns the selection as the file's schema
    /// (`metadata`, `qParams`, `nodes`, `links`) plus a `view` summary, serialised.
    pub fn view(&self, req: &ViewRequest) -> (Vec<u8>, ViewSummary) {
        let keep: std::collections::HashSet<&str> = req.keep.iter().map(String::as_str).collect();
        let mut selected = vec![false; self.nodes.len()];
        let mut n_selected = 0usize;
        let mut candidates: Vec<u32> = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.kind.is_frame() || keep.contains(n.id.as_str()) {
                selected[i] = true;
                n_selected += 1;
            } else if n.influence.unwrap_or(0.0) <= req.threshold {
                candidates.push(i as u32);
            }
        }
        let key = |i: &u32| self.nodes[*i as usize].influence.unwrap_or(0.0);
        candidates.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
        let room = req.max_nodes.saturating_sub(n_selected);
        let truncated_nodes = candidates.len() > room;
        let taken = &candidates[..candidates.len().min(room)];
        for &i in taken {
            selected[i as usize] = true;
        }
        n_selected += taken.len();
        let influence_cut = if truncated_nodes {
            Some(taken.last().map(key).unwrap_or(0.0))
        } else {
            None
        };

        let mut link_ids: Vec<u32> = (0..self.links.len() as u32)
            .filter(|&k| {
                let l = &self.links[k as usize];
                selected[l.source as usize] && selected[l.target as usize]
            })
            .collect();
        let truncated_links = link_ids.len() > req.max_links;
        if truncated_links {
            let w = |k: &u32| self.links[*k as usize].weight.abs();
            link_ids.select_nth_unstable_by(req.max_links, |a, b| w(b).total_cmp(&w(a)));
            link_ids.truncate(req.max_links);
            link_ids.sort_unstable();
        }

        let summary = ViewSummary {
            total_nodes: self.nodes.len(),
            total_links: self.links.len(),
            nodes: n_selected,
            links: link_ids.len(),
            truncated_nodes,
            truncated_links,
            influence_cut,
            duplicate_ids: self.duplicate_ids.clone(),
            dangling_links: self.dangling_links,
        };

        let mut out = Vec::with_capacity(256 * n_selected + 64 * link_ids.len());
        out.extend_from_slice(b"{\"metadata\":");
        out.extend_from_slice(self.metadata.get().as_bytes());
        out.extend_from_slice(b",\"qParams\":");
        match &self.qparams {
            Some(q) => out.extend_from_slice(q.get().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"nodes\":[");
        let mut first = true;
        for (i, n) in self.nodes.iter().enumerate() {
            if selected[i] {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(n.raw.get().as_bytes());
            }
        }
        out.extend_from_slice(b"],\"links\":[");
        for (j, &k) in link_ids.iter().enumerate() {
            let l = &self.links[k as usize];
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"source\":");
            write_json(&mut out, &self.nodes[l.source as usize].id);
            out.extend_from_slice(b",\"target\":");
            write_json(&mut out, &self.nodes[l.target as usize].id);
            out.extend_from_slice(b",\"weight\":");
            write_json(&mut out, &l.weight);
            if let Some(h) = self.link_heads.get(l.heads as usize) {
                out.extend_from_slice(b",\"head_loadings\":");
                out.extend_from_slice(h.get().as_bytes());
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"view\":");
        write_json(&mut out, &summary);
        out.push(b'}');
        (out, summary)
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serialising strings, finite floats and a plain struct into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(id: &str, t: &str, influence: Option<f64>) -> Value {
        json!({"node_id": id, "feature": 0, "layer": "0", "ctx_idx": 0, "feature_type": t,
               "influence": influence, "clerp": "", "extra_field": [1, 2]})
    }

    fn graph() -> Graph {
        let g = json!({
            "metadata": {"slug": "t", "prompt_tokens": ["a", "b"]},
            "qParams": {"pinnedIds": []},
            "nodes": [
                node("E_1_0", "embedding", None),
                node("0_5_1", "cross layer transcoder", Some(0.2)),
                node("0_6_1", "cross layer transcoder", Some(0.5)),
                node("0_7_1", "cross layer transcoder", Some(0.9)),
                node("0_0_1", "mlp reconstruction error", Some(0.7)),
                node("1_9_1", "logit", None),
            ],
            "links": [
                {"source": "E_1_0", "target": "0_5_1", "weight": 1.0},
                {"source": "E_1_0", "target": "0_6_1", "weight": -3.0},
                {"source": "0_5_1", "target": "1_9_1", "weight": 2.0},
                {"source": "0_6_1", "target": "1_9_1", "weight": 0.5},
                {"source": "0_7_1", "target": "1_9_1", "weight": -0.25},
                {"source": "0_0_1", "target": "1_9_1", "weight": 0.1},
                {"source": "nope", "target": "1_9_1", "weight": 0.1},
            ]
        });
        Graph::parse(g.to_string().as_bytes()).unwrap()
    }

    fn ids(v: &Value, key: &str) -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                if key == "nodes" {
                    n["node_id"].as_str().unwrap().to_string()
                } else {
                    format!(
                        "{}>{}",
                        n["source"].as_str().unwrap(),
                        n["target"].as_str().unwrap()
                    )
                }
            })
            .collect()
    }

    #[test]
    fn full_view_round_trips_nodes_and_links() {
        let g = graph();
        let (bytes, s) = g.view(&ViewRequest::default());
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(s.total_nodes, 6);
        assert_eq!(s.total_links, 6);
        assert_eq!(s.dangling_links, 1);
        assert_eq!(ids(&v, "nodes").len(), 6);
        assert_eq!(ids(&v, "links").len(), 6);
        // Unknown node fields reach the client unchanged.
        assert_eq!(v["nodes"][1]["extra_field"], json!([1, 2]));
        assert_eq!(v["links"][1]["weight"], json!(-3.0));
        assert_eq!(v["view"]["truncated_nodes"], json!(false));
        assert_eq!(v["metadata"]["slug"], json!("t"));
    }

    #[test]
    fn node_budget_keeps_frame_then_most_influential() {
        let g = graph();
        let req = ViewRequest {
            max_nodes: 3,
            ..ViewRequest::default()
        };
        let (bytes, s) = g.view(&req);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ids(&v, "nodes"), ["E_1_0", "0_5_1", "1_9_1"]);
        assert!(s.truncated_nodes);
        assert_eq!(s.influence_cut, Some(0.2));
        // Only links between sent nodes.
        assert_eq!(ids(&v, "links"), ["E_1_0>0_5_1", "0_5_1>1_9_1"]);
    }

    #[test]
    fn keep_list_and_threshold() {
        let g = graph();
        let req = ViewRequest {
            threshold: 0.6,
            keep: vec!["0_7_1".into()],
            ..ViewRequest::default()
        };
        let (bytes, s) = g.view(&req);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        // 0_0_1 (0.7) is above the threshold; 0_7_1 (0.9) is kept on request.
        assert_eq!(
            ids(&v, "nodes"),
            ["E_1_0", "0_5_1", "0_6_1", "0_7_1", "1_9_1"]
        );
        assert!(!s.truncated_nodes);
    }

    #[test]
    fn link_budget_keeps_strongest() {
        let g = graph();
        let req = ViewRequest {
            max_links: 2,
            ..ViewRequest::default()
        };
        let (bytes, s) = g.view(&req);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(s.truncated_links);
        assert_eq!(ids(&v, "links"), ["E_1_0>0_6_1", "0_5_1>1_9_1"]);
    }

    #[test]
    fn duplicate_ids_are_reported() {
        let g = json!({"metadata": {}, "nodes": [node("0_1_3", "mlp reconstruction error", Some(0.1)),
                        node("0_1_3", "cross layer transcoder", Some(0.1))], "links": []});
        let g = Graph::parse(g.to_string().as_bytes()).unwrap();
        let (_, s) = g.view(&ViewRequest::default());
        assert_eq!(s.duplicate_ids, ["0_1_3"]);
        assert_eq!(s.nodes, 2);
    }

    #[test]
    fn schema_errors_name_the_problem() {
        let e = Graph::parse(br#"{"metadata": {}, "nodes": [{"layer": "0"}], "links": []}"#)
            .err()
            .unwrap();
        assert!(e.contains("node 0") && e.contains("node_id"), "{e}");
        let e = Graph::parse(br#"{"nodes": [], "links": []}"#)
            .err()
            .unwrap();
        assert!(e.contains("metadata"), "{e}");
    }
}
