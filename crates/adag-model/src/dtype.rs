//! Dtype names as users write them (`--dtype`, run configs, the Python package, `serve-llm`
//! configs): one parser, so every entry point accepts and refuses the same spellings.

use candle_core::DType;

/// The dtype a name stands for: `f32`/`float32`, `bf16`/`bfloat16`, `f16`/`float16`.
///
/// ```
/// use candle_core::DType;
/// assert_eq!(adag_model::parse_dtype("bfloat16"), Some(DType::BF16));
/// assert_eq!(adag_model::parse_dtype("f64"), None);
/// ```
pub fn parse_dtype(name: &str) -> Option<DType> {
    match name {
        "f32" | "float32" => Some(DType::F32),
        "bf16" | "bfloat16" => Some(DType::BF16),
        "f16" | "float16" => Some(DType::F16),
        _ => None,
    }
}

/// What an error says when [`parse_dtype`] refuses a name.
pub const DTYPE_CHOICES: &str = "expected f32, bf16 or f16";
