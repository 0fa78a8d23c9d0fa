//! Calls to LLM backends, with the pipeline's accounting: tokens used, calls answered from
//! cache, unusable replies and missing simulator predictions, for the report at the end.
//!
//! Retries, caching and the concurrency limit belong to the backend (adag-llm's wrapper);
//! this module only counts.

use std::sync::Mutex;

use adag_llm::{ChatReply, ChatRequest, LlmBackend, Usage};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Totals of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Calls made (including cached ones).
    pub calls: u64,
    /// Calls answered from the cache.
    pub cached_calls: u64,
    /// Tokens paid for (cached calls excluded).
    pub usage: Usage,
    /// Tokens of cached calls (not paid again).
    pub cached_usage: Usage,
    /// Replies that were refused or malformed.
    pub unusable_replies: u64,
    /// Simulator blanks left unfilled (counted as 0).
    pub missing_predictions: u64,
}

impl Totals {
    /// Cost in dollars at the given prices per million input and output tokens.
    pub fn cost(&self, usd_per_m_in: f64, usd_per_m_out: f64) -> f64 {
        (self.usage.input_tokens as f64 * usd_per_m_in
            + self.usage.output_tokens as f64 * usd_per_m_out)
            / 1e6
    }
}

/// Whether `e` is the endpoint refusing *this* request (HTTP 400, 413 or 422: too long for
/// the model's context, a parameter it does not take) rather than every request (401, 403,
/// 404: wrong key, unknown model, wrong URL). The pipeline records the first kind as an
/// unusable reply and goes on; the second stops the run.
pub fn is_request_specific(e: &Error) -> bool {
    matches!(
        e,
        Error::Llm {
            source: adag_llm::LlmError::Rejected {
                status: 400 | 413 | 422,
                ..
            },
            ..
        }
    )
}

/// Counts what passes through it; shared by the explainers, the chat simulator and the
/// labeller.
#[derive(Debug, Default)]
pub struct Meter {
    totals: Mutex<Totals>,
}

impl Meter {
    /// A fresh meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// One call; `context` names it in the error.
    pub fn chat(
        &self,
        backend: &dyn LlmBackend,
        req: &ChatRequest,
        context: &str,
    ) -> Result<ChatReply> {
        let reply = backend.chat(req).map_err(|source| Error::Llm {
            context: format!("{context} ({})", backend.describe()),
            source,
        })?;
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        t.calls += 1;
        if reply.cached {
            t.cached_calls += 1;
            t.cached_usage += reply.usage;
        } else {
            t.usage += reply.usage;
        }
        Ok(reply)
    }

    /// Counts an unusable reply.
    pub fn unusable(&self) {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unusable_replies += 1;
    }

    /// Counts a simulator blank left unfilled.
    pub fn missing_prediction(&self) {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .missing_predictions += 1;
    }

    /// The totals so far.
    pub fn totals(&self) -> Totals {
        *self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }
}
