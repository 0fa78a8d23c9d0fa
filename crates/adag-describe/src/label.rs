//! Labels: 1–3 words per cluster from its best descriptions (reference §7).
//!
//! Three modes: one call per cluster ([`LabelMode::PerCluster`], the reference's `rich` mode
//! with `attr_only`: input and output descriptions plus the top prompts), the same with the
//! cluster's top units and their own exemplars ([`LabelMode::Rich`], filled by
//! [`crate::rich`]), or one call for all clusters answered `CLUSTER_ID: label` per line
//! ([`LabelMode::Batch`]). Replies are
//! validated (1–3 words inside an optional `not[…]`, no banned word); per-cluster mode asks
//! again (at most [`LABEL_ATTEMPTS`] times) when a reply is unusable. A cluster left without a
//! usable label gets a **fallback**: the text of the token that drives it most (Σ of its
//! positive input profile over the prompts where it is present), in `not[…]` when the cluster
//! is inhibitory; the descriptions file records which labels are fallbacks and why.

use std::collections::BTreeMap;

use adag_analysis::ClusterState;
use adag_llm::{ChatRequest, LlmBackend};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::llm::{is_request_specific, Meter};
use crate::parse::{parse_label, parse_label_batch, validate_label, Unusable};
use crate::prompts::{self, LabelInput};
use crate::records::ClusterRecords;

/// Calls per cluster in per-cluster mode before falling back.
pub const LABEL_ATTEMPTS: u32 = 3;

/// How labels are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    /// One call per cluster.
    PerCluster,
    /// One call per cluster, the prompt also showing the cluster's top units with their own
    /// dashboard exemplars ([`crate::rich`]; the reference's `rich` mode with neuron
    /// descriptions).
    Rich,
    /// One call for all clusters.
    Batch,
}

impl std::str::FromStr for LabelMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "per-cluster" => Ok(LabelMode::PerCluster),
            "batch" => Ok(LabelMode::Batch),
            "rich" => Ok(LabelMode::Rich),
            _ => Err(format!(
                "unknown label mode {s:?}: expected `per-cluster`, `rich` or `batch`"
            )),
        }
    }
}

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// A validated LLM reply.
    Llm,
    /// The fallback (no usable reply).
    Fallback,
}

/// A cluster's label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelResult {
    /// Cluster id.
    pub cluster: String,
    /// The label.
    pub label: String,
    /// Where it came from.
    pub source: LabelSource,
    /// Unusable replies met on the way.
    pub problems: Vec<String>,
}

/// What the labeller is told about each cluster: its descriptions from the state file, its
/// sign, and the 10 prompts where its Σ|attribution| is largest (`prompt → label`, the label
/// being the dataset label or else the top target).
pub fn label_inputs(state: &ClusterState, records: &[ClusterRecords]) -> Vec<LabelInput> {
    let by_id: BTreeMap<&str, &ClusterRecords> =
        records.iter().map(|r| (r.cluster.as_str(), r)).collect();
    state
        .clusters
        .iter()
        .map(|c| {
            let mut top: Vec<_> = by_id
                .get(c.id.as_str())
                .map(|cr| cr.present().collect())
                .unwrap_or_default();
            top.sort_by(|a, b| {
                b.abs_attribution
                    .total_cmp(&a.abs_attribution)
                    .then(a.prompt_id.cmp(&b.prompt_id))
            });
            let top_prompts = top
                .iter()
                .take(10)
                .map(|r| {
                    let to = r
                        .label
                        .clone()
                        .or_else(|| r.targets.first().map(|t| t.trim().to_string()))
                        .unwrap_or_default();
                    format!("{} → {to}", r.prompt.trim())
                })
                .collect();
            LabelInput {
                id: c.id.clone(),
                input: c.input_description.clone(),
                output: c.output_description.clone(),
                inhibitory: c.attribution < 0.0,
                top_prompts,
                units: Vec::new(),
            }
        })
        .collect()
}

/// The fallback label of a cluster (see the module docs).
pub fn fallback_label(cr: Option<&ClusterRecords>, id: &str, inhibitory: bool) -> String {
    let mut sums: BTreeMap<String, f32> = BTreeMap::new();
    if let Some(cr) = cr {
        for r in cr.present() {
            for (t, &v) in r.tokens.iter().zip(&r.values) {
                let w = t.trim();
                if v > 0.0 && w.chars().any(char::is_alphanumeric) && validate_label(w).is_ok() {
                    *sums.entry(w.to_string()).or_default() += v;
                }
            }
        }
    }
    let word = sums
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(w, _)| w)
        .unwrap_or_else(|| id.to_lowercase());
    if inhibitory {
        format!("not[{word}]")
    } else {
        word
    }
}

fn request(messages: Vec<adag_llm::Message>, attempt: u32, model: &Option<String>) -> ChatRequest {
    let mut req = ChatRequest::new(messages);
    req.model = model.clone();
    // Greedy first; a retry samples so that it can differ from the unusable reply.
    req.temperature = if attempt == 0 { 0.0 } else { 1.0 };
    req.max_tokens = 64;
    req.sample_index = attempt;
    req
}

/// How [`label_clusters`] asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOptions {
    /// Per cluster or batched.
    pub mode: LabelMode,
    /// Model name sent to the endpoint (`None`: the backend's default).
    pub model: Option<String>,
    /// Per-cluster mode: first requests in flight at once.
    pub concurrency: usize,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            mode: LabelMode::PerCluster,
            model: None,
            concurrency: 4,
        }
    }
}

/// Labels every cluster of `inputs`; `records` feed the fallback.
pub fn label_clusters(
    inputs: &[LabelInput],
    records: &[ClusterRecords],
    backend: &dyn LlmBackend,
    meter: &Meter,
    opts: &LabelOptions,
    mut on_done: impl FnMut(&LabelResult),
) -> Result<Vec<LabelResult>> {
    let model = &opts.model;
    let by_id: BTreeMap<&str, &ClusterRecords> =
        records.iter().map(|r| (r.cluster.as_str(), r)).collect();
    let fallback = |c: &LabelInput, problems: Vec<String>| LabelResult {
        cluster: c.id.clone(),
        label: fallback_label(by_id.get(c.id.as_str()).copied(), &c.id, c.inhibitory),
        source: LabelSource::Fallback,
        problems,
    };
    let mut out = Vec::new();
    match opts.mode {
        LabelMode::PerCluster | LabelMode::Rich => {
            // First attempts concurrently; retries of unusable replies one by one.
            let first: Vec<(ChatRequest, String)> = inputs
                .iter()
                .map(|c| {
                    (
                        request(prompts::label_one(c), 0, model),
                        format!("labelling {}", c.id),
                    )
                })
                .collect();
            let firsts = meter.chat_all(backend, &first, opts.concurrency);
            for (c, first_reply) in inputs.iter().zip(firsts) {
                let mut problems = Vec::new();
                let mut result = None;
                let mut first_reply = Some(first_reply);
                for attempt in 0..LABEL_ATTEMPTS {
                    let reply = first_reply.take().unwrap_or_else(|| {
                        let req = request(prompts::label_one(c), attempt, model);
                        meter.chat(backend, &req, &format!("labelling {}", c.id))
                    });
                    let reply = match reply {
                        Ok(r) => r,
                        Err(e) if is_request_specific(&e) => {
                            // The same prompt would be rejected again.
                            meter.unusable();
                            problems.push(format!("rejected: {e}"));
                            break;
                        }
                        Err(e) => return Err(e),
                    };
                    match parse_label(&reply.text) {
                        Ok(l) => {
                            result = Some(LabelResult {
                                cluster: c.id.clone(),
                                label: l.text,
                                source: LabelSource::Llm,
                                problems: problems.clone(),
                            });
                            break;
                        }
                        Err(u) => {
                            meter.unusable();
                            problems.push(u.to_string());
                        }
                    }
                }
                let r = result.unwrap_or_else(|| fallback(c, problems));
                on_done(&r);
                out.push(r);
            }
        }
        LabelMode::Batch => {
            let ids: Vec<String> = inputs.iter().map(|c| c.id.clone()).collect();
            let mut req = request(prompts::label_batch(inputs), 0, model);
            req.max_tokens = 32 * inputs.len() as u32 + 64;
            let parsed = match meter.chat(backend, &req, "labelling all clusters") {
                Ok(reply) => parse_label_batch(&reply.text, &ids),
                Err(e) if is_request_specific(&e) => ids
                    .iter()
                    .map(|id| (id.clone(), Err(Unusable::Rejected(e.to_string()))))
                    .collect(),
                Err(e) => return Err(e),
            };
            for c in inputs {
                let r = match &parsed[&c.id] {
                    Ok(l) => LabelResult {
                        cluster: c.id.clone(),
                        label: l.text.clone(),
                        source: LabelSource::Llm,
                        problems: Vec::new(),
                    },
                    Err(u) => {
                        meter.unusable();
                        fallback(c, vec![u.to_string()])
                    }
                };
                on_done(&r);
                out.push(r);
            }
        }
    }
    Ok(out)
}
