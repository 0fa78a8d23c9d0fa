//! Simulators: predict a cluster's activity from an explanation, so that the explanation can
//! be scored by how well the prediction correlates with the real profile (reference §6
//! phases 3–4).
//!
//! - [`LocalSimulator`]: a model loaded in-process with adag-model. Its input is
//!   `## Neuron Description: {explanation}\n\n ## Input: ` followed by the record's tokens; at
//!   every record token the model's next-token distribution, restricted to the **score
//!   tokens** and renormalised (softmax over their logits), gives an expected score. This is
//!   the reference's finetuned-simulator protocol (`Transluce/llama_8b_simulator`); a tiny
//!   model runs it end to end but cannot judge explanations, the quality path is that
//!   simulator (or any Llama-8B class model) loaded the same way on a GPU.
//! - [`ChatSimulator`]: any [`adag_llm::LlmBackend`]: the record is shown as `(i, 'token', [blank])`
//!   lines filled with integers 0–10 at T = 0; when the backend returns `top_logprobs`, the
//!   expected value over the score tokens at each filled number replaces the number.
//!   Blanks left unfilled (or a request the endpoint rejects, e.g. too long for its context)
//!   count as 0 and are counted in the run's totals. Records are simulated concurrently.
//!
//! **Score tokens.** The reference reads vocabulary ids 0..10, which in Llama-3's vocabulary
//! are the characters `!"#$%&'()*+` and only mean "scores" to its finetuned simulator.
//! For a generic model adag defaults to the tokens of the strings "0".."10" that are single
//! tokens ([`ScoreTokens::Digits`]: 0..10 with Llama-3, whose tokenizer keeps up to three
//! digits together; 0..9 with single-digit tokenizers such as Qwen's, Gemma's or the demo
//! model's, where "10" is two tokens); [`ScoreTokens::VocabIds`] reproduces the
//! reference for its simulator.
//!
//! Output side: the local simulator appends each continuation to the record and reads the
//! expected score after it, mapped linearly onto −10..10 (an adag extension: the reference
//! only simulated the output side through the chat API; Pearson's r does not depend on the
//! linear map). The chat simulator fills `('token', [blank])` pairs with integers −10..10.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::records::ActivationRecord;

mod chat;
mod local;

pub use chat::ChatSimulator;
pub use local::{score_token_ids, LocalSimulator, LocalSimulatorOptions};

/// Predicts activity from an explanation.
pub trait Simulator {
    /// A short description for reports.
    fn describe(&self) -> String;

    /// Per record, a predicted activity per shown token (any linear scale).
    fn simulate_tokens(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<f32>>>;

    /// Per record, a predicted score per traced target (−10..10 or any linear scale).
    fn simulate_outputs(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<f32>>>;
}

/// Which tokens stand for the scores 0..10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreTokens {
    /// The tokens of "0".."10" that are single tokens.
    #[default]
    Digits,
    /// Vocabulary ids 0..=10 (the reference's finetuned simulator).
    VocabIds,
}

impl std::str::FromStr for ScoreTokens {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "digits" => Ok(ScoreTokens::Digits),
            "vocab-ids" => Ok(ScoreTokens::VocabIds),
            _ => Err(format!(
                "unknown score tokens {s:?}: expected `digits` or `vocab-ids`"
            )),
        }
    }
}
