//! Attention attribution: what the frozen attention patterns hide.
//!
//! An attribution graph freezes every attention pattern, so an edge between two positions is a
//! sum over the heads that carried it. [`heads`] splits the backward pass of the frozen model
//! by head (the OV circuit of each head), so each kept edge of a graph can be written as an
//! exact sum of per-(layer, head) parts plus a residual/direct part
//! ([`head_loadings`](loadings::head_loadings)).

pub mod heads;
pub mod loadings;
pub mod qk;
pub mod tracing;

pub use heads::{vjp_by_head, HeadChannels};
pub use loadings::head_loadings;
pub use qk::{qk_attribution, QkAttribution, QkSite};
pub use tracing::{default_sites, qk_tracing};
