//! The chat simulator: blanks filled by any chat backend, expected values from
//! `top_logprobs` where the backend gives them.

use adag_llm::{ChatRequest, LlmBackend};

use super::Simulator;
use crate::error::Result;
use crate::llm::{is_request_specific, Meter};
use crate::parse::{expected_from_top, parse_indexed_fills, parse_pair_fills};
use crate::prompts;
use crate::records::ActivationRecord;

/// The chat simulator over any backend.
pub struct ChatSimulator<'a> {
    backend: &'a dyn LlmBackend,
    meter: &'a Meter,
    model: Option<String>,
    concurrency: usize,
    records_per_call: usize,
}

impl<'a> ChatSimulator<'a> {
    /// A simulator asking `backend` (usage counted in `meter`).
    pub fn new(backend: &'a dyn LlmBackend, meter: &'a Meter, model: Option<String>) -> Self {
        ChatSimulator {
            backend,
            meter,
            model,
            concurrency: 4,
            records_per_call: 1,
        }
    }

    /// Input side: records per request (the reference's API simulator took up to 25
    /// exemplars per call; fewer calls, longer prompts).
    pub fn with_records_per_call(mut self, n: usize) -> Self {
        self.records_per_call = n.max(1);
        self
    }

    /// Requests in flight at once (one per record).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    fn request(&self, messages: Vec<adag_llm::Message>, max_tokens: u32) -> ChatRequest {
        let mut req = ChatRequest::new(messages);
        req.model = self.model.clone();
        req.temperature = 0.0;
        req.max_tokens = max_tokens;
        if self.backend.supports_logprobs() {
            req.top_logprobs = Some(20);
        }
        req
    }
}

/// The logprob entry whose text covers byte `offset` of the reply, when the logprob tokens
/// spell out the reply.
fn token_at(reply: &adag_llm::ChatReply, offset: usize) -> Option<&adag_llm::TokenLogprob> {
    let mut start = 0;
    for t in &reply.logprobs {
        let end = start + t.token.len();
        if reply.text.get(start..end) != Some(t.token.as_str()) {
            return None;
        }
        if (start..end).contains(&offset) {
            return Some(t);
        }
        start = end;
    }
    None
}

/// The value at `offset`: expected over the score tokens when the number is one logprob token
/// with alternatives, else the parsed integer.
fn value_at(reply: &adag_llm::ChatReply, offset: usize, parsed: i64, lo: i64, hi: i64) -> f32 {
    token_at(reply, offset)
        .filter(|t| t.token.trim().parse::<i64>() == Ok(parsed))
        .and_then(|t| expected_from_top(&t.top, lo, hi))
        .unwrap_or(parsed as f32)
}

impl Simulator for ChatSimulator<'_> {
    fn describe(&self) -> String {
        format!("chat {}", self.backend.describe())
    }

    fn simulate_tokens(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<f32>>> {
        // Records in chunks of `records_per_call`, tokens numbered on across a chunk.
        let chunks: Vec<&[&ActivationRecord]> =
            records.chunks(self.records_per_call.max(1)).collect();
        let requests: Vec<(ChatRequest, String)> = chunks
            .iter()
            .map(|chunk| {
                let groups: Vec<&[String]> = chunk.iter().map(|r| r.tokens.as_slice()).collect();
                let n: usize = groups.iter().map(|g| g.len()).sum();
                let ids: Vec<String> = chunk.iter().map(|r| r.prompt_id.to_string()).collect();
                (
                    self.request(
                        prompts::input_simulator_many(explanation, &groups),
                        (n as u32) * 24 + 32,
                    ),
                    format!("simulating prompt(s) {}", ids.join(", ")),
                )
            })
            .collect();
        let replies = self
            .meter
            .chat_all(self.backend, &requests, self.concurrency);
        let mut out = Vec::new();
        for (chunk, reply) in chunks.iter().zip(replies) {
            let reply = match reply {
                Ok(r) => Some(r),
                Err(e) if is_request_specific(&e) => None,
                Err(e) => return Err(e),
            };
            let fills = reply
                .as_ref()
                .map(|r| parse_indexed_fills(&r.text))
                .unwrap_or_default();
            let mut i = 0;
            for r in chunk.iter() {
                let mut v = Vec::with_capacity(r.tokens.len());
                for _ in 0..r.tokens.len() {
                    v.push(match (fills.get(&i), &reply) {
                        (Some(&(off, x)), Some(reply)) if (0..=10).contains(&x) => {
                            value_at(reply, off, x, 0, 10)
                        }
                        _ => {
                            self.meter.missing_prediction();
                            0.0
                        }
                    });
                    i += 1;
                }
                out.push(v);
            }
        }
        Ok(out)
    }

    fn simulate_outputs(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<f32>>> {
        let requests: Vec<(ChatRequest, String)> = records
            .iter()
            .map(|r| {
                (
                    self.request(
                        prompts::output_simulator(explanation, &r.text(), &r.targets),
                        (r.targets.len() as u32) * 24 + 32,
                    ),
                    format!("simulating the outputs of prompt {}", r.prompt_id),
                )
            })
            .collect();
        let replies = self
            .meter
            .chat_all(self.backend, &requests, self.concurrency);
        let mut out = Vec::new();
        for (r, reply) in records.iter().zip(replies) {
            let reply = match reply {
                Ok(r) => r,
                Err(e) if is_request_specific(&e) => {
                    (0..r.targets.len()).for_each(|_| self.meter.missing_prediction());
                    out.push(vec![0.0; r.targets.len()]);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let fills = parse_pair_fills(&reply.text, r.targets.len());
            out.push(
                fills
                    .into_iter()
                    .map(|f| match f {
                        Some((off, v)) if (-10..=10).contains(&v) => {
                            value_at(&reply, off, v, -10, 10)
                        }
                        _ => {
                            self.meter.missing_prediction();
                            0.0
                        }
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}
