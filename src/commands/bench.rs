//! `adag bench`: throughput next to this machine's matmul peak, so a figure says how far from
//! the hardware's limit a phase runs.

use std::time::Instant;

use adag_model::{Batch, CacheFilter};
use adag_testkit::model::{llama_config, random_transformer};
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
    /// Neuron-basis tracing (ADAG) of random prompts through a random Llama-shaped model.
    Trace {
        /// Residual width.
        #[arg(long, default_value_t = 1024)]
        d_model: usize,
        /// Blocks.
        #[arg(long, default_value_t = 12)]
        layers: usize,
        /// MLP width.
        #[arg(long, default_value_t = 4096)]
        d_mlp: usize,
        /// Prompts.
        #[arg(long, default_value_t = 16)]
        prompts: usize,
        /// Tokens per prompt.
        #[arg(long, default_value_t = 30)]
        tokens: usize,
        /// Targets per prompt.
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Prompts per forward pass.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Vocabulary.
        #[arg(long, default_value_t = 32000)]
        vocab: usize,
    },
    /// One attribution graph at gemma-2-2b's real sizes from generated files on disk (bf16
    /// checkpoint, 16k-feature JumpReLU transcoders): seconds, peak RSS, transcoder bytes read.
    RealSize {
        /// Directory for the generated model and transcoders (about 13 GB; reused).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Prompt length.
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        /// Feature-node cap.
        #[arg(long, default_value_t = 4096)]
        max_feature_nodes: usize,
        /// Features per transcoder layer.
        #[arg(long, default_value_t = 16384)]
        d_tc: usize,
        /// Target active features per token and layer.
        #[arg(long, default_value_t = 75.0)]
        l0: f64,
        /// Model dtype in memory: bf16 (as on disk) or f32.
        #[arg(long, default_value = "bf16")]
        dtype: String,
        /// Seeds per backward pass.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Layers (26 is gemma-2-2b; fewer for a smoke run, in a different --dir).
        #[arg(long, default_value_t = 26)]
        layers: usize,
        /// Write the files and stop.
        #[arg(long)]
        generate_only: bool,
    },
    /// Attribution graph of a random Llama-shaped model with a random sparse transcoder set.
    Attribute {
        /// Residual width.
        #[arg(long, default_value_t = 512)]
        d_model: usize,
        /// Blocks.
        #[arg(long, default_value_t = 12)]
        layers: usize,
        /// Features per layer.
        #[arg(long, default_value_t = 4096)]
        d_tc: usize,
        /// Target fraction of active features.
        #[arg(long, default_value_t = 0.01)]
        density: f64,
        /// Prompt length.
        #[arg(long, default_value_t = 23)]
        tokens: usize,
        /// The bench model's context length.
        #[arg(long, default_value_t = 4096)]
        context: usize,
        /// Feature-node cap.
        #[arg(long, default_value_t = 2048)]
        max_feature_nodes: usize,
        /// Seeds per backward pass.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Vocabulary.
        #[arg(long, default_value_t = 32000)]
        vocab: usize,
        /// Graphs to time (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
}

/// Peak resident memory of this process (VmHWM), in MiB, where /proc is available.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
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
        BenchCommand::Trace {
            d_model,
            layers,
            d_mlp,
            prompts,
            tokens,
            k,
            batch,
            vocab,
        } => {
            bench_trace(d_model, layers, d_mlp, prompts, tokens, k, batch, vocab)?;
        }
        BenchCommand::RealSize {
            dir,
            tokens,
            max_feature_nodes,
            d_tc,
            l0,
            dtype,
            batch_size,
            layers,
            generate_only,
        } => {
            super::bench_real::run(&super::bench_real::RealSizeBench {
                dir,
                tokens,
                max_feature_nodes,
                d_tc,
                l0,
                dtype: adag_model::parse_dtype(&dtype).ok_or_else(|| {
                    anyhow::anyhow!("--dtype {dtype}: {}", adag_model::DTYPE_CHOICES)
                })?,
                batch_size,
                layers,
                generate_only,
            })?;
        }
        BenchCommand::Attribute {
            d_model,
            layers,
            d_tc,
            density,
            tokens,
            context,
            max_feature_nodes,
            batch_size,
            vocab,
            repeats,
        } => {
            super::bench_attribute::run(&super::bench_attribute::AttributeBench {
                d_model,
                layers,
                d_tc,
                density,
                tokens,
                context,
                max_feature_nodes,
                batch_size,
                vocab,
                repeats,
            })?;
        }
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

fn random_transcoder_bench_model(cfg: adag_model::ModelConfig) -> Result<adag_model::Transformer> {
    let opts = adag_model::LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
    };
    Ok(random_transformer(cfg, &opts)?)
}

#[allow(clippy::too_many_arguments)]
fn bench_trace(
    d_model: usize,
    layers: usize,
    d_mlp: usize,
    prompts: usize,
    tokens: usize,
    k: usize,
    batch: usize,
    vocab: usize,
) -> Result<()> {
    use adag_engine::neuron::{trace_prompts_with_stats, NeuronOptions, PromptInput, TraceStats};

    let dev = Device::Cpu;
    let cfg = llama_config(d_model, layers, d_mlp, vocab);
    let model = random_transcoder_bench_model(cfg.clone())?;
    let inputs: Vec<PromptInput> = (0..prompts)
        .map(|p| PromptInput {
            tokens: (0..tokens)
                .map(|i| ((i * 7919 + p * 104729 + 1) % vocab) as u32)
                .collect(),
            targets: None,
        })
        .collect();
    let opts = NeuronOptions {
        k,
        ..Default::default()
    };
    let peak = matmul_gflops(2048, &dev)?;
    println!(
        "trace: d_model {d_model}, {layers} layers, d_mlp {d_mlp}, heads {} (kv {}), vocab {vocab}; {prompts} prompts × {tokens} tokens, k {k}, {batch} prompts per forward; f32 CPU, {} threads",
        cfg.n_heads,
        cfg.n_kv_heads,
        candle_core::utils::get_num_threads()
    );
    println!("matmul peak (2048³ f32): {peak:.1} GFLOP/s");
    let t = Instant::now();
    let mut stats = TraceStats::default();
    let mut edges = 0;
    for chunk in inputs.chunks(batch.max(1)) {
        let (circuits, s) = trace_prompts_with_stats(&model, chunk, &opts)?;
        edges += circuits.iter().map(|c| c.edges.len()).sum::<usize>();
        stats.add(&s);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  {:.2} s per prompt ({secs:.1} s total); {:.0} neurons and {:.0} edges per prompt",
        secs / prompts as f64,
        stats.neurons as f64 / prompts as f64,
        edges as f64 / prompts as f64
    );
    println!(
        "  phases: forward {:.2} s, scores {:.2} s, input profiles {:.2} s, edges {:.2} s",
        stats.forward_s, stats.scores_s, stats.profiles_s, stats.edges_s
    );
    let gflops = stats.backward_flops / stats.backward_s() / 1e9;
    println!(
        "  backward: {:.0} GFLOP in {:.2} s = {gflops:.1} GFLOP/s ({:.0}% of matmul peak)",
        stats.backward_flops / 1e9,
        stats.backward_s(),
        100.0 * gflops / peak
    );
    if let Some(mib) = peak_rss_mib() {
        println!("  peak memory (RSS high-water mark): {mib:.0} MiB");
    }
    Ok(())
}
