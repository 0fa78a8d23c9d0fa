//! Circuit tables and their Parquet files.
//!
//! # Files
//!
//! A circuit is a directory (see [`crate::store`]) with three Parquet files (Snappy-compressed,
//! one row per node, edge or prompt; pandas, polars and duckdb read them directly) and a
//! `manifest.json`. Positions are token positions of the *unpadded* prompt (0 = first token),
//! whatever batch the prompt was traced in. Layers: `-1` embedding, `0..L` MLP neurons, `L`
//! logits (L = number of layers).
//!
//! `nodes.parquet`: one row per (prompt, node).
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `prompt_id` | int64 | index of the prompt in the dataset |
//! | `label` | string, nullable | the prompt's label |
//! | `layer` | int32 | −1 embedding, 0..L neuron, L logit |
//! | `position` | uint32 | token position (the traced position for logits) |
//! | `neuron` | uint32 | neuron index; the token id for embeddings and logits (the reference's `neuron` column; not `index`, which pandas reserves) |
//! | `activation` | float32 | neuron activation; 1 for embeddings; the logit for logits |
//! | `attribution` | float32 | total effect on the goal ÷ goal |
//! | `polarity` | int8 | sign of `activation` (1, −1, 0): the reference's clustering unit is (layer, position, neuron, polarity) |
//! | `input_profile` | list<float32> | neurons: share of the activation from each input position (one entry per position of the prompt); empty otherwise |
//! | `output_profile` | list<float32> | neurons: share of each target logit contributed (one entry per target); empty otherwise |
//!
//! `edges.parquet`: one row per (prompt, direct-effect edge).
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `prompt_id`, `label` | | as above |
//! | `source_layer`, `source_position`, `source_neuron` | int32, uint32, uint32 | the source node |
//! | `target_layer`, `target_position`, `target_neuron` | int32, uint32, uint32 | the target node |
//! | `weight` | float32 | fraction of the target's value that arrives directly from the source |
//! | `attribution` | float32 | flow to the output: weight × the target's contribution ÷ goal |
//!
//! `prompts.parquet`: one row per prompt.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `prompt_id`, `label` | | as above |
//! | `prompt` | string | the user message as given |
//! | `seed` | string, nullable | the seed response used |
//! | `token_ids` | list<uint32> | tokens the model saw (chat template applied) |
//! | `token_strings` | list<string> | each token decoded on its own |
//! | `answers` | list<string> | the given answers (empty: top-k targets) |
//! | `target_ids` | list<uint32> | target tokens |
//! | `target_strings` | list<string> | target tokens decoded |
//! | `target_probs` | list<float32> | their next-token probabilities |
//! | `target_logits` | list<float32> | their logits (centred when `center_logits`) |
//! | `goal` | float32 | Σ target logits: what attributions are fractions of |
//! | `traced_position` | uint32 | the position whose next-token logits are explained (the last) |
//! | `predicted` | bool | false when given `answers` are not what the model predicts (goal ≤ 0): its attributions are fractions of a non-positive goal and its circuit is inflated; absent in older circuits (derived from `goal` on read) |
//!
//! ```python
//! import pandas as pd
//! nodes = pd.read_parquet("out/nodes.parquet")
//! top = nodes[nodes.layer >= 0].sort_values("attribution", key=abs, ascending=False)
//! ```

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float32Builder, Int32Builder, Int64Builder, Int8Builder,
    ListBuilder, StringBuilder, UInt32Builder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Int32Array, Int64Array, Int8Array, ListArray,
    RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use adag_engine::circuit::PromptCircuit;

use crate::error::{Error, Result};
use crate::prepare::PreparedPrompt;

/// A row of `nodes.parquet` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NodeRow {
    pub prompt_id: u64,
    pub label: Option<String>,
    pub layer: i32,
    pub position: u32,
    pub neuron: u32,
    pub activation: f32,
    pub attribution: f32,
    pub polarity: i8,
    pub input_profile: Vec<f32>,
    pub output_profile: Vec<f32>,
}

/// A row of `edges.parquet` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct EdgeRow {
    pub prompt_id: u64,
    pub label: Option<String>,
    pub source_layer: i32,
    pub source_position: u32,
    pub source_neuron: u32,
    pub target_layer: i32,
    pub target_position: u32,
    pub target_neuron: u32,
    pub weight: f32,
    pub attribution: f32,
}

/// A row of `prompts.parquet` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PromptRow {
    pub prompt_id: u64,
    pub label: Option<String>,
    pub prompt: String,
    pub seed: Option<String>,
    pub token_ids: Vec<u32>,
    pub token_strings: Vec<String>,
    pub answers: Vec<String>,
    pub target_ids: Vec<u32>,
    pub target_strings: Vec<String>,
    pub target_probs: Vec<f32>,
    pub target_logits: Vec<f32>,
    pub goal: f32,
    pub traced_position: u32,
    pub predicted: bool,
}

/// Whether the model predicts a prompt's given answers: their summed logit, the goal, is
/// positive. Without given answers the targets are the model's own top tokens, predicted by
/// definition. A non-positive goal makes every attribution a fraction of a meaningless scale.
pub fn answers_predicted(answers: &[String], goal: f32) -> bool {
    answers.is_empty() || goal > 0.0
}

/// The three tables of a circuit (or of one batch of it), rows in prompt order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    /// `prompts.parquet`.
    pub prompts: Vec<PromptRow>,
    /// `nodes.parquet`.
    pub nodes: Vec<NodeRow>,
    /// `edges.parquet`.
    pub edges: Vec<EdgeRow>,
}

/// A neuron node's polarity, as stored in the `polarity` column: the sign of its activation
/// (0 for an exactly zero activation).
pub fn polarity(a: f32) -> i8 {
    if a > 0.0 {
        1
    } else if a < 0.0 {
        -1
    } else {
        0
    }
}

impl Circuit {
    /// Appends one traced prompt; `target_strings` are the targets decoded.
    pub fn push(&mut self, p: &PreparedPrompt, t: &PromptCircuit, target_strings: Vec<String>) {
        let id = p.prompt_id;
        self.prompts.push(PromptRow {
            prompt_id: id,
            label: p.label.clone(),
            prompt: p.prompt.clone(),
            seed: p.seed.clone(),
            token_ids: p.tokens.clone(),
            token_strings: p.token_strings.clone(),
            answers: p.answers.clone(),
            target_ids: t.targets.clone(),
            target_strings,
            target_probs: t.target_probs.clone(),
            target_logits: t.target_logits.clone(),
            goal: t.goal,
            traced_position: p.traced_position(),
            predicted: answers_predicted(&p.answers, t.goal),
        });
        self.nodes.extend(t.nodes.iter().map(|n| NodeRow {
            prompt_id: id,
            label: p.label.clone(),
            layer: n.layer,
            position: n.position,
            neuron: n.index,
            activation: n.activation,
            attribution: n.attribution,
            polarity: polarity(n.activation),
            input_profile: n.input_profile.clone(),
            output_profile: n.output_profile.clone(),
        }));
        self.edges.extend(t.edges.iter().map(|e| EdgeRow {
            prompt_id: id,
            label: p.label.clone(),
            source_layer: e.source.0,
            source_position: e.source.1,
            source_neuron: e.source.2,
            target_layer: e.target.0,
            target_position: e.target.1,
            target_neuron: e.target.2,
            weight: e.weight,
            attribution: e.attribution,
        }));
    }

    /// Appends another circuit's rows.
    pub fn extend(&mut self, other: Circuit) {
        self.prompts.extend(other.prompts);
        self.nodes.extend(other.nodes);
        self.edges.extend(other.edges);
    }
}

// ------------------------------------------------------------------------ writing

/// A list column: one list per row, items built by `push` into the `values` builder.
fn list<B: ArrayBuilder, T>(
    values: B,
    item: DataType,
    rows: impl Iterator<Item = Vec<T>>,
    push: impl Fn(&mut B, Vec<T>),
) -> ArrayRef {
    let mut b = ListBuilder::new(values).with_field(Field::new("item", item, false));
    for r in rows {
        push(b.values(), r);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn list_f32(rows: impl Iterator<Item = Vec<f32>>) -> ArrayRef {
    list(Float32Builder::new(), DataType::Float32, rows, |b, r| {
        b.append_slice(&r)
    })
}

fn list_u32(rows: impl Iterator<Item = Vec<u32>>) -> ArrayRef {
    list(UInt32Builder::new(), DataType::UInt32, rows, |b, r| {
        b.append_slice(&r)
    })
}

fn list_str(rows: impl Iterator<Item = Vec<String>>) -> ArrayRef {
    list(StringBuilder::new(), DataType::Utf8, rows, |b, r| {
        r.into_iter().for_each(|s| b.append_value(s))
    })
}

fn strings<'a>(rows: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for r in rows {
        b.append_option(r);
    }
    Arc::new(b.finish())
}

fn batch(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| {
            Field::new(
                *n,
                a.data_type().clone(),
                a.null_count() > 0 || *n == "label" || *n == "seed",
            )
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).map_err(|e| {
        Error::Parquet {
            path: path.into(),
            message: e.to_string(),
        }
    })
}

macro_rules! prim {
    ($builder:ty, $iter:expr) => {{
        let mut b = <$builder>::new();
        for v in $iter {
            b.append_value(v);
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

fn nodes_batch(path: &Path, rows: &[NodeRow]) -> Result<RecordBatch> {
    batch(
        path,
        vec![
            (
                "prompt_id",
                prim!(Int64Builder, rows.iter().map(|r| r.prompt_id as i64)),
            ),
            ("label", strings(rows.iter().map(|r| r.label.as_deref()))),
            ("layer", prim!(Int32Builder, rows.iter().map(|r| r.layer))),
            (
                "position",
                prim!(UInt32Builder, rows.iter().map(|r| r.position)),
            ),
            (
                "neuron",
                prim!(UInt32Builder, rows.iter().map(|r| r.neuron)),
            ),
            (
                "activation",
                prim!(Float32Builder, rows.iter().map(|r| r.activation)),
            ),
            (
                "attribution",
                prim!(Float32Builder, rows.iter().map(|r| r.attribution)),
            ),
            (
                "polarity",
                prim!(Int8Builder, rows.iter().map(|r| r.polarity)),
            ),
            (
                "input_profile",
                list_f32(rows.iter().map(|r| r.input_profile.clone())),
            ),
            (
                "output_profile",
                list_f32(rows.iter().map(|r| r.output_profile.clone())),
            ),
        ],
    )
}

fn edges_batch(path: &Path, rows: &[EdgeRow]) -> Result<RecordBatch> {
    batch(
        path,
        vec![
            (
                "prompt_id",
                prim!(Int64Builder, rows.iter().map(|r| r.prompt_id as i64)),
            ),
            ("label", strings(rows.iter().map(|r| r.label.as_deref()))),
            (
                "source_layer",
                prim!(Int32Builder, rows.iter().map(|r| r.source_layer)),
            ),
            (
                "source_position",
                prim!(UInt32Builder, rows.iter().map(|r| r.source_position)),
            ),
            (
                "source_neuron",
                prim!(UInt32Builder, rows.iter().map(|r| r.source_neuron)),
            ),
            (
                "target_layer",
                prim!(Int32Builder, rows.iter().map(|r| r.target_layer)),
            ),
            (
                "target_position",
                prim!(UInt32Builder, rows.iter().map(|r| r.target_position)),
            ),
            (
                "target_neuron",
                prim!(UInt32Builder, rows.iter().map(|r| r.target_neuron)),
            ),
            (
                "weight",
                prim!(Float32Builder, rows.iter().map(|r| r.weight)),
            ),
            (
                "attribution",
                prim!(Float32Builder, rows.iter().map(|r| r.attribution)),
            ),
        ],
    )
}

fn prompts_batch(path: &Path, rows: &[PromptRow]) -> Result<RecordBatch> {
    batch(
        path,
        vec![
            (
                "prompt_id",
                prim!(Int64Builder, rows.iter().map(|r| r.prompt_id as i64)),
            ),
            ("label", strings(rows.iter().map(|r| r.label.as_deref()))),
            (
                "prompt",
                strings(rows.iter().map(|r| Some(r.prompt.as_str()))),
            ),
            ("seed", strings(rows.iter().map(|r| r.seed.as_deref()))),
            (
                "token_ids",
                list_u32(rows.iter().map(|r| r.token_ids.clone())),
            ),
            (
                "token_strings",
                list_str(rows.iter().map(|r| r.token_strings.clone())),
            ),
            ("answers", list_str(rows.iter().map(|r| r.answers.clone()))),
            (
                "target_ids",
                list_u32(rows.iter().map(|r| r.target_ids.clone())),
            ),
            (
                "target_strings",
                list_str(rows.iter().map(|r| r.target_strings.clone())),
            ),
            (
                "target_probs",
                list_f32(rows.iter().map(|r| r.target_probs.clone())),
            ),
            (
                "target_logits",
                list_f32(rows.iter().map(|r| r.target_logits.clone())),
            ),
            ("goal", prim!(Float32Builder, rows.iter().map(|r| r.goal))),
            (
                "traced_position",
                prim!(UInt32Builder, rows.iter().map(|r| r.traced_position)),
            ),
            (
                "predicted",
                prim!(BooleanBuilder, rows.iter().map(|r| r.predicted)),
            ),
        ],
    )
}

/// Writer settings of every circuit file: Snappy, adag as the creator.
fn writer_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("adag {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Encodes a record batch as a Parquet file in memory (Snappy).
fn parquet_bytes(path: &Path, batch: &RecordBatch) -> Result<Vec<u8>> {
    let pe = |e: parquet::errors::ParquetError| Error::Parquet {
        path: path.into(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(writer_props())).map_err(pe)?;
    w.write(batch).map_err(pe)?;
    w.close().map_err(pe)?;
    Ok(out)
}

/// Concatenates Parquet files of one table into `out`, batch by batch (memory bounded by a
/// row group, whatever the total size), atomically; `empty` is the file to write when there
/// are no inputs. Returns the number of rows.
pub fn concat_parquet(inputs: &[std::path::PathBuf], out: &Path, empty: &[u8]) -> Result<usize> {
    if inputs.is_empty() {
        crate::store::write_atomic(out, empty)?;
        return Ok(0);
    }
    let mut rows = 0;
    adag_core::write_atomic_with(out, |file| -> std::result::Result<(), Streamed> {
        let mut writer: Option<ArrowWriter<&mut std::fs::File>> = None;
        let mut file = Some(file);
        for input in inputs {
            let pe = |message: String| Error::Parquet {
                path: input.clone(),
                message,
            };
            let f = std::fs::File::open(input).map_err(|e| Error::io(input, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| pe(e.to_string()))?
                .build()
                .map_err(|e| pe(e.to_string()))?;
            for b in reader {
                let b = b.map_err(|e| pe(e.to_string()))?;
                let w = match writer.as_mut() {
                    Some(w) => w,
                    None => {
                        let f = file
                            .take()
                            .ok_or_else(|| pe("writer already taken".into()))?;
                        writer.insert(
                            ArrowWriter::try_new(f, b.schema(), Some(writer_props()))
                                .map_err(|e| pe(e.to_string()))?,
                        )
                    }
                };
                w.write(&b)
                    .map_err(|e| pe(format!("appending to {}: {e}", out.display())))?;
                rows += b.num_rows();
            }
        }
        match (writer, file) {
            (Some(w), _) => {
                w.close().map_err(|e| Error::Parquet {
                    path: out.into(),
                    message: e.to_string(),
                })?;
            }
            // Inputs with no row batches at all: the empty table.
            (None, Some(f)) => std::io::Write::write_all(f, empty)?,
            (None, None) => {}
        }
        Ok(())
    })
    .map_err(|e| match e {
        Streamed::Io(e) => Error::io(out, e),
        Streamed::Circuit(e) => e,
    })?;
    Ok(rows)
}

/// The failure of a streamed write: the temporary file's own I/O, or reading an input.
enum Streamed {
    Io(std::io::Error),
    Circuit(Error),
}

impl From<std::io::Error> for Streamed {
    fn from(e: std::io::Error) -> Self {
        Streamed::Io(e)
    }
}

impl From<Error> for Streamed {
    fn from(e: Error) -> Self {
        Streamed::Circuit(e)
    }
}

/// The Parquet bytes of `nodes.parquet` for these rows (`path` only names errors).
pub fn nodes_parquet(path: &Path, rows: &[NodeRow]) -> Result<Vec<u8>> {
    parquet_bytes(path, &nodes_batch(path, rows)?)
}

/// The Parquet bytes of `edges.parquet` for these rows.
pub fn edges_parquet(path: &Path, rows: &[EdgeRow]) -> Result<Vec<u8>> {
    parquet_bytes(path, &edges_batch(path, rows)?)
}

/// The Parquet bytes of `prompts.parquet` for these rows.
pub fn prompts_parquet(path: &Path, rows: &[PromptRow]) -> Result<Vec<u8>> {
    parquet_bytes(path, &prompts_batch(path, rows)?)
}

// ------------------------------------------------------------------------ reading

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let pe = |message: String| Error::Parquet {
        path: path.into(),
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| pe(e.to_string()))?
        .build()
        .map_err(|e| pe(e.to_string()))?;
    reader.map(|b| b.map_err(|e| pe(e.to_string()))).collect()
}

/// Typed access to the columns of one record batch, with errors naming file and column.
struct Cols<'a> {
    path: &'a Path,
    batch: &'a RecordBatch,
}

impl<'a> Cols<'a> {
    fn get<T: 'static>(&self, name: &str) -> Result<&'a T> {
        let col = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| Error::Parquet {
                path: self.path.into(),
                message: format!("no column `{name}`"),
            })?;
        col.as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| Error::Parquet {
                path: self.path.into(),
                message: format!("column `{name}` has type {}", col.data_type()),
            })
    }

    fn i64(&self, n: &str) -> Result<&'a Int64Array> {
        self.get(n)
    }
    fn i32(&self, n: &str) -> Result<&'a Int32Array> {
        self.get(n)
    }
    fn u32(&self, n: &str) -> Result<&'a UInt32Array> {
        self.get(n)
    }
    fn f32(&self, n: &str) -> Result<&'a Float32Array> {
        self.get(n)
    }
    fn bool(&self, n: &str) -> Result<&'a BooleanArray> {
        self.get(n)
    }
    fn str(&self, n: &str) -> Result<&'a StringArray> {
        self.get(n)
    }
    fn list(&self, n: &str) -> Result<&'a ListArray> {
        self.get(n)
    }
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn list_values<T: Array + Clone + 'static, V>(
    path: &Path,
    l: &ListArray,
    i: usize,
    f: impl Fn(&T) -> Vec<V>,
) -> Result<Vec<V>> {
    let v = l.value(i);
    let a = v
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::Parquet {
            path: path.into(),
            message: format!("a list column has items of type {}", v.data_type()),
        })?;
    Ok(f(a))
}

fn f32s(path: &Path, l: &ListArray, i: usize) -> Result<Vec<f32>> {
    list_values::<Float32Array, f32>(path, l, i, |a| a.values().to_vec())
}
fn u32s(path: &Path, l: &ListArray, i: usize) -> Result<Vec<u32>> {
    list_values::<UInt32Array, u32>(path, l, i, |a| a.values().to_vec())
}
fn strs(path: &Path, l: &ListArray, i: usize) -> Result<Vec<String>> {
    list_values::<StringArray, String>(path, l, i, |a| {
        (0..a.len()).map(|j| a.value(j).to_string()).collect()
    })
}

/// Reads `nodes.parquet`.
pub fn read_nodes(path: &Path) -> Result<Vec<NodeRow>> {
    let mut rows = Vec::new();
    for b in read_batches(path)? {
        let c = Cols { path, batch: &b };
        let (id, label, layer, pos, neuron) = (
            c.i64("prompt_id")?,
            c.str("label")?,
            c.i32("layer")?,
            c.u32("position")?,
            c.u32("neuron")?,
        );
        let (act, attr, pol): (_, _, &Int8Array) = (
            c.f32("activation")?,
            c.f32("attribution")?,
            c.get("polarity")?,
        );
        let (inp, outp) = (c.list("input_profile")?, c.list("output_profile")?);
        for i in 0..b.num_rows() {
            rows.push(NodeRow {
                prompt_id: id.value(i) as u64,
                label: opt_str(label, i),
                layer: layer.value(i),
                position: pos.value(i),
                neuron: neuron.value(i),
                activation: act.value(i),
                attribution: attr.value(i),
                polarity: pol.value(i),
                input_profile: f32s(path, inp, i)?,
                output_profile: f32s(path, outp, i)?,
            });
        }
    }
    Ok(rows)
}

/// Reads `edges.parquet`.
pub fn read_edges(path: &Path) -> Result<Vec<EdgeRow>> {
    let mut rows = Vec::new();
    for b in read_batches(path)? {
        let c = Cols { path, batch: &b };
        let (id, label) = (c.i64("prompt_id")?, c.str("label")?);
        let (sl, sp, sn) = (
            c.i32("source_layer")?,
            c.u32("source_position")?,
            c.u32("source_neuron")?,
        );
        let (tl, tp, tn) = (
            c.i32("target_layer")?,
            c.u32("target_position")?,
            c.u32("target_neuron")?,
        );
        let (w, a) = (c.f32("weight")?, c.f32("attribution")?);
        for i in 0..b.num_rows() {
            rows.push(EdgeRow {
                prompt_id: id.value(i) as u64,
                label: opt_str(label, i),
                source_layer: sl.value(i),
                source_position: sp.value(i),
                source_neuron: sn.value(i),
                target_layer: tl.value(i),
                target_position: tp.value(i),
                target_neuron: tn.value(i),
                weight: w.value(i),
                attribution: a.value(i),
            });
        }
    }
    Ok(rows)
}

/// Reads `prompts.parquet`.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptRow>> {
    let mut rows = Vec::new();
    for b in read_batches(path)? {
        let c = Cols { path, batch: &b };
        let (id, label, prompt, seed) = (
            c.i64("prompt_id")?,
            c.str("label")?,
            c.str("prompt")?,
            c.str("seed")?,
        );
        let (tids, tstr, ans) = (
            c.list("token_ids")?,
            c.list("token_strings")?,
            c.list("answers")?,
        );
        let (gids, gstr, gp, gl) = (
            c.list("target_ids")?,
            c.list("target_strings")?,
            c.list("target_probs")?,
            c.list("target_logits")?,
        );
        let (goal, tp) = (c.f32("goal")?, c.u32("traced_position")?);
        // Circuits written before the column existed: derived from the goal.
        let predicted = c
            .batch
            .column_by_name("predicted")
            .map(|_| c.bool("predicted"))
            .transpose()?;
        for i in 0..b.num_rows() {
            let answers = strs(path, ans, i)?;
            rows.push(PromptRow {
                predicted: match predicted {
                    Some(p) => p.value(i),
                    None => answers_predicted(&answers, goal.value(i)),
                },
                answers,
                prompt_id: id.value(i) as u64,
                label: opt_str(label, i),
                prompt: prompt.value(i).to_string(),
                seed: opt_str(seed, i),
                token_ids: u32s(path, tids, i)?,
                token_strings: strs(path, tstr, i)?,
                target_ids: u32s(path, gids, i)?,
                target_strings: strs(path, gstr, i)?,
                target_probs: f32s(path, gp, i)?,
                target_logits: f32s(path, gl, i)?,
                goal: goal.value(i),
                traced_position: tp.value(i),
            });
        }
    }
    Ok(rows)
}
