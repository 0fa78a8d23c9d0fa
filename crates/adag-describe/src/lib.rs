//! Automatic descriptions of neuron clusters: ADAG's explainer–simulator loop and short
//! labels (`shared/reference/adag.md` §6–7).
//!
//! Pipeline role: after `adag trace` (a circuit) and `adag cluster` (a cluster state), this
//! crate turns each cluster into words:
//! 1. [`records`]: per cluster, one activation record per prompt (tokens without pads, the
//!    cluster's input profile per token, its share of each target logit);
//! 2. [`exemplars`] and [`highlight`]: exemplar pools, held-out records, `{{…}}` highlights;
//! 3. [`describe`]: explainer prompts ([`prompts`]) for the input side (pos and neg) and the
//!    output side, replies parsed ([`parse`]), explanations simulated ([`simulate`]: in-process
//!    model or any chat backend) and scored by Pearson's r ([`score`]);
//! 4. [`label`]: 1–3-word labels;
//! 5. [`output`]: results into the cluster-state file and a descriptions file.
//!
//! Every LLM call goes through `adag_llm::LlmBackend`; [`rules::RuleBackend`] is an offline
//! test double.
//!
//! ```
//! use adag_describe::highlight::format_highlights;
//! let tokens: Vec<String> = ["The", " capital", " of", " Texas"].iter().map(|s| s.to_string()).collect();
//! assert_eq!(format_highlights(&tokens, &[0.0, 0.0, 0.1, 0.9], 0.5), "The capital of {{Texas}}");
//! ```

#![deny(missing_docs)]

pub mod describe;
pub mod error;
pub mod exemplars;
pub mod highlight;
pub mod label;
pub mod llm;
pub mod output;
pub mod parse;
pub mod prompts;
pub mod records;
pub mod rich;
pub mod rules;
pub mod score;
pub mod simulate;
pub mod unit;

pub use describe::{describe_cluster, ClusterDescription, DescribeOptions, Explanation, Side};
pub use error::{Error, Result};
pub use label::{label_clusters, label_inputs, LabelMode, LabelOptions, LabelResult};
pub use llm::{Meter, Totals};
pub use output::{apply_descriptions, apply_labels, DescriptionsFile};
pub use records::{build_records, ActivationRecord, ClusterRecords, RecordOptions};
pub use simulate::{ChatSimulator, LocalSimulator, LocalSimulatorOptions, ScoreTokens, Simulator};
