//! Multi-view unit similarity (reference §5, "per-CI similarity").
//!
//! For views v ∈ {input, output}: `S_v(i,j) = mean over the prompts where both i and j occur
//! of cos(x^v_i, x^v_j)` (0 if they never co-occur), where x are the normalised views of
//! [`crate::profiles`]. A view counts on a prompt only when both units' vectors for it are
//! non-zero. The views are then combined:
//! - [`Combine::Harmonic`]: `a = max(S_in, 0)`, `b = max(S_out, 0)`, `S = 2ab/(a+b)` (0 when
//!   a+b = 0); if only one view was ever shared, that view. Two units are similar only if they
//!   read the same input positions **and** write the same outputs, on the same prompts.
//! - [`Combine::Mean`]: both views' cosine sums over both views' overlap counts.
//!
//! Optionally each prompt is weighted by `sqrt(|A_i||A_j|)` (the units' summed attributions on
//! that prompt), so pairs that matter on a prompt count for more.
//!
//! Cost: Σ over prompts of n_ℓ²·(T_ℓ + k) for the dot products plus an n×n accumulator (four
//! f32 matrices), so memory grows as 16·n² bytes: 400 MB at n = 5,000.

use serde::{Deserialize, Serialize};

use crate::profiles::Profiles;

/// How the two views' similarities are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Harmonic mean of the clipped views (the reference's default, used in every case study).
    #[default]
    Harmonic,
    /// Pooled mean of both views' cosines.
    Mean,
}

impl std::str::FromStr for Combine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "harmonic" => Ok(Combine::Harmonic),
            "mean" => Ok(Combine::Mean),
            _ => Err(format!("unknown combination {s:?} (harmonic or mean)")),
        }
    }
}

/// Options of [`similarity`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SimilarityOptions {
    /// How the views are combined.
    pub combine: Combine,
    /// Weight each prompt by `sqrt(|A_i||A_j|)`.
    pub weight_by_attribution: bool,
}

/// A dense symmetric n×n similarity, row-major, diagonal 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Similarity {
    /// Number of units.
    pub n: usize,
    /// The combined similarity, row-major.
    pub values: Vec<f32>,
}

impl Similarity {
    /// `S(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.values[i * self.n + j]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn nonzero(a: &[f32]) -> bool {
    a.iter().any(|&v| v != 0.0)
}

/// The combined similarity of all units of `p`.
pub fn similarity(p: &Profiles, opts: &SimilarityOptions) -> Similarity {
    let n = p.units.len();
    // Upper-triangle accumulators (i < j, stored at i*n+j); mirrored at the end.
    let mut sum_in = vec![0f32; n * n];
    let mut sum_out = vec![0f32; n * n];
    let mut w_in = vec![0f32; n * n];
    let mut w_out = vec![0f32; n * n];
    for prompt in &p.prompts {
        let us = &prompt.units;
        let has_in: Vec<bool> = us.iter().map(|u| nonzero(&u.input)).collect();
        let has_out: Vec<bool> = us.iter().map(|u| nonzero(&u.output)).collect();
        for a in 0..us.len() {
            for b in a + 1..us.len() {
                let (x, y) = (&us[a], &us[b]);
                // Units within a prompt are in unit order, so x.unit < y.unit.
                let (i, j) = if x.unit < y.unit {
                    (x.unit, y.unit)
                } else {
                    (y.unit, x.unit)
                };
                let w = if opts.weight_by_attribution {
                    (x.attribution.abs() * y.attribution.abs()).sqrt()
                } else {
                    1.0
                };
                let at = i * n + j;
                if has_in[a] && has_in[b] {
                    sum_in[at] += w * dot(&x.input, &y.input);
                    w_in[at] += w;
                }
                if has_out[a] && has_out[b] {
                    sum_out[at] += w * dot(&x.output, &y.output);
                    w_out[at] += w;
                }
            }
        }
    }
    // Reuse `sum_in` for the result.
    let mut values = sum_in;
    for i in 0..n {
        values[i * n + i] = 1.0;
        for j in i + 1..n {
            let at = i * n + j;
            let (si, wi, so, wo) = (values[at], w_in[at], sum_out[at], w_out[at]);
            let s = match opts.combine {
                Combine::Mean => {
                    if wi + wo > 0.0 {
                        (si + so) / (wi + wo)
                    } else {
                        0.0
                    }
                }
                Combine::Harmonic => match (wi > 0.0, wo > 0.0) {
                    (true, true) => {
                        let a = (si / wi).max(0.0);
                        let b = (so / wo).max(0.0);
                        if a + b > 0.0 {
                            2.0 * a * b / (a + b)
                        } else {
                            0.0
                        }
                    }
                    (true, false) => si / wi,
                    (false, true) => so / wo,
                    (false, false) => 0.0,
                },
            };
            values[at] = s;
            values[j * n + i] = s;
        }
    }
    Similarity { n, values }
}
