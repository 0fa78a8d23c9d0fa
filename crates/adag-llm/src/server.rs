//! `adag serve-llm`: a [`LocalModel`] served as an OpenAI-compatible endpoint, so a GPU box needs
//! no vLLM and tests have a real server to talk to.
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/models` | `{"object":"list","data":[{"id": NAME, "object":"model", ...}]}` |
//! | `POST /v1/chat/completions` | a chat completion ([below](#chat-completions)) |
//! | `GET /health` | `{}` |
//!
//! Errors are OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400
//! `invalid_request_error` for a body that is not a valid request (naming the field), 404
//! `model_not_found` for another model name, 404 for unknown routes, 500 when the model fails.
//!
//! # Chat completions
//!
//! Read: `model` (optional; must be the served name), `messages` (`system`/`developer`, `user`,
//! `assistant`; content a string or `text` parts), `temperature` (0–2, default 1 as in OpenAI),
//! `max_tokens` or `max_completion_tokens` (default 4096, always capped by the context),
//! `seed`, `stop` (a string or up to 4), `logprobs` and `top_logprobs` (0–20, needs `logprobs:
//! true`). `n` must be 1 and `stream` false; other fields are ignored. Generation is
//! [`LocalModel::generate`] on the prompt rendered by [`LocalModel::prompt_ids`], so a request
//! answered here and the same request to [`crate::local::LocalBackend`] give the same text.
//! Requests run one at a time (a model uses every core already).
//!
//! # Limits (docs/security.md)
//!
//! - Only `Host` values naming the bound address are answered (421 otherwise), against DNS
//!   rebinding ([`adag_http::HostPolicy`]).
//! - At most one generation runs and [`ServerOptions::max_queue`] wait; a request beyond that is
//!   answered at once with 503 `server_overloaded` and `Retry-After`.
//! - A client that disconnects cancels its request: a queued one leaves the queue, a running
//!   one stops before its next token ([`LlmServer::cancelled`] counts these).
//! - Connections live under [`adag_http::Limits`] (request head 5 s, body 30 s, stalled
//!   writes 30 s), and bodies above [`ServerOptions::max_body_bytes`] are refused with 413.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use adag_http::HostPolicy;
pub use adag_http::Limits;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::local::{GenerateParams, Generation, LocalModel};
use crate::wire::{
    Content, WireChoice, WireLogprobs, WireReply, WireReplyMessage, WireRequest, WireTokenLogprob,
    WireTopLogprob, WireUsage,
};
use crate::{LlmError, Message, Result, Role};

/// The port `adag serve-llm` uses unless told otherwise (the viewer uses 8041).
pub const DEFAULT_PORT: u16 = 8042;

/// Generated tokens when a request sets no limit.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Seconds a refused (503) client is told to wait before retrying.
pub const RETRY_AFTER_S: u64 = 2;

/// How the server guards itself; [`ServerOptions::default`] is what `adag serve-llm` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Requests that may wait while one generates; more get 503 at once.
    pub max_queue: usize,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Connection time limits.
    pub limits: Limits,
}

impl Default for ServerOptions {
    /// 8 waiting requests, 4 MiB bodies, [`Limits::default`].
    fn default() -> Self {
        ServerOptions {
            max_queue: 8,
            max_body_bytes: 4 << 20,
            limits: Limits::default(),
        }
    }
}

struct AppState {
    model: Arc<LocalModel>,
    /// One permit per request admitted (running or waiting): `1 + max_queue`.
    admitted: Arc<tokio::sync::Semaphore>,
    /// The one generation slot.
    running: Arc<tokio::sync::Semaphore>,
    max_queue: usize,
    cancelled: Arc<AtomicU64>,
    next_id: AtomicU64,
}

/// Sets the flag when dropped: the request's future ended, finished or dropped because the
/// client went away. A generation still running then stops before its next token.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts a cancellation if dropped while armed: the client left while its request waited.
struct CountIfDropped {
    counter: Arc<AtomicU64>,
    armed: bool,
}

impl Drop for CountIfDropped {
    fn drop(&mut self) {
        if self.armed {
            self.counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!("serve-llm: the client disconnected while queued");
        }
    }
}

/// A running server. Dropping it stops the server.
pub struct LlmServer {
    addr: SocketAddr,
    name: String,
    cancelled: Arc<AtomicU64>,
    admitted: Arc<tokio::sync::Semaphore>,
    max_queue: usize,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for LlmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmServer")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LlmServer {
    /// Serves `model` on `host:port` (port 0: any free port) from a background thread; returns
    /// once the socket listens. Uses [`ServerOptions::default`].
    pub fn start(model: Arc<LocalModel>, host: IpAddr, port: u16) -> Result<LlmServer> {
        Self::start_with(model, host, port, ServerOptions::default())
    }

    /// [`LlmServer::start`] with explicit queue, body and connection limits.
    pub fn start_with(
        model: Arc<LocalModel>,
        host: IpAddr,
        port: u16,
        options: ServerOptions,
    ) -> Result<LlmServer> {
        let want = SocketAddr::new(host, port);
        let bind_err =
            |e: std::io::Error| LlmError::Config(format!("cannot listen on {want}: {e}"));
        let listener = std::net::TcpListener::bind(want).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let name = model.name().to_string();
        let cancelled = Arc::new(AtomicU64::new(0));
        let admitted = Arc::new(tokio::sync::Semaphore::new(1 + options.max_queue));
        let state = Arc::new(AppState {
            model,
            admitted: admitted.clone(),
            running: Arc::new(tokio::sync::Semaphore::new(1)),
            max_queue: options.max_queue,
            cancelled: cancelled.clone(),
            next_id: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .route(
                "/health",
                get(|| async { json_response(StatusCode::OK, &json!({})) }),
            )
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(options.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                HostPolicy::for_bound(addr),
                adag_http::require_known_host,
            ))
            .with_state(state);
        let limits = options.limits;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("adag-serve-llm")
            .enable_all()
            .build()
            .map_err(|e| LlmError::Config(format!("cannot start the server runtime: {e}")))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("adag-serve-llm".into())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| LlmError::Config(format!("listener: {e}")))?;
                    adag_http::serve(listener, app, limits, async move {
                        let _ = stopped.await;
                    })
                    .await
                    .map_err(|e| LlmError::Config(format!("server stopped: {e}")))
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                result
            })
            .map_err(|e| LlmError::Config(format!("cannot start the server thread: {e}")))?;
        Ok(LlmServer {
            addr,
            name,
            cancelled,
            admitted,
            max_queue: options.max_queue,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model name it serves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests admitted and not yet answered: the one generating plus those waiting.
    pub fn in_flight(&self) -> usize {
        (1 + self.max_queue).saturating_sub(self.admitted.available_permits())
    }

    /// How many requests were cancelled because their client disconnected (while queued or
    /// generating).
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The OpenAI base URL, `http://host:port/v1` (a wildcard bind shown as loopback).
    pub fn base_url(&self) -> String {
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        format!("http://{a}/v1")
    }

    /// Blocks until the server stops (it runs until the process ends).
    pub fn wait(mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(LlmError::Config("the server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// An OpenAI-style error, turned into a response at the edge.
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn bad_request(param: Option<&'static str>, message: String) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param,
            message,
        }
    }

    fn server(message: String) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            code: None,
            param: None,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({"error": {"message": self.message, "type": self.kind, "param": self.param,
                              "code": self.code}}),
        )
    }
}

fn bad_request(param: Option<&'static str>, message: String) -> ApiError {
    ApiError::bad_request(param, message)
}

async fn not_found(uri: Uri) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: Some("not_found"),
        param: None,
        message: format!(
            "no route {}; this server has GET /v1/models and POST /v1/chat/completions",
            uri.path()
        ),
    }
    .into_response()
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [{
            "id": st.model.name(), "object": "model", "created": 0, "owned_by": "adag",
            "max_model_len": st.model.max_positions(),
        }]}),
    )
}

/// A validated request.
struct Job {
    messages: Vec<Message>,
    params: GenerateParams,
}

/// Checks a request body; the error is the response to send.
fn validate(body: &[u8], served: &str) -> std::result::Result<Job, ApiError> {
    let req: WireRequest = serde_json::from_slice(body).map_err(|e| {
        bad_request(
            None,
            format!("the body is not a valid chat-completions request: {e}"),
        )
    })?;
    if let Some(m) = req.model.as_deref().filter(|m| *m != served) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("model_not_found"),
            param: Some("model"),
            message: format!("the model `{m}` does not exist here; this server serves `{served}`"),
        });
    }
    if req.stream == Some(true) {
        return Err(bad_request(
            Some("stream"),
            "streaming is not supported; send stream: false".into(),
        ));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(bad_request(Some("n"), "only n = 1 is supported".into()));
    }
    if req.messages.is_empty() {
        return Err(bad_request(
            Some("messages"),
            "`messages` is empty; send at least one message".into(),
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(bad_request(
                    Some("messages"),
                    format!("messages[{i}].role is {other:?}; expected system, developer, user or assistant"),
                ))
            }
        };
        let content = match m.content {
            Content::Text(t) => t,
            Content::Parts(parts) => {
                let mut t = String::new();
                for (j, p) in parts.into_iter().enumerate() {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(x)) => t.push_str(&x),
                        (kind, _) => {
                            return Err(bad_request(
                                Some("messages"),
                                format!("messages[{i}].content[{j}] has type {kind:?} without text; only text parts are supported"),
                            ))
                        }
                    }
                }
                t
            }
        };
        messages.push(Message { role, content });
    }
    let temperature = req.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad_request(
            Some("temperature"),
            format!("temperature {temperature} is outside 0..2"),
        ));
    }
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(bad_request(
            Some("max_tokens"),
            "max_tokens must be at least 1".into(),
        ));
    }
    let top_logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (_, Some(n)) if n > 20 => {
            return Err(bad_request(
                Some("top_logprobs"),
                format!("top_logprobs {n} is outside 0..20"),
            ))
        }
        (false, Some(_)) => {
            return Err(bad_request(
                Some("top_logprobs"),
                "top_logprobs needs logprobs: true".into(),
            ))
        }
        (true, n) => Some(n.unwrap_or(0)),
        (false, None) => None,
    };
    let stop = req.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 4 {
        return Err(bad_request(
            Some("stop"),
            format!("{} stop sequences; at most 4", stop.len()),
        ));
    }
    Ok(Job {
        messages,
        params: GenerateParams {
            max_tokens,
            temperature,
            seed: req.seed,
            stop,
            top_logprobs,
            deadline: None,
        },
    })
}

/// 503 with `Retry-After`: the queue is full.
fn overloaded(max_queue: usize) -> Response {
    let mut r = ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "server_error",
        code: Some("server_overloaded"),
        param: None,
        message: format!(
            "the server is busy: one request is generating and {max_queue} are waiting; retry later"
        ),
    }
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    r
}

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let job = match validate(&body, st.model.name()) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let want_logprobs = job.params.top_logprobs.is_some();
    // Held until this future ends; dropped with it when the client goes away.
    let Ok(_admitted) = st.admitted.clone().try_acquire_owned() else {
        tracing::warn!("serve-llm: queue full, answered 503");
        return overloaded(st.max_queue);
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let mut waiting = CountIfDropped {
        counter: st.cancelled.clone(),
        armed: true,
    };
    let Ok(run) = st.running.clone().acquire_owned().await else {
        return ApiError::server("the server is shutting down".into()).into_response();
    };
    waiting.armed = false;
    let worker = st.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Generation> {
        // The slot is held until generation actually stops, even if the client has left.
        let _run = run;
        let prompt = worker.model.prompt_ids(&job.messages)?;
        let g = worker
            .model
            .generate_cancellable(&prompt, &job.params, &cancel);
        if matches!(g, Err(LlmError::Rejected { status: 499, .. })) {
            worker.cancelled.fetch_add(1, Ordering::Relaxed);
            tracing::info!("serve-llm: the client disconnected; generation cancelled");
        }
        g
    })
    .await;
    let g = match result {
        Ok(Ok(g)) => g,
        Ok(Err(LlmError::Rejected {
            status, message, ..
        })) if status < 500 => return bad_request(Some("messages"), message).into_response(),
        Ok(Err(e)) => {
            tracing::error!("serve-llm: generation failed: {e}");
            return ApiError::server(e.to_string()).into_response();
        }
        Err(e) => return ApiError::server(format!("generation task failed: {e}")).into_response(),
    };
    tracing::info!(
        "serve-llm: {} prompt + {} generated tokens ({})",
        g.prompt_tokens,
        g.tokens.len(),
        g.finish_reason
    );
    let logprobs = want_logprobs.then(|| WireLogprobs {
        content: Some(
            g.logprobs
                .iter()
                .map(|t| WireTokenLogprob {
                    token: t.token.clone(),
                    logprob: t.logprob,
                    bytes: Some(t.token.as_bytes().to_vec()),
                    top_logprobs: t
                        .top
                        .iter()
                        .map(|(tok, l)| WireTopLogprob {
                            token: tok.clone(),
                            logprob: *l,
                            bytes: Some(tok.as_bytes().to_vec()),
                        })
                        .collect(),
                })
                .collect(),
        ),
    });
    let reply = WireReply {
        id: format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed)),
        object: "chat.completion".into(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: st.model.name().to_string(),
        choices: vec![WireChoice {
            index: 0,
            message: WireReplyMessage {
                role: "assistant".into(),
                content: Some(g.text),
                refusal: None,
            },
            logprobs,
            finish_reason: Some(g.finish_reason),
        }],
        usage: Some(WireUsage {
            prompt_tokens: g.prompt_tokens as u64,
            completion_tokens: g.tokens.len() as u64,
            total_tokens: (g.prompt_tokens + g.tokens.len()) as u64,
        }),
    };
    match serde_json::to_value(&reply) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => ApiError::server(format!("encoding the reply: {e}")).into_response(),
    }
}
