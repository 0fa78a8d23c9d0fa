//! UI state (`qParams`): validation of what the browser posts, and the atomic rewrite of a graph
//! file with the new state.
//!
//! # Wire format
//!
//! The body of `POST /save_graph/{slug}` is the new `qParams` object:
//!
//! ```text
//! {"pinnedIds":  [node_id, ...]          (circuit-tracer also accepts a comma-separated string)
//!  "supernodes": [[name, node_id, ...], ...]
//!  "linkType":   "inputs" | "outputs" | "both"
//!  "clickedId":  node_id or ""
//!  "sg_pos":     string
//!  "annotations": {node_id: text, ...}   (adag's extension; ignored by circuit-tracer)
//!  ...}                                  (other keys are kept as they are)
//! ```
//!
//! Everything else in the file (metadata, nodes, links) is copied byte for byte.

use std::path::Path;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};

/// Checks a posted `qParams` object; the error says which field is wrong.
pub fn validate_qparams(v: &Value) -> Result<()> {
    let bad = |m: String| Err(Error::BadState(m));
    let Some(obj) = v.as_object() else {
        return bad("the body must be a JSON object".into());
    };
    if let Some(p) = obj.get("pinnedIds") {
        let ok = p.is_string() || p.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return bad("pinnedIds must be a list of node ids".into());
        }
    }
    if let Some(s) = obj.get("supernodes") {
        let Some(groups) = s.as_array() else {
            return bad("supernodes must be a list of [name, node_id, ...] lists".into());
        };
        for (i, g) in groups.iter().enumerate() {
            let ok = g
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
            if !ok {
                return bad(format!("supernodes[{i}] must be [name, node_id, ...]"));
            }
        }
    }
    if let Some(l) = obj.get("linkType") {
        if !matches!(l.as_str(), Some("inputs" | "outputs" | "both")) {
            return bad("linkType must be \"inputs\", \"outputs\" or \"both\"".into());
        }
    }
    for key in ["clickedId", "sg_pos"] {
        if obj.get(key).is_some_and(|x| !x.is_string()) {
            return bad(format!("{key} must be a string"));
        }
    }
    if let Some(a) = obj.get("annotations") {
        let ok = a
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string));
        if !ok {
            return bad("annotations must map node ids to strings".into());
        }
    }
    Ok(())
}

/// Replaces the `qParams` of the graph file at `path`, atomically: the new file is written next
/// to the old one, synced, then renamed over it, so a reader sees the old file or the new one,
/// never a half-written one. The other top-level values are copied verbatim.
pub fn write_qparams(path: &Path, qparams: &Value) -> Result<()> {
    validate_qparams(qparams)?;
    let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    let schema = |reason: String| Error::Schema {
        path: path.to_path_buf(),
        reason,
    };
    let parts: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(&bytes).map_err(|e| schema(e.to_string()))?;
    for key in ["metadata", "nodes", "links"] {
        if !parts.contains_key(key) {
            return Err(schema(format!("missing field `{key}`")));
        }
    }
    let new_q = serde_json::to_string(qparams).map_err(|e| Error::BadState(e.to_string()))?;

    let mut out = Vec::with_capacity(bytes.len() + new_q.len());
    out.extend_from_slice(b"{\n");
    let order = ["metadata", "qParams", "nodes", "links"];
    let mut first = true;
    let mut emit = |out: &mut Vec<u8>, key: &str, raw: &str| {
        if !first {
            out.extend_from_slice(b",\n");
        }
        first = false;
        // Keys come from a parsed JSON object, so they serialise.
        out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(raw.as_bytes());
    };
    for key in order {
        if key == "qParams" {
            emit(&mut out, key, &new_q);
        } else if let Some(raw) = parts.get(key) {
            emit(&mut out, key, raw.get());
        }
    }
    for (key, raw) in &parts {
        if !order.contains(&key.as_str()) {
            emit(&mut out, key, raw.get());
        }
    }
    out.extend_from_slice(b"\n}\n");
    write_atomic(path, &out)
}

/// Writes `bytes` to `path` atomically through the workspace's one [`adag_core::write_atomic`]
/// (temporary file in the same folder, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    adag_core::write_atomic(path, bytes).map_err(|e| Error::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_reference_and_adag_state() {
        for q in [
            json!({"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}),
            json!({"pinnedIds": "a,b", "supernodes": [["sum", "a", "b"]], "annotations": {"a": "x"}}),
            json!({"somethingElse": [1, 2]}),
        ] {
            validate_qparams(&q).unwrap();
        }
    }

    #[test]
    fn rejects_malformed_state() {
        for (q, what) in [
            (json!([1]), "object"),
            (json!({"pinnedIds": [1]}), "pinnedIds"),
            (json!({"supernodes": [[]]}), "supernodes[0]"),
            (json!({"supernodes": [["n", 3]]}), "supernodes[0]"),
            (json!({"supernodes": "x"}), "supernodes"),
            (json!({"linkType": "sideways"}), "linkType"),
            (json!({"clickedId": 4}), "clickedId"),
            (json!({"annotations": {"a": 1}}), "annotations"),
        ] {
            let e = validate_qparams(&q).unwrap_err().to_string();
            assert!(e.contains(what), "{q}: {e}");
        }
    }

    #[test]
    fn rewrite_keeps_everything_but_qparams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let original = json!({"metadata": {"slug": "g"}, "qParams": {"pinnedIds": []},
            "nodes": [{"node_id": "a", "x": 1.5}], "links": [], "extra": {"k": true}});
        std::fs::write(&path, serde_json::to_vec_pretty(&original).unwrap()).unwrap();
        let q =
            json!({"pinnedIds": ["a"], "supernodes": [["grp", "a"]], "annotations": {"a": "note"}});
        write_qparams(&path, &q).unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["qParams"], q);
        for key in ["metadata", "nodes", "links", "extra"] {
            assert_eq!(back[key], original[key], "{key}");
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn rewrite_refuses_a_file_that_is_not_a_graph() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        std::fs::write(&path, b"{\"metadata\": {}}").unwrap();
        let e = write_qparams(&path, &json!({})).unwrap_err().to_string();
        assert!(e.contains("nodes"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"metadata\": {}}");
    }
}
