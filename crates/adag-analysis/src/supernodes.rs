//! Clusters as named supernodes on each prompt's graph in the viewer.
//!
//! `adag trace --graph-dir DIR --slug S` writes one frontend JSON per prompt
//! (`S-{prompt_id}.json`, neurons as `{layer}_{neuron}_{position}` nodes). Here every traced
//! neuron node of such a file is mapped to its unit (layer, neuron, sign of its activation) and
//! then to its cluster, and the file's `qParams.supernodes` becomes one `[name, node_id, …]`
//! group per cluster present on that prompt (the reference frontend's supernode format, which
//! adag serve draws as labelled boxes). The name is `"C3: label"` as the reference writes it
//! (the bare id until the cluster is labelled or renamed), so clusters sharing a label stay
//! apart; the cluster's description (from `adag describe`) goes into
//! `metadata.supernode_descriptions`, keyed by cluster id.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::cluster::ClusterState;
use crate::error::{Error, Result};
use crate::profiles::Unit;

/// Writes each cluster present on a prompt as a supernode into `dir/{slug}-{id}.json`, for
/// every such file. Returns how many files were updated. Supernodes from an earlier run are
/// replaced; pinned nodes and annotations are kept.
pub fn write_cluster_supernodes(state: &ClusterState, dir: &Path, slug: &str) -> Result<usize> {
    let prefix = format!("{slug}-");
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Parse {
        path: dir.to_path_buf(),
        message: format!("cannot list graphs: {e}"),
    })?;
    let mut updated = 0;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| {
            n.starts_with(&prefix)
                && n.ends_with(".json")
                && n[prefix.len()..n.len() - 5].parse::<u64>().is_ok()
        })
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut doc: Value = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.clone(),
            message: format!("not JSON: {e}"),
        })?;
        let groups = supernodes_of(state, &doc);
        set_descriptions(state, &groups, &mut doc);
        let q = doc
            .get_mut("qParams")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| Error::Parse {
                path: path.clone(),
                message: "no qParams object: not a frontend graph".into(),
            })?;
        q.insert("supernodes".into(), Value::Array(groups));
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        adag_graph::file::write_atomic(&path, &bytes).map_err(|e| Error::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        updated += 1;
    }
    Ok(updated)
}

/// A cluster's name on the viewer: `"{id}: {label}"` (or `"{id}: {name}"` once renamed), the
/// bare id otherwise. The id prefix keeps names unique: labels are short and often repeat
/// (six clusters labelled `is` would otherwise read as one).
pub fn supernode_name(c: &crate::cluster::ClusterInfo) -> String {
    match (&c.label, &c.name) {
        (Some(label), _) => format!("{}: {label}", c.id),
        (None, name) if *name != c.id => format!("{}: {name}", c.id),
        _ => c.id.clone(),
    }
}

/// `metadata.supernode_descriptions`: cluster id → its description, for the clusters of this
/// graph that have one (the viewer shows it under the supernode whose name starts with the
/// id; the reference frontend ignores the key). Removed when no supernode has a description.
fn set_descriptions(state: &ClusterState, groups: &[Value], doc: &mut Value) {
    let by_name: BTreeMap<String, (&str, &str)> = state
        .clusters
        .iter()
        .filter_map(|c| {
            c.description
                .as_deref()
                .map(|d| (supernode_name(c), (c.id.as_str(), d)))
        })
        .collect();
    let descriptions: serde_json::Map<String, Value> = groups
        .iter()
        .filter_map(|g| g.get(0).and_then(Value::as_str))
        .filter_map(|name| {
            by_name
                .get(name)
                .map(|(id, d)| (id.to_string(), Value::String(d.to_string())))
        })
        .collect();
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        if descriptions.is_empty() {
            meta.remove("supernode_descriptions");
        } else {
            meta.insert("supernode_descriptions".into(), Value::Object(descriptions));
        }
    }
}

/// `[[name, node_id, …], …]` for the clusters of the neuron nodes in one graph document, in
/// cluster order.
pub fn supernodes_of(state: &ClusterState, doc: &Value) -> Vec<Value> {
    let mut members: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let order: BTreeMap<&str, usize> = state
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    for node in doc
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if node.get("feature_type").and_then(Value::as_str) != Some("mlp neuron") {
            continue;
        }
        let Some(id) = node.get("node_id").and_then(Value::as_str) else {
            continue;
        };
        let parts: Vec<&str> = id.split('_').collect();
        let (Some(layer), Some(neuron)) = (
            parts.first().and_then(|l| l.parse::<i32>().ok()),
            parts.get(1).and_then(|n| n.parse::<u32>().ok()),
        ) else {
            continue;
        };
        let act = node
            .get("activation")
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as f32;
        if let Some(c) = state
            .cluster_of(&Unit::of_node(layer, neuron, act))
            .and_then(|c| order.get(c))
        {
            members.entry(*c).or_default().push(id.to_string());
        }
    }
    members
        .into_iter()
        .map(|(i, ids)| {
            let c = &state.clusters[i];
            let mut group = vec![Value::String(supernode_name(c))];
            group.extend(ids.into_iter().map(Value::String));
            Value::Array(group)
        })
        .collect()
}
