//! The cached (incremental) forward against the full forward on every fixture architecture.
//!
//! The full forward is itself checked against transformers (parity.rs), so agreement here means
//! the cached pass is exact too: prefill, single-token steps and multi-token chunks after a
//! step must reproduce the full forward's logits at the same positions. Sequences are longer
//! than Gemma-2's 4-token sliding window, so windowed layers drop cached keys through the mask.

use std::path::{Path, PathBuf};

use adag_model::{KvCache, LoadOptions, Transformer};
use candle_core::Tensor;

const TOL: f32 = 1e-4;
const FIXTURES: [&str; 5] = ["llama", "qwen2", "qwen3", "gemma2", "gemma3"];

fn load(name: &str) -> Transformer {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name);
    Transformer::load(&dir, &LoadOptions::default()).unwrap()
}

/// Deterministic token ids spread over the vocabulary (a linear congruential walk).
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Prefill `prompt` tokens, then single steps, then a chunk of 3, then single steps again,
/// checking every returned row against the full forward; returns the largest difference.
fn check_schedule(model: &Transformer, ids: &[u32], prompt: usize) -> f32 {
    let full = model.logits(ids).unwrap();
    let row = |p: usize| full.get(p).unwrap();
    let mut worst = 0.0f32;
    let mut check = |got: &Tensor, p: usize, what: &str| {
        let d = max_abs_diff(got, &row(p));
        assert!(d < TOL, "{what} at position {p}: max |diff| {d}");
        worst = worst.max(d);
    };

    let (last, mut cache) = model.prefill(&ids[..prompt]).unwrap();
    assert_eq!(cache.len(), prompt);
    check(&last, prompt - 1, "prefill");
    let mut p = prompt;
    while p < ids.len() {
        // Steps of 1, 1, 3, 1, 1, 3, ...: chunks of several tokens come after single steps.
        let n = if (p - prompt) % 5 == 2 { 3 } else { 1 }.min(ids.len() - p);
        if n == 1 {
            let got = model.step(&mut cache, &ids[p..=p]).unwrap();
            check(&got, p, "step");
        } else {
            let got = model.forward_cached(&mut cache, &ids[p..p + n]).unwrap();
            assert_eq!(got.dims(), &[n, model.cfg.d_vocab]);
            for i in 0..n {
                check(&got.get(i).unwrap(), p + i, "chunk");
            }
        }
        p += n;
        assert_eq!(cache.len(), p);
    }
    worst
}

#[test]
fn cached_logits_equal_the_full_forward_on_every_architecture() {
    for name in FIXTURES {
        let model = load(name);
        let ids = tokens(24, model.cfg.d_vocab, 7);
        let mut worst = 0.0f32;
        // A one-token prompt, one inside Gemma-2's window, and one well past it.
        for prompt in [1, 3, 9] {
            worst = worst.max(check_schedule(&model, &ids, prompt));
        }
        // A whole sequence through forward_cached at once: every row, not only the last.
        let mut cache = model.kv_cache();
        let all = model.forward_cached(&mut cache, &ids).unwrap();
        let d = max_abs_diff(&all, &model.logits(&ids).unwrap());
        assert!(
            d < TOL,
            "{name}: whole-sequence forward_cached differs by {d}"
        );
        worst = worst.max(d);
        eprintln!("{name}: max |cached - full| logit difference {worst:.3e}");
    }
}

#[test]
fn gemma2_window_is_really_exercised() {
    // The check above would be vacuous for the window if it never mattered: with the window
    // removed, the last position's logits must change.
    let model = load("gemma2");
    assert!(model.cfg.sliding_window.contains(&Some(4)));
    let ids = tokens(12, model.cfg.d_vocab, 3);
    let mut unwindowed = model.clone();
    unwindowed.cfg.sliding_window = vec![None; model.cfg.n_layers];
    let (a, _) = model.prefill(&ids).unwrap();
    let (b, _) = unwindowed.prefill(&ids).unwrap();
    assert!(max_abs_diff(&a, &b) > 1e-3);
}

#[test]
fn truncated_and_cloned_caches_continue_correctly() {
    let model = load("qwen3");
    let ids = tokens(10, model.cfg.d_vocab, 11);
    let other = tokens(4, model.cfg.d_vocab, 99);
    let (_, mut cache) = model.prefill(&ids).unwrap();
    let fork: KvCache = cache.clone();
    assert!(cache.memory_bytes() > 0);

    // Roll back to 6 positions and continue with different tokens.
    cache.truncate(6).unwrap();
    assert_eq!(cache.len(), 6);
    let got = model.forward_cached(&mut cache, &other).unwrap();
    let seq: Vec<u32> = ids[..6].iter().chain(&other).copied().collect();
    let want = model.logits(&seq).unwrap().narrow(0, 6, 4).unwrap();
    assert!(max_abs_diff(&got, &want) < TOL);

    // The clone taken before is unaffected by the truncation.
    let next = model.step(&mut fork.clone(), &other[..1]).unwrap();
    let seq: Vec<u32> = ids.iter().chain(&other[..1]).copied().collect();
    let full = model.logits(&seq).unwrap();
    assert!(max_abs_diff(&next, &full.get(10).unwrap()) < TOL);
}

#[test]
fn bad_input_is_refused_and_leaves_the_cache_usable() {
    let model = load("llama");
    let ids = tokens(5, model.cfg.d_vocab, 5);
    let (_, mut cache) = model.prefill(&ids).unwrap();

    let err = model
        .step(&mut cache, &[model.cfg.d_vocab as u32])
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    let err = model.step(&mut cache, &[]).unwrap_err();
    assert!(err.to_string().contains("no new tokens"), "{err}");
    assert_eq!(cache.len(), 5);

    // A cache with another layer count (from another model) is refused, not misread.
    let mut shallow = model.clone();
    shallow.weights.blocks.truncate(1);
    shallow.cfg.n_layers = 1;
    shallow.cfg.sliding_window.truncate(1);
    let err = shallow.step(&mut cache, &ids[..1]).unwrap_err();
    assert!(err.to_string().contains("layers"), "{err}");

    // After all that, the cache still continues exactly.
    let got = model.step(&mut cache, &ids[..1]).unwrap();
    let seq: Vec<u32> = ids.iter().chain(&ids[..1]).copied().collect();
    let full = model.logits(&seq).unwrap();
    assert!(max_abs_diff(&got, &full.get(5).unwrap()) < TOL);
}

/// `LastLogitsOnly` unembeds the last position alone: the full forward's last row of logits
/// (soft-capped on Gemma; a one-row product rounds in a different order, so within `TOL`, not
/// bit for bit), and a cache that still holds the final norm at every position.
#[test]
fn last_logits_only_match_the_full_forward_at_the_last_position() {
    use adag_core::HookName;
    use adag_model::{Batch, CacheFilter, LastLogitsOnly};
    for name in FIXTURES {
        let model = load(name);
        let ids = tokens(9, model.cfg.d_vocab, 3);
        let batch = Batch::single(&ids).unwrap();
        let filter = CacheFilter::only([HookName::LnFinalScale]);
        let full = model.forward(&batch, &filter).unwrap();
        let last = model
            .forward_with(&batch, &filter, &mut LastLogitsOnly)
            .unwrap();
        assert_eq!(last.logits.dims(), [1, 1, model.cfg.d_vocab], "{name}");
        let d = max_abs_diff(&full.last_logits(0).unwrap(), &last.last_logits(0).unwrap());
        assert!(d < TOL, "{name}: last-position logits differ by {d}");
        let scale = last.cache.item(HookName::LnFinalScale, 0).unwrap();
        assert_eq!(
            scale.dim(0).unwrap(),
            ids.len(),
            "{name}: final norm positions"
        );
    }
}
