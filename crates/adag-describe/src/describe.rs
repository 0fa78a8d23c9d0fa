//! Describing one cluster: explainer prompts, explanations, simulation and scores (reference
//! §6 phases 1–4).
//!
//! Per cluster and input-side sign (pos, neg) the explainer is asked for
//! [`DescribeOptions::samples`] explanations (T = 1, each prompt with its own random excerpts;
//! `sample_index` tells otherwise identical requests apart in the cache). Refused or
//! malformed replies are recorded and asked again in further rounds, at most
//! [`DescribeOptions::max_rounds`]. Every explanation is simulated on the held-out records and
//! scored by Pearson's r against the **raw signed** profile (neg explanations' r negated, since
//! they describe what lowers the activity); the best per side is kept. The output side works
//! the same way on the records' target scores (integers −10..10), with one sign.

use serde::{Deserialize, Serialize};

use adag_llm::{ChatRequest, LlmBackend};

use crate::error::Result;
use crate::exemplars::{input_pool, output_pool, rng_for, sample_indices, PoolOptions, Sign};
use crate::highlight::{choose_threshold, format_highlights, pool_quantiles};
use crate::llm::{is_request_specific, Meter};
use crate::parse::{parse_marked, Unusable};
use crate::prompts;
use crate::records::{ActivationRecord, ClusterRecords};
use crate::score::pearson;
use crate::simulate::Simulator;

/// Which side of the cluster an explanation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// What drives it (input profile).
    Input,
    /// What it does to the targets (output profile).
    Output,
}

/// Options of the description pipeline (reference defaults). Missing keys read as their
/// defaults, so descriptions files of earlier versions stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DescribeOptions {
    /// Explanations wanted per side and sign.
    pub samples: usize,
    /// Most rounds of asking again for refused or malformed replies.
    pub max_rounds: usize,
    /// Distinct highlighted spans the threshold search asks for.
    pub min_highlights: usize,
    /// Pool sizes.
    pub pool: PoolOptions,
    /// Seed of every random draw.
    pub seed: u64,
    /// Explainer temperature.
    pub temperature: f32,
    /// Explainer reply limit (tokens).
    pub max_tokens: u32,
    /// Model name sent to the explainer endpoint (`None`: the backend's default).
    pub model: Option<String>,
    /// Describe the input side.
    pub input_side: bool,
    /// Describe the output side.
    pub output_side: bool,
    /// Explainer requests in flight at once.
    pub concurrency: usize,
}

impl Default for DescribeOptions {
    fn default() -> Self {
        DescribeOptions {
            samples: 5,
            max_rounds: 10,
            min_highlights: 1,
            pool: PoolOptions::default(),
            seed: 42,
            temperature: 1.0,
            max_tokens: 100,
            model: None,
            input_side: true,
            output_side: true,
            concurrency: 4,
        }
    }
}

/// One explanation and its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Input or output side.
    pub side: Side,
    /// Input side: which sign it explains.
    pub sign: Option<Sign>,
    /// The explanation.
    pub text: String,
    /// Which sample of its side and sign (the request's `sample_index`).
    pub sample_index: u32,
    /// Pearson's r against the truth on the held-out records (negated for neg); `None` when
    /// undefined (constant simulation or truth).
    pub score: Option<f64>,
    /// How many (simulated, true) pairs the score is over: the n of its p-value.
    #[serde(default)]
    pub n_scored: usize,
    /// Prompt ids of the excerpts the explainer saw, in the order shown.
    pub exemplars: Vec<u64>,
    /// The excerpts as shown (input side: with `{{…}}` highlights; output side: the
    /// `Prompt:`/`Continuations:` items).
    pub excerpts: Vec<String>,
    /// Input side: the highlight threshold used.
    pub threshold: Option<f32>,
}

/// A reply that could not be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnusableReply {
    /// Side.
    pub side: Side,
    /// Sign (input side).
    pub sign: Option<Sign>,
    /// The request's sample index.
    pub sample_index: u32,
    /// Why.
    pub reason: Unusable,
}

/// Which records a side's explanations were written from and scored on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// Side.
    pub side: Side,
    /// Sign (input side).
    pub sign: Option<Sign>,
    /// Prompt ids the explainer could be shown.
    pub explain: Vec<u64>,
    /// Prompt ids the explanations were scored on.
    pub scored: Vec<u64>,
    /// Whether scoring had to reuse shown records (a pool of one record).
    pub scored_on_shown: bool,
}

/// Everything the pipeline produced for one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster: String,
    /// Every usable explanation, scored.
    pub explanations: Vec<Explanation>,
    /// The best input-side explanation (over both signs).
    pub best_input: Option<Explanation>,
    /// The best output-side explanation.
    pub best_output: Option<Explanation>,
    /// The pools used.
    pub pools: Vec<PoolInfo>,
    /// Refused and malformed replies.
    pub unusable: Vec<UnusableReply>,
    /// Why a side or sign was skipped, if it was.
    pub notes: Vec<String>,
}

impl Explanation {
    /// The text as stored and shown everywhere outside the descriptions file: a neg-side
    /// input explanation describes what *lowers* the cluster, so it carries the marker
    /// [`NEG_MARKER`]; read unmarked it would say the opposite of what was scored.
    pub fn signed_text(&self) -> String {
        match (self.side, self.sign) {
            (Side::Input, Some(Sign::Neg)) => format!("{NEG_MARKER}{}", self.text),
            _ => self.text.clone(),
        }
    }
}

/// Prefix of a neg-side input description wherever it leaves the descriptions file
/// (`clusters.json`, the viewer, the label prompt): "what suppresses this cluster: …".
pub const NEG_MARKER: &str = "[neg: suppressed by] ";

impl ClusterDescription {
    /// The combined description the reference stores: `"input | output"`, the input side
    /// with its sign (see [`Explanation::signed_text`]).
    pub fn combined(&self) -> Option<String> {
        match (&self.best_input, &self.best_output) {
            (Some(i), Some(o)) => Some(format!("{} | {}", i.signed_text(), o.text)),
            (Some(i), None) => Some(i.signed_text()),
            (None, Some(o)) => Some(o.text.clone()),
            (None, None) => None,
        }
    }
}

fn best(ex: &[Explanation], side: Side) -> Option<Explanation> {
    ex.iter()
        .filter(|e| e.side == side)
        .max_by(|a, b| {
            let (sa, sb) = (
                a.score.unwrap_or(f64::NEG_INFINITY),
                b.score.unwrap_or(f64::NEG_INFINITY),
            );
            // Ties: the earlier sample wins (max_by keeps the last maximum, so compare reversed).
            sa.total_cmp(&sb).then(b.sample_index.cmp(&a.sample_index))
        })
        .cloned()
}

/// Describes one cluster with `explainer` and scores the explanations with `simulator`.
pub fn describe_cluster(
    cr: &ClusterRecords,
    explainer: &dyn LlmBackend,
    simulator: &dyn Simulator,
    meter: &Meter,
    opts: &DescribeOptions,
) -> Result<ClusterDescription> {
    let mut d = ClusterDescription {
        cluster: cr.cluster.clone(),
        explanations: Vec::new(),
        best_input: None,
        best_output: None,
        pools: Vec::new(),
        unusable: Vec::new(),
        notes: Vec::new(),
    };
    if opts.input_side {
        for sign in [Sign::Pos, Sign::Neg] {
            input_side(cr, sign, explainer, simulator, meter, opts, &mut d)?;
        }
    }
    if opts.output_side {
        output_side(cr, explainer, simulator, meter, opts, &mut d)?;
    }
    d.best_input = best(&d.explanations, Side::Input);
    d.best_output = best(&d.explanations, Side::Output);
    Ok(d)
}

fn request(opts: &DescribeOptions, messages: Vec<adag_llm::Message>, sample: u32) -> ChatRequest {
    let mut req = ChatRequest::new(messages);
    req.model = opts.model.clone();
    req.temperature = opts.temperature;
    req.max_tokens = opts.max_tokens;
    req.sample_index = sample;
    req
}

/// Asks for explanations until `samples` usable ones exist or the rounds run out. `build`
/// makes the request of sample `s` and returns it with its exemplars and threshold.
/// A usable explanation before scoring: text, sample index, shown prompt ids, shown excerpts,
/// threshold.
type Collected = (String, u32, Vec<u64>, Vec<String>, Option<f32>);

/// An unusable reply: its sample index and why.
type Rejected = (u32, Unusable);

/// A request of one sample with what it shows: prompt ids, excerpts, threshold.
type Built = (ChatRequest, Vec<u64>, Vec<String>, Option<f32>);

fn collect(
    opts: &DescribeOptions,
    explainer: &dyn LlmBackend,
    meter: &Meter,
    marker: &str,
    context: &str,
    mut build: impl FnMut(u32) -> Option<Built>,
) -> Result<(Vec<Collected>, Vec<Rejected>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut next = 0u32;
    for _ in 0..opts.max_rounds.max(1) {
        let want = opts.samples.saturating_sub(good.len());
        if want == 0 {
            break;
        }
        // Requests are built in sample order (the draws stay reproducible), sent concurrently,
        // and their replies handled in sample order.
        let mut built = Vec::new();
        for _ in 0..want {
            let s = next;
            next += 1;
            if let Some(b) = build(s) {
                built.push((s, b));
            }
        }
        let requests: Vec<(ChatRequest, String)> = built
            .iter()
            .map(|(s, b)| (b.0.clone(), format!("{context}, sample {s}")))
            .collect();
        let replies = meter.chat_all(explainer, &requests, opts.concurrency);
        for ((s, (_, shown, excerpts, thr)), reply) in built.into_iter().zip(replies) {
            let reply = match reply {
                Ok(r) => r,
                Err(e) if is_request_specific(&e) => {
                    meter.unusable();
                    bad.push((s, Unusable::Rejected(e.to_string())));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match parse_marked(&reply.text, marker, reply.finish_reason.as_deref()) {
                Ok(text) => good.push((text, s, shown, excerpts, thr)),
                Err(u) => {
                    meter.unusable();
                    bad.push((s, u));
                }
            }
        }
    }
    Ok((good, bad))
}

fn input_side(
    cr: &ClusterRecords,
    sign: Sign,
    explainer: &dyn LlmBackend,
    simulator: &dyn Simulator,
    meter: &Meter,
    opts: &DescribeOptions,
    d: &mut ClusterDescription,
) -> Result<()> {
    let recs = &cr.records;
    let mut rng = rng_for(opts.seed, &[&cr.cluster, "input", sign.as_str(), "pool"], 0);
    let Some(pool) = input_pool(recs, sign, &opts.pool, &mut rng) else {
        d.notes.push(format!(
            "input {}: no {} values on any prompt; nothing to explain",
            sign.as_str(),
            if sign == Sign::Pos {
                "positive"
            } else {
                "negative"
            }
        ));
        return Ok(());
    };
    d.pools.push(PoolInfo {
        side: Side::Input,
        sign: Some(sign),
        explain: pool
            .explain
            .iter()
            .map(|e| recs[e.record].prompt_id)
            .collect(),
        scored: pool
            .scored
            .iter()
            .map(|e| recs[e.record].prompt_id)
            .collect(),
        scored_on_shown: pool.scored_on_shown,
    });
    let quantiles = pool_quantiles(pool.explain.iter().map(|e| e.acts.as_slice()));
    let context = format!("cluster {} input {}", cr.cluster, sign.as_str());
    let (good, bad) = collect(opts, explainer, meter, "[DESCRIPTION]", &context, |s| {
        let mut rng = rng_for(opts.seed, &[&cr.cluster, "input", sign.as_str()], s as u64);
        let idx = sample_indices(pool.explain.len(), &opts.pool, &mut rng);
        let ex: Vec<(&[String], &[f32])> = idx
            .iter()
            .map(|&i| {
                let e = &pool.explain[i];
                (recs[e.record].tokens.as_slice(), e.acts.as_slice())
            })
            .collect();
        let thr = choose_threshold(&ex, &quantiles, opts.min_highlights)?;
        let texts: Vec<String> = ex
            .iter()
            .map(|(t, a)| format_highlights(t, a, thr))
            .collect();
        let shown = idx
            .iter()
            .map(|&i| recs[pool.explain[i].record].prompt_id)
            .collect();
        Some((
            request(opts, prompts::input_explainer(&texts), s),
            shown,
            texts,
            Some(thr),
        ))
    })?;
    d.unusable
        .extend(bad.into_iter().map(|(s, reason)| UnusableReply {
            side: Side::Input,
            sign: Some(sign),
            sample_index: s,
            reason,
        }));
    let scored: Vec<&ActivationRecord> = pool.scored.iter().map(|e| &recs[e.record]).collect();
    let truth: Vec<f32> = scored
        .iter()
        .flat_map(|r| r.values.iter().copied())
        .collect();
    for (text, s, shown, excerpts, thr) in good {
        let sim: Vec<f32> = simulator
            .simulate_tokens(&text, &scored)?
            .into_iter()
            .flatten()
            .collect();
        let r = pearson(&sim, &truth).map(|r| if sign == Sign::Neg { -r } else { r });
        d.explanations.push(Explanation {
            side: Side::Input,
            sign: Some(sign),
            text,
            sample_index: s,
            score: r,
            n_scored: truth.len(),
            exemplars: shown,
            excerpts,
            threshold: thr,
        });
    }
    Ok(())
}

fn output_side(
    cr: &ClusterRecords,
    explainer: &dyn LlmBackend,
    simulator: &dyn Simulator,
    meter: &Meter,
    opts: &DescribeOptions,
    d: &mut ClusterDescription,
) -> Result<()> {
    let recs = &cr.records;
    let pool = output_pool(recs, &opts.pool);
    if pool.is_empty() {
        d.notes
            .push("output: the cluster contributes to no target; nothing to explain".into());
        return Ok(());
    }
    // Hold back a quarter (at least one, never the strongest), as on the input side.
    let (explain, scored, on_shown) = if pool.len() == 1 {
        (pool.clone(), pool.clone(), true)
    } else {
        use rand::seq::SliceRandom;
        let mut rng = rng_for(opts.seed, &[&cr.cluster, "output", "pool"], 0);
        let n = (pool.len() / 4).clamp(1, opts.pool.max_scored.max(1));
        let mut rest: Vec<usize> = (1..pool.len()).collect();
        rest.shuffle(&mut rng);
        let held: std::collections::BTreeSet<usize> = rest[..n].iter().copied().collect();
        let (mut e, mut s) = (Vec::new(), Vec::new());
        for (i, p) in pool.iter().enumerate() {
            if held.contains(&i) {
                s.push(p.clone());
            } else {
                e.push(p.clone());
            }
        }
        (e, s, false)
    };
    d.pools.push(PoolInfo {
        side: Side::Output,
        sign: None,
        explain: explain.iter().map(|p| recs[p.0].prompt_id).collect(),
        scored: scored.iter().map(|p| recs[p.0].prompt_id).collect(),
        scored_on_shown: on_shown,
    });
    let context = format!("cluster {} output", cr.cluster);
    let (good, bad) = collect(opts, explainer, meter, "[EXPLANATION]", &context, |s| {
        let mut rng = rng_for(opts.seed, &[&cr.cluster, "output"], s as u64);
        let idx = sample_indices(explain.len(), &opts.pool, &mut rng);
        let items: Vec<(String, Vec<(String, i32)>)> = idx
            .iter()
            .map(|&i| {
                let (ri, scores) = &explain[i];
                let r = &recs[*ri];
                (
                    r.text(),
                    r.targets
                        .iter()
                        .cloned()
                        .zip(scores.iter().copied())
                        .collect(),
                )
            })
            .collect();
        let shown = idx.iter().map(|&i| recs[explain[i].0].prompt_id).collect();
        let texts = items
            .iter()
            .enumerate()
            .map(|(i, (p, c))| prompts::output_item(i + 1, p, c))
            .collect();
        Some((
            request(opts, prompts::output_explainer(&items), s),
            shown,
            texts,
            None,
        ))
    })?;
    d.unusable
        .extend(bad.into_iter().map(|(s, reason)| UnusableReply {
            side: Side::Output,
            sign: None,
            sample_index: s,
            reason,
        }));
    let scored_recs: Vec<&ActivationRecord> = scored.iter().map(|p| &recs[p.0]).collect();
    let truth: Vec<f32> = scored
        .iter()
        .flat_map(|p| p.1.iter().map(|&v| v as f32))
        .collect();
    for (text, s, shown, excerpts, _) in good {
        let sim: Vec<f32> = simulator
            .simulate_outputs(&text, &scored_recs)?
            .into_iter()
            .flatten()
            .collect();
        d.explanations.push(Explanation {
            side: Side::Output,
            sign: None,
            text,
            sample_index: s,
            score: pearson(&sim, &truth),
            n_scored: truth.len(),
            exemplars: shown,
            excerpts,
            threshold: None,
        });
    }
    Ok(())
}
