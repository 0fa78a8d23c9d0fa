//! The in-process simulator: an adag-loaded model read at the score tokens.

use std::path::Path;

use adag_model::{Batch, CacheFilter, LoadOptions, LoadedModel};
use candle_core::{DType, Tensor};

use super::{ScoreTokens, Simulator};
use crate::error::{candle_err, model_err, Error, Result};
use crate::prompts;
use crate::records::ActivationRecord;

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

use adag_core::softmax;

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
