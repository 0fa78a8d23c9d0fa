//! Normalised spectral embedding and seeded k-means++ (reference §5, `spectral_cluster`).
//!
//! 1. `A = max(S, 0)` with `diag(A) = 1`; `d = A·1`; `M = D^{-1/2} A D^{-1/2}` with
//!    `diag(M) = 1`.
//! 2. The eigenvectors of M's k largest eigenvalues (and the k+1-th eigenvalue, for the
//!    eigengap). Up to [`DENSE_LIMIT`] units a dense symmetric eigendecomposition is used; above
//!    it, faer's matrix-free Krylov–Schur solver, which only needs products with M, on the
//!    shifted operator `(M + I)/2`: its eigenvalues lie in [0, 1], so "largest magnitude" (what
//!    the solver finds) is "largest" (what spectral clustering needs).
//! 3. Rows L2-normalised, then k-means++ with `n_init` restarts from a `ChaCha8Rng` seeded
//!    with `seed`; the run with the lowest inertia wins. Same input and seed, same labels.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::matrix_free::eigen::{
    partial_self_adjoint_eigen, partial_self_adjoint_eigen_scratch, PartialEigenParams,
};
use faer::{Col, Mat, Par, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::similarity::Similarity;

/// Above this many units the partial (Krylov–Schur) eigensolver replaces the dense one.
pub const DENSE_LIMIT: usize = 1500;

/// The spectral embedding of a similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Rows: units; columns: the k leading eigenvectors, each row L2-normalised. Row-major.
    pub rows: Vec<f64>,
    /// Number of columns (k).
    pub dim: usize,
    /// The largest eigenvalues of M (k+1, or as many as asked for), descending (fewer when n
    /// is smaller).
    pub eigenvalues: Vec<f64>,
    /// `"dense"` or `"partial"`.
    pub solver: &'static str,
}

/// Normalised spectral embedding in `k` dimensions (dense solver up to [`DENSE_LIMIT`] units).
pub fn embed(s: &Similarity, k: usize, seed: u64) -> Result<Embedding> {
    embed_with(s, k, seed, s.n > DENSE_LIMIT)
}

/// [`embed`] with the solver chosen by the caller (`partial`: Krylov–Schur), so that tests
/// can check both solvers agree.
pub fn embed_with(s: &Similarity, k: usize, seed: u64, partial_solver: bool) -> Result<Embedding> {
    embed_eigs(s, k, k + 1, seed, partial_solver)
}

/// [`embed_with`] computing `n_eigs` (at least k + 1) leading eigenvalues, so that the
/// eigengap can be searched over a range of k wider than the one clustered.
pub fn embed_eigs(
    s: &Similarity,
    k: usize,
    n_eigs: usize,
    seed: u64,
    partial_solver: bool,
) -> Result<Embedding> {
    let n = s.n;
    if k == 0 || k > n {
        return Err(Error::Input(format!(
            "cannot make {k} clusters of {n} units (need 1 ≤ k ≤ units)"
        )));
    }
    let deg: Vec<f64> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        1.0
                    } else {
                        s.get(i, j).max(0.0) as f64
                    }
                })
                .sum::<f64>()
        })
        .collect();
    let inv: Vec<f64> = deg.iter().map(|d| 1.0 / d.sqrt()).collect();
    let want = n_eigs.max(k + 1).min(n);
    // The Krylov solver needs a subspace larger than the wanted eigenpairs.
    let dense = !partial_solver || n < 2 * want + 2;
    // Dense: M itself. Partial: (M + I)/2.
    let m = Mat::<f64>::from_fn(n, n, |i, j| {
        let v = if i == j {
            1.0
        } else {
            s.get(i, j).max(0.0) as f64 * inv[i] * inv[j]
        };
        if dense {
            v
        } else if i == j {
            1.0
        } else {
            v / 2.0
        }
    });
    let (vals, vecs): (Vec<f64>, Mat<f64>) = if dense {
        let evd = m
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::Eigen(format!("{e:?}")))?;
        // Ascending eigenvalues: take the last `want`, reversed.
        let s = evd.S().column_vector();
        let u = evd.U();
        let idx: Vec<usize> = (0..want).map(|r| n - 1 - r).collect();
        (
            idx.iter().map(|&c| s[c]).collect(),
            Mat::from_fn(n, want, |i, c| u[(i, idx[c])]),
        )
    } else {
        partial(&m, want, seed)?
    };
    let mut rows = vec![0f64; n * k];
    for i in 0..n {
        let row = &mut rows[i * k..(i + 1) * k];
        for (c, r) in row.iter_mut().enumerate() {
            *r = vecs[(i, c)];
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    Ok(Embedding {
        rows,
        dim: k,
        eigenvalues: vals,
        solver: if dense { "dense" } else { "partial" },
    })
}

/// Top `want` eigenpairs of the shifted operator `b = (M + I)/2`, mapped back to M's eigenvalues.
fn partial(b: &Mat<f64>, want: usize, seed: u64) -> Result<(Vec<f64>, Mat<f64>)> {
    let n = b.nrows();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_e16e);
    let mut v0 = Col::<f64>::from_fn(n, |_| rng.random::<f64>() - 0.5);
    let norm = v0.norm_l2();
    v0 /= norm;
    let params = PartialEigenParams {
        min_dim: (2 * want).max(32).min(n),
        max_dim: (4 * want).max(64).min(n),
        max_restarts: 2000,
        ..Default::default()
    };
    let par = Par::rayon(0);
    let mut mem = MemBuffer::new(partial_self_adjoint_eigen_scratch(b, want, par, params));
    let mut vecs = Mat::<f64>::zeros(n, want);
    let mut vals = vec![0f64; want];
    let info = partial_self_adjoint_eigen(
        vecs.as_mut(),
        &mut vals,
        b,
        v0.as_ref(),
        1e-10,
        par,
        MemStack::new(&mut mem),
        params,
    );
    if info.n_converged_eigen < want {
        return Err(Error::Eigen(format!(
            "Krylov–Schur converged on {} of {want} eigenpairs of a {n}×{n} matrix",
            info.n_converged_eigen
        )));
    }
    let mut order: Vec<usize> = (0..want).collect();
    order.sort_by(|&a, &c| vals[c].total_cmp(&vals[a]).then(a.cmp(&c)));
    Ok((
        order.iter().map(|&c| 2.0 * vals[c] - 1.0).collect(),
        Mat::from_fn(n, want, |i, c| vecs[(i, order[c])]),
    ))
}

/// Result of [`kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Cluster of each row, `0..k`.
    pub labels: Vec<usize>,
    /// Σ squared distance to the assigned centre.
    pub inertia: f64,
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++ with `n_init` seeded restarts on `n` rows of `dim` columns (row-major).
pub fn kmeans(x: &[f64], dim: usize, k: usize, n_init: usize, seed: u64) -> KMeans {
    let n = x.len() / dim.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<KMeans> = None;
    for _ in 0..n_init.max(1) {
        let run = kmeans_once(x, n, dim, k, &mut rng);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.unwrap_or(KMeans {
        labels: vec![0; n],
        inertia: 0.0,
    })
}

fn kmeans_once(x: &[f64], n: usize, dim: usize, k: usize, rng: &mut ChaCha8Rng) -> KMeans {
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    // k-means++ seeding: each next centre drawn with probability ∝ D².
    let mut centres: Vec<f64> = Vec::with_capacity(k * dim);
    centres.extend_from_slice(row(rng.random_range(0..n)));
    let mut d2: Vec<f64> = (0..n).map(|i| dist2(row(i), &centres[..dim])).collect();
    while centres.len() < k * dim {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, d) in d2.iter().enumerate() {
                if r < *d {
                    pick = i;
                    break;
                }
                r -= d;
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        let start = centres.len();
        centres.extend_from_slice(row(pick));
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(dist2(row(i), &centres[start..start + dim]));
        }
    }
    // Lloyd iterations.
    let mut labels = vec![usize::MAX; n];
    let mut inertia = 0.0;
    for _ in 0..300 {
        let mut changed = false;
        inertia = 0.0;
        for (i, label) in labels.iter_mut().enumerate() {
            let (mut bc, mut bd) = (0, f64::INFINITY);
            for c in 0..k {
                let d = dist2(row(i), &centres[c * dim..(c + 1) * dim]);
                if d < bd {
                    (bc, bd) = (c, d);
                }
            }
            inertia += bd;
            if *label != bc {
                *label = bc;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[labels[i]] += 1;
            sums[labels[i] * dim..(labels[i] + 1) * dim]
                .iter_mut()
                .zip(row(i))
                .for_each(|(s, v)| *s += v);
        }
        for c in 0..k {
            if counts[c] > 0 {
                for t in 0..dim {
                    centres[c * dim + t] = sums[c * dim + t] / counts[c] as f64;
                }
            } else {
                // Empty cluster: restart it at the row farthest from its centre.
                let far = (0..n)
                    .max_by(|&a, &b| {
                        let da = dist2(row(a), &centres[labels[a] * dim..(labels[a] + 1) * dim]);
                        let db = dist2(row(b), &centres[labels[b] * dim..(labels[b] + 1) * dim]);
                        da.total_cmp(&db).then(b.cmp(&a))
                    })
                    .unwrap_or(0);
                centres[c * dim..(c + 1) * dim].copy_from_slice(row(far));
            }
        }
    }
    KMeans { labels, inertia }
}
