//! `adag bench real-size`: one attribution graph at gemma-2-2b's real sizes, from files on
//! disk, with the figures issue 15 asks for: seconds per graph, peak RSS and the bytes actually
//! read from the transcoder files.
//!
//! No real checkpoint can be downloaded on the development machines, so the first run writes a
//! random one in the exact shapes and layout of google/gemma-2-2b (bf16 shards + index) and a
//! random 16k-feature JumpReLU transcoder set whose thresholds give a realistic L0; later runs
//! reuse them. The timing is then that of the real model's load path and sizes; only the
//! weights' values (and so which features fire) are random.
//!
//! "Bytes read" is measured, not estimated: the transcoder files are dropped from the page
//! cache before the run (`posix_fadvise(DONTNEED)`), and afterwards `mincore` counts which of
//! their pages are resident, i.e. were read (kernel readahead included).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use adag_testkit::checkpoint::{write_gemma2_checkpoint, Gemma2Shape};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use anyhow::{Context, Result};

use super::bench::peak_rss_mib;

/// Settings of one real-size run.
#[derive(Debug, Clone)]
pub struct RealSizeBench {
    /// Where the generated model and transcoders live (kept for later runs).
    pub dir: PathBuf,
    /// Prompt length.
    pub tokens: usize,
    /// Feature-node budget.
    pub max_feature_nodes: usize,
    /// Features per transcoder layer.
    pub d_tc: usize,
    /// Target active features per token per layer (sets the JumpReLU thresholds).
    pub l0: f64,
    /// Compute dtype of the model (`bf16` keeps the on-disk weights as they are).
    pub dtype: candle_core::DType,
    /// Seeds per backward pass.
    pub batch_size: usize,
    /// Layers (26 = gemma-2-2b; fewer for a quick smoke run).
    pub layers: usize,
    /// Only write the files.
    pub generate_only: bool,
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// Drops `path`'s pages from the page cache (after flushing them, since dirty pages stay).
fn evict(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("flushing {}", path.display()))?;
    // SAFETY: plain syscall on an open descriptor.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(r == 0, "posix_fadvise on {}: error {r}", path.display());
    Ok(())
}

/// Bytes of `path` resident in the page cache.
fn resident_bytes(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len() as usize;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: a private read-only mapping used only for mincore and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        anyhow::ensure!(p != libc::MAP_FAILED, "mmap {}", path.display());
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let mut v = vec![0u8; len.div_ceil(page)];
        let r = libc::mincore(p, len, v.as_mut_ptr());
        libc::munmap(p, len);
        anyhow::ensure!(r == 0, "mincore {}", path.display());
        Ok(v.iter().filter(|&&b| b & 1 == 1).count() as u64 * page as u64)
    }
}

/// Writes whatever of the model and transcoder set is missing under `b.dir`.
fn generate(b: &RealSizeBench) -> Result<(PathBuf, PathBuf)> {
    let shape = Gemma2Shape {
        n_layers: b.layers,
        ..Gemma2Shape::GEMMA_2_2B
    };
    let (model, tc) = (b.dir.join("model"), b.dir.join("transcoders"));
    if !model.join("config.json").exists() {
        let t = Instant::now();
        let bytes = write_gemma2_checkpoint(&model, &shape, 2 << 30, 1)?;
        println!(
            "wrote {} ({:.2} GB bf16) in {:.0} s",
            model.display(),
            bytes as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    }
    if !tc.join("config.yaml").exists() {
        let t = Instant::now();
        write_random_transcoders(
            &tc,
            &RandomSpec {
                cross_layer: false,
                n_layers: b.layers,
                d_model: shape.d_model,
                d_tc: b.d_tc,
                activation: "jump_relu".into(),
                k: 0,
                skip: false,
                // GemmaScope's transcoders, as circuit-tracer's `gemma` preset reads them.
                input_hook: "mlp.hook_in".into(),
                output_hook: "hook_mlp_out".into(),
                density: b.l0 / b.d_tc as f64,
                seed: 2,
            },
        )?;
        println!(
            "wrote {} ({} × {} JumpReLU features, f32) in {:.0} s",
            tc.display(),
            b.layers,
            b.d_tc,
            t.elapsed().as_secs_f64()
        );
    }
    Ok((model, tc))
}

/// Runs the bench and prints its figures.
pub fn run(b: &RealSizeBench) -> Result<()> {
    use adag_engine::{attribute, AttributeOptions, TranscoderSet};

    let (model_dir, tc_dir) = generate(b)?;
    if b.generate_only {
        return Ok(());
    }
    let tc_files = files_in(&tc_dir)?;
    for p in files_in(&model_dir)?.iter().chain(&tc_files) {
        evict(p)?;
    }
    let dev = candle_core::Device::Cpu;
    let threads = candle_core::utils::get_num_threads();
    let t = Instant::now();
    let model = adag_model::Transformer::load(
        &model_dir,
        &adag_model::LoadOptions {
            dtype: b.dtype,
            device: dev.clone(),
        },
    )?;
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let tc = TranscoderSet::load(&tc_dir, &dev)?;
    let tc_load_s = t.elapsed().as_secs_f64();
    let c = &model.cfg;
    println!(
        "real-size attribute: {:?} d_model {}, {} layers, heads {} (kv {}, d_head {}), d_mlp {}, vocab {}; {} × {} JumpReLU features (target L0 {}); {} tokens; max_feature_nodes {}; batch {}; {:?} CPU, {threads} threads",
        c.architecture, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp,
        c.d_vocab, b.layers, b.d_tc, b.l0, b.tokens, b.max_feature_nodes, b.batch_size, b.dtype
    );
    println!("  load model ({} params, from evicted files): {load_s:.1} s; map transcoders: {tc_load_s:.2} s", c.n_params());

    // Ids spread over the vocabulary, starting with BOS as a real prompt does.
    let ids: Vec<u32> = std::iter::once(2)
        .chain((1..b.tokens).map(|i| ((i * 7919 + 13) % c.d_vocab) as u32))
        .collect();
    // circuit-tracer's defaults (salient logits 10 / 0.95, re-ranking every 4 batches).
    let opts = AttributeOptions {
        batch_size: b.batch_size,
        max_feature_nodes: Some(b.max_feature_nodes),
        ..Default::default()
    };
    let t = Instant::now();
    let cpu0 = cpu_seconds();
    let g = attribute(&model, &ids, &tc, &opts, Default::default(), &|i| {
        i.to_string()
    })?;
    let attr_s = t.elapsed().as_secs_f64();
    let attr_cpu = cpu_seconds() - cpu0;
    let t = Instant::now();
    let pruned = adag_graph::prune(&g, 0.8, 0.98)?;
    let scores = adag_graph::graph_scores(&g)?;
    let out = b.dir.join(format!("graph-{}.safetensors", b.tokens));
    g.save(&out)?;
    let rest_s = t.elapsed().as_secs_f64();
    let read: u64 = tc_files
        .iter()
        .map(|p| resident_bytes(p))
        .sum::<Result<u64>>()?;
    let on_disk: u64 = tc_files
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let timings: Vec<String> = g
        .meta
        .timings
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some(format!("{k} {:.1}", v.as_f64()?)))
        .collect();
    println!(
        "  {} active features (L0 {:.1} per token per layer), {} feature nodes, {} logits, {} nodes; pruned to {} nodes; replacement {:.3}, completeness {:.3}",
        g.active_features.len(),
        g.active_features.len() as f64 / (b.tokens * b.layers) as f64,
        g.n_features(),
        g.n_logits(),
        g.n_nodes(),
        pruned.node_mask.iter().filter(|&&k| k).count(),
        scores.replacement,
        scores.completeness
    );
    println!("  engine phases (s): {}", timings.join(", "));
    println!(
        "  seconds per graph: {:.1} (attribute {attr_s:.1} + prune, scores and write {rest_s:.1}); model load not included",
        attr_s + rest_s
    );
    // CPU seconds as well as wall: on a shared machine the wall time says more about the other
    // jobs than about adag, the FLOPs per CPU-second does not.
    let flops = g.meta.settings["backward_flops"].as_f64().unwrap_or(0.0);
    println!(
        "  attribute: {attr_s:.1} s wall, {attr_cpu:.1} s CPU ({:.2} cores busy); backward {:.1} TFLOP, {:.1} GFLOP per CPU-second",
        attr_cpu / attr_s.max(1e-9),
        flops / 1e12,
        flops / 1e9 / attr_cpu.max(1e-9)
    );
    println!(
        "  transcoder bytes read: {:.2} GB of {:.2} GB on disk ({:.0}%; page-cache residency after the run, readahead included)",
        read as f64 / 1e9,
        on_disk as f64 / 1e9,
        100.0 * read as f64 / on_disk.max(1) as f64
    );
    if let Some(mib) = peak_rss_mib() {
        println!("  peak RSS: {:.2} GiB (VmHWM, load included)", mib / 1024.0);
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (all threads).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(u.ru_utime) + secs(u.ru_stime)
}
