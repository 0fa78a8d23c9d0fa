//! Ground truth for `adag cluster` and `adag steer` on the bundled demo model (capitals task).
//! Skipped, with the reason printed, when `models/demo/config.json` is absent.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common;

use adag_analysis::{ClusterState, Profiles};
use adag_train::corpus::{eval_items, Task};

fn adag(args: &[&str]) {
    print!("{}", common::ok(args));
}

/// Traces the two-hop capitals prompts ("The capital of the state containing Dallas is",
/// answer " Austin"; the answer is the only target), clusters them (k = 8), and checks what the
/// task structure predicts:
/// 1. **reading**: a unit's *city share* is the share of its input profile that comes from the
///    city token's positions, averaged over the prompts where it occurs. The clusters must
///    explain more of its variance (η²) than every one of 200 shuffles of the cluster
///    assignment with the same cluster sizes (p < 0.005), and the answer-promoting cluster
///    (below) must read the city less than the other units: it writes the capital from what
///    earlier units read. Purity against a thresholded "city reader" label is printed with
///    its base rate and shuffle baseline, not asserted: most units are not readers, so purity
///    sits near the base rate whatever the clustering.
/// 2. **steering** the answer-promoting cluster, defined as the cluster with the largest
///    summed attribution to the answer over all prompts: ablating it (0×) lowers the answer's
///    raw logit on average and on at least 3/4 of the prompts; amplifying it (2×) raises the
///    answer's logit with the final norm's denominator held at its unsteered value (the
///    quantity attribution linearises) on average and on at least 3/4 of the prompts. The raw
///    logit at 2× is printed: on this confident model (p(answer) ≈ 1) the final RMSNorm
///    absorbs the push (see `adag_analysis::steer`), which the last assertion checks: the raw
///    rise is smaller than the fixed-norm rise.
#[test]
fn capitals_clusters_separate_city_readers_and_steer_the_answer() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
    if !model.join("config.json").exists() {
        println!("skipped: the demo model bundle (models/demo/config.json) is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("capitals.jsonl");
    let items: Vec<String> = eval_items()
        .into_iter()
        .filter(|i| i.task == Task::TwoHop)
        .map(|i| {
            let city = i.prompt.rsplit(' ').nth(1).unwrap_or("").to_string();
            serde_json::json!({"prompt": i.prompt, "answers": [i.answer], "label": city})
                .to_string()
        })
        .collect();
    assert!(items.len() >= 8, "too few two-hop prompts: {}", items.len());
    std::fs::write(&ds, items.join("\n")).unwrap();
    let circuit = dir.path().join("circuit");
    let (m, d, c) = (
        model.to_str().unwrap(),
        ds.to_str().unwrap(),
        circuit.to_str().unwrap(),
    );
    adag(&["trace", "--model", m, "--dataset", d, "--out", c, "--quiet"]);
    adag(&["cluster", c, "--k", "8"]);

    let (circ, _) = adag_circuit::read_circuit(&circuit).unwrap();
    let state = ClusterState::read(&ClusterState::default_path(&circuit)).unwrap();
    let profiles = Profiles::from_circuit(&circ);
    // City positions: the tokens between " containing" and the final " is" (a city may be
    // several tokens; matching token text against the name would also catch " the" in
    // "Athens").
    let city_pos: BTreeMap<u64, Vec<usize>> = circ
        .prompts
        .iter()
        .map(|p| {
            let after = p
                .token_strings
                .iter()
                .position(|t| t.trim() == "containing")
                .expect("the two-hop template has \" containing\"");
            let pos: Vec<usize> = (after + 1..p.traced_position as usize).collect();
            assert!(!pos.is_empty(), "no city token in {:?}", p.token_strings);
            (p.prompt_id, pos)
        })
        .collect();
    let mut share = vec![(0f64, 0usize); profiles.units.len()];
    for n in circ
        .nodes
        .iter()
        .filter(|n| n.layer >= 0 && !n.input_profile.is_empty())
    {
        let u = adag_analysis::Unit::of_node(n.layer, n.neuron, n.activation);
        let i = profiles.index_of(&u).unwrap();
        let total: f32 = n.input_profile.iter().map(|v| v.abs()).sum();
        if total > 0.0 {
            let city: f32 = city_pos[&n.prompt_id]
                .iter()
                .filter_map(|&p| n.input_profile.get(p))
                .map(|v| v.abs())
                .sum();
            share[i].0 += (city / total) as f64;
            share[i].1 += 1;
        }
    }
    let city_share: Vec<f64> = share
        .iter()
        .map(|(s, n)| if *n > 0 { s / *n as f64 } else { 0.0 })
        .collect();
    let cluster: Vec<&str> = profiles
        .units
        .iter()
        .map(|u| state.cluster_of(u).unwrap())
        .collect();
    let n = city_share.len() as f64;
    let eta = adag_analysis::stats::eta_squared(&cluster, &city_share).unwrap();
    let mut shuffled = cluster.clone();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut null = Vec::new();
    for _ in 0..200 {
        shuffle(&mut shuffled, &mut rng);
        null.push(adag_analysis::stats::eta_squared(&shuffled, &city_share).unwrap());
    }
    let null_max = null.iter().copied().fold(0.0, f64::max);
    let null_mean = null.iter().sum::<f64>() / null.len() as f64;

    // Purity against the thresholded label, for the record.
    let reader: Vec<bool> = city_share.iter().map(|&s| s >= 0.5).collect();
    let purity = |assign: &[&str]| {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (c, &r) in assign.iter().zip(&reader) {
            let e = counts.entry(c).or_default();
            if r {
                e.0 += 1
            } else {
                e.1 += 1
            }
        }
        counts.values().map(|(a, b)| *a.max(b)).sum::<usize>() as f64 / n
    };
    let readers = reader.iter().filter(|&&r| r).count() as f64;
    let base = readers.max(n - readers) / n;
    let mut shuffled_purity = 0.0;
    for _ in 0..200 {
        shuffle(&mut shuffled, &mut rng);
        shuffled_purity += purity(&shuffled) / 200.0;
    }
    println!(
        "units {n}, city readers (share >= 0.5) {readers}; purity {:.3} vs base rate {base:.3} \
         and shuffled {shuffled_purity:.3}; city share eta^2 {eta:.3} vs shuffled mean \
         {null_mean:.3}, max {null_max:.3}",
        purity(&cluster)
    );
    assert!(readers > 0.0, "no unit reads the city token");
    assert!(
        eta > null_max,
        "the clusters explain {eta:.3} of the city share's variance, no more than shuffled \
         assignments (max {null_max:.3})"
    );

    let promoter = state
        .clusters
        .iter()
        .max_by(|a, b| a.attribution.total_cmp(&b.attribution))
        .unwrap()
        .id
        .clone();
    let prefix = dir.path().join("steer");
    adag(&[
        "steer",
        c,
        "--model",
        m,
        "--cluster",
        &promoter,
        "--scale",
        "0,2",
        "--out",
        prefix.to_str().unwrap(),
    ]);
    let (mut inside, mut outside) = ((0.0, 0usize), (0.0, 0usize));
    for (c, v) in cluster.iter().zip(&city_share) {
        let e = if *c == promoter.as_str() {
            &mut inside
        } else {
            &mut outside
        };
        e.0 += v;
        e.1 += 1;
    }
    let (inside, outside) = (inside.0 / inside.1 as f64, outside.0 / outside.1 as f64);
    println!("{promoter} (answer-promoting) mean city share {inside:.3}, other units {outside:.3}");
    assert!(
        inside < outside,
        "the answer-promoting cluster {promoter} reads the city more ({inside:.3}) than the \
         other units ({outside:.3})"
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("steer.json")).unwrap()).unwrap();
    // Per scale (0×, 2×): mean raw and fixed-norm change of the answer's logit, and the share
    // of prompts where each went down (0×) or up (2×).
    let effect = |i: usize| {
        let rows = json["runs"][i]["prompts"].as_array().unwrap();
        let d = |r: &serde_json::Value, key: &str| {
            r[key][0].as_f64().unwrap() - r["target_logits"][0].as_f64().unwrap()
        };
        let n = rows.len() as f64;
        let mean = |key: &str| rows.iter().map(|r| d(r, key)).sum::<f64>() / n;
        let share = |key: &str, up: bool| {
            rows.iter().filter(|r| (d(r, key) > 0.0) == up).count() as f64 / n
        };
        (
            mean("steered_logits"),
            mean("steered_logits_fixed_norm"),
            share("steered_logits", false),
            share("steered_logits_fixed_norm", true),
        )
    };
    let (ablate, ablate_fixed, lowered, _) = effect(0);
    let (amplify, amplify_fixed, _, raised) = effect(1);
    println!(
        "{promoter}: answer logit change at 0x {ablate:.3} (fixed norm {ablate_fixed:.3}, lower \
         on {:.0}% of prompts); at 2x {amplify:.3} (fixed norm {amplify_fixed:.3}, higher on \
         {:.0}% of prompts)",
        100.0 * lowered,
        100.0 * raised
    );
    assert!(
        ablate < 0.0 && lowered >= 0.75,
        "ablating {promoter} did not lower the answer logit: mean {ablate}, on {lowered} of prompts"
    );
    assert!(
        amplify_fixed > 0.0 && raised >= 0.75,
        "amplifying {promoter} did not raise the fixed-norm answer logit: mean {amplify_fixed}, \
         on {raised} of prompts"
    );
    assert!(
        amplify < amplify_fixed,
        "the final norm was expected to absorb part of the 2x push: raw {amplify}, fixed \
         {amplify_fixed}"
    );
}

/// Fisher–Yates with xorshift64: a seeded shuffle without a dependency.
fn shuffle<T>(v: &mut [T], state: &mut u64) {
    for i in (1..v.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        v.swap(i, (*state % (i as u64 + 1)) as usize);
    }
}
