//! Steering success rates (ADAG's sensitivity analysis): scale a cluster, sample continuations,
//! judge each, and report the share judged a success with a confidence interval.
//!
//! For every target × scale × prompt, `samples` continuations are drawn
//! ([`crate::steer::Steerer::sample`], temperature and top-p), each judged by a
//! [`crate::judge::Judge`]. Per target × scale: `rate = yes / (yes + no)` (unclear verdicts
//! are counted apart, as the reference counts incoherent replies) with a 95 % Wilson score
//! interval, which stays inside [0, 1] and is honest at 0/n and n/n where the normal
//! approximation collapses to a zero-width interval.
//!
//! Sample `s` of prompt `p` draws from the same random stream at every target and scale
//! (common random numbers): differences between scales come from the steering, not from
//! luck of the draw, and scale 1 reproduces the unsteered samples exactly.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::judge::Judge;
use crate::steer::{Scope, Steerer, Target};

/// How continuations are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleOptions {
    /// Continuations per prompt.
    pub samples: usize,
    /// Tokens per continuation.
    pub max_tokens: usize,
    /// Softmax temperature (0: greedy, every sample alike).
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Seed of every draw.
    pub seed: u64,
    /// Which positions are scaled.
    pub scope: Scope,
}

impl Default for SampleOptions {
    /// The reference's sampling (T 0.7, top-p 0.9), fewer and shorter samples than its 50 ×
    /// 256 tokens, which suit a chat model's jailbreak answers rather than a next-token task.
    fn default() -> Self {
        SampleOptions {
            samples: 5,
            max_tokens: 8,
            temperature: 0.7,
            top_p: 0.9,
            seed: 0,
            scope: Scope::Traced,
        }
    }
}

/// One judged continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedSample {
    /// Cluster id (or `not C3` for its complement, `L3N5` for a neuron).
    pub target: String,
    /// The factor.
    pub scale: f32,
    /// The prompt.
    pub prompt_id: u64,
    /// Sample index within the prompt.
    pub sample: usize,
    /// The continuation, decoded.
    pub continuation: String,
    /// The judge's verdict (None: unclear).
    pub success: Option<bool>,
    /// The judge's reason.
    pub reason: String,
}

/// Success rate of one target × scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsrRow {
    /// Cluster id (or its complement, or a neuron).
    pub target: String,
    /// The factor.
    pub scale: f32,
    /// Prompts sampled.
    pub n_prompts: usize,
    /// Verdicts `yes`.
    pub n_yes: usize,
    /// Verdicts `no`.
    pub n_no: usize,
    /// Replies that were neither.
    pub n_unclear: usize,
    /// `yes / (yes + no)` (NaN when no verdict was clear).
    pub rate: f64,
    /// 95 % Wilson interval, lower end.
    pub ci_low: f64,
    /// 95 % Wilson interval, upper end.
    pub ci_high: f64,
}

/// The 95 % Wilson score interval of `k` successes in `n` trials (`(NaN, NaN)` for n = 0).
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The RNG of sample `sample` of prompt `prompt_id`: the same at every target and scale.
fn sample_rng(seed: u64, prompt_id: u64, sample: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(prompt_id.wrapping_mul(1 << 20).wrapping_add(sample as u64));
    rng
}

/// What the sweep needs besides the steerer: which prompts each target runs on, how tokens
/// read as text, and each prompt's text for the judge.
pub struct SweepInputs<'a> {
    /// Prompt ids per target (e.g. [`Steerer::prompts_of`], or a fixed list).
    pub prompts: &'a dyn Fn(&Target) -> Vec<u64>,
    /// Token ids → text.
    pub decode: &'a dyn Fn(&[u32]) -> String,
    /// Prompt id → the text the judge sees as the prompt, and its given answers.
    pub prompt_text: &'a dyn Fn(u64) -> (String, Vec<String>),
}

/// Samples, judges and aggregates every target × scale. `progress` is called after each
/// target × scale with the number done.
pub fn sweep(
    steerer: &Steerer,
    targets: &[Target],
    scales: &[f32],
    opts: &SampleOptions,
    inputs: &SweepInputs,
    judge: &dyn Judge,
    progress: &mut dyn FnMut(usize),
) -> Result<(Vec<AsrRow>, Vec<JudgedSample>)> {
    if opts.samples == 0 || opts.max_tokens == 0 {
        return Err(Error::Input(
            "--samples and --max-tokens must be at least 1".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut all = Vec::new();
    let mut done = 0;
    for target in targets {
        steerer.check(target)?;
        let prompts = (inputs.prompts)(target);
        let name = target.to_string();
        for &scale in scales {
            let mut judged = Vec::new();
            for &pid in &prompts {
                let (text, answers) = (inputs.prompt_text)(pid);
                for s in 0..opts.samples {
                    let mut rng = sample_rng(opts.seed, pid, s);
                    let ids = steerer.sample(
                        pid,
                        target,
                        scale,
                        opts.scope,
                        opts.max_tokens,
                        opts.temperature,
                        opts.top_p,
                        &mut rng,
                    )?;
                    let continuation = (inputs.decode)(&ids);
                    let v = judge.judge(&text, &answers, &continuation)?;
                    judged.push(JudgedSample {
                        target: name.clone(),
                        scale,
                        prompt_id: pid,
                        sample: s,
                        continuation,
                        success: v.success,
                        reason: v.reason,
                    });
                }
            }
            rows.push(aggregate(&name, scale, prompts.len(), &judged));
            all.extend(judged);
            done += 1;
            progress(done);
        }
    }
    Ok((rows, all))
}

/// One target × scale's row from its judged samples.
pub fn aggregate(target: &str, scale: f32, n_prompts: usize, judged: &[JudgedSample]) -> AsrRow {
    let count = |v: Option<bool>| judged.iter().filter(|j| j.success == v).count();
    let (n_yes, n_no, n_unclear) = (count(Some(true)), count(Some(false)), count(None));
    let n = n_yes + n_no;
    let (ci_low, ci_high) = wilson(n_yes, n);
    AsrRow {
        target: target.to_string(),
        scale,
        n_prompts,
        n_yes,
        n_no,
        n_unclear,
        rate: if n == 0 {
            f64::NAN
        } else {
            n_yes as f64 / n as f64
        },
        ci_low,
        ci_high,
    }
}

/// The table as text: one line per target × scale.
pub fn table(rows: &[AsrRow]) -> String {
    let mut s = format!(
        "{:<12} {:>6} {:>8} {:>5} {:>5} {:>8} {:>7}  {}\n",
        "target", "scale", "prompts", "yes", "no", "unclear", "rate", "95% CI (Wilson)"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:>6} {:>8} {:>5} {:>5} {:>8} {:>7.3}  [{:.3}, {:.3}]\n",
            r.target,
            r.scale,
            r.n_prompts,
            r.n_yes,
            r.n_no,
            r.n_unclear,
            r.rate,
            r.ci_low,
            r.ci_high
        ));
    }
    s
}

/// The table as CSV (the [`AsrRow`] fields as columns).
pub fn csv(rows: &[AsrRow]) -> String {
    let mut s = String::from("target,scale,n_prompts,n_yes,n_no,n_unclear,rate,ci_low,ci_high\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            r.target,
            r.scale,
            r.n_prompts,
            r.n_yes,
            r.n_no,
            r.n_unclear,
            r.rate,
            r.ci_low,
            r.ci_high
        ));
    }
    s
}

/// Writes the rows as Parquet (the [`AsrRow`] fields as columns).
pub fn write_parquet(path: &std::path::Path, rows: &[AsrRow]) -> Result<()> {
    use arrow_array::{ArrayRef, Float32Array, Float64Array, StringArray, UInt64Array};
    let u = |f: fn(&AsrRow) -> usize| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| f(r) as u64),
        ))
    };
    let f = |f: fn(&AsrRow) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
    };
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "target",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.target.clone()),
            )),
        ),
        (
            "scale",
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.scale))),
        ),
        ("n_prompts", u(|r| r.n_prompts)),
        ("n_yes", u(|r| r.n_yes)),
        ("n_no", u(|r| r.n_no)),
        ("n_unclear", u(|r| r.n_unclear)),
        ("rate", f(|r| r.rate)),
        ("ci_low", f(|r| r.ci_low)),
        ("ci_high", f(|r| r.ci_high)),
    ];
    crate::steer::write_parquet_columns(path, cols)
}
