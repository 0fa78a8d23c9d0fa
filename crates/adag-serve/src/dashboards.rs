//! Finding a graph's feature dashboards (the files `adag features` writes) without a flag.
//!
//! A graph folder may hold graphs of several transcoder sets and of MLP neurons, so one
//! `--features-dir` cannot serve them all. Each graph's metadata says where it came from, and
//! `adag features` writes to conventional places, so the dashboards of a graph are the first of:
//!
//! 1. `metadata.feature_dashboards`: a folder recorded explicitly by whoever wrote the graph;
//! 2. `metadata.transcoders` + `/features`: the transcoder folder, when recorded;
//! 3. a neuron graph (`metadata.basis == "neuron"`): `{metadata.model}/features/neurons`;
//! 4. `metadata.scan` + `/features`, when the scan is a folder (a transcoder set whose
//!    config.yaml names no `scan` is identified by its path);
//! 5. a transcoder set inside the model folder (`{model}/*/config.yaml`) whose `scan:` is the
//!    graph's: `{that folder}/features` (the demo bundle's layout).
//!
//! A candidate counts only if it holds `index.json.gz`. The server asks this per graph at
//! `GET /graph-features/{slug}/{file}`; the configured `--features-dir` stays the fallback.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The dashboards folder of the graph whose frontend `metadata` is given, if one is found.
pub fn dashboards_for(metadata: &Value) -> Option<PathBuf> {
    candidates(metadata)
        .into_iter()
        .find(|d| d.join("index.json.gz").is_file())
}

fn candidates(m: &Value) -> Vec<PathBuf> {
    let s = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut out = Vec::new();
    out.extend(s("feature_dashboards"));
    out.extend(s("transcoders").map(|t| t.join("features")));
    let model = s("model");
    let neuron = m.get("basis").and_then(Value::as_str) == Some("neuron");
    if let (true, Some(model)) = (neuron, &model) {
        out.push(model.join("features").join("neurons"));
    }
    if let Some(scan) = s("scan") {
        if scan.is_dir() {
            out.push(scan.join("features"));
        }
        if let Some(model) = &model {
            out.extend(sets_named(model, &scan.to_string_lossy()));
        }
    }
    out
}

/// `{sub}/features` for every subfolder of `model` whose `config.yaml` has `scan: {scan}`.
fn sets_named(model: &Path, scan: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(model) else {
        return Vec::new();
    };
    let mut subs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| config_scan(&p.join("config.yaml")).as_deref() == Some(scan))
        .collect();
    subs.sort();
    subs.into_iter().map(|p| p.join("features")).collect()
}

/// The `scan:` value of a transcoder config.yaml (a top-level `key: value` line; quotes
/// allowed). Only this one key is needed, so no YAML parser.
fn config_scan(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix("scan:")?.trim();
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// Whether `name` is a file of a dashboards folder: `index.json.gz`, `layer_{i}.bin` or
/// `{n}.json`. Nothing else is served from a folder that a graph file names.
pub fn is_dashboard_file(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name == "index.json.gz"
        || name
            .strip_prefix("layer_")
            .and_then(|r| r.strip_suffix(".bin"))
            .is_some_and(digits)
        || name.strip_suffix(".json").is_some_and(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dashboards(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("index.json.gz"), b"").unwrap();
        dir.to_path_buf()
    }

    #[test]
    fn each_convention_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("model");
        let set = model.join("plt");
        std::fs::create_dir_all(&set).unwrap();
        std::fs::write(set.join("config.yaml"), "model_kind: x\nscan: 'demo/plt'\n").unwrap();
        let m = |v: Value| dashboards_for(&v);
        let meta = json!({"scan": "demo/plt", "model": model});
        assert_eq!(m(meta.clone()), None, "no files yet");
        let by_scan = dashboards(&set.join("features"));
        assert_eq!(m(meta.clone()), Some(by_scan.clone()));
        // Another scan does not match the set.
        assert_eq!(m(json!({"scan": "demo/clt", "model": model})), None);
        // A scan that is a folder.
        let dir_set = tmp.path().join("loose");
        let loose = dashboards(&dir_set.join("features"));
        assert_eq!(m(json!({"scan": dir_set, "model": model})), Some(loose));
        // Neurons live under the model.
        let neurons = dashboards(&model.join("features/neurons"));
        assert_eq!(
            m(json!({"basis": "neuron", "model": model, "scan": ""})),
            Some(neurons)
        );
        // An explicit record wins over the conventions.
        let explicit = dashboards(&tmp.path().join("elsewhere"));
        let mut rec = meta;
        rec["feature_dashboards"] = json!(explicit);
        assert_eq!(m(rec), Some(explicit));
    }

    #[test]
    fn only_dashboard_files() {
        for ok in ["index.json.gz", "layer_0.bin", "layer_12.bin", "1234.json"] {
            assert!(is_dashboard_file(ok), "{ok}");
        }
        for bad in [
            "config.yaml",
            "layer_.bin",
            "layer_x.bin",
            ".json",
            "a.json",
            "x",
        ] {
            assert!(!is_dashboard_file(bad), "{bad}");
        }
    }
}
