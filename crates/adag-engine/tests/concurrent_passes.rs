//! A batch's backward passes may run on two threads at once (`ADAG_PASS_THREADS`): the graphs
//! must be the same, bit for bit, as one pass after another, for both bases (the neuron basis
//! shares a cache between a pass's edge reading and its MLP path, which threads must not mix).
//!
//! Its own test binary: the variable is process-wide.

use std::path::{Path, PathBuf};

use adag_engine::{attribute, AttributeOptions, NeuronBasis, TargetSpec, TranscoderSet};
use adag_graph::{Graph, GraphMeta};
use adag_model::{LoadOptions, LoadedModel};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::Device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn graph(m: &LoadedModel, basis: &dyn adag_engine::Basis, tokens: &[u32], threads: usize) -> Graph {
    std::env::set_var("ADAG_PASS_THREADS", threads.to_string());
    // Small batches spread over many positions: several cone groups per batch.
    let opts = AttributeOptions {
        targets: TargetSpec::Salient {
            max_n_logits: 5,
            desired_logit_prob: 0.99,
        },
        batch_size: 24,
        ..Default::default()
    };
    attribute(&m.model, tokens, basis, &opts, GraphMeta::default(), &|i| {
        format!("t{i}")
    })
    .unwrap()
}

fn assert_same(a: &Graph, b: &Graph, what: &str) {
    assert_eq!(a.selected_features, b.selected_features, "{what}");
    assert_eq!(a.adjacency.len(), b.adjacency.len(), "{what}");
    let differ = a
        .adjacency
        .iter()
        .zip(&b.adjacency)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what}: {differ} adjacency entries differ");
    assert!(
        a.adjacency.iter().filter(|v| **v != 0.0).count() > 100,
        "{what}: too few edges for the check to mean anything"
    );
}

#[test]
fn concurrent_backward_passes_give_the_same_graphs() {
    let text = "The keys to the cabinet are on the table near the door of the house";
    let name = "qwen2";
    let m = LoadedModel::load(&fixture(name), &LoadOptions::default()).unwrap();
    let tokens = adag_engine::prepare_tokens(&m.tokenizer, text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = RandomSpec {
        cross_layer: true,
        n_layers: m.model.cfg.n_layers,
        d_model: m.model.cfg.d_model,
        d_tc: 64,
        activation: "relu".into(),
        k: 0,
        skip: false,
        input_hook: "mlp.hook_in".into(),
        output_hook: "hook_mlp_out".into(),
        density: 0.1,
        seed: 9,
    };
    write_random_transcoders(dir.path(), &spec).unwrap();
    let tc = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    let one = graph(&m, &tc, &tokens, 1);
    let two = graph(&m, &tc, &tokens, 2);
    assert_same(&one, &two, &format!("{name} CLT"));

    let neurons = NeuronBasis::default();
    let one = graph(&m, &neurons, &tokens, 1);
    let two = graph(&m, &neurons, &tokens, 2);
    assert_same(&one, &two, &format!("{name} neurons"));
}
