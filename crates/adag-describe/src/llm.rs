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

    /// Several calls on at most `concurrency` threads; replies in request order. Each
    /// request comes with the context its error should name.
    pub fn chat_all(
        &self,
        backend: &dyn LlmBackend,
        requests: &[(ChatRequest, String)],
        concurrency: usize,
    ) -> Vec<Result<ChatReply>> {
        let n = requests.len();
        let workers = concurrency.clamp(1, n.max(1));
        if workers == 1 {
            return requests
                .iter()
                .map(|(r, c)| self.chat(backend, r, c))
                .collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Result<ChatReply>>>> =
            (0..n).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let (r, c) = &requests[i];
                    let reply = self.chat(backend, r, c);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(reply);
                });
            }
        });
        slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| {
                        Err(Error::Input("a worker thread ended without a reply".into()))
                    })
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use adag_llm::Message;

    /// Answers with the request's sample index after a delay that makes later requests finish
    /// first.
    struct Slow;

    impl LlmBackend for Slow {
        fn describe(&self) -> String {
            "slow".into()
        }
        fn supports_logprobs(&self) -> bool {
            false
        }
        fn chat(&self, r: &ChatRequest) -> adag_llm::Result<ChatReply> {
            std::thread::sleep(std::time::Duration::from_millis(
                5 * (8 - r.sample_index as u64),
            ));
            if r.sample_index == 3 {
                return Err(adag_llm::LlmError::Rejected {
                    endpoint: "slow".into(),
                    status: 400,
                    message: "too long".into(),
                });
            }
            Ok(ChatReply {
                text: r.sample_index.to_string(),
                logprobs: vec![],
                finish_reason: None,
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 1,
                },
                cached: r.sample_index % 2 == 1,
            })
        }
    }

    #[test]
    fn concurrent_calls_keep_request_order_and_count_usage() {
        let reqs: Vec<(ChatRequest, String)> = (0..8)
            .map(|i| {
                let mut r = ChatRequest::new(vec![Message::user("x")]);
                r.sample_index = i;
                (r, format!("request {i}"))
            })
            .collect();
        for concurrency in [1, 3, 8] {
            let meter = Meter::new();
            let out = meter.chat_all(&Slow, &reqs, concurrency);
            for (i, r) in out.iter().enumerate() {
                match r {
                    Ok(reply) => assert_eq!(reply.text, i.to_string()),
                    Err(e) => {
                        assert_eq!(i, 3);
                        assert!(e.to_string().contains("request 3"), "{e}");
                        assert!(is_request_specific(e));
                    }
                }
            }
            let t = meter.totals();
            assert_eq!((t.calls, t.cached_calls), (7, 3));
            assert_eq!(t.usage.input_tokens, 4);
            assert_eq!(t.cached_usage.input_tokens, 3);
        }
    }
}
