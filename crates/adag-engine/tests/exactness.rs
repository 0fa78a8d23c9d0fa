//! Every edge is an exact direct effect.
//!
//! In the constrained model (the model's own forward pass with norm denominators, attention
//! patterns and MLP outputs frozen at the clean run, transcoder skips live), adding a source's
//! vector (an error vector, a token embedding, or one more copy of a feature's decoder output,
//! i.e. doubling the feature) must change every active feature's pre-activation and every
//! target's de-meaned logit by exactly that source's adjacency column. This is circuit-tracer's
//! main test (`verify_token_and_error_edges`, `verify_feature_edges`), run on every fixture
//! architecture with per-layer, skip and cross-layer transcoders.

use std::path::{Path, PathBuf};

use adag_engine::constrained::Constrained;
use adag_engine::{attribute, AttributeOptions, TargetSpec, TranscoderSet};
use adag_graph::{Graph, GraphMeta, NodeKind};
use adag_model::{Batch, LoadOptions, LoadedModel};
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::{DType, Device};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

struct Case {
    model: &'static str,
    cross_layer: bool,
    activation: &'static str,
    skip: bool,
    input: &'static str,
    output: &'static str,
}

fn spec(case: &Case, n_layers: usize, d_model: usize) -> RandomSpec {
    RandomSpec {
        cross_layer: case.cross_layer,
        n_layers,
        d_model,
        d_tc: 48,
        activation: case.activation.into(),
        k: 6,
        skip: case.skip,
        input_hook: case.input.into(),
        output_hook: case.output.into(),
        density: 0.1,
        seed: 7,
    }
}

/// Feature pre-activations (at each active feature's own layer and position) and de-meaned
/// target values of one constrained run.
fn observe(
    model: &LoadedModel,
    tc: &TranscoderSet,
    g: &Graph,
    run: &mut Constrained,
) -> (Vec<f32>, Vec<f32>) {
    run.run(&model.model, &g.input_tokens).unwrap();
    let pre: Vec<Vec<Vec<f32>>> = (0..tc.n_layers())
        .map(|l| run.pre_activations(l).unwrap().to_vec2::<f32>().unwrap())
        .collect();
    let feats = g
        .active_features
        .iter()
        .map(|&[l, p, f]| pre[l as usize][p as usize][f as usize])
        .collect();
    // De-meaned logit of target k at the last position: (x/s ⊙ w) · (W_U[t] − mean W_U).
    let n = run.final_normalized.as_ref().unwrap().get(0).unwrap();
    let last = n.get(g.n_pos() - 1).unwrap();
    let w = model.model.weights.ln_final.effective_weight().unwrap();
    let x = (last * w).unwrap();
    let ids: Vec<u32> = g.logit_targets.iter().map(|t| t.vocab_idx).collect();
    let dirs =
        adag_engine::targets::demeaned_directions(&model.model.weights.unembed, &ids).unwrap();
    let vals = dirs
        .matmul(&x.unsqueeze(1).unwrap())
        .unwrap()
        .squeeze(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    (feats, vals)
}

fn check_column(
    g: &Graph,
    name: &str,
    src: usize,
    base: &(Vec<f32>, Vec<f32>),
    after: &(Vec<f32>, Vec<f32>),
    worst: &mut f32,
    largest: &mut f32,
) {
    // Feature rows: every active feature is a node (max_feature_nodes = None).
    for (i, (a, b)) in base.0.iter().zip(&after.0).enumerate() {
        let want = g.edge(i, src);
        *largest = largest.max(want.abs());
        let got = b - a;
        let err = (got - want).abs();
        *worst = worst.max(err);
        assert!(
            err <= 1e-4 + 1e-3 * want.abs(),
            "{name}: source {src} → feature {i}: Δpre {got} vs edge {want}"
        );
    }
    for (k, (a, b)) in base.1.iter().zip(&after.1).enumerate() {
        let want = g.edge(g.logit_index(k), src);
        *largest = largest.max(want.abs());
        let got = b - a;
        let err = (got - want).abs();
        *worst = worst.max(err);
        assert!(
            err <= 1e-4 + 1e-3 * want.abs(),
            "{name}: source {src} → logit {k}: Δlogit {got} vs edge {want}"
        );
    }
}

fn exactness(case: Case) {
    exactness_at(&fixture(case.model), case)
}

fn exactness_at(model_dir: &Path, case: Case) {
    exactness_in_format(model_dir, case, false)
}

/// Rewrites the native per-layer files in `native` as GemmaScope-2 files in `out`: lower-case
/// keys, `w_enc` `[d_in, d_tc]` and `affine_skip_connection` `[d_in, d_out]` (both transposed
/// against circuit-tracer), `threshold`, listed by a config.yaml as circuit-tracer's Gemma-3
/// configs do. Returns `out`.
fn to_gemmascope2(native: &Path, out: &Path, case: &Case, n_layers: usize) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let mut list = String::new();
    for l in 0..n_layers {
        let t = candle_core::safetensors::load(
            native.join(format!("layer_{l}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let tr = |x: &candle_core::Tensor| x.t().unwrap().contiguous().unwrap();
        let mut m = std::collections::HashMap::new();
        m.insert("w_enc".to_string(), tr(&t["W_enc"]));
        m.insert("w_dec".to_string(), t["W_dec"].clone());
        m.insert("b_enc".to_string(), t["b_enc"].clone());
        m.insert("b_dec".to_string(), t["b_dec"].clone());
        m.insert(
            "threshold".to_string(),
            t["activation_function.threshold"].clone(),
        );
        if let Some(skip) = t.get("W_skip") {
            m.insert("affine_skip_connection".to_string(), tr(skip));
        }
        let file = format!("layer_{l}_width_48_l0_small_affine/params.safetensors");
        std::fs::create_dir_all(out.join(file.rsplit_once('/').unwrap().0)).unwrap();
        candle_core::safetensors::save(&m, out.join(&file)).unwrap();
        list.push_str(&format!("  - {file}\n"));
    }
    std::fs::write(
        out.join("config.yaml"),
        format!(
            "model_name: gemma3-fixture\nmodel_kind: transcoder_set\nfeature_input_hook: {}\nfeature_output_hook: {}\ntranscoders:\n{list}",
            case.input, case.output
        ),
    )
    .unwrap();
    out.to_path_buf()
}

fn exactness_in_format(model_dir: &Path, case: Case, gemmascope2: bool) {
    let name = format!(
        "{} {} {} skip={} {}→{}",
        case.model,
        if case.cross_layer { "CLT" } else { "PLT" },
        case.activation,
        case.skip,
        case.input,
        case.output
    );
    let model = LoadedModel::load(model_dir, &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(
        dir.path(),
        &spec(&case, model.model.cfg.n_layers, model.model.cfg.d_model),
    )
    .unwrap();
    let tc_dir = if gemmascope2 {
        let n_layers = model.model.cfg.n_layers;
        to_gemmascope2(dir.path(), &dir.path().join("gemmascope2"), &case, n_layers)
    } else {
        dir.path().to_path_buf()
    };
    let tc = TranscoderSet::load(&tc_dir, &Device::Cpu).unwrap();
    let tokens = adag_engine::prepare_tokens(
        &model.tokenizer,
        "The capital of the state containing Dallas",
    )
    .unwrap();
    let opts = AttributeOptions {
        targets: TargetSpec::Salient {
            max_n_logits: 3,
            desired_logit_prob: 0.99,
        },
        batch_size: 7,
        ..Default::default()
    };
    let g = attribute(
        &model.model,
        &tokens,
        &tc,
        &opts,
        GraphMeta::default(),
        &|i| i.to_string(),
    )
    .unwrap();
    assert!(
        g.n_features() > 10,
        "{name}: only {} active features",
        g.n_features()
    );
    assert!(g.n_logits() >= 2, "{name}: want several targets");

    let clean = model
        .model
        .forward(
            &Batch::single(&tokens).unwrap(),
            &Constrained::clean_filter(&tc),
        )
        .unwrap();
    // The constrained run with nothing added reproduces the clean logits.
    let mut run = Constrained::new(&clean.cache, &tc);
    let logits = run.run(&model.model, &tokens).unwrap();
    let d = (logits - &clean.logits)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        d < 1e-5,
        "{name}: constrained clean run differs from the forward pass by {d}"
    );
    let base = observe(&model, &tc, &g, &mut run);

    let comps = tc.components(&clean.cache, 0, DType::F32).unwrap();
    let (mut worst, mut largest) = (0.0f32, 0.0f32);
    let mut checked = 0;
    for src in 0..g.n_nodes() {
        let mut run = Constrained::new(&clean.cache, &tc);
        match g.node_kind(src) {
            NodeKind::Error { layer, pos } if pos > 0 => {
                let e = comps
                    .errors
                    .get(layer as usize)
                    .unwrap()
                    .get(pos as usize)
                    .unwrap();
                run.add_write(layer as usize, pos as usize, &e).unwrap();
            }
            NodeKind::Token { pos, .. } if pos > 0 => {
                run.add_embed(pos as usize, &comps.tokens.get(pos as usize).unwrap())
                    .unwrap();
            }
            // Every third feature: one more copy of its decoder output at each output layer.
            NodeKind::Feature {
                layer,
                pos,
                feature,
                active_index,
            } if src % 3 == 0 => {
                let a = g.activation_values[active_index as usize];
                let rows = tc
                    .decoder_rows(layer as usize, &[feature], &Device::Cpu)
                    .unwrap()
                    .get(0)
                    .unwrap();
                for j in 0..rows.dim(0).unwrap() {
                    let v = (rows.get(j).unwrap() * a as f64).unwrap();
                    run.add_write(layer as usize + j, pos as usize, &v).unwrap();
                }
            }
            _ => continue,
        }
        let after = observe(&model, &tc, &g, &mut run);
        check_column(&g, &name, src, &base, &after, &mut worst, &mut largest);
        checked += 1;
    }
    assert!(checked > 20, "{name}: only {checked} sources checked");
    assert!(
        largest > 0.1,
        "{name}: edges are all tiny (largest {largest}); the check would be vacuous"
    );
    eprintln!("{name}: {checked} sources × {} targets, worst |Δ − edge| = {worst:e}, largest |edge| = {largest}", g.n_features() + g.n_logits());
}

#[test]
fn llama_plt_jumprelu_mlp_in() {
    exactness(Case {
        model: "llama",
        cross_layer: false,
        activation: "jump_relu",
        skip: false,
        input: "mlp.hook_in",
        output: "mlp.hook_out",
    });
}

#[test]
fn qwen2_plt_skip_relu_resid_mid() {
    exactness(Case {
        model: "qwen2",
        cross_layer: false,
        activation: "relu",
        skip: true,
        input: "hook_resid_mid",
        output: "hook_mlp_out",
    });
}

#[test]
fn qwen3_clt_relu() {
    exactness(Case {
        model: "qwen3",
        cross_layer: true,
        activation: "relu",
        skip: false,
        input: "hook_resid_mid",
        output: "mlp.hook_out",
    });
}

#[test]
fn gemma2_plt_skip_topk_ln2_normalized_before_post_norm() {
    exactness(Case {
        model: "gemma2",
        cross_layer: false,
        activation: "topk",
        skip: true,
        input: "ln2.hook_normalized",
        output: "mlp.hook_out",
    });
}

#[test]
fn gemma2_clt_jumprelu_hook_mlp_out() {
    exactness(Case {
        model: "gemma2",
        cross_layer: true,
        activation: "jump_relu",
        skip: false,
        input: "mlp.hook_in",
        output: "hook_mlp_out",
    });
}

/// A Gemma-3 checkpoint derived from the Gemma-2 fixture: the same tensors plus random per-head
/// q/k norms, under a Gemma3ForCausalLM config with a 3:1 local/global pattern, distinct local
/// and global rope bases, linear rope scaling on global layers and no soft-caps. The oracle is
/// the model's own constrained forward pass, so no HF reference is needed for this check.
fn gemma3_from_gemma2(dir: &Path) {
    let src = fixture("gemma2");
    let mut t =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    for l in 0..4 {
        for (i, which) in ["q_norm", "k_norm"].into_iter().enumerate() {
            let w = candle_core::Tensor::randn(0f32, 0.3, 16, &Device::Cpu).unwrap();
            let w = (w + 0.1 * (l * 2 + i) as f64).unwrap();
            t.insert(format!("model.layers.{l}.self_attn.{which}.weight"), w);
        }
    }
    // Without Gemma-2's final soft-cap the tied logits are peaked; shrinking the embedding
    // keeps several targets above the salience threshold.
    let e = t["model.embed_tokens.weight"].affine(0.05, 0.0).unwrap();
    t.insert("model.embed_tokens.weight".into(), e);
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let cfg = r#"{"architectures":["Gemma3ForCausalLM"],"model_type":"gemma3_text","vocab_size":320,
        "hidden_size":64,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,
        "head_dim":16,"intermediate_size":128,"hidden_activation":"gelu_pytorch_tanh",
        "rms_norm_eps":1e-6,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "rope_scaling":{"rope_type":"linear","factor":8.0},"query_pre_attn_scalar":24,
        "sliding_window":4,"sliding_window_pattern":4,"tie_word_embeddings":true,
        "pad_token_id":0,"eos_token_id":1,"bos_token_id":2}"#;
    std::fs::write(dir.join("config.json"), cfg).unwrap();
}

#[test]
fn gemma3_plt_jumprelu_gemmascope2_hooks() {
    let dir = tempfile::tempdir().unwrap();
    gemma3_from_gemma2(dir.path());
    let cfg = adag_model::ModelConfig::from_dir(dir.path()).unwrap();
    assert!(cfg.qk_norm && cfg.rope_local.is_some());
    assert_eq!(cfg.sliding_window, vec![Some(4), Some(4), Some(4), None]);
    exactness_at(
        dir.path(),
        Case {
            model: "gemma3",
            cross_layer: false,
            activation: "jump_relu",
            skip: true,
            input: "ln2.hook_normalized",
            output: "mlp.hook_out",
        },
    );
}

/// The Gemma-3 fixture (transformers parity in adag-model's tests/parity.rs: 5:1 local/global
/// layers, two rope bases, q/k norms) with a transcoder set in GemmaScope-2's own file format:
/// the MLP's normalized input to its post-norm output, JumpReLU thresholds, affine skips.
#[test]
fn gemma3_fixture_gemmascope2_files_jumprelu_affine_skip() {
    let cfg = adag_model::ModelConfig::from_dir(&fixture("gemma3")).unwrap();
    assert_eq!(cfg.architecture, adag_model::Architecture::Gemma3);
    let w = Some(3);
    assert_eq!(cfg.sliding_window, vec![w, w, w, w, w, None]);
    exactness_in_format(
        &fixture("gemma3"),
        Case {
            model: "gemma3",
            cross_layer: false,
            activation: "jump_relu",
            skip: true,
            input: "mlp.hook_in",
            output: "hook_mlp_out",
        },
        true,
    );
}
