//! `adag bench`: throughput next to this machine's matmul peak, so a figure says how far from
//! the hardware's limit a phase runs.

use std::time::Instant;

use adag_model::random::{llama_config, random_transformer};
use adag_model::{Batch, CacheFilter};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};

use crate::common::{device, DeviceArg};

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Square f32 matmul: the machine's practical peak.
    Matmul {
        /// Matrix side.
        #[arg(long, default_value_t = 2048)]
        n: usize,
        /// Device.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
    },
    /// Forward pass of a random Llama-shaped model, with and without the attribution cache.
    Forward {
        /// Residual width.
        #[arg(long, default_value_t = 1024)]
        d_model: usize,
        /// Blocks.
        #[arg(long, default_value_t = 8)]
        layers: usize,
        /// MLP width (default 4 × d_model).
        #[arg(long)]
        d_mlp: Option<usize>,
        /// Vocabulary.
        #[arg(long, default_value_t = 32000)]
        vocab: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        /// Sequences per batch.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Device.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
    },
}

/// Median wall time of `f` over `repeats` runs after one warm-up, in seconds.
pub fn time_median(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// GFLOP/s of an `n×n×n` f32 matmul on `dev`.
pub fn matmul_gflops(n: usize, dev: &Device) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let secs = time_median(5, || {
        let c = a.matmul(&b)?;
        dev.synchronize()?;
        drop(c);
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / secs / 1e9)
}

/// Runs `adag bench`.
pub fn run(cmd: BenchCommand) -> Result<()> {
    let threads = candle_core::utils::get_num_threads();
    match cmd {
        BenchCommand::Matmul { n, device: d } => {
            let dev = device(d)?;
            println!(
                "matmul {n}×{n}×{n} f32 on {d:?} ({threads} threads): {:.1} GFLOP/s",
                matmul_gflops(n, &dev)?
            );
        }
        BenchCommand::Forward {
            d_model,
            layers,
            d_mlp,
            vocab,
            tokens,
            batch,
            repeats,
            device: d,
        } => {
            let dev = device(d)?;
            let cfg = llama_config(d_model, layers, d_mlp.unwrap_or(4 * d_model), vocab);
            let opts = adag_model::LoadOptions {
                dtype: DType::F32,
                device: dev.clone(),
            };
            let model = random_transformer(cfg.clone(), &opts)?;
            let seqs = (0..batch)
                .map(|b| {
                    (0..tokens)
                        .map(|i| ((i * 7919 + b * 104729) % vocab) as u32)
                        .collect()
                })
                .collect();
            let batch_in = Batch::new(seqs)?;
            let flops = model.forward_flops(batch, tokens);
            let peak = matmul_gflops(2048, &dev)?;
            println!(
                "forward: d_model {d_model}, {layers} layers, d_mlp {}, heads {} (kv {}), vocab {vocab}, {batch}×{tokens} tokens, f32, {d:?}, {threads} threads",
                cfg.d_mlp, cfg.n_heads, cfg.n_kv_heads
            );
            println!("matmul peak (2048³ f32): {peak:.1} GFLOP/s");
            for (label, filter) in [
                ("no cache", CacheFilter::none()),
                ("attribution cache", CacheFilter::attribution()),
            ] {
                let mut mem = 0;
                let secs = time_median(repeats, || {
                    let out = model.forward(&batch_in, &filter)?;
                    mem = out.cache.memory_bytes();
                    dev.synchronize()?;
                    Ok(())
                })?;
                let gflops = flops / secs / 1e9;
                println!(
                    "  {label:<18} {:>8.1} ms  {:>9.0} tokens/s  {:>7.1} GFLOP/s ({:.0}% of matmul peak)  cache {:.1} MiB",
                    secs * 1e3,
                    (batch * tokens) as f64 / secs,
                    gflops,
                    100.0 * gflops / peak,
                    mem as f64 / (1 << 20) as f64
                );
            }
        }
    }
    Ok(())
}
