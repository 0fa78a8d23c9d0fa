//! Settings typed as decimals but held as `f32` (thresholds) are written into metadata as the
//! decimal the user typed: `0.8`, not `0.800000011920929`. JSON values hold `f64`, and widening
//! an `f32` keeps its binary error; the shortest decimal that round-trips the `f32` is what was
//! typed whenever the user gave at most 7 significant digits.

/// The `f64` of `x`'s shortest round-tripping decimal (`0.8f32` → `0.8`).
pub fn f32_as_typed(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// `#[serde(serialize_with = "adag_core::decimal::serialize_f32")]`: serialises through
/// [`f32_as_typed`], so that `serde_json::to_value` stores `0.8`.
pub fn serialize_f32<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f32_as_typed(*x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_decimals_survive_widening() {
        for (x, want) in [(0.8f32, 0.8f64), (0.01, 0.01), (0.005, 0.005), (0.98, 0.98)] {
            assert_ne!(
                x as f64, want,
                "{x} must not widen exactly for the test to mean anything"
            );
            assert_eq!(f32_as_typed(x), want);
        }
        assert_eq!(f32_as_typed(0.5), 0.5);
        assert!(f32_as_typed(f32::NAN).is_nan());
    }
}
