//! Correlation against a hand-computed case.

mod common;

use adag_analysis::correlate::{correlate, correlate_with, CorrelateOptions, Level, Metric};
use adag_circuit::{Circuit, EdgeRow};
use common::{neuron, prompt, state};

/// x = [1,2,3,4,5] (C0's summed attribution), y = [2,1,4,3,5]: r = 0.8 exactly, t² = 16/3 on
/// 3 degrees of freedom, whose two-sided p is 1 − (2/π)(atan(4/3) + 12/25).
#[test]
fn cluster_correlation_matches_hand_computation() {
    let mut c = Circuit::default();
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    for p in 0..6u64 {
        let mut pr = prompt(p, 3, 1);
        pr.label = Some(format!("p{p}"));
        c.prompts.push(pr);
        let xv = if p < 5 { x[p as usize] } else { 100.0 };
        // C0 = two units whose attributions add up to x.
        c.nodes.push(neuron(
            p,
            0,
            0,
            1,
            1.0,
            xv - 0.5,
            vec![1.0, 0.0, 0.0],
            vec![1.0],
        ));
        c.nodes
            .push(neuron(p, 0, 1, 2, 1.0, 0.5, vec![0.0, 1.0, 0.0], vec![1.0]));
        // C1 is present on only two prompts: below the minimum.
        if p < 2 {
            c.nodes
                .push(neuron(p, 1, 2, 3, 1.0, 0.3, vec![0.0, 0.0, 1.0], vec![1.0]));
        }
        c.edges.push(EdgeRow {
            prompt_id: p,
            label: None,
            source_layer: 0,
            source_position: 0,
            source_neuron: 1,
            target_layer: 0,
            target_position: 1,
            target_neuron: 2,
            weight: 0.1,
            attribution: 0.1,
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metric.csv");
    // Keys by label; prompt 5 has no metric. Columns in any order.
    std::fs::write(&path, "asr,label\n2,p0\n1,p1\n4,p2\n3,p3\n5,p4\n").unwrap();
    let metric = Metric::read(&path, None, &c).unwrap();
    assert_eq!(metric.values.len(), 5);
    let cs = state(&[("0,1,1", "C0"), ("0,2,1", "C0"), ("1,3,1", "C1")]);
    let rows = correlate(&c, Some(&cs), &metric, Level::Cluster, 3).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!((r.item.as_str(), r.n), ("C0", 5));
    assert!((r.pearson_r - 0.8).abs() < 1e-12);
    let p = 1.0 - 2.0 / std::f64::consts::PI * ((4.0f64 / 3.0).atan() + 12.0 / 25.0);
    assert!((r.pearson_p - p).abs() < 1e-9, "{} vs {p}", r.pearson_p);
    assert!((r.spearman_rho - 0.8).abs() < 1e-12);
    assert!((r.mean_attribution - 3.0).abs() < 1e-6);

    // Neuron level: unit 0,1,+ carries x − 0.5, so the same r; unit 0,2,+ is constant (no r).
    let rows = correlate(&c, Some(&cs), &metric, Level::Neuron, 3).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].item, "L0N1+");
    assert!((rows[0].pearson_r - 0.8).abs() < 1e-6);

    // Spearman with ties: x = [1,2,2,4,5] has ranks [1,2.5,2.5,4,5]: ρ = 6.5/sqrt(95).
    let tied = [1.0, 2.0, 2.0, 4.0, 5.0];
    let y = [2.0, 1.0, 4.0, 3.0, 5.0];
    let rho = adag_analysis::stats::spearman(&tied, &y).unwrap();
    assert!((rho - 6.5 / 95f64.sqrt()).abs() < 1e-12);
}

#[test]
fn metric_errors_name_the_line() {
    let c = Circuit::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.csv");
    std::fs::write(&path, "prompt_id,asr\n0,0.5\n1,abc\n").unwrap();
    let e = Metric::read(&path, None, &c).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("abc"), "{e}");
    std::fs::write(&path, "prompt_id,asr\nnope,1\n").unwrap();
    let e = Metric::read(&path, None, &c).unwrap_err().to_string();
    assert!(e.contains("prompt_id \"nope\" is not an integer"), "{e}");
    let e = Metric::read(&path, Some("missing"), &c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no column"), "{e}");
}

fn edge(p: u64, src: (i32, u32, u32), dst: (i32, u32, u32), attribution: f32) -> EdgeRow {
    EdgeRow {
        prompt_id: p,
        label: None,
        source_layer: src.0,
        source_position: src.1,
        source_neuron: src.2,
        target_layer: dst.0,
        target_position: dst.1,
        target_neuron: dst.2,
        weight: attribution,
        attribution,
    }
}

/// Unit → unit edges, summed over positions, against the metric y = [2,1,4,3,5]:
/// - L0N1+ → L1N3+ is split over two position pairs whose attributions add up to
///   x = [1,2,3,4,5] on each prompt: r = 0.8 (as in the cluster case);
/// - tok7 → L0N1+ (the embedding of token 7) carries 6 − x: r = −0.8;
/// - L1N3+ → out100 (the logit of token 100) is present on two prompts only: left out.
///
/// Both kept rows have |r| = 0.8, so the order falls back to the item name.
#[test]
fn unit_edge_correlation_matches_hand_computation() {
    let mut c = Circuit::default();
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    for p in 0..5u64 {
        let mut pr = prompt(p, 3, 1);
        pr.label = Some(format!("p{p}"));
        c.prompts.push(pr);
        for pos in 0..2 {
            c.nodes.push(neuron(
                p,
                0,
                pos,
                1,
                1.0,
                0.1,
                vec![1.0, 0.0, 0.0],
                vec![1.0],
            ));
        }
        for pos in 1..3 {
            c.nodes.push(neuron(
                p,
                1,
                pos,
                3,
                2.0,
                0.1,
                vec![0.0, 1.0, 0.0],
                vec![1.0],
            ));
        }
        // Embedding and logit nodes: no profiles.
        c.nodes.push(neuron(p, -1, 0, 7, 1.0, 0.2, vec![], vec![]));
        c.nodes.push(neuron(p, 2, 2, 100, 9.0, 1.0, vec![], vec![]));
        let xv = x[p as usize];
        c.edges.push(edge(p, (0, 0, 1), (1, 1, 3), xv - 0.25));
        c.edges.push(edge(p, (0, 1, 1), (1, 2, 3), 0.25));
        c.edges.push(edge(p, (-1, 0, 7), (0, 0, 1), 6.0 - xv));
        if p < 2 {
            c.edges.push(edge(p, (1, 2, 3), (2, 2, 100), 0.5));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metric.csv");
    std::fs::write(&path, "prompt_id,asr\n0,2\n1,1\n2,4\n3,3\n4,5\n").unwrap();
    let metric = Metric::read(&path, None, &c).unwrap();
    // No cluster state is needed at this level.
    let rows = correlate(&c, None, &metric, Level::NeuronEdge, 3).unwrap();
    let items: Vec<&str> = rows.iter().map(|r| r.item.as_str()).collect();
    assert_eq!(items, ["L0N1+->L1N3+", "tok7->L0N1+"], "{rows:?}");
    assert!((rows[0].pearson_r - 0.8).abs() < 1e-6, "{rows:?}");
    assert!((rows[0].mean_attribution - 3.0).abs() < 1e-6);
    assert!((rows[1].pearson_r + 0.8).abs() < 1e-6, "{rows:?}");
    assert!((rows[1].spearman_rho + 0.8).abs() < 1e-12);
    assert!(rows
        .iter()
        .all(|r| r.level == Level::NeuronEdge && r.n == 5));
    // With a lower minimum the two-prompt logit edge appears, but a minimum is never below 3.
    let rows = correlate(&c, None, &metric, Level::NeuronEdge, 2).unwrap();
    assert!(rows.iter().all(|r| r.item != "L1N3+->out100"));
}

/// A metric covering fewer prompts than the minimum is an error naming both counts.
#[test]
fn too_few_prompts_is_an_error() {
    let mut c = Circuit::default();
    for p in 0..6u64 {
        c.prompts.push(prompt(p, 3, 1));
        c.nodes.push(neuron(
            p,
            0,
            0,
            1,
            1.0,
            p as f32,
            vec![1.0, 0.0, 0.0],
            vec![1.0],
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metric.json");
    std::fs::write(&path, r#"{"0": 1.0, "1": 2.0, "2": 0.5, "3": 4.0}"#).unwrap();
    let metric = Metric::read(&path, None, &c).unwrap();
    let e = correlate(&c, None, &metric, Level::Neuron, 5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("covers 4 of the circuit's 6 prompts"), "{e}");
    assert!(e.contains("at least 5"), "{e}");
    let rows = correlate(&c, None, &metric, Level::Neuron, 4).unwrap();
    assert_eq!(rows.len(), 1);
}

/// BH q-values by hand: p = [0.01, 0.04, 0.03, 0.2] (m = 4) gives p·m/rank =
/// [0.04, 0.0533, 0.06, 0.2] in ascending order, then the running minimum from the top.
#[test]
fn benjamini_hochberg_matches_hand_computation() {
    let q = adag_analysis::stats::benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
    let want = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.2];
    for (a, b) in q.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{q:?}");
    }
}

/// The per-prompt sum of one unit's attribution (0 where it is absent).
fn unit_sum(c: &Circuit, layer: i32, neuron: u32) -> Vec<f64> {
    c.prompts
        .iter()
        .map(|p| {
            c.nodes
                .iter()
                .filter(|n| n.prompt_id == p.prompt_id && n.layer == layer && n.neuron == neuron)
                .map(|n| n.attribution as f64)
                .sum()
        })
        .collect()
}

fn write_metric(dir: &std::path::Path, name: &str, values: &[f64]) -> std::path::PathBuf {
    let mut text = String::from("prompt_id,metric\n");
    for (i, v) in values.iter().enumerate() {
        text.push_str(&format!("{i},{v}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A Gaussian-noise metric gives no row with q < 0.05 over the 30 units, while an affine
/// function of one unit's attribution gives that unit q < 0.05 (and a permutation p at its
/// floor 1/(N+1)); the permutation p-values are reproducible from the seed.
#[test]
fn noise_metric_has_no_discovery_but_the_affine_metric_does() {
    use rand::{Rng, SeedableRng};
    let (c, _) = common::planted(5, 6, 40, 7);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let noise: Vec<f64> = (0..c.prompts.len())
        .map(|_| {
            // Box–Muller.
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    let affine: Vec<f64> = unit_sum(&c, 0, 0).iter().map(|x| 3.0 * x - 1.0).collect();
    let opts = CorrelateOptions {
        min_prompts: 10,
        permutations: 200,
        seed: 5,
    };
    let noise_m = Metric::read(&write_metric(dir.path(), "n.csv", &noise), None, &c).unwrap();
    let rows = correlate_with(&c, None, &noise_m, Level::Neuron, &opts).unwrap();
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| r.pearson_q >= 0.05), "{rows:?}");
    assert!(rows.iter().all(|r| r.pearson_q >= r.pearson_p));

    let affine_m = Metric::read(&write_metric(dir.path(), "a.csv", &affine), None, &c).unwrap();
    let rows = correlate_with(&c, None, &affine_m, Level::Neuron, &opts).unwrap();
    let top = &rows[0];
    assert_eq!(top.item, "L0N0+");
    assert!(
        (top.pearson_r - 1.0).abs() < 1e-6 && top.pearson_q < 0.05,
        "{top:?}"
    );
    assert_eq!(top.permutation_p, Some(1.0 / 201.0));
    assert!(!top.low_n);
    let again = correlate_with(&c, None, &affine_m, Level::Neuron, &opts).unwrap();
    assert_eq!(rows, again);
    // Rows below the minimum are kept, flagged.
    let strict = CorrelateOptions {
        min_prompts: 29,
        ..opts
    };
    let rows = correlate_with(&c, None, &affine_m, Level::Neuron, &strict).unwrap();
    assert!(rows.iter().any(|r| r.low_n && r.n < 29));
    assert!(rows.iter().all(|r| r.low_n == (r.n < 29)));
}

/// Numeric labels are labels: a `label,value` file with labels "1".."n" (in the reverse of
/// prompt-id order) gives the same table as the same metric keyed by prompt_id.
#[test]
fn a_numeric_label_is_read_as_a_label_not_a_prompt_id() {
    let (mut c, _) = common::planted(2, 3, 12, 3);
    let n = c.prompts.len();
    for p in &mut c.prompts {
        p.label = Some((n as u64 - p.prompt_id).to_string());
    }
    let x = unit_sum(&c, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    let by_id = write_metric(dir.path(), "id.csv", &x);
    let mut text = String::from("label,metric\n");
    for (i, v) in x.iter().enumerate() {
        text.push_str(&format!("{},{v}\n", n - i));
    }
    let by_label = dir.path().join("label.csv");
    std::fs::write(&by_label, text).unwrap();
    let a = Metric::read(&by_id, None, &c).unwrap();
    let b = Metric::read(&by_label, None, &c).unwrap();
    assert_eq!(a, b);
    // A prompt_id column must hold integers.
    std::fs::write(&by_label, "prompt_id,metric\np1,0.5\n").unwrap();
    let e = Metric::read(&by_label, None, &c).unwrap_err().to_string();
    assert!(e.contains("prompt_id \"p1\" is not an integer"), "{e}");
}
