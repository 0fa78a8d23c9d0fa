//! The description pipeline on a small hand-made circuit: records, the exact prompt texts,
//! reply handling over rounds, labels, and results in the cluster-state file.

use std::sync::Mutex;

use adag_analysis::ClusterState;
use adag_circuit::{Circuit, NodeRow, PromptRow};
use adag_describe::exemplars::Sign;
use adag_describe::label::{LabelOptions, LabelSource};
use adag_describe::prompts::{self, INPUT_EXPLAINER_SYSTEM, OUTPUT_EXPLAINER_SYSTEM};
use adag_describe::rules::RuleBackend;
use adag_describe::*;
use adag_llm::{ChatReply, ChatRequest, LlmBackend, Message, Role, Usage};

const BOS: u32 = 0;

fn vocab(id: u32) -> &'static str {
    match id {
        0 => "<bos>",
        10 => "The",
        11 => " capital",
        12 => " of",
        13 => " Texas",
        14 => " is",
        20 => " Austin",
        21 => " Dallas",
        _ => "?",
    }
}

fn prompt(id: u64, prompt: &str, label: &str, tokens: &[u32]) -> PromptRow {
    PromptRow {
        prompt_id: id,
        label: Some(label.into()),
        prompt: prompt.into(),
        seed: None,
        token_ids: tokens.to_vec(),
        token_strings: tokens.iter().map(|&t| vocab(t).to_string()).collect(),
        answers: vec![],
        target_ids: vec![20, 21],
        target_strings: vec![" Austin".into(), " Dallas".into()],
        target_probs: vec![0.6, 0.1],
        target_logits: vec![5.0, 3.0],
        goal: 8.0,
        traced_position: tokens.len() as u32 - 1,
        predicted: true,
    }
}

#[allow(clippy::too_many_arguments)]
fn node(
    prompt_id: u64,
    layer: i32,
    position: u32,
    neuron: u32,
    activation: f32,
    attribution: f32,
    input: &[f32],
    output: &[f32],
) -> NodeRow {
    NodeRow {
        prompt_id,
        label: None,
        layer,
        position,
        neuron,
        activation,
        attribution,
        polarity: adag_circuit::circuit::polarity(activation),
        input_profile: input.to_vec(),
        output_profile: output.to_vec(),
    }
}

/// Two prompts; C0 = {L1 N5 +, L2 N7 +} is traced on prompt 0 only, C1 = {L3 N9 +} on
/// prompt 1 only, with negative attribution (inhibitory).
fn fixture() -> (Circuit, ClusterState) {
    let circuit = Circuit {
        prompts: vec![
            prompt(
                0,
                "What is the capital of Texas?",
                "texas",
                &[BOS, 10, 11, 12, 13, 14],
            ),
            prompt(1, "Where is Dallas?", "dallas", &[BOS, 10, 21, 14]),
        ],
        nodes: vec![
            node(
                0,
                1,
                4,
                5,
                2.0,
                0.3,
                &[0.05, 0.0, 0.1, 0.0, 0.8, 0.05],
                &[0.4, -0.2],
            ),
            node(
                0,
                2,
                5,
                7,
                1.0,
                0.1,
                &[0.0, 0.0, 0.0, 0.0, 0.1, 0.0],
                &[0.1, 0.0],
            ),
            node(1, 3, 2, 9, 1.5, -0.2, &[0.0, 0.2, 0.7, 0.1], &[-0.3, 0.0]),
            // An embedding node: never part of a cluster.
            node(1, -1, 2, 21, 1.0, 0.5, &[], &[]),
        ],
        edges: vec![],
    };
    let state: ClusterState = serde_json::from_value(serde_json::json!({
        "format": "adag-cluster-state", "version": 1, "circuit": "fixture",
        "options": {"k": 2, "similarity": {"combine": "harmonic", "weight_by_attribution": false},
                    "seed": 42, "n_init": 10},
        "cluster_map": {"1,5,1": "C0", "2,7,1": "C0", "3,9,1": "C1"},
        "clusters": [
            {"id": "C0", "name": "C0", "units": ["1,5,1", "2,7,1"], "attribution": 0.4,
             "abs_attribution": 0.4, "n_prompts": 1},
            {"id": "C1", "name": "C1", "units": ["3,9,1"], "attribution": -0.2,
             "abs_attribution": 0.2, "n_prompts": 1}
        ],
        "diagnostics": {"eigenvalues": [1.0, 0.5], "eigengap": 0.5, "suggested_k": 1,
                        "silhouette": 0.0, "intra_similarity": 0.0, "inter_similarity": 0.0,
                        "intra_inter_ratio": null, "sign_conflict_rate": 0.0,
                        "eigensolver": "dense", "seconds": {}}
    }))
    .unwrap();
    (circuit, state)
}

fn records() -> Vec<ClusterRecords> {
    let (c, s) = fixture();
    let opts = RecordOptions {
        hidden_ids: [BOS].into_iter().collect(),
        ..Default::default()
    };
    build_records(&c, &s, &opts).unwrap()
}

/// Answers by a function of the request and keeps every request.
struct Recorder<F: Fn(&ChatRequest, usize) -> String + Send + Sync> {
    answer: F,
    seen: Mutex<Vec<ChatRequest>>,
}

impl<F: Fn(&ChatRequest, usize) -> String + Send + Sync> Recorder<F> {
    fn new(answer: F) -> Self {
        Recorder {
            answer,
            seen: Mutex::new(Vec::new()),
        }
    }
    fn requests(&self) -> Vec<ChatRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl<F: Fn(&ChatRequest, usize) -> String + Send + Sync> LlmBackend for Recorder<F> {
    fn describe(&self) -> String {
        "recorder".into()
    }
    fn supports_logprobs(&self) -> bool {
        false
    }
    fn chat(&self, req: &ChatRequest) -> adag_llm::Result<ChatReply> {
        let mut seen = self.seen.lock().unwrap();
        let n = seen.len();
        seen.push(req.clone());
        Ok(ChatReply {
            text: (self.answer)(req, n),
            logprobs: vec![],
            finish_reason: Some("stop".into()),
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
            },
            cached: false,
        })
    }
}

fn system_of(req: &ChatRequest) -> &str {
    req.messages
        .iter()
        .find(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .unwrap_or("")
}

/// Predicts 10 at tokens the explanation names, 0 elsewhere; outputs likewise.
struct KeywordSimulator;

impl Simulator for KeywordSimulator {
    fn describe(&self) -> String {
        "keyword".into()
    }
    fn simulate_tokens(&self, e: &str, rs: &[&ActivationRecord]) -> Result<Vec<Vec<f32>>> {
        Ok(rs
            .iter()
            .map(|r| {
                r.tokens
                    .iter()
                    .map(|t| if e.contains(t.trim()) { 10.0 } else { 0.0 })
                    .collect()
            })
            .collect())
    }
    fn simulate_outputs(&self, e: &str, rs: &[&ActivationRecord]) -> Result<Vec<Vec<f32>>> {
        Ok(rs
            .iter()
            .map(|r| {
                r.targets
                    .iter()
                    .map(|t| if e.contains(t.trim()) { 10.0 } else { 0.0 })
                    .collect()
            })
            .collect())
    }
}

fn one_sample() -> DescribeOptions {
    DescribeOptions {
        samples: 1,
        ..Default::default()
    }
}

#[test]
fn records_hide_bos_and_sum_the_cluster_units() {
    let rs = records();
    assert_eq!(rs.len(), 2);
    let c0 = &rs[0];
    assert_eq!(c0.cluster, "C0");
    assert_eq!(c0.records.len(), 2, "one record per prompt");
    let r = &c0.records[0];
    assert!(r.present);
    assert_eq!(r.tokens, ["The", " capital", " of", " Texas", " is"]);
    assert_eq!(r.positions, [1, 2, 3, 4, 5], "BOS at position 0 is hidden");
    let want = [0.0, 0.1, 0.0, 0.9, 0.05];
    for (v, w) in r.values.iter().zip(want) {
        assert!((v - w).abs() < 1e-6, "{:?}", r.values);
    }
    assert!((r.outputs[0] - 0.5).abs() < 1e-6 && (r.outputs[1] + 0.2).abs() < 1e-6);
    assert!((r.attribution - 0.4).abs() < 1e-6);
    assert_eq!(r.text(), "The capital of Texas is");
    // Absent on prompt 1: a zero record of that prompt's tokens.
    let r1 = &c0.records[1];
    assert!(!r1.present);
    assert_eq!(r1.tokens, ["The", " Dallas", " is"]);
    assert!(r1.values.iter().chain(&r1.outputs).all(|&v| v == 0.0));
    assert!(rs[1].records[1].present && !rs[1].records[0].present);
}

#[test]
fn records_can_weight_profiles_by_attribution() {
    let (c, s) = fixture();
    let opts = RecordOptions {
        hidden_ids: [BOS].into_iter().collect(),
        weight_by_attribution: true,
    };
    let rs = build_records(&c, &s, &opts).unwrap();
    // C0 on prompt 0: 0.3 × [0, 0.1, 0, 0.8, 0.05] + 0.1 × [0, 0, 0, 0.1, 0].
    let want = [0.0, 0.03, 0.0, 0.25, 0.015];
    for (v, w) in rs[0].records[0].values.iter().zip(want) {
        assert!((v - w).abs() < 1e-6, "{:?}", rs[0].records[0].values);
    }
    // Outputs are not weighted.
    assert!((rs[0].records[0].outputs[0] - 0.5).abs() < 1e-6);
}

#[test]
fn a_circuit_that_does_not_match_the_state_is_refused_with_the_prompt_named() {
    let (mut c, s) = fixture();
    c.nodes[0].input_profile = vec![0.1; 9];
    let e = build_records(&c, &s, &RecordOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("prompt 0") && msg.contains("C0") && msg.contains("9 positions"),
        "{msg}"
    );
}

#[test]
fn explainer_prompts_are_exactly_as_specified() {
    let rs = records();
    let backend = Recorder::new(|req, _| {
        if system_of(req) == INPUT_EXPLAINER_SYSTEM {
            "[DESCRIPTION]: the word Texas".into()
        } else {
            "[EXPLANATION]: promotes Austin".into()
        }
    });
    let meter = Meter::new();
    let d = describe_cluster(&rs[0], &backend, &KeywordSimulator, &meter, &one_sample()).unwrap();
    let reqs = backend.requests();
    assert_eq!(
        reqs.len(),
        2,
        "one input (pos; no negative values) and one output call"
    );

    // Input side: the only present record, Texas above the top quantile, BOS not shown.
    let input = &reqs[0];
    assert_eq!(
        input.messages,
        vec![
            Message::system(INPUT_EXPLAINER_SYSTEM),
            Message::user("Excerpt 1:The capital of {{Texas}} is\n"),
        ]
    );
    assert_eq!(
        (input.temperature, input.max_tokens, input.sample_index),
        (1.0, 100, 0)
    );

    // Output side: shares 0.5 and -0.2 scaled by the largest |share| (0.5) to 10 and -4.
    let output = &reqs[1];
    assert_eq!(
        output.messages,
        vec![
            Message::system(OUTPUT_EXPLAINER_SYSTEM),
            Message::user(
                "1:\nPrompt: 'The capital of Texas is'\nContinuations: [(' Austin', 10), (' Dallas', -4)]\n"
            ),
        ]
    );

    // Pools, explanations and notes say what happened.
    assert_eq!(d.explanations.len(), 2);
    let best_in = d.best_input.as_ref().unwrap();
    assert_eq!(best_in.text, "the word Texas");
    assert_eq!(best_in.sign, Some(Sign::Pos));
    assert_eq!(best_in.excerpts, ["The capital of {{Texas}} is"]);
    assert_eq!(best_in.exemplars, [0]);
    assert!(
        d.notes.iter().any(|n| n.contains("input neg")),
        "{:?}",
        d.notes
    );
    // The input side is scored on prompt 1 (held out, cluster absent: constant truth), so its
    // r is undefined; the output side is scored on the record it was shown (pool of one).
    let input_pool = d.pools.iter().find(|p| p.side == Side::Input).unwrap();
    assert_eq!(
        (input_pool.explain.clone(), input_pool.scored.clone()),
        (vec![0], vec![1])
    );
    assert_eq!(best_in.score, None);
    let out_pool = d.pools.iter().find(|p| p.side == Side::Output).unwrap();
    assert!(out_pool.scored_on_shown);
    // Keyword simulation [10, 0] against the truth [10, -4]: r = 1.
    assert!((d.best_output.as_ref().unwrap().score.unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(
        d.combined().unwrap(),
        "the word Texas | promotes Austin",
        "reference format: input | output"
    );
    let t = meter.totals();
    assert_eq!((t.calls, t.usage.input_tokens), (2, 20));
}

#[test]
fn refused_and_malformed_replies_are_asked_again_in_later_rounds() {
    let rs = records();
    let backend = Recorder::new(|req, n| {
        if system_of(req) != INPUT_EXPLAINER_SYSTEM {
            return "[EXPLANATION]: x".into();
        }
        match n {
            0 => "I'm sorry, but I can't help with that.".into(),
            1 => "Texas.".into(),
            _ => "Some thoughts.\n[DESCRIPTION]: the state Texas".into(),
        }
    });
    let opts = DescribeOptions {
        output_side: false,
        ..one_sample()
    };
    let meter = Meter::new();
    let d = describe_cluster(&rs[0], &backend, &KeywordSimulator, &meter, &opts).unwrap();
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs.iter().map(|r| r.sample_index).collect::<Vec<_>>(),
        [0, 1, 2],
        "each retry is a new sample for the cache"
    );
    assert_eq!(d.unusable.len(), 2);
    assert!(matches!(d.unusable[0].reason, parse::Unusable::Refused(_)));
    assert!(matches!(
        d.unusable[1].reason,
        parse::Unusable::Malformed(_)
    ));
    assert_eq!(d.explanations.len(), 1);
    assert_eq!(d.explanations[0].text, "the state Texas");
    assert_eq!(d.explanations[0].sample_index, 2);
    assert_eq!(meter.totals().unusable_replies, 2);

    // Never usable: stops after max_rounds rounds of the missing samples.
    let garbage = Recorder::new(|_, _| "no idea".to_string());
    let opts = DescribeOptions {
        samples: 2,
        max_rounds: 3,
        output_side: false,
        ..Default::default()
    };
    let d = describe_cluster(&rs[0], &garbage, &KeywordSimulator, &Meter::new(), &opts).unwrap();
    assert_eq!(garbage.requests().len(), 6);
    assert!(d.explanations.is_empty() && d.best_input.is_none());
    assert_eq!(d.unusable.len(), 6);
}

#[test]
fn label_prompt_is_exact_and_labels_are_validated_with_a_fallback() {
    let rs = records();
    let (_, mut state) = fixture();
    state.clusters[0].input_description = Some("the token \"Texas\"".into());
    state.clusters[0].output_description = Some("promotes \"Austin\"".into());
    let inputs = label_inputs(&state, &rs);
    assert_eq!(inputs.len(), 2);
    assert!(!inputs[0].inhibitory && inputs[1].inhibitory);
    let msgs = prompts::label_one(&inputs[0]);
    assert_eq!(msgs[0], Message::system(prompts::label_system()));
    assert_eq!(
        msgs[1].content,
        "Group C0\nInput side: the token \"Texas\"\nOutput side: promotes \"Austin\"\n\
         Effect on the prediction: excitatory\nTop prompts:\n\
         - What is the capital of Texas? → texas\n\nAnswer with the label only."
    );
    for rule in [
        "lowercase",
        "not[label]",
        "focus, answer, response",
        "Texas",
    ] {
        assert!(
            msgs[0].content.contains(rule),
            "system prompt lacks {rule:?}"
        );
    }

    // Per cluster: C0 answers a banned word twice then a good label; C1 never answers well.
    let backend = Recorder::new(|req, _| {
        let user = &req.messages[1].content;
        if user.starts_with("Group C0") {
            if req.sample_index < 2 {
                "answer lookup".into()
            } else {
                "Texas".into()
            }
        } else {
            "I cannot do that.".into()
        }
    });
    let meter = Meter::new();
    let labels = label_clusters(
        &inputs,
        &rs,
        &backend,
        &meter,
        &LabelOptions {
            mode: LabelMode::PerCluster,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(labels[0].label, "Texas");
    assert_eq!(labels[0].source, LabelSource::Llm);
    assert_eq!(labels[0].problems.len(), 2);
    // C1 falls back to its strongest input token, negated (inhibitory): " Dallas" has 0.7.
    assert_eq!(labels[1].label, "not[Dallas]");
    assert_eq!(labels[1].source, LabelSource::Fallback);
    assert_eq!(backend.requests().len(), 3 + 3);

    // Batch: one call, one line per cluster; a missing line falls back.
    let batch = Recorder::new(|_, _| "C0: Texas\n".to_string());
    let labels = label_clusters(
        &inputs,
        &rs,
        &batch,
        &Meter::new(),
        &LabelOptions {
            mode: LabelMode::Batch,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(batch.requests().len(), 1);
    let user = &batch.requests()[0].messages[1].content;
    assert!(user.contains("Group C0\n") && user.contains("Group C1\n"));
    assert!(user.contains("`GROUP_ID: label`"));
    assert_eq!(labels[0].label, "Texas");
    assert_eq!(labels[1].source, LabelSource::Fallback);
}

#[test]
fn results_go_into_the_state_file_and_the_descriptions_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut state) = fixture();
    let state_path = dir.path().join("clusters.json");
    state.write(&state_path).unwrap();
    let rs = records();
    let meter = Meter::new();
    let sim = ChatSimulator::new(&RuleBackend, &meter, None);
    let ds: Vec<ClusterDescription> = rs
        .iter()
        .map(|cr| describe_cluster(cr, &RuleBackend, &sim, &meter, &one_sample()).unwrap())
        .collect();
    apply_descriptions(&mut state, &ds);
    let inputs = label_inputs(&state, &rs);
    let labels = label_clusters(
        &inputs,
        &rs,
        &RuleBackend,
        &meter,
        &LabelOptions {
            mode: LabelMode::PerCluster,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    apply_labels(&mut state, &labels);
    state.write(&state_path).unwrap();

    let back = ClusterState::read(&state_path).unwrap();
    let c0 = &back.clusters[0];
    assert_eq!(c0.input_description.as_deref(), Some("the token \"Texas\""));
    assert_eq!(
        c0.output_description.as_deref(),
        Some("promotes \"Austin\"")
    );
    assert_eq!(
        c0.description.as_deref(),
        Some("the token \"Texas\" | promotes \"Austin\"")
    );
    assert_eq!(c0.label.as_deref(), Some("Texas"));
    assert_eq!(back.clusters[1].label.as_deref(), Some("not[Dallas]"));

    let path = DescriptionsFile::default_path(&state_path);
    assert_eq!(path, dir.path().join("clusters.descriptions.json"));
    let mut f = DescriptionsFile::read_or_new(&path, dir.path(), &state_path).unwrap();
    for (d, l) in ds.iter().zip(&labels) {
        let e = f.clusters.entry(d.cluster.clone()).or_default();
        e.description = Some(d.clone());
        e.label = Some(l.clone());
    }
    f.totals = meter.totals();
    f.write(&path).unwrap();
    let g = DescriptionsFile::read_or_new(&path, dir.path(), &state_path).unwrap();
    // (Scores compared with a tolerance: JSON float parsing may move the last bit.)
    assert_eq!(
        f.clusters.keys().collect::<Vec<_>>(),
        g.clusters.keys().collect::<Vec<_>>()
    );
    for (a, b) in f.clusters.values().zip(g.clusters.values()) {
        assert_eq!(a.label, b.label);
        let (da, db) = (
            a.description.as_ref().unwrap(),
            b.description.as_ref().unwrap(),
        );
        assert_eq!(da.pools, db.pools);
        for (x, y) in da.explanations.iter().zip(&db.explanations) {
            assert_eq!(
                (&x.text, &x.excerpts, &x.exemplars),
                (&y.text, &y.excerpts, &y.exemplars)
            );
            match (x.score, y.score) {
                (Some(p), Some(q)) => assert!((p - q).abs() < 1e-12),
                (p, q) => assert_eq!(p, q),
            }
        }
    }
    assert_eq!(f.totals, g.totals);
    assert!(g.totals.calls > 0);
    // No temporary files left behind by the atomic writes.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A damaged descriptions file is refused, naming it.
    std::fs::write(&path, "{\"format\": 3}").unwrap();
    let e = DescriptionsFile::read_or_new(&path, dir.path(), &state_path).unwrap_err();
    assert!(e.to_string().contains("clusters.descriptions.json"), "{e}");
}

/// Fails every call with the given HTTP status.
struct Rejecting(u16);

impl LlmBackend for Rejecting {
    fn describe(&self) -> String {
        "rejecting".into()
    }
    fn supports_logprobs(&self) -> bool {
        false
    }
    fn chat(&self, _: &ChatRequest) -> adag_llm::Result<ChatReply> {
        Err(adag_llm::LlmError::Rejected {
            endpoint: "test".into(),
            status: self.0,
            message: "no".into(),
        })
    }
}

#[test]
fn a_request_the_endpoint_rejects_is_unusable_but_a_bad_key_stops_the_run() {
    let rs = records();
    let opts = DescribeOptions {
        max_rounds: 2,
        ..one_sample()
    };
    // 400 (e.g. longer than the model's context): recorded, the run goes on.
    let d = describe_cluster(
        &rs[0],
        &Rejecting(400),
        &KeywordSimulator,
        &Meter::new(),
        &opts,
    )
    .unwrap();
    assert!(d.explanations.is_empty());
    assert_eq!(d.unusable.len(), 4, "2 rounds × (input pos, output)");
    assert!(d
        .unusable
        .iter()
        .all(|u| matches!(u.reason, parse::Unusable::Rejected(_))));
    // 401: every request would fail the same way; the error names the cluster and backend.
    let e = describe_cluster(
        &rs[0],
        &Rejecting(401),
        &KeywordSimulator,
        &Meter::new(),
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cluster C0") && e.contains("rejecting") && e.contains("401"),
        "{e}"
    );
    // Labels: a rejected prompt falls back at once.
    let inputs = label_inputs(&fixture().1, &rs);
    let labels = label_clusters(
        &inputs,
        &rs,
        &Rejecting(400),
        &Meter::new(),
        &LabelOptions {
            mode: LabelMode::PerCluster,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert!(labels.iter().all(|l| l.source == LabelSource::Fallback));
    assert_eq!(labels[0].problems.len(), 1);
}

/// Replies with fixed text and logprob tokens, and says it supports logprobs.
struct WithLogprobs {
    text: String,
    tokens: Vec<adag_llm::TokenLogprob>,
    seen: Mutex<Vec<ChatRequest>>,
}

impl LlmBackend for WithLogprobs {
    fn describe(&self) -> String {
        "logprobs".into()
    }
    fn supports_logprobs(&self) -> bool {
        true
    }
    fn chat(&self, req: &ChatRequest) -> adag_llm::Result<ChatReply> {
        self.seen.lock().unwrap().push(req.clone());
        Ok(ChatReply {
            text: self.text.clone(),
            logprobs: self.tokens.clone(),
            finish_reason: Some("stop".into()),
            usage: Usage::default(),
            cached: false,
        })
    }
}

fn lp(token: &str, top: &[(&str, f32)]) -> adag_llm::TokenLogprob {
    adag_llm::TokenLogprob {
        token: token.into(),
        logprob: 0.0,
        top: top.iter().map(|(t, p)| (t.to_string(), p.ln())).collect(),
    }
}

#[test]
fn chat_simulator_uses_expected_values_from_top_logprobs_and_prompts_exactly() {
    let rs = records();
    let r = &rs[1].records[1]; // C1 on prompt 1: "The", " Dallas", " is"
    let text = "(0, 'The', 3)\n(1, ' Dallas', 7)\n(2, ' is', 0)\n";
    let backend = WithLogprobs {
        text: text.into(),
        tokens: vec![
            lp("(0, 'The', ", &[]),
            lp("3", &[("3", 0.5), (" 5", 0.25), ("x", 0.25)]),
            lp(")\n(1, ' Dallas', ", &[]),
            lp("7", &[]),
            lp(")\n(2, ' is', ", &[]),
            lp("0", &[("0", 0.9), ("10", 0.1)]),
            lp(")\n", &[]),
        ],
        seen: Mutex::new(Vec::new()),
    };
    let meter = Meter::new();
    let sim = ChatSimulator::new(&backend, &meter, None);
    let v = sim.simulate_tokens("the word Dallas", &[r]).unwrap();
    // 3 and 5 renormalised over the score tokens; 7 has no alternatives (its number); 0/10.
    let want = [(3.0 * 0.5 + 5.0 * 0.25) / 0.75, 7.0, 1.0];
    for (a, b) in v[0].iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{:?} vs {want:?}", v[0]);
    }
    let req = &backend.seen.lock().unwrap()[0];
    assert_eq!((req.temperature, req.top_logprobs), (0.0, Some(20)));
    assert_eq!(
        req.messages[1].content,
        "Description: the word Dallas\n\nTokens:\n(0, 'The', [blank])\n(1, ' Dallas', [blank])\n(2, ' is', [blank])\n"
    );
    assert_eq!(meter.totals().missing_predictions, 0);

    // A reply with a line missing and one out of range: those blanks count as 0 and are
    // counted.
    let partial = WithLogprobs {
        text: "(0, 'The', 4)\n(2, ' is', 12)\n".into(),
        tokens: vec![],
        seen: Mutex::new(Vec::new()),
    };
    let meter = Meter::new();
    let v = ChatSimulator::new(&partial, &meter, None)
        .simulate_tokens("x", &[r])
        .unwrap();
    assert_eq!(v[0], [4.0, 0.0, 0.0]);
    assert_eq!(meter.totals().missing_predictions, 2);
}

#[test]
fn pad_tokens_are_never_shown_or_highlighted() {
    const PAD: u32 = 2;
    let (mut c, s) = fixture();
    // A circuit whose prompt 1 starts with a pad (as a padded batch would have it) that
    // carries a large profile value: it must neither be shown nor drive a highlight.
    c.prompts[1].token_ids[0] = PAD;
    c.prompts[1].token_strings[0] = "<pad>".into();
    c.nodes[2].input_profile = vec![5.0, 0.2, 0.7, 0.1];
    let opts = RecordOptions {
        hidden_ids: [BOS, PAD].into_iter().collect(),
        ..Default::default()
    };
    let rs = build_records(&c, &s, &opts).unwrap();
    for cr in &rs {
        for r in &cr.records {
            assert!(!r.token_ids.contains(&PAD) && !r.tokens.iter().any(|t| t.contains("pad")));
        }
    }
    let backend = Recorder::new(|_, _| "[DESCRIPTION]: x".to_string());
    let opts = DescribeOptions {
        output_side: false,
        ..one_sample()
    };
    describe_cluster(&rs[1], &backend, &KeywordSimulator, &Meter::new(), &opts).unwrap();
    let user = &backend.requests()[0].messages[1].content;
    assert_eq!(user, "Excerpt 1:The {{Dallas}} is\n");
}

#[test]
fn chat_simulator_can_put_several_records_in_one_call() {
    let rs = records();
    let recs: Vec<&ActivationRecord> = vec![&rs[0].records[0], &rs[0].records[1]];
    // Fills every blank with its line index mod 11.
    let backend = Recorder::new(|req, _| {
        let user = &req.messages[1].content;
        user.lines()
            .filter(|l| l.ends_with("[blank])"))
            .map(|l| {
                let i: usize = l[1..l.find(',').unwrap()].parse().unwrap();
                format!("{}\n", l.replace("[blank]", &(i % 11).to_string()))
            })
            .collect()
    });
    let meter = Meter::new();
    let sim = ChatSimulator::new(&backend, &meter, None).with_records_per_call(2);
    let v = sim.simulate_tokens("x", &recs).unwrap();
    assert_eq!(backend.requests().len(), 1);
    assert_eq!(
        backend.requests()[0].messages[1].content,
        "Description: x\n\nTokens:\nExcerpt 1:\n(0, 'The', [blank])\n(1, ' capital', [blank])\n\
         (2, ' of', [blank])\n(3, ' Texas', [blank])\n(4, ' is', [blank])\nExcerpt 2:\n\
         (5, 'The', [blank])\n(6, ' Dallas', [blank])\n(7, ' is', [blank])\n"
    );
    assert_eq!(v, vec![vec![0.0, 1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0, 7.0]]);
    assert_eq!(meter.totals().missing_predictions, 0);
    // One record per call (the default) gives the same predictions up to numbering.
    let one = Recorder::new(|req, n| {
        let user = &req.messages[1].content;
        user.lines()
            .filter(|l| l.ends_with("[blank])"))
            .map(|l| {
                let i: usize = l[1..l.find(',').unwrap()].parse().unwrap();
                let global = if n == 0 { i } else { i + 5 };
                format!("{}\n", l.replace("[blank]", &(global % 11).to_string()))
            })
            .collect()
    });
    let sim = ChatSimulator::new(&one, &meter, None).with_concurrency(1);
    assert_eq!(sim.simulate_tokens("x", &recs).unwrap(), v);
    assert_eq!(one.requests().len(), 2);
}

/// A neg-side input description carries its sign into the state file, the combined
/// description (what the viewer shows) and the label prompt.
#[test]
fn a_neg_side_description_keeps_its_sign_everywhere() {
    let (_, mut state) = fixture();
    let ex = |side, sign, text: &str| adag_describe::Explanation {
        side,
        sign,
        text: text.into(),
        sample_index: 0,
        score: Some(0.3),
        n_scored: 10,
        exemplars: vec![],
        excerpts: vec![],
        threshold: None,
    };
    let neg = ex(
        Side::Input,
        Some(adag_describe::exemplars::Sign::Neg),
        "the token \"is\"",
    );
    let out = ex(Side::Output, None, "promotes \"Austin\"");
    let d = ClusterDescription {
        cluster: "C0".into(),
        explanations: vec![neg.clone(), out.clone()],
        best_input: Some(neg),
        best_output: Some(out),
        pools: vec![],
        unusable: vec![],
        notes: vec![],
    };
    apply_descriptions(&mut state, &[d]);
    let c0 = &state.clusters[0];
    let marked = format!("{}the token \"is\"", adag_describe::describe::NEG_MARKER);
    assert_eq!(c0.input_description.as_deref(), Some(marked.as_str()));
    assert_eq!(
        c0.description.as_deref(),
        Some(format!("{marked} | promotes \"Austin\"").as_str())
    );
    let inputs = label_inputs(&state, &records());
    let msgs = prompts::label_one(&inputs[0]);
    assert!(
        msgs[1].content.contains(&format!("Input side: {marked}\n")),
        "{}",
        msgs[1].content
    );
    assert!(msgs[0]
        .content
        .contains(adag_describe::describe::NEG_MARKER.trim_end()));
}
