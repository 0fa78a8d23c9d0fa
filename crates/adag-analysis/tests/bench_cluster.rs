//! Clustering throughput: 5,000 units over 1,000 prompts (the target: under a minute
//! on 2 cores). Ignored by default; run with
//! `cargo test -p adag-analysis --release --test bench_cluster -- --ignored --nocapture`.

use adag_analysis::{cluster, ClusterOptions, Profiles};
use adag_circuit::{Circuit, NodeRow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
#[ignore]
fn cluster_5000_units_over_1000_prompts() {
    let (n_units, groups, n_prompts, len, k) = (5000usize, 25usize, 1000u64, 12usize, 5usize);
    let per = n_units / groups;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut c = Circuit::default();
    for p in 0..n_prompts {
        for g in 0..groups {
            if rng.random::<f32>() > 0.15 {
                continue;
            }
            for m in 0..per {
                if rng.random::<f32>() > 0.5 {
                    continue;
                }
                let mut input: Vec<f32> = (0..len).map(|_| 0.1 * rng.random::<f32>()).collect();
                input[g % len] += 1.0;
                let mut output: Vec<f32> = (0..k).map(|_| 0.1 * rng.random::<f32>()).collect();
                output[g % k] += 1.0;
                c.nodes.push(NodeRow {
                    prompt_id: p,
                    label: None,
                    layer: (g % 8) as i32,
                    position: (g % len) as u32,
                    neuron: (g * per + m) as u32,
                    activation: 1.0,
                    attribution: 0.01,
                    polarity: 1,
                    input_profile: input,
                    output_profile: output,
                });
            }
        }
    }
    let t = std::time::Instant::now();
    let profiles = Profiles::from_circuit(&c);
    let per_prompt = c.nodes.len() as f64 / n_prompts as f64;
    let cl = cluster(
        &profiles,
        &ClusterOptions {
            k: 20,
            ..Default::default()
        },
    )
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "clustered {} units over {n_prompts} prompts ({per_prompt:.0} units per prompt) into 20 clusters in {secs:.1} s; phases {:?}; solver {}; silhouette {:.3}",
        profiles.units.len(),
        cl.diagnostics.seconds,
        cl.diagnostics.eigensolver,
        cl.diagnostics.silhouette
    );
    assert_eq!(profiles.units.len(), n_units);
}
