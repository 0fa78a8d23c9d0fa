//! `adag bench attribute`: the phase table of one attribution graph on a generated fixture
//! (random Llama-shaped model, random sparse transcoders), from loading to the written file.
//!
//! Why a table: the whole-process time is what users wait for, and a single number hides
//! which phase to cut. Each row states its FLOPs or bytes and the rate that makes it
//! compute-bound (against this machine's measured matmul peak) or memory-bound (GB/s).

use std::time::Instant;

use adag_testkit::model::{llama_config, random_transformer};
use anyhow::Result;
use candle_core::{DType, Device};

use super::bench::{matmul_gflops, peak_rss_mib};

/// The generated fixture and run settings.
#[derive(Debug, Clone)]
pub struct AttributeBench {
    /// Residual width.
    pub d_model: usize,
    /// Blocks.
    pub layers: usize,
    /// Transcoder features per layer.
    pub d_tc: usize,
    /// Target fraction of active features.
    pub density: f64,
    /// Prompt length.
    pub tokens: usize,
    /// The bench model's context (prompts longer than this are refused, as for a real model).
    pub context: usize,
    /// Feature-node budget.
    pub max_feature_nodes: usize,
    /// Seeds per backward pass.
    pub batch_size: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Graphs to time (the median whole graph is tabulated).
    pub repeats: usize,
}

/// One row of the table.
struct Phase {
    name: String,
    secs: f64,
    flops: Option<f64>,
    bytes: Option<f64>,
}

/// Runs the bench and prints the table.
pub fn run(b: &AttributeBench) -> Result<()> {
    use adag_engine::{attribute, AttributeOptions, TranscoderSet};
    use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};

    let dev = Device::Cpu;
    let mut cfg = llama_config(b.d_model, b.layers, 4 * b.d_model, b.vocab);
    cfg.n_ctx = Some(b.context);
    let dir = std::env::temp_dir().join(format!("adag-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let spec = RandomSpec {
        cross_layer: false,
        n_layers: b.layers,
        d_model: b.d_model,
        d_tc: b.d_tc,
        activation: "relu".into(),
        k: 0,
        skip: false,
        input_hook: "mlp.hook_in".into(),
        output_hook: "hook_mlp_out".into(),
        density: b.density,
        seed: 1,
    };
    write_random_transcoders(&dir.join("tc"), &spec)?;
    let peak = matmul_gflops(2048, &dev)?;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "attribute: d_model {}, {} layers, heads {} (kv {}), d_mlp {}, vocab {}, context {}; PLT {} features/layer, density {}; {} tokens; max_feature_nodes {}, batch {}; f32 CPU, {threads} threads",
        b.d_model, b.layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_mlp, b.vocab, b.context,
        b.d_tc, b.density, b.tokens, b.max_feature_nodes, b.batch_size
    );
    println!("matmul peak (2048³ f32): {peak:.1} GFLOP/s");

    let t = Instant::now();
    let model = random_transformer(
        cfg.clone(),
        &adag_model::LoadOptions {
            dtype: DType::F32,
            device: dev.clone(),
        },
    )?;
    let init_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let tc = TranscoderSet::load(&dir.join("tc"), &dev)?;
    let load_s = t.elapsed().as_secs_f64();
    let tc_bytes = dir_bytes(&dir.join("tc"));

    let ids: Vec<u32> = (0..b.tokens)
        .map(|i| ((i * 7919 + 13) % b.vocab) as u32)
        .collect();
    // circuit-tracer's defaults (salient logits 10 / 0.95, re-ranking every 4 batches).
    let opts = AttributeOptions {
        batch_size: b.batch_size,
        max_feature_nodes: Some(b.max_feature_nodes),
        ..Default::default()
    };
    let out = dir.join("graph.safetensors");
    let mut runs = Vec::new();
    for _ in 0..b.repeats.max(1) {
        let t = Instant::now();
        let g = attribute(&model, &ids, &tc, &opts, Default::default(), &|i| {
            i.to_string()
        })?;
        let attr_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let pruned = adag_graph::prune(&g, 0.8, 0.98)?;
        let scores = adag_graph::graph_scores(&g)?;
        let prune_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        g.save(&out)?;
        let write_s = t.elapsed().as_secs_f64();
        let kept = (
            pruned.node_mask.iter().filter(|&&k| k).count(),
            pruned.edge_mask.count(),
        );
        runs.push((
            attr_s + prune_s + write_s,
            attr_s,
            prune_s,
            write_s,
            g,
            kept,
            scores,
        ));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (total, attr_s, prune_s, write_s, g, kept, scores) = &runs[runs.len() / 2];
    let get = |k: &str| {
        g.meta
            .timings
            .get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    let backward_flops = g
        .meta
        .settings
        .get("backward_flops")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let n = g.n_nodes() as f64;
    let adjacency_bytes = 4.0 * n * n;
    let file_bytes = std::fs::metadata(&out).map(|m| m.len() as f64).ok();
    let backward_s = get("logit_attribution") + get("feature_attribution");
    // What `attribute` spends outside its timed phases (metadata, moving the graph out).
    let engine_timed: f64 = [
        "precompute",
        "targets",
        "logit_attribution",
        "feature_attribution",
        "assembly",
        "accounting",
    ]
    .iter()
    .map(|k| get(k))
    .sum();
    let mut phases = vec![
        Phase {
            name: "model init (random)".into(),
            secs: init_s,
            flops: None,
            bytes: None,
        },
        Phase {
            name: "transcoders (mmap)".into(),
            secs: load_s,
            flops: None,
            bytes: Some(tc_bytes),
        },
        Phase {
            name: "forward + precompute".into(),
            secs: get("precompute"),
            flops: Some(model.forward_flops(1, b.tokens)),
            bytes: None,
        },
        Phase {
            name: "targets".into(),
            secs: get("targets"),
            flops: None,
            bytes: None,
        },
        Phase {
            name: "logit + feature rows".into(),
            secs: backward_s,
            flops: Some(backward_flops),
            bytes: None,
        },
        Phase {
            name: "  of which logit rows".into(),
            secs: get("logit_attribution"),
            flops: None,
            bytes: None,
        },
        Phase {
            name: "  of which feature rows".into(),
            secs: get("feature_attribution"),
            flops: None,
            bytes: None,
        },
    ];
    phases.extend(kernel_phases(g, backward_s));
    phases.extend([
        Phase {
            name: "assembly".into(),
            secs: get("assembly"),
            flops: None,
            bytes: Some(adjacency_bytes),
        },
        Phase {
            name: "accounting".into(),
            secs: get("accounting"),
            flops: None,
            bytes: None,
        },
        Phase {
            name: "rest of attribute".into(),
            secs: attr_s - engine_timed,
            flops: None,
            bytes: None,
        },
        Phase {
            name: "pruning + scores".into(),
            secs: *prune_s,
            flops: None,
            bytes: Some(3.0 * adjacency_bytes),
        },
        Phase {
            name: "writing".into(),
            secs: *write_s,
            flops: None,
            bytes: file_bytes,
        },
    ]);
    println!(
        "  {} active features, {} feature nodes, {} logit targets, {} nodes (dense adjacency {:.1} MiB); pruned to {} nodes, {} edges; replacement {:.3}, completeness {:.3}",
        g.active_features.len(),
        g.n_features(),
        g.n_logits(),
        g.n_nodes(),
        adjacency_bytes / (1 << 20) as f64,
        kept.0,
        kept.1,
        scores.replacement,
        scores.completeness
    );
    println!(
        "  graph (attribute + prune + write): {total:.3} s, median of {}",
        runs.len()
    );
    println!(
        "  {:<24} {:>9} {:>6} {:>10} {:>10} {:>12} {:>9}",
        "phase", "s", "%", "GFLOP", "MiB", "GFLOP/s", "% peak"
    );
    for p in &phases {
        let share =
            if p.name.starts_with("  ") || p.name.contains("init") || p.name.contains("mmap") {
                String::new()
            } else {
                format!("{:.0}", 100.0 * p.secs / total)
            };
        let gflop = p
            .flops
            .map(|f| format!("{:.2}", f / 1e9))
            .unwrap_or_default();
        let mib = p
            .bytes
            .map(|x| format!("{:.0}", x / (1 << 20) as f64))
            .unwrap_or_default();
        let (rate, of_peak) = match (p.flops, p.bytes) {
            (Some(f), _) if p.secs > 0.0 => {
                let r = f / p.secs / 1e9;
                (format!("{r:.1}"), format!("{:.0}", 100.0 * r / peak))
            }
            (None, Some(x)) if p.secs > 0.0 => {
                (format!("{:.2} GB/s", x / p.secs / 1e9), String::new())
            }
            _ => (String::new(), String::new()),
        };
        println!(
            "  {:<24} {:>9.3} {:>6} {:>10} {:>10} {:>12} {:>9}",
            p.name, p.secs, share, gflop, mib, rate, of_peak
        );
    }
    println!("  (% is of the graph time; pruning bytes count its three reads of the adjacency; a kernel's seconds are the passes' wall time shared out by its thread-seconds, as passes run two at a time)");
    if let Some(mib) = peak_rss_mib() {
        println!("  peak memory (RSS high-water mark of the process): {mib:.0} MiB");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The rows' kernels (see `adag_engine::tally`): each kernel's thread-seconds scaled to the
/// passes' wall time (two passes run at once, so thread-seconds add up to more than it), and
/// the rows' time outside the passes (influence ranking, storing rows).
fn kernel_phases(g: &adag_graph::Graph, rows_s: f64) -> Vec<Phase> {
    let report = &g.meta.timings["backward_kernels"];
    let wall = report["passes_wall_s"].as_f64().unwrap_or(0.0);
    let Some(kernels) = report["kernels"].as_object() else {
        return Vec::new();
    };
    let thread_s: f64 = kernels
        .values()
        .filter_map(|k| k["thread_s"].as_f64())
        .sum();
    if wall <= 0.0 || thread_s <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<Phase> = kernels
        .iter()
        .map(|(name, k)| Phase {
            name: format!("    {name}"),
            secs: k["thread_s"].as_f64().unwrap_or(0.0) * wall / thread_s,
            flops: k["flops"].as_f64().filter(|&f| f > 0.0),
            bytes: None,
        })
        .collect();
    out.push(Phase {
        name: "    outside the passes".into(),
        secs: rows_s - wall,
        flops: None,
        bytes: None,
    });
    out
}

fn dir_bytes(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len() as f64)
                .sum()
        })
        .unwrap_or(0.0)
}
