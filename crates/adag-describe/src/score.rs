//! Scores: Pearson's r between a simulation and the truth over every token (or target) of
//! every held-out record, pooled (reference §6 phases 3–4).

/// Pearson's correlation of `x` and `y` (same length), in f64. `None` when fewer than two
/// points or either side is constant (r is undefined there; the reference's NaN).
pub fn pearson(x: &[f32], y: &[f32]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let n = x.len() as f64;
    let mx = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a as f64 - mx, b as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    r.is_finite().then_some(r.clamp(-1.0, 1.0))
}

/// Significance of a score r over n pairs: the two-sided p-value (Student's t) and the 95%
/// confidence interval by Fisher's z (`tanh(atanh r ± 1.96/√(n−3))`). Tokens of one record
/// are not independent, so both are optimistic: a score whose interval still contains 0 is
/// noise. `None` when n < 4.
pub fn significance(r: f64, n: usize) -> Option<(f64, (f64, f64))> {
    if n < 4 || !r.is_finite() {
        return None;
    }
    let p = adag_analysis::stats::p_value(r, n);
    let z = r.clamp(-0.999_999_999, 0.999_999_999).atanh();
    let half = 1.959_963_984_540_054 / ((n - 3) as f64).sqrt();
    Some((p, ((z - half).tanh(), (z + half).tanh())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_hand_computed() {
        // x = 1,2,3,4; y = 2,1,4,3: mean 2.5 each, Σdxdy = 3, Σdx² = Σdy² = 5 → r = 0.6.
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]).unwrap();
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        // Invariant to positive affine maps, flips sign with negative ones.
        let r2 = pearson(&[10.0, 20.0, 30.0, 40.0], &[-4.0, -2.0, -8.0, -6.0]).unwrap();
        assert!((r2 + 0.6).abs() < 1e-12, "{r2}");
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
        assert_eq!(pearson(&[1.0, 2.0], &[1.0]), None);
    }
}

#[cfg(test)]
mod significance_tests {
    use super::significance;

    /// r = 0 on n = 7: p = 1 and the interval is ±tanh(1.96/2); a strong r on many pairs is
    /// significant and its interval excludes 0.
    #[test]
    fn fisher_interval_and_p_by_hand() {
        let (p, (lo, hi)) = significance(0.0, 7).unwrap();
        assert!((p - 1.0).abs() < 1e-9);
        let h = (1.959_963_984_540_054f64 / 2.0).tanh();
        assert!((lo + h).abs() < 1e-12 && (hi - h).abs() < 1e-12);
        let (p, (lo, _)) = significance(0.5, 103).unwrap();
        assert!(p < 1e-6 && lo > 0.3, "{p} {lo}");
        assert!(significance(0.5, 3).is_none());
    }
}
