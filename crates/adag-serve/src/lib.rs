//! adag-serve: the last stage of the pipeline, where a researcher reads a circuit.
//!
//! `attribute` → `prune` → graph files (`{slug}.json` in circuit-tracer's frontend schema) →
//! **serve**. This crate is a small local HTTP server plus a browser UI written for adag and
//! embedded in the binary (no Node toolchain): a canvas graph view (tokens along the bottom,
//! layers up the side, target logits on top), a node panel, a subgraph pane with pinned nodes
//! and supernodes, and saving of that state back into the graph file.
//!
//! Principal types: [`ServeConfig`] and [`Server`]; [`serve_blocking`] is the one-call entry
//! point for `adag serve` and `--serve`. Graphs come from a [`GraphSource`]; today that is a
//! folder of JSON files ([`JsonDir`]). Large graphs are cut to a screen-sized view by the server
//! ([`Graph::view`]) before the browser sees them.
//!
//! ```no_run
//! use adag_serve::{serve_blocking, ServeConfig};
//! // Prints "adag viewer: http://127.0.0.1:8041/?slug=austin" and serves until interrupted.
//! serve_blocking(ServeConfig::new("graphs").slug("austin"))?;
//! # Ok::<(), adag_serve::Error>(())
//! ```
//!
//! ```
//! use adag_serve::{Server, ServeConfig};
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/graphs");
//! let server = Server::start(ServeConfig::new(dir).port(0))?;
//! assert!(server.addr().ip().is_loopback());
//! server.shutdown()?;
//! # Ok::<(), adag_serve::Error>(())
//! ```
#![deny(missing_docs)]

mod assets;
pub mod dashboards;
mod error;
pub mod files;
pub mod graph;
mod server;
pub mod source;
pub mod state;

pub use adag_http::Limits;
pub use error::{Error, Result};
pub use graph::{FeatureType, Graph, ViewRequest, ViewSummary};
pub use server::{serve_blocking, ServeConfig, Server, DEFAULT_MAX_POST_BYTES, DEFAULT_PORT};
pub use source::{GraphSource, JsonDir};
