//! The one softmax over a logit vector: target probabilities, steering's KL, the local
//! simulator's token scores all come from here, so they agree to the last bit.

/// Softmax of `logits`, max-subtracted and summed in f64, so that a 256k vocabulary of f32
/// logits normalises to 1 within f32 rounding.
///
/// ```
/// let p = adag_core::softmax(&[0.0, f32::ln(3.0)]);
/// assert!((p[0] - 0.25).abs() < 1e-7 && (p[1] - 0.75).abs() < 1e-7);
/// ```
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&x| ((x - m) as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| (v / s) as f32).collect()
}
