//! Pearson and Spearman correlation with two-sided p-values (Student's t with n−2 degrees of
//! freedom, as scipy's `pearsonr` and `spearmanr` do), and η² for how much of a per-unit
//! quantity a clustering explains.

/// Pearson's r, or `None` when n < 3 or either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 3 || y.len() != n {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Ranks 1..=n, ties sharing their average rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &t in &idx[i..=j] {
            r[t] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ: Pearson's r of the ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// Benjamini–Hochberg q-values (same order as `p`): `q_(i) = min_{j ≥ i} p_(j)·m/j` over the
/// ascending p-values, capped at 1. Rejecting rows with q < α controls the false discovery
/// rate at α across the family, which a raw p does not when thousands of rows are tested.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

/// Two-sided p-value of a correlation r over n samples: `t = r·sqrt((n−2)/(1−r²))`,
/// `p = I_{df/(df+t²)}(df/2, 1/2)`.
pub fn p_value(r: f64, n: usize) -> f64 {
    if n < 3 {
        return f64::NAN;
    }
    let df = (n - 2) as f64;
    let r2 = r * r;
    if r2 >= 1.0 {
        return 0.0;
    }
    let t2 = r2 * df / (1.0 - r2);
    incomplete_beta(df / 2.0, 0.5, df / (df + t2)).clamp(0.0, 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a+1)/(a+b+2); use symmetry otherwise.
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let mut f = 1.0;
    let mut c = 1.0;
    let mut d = 0.0;
    for i in 0..400 {
        let m = (i / 2) as f64;
        let num = if i == 0 {
            1.0
        } else if i % 2 == 0 {
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
        } else {
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
        };
        d = 1.0 + num * d;
        if d.abs() < tiny {
            d = tiny;
        }
        d = 1.0 / d;
        c = 1.0 + num / c;
        if c.abs() < tiny {
            c = tiny;
        }
        let cd = c * d;
        f *= cd;
        if (1.0 - cd).abs() < 1e-15 {
            break;
        }
    }
    front * (f - 1.0) / a
}

/// η² (correlation ratio): the share of the variance of `values` explained by `groups`,
/// Σ_g n_g (mean_g − mean)² / Σ_i (x_i − mean)², in [0, 1]; `None` when the values are constant
/// or the lengths differ.
///
/// Why this and not purity for checking clusters against a role: purity needs a threshold to
/// turn a continuous property (e.g. the share of a unit's input from the city token) into
/// labels, and with an imbalanced majority class it is close to the base rate whatever the
/// clustering. η² uses the property itself; comparing it with η² of shuffled cluster
/// assignments (same sizes) gives a chance-corrected test.
pub fn eta_squared<G: Ord>(groups: &[G], values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 || groups.len() != n {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let total: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut by: std::collections::BTreeMap<&G, (f64, usize)> = Default::default();
    for (g, v) in groups.iter().zip(values) {
        let e = by.entry(g).or_default();
        e.0 += v;
        e.1 += 1;
    }
    let between: f64 = by
        .values()
        .map(|(s, k)| *k as f64 * (s / *k as f64 - mean).powi(2))
        .sum();
    Some(between / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_beta_known_values() {
        // I_x(1, 1) = x; I_x(a, 1) = x^a; I_0.5(a, a) = 0.5.
        assert!((incomplete_beta(1.0, 1.0, 0.3) - 0.3).abs() < 1e-12);
        assert!((incomplete_beta(2.5, 1.0, 0.4) - 0.4f64.powf(2.5)).abs() < 1e-12);
        assert!((incomplete_beta(3.0, 3.0, 0.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn eta_squared_by_hand() {
        // Groups a: [1, 3] (mean 2), b: [5, 7, 9] (mean 7); grand mean 5.
        // Between: 2·(2−5)² + 3·(7−5)² = 30; total: 16+4+0+4+16 = 40.
        let g = ["a", "b", "a", "b", "b"];
        let x = [1.0, 5.0, 3.0, 7.0, 9.0];
        assert!((eta_squared(&g, &x).unwrap() - 0.75).abs() < 1e-12);
        // One group explains nothing; one group per value explains everything.
        assert_eq!(eta_squared(&[0; 5], &x), Some(0.0));
        assert_eq!(eta_squared(&[0, 1, 2, 3, 4], &x), Some(1.0));
        assert_eq!(eta_squared(&g, &[2.0; 5]), None);
    }

    #[test]
    fn ties_share_ranks() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }
}
