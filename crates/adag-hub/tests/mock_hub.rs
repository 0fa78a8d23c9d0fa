//! The hub client against an in-process hub speaking the real protocol (resolve URLs, 302 to
//! LFS storage, ETags, `X-Repo-Commit`, ranges, 401 for gated repositories).

use std::path::{Path, PathBuf};

use adag_hub::mock::{MockHub, MockRepo};
use adag_hub::{Hub, HubConfig, HubRef};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

fn hub(mock: &MockHub, cache: &Path, offline: bool, token: Option<&str>) -> Hub {
    Hub::new(HubConfig {
        endpoint: mock.url.clone(),
        cache: cache.to_path_buf(),
        token: token.map(String::from),
        offline,
        progress: false,
    })
    .unwrap()
}

fn main_ref(repo: &str) -> HubRef {
    HubRef {
        repo: repo.into(),
        path: String::new(),
        revision: "main".into(),
    }
}

const LLAMA: &str = "meta-llama/Llama-3.2-1B";

fn serve_llama() -> MockHub {
    let mock = MockHub::start();
    mock.add_dir(LLAMA, "", &fixture("fixtures/models/llama"));
    // A file adag must not fetch.
    mock.add_file(LLAMA, "original/consolidated.00.pth", vec![7u8; 4096]);
    mock
}

#[test]
fn first_run_downloads_then_the_cache_serves_without_a_server() {
    let mock = serve_llama();
    let cache = tempfile::tempdir().unwrap();
    let h = hub(&mock, cache.path(), false, None);
    let dir = h.model(&main_ref(LLAMA)).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(fixture("fixtures/models/llama").join(f)).unwrap(),
            "{f}"
        );
    }
    let fetched = mock.fetched();
    assert!(
        fetched.iter().all(|f| !f.contains("original/")),
        "{fetched:?}"
    );
    // The huggingface_hub layout: refs/main → commit, snapshot entries link into blobs/.
    let repo = cache.path().join("models--meta-llama--Llama-3.2-1B");
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_eq!(dir, repo.join("snapshots").join(&commit));
    let link = std::fs::read_link(dir.join("model.safetensors")).unwrap();
    let sha = link.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(link, Path::new("../../blobs").join(&sha));
    assert_eq!(sha.len(), 64, "LFS blobs are named by their sha256");

    // Second run: the hub is unreachable, and nothing is asked of it.
    mock.set_down(true);
    mock.clear_log();
    assert_eq!(h.model(&main_ref(LLAMA)).unwrap(), dir);
    assert_eq!(mock.log(), Vec::<String>::new());
    // Offline mode reads the same cache.
    assert_eq!(
        hub(&mock, cache.path(), true, None)
            .model(&main_ref(LLAMA))
            .unwrap(),
        dir
    );
}

#[test]
fn offline_with_a_missing_file_names_repo_file_and_cache() {
    let mock = serve_llama();
    let cache = tempfile::tempdir().unwrap();
    let e = hub(&mock, cache.path(), true, None)
        .model(&main_ref(LLAMA))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "meta-llama/Llama-3.2-1B@main: `config.json` is not in the HF cache ({}) and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download it",
            cache.path().display()
        )
    );
    assert!(mock.log().is_empty());
}

#[test]
fn offline_a_cache_without_optional_files_still_resolves_and_missing_weights_are_named() {
    // A cache as `huggingface_hub` leaves it after a filtered download: refs/main and the
    // snapshot's config, tokenizer and weights, no `.no_exist` markers for the rest.
    let cache = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = cache.path().join("models--meta-llama--Llama-3.2-1B");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("fixtures/models/llama").join(f), snap.join(f)).unwrap();
    }
    let mock = serve_llama();
    mock.set_down(true);
    let h = hub(&mock, cache.path(), true, None);
    // Without weights: the one file adag cannot do without is named.
    let e = h.model(&main_ref(LLAMA)).unwrap_err().to_string();
    assert!(
        e.contains("`model.safetensors` is not in the HF cache"),
        "{e}"
    );
    std::fs::copy(
        fixture("fixtures/models/llama/model.safetensors"),
        snap.join("model.safetensors"),
    )
    .unwrap();
    assert_eq!(h.model(&main_ref(LLAMA)).unwrap(), snap);
    assert!(mock.log().is_empty());
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let mock = serve_llama();
    let cache = tempfile::tempdir().unwrap();
    let h = hub(&mock, cache.path(), false, None);
    let weights = std::fs::read(fixture("fixtures/models/llama/model.safetensors")).unwrap();
    mock.cut_next_download(1000);
    let e = h.model(&main_ref(LLAMA)).unwrap_err().to_string();
    assert!(e.contains("download interrupted"), "{e}");
    let blobs = cache.path().join("models--meta-llama--Llama-3.2-1B/blobs");
    let partial: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert_eq!(partial.len(), 1);
    assert_eq!(partial[0].metadata().unwrap().len(), 1000);

    mock.clear_log();
    let dir = h.model(&main_ref(LLAMA)).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    // The cut file (the first LFS download, tokenizer.json) was fetched once more, from byte
    // 1000 on, and every file is intact.
    let name = partial[0].file_name().to_string_lossy().to_string();
    let sha = name.trim_end_matches(".incomplete");
    let gets: Vec<_> = mock
        .log()
        .into_iter()
        .filter(|l| l.starts_with(&format!("GET /lfs/{sha}")))
        .collect();
    assert_eq!(gets, vec![format!("GET /lfs/{sha} bytes=1000-")]);
}

#[test]
fn a_corrupt_partial_file_fails_the_sha256_check_and_is_removed() {
    let mock = serve_llama();
    let cache = tempfile::tempdir().unwrap();
    let h = hub(&mock, cache.path(), false, None);
    let weights = std::fs::read(fixture("fixtures/models/llama/model.safetensors")).unwrap();
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&weights)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let part = cache
        .path()
        .join("models--meta-llama--Llama-3.2-1B/blobs")
        .join(format!("{sha}.incomplete"));
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, vec![0u8; weights.len()]).unwrap();
    let e = h.model(&main_ref(LLAMA)).unwrap_err().to_string();
    assert!(
        e.starts_with("meta-llama/Llama-3.2-1B: `model.safetensors` failed verification: sha256 "),
        "{e}"
    );
    assert!(!part.exists());
    // The next run downloads it afresh.
    let dir = h.model(&main_ref(LLAMA)).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
}

#[test]
fn gated_repositories_ask_for_hf_token() {
    let mock = MockHub::start();
    let mut files = std::collections::BTreeMap::new();
    files.insert("config.json".to_string(), b"{}".to_vec());
    files.insert("model.safetensors".to_string(), vec![1u8; 16]);
    mock.add_repo(
        "google/gemma-2-2b",
        MockRepo {
            commit: "a".repeat(40),
            files,
            token: Some("hf_secret".into()),
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let e = hub(&mock, cache.path(), false, None)
        .model(&main_ref("google/gemma-2-2b"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "google/gemma-2-2b: access denied (HTTP 401); this repository is gated or private: accept its licence on huggingface.co and set HF_TOKEN to a token of that account");
    let dir = hub(&mock, cache.path(), false, Some("hf_secret"))
        .model(&main_ref("google/gemma-2-2b"))
        .unwrap();
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), b"{}");
}

#[test]
fn sharded_models_fetch_the_index_and_its_shards_only() {
    let mock = MockHub::start();
    let repo = "Qwen/Qwen3-8B";
    mock.add_file(repo, "config.json", b"{}".to_vec());
    mock.add_file(
        repo,
        "model.safetensors.index.json",
        br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#.to_vec(),
    );
    mock.add_file(repo, "model-00001-of-00002.safetensors", vec![1; 64]);
    mock.add_file(repo, "model-00002-of-00002.safetensors", vec![2; 64]);
    mock.add_file(repo, "model-00003-of-00003.safetensors", vec![3; 64]);
    let cache = tempfile::tempdir().unwrap();
    let dir = hub(&mock, cache.path(), false, None)
        .model(&main_ref(repo))
        .unwrap();
    assert_eq!(
        std::fs::read(dir.join("model-00002-of-00002.safetensors")).unwrap(),
        vec![2; 64]
    );
    let lfs_gets = mock
        .log()
        .iter()
        .filter(|l| l.starts_with("GET /lfs/"))
        .count();
    assert_eq!(lfs_gets, 2);
    assert!(!dir.join("model-00003-of-00003.safetensors").exists());
}

#[test]
fn transcoder_sets_fetch_their_layers_and_remember_what_is_absent() {
    let mock = MockHub::start();
    let repo = "mntss/transcoder-Llama-3.2-1B";
    mock.add_dir(repo, "", &fixture("fixtures/transcoders/llama-plt"));
    let cache = tempfile::tempdir().unwrap();
    let h = hub(&mock, cache.path(), false, None);
    let dir = h.transcoders(&main_ref(repo)).unwrap();
    for i in 0..3 {
        assert!(
            dir.join(format!("layer_{i}.safetensors")).exists(),
            "layer {i}"
        );
    }
    // layer_3 is absent: one 404, remembered in .no_exist, so the next run asks nothing.
    mock.clear_log();
    mock.set_down(true);
    assert_eq!(h.transcoders(&main_ref(repo)).unwrap(), dir);
    assert!(mock.log().is_empty(), "{:?}", mock.log());
}

#[test]
fn listed_hf_uris_resolve_to_cached_files_and_a_subfolder_is_a_set() {
    let mock = MockHub::start();
    mock.add_file(
        "google/gemma-scope-2b-pt-transcoders",
        "layer_0/width_16k/average_l0_76/params.npz",
        vec![9; 32],
    );
    mock.add_file(
        "mwhanna/gemma-scope-2-1b-pt",
        "transcoder_all/set_a/config.yaml",
        b"model_kind: transcoder_set\ntranscoders:\n  - hf://google/gemma-scope-2b-pt-transcoders/layer_0/width_16k/average_l0_76/params.npz\n".to_vec(),
    );
    let cache = tempfile::tempdir().unwrap();
    let h = hub(&mock, cache.path(), false, None);
    let set = HubRef {
        repo: "mwhanna/gemma-scope-2-1b-pt".into(),
        path: "transcoder_all/set_a".into(),
        revision: "main".into(),
    };
    let dir = h.transcoders(&set).unwrap();
    assert!(dir.ends_with("transcoder_all/set_a") && dir.join("config.yaml").exists());
    // Listed files are fetched only when the loader asks for them.
    assert_eq!(
        mock.fetched().into_iter().collect::<Vec<_>>(),
        vec!["mwhanna/gemma-scope-2-1b-pt/transcoder_all/set_a/config.yaml".to_string()]
    );
    let p = h
        .resolve_listed(
            "hf://google/gemma-scope-2b-pt-transcoders/layer_0/width_16k/average_l0_76/params.npz",
        )
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(p).unwrap(), vec![9; 32]);
    assert_eq!(h.resolve_listed("layer_0.safetensors").unwrap(), None);
}

#[test]
fn environment_variables_are_read_as_huggingface_hub_reads_them() {
    // The only test that touches the environment.
    std::env::set_var("HF_HOME", "/tmp/hfhome");
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HUGGINGFACE_HUB_CACHE");
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9/");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    std::env::set_var("HF_TOKEN", "hf_x");
    let c = HubConfig::from_env();
    assert_eq!(c.cache, PathBuf::from("/tmp/hfhome/hub"));
    assert_eq!(c.endpoint, "http://127.0.0.1:9");
    assert!(c.offline);
    assert_eq!(c.token.as_deref(), Some("hf_x"));
    std::env::set_var("HF_HUB_CACHE", "/tmp/elsewhere");
    std::env::set_var("HF_HUB_OFFLINE", "0");
    let c = HubConfig::from_env();
    assert_eq!(c.cache, PathBuf::from("/tmp/elsewhere"));
    assert!(!c.offline);
}
