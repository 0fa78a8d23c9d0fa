//! Feature dashboards: what each transcoder feature or MLP neuron responds to.
//!
//! The pipeline role: after a model and a basis exist and before the viewer, a corpus is
//! streamed through the model in fixed-length contexts; each context's activations of every
//! unit go to a [`Collector`], which keeps per unit the exact top-k contexts (a bounded heap,
//! ties broken by corpus order), samples from each activation interval, the activation density
//! and a histogram. [`write::write_feature_dir`] then writes circuit-tracer's feature-detail
//! files, which `adag serve` shows in the node panel.
//!
//! ```
//! use adag_features::{Collector, CollectConfig};
//! let mut c = Collector::new(2, CollectConfig { k: 1, window: 1, per_bin: 1 });
//! // Two tokens, two units: unit 0 fires on the second token, unit 1 never.
//! c.add_sequence(&[7, 8], &[0.0, 0.0, 1.5, 0.0]).unwrap();
//! assert_eq!(c.units[0].top()[0].pos, 1);
//! assert_eq!(c.density(0), 0.5);
//! assert!(c.units[1].top().is_empty());
//! ```
#![deny(missing_docs)]

pub mod collect;
pub mod corpus;
pub mod error;
pub mod table;
pub mod write;

pub use collect::{CollectConfig, Collector, Example};
pub use error::{Error, Result};
