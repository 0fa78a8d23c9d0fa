//! Generation with the KV cache against the uncached reference (the whole sequence re-run for
//! every token): the same tokens, text, finish reason and log-probabilities, greedy and sampled,
//! with and without stop strings, on the demo model (no chat template, a long prompt) and on two
//! fixture architectures with chat templates (Llama with GQA, Gemma-2 with its sliding window).

use std::path::Path;

use adag_llm::local::{GenerateParams, Generation, LocalModel};
use adag_llm::Message;

fn fixture(name: &str) -> LocalModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name);
    LocalModel::load(&dir, &adag_model::LoadOptions::default()).unwrap()
}

/// Cached and uncached generations agree: tokens and text exactly, logprobs within 1e-4.
fn assert_same(model: &LocalModel, prompt: &[u32], params: &GenerateParams) -> Generation {
    let a = model.generate(prompt, params).unwrap();
    let b = model.generate_uncached(prompt, params).unwrap();
    assert_eq!(a.tokens, b.tokens, "{} {params:?}", model.name());
    assert_eq!(a.text, b.text);
    assert_eq!(a.finish_reason, b.finish_reason);
    assert_eq!(a.prompt_tokens, b.prompt_tokens);
    assert_eq!(a.logprobs.len(), b.logprobs.len());
    for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
        assert_eq!(x.token, y.token);
        assert!((x.logprob - y.logprob).abs() < 1e-4, "{x:?} vs {y:?}");
        assert_eq!(x.top.len(), y.top.len());
        for ((tx, lx), (ty, ly)) in x.top.iter().zip(&y.top) {
            assert_eq!(tx, ty);
            assert!((lx - ly).abs() < 1e-4, "{x:?} vs {y:?}");
        }
    }
    a
}

fn params(max_tokens: u32, temperature: f32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        temperature,
        seed: Some(5),
        top_logprobs: Some(3),
        ..GenerateParams::default()
    }
}

#[test]
fn demo_model_cached_generation_equals_uncached() {
    let model = LocalModel::load_default().unwrap();
    // A prompt of a few hundred tokens, as description prompts are, ending mid-sentence.
    let facts = "Dallas is in Texas. The capital of Texas is Austin. ".repeat(12);
    let prompt = model
        .prompt_ids(&[
            Message::user("Complete it."),
            Message::assistant(format!(
                "{facts}The capital of the state containing Dallas is"
            )),
        ])
        .unwrap();
    assert!(prompt.len() > 100, "prompt of {} tokens", prompt.len());

    let greedy = assert_same(&model, &prompt, &params(24, 0.0));
    // Non-vacuous: several tokens were generated and compared.
    assert!(greedy.tokens.len() >= 3, "{greedy:?}");
    let sampled = assert_same(&model, &prompt, &params(24, 1.0));
    assert!(sampled.tokens.len() >= 3, "{sampled:?}");

    // A stop string from inside the greedy text cuts both the same way.
    let chars: Vec<char> = greedy.text.chars().collect();
    if chars.len() >= 4 {
        let mut p = params(24, 0.0);
        p.stop = vec![chars[2..4].iter().collect()];
        let cut = assert_same(&model, &prompt, &p);
        assert_eq!(cut.finish_reason, "stop");
    }
}

#[test]
fn fixture_architectures_cached_generation_equals_uncached() {
    for name in ["llama", "gemma2"] {
        let model = fixture(name);
        let prompt = model
            .prompt_ids(&[Message::user("Hello there, how are you today?")])
            .unwrap();
        // Random weights: EOS may come early, so only the comparison itself is asserted; the
        // prompt alone is longer than Gemma-2's 4-token window.
        assert!(prompt.len() > 4);
        assert_same(&model, &prompt, &params(16, 0.0));
        assert_same(&model, &prompt, &params(16, 1.0));
    }
}
