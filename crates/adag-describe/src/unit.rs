//! Describing one feature or neuron from its dashboard (the records `adag features` writes):
//! ADAG's neuron-description role for a unit outside any circuit. The unit's top activating
//! contexts become the explainer's excerpts, with the tokens above half the unit's largest
//! activation highlighted `{{like this}}`, exactly as cluster exemplars are shown.

use adag_llm::{ChatRequest, LlmBackend};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::highlight::format_highlights;
use crate::llm::Meter;
use crate::parse::parse_marked;
use crate::prompts;

/// A unit's description and the excerpts it was written from.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitDescription {
    /// The explainer's one-line description.
    pub text: String,
    /// What the explainer saw, in order.
    pub excerpts: Vec<String>,
}

/// The highlighted excerpts of a dashboard record's top examples (at most `max`), strongest
/// first. The threshold is half the unit's largest activation, so every peak shows.
pub fn unit_excerpts(detail: &Value, max: usize) -> Result<Vec<String>> {
    let bad = |what: &str| Error::Input(format!("dashboard record: {what}"));
    let exs = detail["examples_quantiles"][0]["examples"]
        .as_array()
        .ok_or_else(|| bad("no top examples (examples_quantiles[0].examples)"))?;
    let act_max = detail["act_max"]
        .as_f64()
        .ok_or_else(|| bad("no act_max"))? as f32;
    let mut out = Vec::new();
    for ex in exs.iter().take(max) {
        let tokens: Vec<String> = ex["tokens"]
            .as_array()
            .ok_or_else(|| bad("an example without tokens"))?
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect();
        let acts: Vec<f32> = ex["tokens_acts_list"]
            .as_array()
            .ok_or_else(|| bad("an example without tokens_acts_list"))?
            .iter()
            .map(|a| a.as_f64().unwrap_or(0.0) as f32)
            .collect();
        out.push(format_highlights(&tokens, &acts, 0.5 * act_max));
    }
    if out.is_empty() {
        return Err(bad(
            "the unit was never active on the corpus; nothing to describe",
        ));
    }
    Ok(out)
}

/// Asks `backend` for a description of the unit whose dashboard record is `detail`.
pub fn describe_unit(
    backend: &dyn LlmBackend,
    meter: &Meter,
    detail: &Value,
    model: Option<String>,
    max_excerpts: usize,
) -> Result<UnitDescription> {
    let excerpts = unit_excerpts(detail, max_excerpts)?;
    let mut req = ChatRequest::new(prompts::input_explainer(&excerpts));
    req.model = model;
    let id = format!(
        "{} unit {}",
        detail["transcoder_id"].as_str().unwrap_or("?"),
        detail["index"]
    );
    let reply = meter.chat(backend, &req, &id)?;
    let text = parse_marked(&reply.text, "[DESCRIPTION]", reply.finish_reason.as_deref())
        .map_err(|u| Error::Input(format!("{id}: unusable description: {u:?}")))?;
    Ok(UnitDescription { text, excerpts })
}
