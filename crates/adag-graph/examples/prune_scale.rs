//! Time and peak memory of pruning an attribution-shaped graph at long prompt lengths.
//!
//! `cargo run --release -p adag-graph --example prune_scale -- TOKENS [LAYERS FEATURES LOGITS]`
//! builds a graph of the engine's shape (feature rows reading earlier-layer features, errors and
//! tokens at positions up to theirs; logit rows reading everything; error and token rows
//! empty), then runs `prune` and `graph_scores` and prints the seconds and the process's RSS
//! high-water mark. Run one prompt length per process so the high-water mark is its own.

use std::time::Instant;

use adag_graph::{graph_scores, prune, Graph, GraphMeta, LogitTarget};

fn rss_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(key))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are integers"))
        .collect();
    let n_pos = *args.first().unwrap_or(&256);
    let n_layers = *args.get(1).unwrap_or(&12);
    let n_feat = *args.get(2).unwrap_or(&2048);
    let k = *args.get(3).unwrap_or(&10);
    let n = n_feat + (n_layers + 1) * n_pos + k;

    let t = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut active: Vec<[u32; 3]> = (0..n_feat)
        .map(|i| {
            [
                (rand() * n_layers as f32) as u32 % n_layers as u32,
                (rand() * n_pos as f32) as u32 % n_pos as u32,
                i as u32,
            ]
        })
        .collect();
    active.sort();
    // Zero-initialised like the engine's assembly: rows never written stay untouched pages.
    let mut a = vec![0.0f32; n * n];
    let w = |r: f32, u: f32| (r - 0.5) * u * u * u * 10.0;
    for t in 0..n_feat {
        let [lt, pt, _] = active[t];
        let row = &mut a[t * n..(t + 1) * n];
        for s in 0..n_feat {
            let [ls, ps, _] = active[s];
            if ls < lt && ps <= pt {
                row[s] = w(rand(), rand());
            }
        }
        for l in 0..lt as usize {
            for p in 0..=pt as usize {
                row[n_feat + l * n_pos + p] = w(rand(), rand());
            }
        }
        for p in 0..=pt as usize {
            row[n_feat + n_layers * n_pos + p] = w(rand(), rand());
        }
    }
    for t in n - k..n {
        for s in 0..n - k {
            a[t * n + s] = w(rand(), rand());
        }
    }
    let g = Graph {
        meta: GraphMeta {
            n_layers,
            ..Default::default()
        },
        adjacency: a,
        activation_values: vec![1.0; n_feat],
        selected_features: (0..n_feat as u32).collect(),
        active_features: active,
        input_tokens: (0..n_pos as u32).collect(),
        logit_targets: (0..k)
            .map(|i| LogitTarget {
                token: format!("t{i}"),
                vocab_idx: i as u32,
            })
            .collect(),
        logit_probabilities: (0..k).map(|i| 1.0 / (i + 2) as f32).collect(),
    };
    let build_s = t.elapsed().as_secs_f64();
    let rss_graph = rss_mib("VmRSS:");
    let t = Instant::now();
    let r = prune(&g, 0.8, 0.98).expect("prune");
    let prune_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let s = graph_scores(&g).expect("scores");
    let scores_s = t.elapsed().as_secs_f64();
    let dense_gib = 4.0 * (n * n) as f64 / (1u64 << 30) as f64;
    println!(
        "{n_pos} tokens, {n_layers} layers, {n_feat} features, {k} logits: {n} nodes, dense adjacency {dense_gib:.2} GiB ({:.0} MiB resident after building: only feature and logit rows are written)",
        rss_graph
    );
    println!(
        "  build {build_s:.2} s; prune {prune_s:.2} s (kept {} nodes, {} edges); graph_scores {scores_s:.2} s (replacement {:.3}); peak RSS {:.0} MiB",
        r.node_mask.iter().filter(|&&m| m).count(),
        r.edge_mask.count(),
        s.replacement,
        rss_mib("VmHWM:")
    );
}
