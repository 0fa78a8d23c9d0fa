//! `adag attribute --model google/gemma-2-2b --transcoders gemma` end to end against a mock hub
//! on 127.0.0.1 (`HF_ENDPOINT`), serving tiny weights under the repositories' names: the
//! GemmaScope set's config lists `hf://google/gemma-scope-2b-pt-transcoders/…/params.npz` files
//! as circuit-tracer's `gemma` preset does, and the model comes from its `model_name`.
//! (The average_l0 folder names are illustrative; the real gemma-2-2b repo shards its weights,
//! which the adag-hub tests cover.)

use std::path::Path;

use crate::common::{adag_env, ok_env, root, s};
use adag_hub::mock::MockHub;
use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};
use candle_core::{Device, Tensor};

const L0: [usize; 4] = [76, 65, 49, 54];

/// Random JumpReLU transcoders for the gemma2 fixture, as GemmaScope `.npz` files (W_enc stored
/// `[d_model, d_tc]`), plus a local config listing them.
fn gemmascope_npz(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let native = dir.join("native");
    write_random_transcoders(
        &native,
        &RandomSpec {
            cross_layer: false,
            n_layers: 4,
            d_model: 64,
            d_tc: 32,
            activation: "jump_relu".into(),
            k: 0,
            skip: false,
            input_hook: "ln2.hook_normalized".into(),
            output_hook: "hook_mlp_out".into(),
            density: 0.3,
            seed: 11,
        },
    )
    .unwrap();
    let local = dir.join("local");
    let mut list = String::new();
    let mut files = Vec::new();
    for (l, l0) in L0.iter().enumerate() {
        let t = candle_core::safetensors::load(
            native.join(format!("layer_{l}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let w_enc = t["W_enc"].t().unwrap().contiguous().unwrap();
        let arrays: Vec<(&str, &Tensor)> = vec![
            ("W_enc", &w_enc),
            ("W_dec", &t["W_dec"]),
            ("b_enc", &t["b_enc"]),
            ("b_dec", &t["b_dec"]),
            ("threshold", &t["activation_function.threshold"]),
        ];
        let rel = format!("layer_{l}/width_16k/average_l0_{l0}/params.npz");
        let path = local.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        Tensor::write_npz(&arrays, &path).unwrap();
        list.push_str(&format!("  - {rel}\n"));
        files.push((rel, std::fs::read(&path).unwrap()));
    }
    std::fs::write(
        local.join("config.yaml"),
        format!("model_kind: transcoder_set\nfeature_input_hook: ln2.hook_normalized\nfeature_output_hook: hook_mlp_out\ntranscoders:\n{list}"),
    )
    .unwrap();
    files
}

fn adjacency(path: &Path) -> Vec<f32> {
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    t["adjacency"].flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn attribute_by_hub_id_and_preset_downloads_once_then_runs_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let files = gemmascope_npz(tmp.path());
    let mock = MockHub::start();
    mock.add_dir(
        "google/gemma-2-2b",
        "",
        &root().join("fixtures/models/gemma2"),
    );
    let mut list = String::new();
    for (rel, bytes) in files {
        mock.add_file("google/gemma-scope-2b-pt-transcoders", &rel, bytes);
        list.push_str(&format!(
            "  - hf://google/gemma-scope-2b-pt-transcoders/{rel}\n"
        ));
    }
    mock.add_file(
        "mwhanna/gemma-scope-transcoders",
        "config.yaml",
        format!("model_kind: transcoder_set\nmodel_name: google/gemma-2-2b\nfeature_input_hook: ln2.hook_normalized\nfeature_output_hook: hook_mlp_out\ntranscoders:\n{list}").into_bytes(),
    );
    let cache = tmp.path().join("hf");
    let env = [
        ("HF_ENDPOINT", mock.url.as_str()),
        ("HF_HUB_CACHE", s(&cache)),
        ("HF_HUB_OFFLINE", "0"),
    ];
    let g1 = tmp.path().join("hub.safetensors");
    let prompt = "36+59=";
    ok_env(
        &[
            "attribute",
            "--model",
            "google/gemma-2-2b",
            "--transcoders",
            "gemma",
            "-p",
            prompt,
            "-o",
            s(&g1),
        ],
        &env,
    );
    let fetched = mock.fetched();
    for want in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "config.yaml",
        "layer_3/width_16k/average_l0_54/params.npz",
    ] {
        assert!(
            fetched.iter().any(|f| f.ends_with(want)),
            "{want} not fetched: {fetched:?}"
        );
    }
    assert!(
        !fetched.iter().any(|f| f.contains("reference")),
        "{fetched:?}"
    );

    // Offline, from the cache alone, with the model taken from the config's model_name.
    mock.clear_log();
    mock.set_down(true);
    let g2 = tmp.path().join("offline.safetensors");
    let offline = [env[0], env[1], ("HF_HUB_OFFLINE", "1")];
    ok_env(
        &[
            "attribute",
            "--transcoders",
            "gemma",
            "-p",
            prompt,
            "-o",
            s(&g2),
        ],
        &offline,
    );
    assert!(mock.log().is_empty(), "{:?}", mock.log());

    // The same graph as from local files.
    let g3 = tmp.path().join("local.safetensors");
    ok_env(
        &[
            "attribute",
            "--model",
            "fixtures/models/gemma2",
            "--transcoders",
            s(&tmp.path().join("local")),
            "-p",
            prompt,
            "-o",
            s(&g3),
        ],
        &[],
    );
    let a = adjacency(&g3);
    assert!(a.iter().any(|&x| x != 0.0));
    assert_eq!(adjacency(&g1), a);
    assert_eq!(adjacency(&g2), a);

    // Offline with an empty cache: a clear error, exit 2.
    let empty = tmp.path().join("empty");
    let out = adag_env(
        &["attribute", "--transcoders", "gemma", "-p", prompt],
        &[env[0], ("HF_HUB_CACHE", s(&empty)), ("HF_HUB_OFFLINE", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mwhanna/gemma-scope-transcoders@main: `config.yaml` is not in the HF cache")
            && err.contains("HF_HUB_OFFLINE is set"),
        "{err}"
    );
}

#[test]
fn presets_lists_circuit_tracer_names() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok_env(&["presets", "--json"], &[("HF_HUB_CACHE", s(tmp.path()))]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v.as_array().unwrap();
    let gemma = rows.iter().find(|r| r["name"] == "gemma").unwrap();
    assert_eq!(gemma["transcoders"], "hf://mwhanna/gemma-scope-transcoders");
    assert_eq!(gemma["model"], "google/gemma-2-2b");
    assert_eq!(gemma["cached_bytes"], 0);
    let llama = rows.iter().find(|r| r["name"] == "llama").unwrap();
    assert_eq!(llama["transcoders"], "hf://mntss/transcoder-Llama-3.2-1B");
}

/// `adag trace --model google/gemma-2-2b` fetches the model through the HF cache like attribute
/// does, keys the manifest on the hub id, and traces the same rows as the local directory.
#[test]
fn trace_by_hub_id_matches_the_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let local = root().join("fixtures/models/gemma2");
    let mock = MockHub::start();
    mock.add_dir("google/gemma-2-2b", "", &local);
    let cache = tmp.path().join("hf");
    let env = [
        ("HF_ENDPOINT", mock.url.as_str()),
        ("HF_HUB_CACHE", s(&cache)),
        ("HF_HUB_OFFLINE", "0"),
    ];
    let dataset = root().join("fixtures/datasets/capitals.csv");
    let (hub_out, local_out) = (tmp.path().join("hub"), tmp.path().join("local"));
    for (model, out) in [("google/gemma-2-2b", &hub_out), (s(&local), &local_out)] {
        ok_env(
            &[
                "trace",
                "--model",
                model,
                "--model-id",
                "google/gemma-2-2b",
                "--dataset",
                s(&dataset),
                "--out",
                s(out),
                "--k",
                "2",
                "--quiet",
            ],
            &env,
        );
    }
    assert!(mock
        .fetched()
        .iter()
        .any(|f| f.ends_with("model.safetensors")));
    let (hub, manifest) = adag_circuit::read_circuit(&hub_out).unwrap();
    let (loc, _) = adag_circuit::read_circuit(&local_out).unwrap();
    assert_eq!(manifest.model_id.as_deref(), Some("google/gemma-2-2b"));
    assert_eq!(hub, loc);
}

/// `model: org/name` in a trace config is a hub id, fetched through the mock hub like
/// `--model`, not a folder next to the config; the circuit equals one traced from the local
/// copy of the same files.
#[test]
fn trace_config_with_a_hub_model_downloads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mock = MockHub::start();
    mock.add_dir("acme/tiny-llama", "", &root().join("fixtures/models/llama"));
    let dataset = root().join("fixtures/datasets/capitals.jsonl");
    let cfg = tmp.path().join("run.yaml");
    let hub_out = tmp.path().join("hub");
    std::fs::write(
        &cfg,
        format!(
            "dataset: {}\noutput_path: hub\nmodel: acme/tiny-llama@main\nk: 3\n",
            s(&dataset)
        ),
    )
    .unwrap();
    let cache = tmp.path().join("hf");
    let env = [
        ("HF_ENDPOINT", mock.url.as_str()),
        ("HF_HUB_CACHE", s(&cache)),
        ("HF_HUB_OFFLINE", "0"),
    ];
    ok_env(&["trace", "--config", s(&cfg), "--quiet"], &env);
    let fetched = mock.fetched();
    for want in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(
            fetched.iter().any(|f| f.ends_with(want)),
            "{want} not fetched: {fetched:?}"
        );
    }
    let local_out = tmp.path().join("local");
    ok_env(
        &[
            "trace",
            "--config",
            s(&cfg),
            "--model",
            "fixtures/models/llama",
            "--out",
            s(&local_out),
            "--quiet",
        ],
        &[],
    );
    let (hub, _) = adag_circuit::read_circuit(&hub_out).unwrap();
    let (local, _) = adag_circuit::read_circuit(&local_out).unwrap();
    assert!(!hub.nodes.is_empty());
    assert_eq!(hub.nodes, local.nodes);
    assert_eq!(hub.edges, local.edges);
}
