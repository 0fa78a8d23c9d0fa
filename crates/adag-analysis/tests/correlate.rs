//! Correlation against a hand-computed case.

mod common;

use std::collections::BTreeMap;

use adag_analysis::cluster::{ClusterOptions, ClusterState, Diagnostics};
use adag_analysis::correlate::{correlate, Level, Metric};
use adag_circuit::{Circuit, EdgeRow};
use common::{neuron, prompt};

fn state(map: &[(&str, &str)]) -> ClusterState {
    ClusterState {
        format: "adag-cluster-state".into(),
        version: 1,
        circuit: "test".into(),
        options: ClusterOptions::default(),
        cluster_map: map
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        clusters: vec![],
        diagnostics: Diagnostics {
            eigenvalues: vec![],
            eigengap: 0.0,
            suggested_k: 1,
            silhouette: 0.0,
            intra_similarity: 0.0,
            inter_similarity: 0.0,
            intra_inter_ratio: None,
            sign_conflict_rate: 0.0,
            eigensolver: "dense".into(),
            seconds: BTreeMap::new(),
        },
    }
}

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
    assert!(e.contains("neither a prompt id nor a label"), "{e}");
    let e = Metric::read(&path, Some("missing"), &c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no column"), "{e}");
}
