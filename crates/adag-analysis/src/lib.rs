//! Circuit analysis: from "a thousand neurons per prompt" to "a dozen named mechanisms".
//!
//! Pipeline role: reads a neuron circuit (`adag trace`, [`adag_circuit`]) and
//! 1. **clusters** its units (layer, neuron, polarity) by what they read and what they write
//!    ([`profiles`] → [`similarity`] → [`spectral`] → [`cluster`]), writing a
//!    [`ClusterState`] file that `adag` and the viewer read (or Ward on the same embedding,
//!    [`ward`], or Leiden on the similarity graph, [`leiden`]);
//! 2. **correlates** per-prompt attribution of clusters, units and cluster edges with a
//!    per-prompt metric ([`correlate`]);
//! 3. **steers** clusters (scales their traced neurons in one forward pass) and reports
//!    cluster→cluster and cluster→output effects ([`steer`]);
//!    and measures steering success rates with a judge ([`asr`], [`judge`]);
//! 4. **plots** one prompt's tokens → clusters → outputs graph as DOT, SVG and PNG ([`plot`],
//!    drawn by [`raster`] without Graphviz).
//!
//! Definitions follow Transluce's ADAG (`shared/reference/adag.md` §4–5, §8–9); where the
//! reference has known bugs, the module docs say what adag does instead.
//!
//! ```
//! use adag_analysis::spectral::kmeans;
//! // Two obvious groups on a line.
//! let km = kmeans(&[0.0, 0.1, 0.2, 5.0, 5.1, 5.2], 1, 2, 4, 42);
//! assert_eq!(km.labels[0], km.labels[2]);
//! assert_ne!(km.labels[0], km.labels[3]);
//! ```

#![deny(missing_docs)]

pub mod asr;
pub mod cluster;
pub mod correlate;
pub mod diversity;
pub mod error;
pub mod hypothesis;
pub mod judge;
pub mod leiden;
pub mod plot;
pub mod profiles;
pub mod raster;
pub mod similarity;
pub mod spectral;
pub mod stats;
pub mod steer;
pub mod supernodes;
pub mod ward;

pub use cluster::{
    cluster, cluster_by, cluster_given, cluster_leiden, ClusterInfo, ClusterOptions, ClusterState,
    Clustering, Diagnostics, Method,
};
pub use error::{Error, Result};
pub use leiden::LeidenOptions;
pub use profiles::{Profiles, Unit};
pub use similarity::{similarity, Combine, Similarity, SimilarityOptions};
pub use supernodes::write_cluster_supernodes;
