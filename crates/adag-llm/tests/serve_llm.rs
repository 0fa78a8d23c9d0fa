//! `adag serve-llm` on the bundled demo model, called through the OpenAI-compatible backend:
//! real inference on both sides. Assertions are properties (agreement between paths, the
//! model's own logits, sortedness), not the current weights' outputs.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use adag_llm::local::{log_softmax, LocalBackend, LocalModel};
use adag_llm::openai::OpenAiBackend;
use adag_llm::server::{LlmServer, ServerOptions};
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

// ---- limits, over raw sockets ----

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// Sends a request with this Host and reads the answer: (status, head, body).
fn raw(addr: SocketAddr, host: &str, head: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "{head}\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (h, b) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = h.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, h.to_string(), b.to_string())
}

#[test]
fn serve_llm_answers_only_its_own_host_names() {
    let server = LlmServer::start(model(), LOCALHOST, 0).unwrap();
    let a = server.addr();
    let port = a.port();
    let body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).to_string();
    for host in [
        format!("rebind.example:{port}"),
        "rebind.example".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        let (status, _, text) = raw(a, &host, "GET /v1/models HTTP/1.1", "");
        assert_eq!(status, 421, "{host}: {text}");
        let (status, _, _) = raw(a, &host, "POST /v1/chat/completions HTTP/1.1", &body);
        assert_eq!(status, 421, "{host}");
    }
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (status, _, text) = raw(a, &host, "GET /v1/models HTTP/1.1", "");
        assert_eq!(status, 200, "{host}: {text}");
    }
}

#[test]
fn serve_llm_closes_slow_header_sockets() {
    let options = ServerOptions {
        limits: adag_llm::server::Limits {
            header_read: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = LlmServer::start_with(model(), LOCALHOST, 0, options).unwrap();
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHo")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break false,
            Err(_) => break true,
        }
    };
    assert!(closed, "still open after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

/// A greedy request that runs to the context limit: the demo model, prefilled with a counting
/// sequence, never emits EOS on it (checked by the test that uses it).
fn long_body(max_tokens: u32) -> String {
    let count: Vec<String> = (1..40).map(|i| i.to_string()).collect();
    json!({"messages": [{"role": "user", "content": "Count."},
                        {"role": "assistant", "content": count.join(" ")}],
           "temperature": 0, "max_tokens": max_tokens})
    .to_string()
}

#[test]
fn serve_llm_bounds_its_queue_and_cancels_on_disconnect() {
    let server = LlmServer::start_with(
        model(),
        LOCALHOST,
        0,
        ServerOptions {
            max_queue: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let a = server.addr();
    let host = a.to_string();
    // The long request, run to the end once: it stops at the context ("length"), never at EOS,
    // so the same request below can only end early by being cancelled.
    let t = Instant::now();
    let (status, _, text) = raw(
        a,
        &host,
        "POST /v1/chat/completions HTTP/1.1",
        &long_body(100_000),
    );
    let full = t.elapsed();
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["choices"][0]["finish_reason"], "length", "{text}");
    let generated = reply["usage"]["completion_tokens"].as_u64().unwrap();
    eprintln!("full generation: {generated} tokens in {full:?}");
    assert_eq!(server.cancelled(), 0);

    // Start it again and keep the connection open without reading.
    let mut long = TcpStream::connect(a).unwrap();
    let body = long_body(100_000);
    long.write_all(
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .as_bytes(),
    )
    .unwrap();
    let t = Instant::now();
    while server.in_flight() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the request never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The queue (0 waiting) is full: a second request is refused at once.
    let (status, head, text) = raw(
        a,
        &host,
        "POST /v1/chat/completions HTTP/1.1",
        &long_body(1),
    );
    assert_eq!(status, 503, "{text}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 2"),
        "{head}"
    );
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"]["code"], "server_overloaded");
    // Hang up: the generation stops long before it could have finished.
    let hung_up = Instant::now();
    long.shutdown(std::net::Shutdown::Both).unwrap();
    drop(long);
    while server.cancelled() == 0 {
        assert!(
            hung_up.elapsed() < full.max(Duration::from_secs(10)) * 3,
            "the generation was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.cancelled(), 1);
    let t = Instant::now();
    while server.in_flight() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    // The server is free again.
    let (status, _, text) = raw(
        a,
        &host,
        "POST /v1/chat/completions HTTP/1.1",
        &long_body(2),
    );
    assert_eq!(status, 200, "{text}");
}
