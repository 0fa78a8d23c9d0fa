//! The demo model's trainer: candle autograd through adag-model's forward pass, AdamW with
//! decoupled weight decay (none on norm gains), linear warm-up then cosine decay, global
//! gradient-norm clipping, and a single seed for initial weights and data order.
//!
//! Everything is deterministic given the seed and the thread count: the corpus stream and the
//! initial weights come from [`Rng`](crate::rng::Rng), and candle's CPU kernels are
//! deterministic for a fixed number of threads.

use std::path::Path;
use std::time::Instant;

use adag_model::{Batch, CacheFilter};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use tokenizers::Tokenizer;

use crate::bpe;
use crate::corpus::{eval_items, tokenizer_corpus};
use crate::data::{lm_targets, RowSampler};
use crate::error::{Context, Error, Result};
use crate::eval::{evaluate, EvalReport};
use crate::io::write_atomic;
use crate::lm::{LmParams, LmShape};

/// Settings of one training run; the defaults are the bundled demo model's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Seed of the tokenizer corpus, the initial weights and the data order.
    pub seed: u64,
    /// Residual width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// SwiGLU width.
    pub d_mlp: usize,
    /// BPE vocabulary size.
    pub vocab_size: usize,
    /// Sentences the tokenizer is trained on.
    pub tokenizer_sentences: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Tokens per row (at most).
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_frac: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// Decoupled weight decay on matrices.
    pub weight_decay: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Evaluate (and checkpoint) every this many steps; 0 = only at the end.
    pub eval_every: usize,
    /// Stop after this many steps of the `steps`-long schedule (the learning rate is then not
    /// fully decayed); `None` runs the whole schedule.
    #[serde(default)]
    pub stop_after: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1234,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            d_mlp: 512,
            vocab_size: 1200,
            tokenizer_sentences: 20000,
            steps: 5000,
            batch_size: 40,
            seq_len: 40,
            lr: 3e-3,
            min_lr_frac: 0.05,
            warmup: 200,
            weight_decay: 0.2,
            beta2: 0.98,
            grad_clip: 1.0,
            eval_every: 500,
            stop_after: None,
        }
    }
}

impl TrainConfig {
    /// A tiny configuration for tests: seconds, not minutes.
    pub fn tiny() -> Self {
        TrainConfig {
            d_model: 32,
            n_layers: 1,
            n_heads: 2,
            d_mlp: 64,
            vocab_size: 300,
            tokenizer_sentences: 2000,
            steps: 100,
            batch_size: 8,
            seq_len: 24,
            lr: 1e-2,
            warmup: 10,
            eval_every: 0,
            ..Self::default()
        }
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine to `min_lr_frac·lr`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let t = ((step - self.warmup) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_frac;
        min + 0.5 * (self.lr - min) * (1.0 + (std::f64::consts::PI * t).cos())
    }

    fn check(&self) -> Result<()> {
        if self.steps == 0 || self.batch_size == 0 || self.seq_len < 8 {
            return Err(Error::Config(
                "steps and batch size must be positive and seq_len at least 8".into(),
            ));
        }
        Ok(())
    }
}

/// What the trainer reports while it runs.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// The tokenizer is trained.
    Tokenizer {
        /// Its vocabulary size.
        vocab: usize,
    },
    /// The model is initialised.
    Init {
        /// Parameter count.
        n_params: usize,
    },
    /// One optimiser step finished.
    Step {
        /// 1-based step.
        step: usize,
        /// Training loss of the step's batch (mean nats per token).
        loss: f32,
        /// Learning rate used.
        lr: f64,
    },
    /// An evaluation (and checkpoint, when an output directory is set).
    Eval {
        /// Step after which it ran.
        step: usize,
        /// Scores.
        report: EvalReport,
    },
}

/// The trained model and how it got there.
pub struct Trained {
    /// Final parameters.
    pub params: LmParams,
    /// `tokenizer.json` text.
    pub tokenizer_json: String,
    /// Loss per step.
    pub losses: Vec<f32>,
    /// Final evaluation.
    pub report: EvalReport,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

/// Mean next-token cross-entropy of `batch` under `params` (differentiable).
pub fn lm_loss(params: &LmParams, batch: &Batch) -> Result<Tensor> {
    let model = params.transformer()?;
    let out = model
        .forward(batch, &CacheFilter::none())
        .context("forward")?;
    let (idx, tgt) = lm_targets(batch);
    let dev = out.logits.device().clone();
    let v = params.shape.d_vocab;
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, &dev).context("target indices")?;
    let tgt = Tensor::from_vec(tgt, n, &dev).context("targets")?;
    let logits = out
        .logits
        .reshape(((), v))
        .and_then(|l| l.index_select(&idx, 0))
        .context("selecting predicted positions")?;
    candle_nn::loss::cross_entropy(&logits, &tgt).context("cross-entropy")
}

/// Trains the tokenizer and the model. With `out`, checkpoints (model, tokenizer, `eval.json`)
/// are written there at every evaluation and at the end.
pub fn train_demo(
    cfg: &TrainConfig,
    out: Option<&Path>,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<Trained> {
    cfg.check()?;
    let start = Instant::now();
    let dev = Device::Cpu;
    let texts = tokenizer_corpus(cfg.seed, cfg.tokenizer_sentences);
    let tokenizer_json = bpe::train_tokenizer(&texts, cfg.vocab_size)?;
    let tok = Tokenizer::from_bytes(tokenizer_json.as_bytes())
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let d_vocab = tok.get_vocab_size(true);
    on_event(&TrainEvent::Tokenizer { vocab: d_vocab });

    let shape = LmShape {
        d_model: cfg.d_model,
        n_layers: cfg.n_layers,
        n_heads: cfg.n_heads,
        d_mlp: cfg.d_mlp,
        d_vocab,
    };
    let params = LmParams::init(shape, cfg.seed, &dev)?;
    on_event(&TrainEvent::Init {
        n_params: params.n_params(),
    });
    let (decay, no_decay): (Vec<_>, Vec<_>) = params
        .vars
        .iter()
        .partition(|(name, _)| LmParams::decays(name));
    let adam = |wd: f64| ParamsAdamW {
        lr: cfg.lr,
        beta1: 0.9,
        beta2: cfg.beta2,
        eps: 1e-8,
        weight_decay: wd,
    };
    let mut opt_decay = AdamW::new(
        decay.into_iter().map(|(_, v)| v.clone()).collect(),
        adam(cfg.weight_decay),
    )
    .context("optimiser")?;
    let mut opt_plain = AdamW::new(
        no_decay.into_iter().map(|(_, v)| v.clone()).collect(),
        adam(0.0),
    )
    .context("optimiser")?;

    let mut sampler = RowSampler::new(tok.clone(), cfg.seed, "train-rows", cfg.seq_len)?;
    let evals = eval_items();
    let mut losses = Vec::with_capacity(cfg.steps);
    let mut report = EvalReport::new();
    let save = |params: &LmParams, report: &EvalReport, dir: &Path| -> Result<()> {
        params.save_hf(dir)?;
        bpe::save_tokenizer(dir, &tokenizer_json)?;
        let json =
            serde_json::to_string_pretty(report).map_err(|e| Error::Config(e.to_string()))?;
        write_atomic(&dir.join("eval.json"), json.as_bytes())
    };
    for step in 0..cfg.steps {
        let lr = cfg.lr_at(step);
        opt_decay.set_learning_rate(lr);
        opt_plain.set_learning_rate(lr);
        let batch = sampler.batch(cfg.batch_size)?;
        let loss = lm_loss(&params, &batch)?;
        let mut grads = loss.backward().context("backward")?;
        clip_gradients(&params, &mut grads, cfg.grad_clip)?;
        opt_decay.step(&grads).context("AdamW step")?;
        opt_plain.step(&grads).context("AdamW step")?;
        let l = loss.to_scalar::<f32>().context("loss value")?;
        if !l.is_finite() {
            return Err(Error::Config(format!(
                "loss became {l} at step {}; lower --lr",
                step + 1
            )));
        }
        losses.push(l);
        on_event(&TrainEvent::Step {
            step: step + 1,
            loss: l,
            lr,
        });
        let last = step + 1 == cfg.steps || cfg.stop_after == Some(step + 1);
        if last || (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0) {
            let model = params.transformer()?.with_autograd(false);
            report = evaluate(&model, &tok, &evals)?;
            on_event(&TrainEvent::Eval {
                step: step + 1,
                report: report.clone(),
            });
            if let Some(dir) = out {
                save(&params, &report, dir)?;
            }
        }
        if last {
            break;
        }
    }
    Ok(Trained {
        params,
        tokenizer_json,
        losses,
        report,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`.
fn clip_gradients(
    params: &LmParams,
    grads: &mut candle_core::backprop::GradStore,
    max_norm: f64,
) -> Result<()> {
    if max_norm <= 0.0 {
        return Ok(());
    }
    let mut sq = 0f64;
    for v in params.vars.values() {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar::<f32>())
                .context("gradient norm")? as f64;
        }
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let s = max_norm / norm;
        for v in params.vars.values() {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * s).context("clipping")?);
            }
        }
    }
    Ok(())
}
