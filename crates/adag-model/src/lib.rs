//! adag-model: HuggingFace checkpoints in, logits and an activation cache out.
//!
//! Pipeline role: the first stage of adag. A model directory (config.json, safetensors weights,
//! tokenizer files) becomes a [`Transformer`] whose forward pass records, on request, everything
//! the linearised backward engine freezes or reads: residual streams, norm denominators,
//! attention patterns, gate/up/neuron activations and MLP outputs ([`ActivationCache`]).
//!
//! - [`ModelConfig`] resolves config.json for Llama, Qwen2, Qwen3, Gemma-2 and Gemma-3 (text, also
//!   inside a `Gemma3ForConditionalGeneration` checkpoint: `multimodal`);
//! - [`Transformer`] is one block skeleton with per-architecture weight adapters (`arch`);
//! - [`KvCache`] with [`Transformer::prefill`]/[`Transformer::step`] decodes incrementally;
//! - [`ModelTokenizer`] (from adag-text) wraps `tokenizers` with the chat template and an explicit BOS policy.
//!
//! ```no_run
//! use adag_model::{Batch, CacheFilter, LoadOptions, Transformer};
//! # fn main() -> adag_model::Result<()> {
//! let model = Transformer::load("fixtures/models/llama".as_ref(), &LoadOptions::default())?;
//! let out = model.forward(&Batch::new(vec![vec![0, 5, 9], vec![0, 7]])?, &CacheFilter::attribution())?;
//! println!("cached {} tensors, {} bytes", out.cache.len(), out.cache.memory_bytes());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod arch;
pub mod bundle;
pub mod cache;
pub mod config;
mod dtype;
pub mod error;
pub mod layers;
pub mod loaded;
pub mod multimodal;
pub mod transformer;
pub mod weights;

pub use adag_text::{chat, tokenizer, ModelTokenizer};
pub use cache::{ActivationCache, CacheFilter};
pub use config::{Architecture, ModelConfig};
pub use dtype::{parse_dtype, DTYPE_CHOICES};
pub use error::{Error, Result};
pub use loaded::LoadedModel;
pub use transformer::{
    probabilities, Batch, ForwardHooks, ForwardOutput, KvCache, LastLogitsOnly, LoadOptions,
    NoHooks, Transformer,
};
