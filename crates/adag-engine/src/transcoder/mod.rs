//! Transcoders: per-layer (PLT) and cross-layer (CLT) sets in circuit-tracer's native formats,
//! and GemmaScope `.npz` files.
//!
//! A transcoder reads the residual stream at its `feature_input_hook` (a [`ReadSite`]) and
//! replaces the MLP output at its `feature_output_hook` (a [`WriteSite`]):
//! `pre = x W_encᵀ + b_enc`, `a = act(pre)`, `recon = a W_dec + b_dec (+ x W_skipᵀ)`.
//! Conventions follow circuit-tracer (see `shared/reference/circuit-tracer.md` §2): JumpReLU keeps
//! `pre` itself above the threshold, TopK keeps the k largest values (not absolute values), the
//! PLT skip is `x W_skipᵀ` and the CLT skip `x W_skip[l]`. Native CLT directories carry no skip
//! (circuit-tracer never loads one either).

mod components;
mod files;
mod npz;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use adag_core::Site;
use candle_core::{Device, Tensor};
use serde::Deserialize;

pub use components::{Components, SourceGroup};
pub use files::{Matrix, StFile};

use crate::error::{Context, Error, Result};
use crate::frozen::{MlpPath, ReadSite, WriteSite};

/// The nonlinearity of the features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureActivation {
    /// `max(pre, 0)`.
    Relu,
    /// `pre · [pre > θ_f]` with per-feature thresholds.
    JumpRelu,
    /// The `k` largest pre-activations per position survive.
    TopK(usize),
}

/// PLT or CLT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscoderKind {
    /// One transcoder per layer, writing to its own layer.
    PerLayer,
    /// Features of layer `i` write to every layer `≥ i`.
    CrossLayer,
}

/// One layer's encoder side, plus its decoder(s).
pub struct TranscoderLayer {
    /// `W_enc` `[d_tc, d_model]`.
    pub w_enc: Matrix,
    /// `[d_tc]`
    pub b_enc: Tensor,
    /// JumpReLU thresholds `[d_tc]`.
    pub threshold: Option<Tensor>,
    /// Decoder: PLT `[d_tc, d_model]`; CLT `[d_tc, n_layers − i, d_model]`.
    pub w_dec: Matrix,
    /// Decoder bias of the output at this layer, `[d_model]`.
    pub b_dec: Tensor,
    /// Skip matrix `[d_model, d_model]`, applied as `x W_skipᵀ` (PLT).
    pub w_skip: Option<Tensor>,
}

/// `config.yaml` keys adag reads.
#[derive(Debug, Deserialize)]
struct ConfigYaml {
    model_kind: Option<String>,
    feature_input_hook: Option<String>,
    feature_output_hook: Option<String>,
    model_name: Option<String>,
    transcoders: Option<Vec<String>>,
    activation: Option<String>,
    k: Option<usize>,
    #[serde(default)]
    scan: Option<String>,
}

/// A loaded transcoder set.
pub struct TranscoderSet {
    /// PLT or CLT.
    pub kind: TranscoderKind,
    /// Where features read.
    pub read: ReadSite,
    /// Where features write.
    pub write: WriteSite,
    /// The nonlinearity.
    pub activation: FeatureActivation,
    /// `model_name` from config.yaml (the CLI's default `--model`).
    pub model_name: Option<String>,
    /// Feature-set identifier for the frontend (`scan`).
    pub scan: String,
    /// Features per layer.
    pub d_tc: usize,
    /// Residual width.
    pub d_model: usize,
    /// One entry per model layer.
    pub layers: Vec<TranscoderLayer>,
    /// Where it was loaded from.
    pub source: PathBuf,
}

fn terr(path: &Path, reason: impl Into<String>) -> Error {
    Error::Transcoder {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn parse_site<T>(
    path: &Path,
    key: &str,
    value: &str,
    f: impl Fn(Site) -> Option<T>,
    allowed: &str,
) -> Result<T> {
    value
        .parse::<adag_core::HookName>()
        .ok()
        .and_then(|h| match h {
            adag_core::HookName::Block(_, s) => Some(s),
            _ => None,
        })
        .or_else(|| Site::parse(value))
        .and_then(f)
        .ok_or_else(|| {
            terr(
                path,
                format!("{key}: `{value}` is not supported (supported: {allowed})"),
            )
        })
}

impl TranscoderSet {
    /// The `model_name` of a transcoder directory's `config.yaml` (or of the config file
    /// itself), read without loading any weights: what a command's default `--model` is.
    pub fn config_model_name(path: &Path) -> Result<Option<String>> {
        let cfg_path = if path.is_dir() {
            path.join("config.yaml")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| terr(&cfg_path, format!("cannot read transcoder config: {e}")))?;
        let cfg: ConfigYaml = serde_norway::from_str(&text)
            .map_err(|e| terr(&cfg_path, format!("not a valid config.yaml: {e}")))?;
        Ok(cfg.model_name)
    }

    /// Loads a transcoder set from a directory holding `config.yaml`, or from the config file
    /// itself.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_with(path, device, &|_| Ok(None))
    }

    /// Like [`TranscoderSet::load`], with `resolve` turning remote entries of the config's
    /// `transcoders:` list (`hf://…`) into local files
    /// (the CLI passes the hub client, so only the listed files are downloaded). `Ok(None)` keeps
    /// the entry's refusal; `Err(reason)` is reported against the config file.
    pub fn load_with(
        path: &Path,
        device: &Device,
        resolve: &dyn Fn(&str) -> std::result::Result<Option<PathBuf>, String>,
    ) -> Result<Self> {
        if !path.exists() {
            return Err(terr(path, "not found: expected a transcoder directory holding config.yaml, or the config.yaml itself"));
        }
        let (dir, cfg_path) = if path.is_dir() {
            (path.to_path_buf(), path.join("config.yaml"))
        } else {
            (
                path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                path.to_path_buf(),
            )
        };
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| terr(&cfg_path, format!("cannot read transcoder config: {e}")))?;
        let cfg: ConfigYaml = serde_norway::from_str(&text)
            .map_err(|e| terr(&cfg_path, format!("not a valid config.yaml: {e}")))?;
        let kind = match cfg.model_kind.as_deref() {
            Some("transcoder_set") => TranscoderKind::PerLayer,
            Some("cross_layer_transcoder") => TranscoderKind::CrossLayer,
            Some(other) => return Err(terr(&cfg_path, format!("model_kind `{other}` is not supported (transcoder_set, cross_layer_transcoder)"))),
            None => return Err(terr(&cfg_path, "model_kind is required (transcoder_set or cross_layer_transcoder)")),
        };
        let input = cfg
            .feature_input_hook
            .as_deref()
            .unwrap_or("hook_resid_mid");
        let output = cfg.feature_output_hook.as_deref().unwrap_or("hook_mlp_out");
        let read = parse_site(
            &cfg_path,
            "feature_input_hook",
            input,
            ReadSite::from_site,
            "hook_resid_mid, ln2.hook_normalized, mlp.hook_in",
        )?;
        let write = parse_site(
            &cfg_path,
            "feature_output_hook",
            output,
            WriteSite::from_site,
            "hook_mlp_out, mlp.hook_out",
        )?;
        let layers = match kind {
            TranscoderKind::PerLayer => {
                load_plt(&dir, &cfg_path, cfg.transcoders.as_deref(), device, resolve)?
            }
            TranscoderKind::CrossLayer => load_clt(&dir, device)?,
        };
        let first = layers
            .first()
            .ok_or_else(|| terr(&dir, "no transcoder layers found"))?;
        let d_tc = first.b_enc.dim(0).ctx("b_enc")?;
        let d_model = first.b_dec.dim(0).ctx("b_dec")?;
        let has_threshold = first.threshold.is_some();
        let activation = match cfg.activation.as_deref() {
            Some("relu") => FeatureActivation::Relu,
            Some("topk") => FeatureActivation::TopK(
                cfg.k
                    .ok_or_else(|| terr(&cfg_path, "activation topk needs `k`"))?,
            ),
            Some("jump_relu") | Some("jumprelu") => FeatureActivation::JumpRelu,
            Some(other) => {
                return Err(terr(
                    &cfg_path,
                    format!("activation `{other}` not supported (relu, jump_relu, topk)"),
                ))
            }
            None if has_threshold => FeatureActivation::JumpRelu,
            None => FeatureActivation::Relu,
        };
        let n = layers.len();
        for (i, l) in layers.iter().enumerate() {
            let enc = l.w_enc.shape();
            if enc != [d_tc, d_model] {
                return Err(terr(
                    &dir,
                    format!(
                        "layer {i}: {} has shape {enc:?}, expected [{d_tc}, {d_model}]",
                        l.w_enc.describe()
                    ),
                ));
            }
            if kind == TranscoderKind::CrossLayer && i == 0 {
                // W_dec_0 writes to every layer: it says how many there are, so a missing
                // W_enc_k is named instead of being reported as a W_dec_0 shape error.
                if let Some(&covers) = l.w_dec.shape().get(1) {
                    if covers > n {
                        return Err(terr(
                            &dir,
                            format!(
                                "W_enc_{n}.safetensors is missing: {} writes to {covers} layers but only W_enc_0..W_enc_{} exist",
                                l.w_dec.describe(),
                                n - 1
                            ),
                        ));
                    }
                }
            }
            check_vectors(&dir, kind, i, l, d_tc, d_model)?;
            let dec = l.w_dec.shape();
            let want = match kind {
                TranscoderKind::PerLayer => vec![d_tc, d_model],
                TranscoderKind::CrossLayer => vec![d_tc, n - i, d_model],
            };
            if dec != want {
                return Err(terr(
                    &dir,
                    format!(
                        "layer {i}: {} has shape {dec:?}, expected {want:?}",
                        l.w_dec.describe()
                    ),
                ));
            }
            if activation == FeatureActivation::JumpRelu && l.threshold.is_none() {
                return Err(terr(&dir, format!("layer {i}: JumpReLU needs a threshold")));
            }
        }
        Ok(TranscoderSet {
            kind,
            read,
            write,
            activation,
            model_name: cfg.model_name,
            scan: cfg.scan.unwrap_or_else(|| dir.display().to_string()),
            d_tc,
            d_model,
            layers,
            source: dir,
        })
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Checks that the set fits `model`: layer count and width.
    pub fn check_model(&self, cfg: &adag_model::ModelConfig) -> Result<()> {
        if self.n_layers() != cfg.n_layers {
            return Err(terr(
                &self.source,
                format!(
                    "{} transcoder layers, but the model has {} layers",
                    self.n_layers(),
                    cfg.n_layers
                ),
            ));
        }
        if self.d_model != cfg.d_model {
            return Err(terr(
                &self.source,
                format!(
                    "transcoders have d_model {}, the model {}",
                    self.d_model, cfg.d_model
                ),
            ));
        }
        Ok(())
    }

    /// Pre-activations `[T, d_tc]` of layer `l` for inputs `x` `[T, d_model]`.
    pub fn pre_activations(&self, l: usize, x: &Tensor) -> Result<Tensor> {
        let layer = &self.layers[l];
        let x = x
            .to_dtype(candle_core::DType::F32)
            .ctx("transcoder encoder")?;
        let pre = match layer.w_enc.times_transposed(&x)? {
            Some(pre) => pre,
            None => {
                let w = layer.w_enc.load(x.device())?;
                x.matmul(&w.t().ctx("transcoder encoder")?)
                    .ctx("transcoder encoder")?
            }
        };
        pre.broadcast_add(&layer.b_enc).ctx("transcoder encoder")
    }

    /// Pre-activations of a few `(position, feature)` entries of layer `l` for inputs `x`
    /// `[T, d_model]`: only those features' encoder rows are read and multiplied, where
    /// [`TranscoderSet::pre_activations`] encodes every feature.
    pub fn pre_activations_at(
        &self,
        l: usize,
        x: &Tensor,
        entries: &[(usize, u32)],
    ) -> Result<Vec<f32>> {
        self.encoder_rows(l, entries.iter().map(|&(_, f)| f), x.device())?
            .pre_activations(x, entries)
    }

    /// The encoder rows and biases of `features` of layer `l`, read once for several
    /// [`EncoderRows::pre_activations`] (graph accounting needs the active features alone, in
    /// four runs per graph; reading their rows from the mapped files each time re-read them).
    pub fn encoder_rows(
        &self,
        l: usize,
        features: impl IntoIterator<Item = u32>,
        device: &Device,
    ) -> Result<EncoderRows> {
        let layer = &self.layers[l];
        let mut features: Vec<u32> = features.into_iter().collect();
        features.sort_unstable();
        features.dedup();
        if features.is_empty() {
            return Ok(EncoderRows {
                features,
                rows: None,
            });
        }
        let rows = layer.w_enc.rows(&features, device)?;
        // Only these features' biases, not the whole b_enc.
        let ids = Tensor::new(features.as_slice(), device).ctx("feature ids")?;
        let bias = layer
            .b_enc
            .index_select(&ids, 0)
            .ctx("transcoder encoder bias")?;
        Ok(EncoderRows {
            features,
            rows: Some((rows, bias)),
        })
    }

    /// Activations from pre-activations `[T, d_tc]`.
    pub fn activate(&self, l: usize, pre: &Tensor) -> Result<Tensor> {
        match self.activation {
            FeatureActivation::Relu => pre.relu().ctx("relu"),
            FeatureActivation::JumpRelu => {
                let th = self.layers[l]
                    .threshold
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("JumpReLU without threshold".into()))?;
                pre.broadcast_gt(th)
                    .and_then(|m| m.to_dtype(pre.dtype()))
                    .and_then(|m| m * pre)
                    .ctx("jump relu")
            }
            FeatureActivation::TopK(k) => {
                let k = k.min(pre.dim(1).ctx("pre shape")?);
                let rows = pre.to_vec2::<f32>().ctx("topk")?;
                let mut out = Vec::with_capacity(rows.len() * rows.first().map_or(0, Vec::len));
                for row in rows {
                    let mut idx: Vec<usize> = (0..row.len()).collect();
                    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                    let mut kept = vec![0.0f32; row.len()];
                    for &i in &idx[..k] {
                        kept[i] = row[i];
                    }
                    out.extend(kept);
                }
                Tensor::from_vec(out, pre.dims(), pre.device()).ctx("topk")
            }
        }
    }

    /// `x W_skipᵀ` of layer `l`, if the layer has a skip connection.
    pub fn skip(&self, l: usize, x: &Tensor) -> Result<Option<Tensor>> {
        self.layers[l]
            .w_skip
            .as_ref()
            .map(|w| {
                x.to_dtype(candle_core::DType::F32)
                    .and_then(|x| x.matmul(&w.t()?))
                    .ctx("skip")
            })
            .transpose()
    }

    /// Decoder rows of `features` of layer `l` `[m, n_out, d_model]` (PLT: `n_out = 1`).
    pub fn decoder_rows(&self, l: usize, features: &[u32], device: &Device) -> Result<Tensor> {
        let rows = self.layers[l].w_dec.rows(features, device)?;
        match self.kind {
            TranscoderKind::PerLayer => rows.unsqueeze(1).ctx("decoder rows"),
            TranscoderKind::CrossLayer => Ok(rows),
        }
    }
}

/// Some features' encoder rows `[m, d_model]` and biases `[m]` of one layer, in ascending
/// feature order ([`TranscoderSet::encoder_rows`]).
pub struct EncoderRows {
    features: Vec<u32>,
    rows: Option<(Tensor, Tensor)>,
}

impl EncoderRows {
    /// Pre-activations of `(position, feature)` entries for inputs `x` `[T, d_model]`; every
    /// feature must be one of these rows'.
    pub fn pre_activations(&self, x: &Tensor, entries: &[(usize, u32)]) -> Result<Vec<f32>> {
        // Without rows (no features) there is nothing to multiply, and any entry is refused
        // below as a feature outside the rows.
        let pre = match &self.rows {
            Some((rows, bias)) => x
                .to_dtype(candle_core::DType::F32)
                .and_then(|x| x.matmul(&rows.t()?))
                .and_then(|p| p.broadcast_add(bias))
                .and_then(|p| p.to_vec2::<f32>())
                .ctx("transcoder encoder")?,
            None => Vec::new(),
        };
        entries
            .iter()
            .map(|&(p, f)| {
                let j = self
                    .features
                    .binary_search(&f)
                    .map_err(|_| Error::Invalid(format!("feature {f} has no encoder row here")))?;
                let row = pre.get(p).ok_or_else(|| {
                    Error::Invalid(format!("position {p} beyond the input's {}", pre.len()))
                })?;
                Ok(row[j])
            })
            .collect()
    }
}

/// The linear path a transcoder keeps through the MLP in the linearised model: its skip.
pub struct SkipPath<'a>(pub &'a TranscoderSet);

impl MlpPath for SkipPath<'_> {
    fn vjp(&self, layer: usize, grad_write: &Tensor) -> Result<Option<(ReadSite, Tensor)>> {
        let Some(w) = &self.0.layers[layer].w_skip else {
            return Ok(None);
        };
        // skip = x W_skipᵀ  ⇒  g_x = g W_skip
        let (n, t, d) = grad_write.dims3().ctx("gradient shape")?;
        let w = w.to_dtype(grad_write.dtype()).ctx("skip dtype")?;
        let g = grad_write
            .reshape((n * t, d))
            .and_then(|g| g.matmul(&w))
            .and_then(|g| g.reshape((n, t, d)))
            .ctx("skip backward")?;
        Ok(Some((self.0.read, g)))
    }

    fn flops(&self, layer: usize, rows: usize) -> f64 {
        match self.0.layers[layer].w_skip {
            Some(_) => 2.0 * rows as f64 * (self.0.d_model * self.0.d_model) as f64,
            None => 0.0,
        }
    }
}

/// Checks the shapes of layer `i`'s biases, threshold and skip matrix, naming the file, tensor,
/// layer and expected shape (a wrong length would otherwise surface as a bare broadcast error
/// deep inside attribution).
fn check_vectors(
    dir: &Path,
    kind: TranscoderKind,
    i: usize,
    l: &TranscoderLayer,
    d_tc: usize,
    d_model: usize,
) -> Result<()> {
    let file = l.w_enc.file().unwrap_or(dir);
    let name = |base: &str| match kind {
        TranscoderKind::CrossLayer => format!("{base}_{i}"),
        TranscoderKind::PerLayer => base.to_string(),
    };
    let mut checks: Vec<(String, &Tensor, Vec<usize>)> = vec![
        (name("b_enc"), &l.b_enc, vec![d_tc]),
        (name("b_dec"), &l.b_dec, vec![d_model]),
    ];
    if let Some(t) = &l.threshold {
        let th = match kind {
            TranscoderKind::CrossLayer => format!("threshold_{i}"),
            TranscoderKind::PerLayer if l.w_enc.file().is_some() => {
                "activation_function.threshold".into()
            }
            TranscoderKind::PerLayer => "threshold".into(),
        };
        checks.push((th, t, vec![d_tc]));
    }
    if let Some(t) = &l.w_skip {
        checks.push(("W_skip".into(), t, vec![d_model, d_model]));
    }
    for (tensor, t, want) in checks {
        if t.dims() != want.as_slice() {
            return Err(terr(
                file,
                format!(
                    "layer {i}: tensor `{tensor}` has shape {:?}, expected {want:?}",
                    t.dims()
                ),
            ));
        }
    }
    Ok(())
}

fn load_plt(
    dir: &Path,
    cfg_path: &Path,
    listed: Option<&[String]>,
    device: &Device,
    resolve: &dyn Fn(&str) -> std::result::Result<Option<PathBuf>, String>,
) -> Result<Vec<TranscoderLayer>> {
    let paths: Vec<PathBuf> = match listed {
        Some(list) => list
            .iter()
            .map(|p| {
                if p.starts_with("hf://") || p.contains("://") {
                    if let Some(local) = resolve(p).map_err(|e| terr(cfg_path, e))? {
                        return Ok(local);
                    }
                    Err(terr(cfg_path, format!("transcoder `{p}` is a remote URI; adag reads local files only (download it and list the local path)")))
                } else {
                    Ok(dir.join(p))
                }
            })
            .collect::<Result<_>>()?,
        None => {
            let mut found = Vec::new();
            while dir.join(format!("layer_{}.safetensors", found.len())).exists() {
                found.push(dir.join(format!("layer_{}.safetensors", found.len())));
            }
            if found.is_empty() {
                return Err(terr(dir, "no layer_0.safetensors (and no `transcoders` list in config.yaml)"));
            }
            found
        }
    };
    paths
        .iter()
        .map(|p| {
            if p.extension().and_then(|e| e.to_str()) == Some("npz") {
                load_gemmascope_npz(p, device)
            } else {
                load_plt_layer(p, device)
            }
        })
        .collect()
}

fn load_plt_layer(path: &Path, device: &Device) -> Result<TranscoderLayer> {
    let f = StFile::open(path)?;
    if f.contains("w_enc") {
        return load_gemmascope2_layer(&f, device);
    }
    Ok(TranscoderLayer {
        w_enc: Matrix::mapped(&f, "W_enc")?,
        b_enc: f.load("b_enc", device)?,
        threshold: f
            .contains("activation_function.threshold")
            .then(|| f.load("activation_function.threshold", device))
            .transpose()?,
        w_dec: Matrix::mapped(&f, "W_dec")?,
        b_dec: f.load("b_dec", device)?,
        w_skip: f
            .contains("W_skip")
            .then(|| f.load("W_skip", device))
            .transpose()?,
    })
}

/// GemmaScope-2 per-layer safetensors: lower-case keys, `w_enc` stored `[d_in, d_tc]`
/// (transposed once into memory, since every feature's encoder is read on each run), `w_dec`
/// `[d_tc, d_out]` read lazily from the mapped file like the native `W_dec`, `threshold`, and an
/// optional `affine_skip_connection` `[d_in, d_out]` applied as `x A`, i.e. `W_skip = Aᵀ`.
fn load_gemmascope2_layer(f: &Arc<StFile>, device: &Device) -> Result<TranscoderLayer> {
    let t = |name: &str| f.load(name, device);
    let transpose = |x: Tensor, what: &str| x.t().and_then(|t| t.contiguous()).ctx(what);
    Ok(TranscoderLayer {
        w_enc: Matrix::Memory(transpose(t("w_enc")?, "transpose w_enc")?),
        b_enc: t("b_enc")?,
        threshold: f
            .contains("threshold")
            .then(|| t("threshold"))
            .transpose()?,
        w_dec: Matrix::mapped(f, "w_dec")?,
        b_dec: t("b_dec")?,
        w_skip: f
            .contains("affine_skip_connection")
            .then(|| {
                t("affine_skip_connection")
                    .and_then(|a| transpose(a, "transpose affine_skip_connection"))
            })
            .transpose()?,
    })
}

/// GemmaScope `.npz`: `W_enc` is stored `[d_model, d_tc]` and transposed on load.
fn load_gemmascope_npz(path: &Path, device: &Device) -> Result<TranscoderLayer> {
    npz::check_declared_sizes(path).map_err(|e| terr(path, e))?;
    let tensors =
        Tensor::read_npz(path).map_err(|e| terr(path, format!("cannot read npz: {e}")))?;
    let get = |name: &str| -> Result<Tensor> {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| {
                t.to_dtype(candle_core::DType::F32)
                    .and_then(|t| t.to_device(device))
            })
            .transpose()
            .ctx("npz tensor")?
            .ok_or_else(|| terr(path, format!("array `{name}` not found")))
    };
    Ok(TranscoderLayer {
        w_enc: Matrix::Memory(
            get("W_enc")?
                .t()
                .and_then(|t| t.contiguous())
                .ctx("transpose W_enc")?,
        ),
        b_enc: get("b_enc")?,
        threshold: Some(get("threshold")?),
        w_dec: Matrix::Memory(get("W_dec")?),
        b_dec: get("b_dec")?,
        w_skip: None,
    })
}

fn load_clt(dir: &Path, device: &Device) -> Result<Vec<TranscoderLayer>> {
    let mut layers = Vec::new();
    loop {
        let i = layers.len();
        let enc = dir.join(format!("W_enc_{i}.safetensors"));
        if !enc.exists() {
            break;
        }
        let dec_path = dir.join(format!("W_dec_{i}.safetensors"));
        let e = StFile::open(&enc)?;
        let d: Arc<StFile> = StFile::open(&dec_path)?;
        let th = format!("threshold_{i}");
        layers.push(TranscoderLayer {
            w_enc: Matrix::mapped(&e, &format!("W_enc_{i}"))?,
            b_enc: e.load(&format!("b_enc_{i}"), device)?,
            threshold: e
                .contains(&th)
                .then(|| {
                    e.load(&th, device)
                        .and_then(|t| t.flatten_all().ctx("threshold"))
                })
                .transpose()?,
            w_dec: Matrix::mapped(&d, &format!("W_dec_{i}"))?,
            b_dec: e.load(&format!("b_dec_{i}"), device)?,
            w_skip: None,
        });
    }
    if layers.is_empty() {
        return Err(terr(
            dir,
            "no W_enc_0.safetensors in this cross-layer transcoder directory",
        ));
    }
    Ok(layers)
}
