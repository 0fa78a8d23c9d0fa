//! A cross-layer transcoder (CLT) for the demo model, in circuit-tracer's native CLT format.
//!
//! Layer `i`'s features read layer `i`'s MLP input, like a per-layer transcoder, but each
//! feature has a decoder into *every* later MLP output, so one feature can stand for a
//! computation that several MLPs share:
//!
//! ```text
//! acts_i = JumpReLU(x_i · W_enc_iᵀ + b_enc_i)                     W_enc_i [d_tc, d_model]
//! ŷ_j    = Σ_{i ≤ j} acts_i · W_dec_i[:, j − i, :] + b_dec_j      W_dec_i [d_tc, L − i, d_model]
//! ```
//!
//! Training mirrors [`crate::transcoder`]: all layers jointly, on outputs scaled to unit
//! variance per layer (so no layer dominates the loss), ReLU + an L1 penalty weighted by each
//! feature's whole decoder norm (all its output slots), then one JumpReLU threshold rule for
//! every layer, then a decoder refit with the code fixed. Files: `W_enc_{i}.safetensors`
//! (`W_enc_i`, `b_enc_i`, `b_dec_i`, `threshold_i`) and `W_dec_{i}.safetensors` (`W_dec_i`),
//! with `config.yaml` saying `model_kind: cross_layer_transcoder`.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::error::{Context, Error, Result};
use crate::io::write_atomic;
use crate::lm::save_safetensors;
use crate::refit::refit_decoder;
use crate::rng::Rng;
use crate::transcoder::{
    jump_relu, DecoderBias, LayerData, TcMetrics, TranscoderConfig, THRESHOLD_GRID,
};

/// One source layer of a CLT.
#[derive(Debug, Clone)]
pub struct CltLayer {
    /// `[d_tc, d_model]`
    pub w_enc: Tensor,
    /// `[d_tc]`
    pub b_enc: Tensor,
    /// JumpReLU thresholds `[d_tc]`; `None` is plain ReLU.
    pub threshold: Option<Tensor>,
    /// `[d_tc, n_layers − i, d_model]`: slot `j − i` writes into layer `j`'s MLP output.
    pub w_dec: Tensor,
    /// `[d_model]`: the bias of layer `i`'s *output* reconstruction.
    pub b_dec: Tensor,
}

/// A cross-layer transcoder: source layer `i` at index `i`.
#[derive(Debug, Clone)]
pub struct CrossLayerTranscoder {
    /// The layers.
    pub layers: Vec<CltLayer>,
}

impl CrossLayerTranscoder {
    /// Feature activations `[n, d_tc]` of source layer `i` for its MLP inputs `x` `[n, d_model]`.
    pub fn encode(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let l = &self.layers[i];
        let pre = x
            .matmul(&l.w_enc.t().context("W_enc transpose")?)
            .and_then(|p| p.broadcast_add(&l.b_enc))
            .context("encoder")?;
        jump_relu(&pre, l.threshold.as_ref())
    }

    /// Reconstructions of every layer's MLP output from every layer's activations.
    pub fn decode(&self, acts: &[Tensor]) -> Result<Vec<Tensor>> {
        (0..self.layers.len())
            .map(|j| {
                let mut y = self.layers[j].b_dec.unsqueeze(0).context("b_dec")?;
                for (i, a) in acts.iter().enumerate().take(j + 1) {
                    let w = self.layers[i]
                        .w_dec
                        .narrow(1, j - i, 1)
                        .and_then(|w| w.squeeze(1))
                        .context("decoder slot")?;
                    y = a
                        .matmul(&w)
                        .and_then(|c| c.broadcast_add(&y))
                        .context("decoder")?;
                }
                Ok(y)
            })
            .collect()
    }

    /// Writes the native circuit-tracer CLT files and `config.yaml` into `dir`.
    pub fn save(&self, dir: &Path, input_hook: &str, output_hook: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(crate::error::io_err(dir))?;
        for (i, l) in self.layers.iter().enumerate() {
            let mut enc = vec![
                (format!("W_enc_{i}"), l.w_enc.clone()),
                (format!("b_enc_{i}"), l.b_enc.clone()),
                (format!("b_dec_{i}"), l.b_dec.clone()),
            ];
            if let Some(th) = &l.threshold {
                enc.push((format!("threshold_{i}"), th.clone()));
            }
            save_safetensors(&dir.join(format!("W_enc_{i}.safetensors")), &enc)?;
            save_safetensors(
                &dir.join(format!("W_dec_{i}.safetensors")),
                &[(format!("W_dec_{i}"), l.w_dec.clone())],
            )?;
        }
        let yaml = format!(
            "# Cross-layer transcoder for the adag demo model (circuit-tracer native CLT format).\n\
             # JumpReLU: each W_enc_{{i}}.safetensors holds threshold_{{i}}.\n\
             model_kind: cross_layer_transcoder\n\
             model_name: adag-demo\n\
             feature_input_hook: {input_hook}\n\
             feature_output_hook: {output_hook}\n\
             scan: adag-demo/clt\n"
        );
        write_atomic(&dir.join("config.yaml"), yaml.as_bytes())
    }

    /// Reads a native CLT directory written by [`CrossLayerTranscoder::save`] (or
    /// circuit-tracer), checking shapes.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let mut layers = Vec::new();
        while dir
            .join(format!("W_enc_{}.safetensors", layers.len()))
            .is_file()
        {
            let i = layers.len();
            let read = |name: &str| -> Result<std::collections::HashMap<String, Tensor>> {
                let path = dir.join(format!("{name}_{i}.safetensors"));
                candle_core::safetensors::load(&path, device).map_err(|e| Error::BadFile {
                    path,
                    reason: format!("not a readable safetensors file: {e}"),
                })
            };
            let (enc, dec) = (read("W_enc")?, read("W_dec")?);
            let get = |m: &std::collections::HashMap<String, Tensor>, file: &str, k: String| {
                m.get(&k)
                    .ok_or_else(|| Error::BadFile {
                        path: dir.join(format!("{file}_{i}.safetensors")),
                        reason: format!("missing tensor `{k}`"),
                    })?
                    .to_dtype(DType::F32)
                    .and_then(|t| t.contiguous())
                    .context("tensor")
            };
            layers.push(CltLayer {
                w_enc: get(&enc, "W_enc", format!("W_enc_{i}"))?,
                b_enc: get(&enc, "W_enc", format!("b_enc_{i}"))?,
                b_dec: get(&enc, "W_enc", format!("b_dec_{i}"))?,
                threshold: match enc.contains_key(&format!("threshold_{i}")) {
                    true => Some(
                        get(&enc, "W_enc", format!("threshold_{i}"))?
                            .flatten_all()
                            .context("threshold")?,
                    ),
                    false => None,
                },
                w_dec: get(&dec, "W_dec", format!("W_dec_{i}"))?,
            });
        }
        let n = layers.len();
        if n == 0 {
            return Err(Error::BadFile {
                path: dir.to_path_buf(),
                reason: "no W_enc_0.safetensors (not a cross-layer transcoder directory)".into(),
            });
        }
        for (i, l) in layers.iter().enumerate() {
            let (k, d) = (l.b_enc.dims()[0], l.b_dec.dims()[0]);
            if l.w_enc.dims() != [k, d] || l.w_dec.dims() != [k, n - i, d] {
                return Err(Error::BadFile {
                    path: dir.join(format!("W_dec_{i}.safetensors")),
                    reason: format!(
                        "inconsistent shapes: W_enc_{i} {:?}, W_dec_{i} {:?} (expected [{k}, {d}] and [{k}, {}, {d}])",
                        l.w_enc.dims(),
                        l.w_dec.dims(),
                        n - i
                    ),
                });
            }
        }
        Ok(CrossLayerTranscoder { layers })
    }
}

/// Per output layer: variance explained of the MLP output; per source layer: mean L0.
pub fn clt_metrics(clt: &CrossLayerTranscoder, data: &[&LayerData]) -> Result<Vec<TcMetrics>> {
    let acts: Vec<Tensor> = data
        .iter()
        .enumerate()
        .map(|(i, d)| clt.encode(i, &d.x))
        .collect::<Result<_>>()?;
    let recon = clt.decode(&acts)?;
    let scalar = |t: candle_core::Result<Tensor>| -> Result<f64> {
        Ok(t.and_then(|t| t.to_scalar::<f32>()).context("metric")? as f64)
    };
    let mut out = Vec::new();
    for (j, d) in data.iter().enumerate() {
        let n = d.y.dim(0).context("rows")?;
        let err = scalar((&recon[j] - &d.y).and_then(|e| e.sqr()?.sum_all()))?;
        let mean = d.y.mean_keepdim(0).context("mean")?;
        let var = scalar(d.y.broadcast_sub(&mean).and_then(|e| e.sqr()?.sum_all()))?;
        let active = scalar(
            acts[j]
                .gt(0f32)
                .and_then(|m| m.to_dtype(DType::F32)?.sum_all()),
        )?;
        out.push(TcMetrics {
            fve: 1.0 - err / var.max(1e-30),
            l0: active / n.max(1) as f64,
            tokens: n,
        });
    }
    Ok(out)
}

fn mean_fve(m: &[TcMetrics]) -> f64 {
    m.iter().map(|m| m.fve).sum::<f64>() / m.len().max(1) as f64
}

/// Trains a CLT on every layer's (train, eval) activations (the rows of all layers are the
/// same tokens, as [`crate::transcoder::collect_activations`] returns them) and returns it
/// with its metrics on the evaluation rows.
pub fn train_clt(
    data: &[(LayerData, LayerData)],
    cfg: &TranscoderConfig,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<(CrossLayerTranscoder, Vec<TcMetrics>)> {
    let n_layers = data.len();
    if n_layers == 0 {
        return Err(Error::Config("no layers to train a CLT on".into()));
    }
    let dev = data[0].0.x.device().clone();
    let (n, d) = data[0].0.x.dims2().context("activation shape")?;
    if n == 0 || data.iter().any(|(t, _)| t.x.dims2().ok() != Some((n, d))) {
        return Err(Error::Config(
            "every layer needs the same non-empty token rows to train a CLT".into(),
        ));
    }
    let mut rng = Rng::derive(cfg.seed, "clt");
    let k = cfg.d_tc;
    // Per-layer output scale: training targets are (y − mean) / sd, so each layer's loss is
    // its fraction of unexplained variance.
    let mut means = Vec::new();
    let mut sds = Vec::new();
    for (t, _) in data {
        let m = t.y.mean_keepdim(0).context("mean")?;
        let var =
            t.y.broadcast_sub(&m)
                .and_then(|e| e.sqr()?.sum_all()?.to_scalar::<f32>())
                .context("variance")? as f64
                / n as f64;
        means.push(m);
        sds.push(var.sqrt().max(1e-12));
    }
    let normal = |rng: &mut Rng, shape: &[usize]| -> Result<Tensor> {
        let len: usize = shape.iter().product();
        let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(v, shape, &dev).context("init")
    };
    let mut w_enc = Vec::new();
    let mut b_enc = Vec::new();
    let mut w_dec = Vec::new();
    for (i, (t, _)) in data.iter().enumerate() {
        let slots = n_layers - i;
        // Decoder rows of total norm 0.1 (unit-variance targets); encoder = the first slot's
        // direction, scaled to the input's size.
        let dec0 = normal(&mut rng, &[k, slots, d])?;
        let norm = dec0
            .sqr()
            .and_then(|t| t.sum_keepdim(2)?.sum_keepdim(1)?.sqrt())
            .context("norm")?;
        let dec = dec0
            .broadcast_div(&norm)
            .and_then(|t| t * 0.1)
            .context("init")?;
        let x_rms =
            t.x.sqr()
                .and_then(|t| t.mean_all()?.to_scalar::<f32>())
                .context("x rms")? as f64;
        let first = dec
            .narrow(1, 0, 1)
            .and_then(|t| t.squeeze(1))
            .context("init")?;
        let fnorm = first
            .sqr()
            .and_then(|t| t.sum_keepdim(1)?.sqrt())
            .context("norm")?;
        let enc = first
            .broadcast_div(&fnorm)
            .and_then(|t| t * (1.0 / (x_rms.sqrt() * (d as f64).sqrt())))
            .context("init")?;
        w_enc.push(Var::from_tensor(&enc).context("var")?);
        b_enc.push(Var::zeros(k, DType::F32, &dev).context("var")?);
        w_dec.push(Var::from_tensor(&dec).context("var")?);
    }
    // b_dec in unit-variance units: 0 is the mean output; a zero bias in model units is
    // −mean/sd. A fixed bias is a Var the optimisers never see.
    let b_dec: Vec<Var> = (0..n_layers)
        .map(|l| {
            let b = match cfg.decoder_bias {
                DecoderBias::Zero => means[l].squeeze(0).and_then(|m| m.neg()? / sds[l]),
                DecoderBias::Learned | DecoderBias::Mean => Tensor::zeros(d, DType::F32, &dev),
            };
            Var::from_tensor(&b.context("b_dec")?).context("var")
        })
        .collect::<Result<_>>()?;
    let learn_bias = cfg.decoder_bias == DecoderBias::Learned;
    let params: Vec<Var> = w_enc
        .iter()
        .chain(&b_enc)
        .chain(&w_dec)
        .chain(b_dec.iter().filter(|_| learn_bias))
        .cloned()
        .collect();
    let adam = |lr: f64, vars: Vec<Var>| {
        AdamW::new(
            vars,
            ParamsAdamW {
                lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .context("optimiser")
    };
    let mut opt = adam(cfg.lr, params)?;
    // A batch of the same token rows at every layer, targets normalised.
    let batch = |rng: &mut Rng| -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let idx: Vec<u32> = (0..cfg.batch).map(|_| rng.below(n) as u32).collect();
        let i = Tensor::new(idx.as_slice(), &dev).context("batch index")?;
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for (l, (t, _)) in data.iter().enumerate() {
            xs.push(t.x.index_select(&i, 0).context("batch x")?);
            ys.push(
                t.y.index_select(&i, 0)
                    .and_then(|y| y.broadcast_sub(&means[l])? / sds[l])
                    .context("batch y")?,
            );
        }
        Ok((xs, ys))
    };
    let current =
        |w_enc: &[Var], b_enc: &[Var], w_dec: &[Var], b_dec: &[Var]| CrossLayerTranscoder {
            layers: (0..n_layers)
                .map(|i| CltLayer {
                    w_enc: w_enc[i].as_tensor().clone(),
                    b_enc: b_enc[i].as_tensor().clone(),
                    threshold: None,
                    w_dec: w_dec[i].as_tensor().clone(),
                    b_dec: b_dec[i].as_tensor().clone(),
                })
                .collect(),
        };
    let mse_of = |recon: &[Tensor], ys: &[Tensor]| -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (r, y) in recon.iter().zip(ys) {
            let m = (r - y)
                .and_then(|e| e.sqr()?.sum(D::Minus1)?.mean_all())
                .context("mse")?;
            total = Some(match total {
                Some(t) => (t + m).context("mse")?,
                None => m,
            });
        }
        (total.expect("at least one layer") / n_layers as f64).context("mse")
    };
    let l1_ramp = (cfg.steps / 10).max(1);
    for step in 0..cfg.steps {
        let lr = cfg.lr
            * if step >= cfg.steps * 4 / 5 {
                (cfg.steps - step) as f64 / (cfg.steps / 5).max(1) as f64
            } else {
                1.0
            };
        opt.set_learning_rate(lr);
        let (xs, ys) = batch(&mut rng)?;
        let model = current(&w_enc, &b_enc, &w_dec, &b_dec);
        let acts: Vec<Tensor> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| model.encode(i, x))
            .collect::<Result<_>>()?;
        let recon = model.decode(&acts)?;
        let mse = mse_of(&recon, &ys)?;
        let lam = cfg.l1 * ((step + 1) as f64 / l1_ramp as f64).min(1.0);
        let mut loss = mse.clone();
        for (i, a) in acts.iter().enumerate() {
            let dec_norm = w_dec[i]
                .as_tensor()
                .sqr()
                .and_then(|t| t.sum(2)?.sum(1)?.sqrt())
                .context("decoder norms")?;
            let l1 = a
                .broadcast_mul(&dec_norm)
                .and_then(|t| t.sum(D::Minus1)?.mean_all()? * (lam / n_layers as f64))
                .context("l1")?;
            loss = (loss + l1).context("loss")?;
        }
        opt.backward_step(&loss).context("CLT step")?;
        if step % 50 == 0 {
            on_step(step, mse.to_scalar::<f32>().context("loss value")?);
        }
    }
    // Back to the model's units: decoder slots into layer j and b_dec_j times sd_j, plus mean_j.
    let mut clt = current(&w_enc, &b_enc, &w_dec, &b_dec);
    let unscale = |clt: &mut CrossLayerTranscoder| -> Result<()> {
        for i in 0..n_layers {
            let slots: Vec<Tensor> = (i..n_layers)
                .map(|j| {
                    clt.layers[i]
                        .w_dec
                        .narrow(1, j - i, 1)
                        .and_then(|w| w * sds[j])
                        .context("unscale")
                })
                .collect::<Result<_>>()?;
            clt.layers[i].w_dec = Tensor::cat(&slots, 1).context("unscale")?;
            clt.layers[i].b_dec = (&clt.layers[i].b_dec * sds[i])
                .and_then(|b| b.broadcast_add(&means[i].squeeze(0)?))
                .context("unscale")?;
        }
        Ok(())
    };
    unscale(&mut clt)?;
    // JumpReLU thresholds: drop activations whose contribution a·‖W_dec[f]‖ (in unit-variance
    // units) is below τ, with the largest τ on a grid that costs at most `max_fve_drop` of the
    // mean variance explained on training rows.
    let m = n.min(20000);
    let sample: Vec<LayerData> = data
        .iter()
        .map(|(t, _)| -> Result<LayerData> {
            Ok(LayerData {
                x: t.x.narrow(0, 0, m).context("sample")?,
                y: t.y.narrow(0, 0, m).context("sample")?,
            })
        })
        .collect::<Result<_>>()?;
    let sample_refs: Vec<&LayerData> = sample.iter().collect();
    let base = mean_fve(&clt_metrics(&clt, &sample_refs)?);
    let unit_norms: Vec<Tensor> = w_dec
        .iter()
        .map(|w| {
            w.as_tensor()
                .sqr()
                .and_then(|t| t.sum(2)?.sum(1)?.sqrt())
                .context("decoder norms")
        })
        .collect::<Result<_>>()?;
    let mut best: Vec<Tensor> = unit_norms
        .iter()
        .map(|u| u.zeros_like().context("zeros"))
        .collect::<Result<_>>()?;
    for tau in THRESHOLD_GRID {
        let th: Vec<Tensor> = unit_norms
            .iter()
            .map(|u| u.recip().and_then(|r| r * tau).context("threshold"))
            .collect::<Result<_>>()?;
        let mut cand = clt.clone();
        for (l, t) in cand.layers.iter_mut().zip(&th) {
            l.threshold = Some(t.clone());
        }
        if base - mean_fve(&clt_metrics(&cand, &sample_refs)?) > cfg.max_fve_drop {
            break;
        }
        best = th;
    }
    for (l, t) in clt.layers.iter_mut().zip(best) {
        l.threshold = Some(t);
    }
    // Decoder refit with the code fixed (model units): exact least squares, or (older
    // bundles) Adam steps.
    if cfg.exact_refit {
        refit_exact(&mut clt, data, learn_bias)?;
    } else {
        let w_dec: Vec<Var> = clt
            .layers
            .iter()
            .map(|l| Var::from_tensor(&l.w_dec).context("var"))
            .collect::<Result<_>>()?;
        let b_dec: Vec<Var> = clt
            .layers
            .iter()
            .map(|l| Var::from_tensor(&l.b_dec).context("var"))
            .collect::<Result<_>>()?;
        let mut opt = adam(
            cfg.lr * 0.5,
            w_dec
                .iter()
                .chain(b_dec.iter().filter(|_| learn_bias))
                .cloned()
                .collect(),
        )?;
        for _ in 0..cfg.refit_steps {
            let (xs, ys) = batch(&mut rng)?;
            let acts: Vec<Tensor> = xs
                .iter()
                .enumerate()
                .map(|(i, x)| clt.encode(i, x).map(|a| a.detach()))
                .collect::<Result<_>>()?;
            let mut model = clt.clone();
            for (i, l) in model.layers.iter_mut().enumerate() {
                l.w_dec = w_dec[i].as_tensor().clone();
                l.b_dec = b_dec[i].as_tensor().clone();
            }
            let recon = model.decode(&acts)?;
            // Compare in unit-variance units so every layer weighs the same.
            let scaled: Vec<Tensor> = recon
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    r.broadcast_sub(&means[j])
                        .and_then(|r| r / sds[j])
                        .context("scale")
                })
                .collect::<Result<_>>()?;
            opt.backward_step(&mse_of(&scaled, &ys)?)
                .context("refit step")?;
        }
        for (i, l) in clt.layers.iter_mut().enumerate() {
            l.w_dec = w_dec[i].as_tensor().clone();
            l.b_dec = b_dec[i].as_tensor().clone();
        }
    }
    let eval: Vec<&LayerData> = data.iter().map(|(_, e)| e).collect();
    let m = clt_metrics(&clt, &eval)?;
    Ok((clt, m))
}

/// The exact refit ([`crate::refit`]): output layer `j`'s decoder slots (and its bias when it is
/// learned) are the least-squares solution given the codes of layers `0..=j` on every training
/// token. A fixed bias is subtracted from the target first.
fn refit_exact(
    clt: &mut CrossLayerTranscoder,
    data: &[(LayerData, LayerData)],
    learn_bias: bool,
) -> Result<()> {
    let n_layers = clt.layers.len();
    let acts: Vec<Tensor> = data
        .iter()
        .enumerate()
        .map(|(i, (t, _))| clt.encode(i, &t.x))
        .collect::<Result<_>>()?;
    let mut slots: Vec<Vec<Tensor>> = vec![Vec::new(); n_layers];
    for (j, (t, _)) in data.iter().enumerate() {
        let codes: Vec<&Tensor> = acts[..=j].iter().collect();
        let blocks = refit_decoder(&codes, &t.y, &mut clt.layers[j].b_dec, learn_bias)?;
        for (i, block) in blocks.into_iter().enumerate() {
            slots[i].push(block);
        }
    }
    for (l, s) in clt.layers.iter_mut().zip(slots) {
        l.w_dec = Tensor::stack(&s, 1).context("refit decoder slots")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(threshold: bool) -> CrossLayerTranscoder {
        let dev = Device::Cpu;
        let mut rng = Rng::new(5);
        let mut t = |shape: &[usize]| {
            let len: usize = shape.iter().product();
            let v: Vec<f32> = (0..len).map(|_| rng.normal() as f32).collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let (k, d, n) = (6, 4, 3);
        CrossLayerTranscoder {
            layers: (0..n)
                .map(|i| CltLayer {
                    w_enc: t(&[k, d]),
                    b_enc: t(&[k]),
                    threshold: threshold.then(|| (t(&[k]).abs().unwrap() * 0.3).unwrap()),
                    w_dec: t(&[k, n - i, d]),
                    b_dec: t(&[d]),
                })
                .collect(),
        }
    }

    #[test]
    fn decode_sums_every_earlier_layers_slot_into_each_output() {
        let clt = tiny(false);
        let x: Vec<Tensor> = (0..3)
            .map(|i| Tensor::new(&[[0.5f32 + i as f32, -1.0, 2.0, 0.25]], &Device::Cpu).unwrap())
            .collect();
        let acts: Vec<Tensor> = x
            .iter()
            .enumerate()
            .map(|(i, x)| clt.encode(i, x).unwrap())
            .collect();
        let y = clt.decode(&acts).unwrap();
        // By hand, element by element: y_j = b_dec_j + Σ_{i≤j} Σ_f a_i[f] W_dec_i[f, j−i, :].
        for (j, yj) in y.iter().enumerate() {
            let mut want = clt.layers[j].b_dec.to_vec1::<f32>().unwrap();
            for (i, a) in acts.iter().enumerate().take(j + 1) {
                let a = a.squeeze(0).unwrap().to_vec1::<f32>().unwrap();
                let w = clt.layers[i].w_dec.to_vec3::<f32>().unwrap();
                for (f, af) in a.iter().enumerate() {
                    for (c, wc) in want.iter_mut().enumerate() {
                        *wc += af * w[f][j - i][c];
                    }
                }
            }
            let got = yj.squeeze(0).unwrap().to_vec1::<f32>().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "layer {j}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn files_round_trip_and_bad_shapes_are_named() {
        let clt = tiny(true);
        let dir = tempfile::tempdir().unwrap();
        clt.save(dir.path(), "mlp.hook_in", "mlp.hook_out").unwrap();
        let back = CrossLayerTranscoder::load(dir.path(), &Device::Cpu).unwrap();
        for (a, b) in clt.layers.iter().zip(&back.layers) {
            for (x, y) in [
                (&a.w_enc, &b.w_enc),
                (&a.w_dec, &b.w_dec),
                (&a.b_dec, &b.b_dec),
                (a.threshold.as_ref().unwrap(), b.threshold.as_ref().unwrap()),
            ] {
                let d = (x - y).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
            }
        }
        let yaml = std::fs::read_to_string(dir.path().join("config.yaml")).unwrap();
        assert!(yaml.contains("model_kind: cross_layer_transcoder"));
        // A decoder with the wrong number of output slots.
        save_safetensors(
            &dir.path().join("W_dec_1.safetensors"),
            &[(
                "W_dec_1".into(),
                Tensor::zeros((6, 3, 4), DType::F32, &Device::Cpu).unwrap(),
            )],
        )
        .unwrap();
        let err = CrossLayerTranscoder::load(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("W_dec_1") && err.contains("[6, 2, 4]"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = CrossLayerTranscoder::load(empty.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("W_enc_0.safetensors"), "{err}");
    }

    #[test]
    fn training_explains_a_cross_layer_signal() {
        // Outputs of layer 1 are a linear function of layer 0's input only: a CLT can explain
        // them with layer-0 features' second decoder slot.
        let dev = Device::Cpu;
        let mut rng = Rng::new(11);
        let (n, d) = (2000, 8);
        let mut t = |shape: &[usize], s: f64| {
            let len: usize = shape.iter().product();
            let v: Vec<f32> = (0..len).map(|_| (rng.normal() * s) as f32).collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let x0 = t(&[n, d], 1.0).relu().unwrap();
        let x1 = t(&[n, d], 1.0);
        let m = t(&[d, d], 0.5);
        let y0 = x0.matmul(&t(&[d, d], 0.5)).unwrap();
        let y1 = x0.matmul(&m).unwrap();
        let split = |x: &Tensor, y: &Tensor| {
            (
                LayerData {
                    x: x.narrow(0, 0, 1800).unwrap(),
                    y: y.narrow(0, 0, 1800).unwrap(),
                },
                LayerData {
                    x: x.narrow(0, 1800, 200).unwrap(),
                    y: y.narrow(0, 1800, 200).unwrap(),
                },
            )
        };
        let data = vec![split(&x0, &y0), split(&x1, &y1)];
        let cfg = TranscoderConfig {
            d_tc: 32,
            steps: 400,
            batch: 128,
            l1: 1e-4,
            refit_steps: 50,
            ..TranscoderConfig::default()
        };
        let (_, m) = train_clt(&data, &cfg, &mut |_, _| {}).unwrap();
        assert!(m[0].fve > 0.8, "{m:?}");
        assert!(
            m[1].fve > 0.8,
            "layer 1 output needs layer 0's features: {m:?}"
        );
        // The exact refit is the least-squares optimum for the code the thresholds fix, so on
        // the training rows no number of Adam steps from the same code does better, in any
        // output layer (a slot written into the wrong layer or a dropped bias would).
        let train: Vec<&LayerData> = data.iter().map(|(t, _)| t).collect();
        let fit = |exact: bool, bias: DecoderBias| {
            let cfg = TranscoderConfig {
                exact_refit: exact,
                refit_steps: 200,
                decoder_bias: bias,
                ..cfg.clone()
            };
            let (clt, _) = train_clt(&data, &cfg, &mut |_, _| {}).unwrap();
            clt_metrics(&clt, &train).unwrap()
        };
        for bias in [DecoderBias::Zero, DecoderBias::Learned] {
            let (exact, adam) = (fit(true, bias), fit(false, bias));
            for (e, a) in exact.iter().zip(&adam) {
                assert!(
                    e.fve >= a.fve - 1e-6,
                    "{bias:?}: exact {exact:?} vs Adam {adam:?}"
                );
            }
        }
    }
}
