//! Times generation with and without the KV cache on a model (default: the bundled demo model),
//! for the workload `adag serve-llm` is meant for: a long prompt (~600 tokens, like a
//! description prompt) and ~100 new tokens.
//!
//! ```text
//! cargo run --release -p adag-llm --example generation_speed -- [MODEL_DIR] [PROMPT_TOKENS] [NEW_TOKENS]
//! ```
//!
//! Two measurements: the model alone (prefill + NEW single-token steps against NEW full
//! forwards over the growing sequence, always exactly NEW tokens), and `LocalModel::generate`
//! end to end at temperature 0 (which may stop earlier at EOS; the token count is printed).

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use adag_llm::local::{GenerateParams, LocalModel};
use adag_llm::Message;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => adag_llm::local::default_model_dir()?,
    };
    let prompt_len: usize = args.next().map_or(Ok(600), |a| a.parse())?;
    let new: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let model = LocalModel::load(&dir, &adag_model::LoadOptions::default())?;
    let tf = &model.loaded().model;

    // A prompt of exactly `prompt_len` tokens: a repeated sentence, cut to length.
    let sentence = "Dallas is in Texas. The capital of Texas is Austin. Paris is in France. ";
    let mut ids = model.prompt_ids(&[
        Message::user("Complete it."),
        Message::assistant(sentence.repeat(prompt_len / 4 + 1)),
    ])?;
    if ids.len() < prompt_len {
        return Err(format!("the prompt has only {} tokens", ids.len()).into());
    }
    ids.truncate(prompt_len);
    let next = |logits: &candle_core::Tensor| -> Result<u32, Box<dyn Error>> {
        Ok(logits.argmax(0)?.to_scalar::<u32>()?)
    };
    println!(
        "model {} ({} layers, d_model {}), prompt {prompt_len} tokens, {new} new tokens",
        dir.display(),
        tf.cfg.n_layers,
        tf.cfg.d_model
    );

    // Model alone, uncached: one full forward per new token.
    let start = Instant::now();
    let mut seq = ids.clone();
    for _ in 0..new {
        let logits = tf.logits(&seq)?;
        seq.push(next(&logits.get(seq.len() - 1)?)?);
    }
    let full = start.elapsed().as_secs_f64();

    // Model alone, cached: prefill once, then one step per token.
    let start = Instant::now();
    let (mut logits, mut cache) = tf.prefill(&ids)?;
    let prefill = start.elapsed().as_secs_f64();
    let mut cached_seq = ids.clone();
    for _ in 0..new {
        let t = next(&logits)?;
        cached_seq.push(t);
        logits = tf.step(&mut cache, &[t])?;
    }
    let cached = start.elapsed().as_secs_f64();
    let same = cached_seq == seq;
    println!(
        "model forward:  uncached {full:.2} s ({:.1} tok/s), cached {cached:.3} s \
         (prefill {prefill:.3} s, {:.1} tok/s after it), {:.1}x; greedy tokens identical: {same}",
        new as f64 / full,
        new as f64 / (cached - prefill),
        full / cached
    );

    // End to end through LocalModel (sampling loop, logprobs, decoding).
    let params = GenerateParams {
        max_tokens: new as u32,
        top_logprobs: Some(5),
        ..GenerateParams::default()
    };
    let start = Instant::now();
    let a = model.generate_uncached(&ids, &params)?;
    let t_uncached = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let b = model.generate(&ids, &params)?;
    let t_cached = start.elapsed().as_secs_f64();
    println!(
        "LocalModel::generate (top_logprobs 5): uncached {t_uncached:.2} s, cached {t_cached:.3} s \
         for {} tokens ({}), {:.1}x; same tokens: {}",
        b.tokens.len(),
        b.finish_reason,
        t_uncached / t_cached,
        a.tokens == b.tokens
    );
    Ok(())
}
