//! Per-layer transcoders (PLTs) for the demo model, in circuit-tracer's native format.
//!
//! A transcoder replaces layer `l`'s MLP by a sparse dictionary: it reads the MLP input
//! (`mlp.hook_in`, which adag calls `blocks.l.ln2.hook_normalized`: after the norm weight) and
//! predicts the MLP output (`mlp.hook_out`):
//!
//! ```text
//! pre  = x · W_encᵀ + b_enc                 W_enc [d_tc, d_model]
//! acts = pre · 1[pre > θ]   (JumpReLU)      θ     [d_tc]
//! ŷ    = acts · W_dec + b_dec               W_dec [d_tc, d_model]
//! ```
//!
//! Training is ReLU + L1 (the penalty weighted by each decoder row's norm, so features cannot
//! dodge it by shrinking the encoder), then per-feature JumpReLU thresholds that cut the
//! smallest contributions, then a decoder-only refit with the thresholds fixed. The file
//! format (circuit-tracer `SingleLayerTranscoder`): `layer_{l}.safetensors` with `W_enc`,
//! `W_dec`, `b_enc`, `b_dec`, `activation_function.threshold`, and a `config.yaml` with
//! `model_kind: transcoder_set`, `feature_input_hook`, `feature_output_hook`.

use std::collections::BTreeMap;
use std::path::Path;

use adag_core::{HookName, Site};
use adag_model::{CacheFilter, Transformer};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use tokenizers::Tokenizer;

use crate::data::RowSampler;
use crate::error::{io_err, Context, Error, Result};
use crate::io::write_atomic;
use crate::lm::save_safetensors;
use crate::refit::refit_decoder;
use crate::rng::Rng;

/// One layer's transcoder.
#[derive(Debug, Clone)]
pub struct Transcoder {
    /// `[d_tc, d_model]`
    pub w_enc: Tensor,
    /// `[d_tc]`
    pub b_enc: Tensor,
    /// `[d_tc, d_model]`
    pub w_dec: Tensor,
    /// `[d_model]`
    pub b_dec: Tensor,
    /// JumpReLU thresholds `[d_tc]`; `None` is plain ReLU.
    pub threshold: Option<Tensor>,
}

impl Transcoder {
    /// Feature activations `[n, d_tc]` of inputs `x` `[n, d_model]`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let pre = x
            .matmul(&self.w_enc.t().context("W_enc transpose")?)
            .and_then(|p| p.broadcast_add(&self.b_enc))
            .context("encoder")?;
        jump_relu(&pre, self.threshold.as_ref())
    }

    /// Reconstruction `[n, d_model]` from activations `[n, d_tc]`.
    pub fn decode(&self, acts: &Tensor) -> Result<Tensor> {
        acts.matmul(&self.w_dec)
            .and_then(|y| y.broadcast_add(&self.b_dec))
            .context("decoder")
    }

    /// Dictionary size.
    pub fn d_tc(&self) -> usize {
        self.b_enc.dims()[0]
    }

    /// Writes `layer_{l}.safetensors` content to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut ts = vec![
            ("W_enc".to_string(), self.w_enc.clone()),
            ("W_dec".to_string(), self.w_dec.clone()),
            ("b_enc".to_string(), self.b_enc.clone()),
            ("b_dec".to_string(), self.b_dec.clone()),
        ];
        if let Some(th) = &self.threshold {
            ts.push(("activation_function.threshold".to_string(), th.clone()));
        }
        save_safetensors(path, &ts)
    }

    /// Reads a native circuit-tracer PLT file, checking shapes.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let map = candle_core::safetensors::load(path, device).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("not a readable safetensors file: {e}"),
        })?;
        let get = |k: &str| -> Result<Tensor> {
            map.get(k)
                .ok_or_else(|| Error::BadFile {
                    path: path.to_path_buf(),
                    reason: format!("missing tensor `{k}`"),
                })?
                .to_dtype(DType::F32)
                .context(k)
        };
        let tc = Transcoder {
            w_enc: get("W_enc")?,
            b_enc: get("b_enc")?,
            w_dec: get("W_dec")?,
            b_dec: get("b_dec")?,
            threshold: match map.contains_key("activation_function.threshold") {
                true => Some(get("activation_function.threshold")?),
                false => None,
            },
        };
        let (n, d) = (tc.b_enc.dims()[0], tc.b_dec.dims()[0]);
        let bad = tc.w_enc.dims() != [n, d]
            || tc.w_dec.dims() != [n, d]
            || tc.threshold.as_ref().is_some_and(|t| t.dims() != [n]);
        if bad {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                reason: format!(
                    "inconsistent shapes: W_enc {:?}, W_dec {:?}, b_enc [{n}], b_dec [{d}] (expected W_enc and W_dec [{n}, {d}])",
                    tc.w_enc.dims(),
                    tc.w_dec.dims()
                ),
            });
        }
        Ok(tc)
    }
}

/// JumpReLU `pre · 1[pre > θ]` (per-feature θ), or ReLU without thresholds; shared by the
/// per-layer and cross-layer transcoders.
pub(crate) fn jump_relu(pre: &Tensor, threshold: Option<&Tensor>) -> Result<Tensor> {
    match threshold {
        Some(th) => pre
            .broadcast_gt(th)
            .and_then(|m| m.to_dtype(pre.dtype()))
            .and_then(|m| pre * m)
            .context("JumpReLU"),
        None => pre.relu().context("ReLU"),
    }
}

/// Candidate JumpReLU cut-offs τ (contribution a·‖W_dec‖ in units of the output's standard
/// deviation), tried in increasing order until variance explained drops too much.
pub(crate) const THRESHOLD_GRID: [f64; 9] = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2];

/// A transcoder per layer plus the hooks they read and write.
#[derive(Debug, Clone)]
pub struct TranscoderSet {
    /// Layer `l`'s transcoder at index `l`.
    pub layers: Vec<Transcoder>,
    /// circuit-tracer's name of the input hook (`mlp.hook_in`).
    pub input_hook: String,
    /// circuit-tracer's name of the output hook (`mlp.hook_out`).
    pub output_hook: String,
}

/// Reads the `key: value` lines of a flat YAML file (all circuit-tracer's PLT configs use).
pub fn read_flat_yaml(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or("").trim_end();
        if line.trim_start().starts_with('#') || line.trim().is_empty() || line.starts_with(' ') {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().trim_matches('"').trim_matches('\'');
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    Ok(out)
}

impl TranscoderSet {
    /// Writes `config.yaml` and `layer_{l}.safetensors` into `dir`.
    pub fn save(&self, dir: &Path, model_name: &str) -> Result<()> {
        for (l, tc) in self.layers.iter().enumerate() {
            tc.save(&dir.join(format!("layer_{l}.safetensors")))?;
        }
        let yaml = format!(
            "# Per-layer transcoders for the adag demo model (circuit-tracer native PLT format).\n\
             # JumpReLU: each layer_{{l}}.safetensors holds activation_function.threshold.\n\
             model_kind: transcoder_set\n\
             model_name: {model_name}\n\
             feature_input_hook: {}\n\
             feature_output_hook: {}\n\
             scan: adag-demo/transcoders\n",
            self.input_hook, self.output_hook
        );
        write_atomic(&dir.join("config.yaml"), yaml.as_bytes())
    }

    /// Loads `dir/config.yaml` and `layer_0.safetensors`, `layer_1.safetensors`, ...
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.yaml");
        let cfg = read_flat_yaml(&cfg_path)?;
        if cfg.get("model_kind").map(String::as_str) != Some("transcoder_set") {
            return Err(Error::BadFile {
                path: cfg_path,
                reason: "model_kind must be `transcoder_set` (per-layer transcoders)".into(),
            });
        }
        let hook = |k: &str| -> Result<String> {
            cfg.get(k).cloned().ok_or_else(|| Error::BadFile {
                path: dir.join("config.yaml"),
                reason: format!("missing `{k}`"),
            })
        };
        let mut layers = Vec::new();
        while dir
            .join(format!("layer_{}.safetensors", layers.len()))
            .is_file()
        {
            let p = dir.join(format!("layer_{}.safetensors", layers.len()));
            layers.push(Transcoder::load(&p, device)?);
        }
        if layers.is_empty() {
            return Err(Error::BadFile {
                path: dir.to_path_buf(),
                reason: "no layer_0.safetensors".into(),
            });
        }
        Ok(TranscoderSet {
            layers,
            input_hook: hook("feature_input_hook")?,
            output_hook: hook("feature_output_hook")?,
        })
    }
}

/// Settings of transcoder training; the defaults are the bundle's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TranscoderConfig {
    /// Seed of the activation sample and the initial weights.
    pub seed: u64,
    /// Features per layer.
    pub d_tc: usize,
    /// Corpus rows whose activations are collected (10% are kept for evaluation).
    pub rows: usize,
    /// Tokens per row (at most).
    pub seq_len: usize,
    /// Optimiser steps per layer.
    pub steps: usize,
    /// Tokens per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// L1 coefficient (on variance-normalised units).
    pub l1: f64,
    /// Largest allowed drop in variance explained when choosing JumpReLU thresholds.
    pub max_fve_drop: f64,
    /// Decoder refit steps after thresholding (when the refit is not exact).
    pub refit_steps: usize,
    /// Refit the decoder exactly (least squares, [`crate::refit`]) rather than by
    /// `refit_steps` Adam steps. Older metrics.json files lack the field: they used Adam.
    #[serde(default)]
    pub exact_refit: bool,
    /// What the decoder bias is (see [`DecoderBias`]); older metrics.json files lack the
    /// field and were trained with a learned bias.
    #[serde(default)]
    pub decoder_bias: DecoderBias,
}

/// How a transcoder's decoder bias `b_dec` is set.
///
/// A learned bias is the usual choice, but in attribution graphs `b_dec` is not a node: what it
/// writes is an unexplained constant. On the demo the learned bias came to carry "say a
/// capital" on every prompt and the features learnt to subtract it, so every feature edge into
/// the answer was negative. Fixing the bias moves that share into features, where a graph
/// shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderBias {
    /// Initialised at the mean MLP output and trained with the rest.
    #[default]
    Learned,
    /// Fixed at the mean MLP output over the training tokens (never trained).
    Mean,
    /// Fixed at zero: the features reconstruct the whole output, mean included.
    Zero,
}

impl std::str::FromStr for DecoderBias {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "learned" => Ok(DecoderBias::Learned),
            "mean" => Ok(DecoderBias::Mean),
            "zero" => Ok(DecoderBias::Zero),
            _ => Err(format!(
                "unknown decoder bias `{s}`: expected learned, mean or zero"
            )),
        }
    }
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        TranscoderConfig {
            seed: 99,
            d_tc: 768,
            rows: 2000,
            seq_len: 40,
            steps: 1500,
            batch: 256,
            lr: 2e-3,
            l1: 0.01,
            max_fve_drop: 0.01,
            refit_steps: 300,
            exact_refit: true,
            decoder_bias: DecoderBias::Learned,
        }
    }
}

/// Activations of one layer: MLP inputs and outputs, one row per token.
pub struct LayerData {
    /// `[n, d_model]` inputs (`mlp.hook_in`).
    pub x: Tensor,
    /// `[n, d_model]` outputs (`mlp.hook_out`).
    pub y: Tensor,
}

/// Training and evaluation activations of every layer (BOS positions excluded: the BOS
/// residual is a fixed outlier that no sparse code needs to explain).
pub fn collect_activations(
    model: &Transformer,
    tok: &Tokenizer,
    rows: usize,
    seq_len: usize,
    seed: u64,
) -> Result<Vec<(LayerData, LayerData)>> {
    let n_layers = model.cfg.n_layers;
    let mut sampler = RowSampler::new(tok.clone(), seed, "transcoder-rows", seq_len)?;
    let hooks: Vec<HookName> = (0..n_layers)
        .flat_map(|l| {
            [
                HookName::Block(l, Site::Ln2Normalized),
                HookName::Block(l, Site::MlpOut),
            ]
        })
        .collect();
    let filter = CacheFilter::only(hooks);
    let mut xs: Vec<Vec<Tensor>> = vec![Vec::new(); n_layers];
    let mut ys: Vec<Vec<Tensor>> = vec![Vec::new(); n_layers];
    let chunk = 64;
    let mut done = 0;
    while done < rows {
        let n = chunk.min(rows - done);
        let batch = sampler.batch(n)?;
        let out = model
            .forward(&batch, &filter)
            .context("activation forward")?;
        for b in 0..n {
            for l in 0..n_layers {
                let get = |s: Site| -> Result<Tensor> {
                    let t = out.cache.item(HookName::Block(l, s), b).context("cache")?;
                    let len = t.dim(0).context("cache shape")?;
                    t.narrow(0, 1, len - 1).context("dropping BOS")
                };
                xs[l].push(get(Site::Ln2Normalized)?);
                ys[l].push(get(Site::MlpOut)?);
            }
        }
        done += n;
    }
    let mut out = Vec::new();
    for l in 0..n_layers {
        let x = Tensor::cat(&xs[l], 0).context("concatenating inputs")?;
        let y = Tensor::cat(&ys[l], 0).context("concatenating outputs")?;
        let n = x.dim(0).context("rows")?;
        let n_eval = n / 10;
        let split = |t: &Tensor, a: usize, len: usize| t.narrow(0, a, len).context("split");
        out.push((
            LayerData {
                x: split(&x, 0, n - n_eval)?,
                y: split(&y, 0, n - n_eval)?,
            },
            LayerData {
                x: split(&x, n - n_eval, n_eval)?,
                y: split(&y, n - n_eval, n_eval)?,
            },
        ));
    }
    Ok(out)
}

/// Reconstruction quality on a sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TcMetrics {
    /// 1 − Σ‖y − ŷ‖² / Σ‖y − ȳ‖²: fraction of MLP-output variance explained.
    pub fve: f64,
    /// Mean number of active features per token.
    pub l0: f64,
    /// Tokens in the sample.
    pub tokens: usize,
}

/// Variance explained and L0 of `tc` on `data`.
pub fn metrics(tc: &Transcoder, data: &LayerData) -> Result<TcMetrics> {
    let acts = tc.encode(&data.x)?;
    let recon = tc.decode(&acts)?;
    let err = (recon - &data.y)
        .and_then(|e| e.sqr())
        .and_then(|e| e.sum_all())
        .and_then(|e| e.to_scalar::<f32>())
        .context("error")? as f64;
    let mean = data.y.mean_keepdim(0).context("mean")?;
    let var = data
        .y
        .broadcast_sub(&mean)
        .and_then(|e| e.sqr())
        .and_then(|e| e.sum_all())
        .and_then(|e| e.to_scalar::<f32>())
        .context("variance")? as f64;
    let n = data.x.dim(0).context("rows")?;
    let active = acts
        .gt(0f32)
        .and_then(|m| m.to_dtype(DType::F32))
        .and_then(|m| m.sum_all())
        .and_then(|m| m.to_scalar::<f32>())
        .context("L0")? as f64;
    Ok(TcMetrics {
        fve: 1.0 - err / var.max(1e-30),
        l0: active / n.max(1) as f64,
        tokens: n,
    })
}

/// Mean over the batch of each row's squared reconstruction error, `‖acts·W_dec + b_dec − y‖²`:
/// the loss of both the training loop and the Adam decoder refit.
fn squared_error(acts: &Tensor, w_dec: &Var, b_dec: &Var, y: &Tensor) -> Result<Tensor> {
    let recon = acts
        .matmul(w_dec.as_tensor())
        .and_then(|r| r.broadcast_add(b_dec.as_tensor()))
        .context("decode")?;
    (recon - y)
        .and_then(|e| e.sqr())
        .and_then(|e| e.sum(D::Minus1))
        .and_then(|e| e.mean_all())
        .context("mse")
}

fn rows(data: &LayerData, idx: &[u32]) -> Result<(Tensor, Tensor)> {
    let i = Tensor::new(idx, data.x.device()).context("batch index")?;
    Ok((
        data.x.index_select(&i, 0).context("batch x")?,
        data.y.index_select(&i, 0).context("batch y")?,
    ))
}

/// Trains one layer's transcoder on `train` and returns it with its metrics on `eval`.
pub fn train_layer(
    train: &LayerData,
    eval: &LayerData,
    cfg: &TranscoderConfig,
    layer: usize,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<(Transcoder, TcMetrics)> {
    let dev = train.x.device().clone();
    let (n, d) = train.x.dims2().context("activation shape")?;
    if n == 0 {
        return Err(Error::Config("no activations to train on".into()));
    }
    let mut rng = Rng::derive(cfg.seed, &format!("transcoder-{layer}"));
    // Scale: the mean squared distance of outputs to their mean (so losses are FVU).
    let y_mean = train.y.mean_keepdim(0).context("mean")?;
    let var = train
        .y
        .broadcast_sub(&y_mean)
        .and_then(|e| e.sqr())
        .and_then(|e| e.sum_all())
        .and_then(|e| e.to_scalar::<f32>())
        .context("variance")? as f64
        / n as f64;
    let sd = var.sqrt();
    let k = cfg.d_tc;
    let rand = |rng: &mut Rng, s: f64| -> Result<Tensor> {
        let v: Vec<f32> = (0..k * d).map(|_| (rng.normal() * s) as f32).collect();
        Tensor::from_vec(v, (k, d), &dev).context("init")
    };
    // Decoder rows of norm 0.1·sd; encoder = decoder direction (a common, stable init).
    let dec0 = rand(&mut rng, 1.0)?;
    let norms = dec0
        .sqr()
        .and_then(|t| t.sum_keepdim(1))
        .and_then(|t| t.sqrt())
        .context("norm")?;
    let dir = dec0.broadcast_div(&norms).context("normalise")?;
    let w_dec = Var::from_tensor(&(&dir * (0.1 * sd)).context("init")?).context("var")?;
    let x_rms = train
        .x
        .sqr()
        .and_then(|t| t.mean_all())
        .and_then(|t| t.to_scalar::<f32>())
        .context("x rms")? as f64;
    let w_enc =
        Var::from_tensor(&(&dir * (1.0 / (x_rms.sqrt() * (d as f64).sqrt()))).context("init")?)
            .context("var")?;
    let b_enc = Var::zeros(k, DType::F32, &dev).context("var")?;
    let b_dec0 = match cfg.decoder_bias {
        DecoderBias::Zero => y_mean.squeeze(0).and_then(|m| m.zeros_like()),
        DecoderBias::Learned | DecoderBias::Mean => y_mean.squeeze(0),
    }
    .context("b_dec")?;
    let b_dec = Var::from_tensor(&b_dec0).context("var")?;
    // A fixed bias is a Var the optimisers never see.
    let learn_bias = cfg.decoder_bias == DecoderBias::Learned;
    let mut params = vec![w_enc.clone(), b_enc.clone(), w_dec.clone()];
    if learn_bias {
        params.push(b_dec.clone());
    }
    let mut opt = AdamW::new(
        params,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .context("optimiser")?;
    let l1_ramp = (cfg.steps / 10).max(1);
    for step in 0..cfg.steps {
        let lr = cfg.lr
            * if step >= cfg.steps * 4 / 5 {
                (cfg.steps - step) as f64 / (cfg.steps / 5).max(1) as f64
            } else {
                1.0
            };
        opt.set_learning_rate(lr);
        let idx: Vec<u32> = (0..cfg.batch).map(|_| rng.below(n) as u32).collect();
        let (x, y) = rows(train, &idx)?;
        let pre = x
            .matmul(&w_enc.as_tensor().t().context("t")?)
            .and_then(|p| p.broadcast_add(b_enc.as_tensor()))
            .context("encode")?;
        let acts = pre.relu().context("relu")?;
        let mse = (squared_error(&acts, &w_dec, &b_dec, &y)? / var).context("mse")?;
        let dec_norm = w_dec
            .as_tensor()
            .sqr()
            .and_then(|t| t.sum(1))
            .and_then(|t| t.sqrt())
            .context("decoder norms")?;
        let lam = cfg.l1 * ((step + 1) as f64 / l1_ramp as f64).min(1.0) / sd;
        let l1 = acts
            .broadcast_mul(&dec_norm)
            .and_then(|t| t.sum(D::Minus1))
            .and_then(|t| t.mean_all())
            .and_then(|t| t * lam)
            .context("l1")?;
        let loss = (&mse + &l1).context("loss")?;
        opt.backward_step(&loss).context("transcoder step")?;
        if step % 50 == 0 {
            on_step(step, mse.to_scalar::<f32>().context("loss value")?);
        }
    }
    let mut tc = Transcoder {
        w_enc: w_enc.as_tensor().clone(),
        b_enc: b_enc.as_tensor().clone(),
        w_dec: w_dec.as_tensor().clone(),
        b_dec: b_dec.as_tensor().clone(),
        threshold: None,
    };
    // JumpReLU thresholds: drop activations whose contribution a·‖w_dec‖ is below τ·sd,
    // with the largest τ (on a grid) that costs at most `max_fve_drop` on training data.
    let sample: Vec<u32> = (0..n.min(20000) as u32).collect();
    let (sx, sy) = rows(train, &sample)?;
    let sdata = LayerData { x: sx, y: sy };
    let base = metrics(&tc, &sdata)?;
    let dec_norm = tc
        .w_dec
        .sqr()
        .and_then(|t| t.sum(1))
        .and_then(|t| t.sqrt())
        .context("decoder norms")?;
    let mut best = dec_norm.zeros_like().context("zeros")?;
    for tau in THRESHOLD_GRID {
        let th = (dec_norm.recip().context("recip")? * (tau * sd)).context("threshold")?;
        let cand = Transcoder {
            threshold: Some(th.clone()),
            ..tc.clone()
        };
        let m = metrics(&cand, &sdata)?;
        if base.fve - m.fve > cfg.max_fve_drop {
            break;
        }
        best = th;
    }
    tc.threshold = Some(best);
    // Decoder refit with the code fixed: a least-squares problem, solved exactly, or (older
    // bundles) by Adam.
    if cfg.exact_refit {
        let acts = tc.encode(&train.x)?;
        let blocks = refit_decoder(&[&acts], &train.y, &mut tc.b_dec, learn_bias)?;
        tc.w_dec = blocks.into_iter().next().expect("one code, one block");
    } else {
        let w_dec = Var::from_tensor(&tc.w_dec).context("var")?;
        let b_dec = Var::from_tensor(&tc.b_dec).context("var")?;
        let mut params = vec![w_dec.clone()];
        if learn_bias {
            params.push(b_dec.clone());
        }
        let mut opt = AdamW::new(
            params,
            ParamsAdamW {
                lr: cfg.lr * 0.5,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .context("optimiser")?;
        for _ in 0..cfg.refit_steps {
            let idx: Vec<u32> = (0..cfg.batch).map(|_| rng.below(n) as u32).collect();
            let (x, y) = rows(train, &idx)?;
            let acts = tc.encode(&x)?.detach();
            let mse = squared_error(&acts, &w_dec, &b_dec, &y)?;
            opt.backward_step(&mse).context("refit step")?;
        }
        tc.w_dec = w_dec.as_tensor().clone();
        tc.b_dec = b_dec.as_tensor().clone();
    }
    let m = metrics(&tc, eval)?;
    Ok((tc, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Transcoder {
        let dev = Device::Cpu;
        Transcoder {
            w_enc: Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev).unwrap(),
            b_enc: Tensor::new(&[0f32, -0.5, 0.0], &dev).unwrap(),
            w_dec: Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &dev).unwrap(),
            b_dec: Tensor::new(&[0.5f32, -0.5], &dev).unwrap(),
            threshold: Some(Tensor::new(&[0.5f32, 0.0, 2.5], &dev).unwrap()),
        }
    }

    #[test]
    fn jumprelu_keeps_the_value_not_the_excess() {
        let tc = tiny();
        let x = Tensor::new(&[[1f32, 1.0]], &Device::Cpu).unwrap();
        // pre = [1, 0.5, 2]; thresholds [0.5, 0, 2.5] → [1, 0.5, 0].
        let a = tc.encode(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, vec![vec![1.0, 0.5, 0.0]]);
        let y = tc
            .decode(&tc.encode(&x).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(y, vec![vec![1.0 + 1.5 + 0.5, 2.0 + 2.0 - 0.5]]);
    }

    fn toy_data(n: usize) -> LayerData {
        let mut rng = Rng::derive(5, "toy");
        let x: Vec<f32> = (0..n * 4).map(|_| rng.normal() as f32).collect();
        // Outputs with a large mean, so a zero or mean bias is told apart from a learnt one.
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * 0.5 + 3.0 + (i % 4) as f32)
            .collect();
        LayerData {
            x: Tensor::from_vec(x, (n, 4), &Device::Cpu).unwrap(),
            y: Tensor::from_vec(y, (n, 4), &Device::Cpu).unwrap(),
        }
    }

    #[test]
    fn fixed_decoder_biases_stay_fixed_and_a_learnt_one_moves() {
        let data = toy_data(128);
        let mean = data.y.mean(0).unwrap().to_vec1::<f32>().unwrap();
        let cfg = |decoder_bias| TranscoderConfig {
            d_tc: 8,
            steps: 30,
            batch: 32,
            refit_steps: 10,
            decoder_bias,
            ..TranscoderConfig::default()
        };
        let b = |bias| {
            let (tc, _) = train_layer(&data, &data, &cfg(bias), 0, &mut |_, _| {}).unwrap();
            tc.b_dec.to_vec1::<f32>().unwrap()
        };
        assert_eq!(b(DecoderBias::Zero), vec![0.0; 4]);
        assert_eq!(b(DecoderBias::Mean), mean);
        let learnt = b(DecoderBias::Learned);
        assert!(
            learnt.iter().zip(&mean).any(|(a, m)| (a - m).abs() > 1e-4),
            "{learnt:?}"
        );
        assert_eq!("zero".parse::<DecoderBias>(), Ok(DecoderBias::Zero));
        assert_eq!(
            "none".parse::<DecoderBias>().unwrap_err(),
            "unknown decoder bias `none`: expected learned, mean or zero"
        );
    }

    #[test]
    fn set_round_trips_through_circuit_tracer_files() {
        let dir = tempfile::tempdir().unwrap();
        let set = TranscoderSet {
            layers: vec![tiny(), tiny()],
            input_hook: "mlp.hook_in".into(),
            output_hook: "mlp.hook_out".into(),
        };
        set.save(dir.path(), "test").unwrap();
        let back = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(back.layers.len(), 2);
        assert_eq!(back.input_hook, "mlp.hook_in");
        assert_eq!(back.output_hook, "mlp.hook_out");
        let st =
            candle_core::safetensors::load(dir.path().join("layer_1.safetensors"), &Device::Cpu)
                .unwrap();
        let mut keys: Vec<_> = st.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "W_dec",
                "W_enc",
                "activation_function.threshold",
                "b_dec",
                "b_enc"
            ]
        );
        assert_eq!(st["W_enc"].dims(), [3, 2]);
        let cfg = read_flat_yaml(&dir.path().join("config.yaml")).unwrap();
        assert_eq!(cfg["model_kind"], "transcoder_set");
        std::fs::remove_file(dir.path().join("layer_0.safetensors")).unwrap();
        let err = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("layer_0"), "{err}");
    }
}
