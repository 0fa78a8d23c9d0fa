//! HuggingFace Hub access for adag: `--model google/gemma-2-2b` and `--transcoders gemma` the way
//! circuit-tracer and transformers understand them.
//!
//! # Brief overview
//! - [`Reference::parse`] reads what a user typed: a local path, `org/name[/subdir][@rev]` or
//!   `hf://org/name[/subdir][@rev]`.
//! - [`Hub`] resolves files **cache-first** in the standard HF cache (`HF_HUB_CACHE`, `HF_HOME`),
//!   so files `huggingface_hub` downloaded are reused and vice versa; honours `HF_HUB_OFFLINE`,
//!   `HF_TOKEN` and `HF_ENDPOINT`; downloads resume with HTTP ranges and are checked against the
//!   hub's sha256 ETag.
//! - [`Hub::model`] and [`Hub::transcoders`] fetch only what adag reads of a repository.
//! - [`presets`] maps circuit-tracer's names (`gemma`, `llama`, …) to repositories.
//!
//! Why not the `hf-hub` crate: its blocking API is built on `ureq` (a second HTTP and TLS stack
//! beside the workspace's `reqwest`), and adag needs control over offline resolution, `.no_exist`
//! markers, token scoping on redirects and resumption, which is a few hundred lines over
//! `reqwest`.
//!
//! ```
//! use adag_hub::{Reference, HubRef};
//! let r = Reference::parse("hf://mntss/transcoder-Llama-3.2-1B@main").unwrap();
//! assert_eq!(r, Reference::Hub(HubRef {
//!     repo: "mntss/transcoder-Llama-3.2-1B".into(), path: String::new(), revision: "main".into(),
//! }));
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod error;
mod hub;
#[cfg(feature = "mock")]
pub mod mock;
pub mod presets;
mod reference;
mod repo;
pub mod resolve;

pub use error::{Error, Result};
pub use hub::{Hub, HubConfig, DEFAULT_ENDPOINT};
pub use reference::{HubRef, Reference, MAIN};
pub use resolve::{listed_file_resolver, resolve_model, resolve_named_model, resolve_transcoders};
