//! Logit targets: which output directions a graph explains, and their weights.
//!
//! As circuit-tracer (`attribution/targets.py`): in salient mode the smallest set of top tokens
//! whose probability reaches `desired_logit_prob` (at most `max_n_logits`); each token's
//! direction is its de-meaned unembedding row, so an edge predicts the change of
//! `logit_t − mean(logits)`. On Gemma-2 that is the pre-soft-cap logit, while the weights are the
//! probabilities of the returned (soft-capped) logits, as in the reference. Custom directions
//! (e.g. a logit difference) are used as given and get the virtual id `d_vocab + i`.

use adag_graph::LogitTarget;
use candle_core::{DType, Tensor};

use crate::error::{Context, Error, Result};

/// A direction to explain that is not one token's logit.
#[derive(Debug, Clone)]
pub struct CustomTarget {
    /// Display label.
    pub label: String,
    /// Residual-space direction at the unembedding input, `[d_model]`.
    pub direction: Vec<f32>,
    /// Weight in influence computations.
    pub prob: f32,
}

/// What to attribute.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Top tokens up to a cumulative probability.
    Salient {
        /// At most this many.
        max_n_logits: usize,
        /// Stop once the cumulative probability reaches this.
        desired_logit_prob: f32,
    },
    /// These token ids.
    Tokens(Vec<u32>),
    /// The `k` most likely next tokens (ADAG's targets when a prompt has no answers).
    TopK(usize),
    /// Custom directions.
    Custom(Vec<CustomTarget>),
}

impl TargetSpec {
    /// A short description for graph metadata.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Salient {
                max_n_logits,
                desired_logit_prob,
            } => {
                format!("salient (max_n_logits {max_n_logits}, desired_logit_prob {desired_logit_prob})")
            }
            TargetSpec::Tokens(ids) => format!("tokens {ids:?}"),
            TargetSpec::TopK(k) => format!("top {k}"),
            TargetSpec::Custom(c) => {
                let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
                format!("custom {labels:?}")
            }
        }
    }
}

/// Targets with their directions, ready to seed the backward pass.
#[derive(Debug, Clone)]
pub struct SelectedTargets {
    /// Targets in order (highest probability first in salient mode).
    pub targets: Vec<LogitTarget>,
    /// Their weights.
    pub probs: Vec<f32>,
    /// `[K, d_model]` directions.
    pub directions: Tensor,
}

pub(crate) use adag_core::softmax;

/// The de-meaned unembedding rows of `ids`: `W_U[t] − mean_v W_U[v]`.
pub fn demeaned_directions(unembed: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let mean = crate::accounting::unembed_mean(unembed)?;
    let idx = Tensor::new(ids, unembed.device()).ctx("target ids")?;
    unembed
        .index_select(&idx, 0)
        .and_then(|r| r.to_dtype(DType::F32))
        .and_then(|r| r.broadcast_sub(&mean))
        .ctx("target directions")
}

/// `W_U[x] − W_U[y]`: the direction of the logit difference `x − y` (no de-meaning needed).
pub fn logit_difference(
    unembed: &Tensor,
    x: u32,
    y: u32,
    label: String,
    prob: f32,
) -> Result<CustomTarget> {
    let v = unembed.dim(0).ctx("unembedding")?;
    if x as usize >= v || y as usize >= v {
        return Err(Error::Invalid(format!(
            "logit difference {x} − {y}: token ids must be below {v}"
        )));
    }
    if x == y {
        // W_U[x] − W_U[x] = 0: every attribution would be exactly zero.
        return Err(Error::Invalid(format!(
            "logit difference {x} − {y}: the two tokens are the same; name two different tokens"
        )));
    }
    // Only the two rows, in f32 (the whole unembedding would be 2.4 GB at a 256k vocabulary).
    let row = |i: u32| {
        unembed
            .get(i as usize)
            .and_then(|r| r.to_dtype(DType::F32))
            .ctx("row")
    };
    let dir = (row(x)? - row(y)?)
        .and_then(|t| t.to_vec1())
        .ctx("difference")?;
    Ok(CustomTarget {
        label,
        direction: dir,
        prob,
    })
}

/// Chooses targets for next-token logits `logits` (`[d_vocab]`, as the model returns them).
pub fn select_targets(
    spec: &TargetSpec,
    logits: &[f32],
    unembed: &Tensor,
    token_str: &dyn Fn(u32) -> String,
) -> Result<SelectedTargets> {
    let d_vocab = logits.len();
    let probs = softmax(logits);
    let token_targets = |ids: Vec<u32>| -> Result<SelectedTargets> {
        if ids.is_empty() {
            return Err(Error::Invalid("no logit targets".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= d_vocab) {
            return Err(Error::Invalid(format!(
                "target token id {bad} is outside the vocabulary ({d_vocab})"
            )));
        }
        Ok(SelectedTargets {
            targets: ids
                .iter()
                .map(|&i| LogitTarget {
                    token: token_str(i),
                    vocab_idx: i,
                })
                .collect(),
            probs: ids.iter().map(|&i| probs[i as usize]).collect(),
            directions: demeaned_directions(unembed, &ids)?,
        })
    };
    match spec {
        TargetSpec::Salient {
            max_n_logits,
            desired_logit_prob,
        } => {
            if *max_n_logits == 0 {
                return Err(Error::Invalid("max_n_logits must be at least 1".into()));
            }
            // NaN compares false with everything, and values above 1 are never reached: both
            // would silently mean "take max_n_logits targets".
            if !(*desired_logit_prob > 0.0 && *desired_logit_prob <= 1.0) {
                return Err(Error::Invalid(format!(
                    "desired_logit_prob must be in (0, 1], found {desired_logit_prob}"
                )));
            }
            let mut order: Vec<usize> = (0..d_vocab).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            order.truncate(*max_n_logits);
            let mut cum = 0.0f32;
            let mut cutoff = order.len();
            for (i, &t) in order.iter().enumerate() {
                cum += probs[t];
                if cum >= *desired_logit_prob {
                    cutoff = i + 1;
                    break;
                }
            }
            token_targets(order[..cutoff].iter().map(|&i| i as u32).collect())
        }
        TargetSpec::Tokens(ids) => token_targets(ids.clone()),
        TargetSpec::TopK(k) => {
            let mut order: Vec<usize> = (0..d_vocab).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            token_targets(order.into_iter().take(*k).map(|i| i as u32).collect())
        }
        TargetSpec::Custom(custom) => {
            if custom.is_empty() {
                return Err(Error::Invalid("no logit targets".into()));
            }
            let d = unembed.dim(1).ctx("unembedding")?;
            let mut flat = Vec::with_capacity(custom.len() * d);
            for c in custom {
                if c.direction.len() != d {
                    return Err(Error::Invalid(format!(
                        "custom target `{}` has {} dims, the model {d}",
                        c.label,
                        c.direction.len()
                    )));
                }
                flat.extend_from_slice(&c.direction);
            }
            Ok(SelectedTargets {
                targets: custom
                    .iter()
                    .enumerate()
                    .map(|(i, c)| LogitTarget {
                        token: c.label.clone(),
                        vocab_idx: (d_vocab + i) as u32,
                    })
                    .collect(),
                probs: custom.iter().map(|c| c.prob).collect(),
                directions: Tensor::from_vec(flat, (custom.len(), d), unembed.device())
                    .ctx("custom directions")?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salient_mode_stops_at_the_desired_probability() {
        let dev = candle_core::Device::Cpu;
        let unembed = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((4, 3))
            .unwrap();
        // probabilities ≈ [0.0321, 0.0871, 0.2369, 0.6439]
        let logits = [0.0f32, 1.0, 2.0, 3.0];
        let name = |i: u32| format!("t{i}");
        let spec = |n, p| TargetSpec::Salient {
            max_n_logits: n,
            desired_logit_prob: p,
        };
        let s = select_targets(&spec(10, 0.5), &logits, &unembed, &name).unwrap();
        assert_eq!(
            s.targets.iter().map(|t| t.vocab_idx).collect::<Vec<_>>(),
            vec![3]
        );
        for p in [0.0, 1.5, f32::NAN] {
            let e = select_targets(&spec(10, p), &logits, &unembed, &name)
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains(&format!("desired_logit_prob must be in (0, 1], found {p}")),
                "{e}"
            );
        }
        let s = select_targets(&spec(10, 0.8), &logits, &unembed, &name).unwrap();
        assert_eq!(
            s.targets.iter().map(|t| t.vocab_idx).collect::<Vec<_>>(),
            vec![3, 2]
        );
        let s = select_targets(&spec(2, 0.99), &logits, &unembed, &name).unwrap();
        assert_eq!(s.targets.len(), 2, "capped at max_n_logits");
        // De-meaned: row 3 minus the mean row [4.5, 5.5, 6.5].
        let d = s.directions.to_vec2::<f32>().unwrap();
        assert_eq!(d[0], vec![4.5, 4.5, 4.5]);
        assert!((s.probs[0] - 0.6439).abs() < 1e-3);
    }

    #[test]
    fn custom_targets_get_virtual_ids_and_raw_directions() {
        let dev = candle_core::Device::Cpu;
        let unembed = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((4, 3))
            .unwrap();
        let c = logit_difference(&unembed, 3, 1, "a-b".into(), 1.0).unwrap();
        assert_eq!(c.direction, vec![6.0, 6.0, 6.0]);
        let s = select_targets(&TargetSpec::Custom(vec![c]), &[0.0; 4], &unembed, &|_| {
            String::new()
        })
        .unwrap();
        assert_eq!(s.targets[0].vocab_idx, 4);
        assert!(logit_difference(&unembed, 9, 1, "x".into(), 1.0).is_err());
        assert_eq!(
            logit_difference(&unembed, 3, 3, "x".into(), 1.0)
                .unwrap_err()
                .to_string(),
            "logit difference 3 − 3: the two tokens are the same; name two different tokens"
        );
    }
}
