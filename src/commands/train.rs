//! `adag train demo` and `adag train transcoders`: reproduce the bundled demo model
//! (`models/demo`) and its transcoders on CPU.

use std::path::PathBuf;
use std::time::Instant;

use adag_model::{LoadOptions, Transformer};
use adag_train::eval::format_report;
use adag_train::trainer::{train_demo, TrainConfig, TrainEvent};
use adag_train::transcoder::{
    collect_activations, train_layer, TcMetrics, TranscoderConfig, TranscoderSet,
};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// What to train.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Tokenizer + Llama-architecture demo model on the task corpus (HF layout in --out).
    Demo(DemoArgs),
    /// Per-layer JumpReLU transcoders of a model's MLPs (circuit-tracer format in --out).
    Transcoders(TranscoderArgs),
}

/// `adag train demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output directory (config.json, model.safetensors, tokenizer files, eval.json).
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps (default: the bundle's).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of tokenizer corpus, weights and data order (default: the bundle's).
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate and checkpoint every N steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Stop after N steps of the schedule (the learning rate is then not fully decayed).
    #[arg(long)]
    stop_after: Option<usize>,
}

/// `adag train transcoders`.
#[derive(Debug, Args)]
pub struct TranscoderArgs {
    /// Model directory (default: the bundled demo model).
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Output directory (config.yaml, layer_{l}.safetensors, metrics.json).
    #[arg(long)]
    out: PathBuf,
    /// Features per layer.
    #[arg(long)]
    d_tc: Option<usize>,
    /// Steps per layer.
    #[arg(long)]
    steps: Option<usize>,
    /// L1 coefficient.
    #[arg(long)]
    l1: Option<f64>,
    /// Decoder bias: `learned` (trained), `mean` (fixed at the mean MLP output) or `zero`
    /// (fixed at zero, so the features carry everything a graph should show).
    #[arg(long)]
    decoder_bias: Option<adag_train::transcoder::DecoderBias>,
    /// Corpus rows whose activations are collected.
    #[arg(long)]
    rows: Option<usize>,
    /// Largest drop in variance explained that the JumpReLU thresholds may cost (smaller:
    /// more active features, smaller error nodes).
    #[arg(long)]
    max_fve_drop: Option<f64>,
    /// Train one cross-layer transcoder (decoders into every later layer, circuit-tracer's
    /// native CLT files) instead of per-layer transcoders; default 512 features per layer.
    #[arg(long)]
    clt: bool,
    /// Refit the decoder with N Adam steps after thresholding, as bundles trained before the
    /// exact least-squares refit were (`transcoders/`); by default the refit is exact.
    #[arg(long, value_name = "N")]
    adam_refit: Option<usize>,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

/// Runs a `train` subcommand.
pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Demo(a) => demo(a),
        TrainCommand::Transcoders(a) => transcoders(a),
    }
}

fn demo(a: DemoArgs) -> Result<()> {
    let mut cfg = TrainConfig::default();
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if let Some(e) = a.eval_every {
        cfg.eval_every = e;
    }
    cfg.stop_after = a.stop_after;
    let pb = bar(cfg.steps as u64, "training");
    let start = Instant::now();
    let trained = train_demo(&cfg, Some(&a.out), &mut |e| match e {
        TrainEvent::Tokenizer { vocab } => pb.println(format!("tokenizer: {vocab} tokens")),
        TrainEvent::Init { n_params } => pb.println(format!("model: {n_params} parameters")),
        TrainEvent::Step { step, loss, lr } => {
            pb.set_position(*step as u64);
            pb.set_message(format!("loss {loss:.3} lr {lr:.2e}"));
            if !pb.is_hidden() {
                return;
            }
            if step % 100 == 0 {
                eprintln!(
                    "step {step} loss {loss:.4} lr {lr:.2e} ({:.0}s)",
                    start.elapsed().as_secs_f64()
                );
            }
        }
        TrainEvent::Eval { step, report } => pb.println(format!(
            "eval after step {step}:\n{}",
            format_report(report)
        )),
    })
    .context("training the demo model")?;
    pb.finish_and_clear();
    adag_train::reference::write_reference(&a.out)
        .context("writing reference logits for tools/check_demo_in_transformers.py")?;
    println!(
        "trained in {:.0}s; final loss {:.4}\n{}\nwritten to {}",
        trained.seconds,
        trained.losses.last().copied().unwrap_or(f32::NAN),
        format_report(&trained.report),
        a.out.display()
    );
    Ok(())
}

fn transcoders(a: TranscoderArgs) -> Result<()> {
    let dir = match a.model {
        Some(d) => d,
        None => adag_train::bundle::default_model_dir()?,
    };
    let mut cfg = TranscoderConfig::default();
    if a.clt {
        cfg.d_tc = 512;
    }
    if let Some(v) = a.d_tc {
        cfg.d_tc = v;
    }
    if let Some(v) = a.steps {
        cfg.steps = v;
    }
    if let Some(v) = a.l1 {
        cfg.l1 = v;
    }
    if let Some(v) = a.decoder_bias {
        cfg.decoder_bias = v;
    }
    if let Some(v) = a.rows {
        cfg.rows = v;
    }
    if let Some(v) = a.max_fve_drop {
        cfg.max_fve_drop = v;
    }
    if let Some(v) = a.adam_refit {
        cfg.exact_refit = false;
        cfg.refit_steps = v;
    }
    let start = Instant::now();
    let model = Transformer::load(&dir, &LoadOptions::default())
        .with_context(|| format!("loading model from {}", dir.display()))?;
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("tokenizer.json").display()))?;
    eprintln!(
        "collecting MLP activations over {} corpus rows ...",
        cfg.rows
    );
    let data = collect_activations(&model, &tok, cfg.rows, cfg.seq_len, cfg.seed)?;
    if a.clt {
        return cross_layer(&data, &cfg, &a.out, start);
    }
    let mut layers = Vec::new();
    let mut report: Vec<TcMetrics> = Vec::new();
    for (l, (train, eval)) in data.iter().enumerate() {
        let pb = bar(cfg.steps as u64, &format!("layer {l}"));
        let (tc, m) = train_layer(train, eval, &cfg, l, &mut |s, mse| {
            pb.set_position(s as u64);
            pb.set_message(format!("layer {l} fvu {mse:.3}"));
        })?;
        pb.finish_and_clear();
        println!(
            "layer {l}: variance explained {:.3}, L0 {:.1} ({} held-out tokens)",
            m.fve, m.l0, m.tokens
        );
        layers.push(tc);
        report.push(m);
    }
    let set = TranscoderSet {
        layers,
        input_hook: "mlp.hook_in".into(),
        output_hook: "mlp.hook_out".into(),
    };
    set.save(&a.out, "adag-demo")?;
    write_metrics(&a.out, &cfg, "transcoder_set", &report, start)?;
    println!(
        "transcoders written to {} in {:.0}s",
        a.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_metrics(
    out: &std::path::Path,
    cfg: &TranscoderConfig,
    kind: &str,
    report: &[TcMetrics],
    start: Instant,
) -> Result<()> {
    let metrics = serde_json::json!({
        "kind": kind,
        "config": cfg,
        "layers": report.iter().enumerate().map(|(l, m)| serde_json::json!({"layer": l, "fve": m.fve, "l0": m.l0, "tokens": m.tokens})).collect::<Vec<_>>(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    adag_train::io::write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )?;
    Ok(())
}

fn cross_layer(
    data: &[(
        adag_train::transcoder::LayerData,
        adag_train::transcoder::LayerData,
    )],
    cfg: &TranscoderConfig,
    out: &std::path::Path,
    start: Instant,
) -> Result<()> {
    let pb = bar(cfg.steps as u64, "cross-layer transcoder");
    let (clt, report) = adag_train::clt::train_clt(data, cfg, &mut |s, mse| {
        pb.set_position(s as u64);
        pb.set_message(format!("CLT fvu {mse:.3}"));
    })?;
    pb.finish_and_clear();
    for (l, m) in report.iter().enumerate() {
        println!(
            "layer {l}: variance of MLP output explained {:.3}; layer-{l} features: L0 {:.1} ({} held-out tokens)",
            m.fve, m.l0, m.tokens
        );
    }
    clt.save(out, "mlp.hook_in", "mlp.hook_out")?;
    write_metrics(out, cfg, "cross_layer_transcoder", &report, start)?;
    println!(
        "cross-layer transcoder written to {} in {:.0}s",
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
