//! Held-out accuracy of a model on the corpus tasks.
//!
//! An item counts as correct when greedy decoding reproduces the whole expected answer
//! (every answer token is the argmax given the prompt and the previous answer tokens), e.g.
//! both digits and the period of "95."; `first_token` counts only the first answer token
//! (the top-1 next-token prediction that an attribution graph explains).

use std::collections::BTreeMap;

use adag_model::{Batch, CacheFilter, Transformer};
use candle_core::D;
use tokenizers::Tokenizer;

use crate::corpus::{EvalItem, Task};
use crate::error::{Context, Error, Result};

/// Results for one task.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskScore {
    /// Prompts evaluated.
    pub n: usize,
    /// Whole answer correct under greedy decoding.
    pub correct: usize,
    /// First answer token is the top-1 prediction.
    pub first_token: usize,
    /// Up to five prompts answered wrongly, with what the model predicted first.
    pub failures: Vec<String>,
}

impl TaskScore {
    /// `correct / n`.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.n.max(1) as f64
    }
    /// `first_token / n`.
    pub fn first_token_accuracy(&self) -> f64 {
        self.first_token as f64 / self.n.max(1) as f64
    }
}

/// Scores per task, keyed by [`Task::name`].
pub type EvalReport = BTreeMap<String, TaskScore>;

fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, true)
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec())
}

/// Evaluates `items` with `model` (batched, teacher-forced greedy check).
pub fn evaluate(model: &Transformer, tok: &Tokenizer, items: &[EvalItem]) -> Result<EvalReport> {
    let mut report = EvalReport::new();
    for chunk in items.chunks(64) {
        let mut seqs = Vec::new();
        let mut plens = Vec::new();
        for it in chunk {
            let p = encode(tok, &it.prompt)?;
            let full = encode(tok, &format!("{}{}", it.prompt, it.answer))?;
            if full.len() <= p.len() || full[..p.len()] != p[..] {
                return Err(Error::Tokenizer(format!(
                    "prompt {:?} does not tokenize as a prefix of its answer {:?}",
                    it.prompt, it.answer
                )));
            }
            plens.push(p.len());
            seqs.push(full);
        }
        let batch = Batch::new(seqs.clone()).context("eval batch")?;
        let out = model
            .forward(&batch, &CacheFilter::none())
            .context("eval forward")?;
        let pred = out
            .logits
            .argmax(D::Minus1)
            .and_then(|t| t.to_vec2::<u32>())
            .context("argmax")?;
        for (i, it) in chunk.iter().enumerate() {
            let (full, plen, pad) = (&seqs[i], plens[i], batch.pad[i]);
            let ok_at = |k: usize| pred[i][pad + k - 1] == full[k];
            let first = ok_at(plen);
            let all = (plen..full.len()).all(ok_at);
            let s = report.entry(it.task.name().to_string()).or_default();
            s.n += 1;
            s.first_token += first as usize;
            s.correct += all as usize;
            if !all && s.failures.len() < 5 {
                let got = tok
                    .decode(&[pred[i][pad + plen - 1]], false)
                    .unwrap_or_else(|_| "?".into());
                s.failures
                    .push(format!("{}|{} (predicted {got:?})", it.prompt, it.answer));
            }
        }
    }
    Ok(report)
}

/// One line per task: `name: correct/n (acc%), first token acc%`.
pub fn format_report(r: &EvalReport) -> String {
    r.iter()
        .map(|(k, s)| {
            format!(
                "{k}: {}/{} = {:.1}% (first token {:.1}%)",
                s.correct,
                s.n,
                100.0 * s.accuracy(),
                100.0 * s.first_token_accuracy()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether every held-out task reaches `bar` (whole-answer accuracy).
pub fn meets_bar(r: &EvalReport, bar: f64) -> bool {
    [Task::TwoHop, Task::Addition, Task::Agreement]
        .iter()
        .all(|t| r.get(t.name()).is_some_and(|s| s.accuracy() >= bar))
}
