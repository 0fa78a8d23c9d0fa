//! adag-text: text in and out of a model, with HuggingFace transformers' behaviour.
//!
//! Attribution graphs are over token positions, so adag must feed the model exactly the ids
//! `transformers` would. [`ModelTokenizer`] loads `tokenizer.json` (the `tokenizers` crate runs
//! the same Rust code as the Python library) and `tokenizer_config.json` (special tokens, the
//! BOS policy, the chat template, rendered by [`chat`] with minijinja). No tensors live here:
//! adag-model loads weights and runs the forward pass, and re-exports this crate's types.
#![deny(missing_docs)]

pub mod chat;
pub mod error;
pub mod tokenizer;

pub use chat::ChatMessage;
pub use error::{Error, Result};
pub use tokenizer::{BosPolicy, ModelTokenizer};
