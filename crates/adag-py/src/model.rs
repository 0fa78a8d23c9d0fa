//! `adag.Model` and `adag.attribute`.

use std::path::{Path, PathBuf};

use adag_engine::{
    attribute_with_progress, prepare_tokens, AttributeOptions, Error as EngineError, TargetSpec,
    TranscoderSet,
};
use adag_graph::{graph_scores, GraphMeta};
use adag_model::{LoadOptions, LoadedModel};
use candle_core::{DType, Device};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{invalid, to_py};
use crate::interrupt::Interrupt;

fn dtype(name: &str) -> PyResult<DType> {
    adag_model::parse_dtype(name)
        .ok_or_else(|| invalid(format!("dtype {name:?}: {}", adag_model::DTYPE_CHOICES)))
}

/// A model loaded from a HuggingFace-style directory (config.json, *.safetensors,
/// tokenizer.json), on the CPU.
#[pyclass(module = "adag._adag", frozen)]
pub struct Model {
    pub(crate) inner: LoadedModel,
    pub(crate) dtype: String,
}

#[pymethods]
impl Model {
    /// Loads the model in `path` with weights and activations in `dtype`.
    #[staticmethod]
    #[pyo3(signature = (path, dtype="f32"))]
    fn load(py: Python<'_>, path: PathBuf, dtype: &str) -> PyResult<Model> {
        let opts = LoadOptions {
            dtype: self::dtype(dtype)?,
            device: Device::Cpu,
        };
        let inner = py.detach(|| LoadedModel::load(&path, &opts).map_err(to_py))?;
        Ok(Model {
            inner,
            dtype: dtype.to_string(),
        })
    }

    /// The directory it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir.clone()
    }

    /// Number of transformer layers.
    #[getter]
    fn n_layers(&self) -> usize {
        self.inner.model.cfg.n_layers
    }

    /// Vocabulary size.
    #[getter]
    fn d_vocab(&self) -> usize {
        self.inner.model.cfg.d_vocab
    }

    /// The dtype name it was loaded with.
    #[getter]
    fn dtype(&self) -> String {
        self.dtype.clone()
    }

    /// Logits (f32 bytes, `[n_pos, d_vocab]` row-major), token ids and token strings of a
    /// prompt, tokenised as `adag run` does.
    #[pyo3(signature = (prompt, chat=false))]
    #[allow(clippy::type_complexity)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        prompt: &str,
        chat: bool,
    ) -> PyResult<(Bound<'py, PyBytes>, usize, Vec<u32>, Vec<String>)> {
        let m = &self.inner;
        let (logits, ids, strings) = py.detach(|| {
            let ids = m.tokenizer.prompt_ids(prompt, chat).map_err(to_py)?;
            let strings = m.tokenizer.token_strings(&ids).map_err(to_py)?;
            let logits = m.model.logits(&ids).map_err(to_py)?;
            let logits = logits
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(to_py)?;
            Ok::<_, PyErr>((logits, ids, strings))
        })?;
        Ok((
            crate::f32_bytes(py, &logits),
            m.model.cfg.d_vocab,
            ids,
            strings,
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "Model({:?}, n_layers={}, d_vocab={}, dtype={:?})",
            self.inner.dir.display().to_string(),
            self.inner.model.cfg.n_layers,
            self.inner.model.cfg.d_vocab,
            self.dtype
        )
    }
}

/// The single token `s` encodes to (the CLI's `--target` rule).
fn single_token(m: &LoadedModel, s: &str) -> PyResult<u32> {
    let ids = m.tokenizer.encode(s, false).map_err(to_py)?;
    match ids[..] {
        [id] => Ok(id),
        _ => Err(invalid(format!(
            "target {s:?} is {} tokens ({ids:?}); a target must be exactly one token",
            ids.len()
        ))),
    }
}

/// Attributes `prompt` as `adag attribute` does and returns the graph file's bytes (with the
/// graph's scores in its metadata).
#[pyfunction]
#[pyo3(signature = (model, transcoders, prompt, max_n_logits, desired_logit_prob, max_feature_nodes, batch_size, targets=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn attribute<'py>(
    py: Python<'py>,
    model: &Model,
    transcoders: PathBuf,
    prompt: &str,
    max_n_logits: usize,
    desired_logit_prob: f32,
    max_feature_nodes: Option<usize>,
    batch_size: usize,
    targets: Option<Vec<String>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let m = &model.inner;
    let spec = match targets {
        Some(t) if !t.is_empty() => TargetSpec::Tokens(
            t.iter()
                .map(|s| single_token(m, s))
                .collect::<PyResult<_>>()?,
        ),
        _ => TargetSpec::Salient {
            max_n_logits,
            desired_logit_prob,
        },
    };
    let options = AttributeOptions {
        targets: spec,
        batch_size,
        max_feature_nodes,
        update_interval: 4,
        progress: false,
    };
    let interrupt = Interrupt::new(progress);
    let bytes = py.detach(|| -> PyResult<Vec<u8>> {
        let tc = load_transcoders(&transcoders)?;
        let tokens = prepare_tokens(&m.tokenizer, prompt).map_err(to_py)?;
        let meta = GraphMeta {
            adag_version: env!("CARGO_PKG_VERSION").to_string(),
            model: m.dir.display().to_string(),
            prompt: prompt.to_string(),
            token_strings: m.tokenizer.token_strings(&tokens).map_err(to_py)?,
            ..Default::default()
        };
        let name = |i: u32| {
            m.tokenizer
                .token_strings(&[i])
                .ok()
                .and_then(|v| v.into_iter().next())
                .unwrap_or_default()
        };
        let mut poll = |done: usize, total: usize| interrupt.poll(done, total);
        let mut graph =
            attribute_with_progress(&m.model, &tokens, &tc, &options, meta, &name, &mut poll)
                .map_err(|e| match e {
                    EngineError::Cancelled => interrupt.error_or(to_py(e)),
                    e => to_py(e),
                })?;
        graph.meta.scores = Some(graph_scores(&graph).map_err(to_py)?);
        graph.to_bytes().map_err(to_py)
    })?;
    Ok(PyBytes::new(py, &bytes))
}

/// Loads a resolved transcoder set; `hf://` entries of its list are fetched through the HF cache.
pub(crate) fn load_transcoders(dir: &Path) -> PyResult<TranscoderSet> {
    let resolve = adag_hub::listed_file_resolver();
    TranscoderSet::load_with(dir, &Device::Cpu, &resolve).map_err(to_py)
}
