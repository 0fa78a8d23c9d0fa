//! Interventions: the constrained mode is the graph's linear model; the open-loop mode is the
//! real model with a feature's decoder output changed.

use std::path::{Path, PathBuf};

use adag_core::HookName;
use adag_engine::intervene::{generate, intervene, Action, Intervention, Mode, Position};
use adag_engine::{attribute, AttributeOptions, TargetSpec, TranscoderSet};
use adag_graph::GraphMeta;
use adag_model::{Batch, CacheFilter, ForwardHooks, LoadOptions, LoadedModel};
use adag_testkit::max_abs_diff as max_diff;
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::{Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn setup(
    model: &str,
    cross_layer: bool,
    skip: bool,
) -> (LoadedModel, tempfile::TempDir, TranscoderSet, Vec<u32>) {
    let m = LoadedModel::load(&fixture(model), &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = RandomSpec {
        cross_layer,
        n_layers: m.model.cfg.n_layers,
        d_model: m.model.cfg.d_model,
        d_tc: 40,
        activation: "relu".into(),
        k: 0,
        skip,
        input_hook: "mlp.hook_in".into(),
        output_hook: "hook_mlp_out".into(),
        density: 0.1,
        seed: 11,
    };
    write_random_transcoders(dir.path(), &spec).unwrap();
    let tc = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    let tokens = adag_engine::prepare_tokens(&m.tokenizer, "36+59=95. The keys").unwrap();
    (m, dir, tc, tokens)
}

#[test]
fn constrained_with_no_change_reproduces_the_clean_logits() {
    let (m, _d, tc, tokens) = setup("llama", false, true);
    let clean = m.model.logits(&tokens).unwrap();
    let iv = [Intervention {
        layer: 1,
        pos: Position::At(3),
        feature: 5,
        action: Action::Scale(1.0),
    }];
    for mode in [
        Mode::Constrained,
        Mode::OpenLoop {
            freeze_attention: true,
        },
        Mode::OpenLoop {
            freeze_attention: false,
        },
    ] {
        let out = intervene(&m.model, &tokens, &tc, &iv, mode).unwrap();
        assert!(max_diff(&out.logits, &clean) < 1e-5, "{mode:?}");
    }
}

#[test]
fn constrained_doubling_moves_targets_by_the_graph_edges() {
    for (model, cross) in [("qwen2", false), ("gemma2", true)] {
        let (m, _d, tc, tokens) = setup(model, cross, !cross);
        let opts = AttributeOptions {
            targets: TargetSpec::Salient {
                max_n_logits: 2,
                desired_logit_prob: 0.99,
            },
            ..Default::default()
        };
        let g = attribute(&m.model, &tokens, &tc, &opts, GraphMeta::default(), &|i| {
            i.to_string()
        })
        .unwrap();
        let base = intervene(&m.model, &tokens, &tc, &[], Mode::Constrained).unwrap();
        let ids: Vec<u32> = g.logit_targets.iter().map(|t| t.vocab_idx).collect();
        let demeaned = |logits: &Tensor| -> Vec<f32> {
            let last = logits.get(tokens.len() - 1).unwrap();
            let mean = last.mean_all().unwrap().to_scalar::<f32>().unwrap();
            ids.iter()
                .map(|&i| last.get(i as usize).unwrap().to_scalar::<f32>().unwrap() - mean)
                .collect()
        };
        let before = demeaned(&base.logits);
        let mut checked = 0;
        for src in (0..g.n_features()).step_by(5) {
            let ([layer, pos, feature], _) = g.feature(src).unwrap();
            let iv = [Intervention {
                layer: layer as usize,
                pos: Position::At(pos as usize),
                feature,
                action: Action::Scale(2.0),
            }];
            let out = intervene(&m.model, &tokens, &tc, &iv, Mode::Constrained).unwrap();
            for (k, (a, b)) in before.iter().zip(demeaned(&out.logits)).enumerate() {
                let edge = g.edge(g.logit_index(k), src);
                assert!(
                    (b - a - edge).abs() < 1e-4 + 1e-3 * edge.abs(),
                    "{model}: feature {src} → logit {k}: {} vs {edge}",
                    b - a
                );
            }
            checked += 1;
        }
        assert!(checked >= 5, "{model}: {checked}");
    }
}

/// Subtracts a fixed vector from the write site at one position: the feature "removed" by hand.
struct RemoveByHand {
    hook: HookName,
    pos: usize,
    vector: Tensor,
}

impl ForwardHooks for RemoveByHand {
    fn edit(&mut self, hook: HookName, value: Tensor) -> adag_model::Result<Tensor> {
        if hook != self.hook {
            return Ok(value);
        }
        let (_, t, d) = value.dims3().unwrap();
        let idx = Tensor::new(&[self.pos as u32], value.device()).unwrap();
        let delta = Tensor::zeros((t, d), candle_core::DType::F32, value.device())
            .unwrap()
            .index_add(&idx, &self.vector.neg().unwrap().unsqueeze(0).unwrap(), 0)
            .unwrap();
        Ok((value + delta.unsqueeze(0).unwrap()).unwrap())
    }
}

#[test]
fn open_loop_ablation_matches_a_forward_with_the_feature_removed() {
    let (m, _d, tc, tokens) = setup("gemma2", false, false);
    let clean = m
        .model
        .forward(
            &Batch::single(&tokens).unwrap(),
            &CacheFilter::sites([tc.read.site()]),
        )
        .unwrap();
    // The most active feature at layer 1.
    let l = 1;
    let x = clean
        .cache
        .item(HookName::Block(l, tc.read.site()), 0)
        .unwrap();
    let acts = tc
        .activate(l, &tc.pre_activations(l, &x).unwrap())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let (p, f, a) = acts
        .iter()
        .enumerate()
        .skip(1)
        .flat_map(|(p, r)| r.iter().enumerate().map(move |(f, &a)| (p, f, a)))
        .max_by(|x, y| x.2.total_cmp(&y.2))
        .unwrap();
    assert!(a > 0.0);
    let iv = [Intervention {
        layer: l,
        pos: Position::At(p),
        feature: f as u32,
        action: Action::Set(0.0),
    }];
    let out = intervene(
        &m.model,
        &tokens,
        &tc,
        &iv,
        Mode::OpenLoop {
            freeze_attention: false,
        },
    )
    .unwrap();
    let dec = tc
        .decoder_rows(l, &[f as u32], &Device::Cpu)
        .unwrap()
        .get(0)
        .unwrap()
        .get(0)
        .unwrap();
    let mut by_hand = RemoveByHand {
        hook: HookName::Block(l, tc.write.site()),
        pos: p,
        vector: (dec * a as f64).unwrap(),
    };
    let want = m
        .model
        .forward_with(
            &Batch::single(&tokens).unwrap(),
            &CacheFilter::none(),
            &mut by_hand,
        )
        .unwrap()
        .logits
        .get(0)
        .unwrap();
    assert!(max_diff(&out.logits, &want) < 1e-5);
    assert!(
        max_diff(&out.logits, &clean.logits.get(0).unwrap()) > 1e-4,
        "the ablation must change something"
    );
    // The ablated feature reads 0 in the returned activations; earlier layers are untouched.
    assert_eq!(
        out.activations[l]
            .get(p)
            .unwrap()
            .get(f)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
}

#[test]
fn generation_applies_open_ended_interventions_to_new_tokens() {
    let (m, _d, tc, tokens) = setup("qwen3", false, false);
    let (plain, _) = generate(&m.model, &tokens, &tc, &[], 4).unwrap();
    // Without interventions: plain greedy decoding.
    let mut seq = tokens.clone();
    for &t in &plain {
        let logits = m.model.logits(&seq).unwrap();
        assert_eq!(
            logits
                .get(seq.len() - 1)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap(),
            t
        );
        seq.push(t);
    }
    // A strong open-ended steer is active at every new position.
    let iv = [Intervention {
        layer: 2,
        pos: Position::From(tokens.len() - 1),
        feature: 3,
        action: Action::Set(50.0),
    }];
    let (steered, logits) = generate(&m.model, &tokens, &tc, &iv, 4).unwrap();
    assert_eq!(logits.len(), 4);
    let mut full = tokens.clone();
    full.extend(&steered[..3]);
    let out = intervene(
        &m.model,
        &full,
        &tc,
        &iv,
        Mode::OpenLoop {
            freeze_attention: false,
        },
    )
    .unwrap();
    for p in tokens.len() - 1..full.len() {
        assert_eq!(
            out.activations[2]
                .get(p)
                .unwrap()
                .get(3)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            50.0
        );
    }
    assert!(max_diff(&out.logits.get(full.len() - 1).unwrap(), &logits[3]) < 1e-5);
}

#[test]
fn intervention_strings_parse_or_explain() {
    let iv: Intervention = "3:7:1024=2.5".parse().unwrap();
    assert_eq!(
        iv,
        Intervention {
            layer: 3,
            pos: Position::At(7),
            feature: 1024,
            action: Action::Set(2.5)
        }
    );
    let iv: Intervention = "0:4+:9*0".parse().unwrap();
    assert_eq!(
        iv,
        Intervention {
            layer: 0,
            pos: Position::From(4),
            feature: 9,
            action: Action::Scale(0.0)
        }
    );
    let e = "3:7=1".parse::<Intervention>().unwrap_err().to_string();
    assert!(e.contains("LAYER:POS:FEATURE"), "{e}");
}
