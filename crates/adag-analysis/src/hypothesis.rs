//! Hypothesis clusters (the reference's `score_features.py` / `cluster_with_hypotheses`):
//! instead of letting the similarity decide, ask which units tell prompts with a given label
//! from the others. A unit's score on a prompt is its summed attribution there (0 where it was
//! not traced); its AUROC is the probability that a random prompt with the label scores higher
//! than a random prompt without it (Mann–Whitney, ties counted half). Units with AUROC ≥ `min`
//! form one cluster, units with AUROC ≤ 1 − `min` (they mark the label's absence) another,
//! and the rest a third, so every unit has a cluster and the usual diagnostics apply.

use std::collections::BTreeMap;

use adag_circuit::Circuit;

use crate::error::{Error, Result};
use crate::profiles::Profiles;
use crate::stats::ranks;

/// AUROC of `scores` for `positive` (NaN when either class is empty).
pub fn auroc(scores: &[f64], positive: &[bool]) -> f64 {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    let r = ranks(scores);
    let sum: f64 = r
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    let u = sum - (n_pos * (n_pos + 1)) as f64 / 2.0;
    u / (n_pos * n_neg) as f64
}

/// Each unit's AUROC for the prompts labelled `label` against the others (profile order).
pub fn unit_aurocs(profiles: &Profiles, circuit: &Circuit, label: &str) -> Result<Vec<f64>> {
    let labels: BTreeMap<u64, bool> = circuit
        .prompts
        .iter()
        .map(|p| (p.prompt_id, p.label.as_deref() == Some(label)))
        .collect();
    let positive: Vec<bool> = profiles
        .prompts
        .iter()
        .map(|p| labels.get(&p.prompt_id).copied().unwrap_or(false))
        .collect();
    let n_pos = positive.iter().filter(|&&p| p).count();
    if n_pos == 0 || n_pos == positive.len() {
        let mut seen: Vec<&str> = circuit
            .prompts
            .iter()
            .filter_map(|p| p.label.as_deref())
            .collect();
        seen.sort();
        seen.dedup();
        return Err(Error::Input(format!(
            "--hypothesis {label:?}: {n_pos} of {} prompts have this label, so no unit can \
             separate it; the circuit's labels are: {}",
            positive.len(),
            seen.join(", ")
        )));
    }
    let mut scores = vec![vec![0f64; profiles.prompts.len()]; profiles.units.len()];
    for (j, p) in profiles.prompts.iter().enumerate() {
        for u in &p.units {
            scores[u.unit][j] += u.attribution as f64;
        }
    }
    Ok(scores.iter().map(|s| auroc(s, &positive)).collect())
}

/// Labels 0..k for the units: the groups "AUROC ≥ min", "AUROC ≤ 1 − min" and the rest, empty
/// groups left out (k is the number of non-empty groups). Also returns each label's group
/// name, `for`, `against` or `rest`.
pub fn hypothesis_labels(aurocs: &[f64], min: f64) -> (Vec<usize>, Vec<&'static str>) {
    let group = |a: f64| {
        if a >= min {
            0
        } else if a <= 1.0 - min {
            1
        } else {
            2
        }
    };
    let names = ["for", "against", "rest"];
    let present: Vec<usize> = (0..3)
        .filter(|g| aurocs.iter().any(|&a| group(a) == *g))
        .collect();
    let labels = aurocs
        .iter()
        .map(|&a| present.iter().position(|&g| g == group(a)).unwrap_or(0))
        .collect();
    (labels, present.iter().map(|&g| names[g]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_by_hand() {
        let pos = [true, true, false, false];
        assert_eq!(auroc(&[3.0, 4.0, 1.0, 2.0], &pos), 1.0);
        assert_eq!(auroc(&[1.0, 2.0, 3.0, 4.0], &pos), 0.0);
        // One tie across classes counts half: pairs (3>1, 3=3, 2>1, 2<3) → 2.5 / 4.
        assert_eq!(auroc(&[3.0, 2.0, 1.0, 3.0], &pos), 0.625);
        assert!(auroc(&[1.0, 2.0], &[true, true]).is_nan());
    }

    #[test]
    fn groups_are_compacted() {
        let (l, names) = hypothesis_labels(&[0.9, 0.5, 0.95, 0.6], 0.8);
        assert_eq!(l, [0, 1, 0, 1]);
        assert_eq!(names, ["for", "rest"]);
    }
}
