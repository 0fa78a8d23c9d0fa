//! `describe_unit`: a feature's dashboard exemplars (the demo transcoders' committed
//! dashboards) reach the explainer highlighted, and its reply becomes the description.

use std::sync::Mutex;

use adag_describe::llm::Meter;
use adag_describe::unit::{describe_unit, unit_excerpts};
use adag_llm::{ChatReply, ChatRequest, LlmBackend, Role, Usage};

/// Answers with a fixed description and keeps every request.
struct Mock(Mutex<Vec<ChatRequest>>);

impl LlmBackend for Mock {
    fn describe(&self) -> String {
        "mock".into()
    }
    fn supports_logprobs(&self) -> bool {
        false
    }
    fn chat(&self, req: &ChatRequest) -> adag_llm::Result<ChatReply> {
        self.0.lock().unwrap().push(req.clone());
        Ok(ChatReply {
            text: "Thinking...\n[DESCRIPTION]: the word \"state\" in questions about capitals"
                .into(),
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

#[test]
fn the_prompt_carries_the_dashboard_contexts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/demo/transcoders/features");
    // Layer 2 feature 349 (the README's node-panel screenshot); any active unit would do.
    let detail = adag_features::write::read_detail(&dir, 2, 349)
        .unwrap()
        .unwrap();
    let top = detail["examples_quantiles"][0]["examples"]
        .as_array()
        .unwrap();
    assert!(!top.is_empty());
    let mock = Mock(Mutex::new(Vec::new()));
    let meter = Meter::new();
    let d = describe_unit(&mock, &meter, &detail, Some("m".into()), 5).unwrap();
    assert_eq!(d.text, "the word \"state\" in questions about capitals");
    let reqs = mock.0.lock().unwrap();
    assert_eq!(reqs.len(), 1);
    let user = reqs[0]
        .messages
        .iter()
        .find(|m| m.role == Role::User)
        .unwrap()
        .content
        .clone();
    assert_eq!(d.excerpts.len(), top.len().min(5));
    for (i, ex) in top.iter().take(5).enumerate() {
        let toks: Vec<&str> = ex["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        // The excerpt is the example's text with its peak token highlighted.
        let peak = toks[ex["train_token_ind"].as_u64().unwrap() as usize].trim();
        let excerpt = &d.excerpts[i];
        assert_eq!(excerpt.replace("{{", "").replace("}}", ""), toks.concat());
        assert!(excerpt.contains(&format!("{{{{{peak}")), "{excerpt}");
        assert!(
            user.contains(&format!("Excerpt {}:{excerpt}\n", i + 1)),
            "{user}"
        );
    }
    // A unit that never fired cannot be described.
    let mut dead = detail.clone();
    dead["examples_quantiles"][0]["examples"] = serde_json::json!([]);
    assert_eq!(
        unit_excerpts(&dead, 5).unwrap_err().to_string(),
        "dashboard record: the unit was never active on the corpus; nothing to describe"
    );
}
