//! The streaming pass: per unit, a bounded top-k heap of contexts, per-interval samples, the
//! active count and a histogram. Memory is `O(units × (k + bins × per_bin) × window)`, never
//! the corpus size.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Histogram bins: `floor(log2 a)` from `2^MIN_EXP` up, clamped at both ends. Log bins need no
/// range known in advance, so one pass suffices and a resumed run bins exactly alike.
pub const N_BINS: usize = 20;
/// Lower edge exponent of the first bin.
pub const MIN_EXP: i32 = -12;

/// Histogram bin of an active (positive) activation.
pub fn bin_of(a: f32) -> usize {
    let e = a.log2().floor() as i32 - MIN_EXP;
    e.clamp(0, N_BINS as i32 - 1) as usize
}

/// Lower edge of bin `b` (the first bin also holds everything below it).
pub fn bin_lower(b: usize) -> f32 {
    2f32.powi(b as i32 + MIN_EXP)
}

/// Settings of one collection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CollectConfig {
    /// Contexts kept per unit (its top activations).
    pub k: usize,
    /// Tokens kept on each side of the maximum (the example window is `2 × window + 1` at most).
    pub window: usize,
    /// Contexts kept per histogram bin (the interval samples).
    pub per_bin: usize,
}

/// One context of a unit: where it peaks, how strongly, and the window around the peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Sequence number in the corpus stream.
    pub seq: u64,
    /// Position of the peak in the sequence.
    pub pos: u32,
    /// The unit's maximum activation in the sequence.
    pub act: f32,
    /// First position of the window.
    pub start: u32,
    /// Token ids of the window.
    pub tokens: Vec<u32>,
    /// The unit's activation at each window token.
    pub acts: Vec<f32>,
}

impl Example {
    /// The ranking of examples: higher activation first, then earlier sequence, then earlier
    /// position, so ties break the same on every run.
    pub fn rank(&self, other: &Self) -> Ordering {
        other
            .act
            .total_cmp(&self.act)
            .then(self.seq.cmp(&other.seq))
            .then(self.pos.cmp(&other.pos))
    }
}

/// Heap entry ordered so that the *worst* kept example is on top.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Worst(Example);

impl PartialEq for Worst {
    fn eq(&self, o: &Self) -> bool {
        self.0.rank(&o.0) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.rank(&o.0)
    }
}

/// Everything kept about one unit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnitStats {
    top: BinaryHeap<Worst>,
    /// Per histogram bin, the first `per_bin` contexts whose peak falls in it.
    pub samples: Vec<Vec<Example>>,
    /// Tokens where the unit is active (> 0).
    pub n_active: u64,
    /// Active tokens per bin.
    pub histogram: Vec<u64>,
    /// Largest activation seen (0 if never active).
    pub max: f32,
}

impl UnitStats {
    /// The top contexts, best first.
    pub fn top(&self) -> Vec<Example> {
        let mut v: Vec<Example> = self.top.iter().map(|w| w.0.clone()).collect();
        v.sort_by(Example::rank);
        v
    }
}

/// The collector: feed it sequences of activations, read the per-unit statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Collector {
    /// Settings.
    pub config: CollectConfig,
    /// Per unit.
    pub units: Vec<UnitStats>,
    /// Tokens seen.
    pub n_tokens: u64,
    /// Sequences seen.
    pub n_seqs: u64,
}

impl Collector {
    /// An empty collector for `n_units` units.
    pub fn new(n_units: usize, config: CollectConfig) -> Self {
        let unit = UnitStats {
            samples: vec![Vec::new(); N_BINS],
            histogram: vec![0; N_BINS],
            ..Default::default()
        };
        Collector {
            config,
            units: vec![unit; n_units],
            n_tokens: 0,
            n_seqs: 0,
        }
    }

    /// Adds one sequence: `tokens` `[T]` and its activations `acts` `[T, units]` row-major.
    /// Each sequence is one candidate context per unit, at the unit's peak (the first one on ties).
    pub fn add_sequence(&mut self, tokens: &[u32], acts: &[f32]) -> Result<()> {
        self.add_sequence_skipping(tokens, acts, &|_| false)
    }

    /// [`Collector::add_sequence`] with the positions whose token `skip` names left out: they
    /// count neither as tokens nor as activations (density, histogram, peaks), and read as 0 in
    /// the example windows that show them. For special tokens (the BOS between packed
    /// documents), which are control positions, not content.
    pub fn add_sequence_skipping(
        &mut self,
        tokens: &[u32],
        acts: &[f32],
        skip: &dyn Fn(u32) -> bool,
    ) -> Result<()> {
        let t = tokens.len();
        let u = self.units.len();
        if acts.len() != t * u {
            return Err(Error::Shape(format!(
                "expected {t} tokens × {u} units = {} values, got {}",
                t * u,
                acts.len()
            )));
        }
        let seq = self.n_seqs;
        let cfg = self.config;
        let content: Vec<bool> = tokens.iter().map(|&tok| !skip(tok)).collect();
        let act_at = |p: usize, j: usize| if content[p] { acts[p * u + j] } else { 0.0 };
        for (j, st) in self.units.iter_mut().enumerate() {
            let mut best: Option<(usize, f32)> = None;
            for p in 0..t {
                let a = act_at(p, j);
                if a > 0.0 {
                    st.n_active += 1;
                    st.histogram[bin_of(a)] += 1;
                    if best.is_none_or(|(_, b)| a > b) {
                        best = Some((p, a));
                    }
                }
            }
            let Some((pos, act)) = best else { continue };
            st.max = st.max.max(act);
            let bin = bin_of(act);
            let enters_top = cfg.k > 0
                && (st.top.len() < cfg.k
                    || st.top.peek().is_some_and(|w| {
                        // A new context ranks after every kept one on ties (higher `seq`).
                        act > w.0.act
                    }));
            let enters_bin = st.samples[bin].len() < cfg.per_bin;
            if !enters_top && !enters_bin {
                continue;
            }
            let start = pos.saturating_sub(cfg.window);
            let end = (pos + cfg.window + 1).min(t);
            let ex = Example {
                seq,
                pos: pos as u32,
                act,
                start: start as u32,
                tokens: tokens[start..end].to_vec(),
                acts: (start..end).map(|p| act_at(p, j)).collect(),
            };
            if enters_bin {
                st.samples[bin].push(ex.clone());
            }
            if enters_top {
                st.top.push(Worst(ex));
                if st.top.len() > cfg.k {
                    st.top.pop();
                }
            }
        }
        self.n_tokens += content.iter().filter(|&&c| c).count() as u64;
        self.n_seqs += 1;
        Ok(())
    }

    /// Saves the whole state (for resuming), atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Shape(e.to_string()))?;
        crate::write::write_atomic(path, &bytes)
    }

    /// Loads a state saved by [`Collector::save`].
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            reason: format!("not a collector state: {e}"),
        })
    }

    /// Fraction of tokens where unit `j` is active.
    pub fn density(&self, j: usize) -> f64 {
        if self.n_tokens == 0 {
            0.0
        } else {
            self.units[j].n_active as f64 / self.n_tokens as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic pseudo-random source (xorshift), enough for test data.
    fn data(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Coarse values so that ties actually happen; about half are inactive.
                let v = (s % 16) as f32 / 4.0 - 2.0;
                v.max(0.0)
            })
            .collect()
    }

    /// Brute force: every (sequence, unit) peak, sorted by the documented ranking, first k.
    #[test]
    fn top_k_and_density_equal_brute_force() {
        let (units, t, n_seq) = (7, 9, 40);
        let cfg = CollectConfig {
            k: 5,
            window: 2,
            per_bin: 3,
        };
        let mut c = Collector::new(units, cfg);
        let mut all: Vec<Vec<Example>> = vec![Vec::new(); units];
        let mut active = vec![0u64; units];
        for s in 0..n_seq {
            let tokens: Vec<u32> = (0..t as u32).map(|p| p + 100 * s as u32).collect();
            let acts = data(s as u64 + 1, t * units);
            c.add_sequence(&tokens, &acts).unwrap();
            for j in 0..units {
                let col: Vec<f32> = (0..t).map(|p| acts[p * units + j]).collect();
                active[j] += col.iter().filter(|&&a| a > 0.0).count() as u64;
                let max = col.iter().cloned().fold(0.0f32, f32::max);
                if max > 0.0 {
                    let pos = col.iter().position(|&a| a == max).unwrap();
                    let (lo, hi) = (pos.saturating_sub(2), (pos + 3).min(t));
                    all[j].push(Example {
                        seq: s as u64,
                        pos: pos as u32,
                        act: max,
                        start: lo as u32,
                        tokens: tokens[lo..hi].to_vec(),
                        acts: col[lo..hi].to_vec(),
                    });
                }
            }
        }
        for j in 0..units {
            let mut want = all[j].clone();
            want.sort_by(Example::rank);
            want.truncate(5);
            assert_eq!(c.units[j].top(), want, "unit {j}");
            assert_eq!(c.units[j].n_active, active[j]);
            assert_eq!(c.density(j), active[j] as f64 / (t * n_seq) as f64);
            assert_eq!(c.units[j].histogram.iter().sum::<u64>(), active[j]);
        }
    }

    /// A skipped position is invisible: with the largest activation in the sequence it is
    /// still not the peak, it is not a token of the density, and windows show it as 0.
    #[test]
    fn skipped_tokens_count_nowhere() {
        let cfg = CollectConfig {
            k: 2,
            window: 2,
            per_bin: 1,
        };
        let mut c = Collector::new(1, cfg);
        // Tokens 9 (skipped) 5 6; unit 0 fires 3.0 on the skipped one, 1.0 and 0.5 after it.
        c.add_sequence_skipping(&[9, 5, 6], &[3.0, 1.0, 0.5], &|t| t == 9)
            .unwrap();
        assert_eq!(c.n_tokens, 2);
        assert_eq!(c.units[0].n_active, 2);
        assert_eq!(c.density(0), 1.0);
        let top = c.units[0].top();
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].pos, top[0].act), (1, 1.0));
        assert_eq!(top[0].tokens, vec![9, 5, 6]);
        assert_eq!(top[0].acts, vec![0.0, 1.0, 0.5]);
        assert_eq!(c.units[0].max, 1.0);
        // Without skipping, the same sequence peaks on it.
        let mut plain = Collector::new(1, cfg);
        plain.add_sequence(&[9, 5, 6], &[3.0, 1.0, 0.5]).unwrap();
        assert_eq!(plain.units[0].top()[0].pos, 0);
        assert_eq!(plain.n_tokens, 3);
    }

    /// Stopping after any sequence, saving, loading and going on gives the same state as one
    /// uninterrupted pass (what a resumed `adag features` relies on).
    #[test]
    fn save_load_resume_is_identical() {
        let cfg = CollectConfig {
            k: 3,
            window: 1,
            per_bin: 2,
        };
        let seqs: Vec<Vec<f32>> = (0..12).map(|s| data(s + 7, 6 * 4)).collect();
        let tokens: Vec<u32> = (0..6).collect();
        let mut whole = Collector::new(4, cfg);
        for a in &seqs {
            whole.add_sequence(&tokens, a).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut part = Collector::new(4, cfg);
        for a in &seqs[..5] {
            part.add_sequence(&tokens, a).unwrap();
        }
        part.save(&p).unwrap();
        let mut resumed = Collector::load(&p).unwrap();
        for a in &seqs[5..] {
            resumed.add_sequence(&tokens, a).unwrap();
        }
        assert_eq!(
            serde_json::to_string(&resumed).unwrap(),
            serde_json::to_string(&whole).unwrap()
        );
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let mut c = Collector::new(
            3,
            CollectConfig {
                k: 1,
                window: 1,
                per_bin: 1,
            },
        );
        let e = c.add_sequence(&[1, 2], &[0.0; 5]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "activations: expected 2 tokens × 3 units = 6 values, got 5"
        );
    }

    #[test]
    fn bins() {
        assert_eq!(bin_of(1.0), 12);
        assert_eq!(bin_of(1.5), 12);
        assert_eq!(bin_of(2.0), 13);
        assert_eq!(bin_of(1e-9), 0);
        assert_eq!(bin_of(1e9), N_BINS - 1);
        assert_eq!(bin_lower(12), 1.0);
    }
}
