//! Transcoder files: formats agree with each other, and bad files or mismatches get clear errors.

use std::path::{Path, PathBuf};

use adag_engine::transcoder::{FeatureActivation, TranscoderKind};
use adag_engine::{ReadSite, TranscoderSet, WriteSite};
use adag_model::ModelConfig;
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::{Device, Tensor};

fn spec(cross_layer: bool) -> RandomSpec {
    RandomSpec {
        cross_layer,
        n_layers: 3,
        d_model: 64,
        d_tc: 32,
        activation: "jump_relu".into(),
        k: 0,
        skip: false,
        input_hook: "ln2.hook_normalized".into(),
        output_hook: "hook_mlp_out".into(),
        density: 0.2,
        seed: 3,
    }
}

fn err(path: &Path) -> String {
    match TranscoderSet::load(path, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gemmascope2_safetensors_match_the_native_format() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("native");
    let mut sp = spec(false);
    sp.skip = true;
    write_random_transcoders(&native, &sp).unwrap();
    let a = TranscoderSet::load(&native, &Device::Cpu).unwrap();
    // The same weights under GemmaScope-2's keys: w_enc [d_in, d_tc], affine skip [d_in, d_out].
    let gs = dir.path().join("gemmascope2");
    std::fs::create_dir_all(&gs).unwrap();
    let mut list = String::new();
    for l in 0..3 {
        let t = candle_core::safetensors::load(
            native.join(format!("layer_{l}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let tr = |x: &Tensor| x.t().unwrap().contiguous().unwrap();
        let mut m = std::collections::HashMap::new();
        m.insert("w_enc".to_string(), tr(&t["W_enc"]));
        m.insert("w_dec".to_string(), t["W_dec"].clone());
        m.insert("b_enc".to_string(), t["b_enc"].clone());
        m.insert("b_dec".to_string(), t["b_dec"].clone());
        m.insert(
            "threshold".to_string(),
            t["activation_function.threshold"].clone(),
        );
        m.insert("affine_skip_connection".to_string(), tr(&t["W_skip"]));
        candle_core::safetensors::save(&m, gs.join(format!("params_{l}.safetensors"))).unwrap();
        list.push_str(&format!("  - params_{l}.safetensors\n"));
    }
    std::fs::write(gs.join("config.yaml"), format!("model_kind: transcoder_set\nfeature_input_hook: ln2.hook_normalized\nfeature_output_hook: hook_mlp_out\ntranscoders:\n{list}")).unwrap();
    let b = TranscoderSet::load(&gs, &Device::Cpu).unwrap();
    assert_eq!(b.activation, FeatureActivation::JumpRelu);
    let x = Tensor::randn(0f32, 1.0, (5, 64), &Device::Cpu).unwrap();
    for l in 0..3 {
        let pa = a.activate(l, &a.pre_activations(l, &x).unwrap()).unwrap();
        let pb = b.activate(l, &b.pre_activations(l, &x).unwrap()).unwrap();
        assert_eq!(pa.to_vec2::<f32>().unwrap(), pb.to_vec2::<f32>().unwrap());
        let da = a.decoder_rows(l, &[0, 7, 31], &Device::Cpu).unwrap();
        let db = b.decoder_rows(l, &[0, 7, 31], &Device::Cpu).unwrap();
        assert_eq!(
            da.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            db.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let sa = a.layers[l].w_skip.as_ref().unwrap().flatten_all().unwrap();
        let sb = b.layers[l].w_skip.as_ref().unwrap().flatten_all().unwrap();
        assert_eq!(sa.to_vec1::<f32>().unwrap(), sb.to_vec1::<f32>().unwrap());
    }
}

#[test]
fn gemmascope_npz_matches_the_native_format() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("native");
    write_random_transcoders(&native, &spec(false)).unwrap();
    let a = TranscoderSet::load(&native, &Device::Cpu).unwrap();
    // The same weights as GemmaScope npz files: W_enc stored [d_model, d_tc].
    let gs = dir.path().join("gemmascope");
    std::fs::create_dir_all(&gs).unwrap();
    let mut list = String::new();
    for l in 0..3 {
        let t = candle_core::safetensors::load(
            native.join(format!("layer_{l}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let w_enc_t = t["W_enc"].t().unwrap().contiguous().unwrap();
        let arrays: Vec<(&str, &Tensor)> = vec![
            ("W_enc", &w_enc_t),
            ("W_dec", &t["W_dec"]),
            ("b_enc", &t["b_enc"]),
            ("b_dec", &t["b_dec"]),
            ("threshold", &t["activation_function.threshold"]),
        ];
        Tensor::write_npz(&arrays, gs.join(format!("params_{l}.npz"))).unwrap();
        list.push_str(&format!("  - params_{l}.npz\n"));
    }
    std::fs::write(gs.join("config.yaml"), format!("model_kind: transcoder_set\nfeature_input_hook: ln2.hook_normalized\nfeature_output_hook: hook_mlp_out\ntranscoders:\n{list}")).unwrap();
    let b = TranscoderSet::load(&gs, &Device::Cpu).unwrap();
    assert_eq!(b.activation, FeatureActivation::JumpRelu);
    assert_eq!(
        (b.read, b.write),
        (ReadSite::Ln2Normalized, WriteSite::HookMlpOut)
    );
    let x = Tensor::randn(0f32, 1.0, (5, 64), &Device::Cpu).unwrap();
    for l in 0..3 {
        let pa = a.activate(l, &a.pre_activations(l, &x).unwrap()).unwrap();
        let pb = b.activate(l, &b.pre_activations(l, &x).unwrap()).unwrap();
        assert_eq!(pa.to_vec2::<f32>().unwrap(), pb.to_vec2::<f32>().unwrap());
        let da = a.decoder_rows(l, &[0, 7, 31], &Device::Cpu).unwrap();
        let db = b.decoder_rows(l, &[0, 7, 31], &Device::Cpu).unwrap();
        assert_eq!(
            da.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            db.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}

#[test]
fn cross_layer_decoders_write_to_every_later_layer() {
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(dir.path(), &spec(true)).unwrap();
    let t = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(t.kind, TranscoderKind::CrossLayer);
    for l in 0..3 {
        assert_eq!(
            t.decoder_rows(l, &[1, 2], &Device::Cpu).unwrap().dims(),
            &[2, 3 - l, 64]
        );
    }
}

/// A few features' encoder rows, read once, give the same pre-activations as encoding every
/// feature, in any entry order and with repeated features; a feature outside the rows is an
/// error, not a wrong value.
#[test]
fn encoder_rows_give_the_full_encoders_pre_activations() {
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(dir.path(), &spec(false)).unwrap();
    let t = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (5, 64), &Device::Cpu).unwrap();
    let entries = [(4, 31), (0, 2), (2, 17), (3, 2), (1, 0)];
    for l in 0..3 {
        let full = t.pre_activations(l, &x).unwrap().to_vec2::<f32>().unwrap();
        let rows = t
            .encoder_rows(l, entries.iter().map(|&(_, f)| f), &Device::Cpu)
            .unwrap();
        let got = rows.pre_activations(&x, &entries).unwrap();
        assert_eq!(got, t.pre_activations_at(l, &x, &entries).unwrap());
        for (&(p, f), v) in entries.iter().zip(&got) {
            let want = full[p][f as usize];
            assert!(
                (v - want).abs() < 1e-5,
                "layer {l} ({p}, {f}): {v} vs {want}"
            );
        }
        let e = rows.pre_activations(&x, &[(0, 5)]).unwrap_err().to_string();
        assert!(e.contains("feature 5"), "{e}");
    }
}

#[test]
fn topk_keeps_the_largest_values_not_magnitudes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(false);
    s.activation = "topk".into();
    s.k = 2;
    write_random_transcoders(dir.path(), &s).unwrap();
    let t = TranscoderSet::load(dir.path(), &Device::Cpu).unwrap();
    let pre = Tensor::new(&[[-5.0f32, 1.0, 3.0, -0.5, 2.0]], &Device::Cpu).unwrap();
    let pre = pre.pad_with_zeros(1, 0, 27).unwrap();
    let a = t.activate(0, &pre).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(&a[0][..5], &[0.0, 0.0, 3.0, 0.0, 2.0]);
}

#[test]
fn bad_files_and_mismatches_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("tc");
    write_random_transcoders(&d, &spec(false)).unwrap();
    let cfg_path = d.join("config.yaml");
    let good = std::fs::read_to_string(&cfg_path).unwrap();

    std::fs::write(
        &cfg_path,
        good.replace("ln2.hook_normalized", "attn.hook_z"),
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("feature_input_hook") && e.contains("attn.hook_z") && e.contains("mlp.hook_in"),
        "{e}"
    );
    std::fs::write(
        &cfg_path,
        good.replace("transcoder_set", "sparse_autoencoder"),
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("model_kind") && e.contains("sparse_autoencoder"),
        "{e}"
    );
    std::fs::write(
        &cfg_path,
        good.clone() + "transcoders:\n  - hf://someone/repo/layer_0.safetensors\n",
    )
    .unwrap();
    let e = err(&d);
    assert!(e.contains("remote") && e.contains("hf://"), "{e}");
    std::fs::write(&cfg_path, &good).unwrap();

    // A layer file with a wrong-shaped decoder.
    let mut t =
        candle_core::safetensors::load(d.join("layer_1.safetensors"), &Device::Cpu).unwrap();
    t.insert(
        "W_dec".into(),
        Tensor::zeros((32, 48), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, d.join("layer_1.safetensors")).unwrap();
    let e = err(&d);
    assert!(
        e.contains("layer 1")
            && e.contains("W_dec")
            && e.contains("[32, 48]")
            && e.contains("[32, 64]"),
        "{e}"
    );
    std::fs::write(d.join("layer_1.safetensors"), b"junk").unwrap();
    let e = err(&d);
    assert!(
        e.contains("layer_1.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );

    let e = err(&dir.path().join("nowhere"));
    assert!(e.contains("config.yaml"), "{e}");

    // A set that does not fit the model.
    let ok = dir.path().join("ok");
    write_random_transcoders(&ok, &spec(false)).unwrap();
    let t = TranscoderSet::load(&ok, &Device::Cpu).unwrap();
    let model = |name: &str| {
        ModelConfig::from_dir(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/models")
                .join(name),
        )
        .unwrap()
    };
    let e = t.check_model(&model("gemma2")).unwrap_err().to_string();
    assert!(
        e.contains("3 transcoder layers") && e.contains("4 layers"),
        "{e}"
    );
    t.check_model(&model("llama")).unwrap();
}

/// Rewrites one safetensors file of a transcoder directory through `f`.
fn edit(path: &Path, f: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let mut t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    f(&mut t);
    candle_core::safetensors::save(&t, path).unwrap();
}

#[test]
fn wrong_length_vectors_on_a_later_layer_name_file_tensor_and_layer() {
    for (tensor, want) in [
        ("b_enc", "[32]"),
        ("activation_function.threshold", "[32]"),
        ("b_dec", "[64]"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_random_transcoders(dir.path(), &spec(false)).unwrap();
        let file = dir.path().join("layer_2.safetensors");
        edit(&file, |t| {
            let short = t[tensor].narrow(0, 0, 7).unwrap();
            t.insert(tensor.into(), short);
        });
        let e = err(dir.path());
        assert!(
            e.contains("layer_2.safetensors")
                && e.contains(&format!(
                    "layer 2: tensor `{tensor}` has shape [7], expected {want}"
                )),
            "{e}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(
        dir.path(),
        &RandomSpec {
            skip: true,
            ..spec(false)
        },
    )
    .unwrap();
    edit(&dir.path().join("layer_1.safetensors"), |t| {
        let bad = t["W_skip"].narrow(0, 0, 63).unwrap();
        t.insert("W_skip".into(), bad);
    });
    let e = err(dir.path());
    assert!(
        e.contains("layer_1.safetensors")
            && e.contains("layer 1: tensor `W_skip` has shape [63, 64], expected [64, 64]"),
        "{e}"
    );
}

#[test]
fn clt_missing_a_middle_encoder_names_it() {
    let dir = tempfile::tempdir().unwrap();
    write_random_transcoders(dir.path(), &spec(true)).unwrap();
    std::fs::remove_file(dir.path().join("W_enc_2.safetensors")).unwrap();
    let e = err(dir.path());
    assert!(
        e.contains("W_enc_2.safetensors is missing") && e.contains("writes to 3 layers"),
        "{e}"
    );
}
