//! `adag serve-llm` on the bundled demo model, called through the OpenAI-compatible backend:
//! real inference on both sides. Assertions are properties (agreement between paths, the
//! model's own logits, sortedness), not the current weights' outputs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use adag_llm::local::{log_softmax, LocalBackend, LocalModel};
use adag_llm::openai::OpenAiBackend;
use adag_llm::server::LlmServer;
use adag_llm::{ChatRequest, LlmBackend, Message};
use serde_json::{json, Value};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn model() -> Arc<LocalModel> {
    static M: OnceLock<Arc<LocalModel>> = OnceLock::new();
    M.get_or_init(|| Arc::new(LocalModel::load_default().expect("load the demo model")))
        .clone()
}

/// A prefilled assistant turn, so the demo model (a plain LM, no chat template) continues a
/// sentence instead of ending at once.
fn request() -> ChatRequest {
    let mut r = ChatRequest::new(vec![
        Message::system("You complete sentences."),
        Message::user("Complete it."),
        Message::assistant("The capital of the state containing Dallas is"),
    ]);
    r.max_tokens = 6;
    r.top_logprobs = Some(5);
    r
}

#[test]
fn greedy_reply_matches_in_process_backend_and_the_models_logits() {
    let model = model();
    let server = LlmServer::start(model.clone(), LOCALHOST, 0).unwrap();
    // No model name: the backend asks GET /v1/models.
    let remote =
        OpenAiBackend::new(&server.base_url(), None, None, Duration::from_secs(60)).unwrap();
    assert_eq!(remote.model(), model.name());
    let local = LocalBackend::new(model.clone());
    let req = request();

    let a = remote.chat(&req).unwrap();
    let b = local.chat(&req).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.finish_reason, b.finish_reason);
    assert_eq!(a.usage, b.usage);
    assert_eq!(a.logprobs.len(), b.logprobs.len());
    assert!(
        !a.logprobs.is_empty(),
        "the demo model generated nothing: {a:?}"
    );
    for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
        assert_eq!(x.token, y.token);
        assert!((x.logprob - y.logprob).abs() < 1e-5, "{x:?} vs {y:?}");
    }

    // Independently: one forward pass over prompt + generated tokens, log-softmax per row.
    let prompt = model.prompt_ids(&req.messages).unwrap();
    assert_eq!(a.usage.input_tokens as usize, prompt.len());
    let tok = &model.loaded().tokenizer;
    let mut ids = prompt.clone();
    // Re-derive the generated ids greedily from the full-sequence logits, token by token.
    for (i, t) in a.logprobs.iter().enumerate() {
        let logits = model.loaded().model.logits(&ids).unwrap();
        let row: Vec<f32> = logits.get(ids.len() - 1).unwrap().to_vec1().unwrap();
        let lp = log_softmax(&row);
        let best = (0..lp.len())
            .max_by(|&p, &q| lp[p].total_cmp(&lp[q]).then(q.cmp(&p)))
            .unwrap();
        assert_eq!(
            tok.decode(&[best as u32], false).unwrap(),
            t.token,
            "token {i}"
        );
        assert!(
            (lp[best] - t.logprob).abs() < 1e-4,
            "token {i}: {} vs {}",
            lp[best],
            t.logprob
        );
        // top_logprobs: 5 of them, sorted, <= 0, the greedy token first, matching the logits.
        assert_eq!(t.top.len(), 5);
        assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1), "{:?}", t.top);
        assert!(t.top.iter().all(|(_, l)| *l <= 0.0));
        assert_eq!(t.top[0].0, t.token);
        let mut sorted = lp.clone();
        sorted.sort_by(|p, q| q.total_cmp(p));
        for (k, (_, l)) in t.top.iter().enumerate() {
            assert!((sorted[k] - l).abs() < 1e-4, "token {i} alt {k}");
        }
        ids.push(best as u32);
    }
    // The text is the decoded tokens (up to an EOS, which is not part of it).
    let generated = &ids[prompt.len()..];
    assert_eq!(a.text, tok.decode(generated, true).unwrap());
    assert!(a.usage.output_tokens as usize >= generated.len());
}

#[test]
fn seeded_sampling_is_reproducible_and_stop_strings_cut() {
    let model = model();
    let server = LlmServer::start(model.clone(), LOCALHOST, 0).unwrap();
    let remote = OpenAiBackend::new(
        &server.base_url(),
        Some(model.name()),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    let mut req = request();
    req.temperature = 1.0;
    req.seed = Some(11);
    req.max_tokens = 8;
    let a = remote.chat(&req).unwrap();
    assert_eq!(a.text, remote.chat(&req).unwrap().text);

    // A stop string taken from a greedy reply: the text ends right before it.
    let mut greedy = request();
    greedy.max_tokens = 8;
    let full = remote.chat(&greedy).unwrap().text;
    let chars: Vec<char> = full.chars().collect();
    if chars.len() >= 4 {
        let stop: String = chars[2..4].iter().collect();
        greedy.stop = vec![stop.clone()];
        let cut = remote.chat(&greedy).unwrap();
        assert_eq!(cut.finish_reason.as_deref(), Some("stop"));
        assert_eq!(cut.text, full[..full.find(&stop).unwrap()]);
        assert!(!cut.text.contains(&stop));
    }
}

fn post(url: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

#[test]
fn bad_requests_get_openai_errors() {
    let model = model();
    let server = LlmServer::start(model.clone(), LOCALHOST, 0).unwrap();
    let url = format!("{}/chat/completions", server.base_url());
    let msgs = json!([{"role": "user", "content": "hi"}]);
    for (body, status, needle) in [
        ("{not json".to_string(), 400, "not a valid"),
        (json!({"messages": []}).to_string(), 400, "empty"),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}).to_string(),
            400,
            "messages[0].role",
        ),
        (
            json!({"messages": msgs, "stream": true}).to_string(),
            400,
            "stream",
        ),
        (
            json!({"messages": msgs, "top_logprobs": 3}).to_string(),
            400,
            "logprobs: true",
        ),
        (
            json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}).to_string(),
            400,
            "0..20",
        ),
        (
            json!({"messages": msgs, "temperature": 3}).to_string(),
            400,
            "temperature",
        ),
        (
            json!({"messages": msgs, "max_tokens": 0}).to_string(),
            400,
            "max_tokens",
        ),
        (
            json!({"messages": msgs, "model": "gpt-9"}).to_string(),
            404,
            "gpt-9",
        ),
    ] {
        let (got, v) = post(&url, &body);
        assert_eq!(got, status, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(v["error"]["type"].is_string(), "{v}");
    }
    // A prompt longer than the context is refused, not run.
    if let Some(m) = model.max_positions() {
        let long = "word ".repeat(m * 2);
        let (got, v) = post(
            &url,
            &json!({"messages": [{"role": "user", "content": long}]}).to_string(),
        );
        assert_eq!(got, 400, "{v}");
    }
    let resp = reqwest::blocking::get(format!("http://{}/nope", server.addr())).unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("/nope"));
    // The server still answers after all that.
    let (got, v) = post(
        &url,
        &json!({"messages": msgs, "max_tokens": 2, "temperature": 0}).to_string(),
    );
    assert_eq!(got, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["choices"][0]["logprobs"].is_null());
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
}

#[test]
fn local_backend_from_config_with_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: adag_llm::BackendConfig = "local".parse().unwrap();
    let opts = adag_llm::LlmOptions::default().cache_dir(dir.path());
    let llm = adag_llm::Llm::from_config(&cfg, opts.clone()).unwrap();
    assert!(llm.supports_logprobs());
    // The identity names the weights, so retrained weights do not reuse old replies.
    assert!(
        llm.describe().contains(model().fingerprint()),
        "{}",
        llm.describe()
    );
    let req = request();
    let a = llm.chat(&req).unwrap();
    let b = adag_llm::Llm::from_config(&cfg, opts)
        .unwrap()
        .chat(&req)
        .unwrap();
    assert!(!a.cached && b.cached);
    assert_eq!((a.text, a.logprobs), (b.text, b.logprobs));
}

#[test]
fn logprobs_at_matches_step_by_step_distributions() {
    let model = model();
    let ids = model.prompt_ids(&request().messages).unwrap();
    let positions: Vec<usize> = (0..ids.len()).step_by(3).collect();
    let all = model.logprobs_at(&ids, &positions).unwrap();
    for (p, lp) in positions.iter().zip(&all) {
        let step = model.next_token_logprobs(&ids[..=*p]).unwrap();
        let diff = lp
            .iter()
            .zip(&step)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "position {p}: {diff}");
        let total: f64 = lp.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
    }
    assert!(model.logprobs_at(&ids, &[ids.len()]).is_err());
}

#[test]
fn concurrent_requests_to_the_server_come_back_in_order() {
    let model = model();
    let server = LlmServer::start(model.clone(), LOCALHOST, 0).unwrap();
    let cfg: adag_llm::BackendConfig = format!("openai:{}", server.base_url()).parse().unwrap();
    let llm =
        adag_llm::Llm::from_config(&cfg, adag_llm::LlmOptions::default().concurrency(3)).unwrap();
    let local = LocalBackend::new(model.clone());
    let requests: Vec<ChatRequest> = ["Dallas", "Austin", "Houston", "Texas", "Paris"]
        .iter()
        .map(|w| {
            let mut r = ChatRequest::new(vec![
                Message::user("Continue."),
                Message::assistant(format!("The city of {w} is")),
            ]);
            r.max_tokens = 4;
            r
        })
        .collect();
    let replies = llm.chat_many(&requests);
    for (req, reply) in requests.iter().zip(replies) {
        assert_eq!(reply.unwrap().text, local.chat(req).unwrap().text);
    }
    let rep = llm.report();
    assert_eq!((rep.calls, rep.failed_calls), (5, 0));
    assert!(rep.usage.input_tokens > 0 && rep.usage.output_tokens > 0);
}

/// A model whose tokenizer has a chat template (the tiny Llama fixture): the prompt is the
/// template with the generation prompt; a final assistant turn is continued, not closed.
#[test]
fn chat_template_with_generation_prompt_and_prefill() {
    use adag_model::chat::ChatMessage;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama");
    let m = LocalModel::load(&dir, &adag_model::LoadOptions::default()).unwrap();
    let tok = &m.loaded().tokenizer;
    assert!(tok.has_chat_template());
    let conv = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    let expected = tok.apply_chat_template(&conv, true).unwrap();
    let (text, special) = m
        .render(&[Message::system("Be brief."), Message::user("Hi")])
        .unwrap();
    assert_eq!((text.as_str(), special), (expected.as_str(), false));
    let (prefilled, _) = m
        .render(&[
            Message::system("Be brief."),
            Message::user("Hi"),
            Message::assistant("Sure"),
        ])
        .unwrap();
    assert_eq!(prefilled, expected + "Sure");
    // The fallback format is only for tokenizers without a template.
    assert!(!text.contains("User: Hi"));
    // A random-weight model still generates within its limits.
    let mut req = ChatRequest::new(vec![Message::user("Hi")]);
    req.max_tokens = 3;
    req.top_logprobs = Some(2);
    let r = LocalBackend::new(Arc::new(m)).chat(&req).unwrap();
    assert!(r.usage.output_tokens <= 3 && r.usage.output_tokens >= 1);
    assert!(r.logprobs.len() <= 3);
}

#[test]
fn the_demo_model_uses_the_plain_fallback_format() {
    let model = model();
    assert!(!model.loaded().tokenizer.has_chat_template());
    let (text, special) = model
        .render(&[
            Message::system("S"),
            Message::user("U"),
            Message::assistant("A"),
        ])
        .unwrap();
    assert_eq!(text, "System: S\n\nUser: U\n\nAssistant:A");
    assert!(special);
    let (text, _) = model.render(&[Message::user("U")]).unwrap();
    assert_eq!(text, "User: U\n\nAssistant:");
}
