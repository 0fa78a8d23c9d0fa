//! From a resolved run config to the engine's tracing options, shared by the `adag trace`
//! command and the Python package so both trace with exactly the same settings.

use adag_engine::neuron::{NeuronOptions, RelpRule, LLAMA_31_8B_INSTRUCT_BLACKLIST};

use crate::config::{Resolved, Rule};
use crate::prepare::is_llama31_8b_instruct;

fn engine_rule(r: Rule) -> RelpRule {
    match r {
        Rule::HalfRule => RelpRule::HalfRule,
        Rule::NoHalfRule => RelpRule::NoHalfRule,
        Rule::StopGate => RelpRule::StopGate,
    }
}

/// The engine's options for a resolved run. `model_id` decides whether the model's known
/// neuron blacklist applies; `backward_batch` is seeds per backward pass (no effect on results).
pub fn neuron_options(
    r: &Resolved,
    model_id: Option<&str>,
    backward_batch: usize,
) -> NeuronOptions {
    let mut blacklist = Vec::new();
    if r.apply_blacklist && model_id.is_some_and(is_llama31_8b_instruct) {
        blacklist.extend(LLAMA_31_8B_INSTRUCT_BLACKLIST);
    }
    // An explicit list is always applied; apply_blacklist toggles the model's known list.
    blacklist.extend(r.blacklist.iter().copied());
    NeuronOptions {
        k: r.k,
        percentage_threshold: r.percentage_threshold,
        edge_threshold: r.edge_threshold,
        rule: engine_rule(r.rule),
        center_logits: r.center_logits,
        ignore_bos: r.ignore_bos,
        blacklist,
        batch_size: backward_batch,
    }
}
