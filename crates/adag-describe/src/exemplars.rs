//! Exemplar pools: which records the explainer sees and which are kept back for scoring
//! (reference §6 phase 1, steps 1–4, and phase 2, steps 2–3).
//!
//! Input side, per sign:
//! 1. **sign filter**: `pos` keeps `max(0, x)`, `neg` keeps `|min(0, x)|`;
//! 2. **pool**: the top [`PoolOptions::top`] present records by their largest filtered value,
//!    plus [`PoolOptions::random`] random prompts of the circuit as negatives (the cluster's
//!    own record floored at ε where it is present, an all-ε record where it is absent),
//!    deduplicated by token ids (top records win);
//! 3. **held-out split**: a seeded share of the pool (at least one record, at most
//!    [`PoolOptions::max_scored`], never the strongest, and including a top record whenever
//!    there is a second one) is kept back; explanations are simulated and scored on it,
//!    never on excerpts they were written from (when the pool has a single record, that
//!    record is both, and the result says so);
//! 4. **samples**: each explainer prompt shows 10–20 records of the rest in random order,
//!    always including the pool's strongest record so that at least one span is highlighted.
//!
//! Output side: records' target shares normalised to integers −10..10 by the cluster's largest
//! |share|, the top [`PoolOptions::top_outputs`] records by largest |score| kept.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::records::ActivationRecord;

/// ε floor of the random negatives.
pub const NEGATIVE_FLOOR: f32 = 1e-6;

/// Which sign of the input profile an explanation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sign {
    /// Tokens that push the cluster's activation up.
    Pos,
    /// Tokens that push it down (their |value|).
    Neg,
}

impl Sign {
    /// The sign-filtered value.
    pub fn filter(self, x: f32) -> f32 {
        match self {
            Sign::Pos => x.max(0.0),
            Sign::Neg => (-x).max(0.0),
        }
    }

    /// `"pos"` or `"neg"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sign::Pos => "pos",
            Sign::Neg => "neg",
        }
    }
}

/// Pool sizes (reference defaults; missing keys read as defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolOptions {
    /// Top records by largest filtered value.
    pub top: usize,
    /// Random prompts added as negatives.
    pub random: usize,
    /// Most records kept back for scoring.
    pub max_scored: usize,
    /// Fewest and most excerpts per explainer prompt.
    pub per_prompt: (usize, usize),
    /// Output side: records kept by largest |score|.
    pub top_outputs: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            top: 80,
            random: 20,
            max_scored: 20,
            per_prompt: (10, 20),
            top_outputs: 20,
        }
    }
}

/// A record as one explanation side uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// Index of the record in the cluster's records.
    pub record: usize,
    /// Sign-filtered (input side) values, one per shown token.
    pub acts: Vec<f32>,
    /// Whether it entered the pool as a random negative.
    pub negative: bool,
}

/// The input-side pool of one cluster and sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputPool {
    /// Exemplars the explainer may see, strongest first.
    pub explain: Vec<Exemplar>,
    /// Exemplars kept back for scoring.
    pub scored: Vec<Exemplar>,
    /// Whether `scored` had to reuse explained records (pool of one).
    pub scored_on_shown: bool,
}

fn max_of(v: &[f32]) -> f32 {
    v.iter().copied().fold(0.0, f32::max)
}

/// A seeded RNG for one (purpose, cluster, side, sample) so that every draw is reproducible
/// and independent of the order clusters are processed in.
pub fn rng_for(seed: u64, parts: &[&str], index: u64) -> ChaCha8Rng {
    let key = format!("{seed}/{}/{index}", parts.join("/"));
    let h = adag_circuit::store::fingerprint(&key);
    ChaCha8Rng::seed_from_u64(u64::from_str_radix(&h, 16).unwrap_or(seed))
}

/// Builds the input-side pool; `None` when no present record has a value of this sign.
pub fn input_pool(
    records: &[ActivationRecord],
    sign: Sign,
    opts: &PoolOptions,
    rng: &mut ChaCha8Rng,
) -> Option<InputPool> {
    let filtered: Vec<Vec<f32>> = records
        .iter()
        .map(|r| r.values.iter().map(|&x| sign.filter(x)).collect())
        .collect();
    let mut top: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].present && max_of(&filtered[i]) > crate::highlight::MIN_HIGHLIGHT)
        .collect();
    if top.is_empty() {
        return None;
    }
    top.sort_by(|&a, &b| {
        max_of(&filtered[b])
            .total_cmp(&max_of(&filtered[a]))
            .then(records[a].prompt_id.cmp(&records[b].prompt_id))
    });
    top.truncate(opts.top);
    let mut pool: Vec<Exemplar> = top
        .iter()
        .map(|&i| Exemplar {
            record: i,
            acts: filtered[i].clone(),
            negative: false,
        })
        .collect();
    let mut all: Vec<usize> = (0..records.len()).collect();
    all.shuffle(rng);
    for &i in all.iter().take(opts.random) {
        pool.push(Exemplar {
            record: i,
            acts: filtered[i].iter().map(|&x| x.max(NEGATIVE_FLOOR)).collect(),
            negative: true,
        });
    }
    // Deduplicate by token ids, first occurrence (top records) wins.
    let mut seen = std::collections::HashSet::new();
    pool.retain(|e| seen.insert(records[e.record].token_ids.clone()));

    if pool.len() == 1 {
        return Some(InputPool {
            scored: pool.clone(),
            explain: pool,
            scored_on_shown: true,
        });
    }
    // Keep back a quarter (at least 1, at most max_scored), never the strongest record.
    let n_scored = (pool.len() / 4).clamp(1, opts.max_scored.max(1));
    let mut rest: Vec<usize> = (1..pool.len()).collect();
    rest.shuffle(rng);
    let mut held: Vec<usize> = rest[..n_scored].to_vec();
    // A held-out set of negatives only has a constant truth where the cluster is absent and
    // says little; when another top record exists, one of them is held out too.
    if held.iter().all(|&i| pool[i].negative) {
        if let Some(&top) = rest[n_scored..].iter().find(|&&i| !pool[i].negative) {
            held[0] = top;
        }
    }
    held.sort_unstable();
    let mut explain = Vec::new();
    let mut scored = Vec::new();
    for (i, e) in pool.into_iter().enumerate() {
        if held.binary_search(&i).is_ok() {
            scored.push(e);
        } else {
            explain.push(e);
        }
    }
    Some(InputPool {
        explain,
        scored,
        scored_on_shown: false,
    })
}

/// Draws one explainer prompt's excerpts: indices into `pool`, 10–20 of them (all when fewer),
/// in random order, always including index 0 (the strongest record).
pub fn sample_indices(pool_len: usize, opts: &PoolOptions, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let (lo, hi) = (
        opts.per_prompt.0.max(1),
        opts.per_prompt.1.max(opts.per_prompt.0).max(1),
    );
    let n = rng.random_range(lo..=hi).min(pool_len);
    let mut idx: Vec<usize> = (0..pool_len).collect();
    idx.shuffle(rng);
    idx.truncate(n);
    if !idx.contains(&0) && n > 0 {
        idx[0] = 0;
    }
    idx.shuffle(rng);
    idx
}

/// Output-side scores of one record: its target shares as integers in −10..10, scaled by the
/// cluster's largest |share| (`scale`).
pub fn output_scores(outputs: &[f32], scale: f32) -> Vec<i32> {
    outputs
        .iter()
        .map(|&x| {
            if scale > 0.0 {
                (10.0 * x / scale).round().clamp(-10.0, 10.0) as i32
            } else {
                0
            }
        })
        .collect()
}

/// The output-side pool: (record index, integer scores), top records by largest |score|,
/// present records only; empty when the cluster never contributes to a target.
pub fn output_pool(records: &[ActivationRecord], opts: &PoolOptions) -> Vec<(usize, Vec<i32>)> {
    let scale = records
        .iter()
        .filter(|r| r.present)
        .flat_map(|r| r.outputs.iter().map(|x| x.abs()))
        .fold(0.0, f32::max);
    if scale <= 0.0 {
        return Vec::new();
    }
    let mut pool: Vec<(usize, Vec<i32>)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.present && !r.targets.is_empty())
        .map(|(i, r)| (i, output_scores(&r.outputs, scale)))
        .collect();
    let key = |s: &[i32]| s.iter().map(|x| x.abs()).max().unwrap_or(0);
    pool.sort_by(|a, b| {
        key(&b.1)
            .cmp(&key(&a.1))
            .then(records[a.0].prompt_id.cmp(&records[b.0].prompt_id))
    });
    pool.truncate(opts.top_outputs);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, present: bool, toks: &[u32], values: &[f32]) -> ActivationRecord {
        ActivationRecord {
            prompt_id: id,
            label: None,
            prompt: String::new(),
            present,
            token_ids: toks.to_vec(),
            tokens: toks.iter().map(|t| format!(" t{t}")).collect(),
            positions: (0..toks.len() as u32).collect(),
            values: values.to_vec(),
            target_ids: vec![7],
            targets: vec![" x".into()],
            outputs: vec![values.iter().sum()],
            attribution: 0.0,
            abs_attribution: 0.0,
        }
    }

    #[test]
    fn sign_filters() {
        assert_eq!(Sign::Pos.filter(-2.0), 0.0);
        assert_eq!(Sign::Pos.filter(2.0), 2.0);
        assert_eq!(Sign::Neg.filter(-2.0), 2.0);
        assert_eq!(Sign::Neg.filter(2.0), 0.0);
    }

    #[test]
    fn pool_orders_top_dedups_and_holds_out_without_the_strongest() {
        let mut records: Vec<ActivationRecord> = (0..12)
            .map(|i| rec(i, true, &[i as u32, 100], &[i as f32 * 0.1, -0.05]))
            .collect();
        // A duplicate of record 11's tokens and an absent prompt.
        records.push(rec(12, true, &[11, 100], &[0.01, 0.0]));
        records.push(rec(13, false, &[50, 51], &[0.0, 0.0]));
        let opts = PoolOptions::default();
        let mut rng = rng_for(1, &["t"], 0);
        let pool = input_pool(&records, Sign::Pos, &opts, &mut rng).unwrap();
        assert_eq!(pool.explain[0].record, 11, "strongest first");
        assert!(!pool.scored_on_shown);
        assert!(!pool.scored.is_empty());
        let all: Vec<usize> = pool
            .explain
            .iter()
            .chain(&pool.scored)
            .map(|e| e.record)
            .collect();
        assert!(!all.contains(&12), "duplicate token ids were kept: {all:?}");
        // Record 0 has no positive value: only as a floored negative, if drawn.
        for e in pool.explain.iter().chain(&pool.scored) {
            if e.record == 0 || e.record == 13 {
                assert!(e.negative);
                assert!(e.acts.iter().all(|&a| a >= NEGATIVE_FLOOR));
            }
        }
        // Neg side: every present record has -0.05 at the second token.
        let neg = input_pool(&records, Sign::Neg, &opts, &mut rng).unwrap();
        assert!((neg.explain[0].acts[1] - 0.05).abs() < 1e-6);
        // No value of a sign at all: no pool.
        let only_pos: Vec<_> = (0..3).map(|i| rec(i, true, &[i as u32], &[1.0])).collect();
        assert!(input_pool(&only_pos, Sign::Neg, &opts, &mut rng).is_none());
    }

    #[test]
    fn the_held_out_set_has_a_top_record_when_there_is_a_second_one() {
        // Two present records among 30 absent prompts: whatever the seed, the held-out set
        // holds the second top record (the first is never held out).
        let mut records: Vec<ActivationRecord> = (0..30)
            .map(|i| rec(i, false, &[i as u32], &[0.0]))
            .collect();
        records.push(rec(30, true, &[30], &[1.0]));
        records.push(rec(31, true, &[31], &[0.5]));
        let opts = PoolOptions::default();
        for seed in 0..20 {
            let mut rng = rng_for(seed, &["h"], 0);
            let pool = input_pool(&records, Sign::Pos, &opts, &mut rng).unwrap();
            assert_eq!(pool.explain[0].record, 30);
            assert!(pool.scored.iter().any(|e| e.record == 31), "seed {seed}");
        }
    }

    #[test]
    fn samples_hold_the_strongest_and_respect_sizes() {
        let opts = PoolOptions::default();
        for s in 0..20 {
            let mut rng = rng_for(3, &["s"], s);
            let idx = sample_indices(40, &opts, &mut rng);
            assert!((10..=20).contains(&idx.len()));
            assert!(idx.contains(&0));
            let mut d = idx.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), idx.len());
        }
        let mut rng = rng_for(3, &["s"], 0);
        assert_eq!(sample_indices(3, &opts, &mut rng).len(), 3);
    }

    #[test]
    fn output_scores_are_integers_scaled_by_the_largest_share() {
        assert_eq!(output_scores(&[0.5, -0.25, 0.0], 0.5), vec![10, -5, 0]);
        assert_eq!(output_scores(&[0.04], 0.5), vec![1]);
        assert_eq!(output_scores(&[0.3], 0.0), vec![0]);
    }
}
