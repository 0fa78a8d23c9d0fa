//! The HTTP backends against a scripted local server: the exact requests they send (Anthropic),
//! failures (rate limits, 5xx, 4xx, malformed replies, timeouts, refusals), the cache, and that
//! an API key never leaks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adag_llm::{BackendConfig, ChatRequest, Llm, LlmError, LlmOptions, Message};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// What the server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// A server answering with `replies` in order; the last one repeats forever.
struct Scripted {
    addr: SocketAddr,
    script: Arc<Script>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    fn start(replies: Vec<Reply>) -> Scripted {
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            seen: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Scripted {
            addr,
            script,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }

    fn calls(&self) -> usize {
        self.script.seen.lock().unwrap().len()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    script.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let r = {
        let mut q = script.replies.lock().unwrap();
        if q.len() > 1 {
            q.pop_front().unwrap()
        } else {
            q.front().cloned().expect("an empty script")
        }
    };
    if !r.delay.is_zero() {
        // Off the async workers, so the server keeps accepting other requests meanwhile.
        let d = r.delay;
        tokio::task::spawn_blocking(move || std::thread::sleep(d))
            .await
            .unwrap();
    }
    let mut resp = (StatusCode::from_u16(r.status).unwrap(), r.body).into_response();
    for (k, v) in r.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

fn openai_ok(text: &str) -> Value {
    json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}})
}

/// Fast retries so the tests do not sleep on backoff (a `retry-after` still applies).
fn options() -> LlmOptions {
    LlmOptions::default()
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .max_attempts(3)
        .timeout(Duration::from_secs(10))
}

fn openai(server: &Scripted, options: LlmOptions) -> Llm {
    let cfg: BackendConfig = format!("openai:{}/v1,model=m", server.url())
        .parse()
        .unwrap();
    Llm::from_config(&cfg, options).unwrap()
}

fn hello() -> ChatRequest {
    ChatRequest::new(vec![Message::user("Hello?")])
}

#[test]
fn anthropic_sends_the_documented_request_and_reads_the_reply() {
    std::env::set_var("ADAG_TEST_ANTHROPIC_KEY_1", "ak-test-1");
    let server = Scripted::start(vec![reply(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 3}}),
    )]);
    let cfg: BackendConfig = format!(
        "anthropic:claude-test,base-url={},key-env=ADAG_TEST_ANTHROPIC_KEY_1",
        server.url()
    )
    .parse()
    .unwrap();
    let llm = Llm::from_config(&cfg, options()).unwrap();
    assert!(!llm.supports_logprobs());
    let mut req = ChatRequest::new(vec![
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("Hello."),
        Message::user("Again"),
    ]);
    req.temperature = 0.5;
    req.max_tokens = 50;
    req.stop = vec!["\n".into()];
    req.seed = Some(3);
    req.top_logprobs = Some(2);
    let r = llm.chat(&req).unwrap();
    assert_eq!(r.text, "Hello there");
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (12, 3));
    assert!(r.logprobs.is_empty() && !r.cached);

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(s.header("x-api-key"), Some("ak-test-1"));
    assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(s.header("content-type"), Some("application/json"));
    assert_eq!(s.header("authorization"), None);
    assert_eq!(
        s.json(),
        json!({"model": "claude-test", "max_tokens": 50, "temperature": 0.5,
            "system": "Be brief.", "stop_sequences": ["\n"],
            "messages": [{"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": "Hello."},
                         {"role": "user", "content": "Again"}]})
    );
}

#[test]
fn openai_sends_the_documented_request() {
    let server = Scripted::start(vec![reply(200, openai_ok("ok"))]);
    let llm = openai(&server, options());
    let mut req = hello();
    req.top_logprobs = Some(4);
    req.seed = Some(9);
    req.sample_index = 2;
    llm.chat(&req).unwrap();
    let s = &server.seen()[0];
    assert_eq!(s.path, "/v1/chat/completions");
    assert_eq!(s.header("authorization"), None);
    assert_eq!(
        s.json(),
        json!({"model": "m", "messages": [{"role": "user", "content": "Hello?"}],
            "temperature": 0.0, "max_tokens": 256, "seed": 9, "logprobs": true,
            "top_logprobs": 4})
    );
}

#[test]
fn rate_limit_is_retried_after_retry_after() {
    let mut limited = reply(429, json!({"error": {"message": "slow down"}}));
    limited.headers.push(("retry-after", "1".into()));
    let server = Scripted::start(vec![limited, reply(200, openai_ok("fine"))]);
    let llm = openai(&server, options());
    let t = Instant::now();
    let r = llm.chat(&hello()).unwrap();
    assert_eq!(r.text, "fine");
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(server.calls(), 2);
    let rep = llm.report();
    assert_eq!((rep.calls, rep.retries, rep.failed_calls), (1, 1, 0));
}

#[test]
fn anthropic_overloaded_529_is_retried() {
    std::env::set_var("ADAG_TEST_ANTHROPIC_KEY_2", "ak-test-2");
    let server = Scripted::start(vec![
        reply(
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        reply(
            200,
            json!({"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1}}),
        ),
    ]);
    let cfg: BackendConfig = format!(
        "anthropic,base-url={},key-env=ADAG_TEST_ANTHROPIC_KEY_2",
        server.url()
    )
    .parse()
    .unwrap();
    let llm = Llm::from_config(&cfg, options()).unwrap();
    assert_eq!(llm.chat(&hello()).unwrap().text, "ok");
    assert_eq!(server.calls(), 2);
}

#[test]
fn server_error_is_retried_until_success_or_attempts_run_out() {
    let server = Scripted::start(vec![
        reply(500, json!({"error": {"message": "oops"}})),
        reply(200, openai_ok("after 500")),
    ]);
    let llm = openai(&server, options());
    assert_eq!(llm.chat(&hello()).unwrap().text, "after 500");
    assert_eq!(server.calls(), 2);

    let server = Scripted::start(vec![reply(503, json!({"error": {"message": "down"}}))]);
    let llm = openai(&server, options().max_attempts(3));
    match llm.chat(&hello()) {
        Err(LlmError::Transient { message, .. }) => assert!(message.contains("down"), "{message}"),
        other => panic!("expected Transient, got {other:?}"),
    }
    assert_eq!(server.calls(), 3);
    assert_eq!(llm.report().failed_calls, 1);
}

#[test]
fn bad_request_is_not_retried() {
    let server = Scripted::start(vec![reply(
        400,
        json!({"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}}),
    )]);
    let llm = openai(&server, options());
    match llm.chat(&hello()) {
        Err(LlmError::Rejected {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert_eq!(message, "max_tokens is too large");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(server.calls(), 1);
}

#[test]
fn malformed_replies_are_malformed_errors() {
    for body in [
        "this is not json",
        r#"{"choices": []}"#,
        r#"{"object": "chat.completion"}"#,
    ] {
        let server = Scripted::start(vec![Reply {
            status: 200,
            headers: vec![],
            body: body.into(),
            delay: Duration::ZERO,
        }]);
        let llm = openai(&server, options());
        let err = llm.chat(&hello()).unwrap_err();
        assert!(matches!(err, LlmError::Malformed { .. }), "{body}: {err:?}");
        assert!(!err.is_retryable());
        assert_eq!(server.calls(), 1, "{body}");
    }
}

#[test]
fn refusals_are_surfaced() {
    let server = Scripted::start(vec![reply(
        200,
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "refusal": "I can't help with that."}, "finish_reason": "stop"}]}),
    )]);
    let r = openai(&server, options()).chat(&hello()).unwrap();
    assert!(r.is_refusal());
    assert_eq!(r.text, "I can't help with that.");

    std::env::set_var("ADAG_TEST_ANTHROPIC_KEY_3", "ak-test-3");
    let server = Scripted::start(vec![reply(
        200,
        json!({"content": [], "stop_reason": "refusal", "usage": {"input_tokens": 5, "output_tokens": 0}}),
    )]);
    let cfg: BackendConfig = format!(
        "anthropic,base-url={},key-env=ADAG_TEST_ANTHROPIC_KEY_3",
        server.url()
    )
    .parse()
    .unwrap();
    let r = Llm::from_config(&cfg, options())
        .unwrap()
        .chat(&hello())
        .unwrap();
    assert!(r.is_refusal());
    assert_eq!(r.text, "");
}

#[test]
fn a_slow_answer_times_out_and_is_retried() {
    let mut slow = reply(200, openai_ok("too late"));
    slow.delay = Duration::from_secs(2);
    let server = Scripted::start(vec![slow, reply(200, openai_ok("quick"))]);
    let llm = openai(
        &server,
        options()
            .timeout(Duration::from_millis(400))
            .max_attempts(1),
    );
    assert!(matches!(llm.chat(&hello()), Err(LlmError::Timeout { .. })));
    let llm = openai(&server, options().timeout(Duration::from_millis(400)));
    assert_eq!(llm.chat(&hello()).unwrap().text, "quick");
}

#[test]
fn the_cache_makes_a_rerun_free() {
    let server = Scripted::start(vec![reply(200, openai_ok("cached answer"))]);
    let dir = tempfile::tempdir().unwrap();
    let requests: Vec<ChatRequest> = (0..5)
        .map(|i| {
            let mut r = hello();
            r.temperature = 1.0;
            r.sample_index = i;
            r
        })
        .collect();
    let first = openai(&server, options().cache_dir(dir.path()).concurrency(3));
    let a: Vec<_> = first
        .chat_many(&requests)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(server.calls(), 5);
    assert!(a.iter().all(|r| !r.cached));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5);

    // A new run (new Llm, same folder): nothing reaches the server.
    let second = openai(&server, options().cache_dir(dir.path()));
    let b: Vec<_> = second
        .chat_many(&requests)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(server.calls(), 5);
    for (x, y) in a.iter().zip(&b) {
        assert!(y.cached);
        assert_eq!(
            (&x.text, &x.finish_reason, x.usage),
            (&y.text, &y.finish_reason, y.usage)
        );
    }
    let rep = second.report();
    assert_eq!((rep.calls, rep.cached_calls), (0, 5));
    assert_eq!(rep.usage.input_tokens, 0);
    assert_eq!(rep.cached_usage.input_tokens, 35);

    // Another model on the same endpoint is another cache entry.
    let cfg: BackendConfig = format!("openai:{}/v1,model=other", server.url())
        .parse()
        .unwrap();
    let third = Llm::from_config(&cfg, options().cache_dir(dir.path())).unwrap();
    assert!(!third.chat(&requests[0]).unwrap().cached);
    assert_eq!(server.calls(), 6);
}

/// Collects log output.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_api_key_appears_nowhere() {
    const SECRET: &str = "sk-test-SECRET-4242";
    std::env::set_var("ADAG_TEST_SECRET_KEY", SECRET);
    // The server echoes the key in its error messages, as a careless proxy might.
    let echo = |status| {
        reply(
            status,
            json!({"error": {"message": format!("key {SECRET} refused")}}),
        )
    };
    let server = Scripted::start(vec![echo(500), echo(401), reply(200, openai_ok("fine"))]);
    let dir = tempfile::tempdir().unwrap();
    let cfg: BackendConfig = format!(
        "openai:{}/v1,model=m,key-env=ADAG_TEST_SECRET_KEY",
        server.url()
    )
    .parse()
    .unwrap();
    let llm = Llm::from_config(&cfg, options().cache_dir(dir.path())).unwrap();

    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (err, ok) = tracing::subscriber::with_default(subscriber, || {
        (llm.chat(&hello()).unwrap_err(), llm.chat(&hello()).unwrap())
    });
    assert_eq!(ok.text, "fine");
    // The key was really used...
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    // ...and shows up nowhere else.
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "no retry was logged: {logs}");
    let mut places = vec![
        ("error", err.to_string()),
        ("error debug", format!("{err:?}")),
        ("logs", logs),
        ("llm debug", format!("{llm:?}")),
        ("describe", llm.describe().to_string()),
        ("report", llm.report().to_string()),
        ("config debug", format!("{cfg:?}")),
        ("config json", serde_json::to_string(&cfg).unwrap()),
    ];
    assert!(places[0].1.contains("***"), "{}", places[0].1);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        places.push((
            "cache file",
            std::fs::read_to_string(&p).unwrap() + &p.display().to_string(),
        ));
    }
    assert!(places.len() > 8, "nothing was cached");
    for (what, text) in places {
        assert!(
            !text.contains(SECRET),
            "the key leaked into the {what}: {text}"
        );
    }
}
