//! Row-normalised views of the one dense adjacency, computed on the fly.
//!
//! Why: only feature and logit rows of an attribution graph are non-zero, and a long prompt
//! has tens of thousands of error and token nodes, so the dense `n × n` adjacency is already
//! the largest object in memory (12 GB at 4k tokens × 12 layers). circuit-tracer's pruning
//! makes several more dense copies (normalised, masked, edge scores) and runs out of memory at
//! ~2.3k tokens (its issue #92). Here the normalised, optionally masked matrix is never stored:
//! each entry is `|a[i,j]| / s_i`, recomputed where it is read, over the non-zero rows only.
//!
//! Every float operation, and its order within a row or column, is the same as the dense
//! reference (`normalize` then `influence` in `prune.rs`), so results are bitwise identical: a
//! skipped entry is one whose dense contribution was `+0.0` or `-0.0`, which adds nothing.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// At most this many columns per task in the influence product; each task walks every row in
/// order, so each column's sum keeps the dense reference's order whatever the split.
const COL_CHUNK: usize = 2048;

/// Columns per task: at least four tasks per thread where the graph allows, so that a graph
/// a little over one chunk wide (2,370 nodes at 23 tokens) does not leave one thread with
/// nearly all the columns.
fn col_chunk(n: usize) -> usize {
    n.div_ceil(4 * rayon::current_num_threads())
        .clamp(64, COL_CHUNK)
}

/// The non-zero rows of `normalize(mask(a))`, where `mask` zeroes every entry whose row or
/// column is not kept.
pub(crate) struct NormRows<'a> {
    a: &'a [f32],
    n: usize,
    keep: Option<&'a [bool]>,
    /// `(row, max(Σ_j |a[row, j]| over kept j, 1e-10))` for the kept rows with a non-zero sum,
    /// ascending.
    rows: Vec<(usize, f32)>,
}

impl<'a> NormRows<'a> {
    /// Scans `a` once (in parallel over rows) for the row sums.
    pub(crate) fn new(a: &'a [f32], n: usize, keep: Option<&'a [bool]>) -> Self {
        debug_assert_eq!(a.len(), n * n);
        let rows = (0..n)
            .into_par_iter()
            .filter(|&i| keep.is_none_or(|k| k[i]))
            .filter_map(|i| {
                let row = &a[i * n..(i + 1) * n];
                let s: f32 = match keep {
                    None => row.iter().map(|x| x.abs()).sum(),
                    Some(k) => row
                        .iter()
                        .zip(k)
                        .map(|(x, &kj)| if kj { x.abs() } else { 0.0 })
                        .sum(),
                };
                (s > 0.0).then_some((i, s.max(1e-10)))
            })
            .collect();
        NormRows { a, n, keep, rows }
    }

    /// The non-zero rows and their normalisers.
    pub(crate) fn rows(&self) -> &[(usize, f32)] {
        &self.rows
    }

    /// Row `i` of the masked adjacency, restricted to `cols`: masked entries read as 0.
    fn masked(&self, i: usize, cols: std::ops::Range<usize>) -> impl Iterator<Item = f32> + '_ {
        let row = &self.a[i * self.n + cols.start..i * self.n + cols.end];
        let keep = self.keep.map(|k| &k[cols]);
        row.iter().enumerate().map(move |(j, &v)| match keep {
            Some(k) if !k[j] => 0.0,
            _ => v,
        })
    }

    /// Calls `f(j, m_ij)` for every column of row `(i, s)` in ascending order, with the
    /// normalised entry `|a_ij| / s` (0 where masked).
    pub(crate) fn for_each_in_row(&self, (i, s): (usize, f32), mut f: impl FnMut(usize, f32)) {
        for (j, v) in self.masked(i, 0..self.n).enumerate() {
            f(j, v.abs() / s);
        }
    }

    /// `Σ_{k≥1} wᵀ Mᵏ` of the normalised masked matrix, as the dense `influence`.
    pub(crate) fn influence(&self, w: &[f32], max_iter: usize) -> Result<Vec<f32>> {
        let n = self.n;
        let mut cur = w.to_vec();
        let mut total = vec![0.0f32; n];
        let mut next = vec![0.0f32; n];
        for _ in 0..max_iter {
            let active: Vec<(usize, f32, f32)> = self
                .rows
                .iter()
                .filter(|&&(i, _)| cur[i] != 0.0)
                .map(|&(i, s)| (i, s, cur[i]))
                .collect();
            let width = col_chunk(n);
            next.par_chunks_mut(width)
                .enumerate()
                .for_each(|(chunk, out)| {
                    out.fill(0.0);
                    let cols = chunk * width..chunk * width + out.len();
                    for &(i, s, c) in &active {
                        for (x, v) in out.iter_mut().zip(self.masked(i, cols.clone())) {
                            *x += c * (v.abs() / s);
                        }
                    }
                });
            if next.iter().all(|&x| x == 0.0) {
                return Ok(total);
            }
            for (t, x) in total.iter_mut().zip(&next) {
                *t += x;
            }
            std::mem::swap(&mut cur, &mut next);
        }
        Err(Error::NoConvergence(max_iter))
    }
}
