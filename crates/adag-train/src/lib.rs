//! adag-train: the bundled demo model and its transcoders, trained by adag itself on CPU.
//!
//! Pipeline role: a fresh machine can download nothing, and circuits of a random model mean
//! nothing; so adag ships a small Llama-architecture model trained on tasks whose circuits the
//! literature knows (two-hop factual recall, addition, subject–verb agreement), plus per-layer
//! transcoders in circuit-tracer's format. This crate reproduces that bundle:
//!
//! 1. [`corpus`]: a seeded generator of task sentences with held-out prompts;
//! 2. [`bpe`]: a byte-level BPE trained on it (`tokenizer.json`);
//! 3. [`trainer`]: candle autograd through adag-model's own forward pass, AdamW, cosine
//!    schedule ([`trainer::train_demo`]); [`lm`] writes the HF layout;
//! 4. [`transcoder`]: JumpReLU transcoders on each layer's MLP (`layer_{i}.safetensors` +
//!    `config.yaml`), and [`clt`]: a cross-layer transcoder (decoders into every later layer);
//!    Both end with an exact least-squares decoder refit ([`refit`]);
//! 5. [`bundle`]: where the committed bundle lives (`models/demo`).
//!
//! ```no_run
//! # fn main() -> adag_train::Result<()> {
//! let cfg = adag_train::trainer::TrainConfig::tiny();
//! let trained = adag_train::trainer::train_demo(&cfg, None, &mut |_| {})?;
//! println!("final loss {}", trained.losses.last().copied().unwrap_or(f32::NAN));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod bpe;
/// Where the committed bundle lives (moved to adag-model, which every command loads through).
pub use adag_model::bundle;
pub mod clt;
pub mod corpus;
pub mod data;
pub mod datasets;
pub mod error;
pub mod eval;
pub mod io;
pub mod lm;
pub mod reference;
pub mod refit;
pub mod rng;
pub mod trainer;
pub mod transcoder;

pub use error::{Error, Result};
