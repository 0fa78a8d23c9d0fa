//! The dashboards as one Parquet table, for pandas (`pd.read_parquet(".../features.parquet")`).
//!
//! One row per unit, built from the same detail records as the viewer's files, so the two
//! cannot disagree:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `layer`, `index` | int32 | the unit |
//! | `density` | float64 | `activation_frequency` |
//! | `act_max` | float32 | largest activation seen |
//! | `top_logits`, `bottom_logits` | list<utf8> | output tokens |
//! | `top_tokens` | list<list<utf8>> | the top examples' windows, best first |
//! | `top_acts` | list<list<float32>> | the unit's activation at each window token |
//! | `top_peak` | list<int32> | the peak's position in each window |

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Float64Builder, Int32Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use serde_json::Value;

use crate::error::{Error, Result};

/// File name of the table inside a dashboards folder.
pub const TABLE_FILE: &str = "features.parquet";

fn shape(layer: usize, j: usize, what: &str) -> Error {
    Error::Shape(format!("detail record of layer {layer} unit {j}: {what}"))
}

/// The table of every detail record (`layers[l][j]` as [`crate::write::detail_json`] makes it).
pub fn table(layers: &[Vec<Value>]) -> Result<RecordBatch> {
    let (mut layer_b, mut index_b) = (Int32Builder::new(), Int32Builder::new());
    let (mut dens_b, mut max_b) = (Float64Builder::new(), Float32Builder::new());
    let mut top_l = ListBuilder::new(StringBuilder::new());
    let mut bot_l = ListBuilder::new(StringBuilder::new());
    let mut toks = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    let mut acts = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
    let mut peak = ListBuilder::new(Int32Builder::new());
    for (l, details) in layers.iter().enumerate() {
        for (j, d) in details.iter().enumerate() {
            let bad = |what: &str| shape(l, j, what);
            layer_b.append_value(l as i32);
            index_b.append_value(j as i32);
            dens_b.append_value(
                d["activation_frequency"]
                    .as_f64()
                    .ok_or_else(|| bad("no activation_frequency"))?,
            );
            max_b.append_value(d["act_max"].as_f64().ok_or_else(|| bad("no act_max"))? as f32);
            for (b, key) in [(&mut top_l, "top_logits"), (&mut bot_l, "bottom_logits")] {
                for t in d[key].as_array().ok_or_else(|| bad(key))? {
                    b.values().append_value(t.as_str().ok_or_else(|| bad(key))?);
                }
                b.append(true);
            }
            let exs = d["examples_quantiles"][0]["examples"]
                .as_array()
                .ok_or_else(|| bad("no top examples"))?;
            for ex in exs {
                for t in ex["tokens"]
                    .as_array()
                    .ok_or_else(|| bad("example tokens"))?
                {
                    let t = t.as_str().ok_or_else(|| bad("example tokens"))?;
                    toks.values().values().append_value(t);
                }
                toks.values().append(true);
                for a in ex["tokens_acts_list"]
                    .as_array()
                    .ok_or_else(|| bad("example activations"))?
                {
                    let a = a.as_f64().ok_or_else(|| bad("example activations"))?;
                    acts.values().values().append_value(a as f32);
                }
                acts.values().append(true);
                let p = ex["train_token_ind"]
                    .as_i64()
                    .ok_or_else(|| bad("example peak"))?;
                peak.values().append_value(p as i32);
            }
            toks.append(true);
            acts.append(true);
            peak.append(true);
        }
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("layer", Arc::new(layer_b.finish())),
        ("index", Arc::new(index_b.finish())),
        ("density", Arc::new(dens_b.finish())),
        ("act_max", Arc::new(max_b.finish())),
        ("top_logits", Arc::new(top_l.finish())),
        ("bottom_logits", Arc::new(bot_l.finish())),
        ("top_tokens", Arc::new(toks.finish())),
        ("top_acts", Arc::new(acts.finish())),
        ("top_peak", Arc::new(peak.finish())),
    ];
    RecordBatch::try_from_iter(cols).map_err(|e| Error::Shape(e.to_string()))
}

/// Writes [`table`] to `dir/features.parquet` (Snappy, atomically).
pub fn write_table(dir: &Path, layers: &[Vec<Value>]) -> Result<()> {
    let path = dir.join(TABLE_FILE);
    let batch = table(layers)?;
    let pe = |e: parquet::errors::ParquetError| Error::Parse {
        path: path.clone(),
        reason: e.to_string(),
    };
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_created_by(format!("adag {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(pe)?;
    w.write(&batch).map_err(pe)?;
    w.close().map_err(pe)?;
    crate::write::write_atomic(&path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{detail_json, UnitMeta};
    use crate::{CollectConfig, Collector};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int32Type};

    /// Reading the table back with a plain Parquet reader gives every unit's density, logits
    /// and top examples exactly as the dashboard's detail JSON has them.
    #[test]
    fn parquet_round_trip_equals_the_detail_json() {
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
        c.add_sequence(&[8, 9, 10], &[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0])
            .unwrap();
        let tok = |t: u32| format!("t{t}");
        let layer = |l: usize| -> Vec<Value> {
            (0..3)
                .map(|j| {
                    let meta = UnitMeta {
                        transcoder_id: "set",
                        index: j,
                        top_logits: vec![format!("a{l}{j}"), "b".into()],
                        bottom_logits: vec!["z".into()],
                    };
                    detail_json(&c, j, &meta, &tok)
                })
                .collect()
        };
        let layers = vec![layer(0), layer(1)];
        let dir = tempfile::tempdir().unwrap();
        write_table(dir.path(), &layers).unwrap();
        let f = std::fs::File::open(dir.path().join(TABLE_FILE)).unwrap();
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 6);
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let strs = |a: ArrayRef| -> Vec<String> {
            a.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect()
        };
        for r in 0..6 {
            let (l, j) = (r / 3, r % 3);
            let d = &layers[l][j];
            assert_eq!(col("layer").as_primitive::<Int32Type>().value(r), l as i32);
            assert_eq!(col("index").as_primitive::<Int32Type>().value(r), j as i32);
            assert_eq!(
                col("density").as_primitive::<Float64Type>().value(r),
                d["activation_frequency"].as_f64().unwrap()
            );
            assert_eq!(
                col("act_max").as_primitive::<Float32Type>().value(r),
                d["act_max"].as_f64().unwrap() as f32
            );
            assert_eq!(
                serde_json::json!(strs(col("top_logits").as_list::<i32>().value(r))),
                d["top_logits"]
            );
            let exs = d["examples_quantiles"][0]["examples"].as_array().unwrap();
            let toks = col("top_tokens").as_list::<i32>().value(r);
            let acts = col("top_acts").as_list::<i32>().value(r);
            let peak = col("top_peak").as_list::<i32>().value(r);
            assert_eq!(toks.len(), exs.len());
            for (e, ex) in exs.iter().enumerate() {
                let t = strs(toks.as_list::<i32>().value(e));
                assert_eq!(serde_json::json!(t), ex["tokens"]);
                let a: Vec<f64> = acts
                    .as_list::<i32>()
                    .value(e)
                    .as_primitive::<Float32Type>()
                    .values()
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let want: Vec<f64> = ex["tokens_acts_list"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32 as f64)
                    .collect();
                assert_eq!(a, want);
                assert_eq!(
                    peak.as_primitive::<Int32Type>().value(e) as i64,
                    ex["train_token_ind"].as_i64().unwrap()
                );
            }
        }
        // The never-active unit has a row with no examples and zero density.
        assert_eq!(col("density").as_primitive::<Float64Type>().value(2), 0.0);
        assert_eq!(col("top_tokens").as_list::<i32>().value(2).len(), 0);
    }
}
