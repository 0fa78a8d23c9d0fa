//! Clustering: the similarity against a direct computation, planted groups recovered, order
//! invariance, determinism per seed, both eigensolvers agree, and the cluster-state file.

mod common;

use adag_analysis::cluster::{cluster, ClusterOptions, ClusterState};
use adag_analysis::profiles::{Profiles, Unit};
use adag_analysis::similarity::{similarity, Combine, SimilarityOptions};
use adag_analysis::spectral;
use common::{neuron, planted, prompt, purity};
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn norm(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / (n + 1e-5)).collect()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let (a, b) = (norm(a), norm(b));
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}

/// Three units on two prompts, with a unit at two positions; S computed by hand from §5.
#[test]
fn similarity_matches_direct_computation() {
    let mut c = adag_circuit::Circuit {
        prompts: vec![prompt(0, 3, 2), prompt(1, 3, 2)],
        ..Default::default()
    };
    // Prompt 0: A (layer 0, n 1, +) at positions 0 and 2; B (layer 1, n 5, +); C (layer 1, n 5, −).
    c.nodes.push(neuron(
        0,
        0,
        0,
        1,
        1.0,
        0.1,
        vec![0.5, 0.2, 0.0],
        vec![0.3, 0.1],
    ));
    c.nodes.push(neuron(
        0,
        0,
        2,
        1,
        2.0,
        0.1,
        vec![0.1, 0.0, 0.4],
        vec![0.1, -0.2],
    ));
    c.nodes.push(neuron(
        0,
        1,
        2,
        5,
        1.0,
        0.2,
        vec![0.0, 0.3, 0.6],
        vec![0.2, 0.2],
    ));
    c.nodes.push(neuron(
        0,
        1,
        1,
        5,
        -1.0,
        0.3,
        vec![0.9, -0.1, 0.2],
        vec![-0.4, 0.1],
    ));
    // Prompt 1: A and B only.
    c.nodes.push(neuron(
        1,
        0,
        1,
        1,
        1.0,
        0.1,
        vec![0.2, 0.7, 0.1],
        vec![0.5, 0.0],
    ));
    c.nodes.push(neuron(
        1,
        1,
        2,
        5,
        3.0,
        0.1,
        vec![0.3, 0.3, 0.3],
        vec![0.1, 0.4],
    ));
    // Embedding and logit nodes are not units.
    let mut e = neuron(0, -1, 0, 7, 1.0, 0.5, vec![], vec![]);
    e.polarity = 1;
    c.nodes.push(e);
    c.nodes.push(neuron(0, 2, 2, 100, 5.0, 1.0, vec![], vec![]));

    let p = Profiles::from_circuit(&c);
    let keys: Vec<String> = p.units.iter().map(Unit::key).collect();
    assert_eq!(keys, ["0,1,1", "1,5,-1", "1,5,1"]);
    // Summed views, input row-normalised by its sum before the L2 norm.
    let a0_in = [0.6f32, 0.2, 0.4];
    let a0_out = [0.4f32, -0.1];
    let rownorm = |v: &[f32]| {
        let s: f32 = v.iter().sum();
        v.iter().map(|x| x / s).collect::<Vec<f32>>()
    };
    let (b0_in, b0_out) = ([0.0f32, 0.3, 0.6], [0.2f32, 0.2]);
    let (c0_in, c0_out) = ([0.9f32, -0.1, 0.2], [-0.4f32, 0.1]);
    let (a1_in, a1_out) = ([0.2f32, 0.7, 0.1], [0.5f32, 0.0]);
    let (b1_in, b1_out) = ([0.3f32, 0.3, 0.3], [0.1f32, 0.4]);
    let ci = |x: &[f32], y: &[f32]| cos(&rownorm(x), &rownorm(y));
    // A–B co-occur on both prompts; A–C and B–C on prompt 0 only.
    let ab_in = (ci(&a0_in, &b0_in) + ci(&a1_in, &b1_in)) / 2.0;
    let ab_out = (cos(&a0_out, &b0_out) + cos(&a1_out, &b1_out)) / 2.0;
    let ac_in = ci(&a0_in, &c0_in);
    let ac_out = cos(&a0_out, &c0_out);
    let bc_in = ci(&b0_in, &c0_in);
    let bc_out = cos(&b0_out, &c0_out);
    let harmonic = |a: f32, b: f32| {
        let (a, b) = (a.max(0.0), b.max(0.0));
        if a + b > 0.0 {
            2.0 * a * b / (a + b)
        } else {
            0.0
        }
    };
    let s = similarity(&p, &SimilarityOptions::default());
    let (ia, ib, ic) = (0, 2, 1); // A = 0,1,1; B = 1,5,1; C = 1,5,-1
    let close = |x: f32, y: f32| assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    close(s.get(ia, ib), harmonic(ab_in, ab_out));
    close(s.get(ib, ia), harmonic(ab_in, ab_out));
    close(s.get(ia, ic), harmonic(ac_in, ac_out));
    close(s.get(ib, ic), harmonic(bc_in, bc_out));
    close(s.get(ia, ia), 1.0);
    let m = similarity(
        &p,
        &SimilarityOptions {
            combine: Combine::Mean,
            weight_by_attribution: false,
        },
    );
    close(m.get(ia, ib), (ab_in * 2.0 + ab_out * 2.0) / 4.0);
    close(m.get(ia, ic), (ac_in + ac_out) / 2.0);
    // Attribution weighting: prompt weights sqrt(|A_a||A_b|).
    let w = similarity(
        &p,
        &SimilarityOptions {
            combine: Combine::Mean,
            weight_by_attribution: true,
        },
    );
    let (w0, w1) = ((0.2f32 * 0.2).sqrt(), (0.1f32 * 0.1).sqrt());
    let num = w0 * (ci(&a0_in, &b0_in) + cos(&a0_out, &b0_out))
        + w1 * (ci(&a1_in, &b1_in) + cos(&a1_out, &b1_out));
    close(w.get(ia, ib), num / (2.0 * (w0 + w1)));
}

fn assignment(c: &adag_circuit::Circuit, opts: &ClusterOptions) -> Vec<(Unit, usize)> {
    let p = Profiles::from_circuit(c);
    let cl = cluster(&p, opts).unwrap();
    cl.units.into_iter().zip(cl.labels).collect()
}

#[test]
fn planted_groups_are_recovered() {
    let (c, truth) = planted(5, 6, 30, 1);
    let opts = ClusterOptions {
        k: 5,
        ..Default::default()
    };
    let got = assignment(&c, &opts);
    let pairs: Vec<(usize, usize)> = got
        .iter()
        .map(|(u, l)| {
            let g = truth
                .iter()
                .find(|(k, _)| *k == (u.layer, u.neuron))
                .unwrap()
                .1;
            (*l, g)
        })
        .collect();
    assert_eq!(purity(&pairs), 1.0, "{pairs:?}");
    let p = Profiles::from_circuit(&c);
    let d = cluster(&p, &opts).unwrap().diagnostics;
    assert!(d.silhouette > 0.5, "{d:?}");
    assert!(d.intra_similarity > d.inter_similarity);
    assert_eq!(d.suggested_k, 5, "{d:?}");
    assert_eq!(d.sign_conflict_rate, 0.0);
}

#[test]
fn invariant_to_row_order_and_deterministic_per_seed() {
    let (c, _) = planted(4, 5, 20, 7);
    let opts = ClusterOptions {
        k: 6, // more clusters than groups: the split is not forced by the data
        ..Default::default()
    };
    let base = assignment(&c, &opts);
    assert_eq!(base, assignment(&c, &opts), "same seed, same result");
    let mut shuffled = c.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    shuffled.nodes.shuffle(&mut rng);
    shuffled.prompts.reverse();
    assert_eq!(
        base,
        assignment(&shuffled, &opts),
        "row order must not matter"
    );
}

#[test]
fn partial_and_dense_eigensolvers_agree() {
    let (c, _) = planted(6, 12, 25, 11);
    let p = Profiles::from_circuit(&c);
    let s = similarity(&p, &SimilarityOptions::default());
    let dense = spectral::embed_with(&s, 6, 42, false).unwrap();
    let partial = spectral::embed_with(&s, 6, 42, true).unwrap();
    assert_eq!(dense.solver, "dense");
    assert_eq!(partial.solver, "partial");
    for (a, b) in dense.eigenvalues.iter().zip(&partial.eigenvalues) {
        assert!(
            (a - b).abs() < 1e-8,
            "{:?} vs {:?}",
            dense.eigenvalues,
            partial.eigenvalues
        );
    }
    let kd = spectral::kmeans(&dense.rows, 6, 6, 10, 42);
    let kp = spectral::kmeans(&partial.rows, 6, 6, 10, 42);
    // Same partition up to label names.
    let n = kd.labels.len();
    for i in 0..n {
        for j in 0..n {
            assert_eq!(kd.labels[i] == kd.labels[j], kp.labels[i] == kp.labels[j]);
        }
    }
}

#[test]
fn cluster_state_round_trips_and_maps_nodes() {
    let (c, _) = planted(3, 4, 10, 5);
    let p = Profiles::from_circuit(&c);
    let opts = ClusterOptions {
        k: 3,
        ..Default::default()
    };
    let cl = cluster(&p, &opts).unwrap();
    let state = cl.to_state("synthetic", &p, &opts);
    let dir = tempfile::tempdir().unwrap();
    let path = ClusterState::default_path(dir.path());
    state.write(&path).unwrap();
    let back = ClusterState::read(&path).unwrap();
    // serde_json's default float parsing may differ in the last bit, so compare the mapping
    // exactly and the figures to 1e-12.
    assert_eq!(back.cluster_map, state.cluster_map);
    assert_eq!(back.options, state.options);
    for (a, b) in back.clusters.iter().zip(&state.clusters) {
        assert_eq!(
            (&a.id, &a.units, a.n_prompts),
            (&b.id, &b.units, b.n_prompts)
        );
        assert!((a.attribution - b.attribution).abs() < 1e-12);
    }
    assert!((back.diagnostics.silhouette - state.diagnostics.silhouette).abs() < 1e-12);
    // Every neuron node maps to a cluster through its (layer, neuron, sign) key.
    for n in &c.nodes {
        let u = Unit::of_node(n.layer, n.neuron, n.activation);
        assert!(back.cluster_of(&u).is_some());
    }
    assert_eq!(
        back.clusters.iter().map(|c| c.units.len()).sum::<usize>(),
        p.units.len()
    );
    // C0 carries the most attribution.
    assert!(back.clusters[0].abs_attribution >= back.clusters[1].abs_attribution);
    assert!(back.find("C2").is_some());
}

#[test]
fn bad_k_is_an_error_not_a_panic() {
    let (c, _) = planted(2, 2, 3, 5);
    let p = Profiles::from_circuit(&c);
    for k in [0, 5] {
        let e = cluster(
            &p,
            &ClusterOptions {
                k,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
    let empty = Profiles::from_circuit(&adag_circuit::Circuit::default());
    assert!(cluster(&empty, &ClusterOptions::default()).is_err());
}

/// The eigengap is searched over a range wider than k: five planted groups clustered with
/// k = 3 still suggest 5 (the old search over 1..=k could not), and the range is recorded.
#[test]
fn suggested_k_is_searched_over_a_range_wider_than_k() {
    let (c, _) = planted(5, 6, 30, 1);
    let p = Profiles::from_circuit(&c);
    let opts = ClusterOptions {
        k: 3,
        ..Default::default()
    };
    let d = cluster(&p, &opts).unwrap().diagnostics;
    assert_eq!(d.k_range, [2, 20]);
    assert_eq!(d.eigenvalues.len(), 21);
    assert_eq!(d.suggested_k, 5, "{d:?}");
    let narrow = ClusterOptions {
        k_range: Some([2, 4]),
        ..opts
    };
    let d = cluster(&p, &narrow).unwrap().diagnostics;
    assert_eq!(d.k_range, [2, 4]);
    assert!((2..=4).contains(&d.suggested_k), "{d:?}");
}

/// The "top units" of a cluster are those with the most Σ|attribution|, not the lowest ids.
#[test]
fn top_units_are_the_ones_with_the_most_attribution() {
    let mut c = adag_circuit::Circuit::default();
    for p in 0..3u64 {
        c.prompts.push(common::prompt(p, 3, 1));
        for (neuron, attr) in [(1u32, 0.01f32), (2, -0.5), (3, 0.2)] {
            c.nodes.push(common::neuron(
                p,
                0,
                0,
                neuron,
                1.0,
                attr,
                vec![1.0, 0.0, 0.0],
                vec![1.0],
            ));
        }
    }
    let p = Profiles::from_circuit(&c);
    let cs = common::state(&[("0,1,1", "C0"), ("0,2,1", "C0"), ("0,3,1", "C0")]);
    assert_eq!(cs.top_units(&p, "C0", 2), ["0,2,1", "0,3,1"]);
}

/// Ward on the same spectral embedding recovers the planted groups as k-means does, with the
/// same diagnostics, and records its method.
#[test]
fn ward_recovers_planted_groups_with_the_same_diagnostics() {
    use adag_analysis::{cluster_by, Method};
    let (c, truth) = planted(5, 6, 30, 1);
    let opts = ClusterOptions {
        k: 5,
        ..Default::default()
    };
    let p = Profiles::from_circuit(&c);
    let cl = cluster_by(&p, &opts, Method::Ward).unwrap();
    let pairs: Vec<(usize, usize)> = cl
        .units
        .iter()
        .zip(&cl.labels)
        .map(|(u, l)| {
            let g = truth
                .iter()
                .find(|(k, _)| *k == (u.layer, u.neuron))
                .unwrap()
                .1;
            (*l, g)
        })
        .collect();
    assert_eq!(purity(&pairs), 1.0, "{pairs:?}");
    let d = cl.diagnostics;
    assert_eq!(d.method, "ward");
    assert!(d.silhouette > 0.5, "{d:?}");
    assert_eq!(d.suggested_k, 5, "{d:?}");
    assert_eq!(cluster(&p, &opts).unwrap().diagnostics.method, "kmeans");
    assert_eq!(
        "louvain".parse::<Method>().unwrap_err(),
        "\"louvain\": expected kmeans, ward or leiden"
    );
}

/// Leiden on the same similarity finds the planted groups without being told k, reports the
/// same diagnostics (eigengap at the k it found, silhouette, modularity) and its options, has
/// a modularity at least that of k-means at the true k, and is deterministic for a seed; a
/// non-positive resolution is a clean error.
#[test]
fn leiden_recovers_planted_groups_without_k() {
    use adag_analysis::{cluster_by, cluster_leiden, LeidenOptions, Method};
    let (c, truth) = planted(5, 6, 30, 1);
    let p = Profiles::from_circuit(&c);
    let opts = ClusterOptions::default();
    let cl = cluster_leiden(&p, &opts, &LeidenOptions::default()).unwrap();
    assert_eq!(cl.k(), 5);
    let pairs: Vec<(usize, usize)> = cl
        .units
        .iter()
        .zip(&cl.labels)
        .map(|(u, l)| {
            let g = truth
                .iter()
                .find(|(k, _)| *k == (u.layer, u.neuron))
                .unwrap()
                .1;
            (*l, g)
        })
        .collect();
    assert_eq!(purity(&pairs), 1.0, "{pairs:?}");
    let d = &cl.diagnostics;
    assert_eq!(d.method, "leiden");
    assert_eq!(d.leiden, Some(LeidenOptions::default()));
    assert!(d.silhouette > 0.5, "{d:?}");
    let km = cluster(&p, &ClusterOptions { k: 5, ..opts }).unwrap();
    let (ql, qk) = (d.modularity.unwrap(), km.diagnostics.modularity.unwrap());
    assert!(ql >= qk - 1e-9, "leiden Q {ql} < k-means Q {qk}");
    assert_eq!(
        cluster_by(&p, &opts, Method::Leiden).unwrap().labels,
        cl.labels
    );
    let state = cl.to_state("c", &p, &ClusterOptions { k: cl.k(), ..opts });
    assert_eq!(state.clusters.len(), 5);
    assert_eq!(state.cluster_map.len(), p.units.len());
    let bad = LeidenOptions {
        resolution: 0.0,
        knn: 0,
    };
    let e = cluster_leiden(&p, &opts, &bad).unwrap_err().to_string();
    assert!(e.contains("--resolution 0"), "{e}");
}

/// Hypothesis clusters: on 8 prompts labelled `a`/`b`, a unit carrying attribution only on
/// `a` prompts has AUROC 1 (`for`), one only on `b` prompts AUROC 0 (`against`), and units
/// present everywhere with attribution unrelated to the label stay in `rest`; the clustering
/// carries the usual diagnostics and its method. A label no prompt has is a clean error.
#[test]
fn hypothesis_clusters_split_units_by_auroc() {
    use adag_analysis::hypothesis::{hypothesis_labels, unit_aurocs};
    let mut c = adag_circuit::Circuit::default();
    for id in 0..8u64 {
        let mut p = prompt(id, 3, 1);
        p.label = Some(if id % 2 == 0 { "a" } else { "b" }.into());
        c.prompts.push(p);
        let node =
            |l: i32, n: u32, a: f32| neuron(id, l, 2, n, 1.0, a, vec![0.5, 0.5, 0.0], vec![1.0]);
        if id % 2 == 0 {
            c.nodes.push(node(0, 1, 0.3));
        } else {
            c.nodes.push(node(0, 2, 0.3));
        }
        // Attribution 0.1·(id mod 4 < 2): half of each class high, half low.
        c.nodes.push(node(1, 3, if id % 4 < 2 { 0.2 } else { 0.1 }));
        c.nodes.push(node(1, 4, 0.1 + 0.01 * (id % 3) as f32));
    }
    let p = Profiles::from_circuit(&c);
    let aurocs = unit_aurocs(&p, &c, "a").unwrap();
    let by_unit: std::collections::BTreeMap<(i32, u32), f64> = p
        .units
        .iter()
        .zip(&aurocs)
        .map(|(u, &a)| ((u.layer, u.neuron), a))
        .collect();
    assert_eq!(by_unit[&(0, 1)], 1.0);
    assert_eq!(by_unit[&(0, 2)], 0.0);
    assert_eq!(by_unit[&(1, 3)], 0.5);
    let (labels, names) = hypothesis_labels(&aurocs, 0.8);
    assert_eq!(names, ["for", "against", "rest"]);
    let opts = ClusterOptions {
        k: 3,
        ..Default::default()
    };
    let cl = adag_analysis::cluster_given(&p, &opts, "hypothesis a", &labels).unwrap();
    assert_eq!(cl.diagnostics.method, "hypothesis a");
    assert!(cl.diagnostics.silhouette.is_finite());
    let e = unit_aurocs(&p, &c, "z").unwrap_err().to_string();
    assert!(
        e.contains("0 of 8 prompts have this label") && e.contains("a, b"),
        "{e}"
    );
}
