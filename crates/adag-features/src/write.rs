//! Writers: circuit-tracer's feature-detail format, which the viewer reads.
//!
//! # Wire format
//! - `index.json.gz`: gzip JSON `{"{layer}": {"offsets": [u64; units + 1], "filename": "layer_{layer}.bin"}}`.
//! - `layer_{layer}.bin`: for each unit in order, a record of a 4-byte little-endian length `N`
//!   and `N` bytes of zlib-compressed detail JSON; unit `f` is bytes `[offsets[f], offsets[f+1])`.
//! - The detail JSON (one unit): `transcoder_id`, `index`, `examples_quantiles` (a list of
//!   `{quantile_name, examples: [{tokens, tokens_acts_list, train_token_ind, is_repeated_datapoint}]}`,
//!   "Top activations" first, then one "Interval" per histogram bin, strongest first),
//!   `top_logits`, `bottom_logits`, `act_min`, `act_max`, `quantile_values` (lower bin edges of
//!   the intervals), `histogram` (active tokens per log2 bin), `activation_frequency`.
//!
//! Every file is written to a temporary file in the same folder and renamed, so a reader never
//! sees half a file.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::collect::{bin_lower, Collector, Example};
use crate::error::{io, Result};

/// What a detail record needs besides the statistics.
pub struct UnitMeta<'a> {
    /// `{scan}/layer_{l}` or similar.
    pub transcoder_id: &'a str,
    /// Unit index within its layer.
    pub index: usize,
    /// Tokens the unit's output promotes most.
    pub top_logits: Vec<String>,
    /// Tokens it suppresses most.
    pub bottom_logits: Vec<String>,
}

fn example_json(ex: &Example, tok: &dyn Fn(u32) -> String) -> Value {
    json!({
        "tokens": ex.tokens.iter().map(|&t| tok(t)).collect::<Vec<_>>(),
        "tokens_acts_list": ex.acts.iter().map(|&a| round(a)).collect::<Vec<_>>(),
        "train_token_ind": ex.pos - ex.start,
        "is_repeated_datapoint": false,
    })
}

/// Three significant decimals: the viewer shows no more, and the files stay small.
/// (`+ 0.0` turns the `-0.0` of a masked negative pre-activation into `0`.)
fn round(a: f32) -> f64 {
    (a as f64 * 1000.0).round() / 1000.0 + 0.0
}

/// The detail JSON of unit `j` of `c`.
pub fn detail_json(c: &Collector, j: usize, meta: &UnitMeta, tok: &dyn Fn(u32) -> String) -> Value {
    let st = &c.units[j];
    let mut quantiles = vec![json!({
        "quantile_name": "Top activations",
        "examples": st.top().iter().map(|e| example_json(e, tok)).collect::<Vec<_>>(),
    })];
    let mut edges = Vec::new();
    for (b, exs) in st.samples.iter().enumerate().rev() {
        if exs.is_empty() {
            continue;
        }
        edges.push(round(bin_lower(b)));
        quantiles.push(json!({
            "quantile_name": format!("Interval {} ({:.3}–{:.3})", quantiles.len(), bin_lower(b), bin_lower(b + 1)),
            "examples": exs.iter().map(|e| example_json(e, tok)).collect::<Vec<_>>(),
        }));
    }
    json!({
        "transcoder_id": meta.transcoder_id,
        "index": meta.index,
        "examples_quantiles": quantiles,
        "top_logits": meta.top_logits,
        "bottom_logits": meta.bottom_logits,
        "act_min": 0.0,
        "act_max": round(st.max),
        "quantile_values": edges,
        "histogram": st.histogram,
        "activation_frequency": c.density(j),
    })
}

/// Writes `bytes` to `path` through the workspace's one [`adag_core::write_atomic`] (temporary
/// file in the same folder, fsync, rename, fsync of the folder; readable like any new file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    adag_core::write_atomic(path, bytes).map_err(io(path))
}

/// Encodes one layer file from detail records; returns the bytes and the `units + 1` offsets.
pub fn layer_file(details: &[Value]) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut out = Vec::new();
    let mut offsets = vec![0u64];
    for d in details {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let raw = serde_json::to_vec(d).map_err(|e| crate::Error::Shape(e.to_string()))?;
        z.write_all(&raw).map_err(io(Path::new("<zlib>")))?;
        let comp = z.finish().map_err(io(Path::new("<zlib>")))?;
        out.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        out.extend_from_slice(&comp);
        offsets.push(out.len() as u64);
    }
    Ok((out, offsets))
}

/// Writes `layer_{layer}.bin` for every layer and the `index.json.gz` over them into `dir`.
pub fn write_feature_dir(dir: &Path, layers: &[Vec<Value>]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut index = serde_json::Map::new();
    for (l, details) in layers.iter().enumerate() {
        let (bytes, offsets) = layer_file(details)?;
        let name = format!("layer_{l}.bin");
        write_atomic(&dir.join(&name), &bytes)?;
        index.insert(l.to_string(), json!({"offsets": offsets, "filename": name}));
    }
    let raw = serde_json::to_vec(&Value::Object(index))
        .map_err(|e| crate::Error::Shape(e.to_string()))?;
    // A fixed header (no mtime, no name) so that identical runs give identical bytes.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let p = dir.join("index.json.gz");
    gz.write_all(&raw).map_err(io(&p))?;
    write_atomic(&p, &gz.finish().map_err(io(&p))?)
}

/// Reads unit `f` of `layer` back from a feature folder (the viewer's lookup, for tests and
/// for `adag describe`).
pub fn read_detail(dir: &Path, layer: usize, f: usize) -> Result<Option<Value>> {
    use std::io::Read;
    let p = dir.join("index.json.gz");
    let bytes = std::fs::read(&p).map_err(io(&p))?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut s)
        .map_err(io(&p))?;
    let parse = |reason: String| crate::Error::Parse {
        path: p.clone(),
        reason,
    };
    let index: Value = serde_json::from_str(&s).map_err(|e| parse(e.to_string()))?;
    let Some(entry) = index.get(layer.to_string()) else {
        return Ok(None);
    };
    let offs = entry["offsets"]
        .as_array()
        .ok_or_else(|| parse(format!("layer {layer}: no offsets")))?;
    let name = entry["filename"]
        .as_str()
        .ok_or_else(|| parse(format!("layer {layer}: no filename")))?;
    let (Some(a), Some(b)) = (
        offs.get(f).and_then(Value::as_u64),
        offs.get(f + 1).and_then(Value::as_u64),
    ) else {
        return Ok(None);
    };
    let lp = dir.join(name);
    let file = std::fs::read(&lp).map_err(io(&lp))?;
    let rec = file
        .get(a as usize..b as usize)
        .ok_or_else(|| parse(format!("offsets {a}..{b} past the end of {name}")))?;
    let mut json = String::new();
    flate2::read::ZlibDecoder::new(&rec[4..])
        .read_to_string(&mut json)
        .map_err(io(&lp))?;
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CollectConfig, Collector};

    /// What the viewer reads back (index offsets, length prefix, zlib) is what was written.
    #[test]
    fn feature_dir_round_trip() {
        let mut c = Collector::new(
            3,
            CollectConfig {
                k: 2,
                window: 1,
                per_bin: 1,
            },
        );
        c.add_sequence(&[5, 6, 7], &[0.0, 1.0, 0.0, 2.0, 0.0, 0.0, -0.5, 0.25, 0.0])
            .unwrap();
        let tok = |t: u32| format!("t{t}");
        let details: Vec<Value> = (0..3)
            .map(|j| {
                let meta = UnitMeta {
                    transcoder_id: "set/layer_0",
                    index: j,
                    top_logits: vec!["a".into()],
                    bottom_logits: vec!["z".into()],
                };
                detail_json(&c, j, &meta, &tok)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_feature_dir(dir.path(), &[details.clone(), vec![]]).unwrap();
        for (j, d) in details.iter().enumerate() {
            assert_eq!(read_detail(dir.path(), 0, j).unwrap().as_ref(), Some(d));
        }
        assert_eq!(read_detail(dir.path(), 0, 3).unwrap(), None);
        let d = &details[0];
        let top = &d["examples_quantiles"][0]["examples"][0];
        assert_eq!(top["tokens"], json!(["t5", "t6", "t7"]));
        assert_eq!(top["tokens_acts_list"], json!([0.0, 2.0, -0.5]));
        assert_eq!(top["train_token_ind"], json!(1));
        assert_eq!(d["activation_frequency"], json!(1.0 / 3.0));
        // Unit 2 is never active: no examples, zero frequency.
        assert_eq!(details[2]["examples_quantiles"][0]["examples"], json!([]));
        assert_eq!(details[2]["activation_frequency"], json!(0.0));
    }
}
