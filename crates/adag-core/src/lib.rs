//! adag-core: the vocabulary every other adag crate speaks. No tensors live here.
//!
//! The principal type is [`HookName`]: a typed TransformerLens hook path such as
//! `blocks.3.ln2.hook_scale`. Forward caches, bases (which hook a transcoder reads from and writes
//! to) and the frozen set of the linearised model are all expressed in these names, so that the
//! strings a researcher knows from TransformerLens and circuit-tracer mean the same thing here.
//!
//! ```
//! use adag_core::{HookName, Site};
//! let h: HookName = "blocks.3.mlp.hook_post".parse().unwrap();
//! assert_eq!(h, HookName::Block(3, Site::MlpPost));
//! assert_eq!(h.to_string(), "blocks.3.mlp.hook_post");
//! ```
#![deny(missing_docs)]

mod atomic;
pub mod decimal;
mod hooks;
mod mapped;
mod parallel;
mod softmax;

pub use atomic::{stale_temp_files, write_atomic, write_atomic_with, TEMP_PREFIX};
pub use hooks::{HookName, ParseHookError, Site};
pub use mapped::release_mapped_pages;
pub use parallel::map_in_order;
pub use softmax::softmax;
