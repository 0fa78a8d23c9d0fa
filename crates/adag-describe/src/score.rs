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
