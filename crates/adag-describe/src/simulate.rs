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
//! - [`ChatSimulator`]: any [`LlmBackend`]: the record is shown as `(i, 'token', [blank])`
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

use std::path::Path;

use adag_llm::{ChatRequest, LlmBackend};
use adag_model::{Batch, CacheFilter, LoadOptions, LoadedModel};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{candle_err, model_err, Error, Result};
use crate::llm::{is_request_specific, Meter};
use crate::parse::{expected_from_top, parse_indexed_fills, parse_pair_fills};
use crate::prompts;
use crate::records::ActivationRecord;

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

/// The in-process simulator.
pub struct LocalSimulator {
    model: LoadedModel,
    /// (token id, score) pairs.
    score_tokens: Vec<(u32, f32)>,
    max_score: f32,
    batch_size: usize,
    reencode: bool,
}

/// Options of [`LocalSimulator::load`].
#[derive(Debug, Clone)]
pub struct LocalSimulatorOptions {
    /// Which tokens are the scores.
    pub score_tokens: ScoreTokens,
    /// Records per forward pass.
    pub batch_size: usize,
    /// Re-encode each record token's text with the simulator's tokenizer instead of feeding
    /// the circuit's token ids (needed when the simulator is not the traced model).
    pub reencode: bool,
    /// Model loading (dtype, device).
    pub load: LoadOptions,
}

impl Default for LocalSimulatorOptions {
    fn default() -> Self {
        LocalSimulatorOptions {
            score_tokens: ScoreTokens::Digits,
            batch_size: 8,
            reencode: false,
            load: LoadOptions::default(),
        }
    }
}

/// The (token id, score) pairs standing for the scores with this tokenizer: for
/// [`ScoreTokens::Digits`] the strings "0".."10" that encode to one token, for
/// [`ScoreTokens::VocabIds`] the ids 0..=10 below `vocab`.
pub fn score_token_ids(
    tok: &adag_model::ModelTokenizer,
    kind: ScoreTokens,
    vocab: usize,
) -> Result<Vec<(u32, f32)>> {
    Ok(match kind {
        ScoreTokens::VocabIds => (0..=10u32)
            .filter(|&i| (i as usize) < vocab)
            .map(|i| (i, i as f32))
            .collect(),
        ScoreTokens::Digits => {
            let mut v = Vec::new();
            for s in 0..=10u32 {
                let ids = tok
                    .encode(&s.to_string(), false)
                    .map_err(model_err("encoding the score tokens"))?;
                if let [id] = ids[..] {
                    if (id as usize) < vocab {
                        v.push((id, s as f32));
                    }
                }
            }
            v
        }
    })
}

impl LocalSimulator {
    /// Loads a model directory as a simulator.
    pub fn load(dir: &Path, opts: &LocalSimulatorOptions) -> Result<Self> {
        let model = LoadedModel::load(dir, &opts.load).map_err(model_err(format!(
            "loading the simulator {}",
            dir.display()
        )))?;
        Self::new(model, opts)
    }

    /// Wraps a loaded model.
    pub fn new(model: LoadedModel, opts: &LocalSimulatorOptions) -> Result<Self> {
        let score_tokens =
            score_token_ids(&model.tokenizer, opts.score_tokens, model.model.cfg.d_vocab)?;
        if score_tokens.len() < 2 {
            return Err(Error::Input(format!(
                "the simulator {} has {} score token(s) for {:?}; at least two are needed \
                 (try --score-tokens vocab-ids)",
                model.dir.display(),
                score_tokens.len(),
                opts.score_tokens
            )));
        }
        let max_score = score_tokens.iter().map(|t| t.1).fold(0.0, f32::max);
        Ok(LocalSimulator {
            model,
            score_tokens,
            max_score,
            batch_size: opts.batch_size.max(1),
            reencode: opts.reencode,
        })
    }

    /// The score tokens as (id, score).
    pub fn score_tokens(&self) -> &[(u32, f32)] {
        &self.score_tokens
    }

    /// Token ids of a record for the simulator and, per shown token, the index of its last
    /// id (where its prediction is read); `None` for a token that encodes to nothing.
    fn record_ids(&self, r: &ActivationRecord) -> Result<(Vec<u32>, Vec<Option<usize>>)> {
        if !self.reencode {
            return Ok((
                r.token_ids.clone(),
                (0..r.token_ids.len()).map(Some).collect(),
            ));
        }
        let mut ids = Vec::new();
        let mut at = Vec::new();
        for t in &r.tokens {
            let e = self
                .model
                .tokenizer
                .encode(t, false)
                .map_err(model_err(format!("encoding the token {t:?}")))?;
            let empty = e.is_empty();
            ids.extend(e);
            at.push(if empty { None } else { Some(ids.len() - 1) });
        }
        Ok((ids, at))
    }

    /// Runs sequences in batches; for each sequence returns the score distribution (over
    /// [`Self::score_tokens`], summing to 1) at each requested position.
    fn distributions(&self, seqs: &[(Vec<u32>, Vec<usize>)]) -> Result<Vec<Vec<Vec<f32>>>> {
        let dev = self.model.model.device().clone();
        let ids: Vec<u32> = self.score_tokens.iter().map(|t| t.0).collect();
        let idx = Tensor::from_vec(ids.clone(), ids.len(), &dev)
            .map_err(candle_err("score token ids"))?;
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(self.batch_size) {
            let batch = Batch::new(chunk.iter().map(|s| s.0.clone()).collect())
                .map_err(model_err("building a simulator batch"))?;
            let fwd = self
                .model
                .model
                .forward(&batch, &CacheFilter::none())
                .map_err(model_err("simulator forward pass"))?;
            for (b, (_, positions)) in chunk.iter().enumerate() {
                let logits = fwd
                    .item_logits(b)
                    .map_err(model_err("simulator logits"))?
                    .index_select(&idx, 1)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_vec2::<f32>())
                    .map_err(candle_err("reading the score-token logits"))?;
                out.push(
                    positions
                        .iter()
                        .map(|&p| softmax(&logits[p]))
                        .collect::<Vec<_>>(),
                );
            }
        }
        Ok(out)
    }

    /// The score distribution at every shown token of every record (`None` for a token the
    /// simulator's tokenizer encodes to nothing).
    pub fn token_distributions(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<Option<Vec<f32>>>>> {
        let prefix = self
            .model
            .tokenizer
            .encode(&prompts::simulator_prefix(explanation), true)
            .map_err(model_err("encoding the simulator prefix"))?;
        let mut seqs = Vec::new();
        let mut maps = Vec::new();
        for r in records {
            let (ids, at) = self.record_ids(r)?;
            let mut seq = prefix.clone();
            seq.extend(&ids);
            let positions: Vec<usize> = at.iter().flatten().map(|&i| prefix.len() + i).collect();
            seqs.push((seq, positions));
            maps.push(at);
        }
        let dists = self.distributions(&seqs)?;
        Ok(maps
            .into_iter()
            .zip(dists)
            .map(|(at, d)| {
                let mut it = d.into_iter();
                at.iter().map(|a| a.and_then(|_| it.next())).collect()
            })
            .collect())
    }

    fn expected(&self, dist: &[f32]) -> f32 {
        dist.iter()
            .zip(&self.score_tokens)
            .map(|(p, t)| p * t.1)
            .sum()
    }
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|v| v / z).collect()
}

impl Simulator for LocalSimulator {
    fn describe(&self) -> String {
        format!(
            "in-process {} ({} score tokens)",
            self.model.dir.display(),
            self.score_tokens.len()
        )
    }

    fn simulate_tokens(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<f32>>> {
        let d = self.token_distributions(explanation, records)?;
        // A token with no ids of its own (re-encoding) gets the previous token's prediction.
        Ok(d.into_iter()
            .map(|rec| {
                let mut last = 0.0;
                rec.into_iter()
                    .map(|t| {
                        if let Some(t) = t {
                            last = self.expected(&t);
                        }
                        last
                    })
                    .collect()
            })
            .collect())
    }

    fn simulate_outputs(
        &self,
        explanation: &str,
        records: &[&ActivationRecord],
    ) -> Result<Vec<Vec<f32>>> {
        let prefix = self
            .model
            .tokenizer
            .encode(&prompts::simulator_prefix(explanation), true)
            .map_err(model_err("encoding the simulator prefix"))?;
        let mut seqs = Vec::new();
        let mut shape = Vec::new();
        for r in records {
            let (ids, _) = self.record_ids(r)?;
            for (j, &t) in r.target_ids.iter().enumerate() {
                let mut seq = prefix.clone();
                seq.extend(&ids);
                if self.reencode {
                    let e = self
                        .model
                        .tokenizer
                        .encode(&r.targets[j], false)
                        .map_err(model_err("encoding a continuation"))?;
                    seq.extend(e);
                } else {
                    seq.push(t);
                }
                let last = seq.len() - 1;
                seqs.push((seq, vec![last]));
            }
            shape.push(r.target_ids.len());
        }
        let dists = self.distributions(&seqs)?;
        let mut it = dists.into_iter();
        Ok(shape
            .into_iter()
            .map(|k| {
                (0..k)
                    .map(|_| {
                        let d = it.next().and_then(|mut v| v.pop()).unwrap_or_default();
                        self.expected(&d) * 20.0 / self.max_score - 10.0
                    })
                    .collect()
            })
            .collect())
    }
}

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
