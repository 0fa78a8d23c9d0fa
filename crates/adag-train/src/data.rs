//! Token rows for training: sentences from the corpus packed after a BOS, whole sentences only.

use adag_model::Batch;
use tokenizers::Tokenizer;

use crate::corpus::sample_sentence;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Packs sampled sentences into rows of at most `seq_len` tokens, each starting with BOS.
///
/// Why whole sentences: evaluation prompts start right after BOS, and a sentence cut in half
/// would teach continuations that never occur.
pub struct RowSampler {
    rng: Rng,
    tokenizer: Tokenizer,
    seq_len: usize,
    bos: u32,
    pending: Option<Vec<u32>>,
}

impl RowSampler {
    /// A sampler drawing from the seeded stream `seed`/`label`.
    pub fn new(tokenizer: Tokenizer, seed: u64, label: &str, seq_len: usize) -> Result<Self> {
        let bos = tokenizer
            .token_to_id(crate::bpe::BOS)
            .ok_or_else(|| Error::Tokenizer(format!("no {} token", crate::bpe::BOS)))?;
        Ok(RowSampler {
            rng: Rng::derive(seed, label),
            tokenizer,
            seq_len,
            bos,
            pending: None,
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// One row: BOS, a sentence, then " sentence" pieces while they fit.
    pub fn row(&mut self) -> Result<Vec<u32>> {
        let mut row = vec![self.bos];
        let first = match self.pending.take() {
            Some(ids) => ids,
            None => {
                let s = sample_sentence(&mut self.rng);
                self.encode(&s)?
            }
        };
        row.extend(first.iter().take(self.seq_len - 1));
        loop {
            let s = sample_sentence(&mut self.rng);
            let ids = self.encode(&format!(" {s}"))?;
            if row.len() + ids.len() > self.seq_len {
                // Starts the next row (encoded without the leading space).
                self.pending = Some(self.encode(&s)?);
                return Ok(row);
            }
            row.extend(ids);
        }
    }

    /// A batch of `n` rows.
    pub fn batch(&mut self, n: usize) -> Result<Batch> {
        let rows = (0..n).map(|_| self.row()).collect::<Result<Vec<_>>>()?;
        Batch::new(rows).map_err(|e| Error::Model {
            context: "building a batch".into(),
            source: Box::new(e),
        })
    }
}

/// Flat indices into `[batch·width]` of every position that predicts a real next token, and
/// those next tokens.
pub fn lm_targets(batch: &Batch) -> (Vec<u32>, Vec<u32>) {
    let mut idx = Vec::new();
    let mut tgt = Vec::new();
    for (b, (toks, &pad)) in batch.tokens.iter().zip(&batch.pad).enumerate() {
        for i in 0..toks.len().saturating_sub(1) {
            idx.push((b * batch.width + pad + i) as u32);
            tgt.push(toks[i + 1]);
        }
    }
    (idx, tgt)
}
