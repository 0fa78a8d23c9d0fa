//! Highlighting: which tokens of an excerpt are marked `{{like this}}` for the explainer
//! (reference §6 phase 1, steps 3, 5 and 6).
//!
//! A token is highlighted when its (sign-filtered) value is at least the threshold and above
//! [`MIN_HIGHLIGHT`]. Consecutive highlighted tokens form one span; leading and trailing
//! whitespace of a span is written outside the braces (` {{Dallas}}`, not `{{ Dallas}}`), so
//! the explainer sees words, not tokenizer artefacts.
//!
//! The threshold comes from quantiles of the whole exemplar pool ([`QUANTILE_KEYS`]): walking
//! the keys above the median downwards, the first quantile at which the excerpts of one
//! explainer prompt show at least `min_highlights` distinct spans wins; failing that, the 10th
//! percentile of the prompt's positive values.

use std::collections::BTreeSet;

/// Values at or below this are never highlighted.
pub const MIN_HIGHLIGHT: f32 = 1e-5;

/// The 25 quantile keys of the threshold search: dense near both ends, 0.5 in the middle.
pub const QUANTILE_KEYS: [f64; 25] = [
    1e-8,
    1e-4,
    1e-3,
    0.01,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
    0.9995,
    0.9999,
    0.99999,
    1.0 - 1e-6,
    1.0 - 1e-8,
];

/// Quantile `q` (0..=1) of `sorted` (ascending) with linear interpolation (numpy's default).
pub fn quantile(sorted: &[f32], q: f64) -> Option<f32> {
    if sorted.is_empty() {
        return None;
    }
    let h = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    let f = (h - lo as f64) as f32;
    Some(sorted[lo] + f * (sorted[hi] - sorted[lo]))
}

/// The pool's quantiles at [`QUANTILE_KEYS`], computed over all values above
/// [`MIN_HIGHLIGHT`] (values that can never be highlighted, such as the ε floor of the random
/// negatives, would otherwise drag every quantile down by their sheer number).
pub fn pool_quantiles<'a>(values: impl IntoIterator<Item = &'a [f32]>) -> Vec<(f64, f32)> {
    let mut all: Vec<f32> = values
        .into_iter()
        .flat_map(|v| v.iter().copied())
        .filter(|&x| x > MIN_HIGHLIGHT)
        .collect();
    all.sort_by(f32::total_cmp);
    QUANTILE_KEYS
        .iter()
        .filter_map(|&k| quantile(&all, k).map(|v| (k, v)))
        .collect()
}

/// Spans of consecutive highlighted tokens: `(first, end)` token ranges.
fn spans(acts: &[f32], threshold: f32) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &a) in acts.iter().enumerate() {
        let on = a >= threshold && a > MIN_HIGHLIGHT;
        match (on, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, acts.len()));
    }
    out
}

/// Splits `s` into (leading whitespace, core, trailing whitespace).
fn trim_parts(s: &str) -> (&str, &str, &str) {
    let core_start = s.len() - s.trim_start().len();
    let rest = &s[core_start..];
    let core = rest.trim_end();
    (&s[..core_start], core, &rest[core.len()..])
}

/// The distinct texts of the highlighted spans of one excerpt (whitespace-only spans do not
/// count: they show no braces).
pub fn highlighted_strings(tokens: &[String], acts: &[f32], threshold: f32) -> BTreeSet<String> {
    let acts = &acts[..acts.len().min(tokens.len())];
    spans(acts, threshold)
        .into_iter()
        .map(|(a, b)| trim_parts(&tokens[a..b].concat()).1.to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The excerpt text with highlighted spans wrapped in `{{…}}` (whitespace outside). Tokens
/// beyond the values are shown unhighlighted.
pub fn format_highlights(tokens: &[String], acts: &[f32], threshold: f32) -> String {
    let acts = &acts[..acts.len().min(tokens.len())];
    let mut out = String::new();
    let mut next = 0;
    for (a, b) in spans(acts, threshold) {
        out.push_str(&tokens[next..a].concat());
        let run = tokens[a..b].concat();
        let (lead, core, trail) = trim_parts(&run);
        if core.is_empty() {
            out.push_str(&run);
        } else {
            out.push_str(lead);
            out.push_str("{{");
            out.push_str(core);
            out.push_str("}}");
            out.push_str(trail);
        }
        next = b;
    }
    out.push_str(&tokens[next..].concat());
    out
}

/// The highlight threshold for one explainer prompt's excerpts (`(tokens, sign-filtered
/// values)` pairs): the highest pool quantile above the median at which the excerpts show at
/// least `min_highlights` distinct spans; otherwise the 10th percentile of their values above
/// [`MIN_HIGHLIGHT`]. `None` when no value of the excerpts can be highlighted.
pub fn choose_threshold(
    excerpts: &[(&[String], &[f32])],
    quantiles: &[(f64, f32)],
    min_highlights: usize,
) -> Option<f32> {
    let distinct = |thr: f32| {
        let mut all = BTreeSet::new();
        for (t, a) in excerpts {
            all.extend(highlighted_strings(t, a, thr));
        }
        all.len()
    };
    for &(_, thr) in quantiles.iter().rev().filter(|(k, _)| *k > 0.5) {
        if distinct(thr) >= min_highlights.max(1) {
            return Some(thr);
        }
    }
    let mut pos: Vec<f32> = excerpts
        .iter()
        .flat_map(|(_, a)| a.iter().copied())
        .filter(|&x| x > MIN_HIGHLIGHT)
        .collect();
    pos.sort_by(f32::total_cmp);
    quantile(&pos, 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn spans_merge_runs_and_push_spaces_outside() {
        let t = toks(&["The", " capital", " of", " Texas", " is"]);
        let a = [0.0, 0.5, 0.6, 0.0, 0.9];
        assert_eq!(
            format_highlights(&t, &a, 0.5),
            "The {{capital of}} Texas {{is}}"
        );
        // Trailing whitespace and newlines stay outside too.
        let t = toks(&["a", " b\n", "c"]);
        assert_eq!(format_highlights(&t, &[0.0, 1.0, 0.0], 0.5), "a {{b}}\nc");
        // A whitespace-only run shows no braces and is not a span.
        let t = toks(&["a", " ", "b"]);
        assert_eq!(format_highlights(&t, &[0.0, 1.0, 0.0], 0.5), "a b");
        assert!(highlighted_strings(&t, &[0.0, 1.0, 0.0], 0.5).is_empty());
    }

    #[test]
    fn nothing_at_or_below_the_floor_is_highlighted() {
        let t = toks(&["x", "y"]);
        assert_eq!(format_highlights(&t, &[1e-6, 1e-5], 0.0), "xy");
        assert_eq!(format_highlights(&t, &[1e-6, 2e-5], 0.0), "x{{y}}");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert!((quantile(&v, 1.0 / 3.0).unwrap() - 2.0).abs() < 1e-6);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn threshold_is_the_highest_quantile_with_enough_spans() {
        // Pool: one big value (10) and many small ones; the excerpt holds the big one.
        let pool: Vec<f32> = (1..=100).map(|i| i as f32 / 100.0).chain([10.0]).collect();
        let q = pool_quantiles([pool.as_slice()]);
        assert_eq!(q.len(), QUANTILE_KEYS.len());
        let t = toks(&["a", " b", " c"]);
        let a = [10.0, 0.9, 0.95];
        let thr = choose_threshold(&[(&t, &a)], &q, 1).unwrap();
        assert_eq!(highlighted_strings(&t, &a, thr).len(), 1, "thr {thr}");
        // Two distinct spans wanted: the threshold drops until " b c" joins... as one run with
        // "a" it is one span, so it must fall back to a level where two spans exist or to the
        // 10th percentile.
        let a2 = [10.0, 0.0, 0.95];
        let thr2 = choose_threshold(&[(&t, &a2)], &q, 2).unwrap();
        assert!(highlighted_strings(&t, &a2, thr2).len() >= 2, "thr {thr2}");
        assert!(thr2 < thr);
    }

    #[test]
    fn threshold_falls_back_to_the_10th_percentile() {
        // Quantiles of a pool far above the excerpt's values: no key highlights anything.
        let q = pool_quantiles([[100.0f32, 200.0, 300.0].as_slice()]);
        let t = toks(&["a", "b", "c"]);
        let a = [0.1, 0.2, 0.0];
        let thr = choose_threshold(&[(&t, &a)], &q, 1).unwrap();
        assert!((thr - 0.11).abs() < 1e-6, "{thr}");
        assert!(!highlighted_strings(&t, &a, thr).is_empty());
        // Nothing positive at all: no threshold.
        assert_eq!(choose_threshold(&[(&t, &[0.0, 0.0, 0.0])], &q, 1), None);
    }
}
