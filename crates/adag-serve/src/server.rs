//! The HTTP server: routes, responses and the [`Server`] handle.
//!
//! # Routes
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the viewer page (`?slug=S` opens graph S; the rest of the URL is UI state) |
//! | `GET /assets/{file}` | embedded JS and CSS |
//! | `GET /api/graphs` | `{"graphs": [metadata, ...]}`: every graph of the source |
//! | `GET /api/graph/{slug}?max_nodes&max_links&threshold&keep=id,id` | a screen-sized view of a graph ([`crate::ViewRequest`]), gzip |
//! | `GET /data/{file}`, `GET /graph_data/{file}` | files of the graph folder as they are, gzip (circuit-tracer's routes); `graph-metadata.json` is synthesised when absent |
//! | `GET /features/{file}` | files of the feature folder, with `Range: bytes=...` (206/416), never gzip |
//! | `GET /graph-features/{slug}/{file}` | the same, from the dashboards of that graph's transcoders or neurons ([`crate::dashboards`]) |
//! | `POST /save_graph/{slug}` | replaces the graph's `qParams` ([`crate::state`]); 400 on a malformed body, 413 when too large, 404 for an unknown graph |
//!
//! Anything else is 404, and so is any path that would leave its folder (symlinks included:
//! paths are resolved and must stay inside).
//!
//! # Who may ask (docs/security.md)
//!
//! - Every request must carry a `Host` naming the bound address (127.0.0.1, localhost, [::1]
//!   or the `--host` IP, with the port); anything else is 421 ([`adag_http::HostPolicy`]), which
//!   defeats DNS rebinding.
//! - Every request that is not `GET`/`HEAD` must send `Content-Type: application/json` and
//!   either an `Origin` that is this server or, without `Origin`, the per-server token that the
//!   page carries (`<meta name="adag-save-token">`) in `X-Adag-Token`; 403 otherwise. A
//!   cross-site page can send neither: a JSON or custom-header request needs a CORS preflight,
//!   which this server never grants.
//! - Connections live under [`adag_http::Limits`]: request heads within 5 s, bodies within
//!   30 s, stalled writes closed after 30 s; files are streamed, never read whole.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use adag_http::{HostPolicy, Limits};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::assets;
use crate::error::{Error, Result};
use crate::files::{self, RangeRequest};
use crate::graph::ViewRequest;
use crate::source::{GraphSource, JsonDir, GRAPH_LIST_FILE};

/// The port `adag serve` uses unless told otherwise (circuit-tracer's CLI uses the same).
pub const DEFAULT_PORT: u16 = 8041;

/// Bodies of `POST /save_graph` above this many bytes are refused with 413.
pub const DEFAULT_MAX_POST_BYTES: usize = 4 << 20;

/// What to serve and where to listen.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Folder of `{slug}.json` graphs (and `graph-metadata.json`).
    pub graph_dir: PathBuf,
    /// Folder of feature-detail files (`index.json.gz` + `layer_{i}.bin`, or `{index}.json`),
    /// optionally one subfolder per `metadata.scan`.
    pub features_dir: Option<PathBuf>,
    /// Address to bind; 127.0.0.1 by default, so only this machine can connect.
    pub host: IpAddr,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Graph to open in the printed URL.
    pub slug: Option<String>,
    /// Largest accepted `POST` body.
    pub max_post_bytes: usize,
    /// Connection time limits (request head, body, stalled writes).
    pub limits: Limits,
}

impl ServeConfig {
    /// Serve `graph_dir` on 127.0.0.1:8041.
    pub fn new(graph_dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            graph_dir: graph_dir.into(),
            features_dir: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            slug: None,
            max_post_bytes: DEFAULT_MAX_POST_BYTES,
            limits: Limits::default(),
        }
    }

    /// Sets the connection time limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the port (0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the bind address.
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// Sets the feature-detail folder.
    pub fn features_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.features_dir = Some(dir.into());
        self
    }

    /// Opens this graph in the printed URL.
    pub fn slug(mut self, slug: impl Into<String>) -> Self {
        self.slug = Some(slug.into());
        self
    }
}

struct AppState {
    source: Arc<dyn GraphSource>,
    data_dir: PathBuf,
    features_dir: Option<PathBuf>,
    hosts: HostPolicy,
    /// Proves that a write without `Origin` comes from a page this server sent.
    token: String,
    /// The viewer page with `token` filled in.
    index_html: String,
}

/// The `<meta>` of `index.html` that carries the save token.
const TOKEN_META: &str = r#"<meta name="adag-save-token" content="">"#;

/// The header in which the viewer sends the save token.
const TOKEN_HEADER: &str = "x-adag-token";

/// 128 random bits, hex: unguessable by a page that cannot read the viewer.
fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running server. Dropping it stops the server.
pub struct Server {
    addr: SocketAddr,
    slug: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// Binds the address and starts serving on a background thread. Returns once the socket
    /// listens, so [`Server::url`] can be opened right away.
    pub fn start(config: ServeConfig) -> Result<Server> {
        let source = Arc::new(JsonDir::new(&config.graph_dir)?);
        if let Some(f) = &config.features_dir {
            if !f.is_dir() {
                return Err(Error::NotADirectory { path: f.clone() });
            }
        }
        if let Some(s) = &config.slug {
            source.list()?;
            if !crate::source::is_valid_slug(s) {
                return Err(Error::BadSlug(s.clone()));
            }
        }
        let want = SocketAddr::new(config.host, config.port);
        let listener = std::net::TcpListener::bind(want)
            .map_err(|source| Error::Bind { addr: want, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr: want, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { addr: want, source })?;
        let token = new_token();
        let state = Arc::new(AppState {
            source,
            data_dir: config.graph_dir.clone(),
            features_dir: config.features_dir.clone(),
            hosts: HostPolicy::for_bound(addr),
            index_html: assets::INDEX_HTML.replace(
                TOKEN_META,
                &format!(r#"<meta name="adag-save-token" content="{token}">"#),
            ),
            token,
        });
        let app = router(state, config.max_post_bytes);
        let limits = config.limits;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("adag-serve")
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("adag-serve".into())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .map_err(|e| Error::Runtime(e.to_string()))?;
                    adag_http::serve(listener, app, limits, async move {
                        let _ = stopped.await;
                    })
                    .await
                    .map_err(|e| Error::Runtime(e.to_string()))
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                result
            })
            .map_err(|e| Error::Runtime(e.to_string()))?;
        Ok(Server {
            addr,
            slug: config.slug,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open: `http://host:port/`, with `?slug=` when a graph was named. A wildcard
    /// bind address (0.0.0.0, ::) is shown as loopback, which is what a local browser opens.
    pub fn url(&self) -> String {
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(match a.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        match &self.slug {
            Some(s) => format!("http://{a}/?slug={s}"),
            None => format!("http://{a}/"),
        }
    }

    /// Blocks until the server stops (it runs until the process ends).
    pub fn wait(mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Runtime("server thread panicked".into()))?,
            None => Ok(()),
        }
    }

    /// Stops accepting connections, lets open requests finish, and returns.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.wait_thread()
    }

    fn wait_thread(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Runtime("server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Starts a server, prints its URL on stdout, and serves until the process is interrupted.
/// This is what `adag serve`, `adag attribute --serve` and `adag trace --serve` call.
pub fn serve_blocking(config: ServeConfig) -> Result<()> {
    let server = Server::start(config)?;
    println!("adag viewer: {}  (Ctrl-C to stop)", server.url());
    server.wait()
}

fn router(state: Arc<AppState>, max_post_bytes: usize) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*rest}", get(asset))
        .route("/api/graphs", get(list_graphs))
        .route("/api/graph/{slug}", get(graph_view))
        .route("/data/{*rest}", get(data_file))
        .route("/graph_data/{*rest}", get(data_file))
        .route("/features/{*rest}", get(feature_file))
        .route("/graph-features/{*rest}", get(graph_feature_file))
        .route("/save_graph/{slug}", post(save_graph))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_post_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            same_origin_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.hosts.clone(),
            adag_http::require_known_host,
        ))
        .with_state(state)
}

/// Refuses (403) a request that could change state unless it is JSON and comes from this
/// server's own page: a same-origin `Origin`, or no `Origin` and the page's token. A form or a
/// `text/plain` fetch from another site (which needs no CORS preflight) is refused here.
async fn same_origin_writes(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let h = req.headers();
    let is_json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return text(
            StatusCode::FORBIDDEN,
            "refused: a write must send Content-Type: application/json\n",
        );
    }
    match h.get(header::ORIGIN) {
        Some(o) => {
            if !o.to_str().is_ok_and(|o| st.hosts.allows_origin(o)) {
                tracing::warn!("refused a cross-origin write from Origin {o:?}");
                return text(
                    StatusCode::FORBIDDEN,
                    "refused: a write must come from this server's own page (cross-origin Origin)\n",
                );
            }
        }
        None => {
            let token = h.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
            if token != Some(st.token.as_str()) {
                return text(
                    StatusCode::FORBIDDEN,
                    "refused: a write without Origin must carry the viewer page's X-Adag-Token\n",
                );
            }
        }
    }
    next.run(req).await
}

// ---- responses ----

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = (status, msg.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found_response() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

async fn not_found() -> Response {
    not_found_response()
}

fn error_response(e: &Error) -> Response {
    match e {
        Error::BadSlug(_) | Error::UnknownGraph { .. } => not_found_response(),
        Error::BadState(_) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        _ => {
            tracing::warn!("{e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
    }
}

/// A body with an explicit length and no caching (the viewer must see saved state at once),
/// gzip-encoded when the client accepts it and it is worth it.
fn body_response(
    req_headers: &HeaderMap,
    bytes: Vec<u8>,
    content_type: &'static str,
    allow_gzip: bool,
) -> Response {
    let accept = req_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let (bytes, gz) = if allow_gzip && bytes.len() > 1024 && files::accepts_gzip(accept) {
        match files::gzip(&bytes) {
            Ok(z) => (z, true),
            Err(_) => (bytes, false),
        }
    } else {
        (bytes, false)
    };
    let len = bytes.len();
    let mut r = Response::new(Body::from(bytes));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if allow_gzip {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if gz {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// The decoded path after `prefix`, or `None` (→ 404).
fn tail(uri: &Uri, prefix: &str) -> Option<String> {
    files::percent_decode(uri.path().strip_prefix(prefix)?)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

fn internal(msg: &str) -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{msg}\n"))
}

// ---- handlers ----

async fn index(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    body_response(
        &headers,
        st.index_html.as_bytes().to_vec(),
        "text/html; charset=utf-8",
        true,
    )
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    match tail(&uri, "/assets/").and_then(|n| assets::get(&n)) {
        Some(a) => body_response(&headers, a.body.as_bytes().to_vec(), a.content_type, true),
        None => not_found_response(),
    }
}

async fn list_graphs(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let source = st.source.clone();
    match blocking(move || source.list()).await {
        Some(Ok(list)) => {
            let body = serde_json::json!({ "graphs": list });
            body_response(
                &headers,
                body.to_string().into_bytes(),
                "application/json",
                true,
            )
        }
        Some(Err(e)) => error_response(&e),
        None => internal("listing failed"),
    }
}

#[derive(serde::Deserialize)]
struct ViewQuery {
    max_nodes: Option<usize>,
    max_links: Option<usize>,
    threshold: Option<f64>,
    keep: Option<String>,
}

async fn graph_view(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<ViewQuery>,
) -> Response {
    let Some(slug) = tail(&uri, "/api/graph/") else {
        return not_found_response();
    };
    let defaults = ViewRequest::default();
    let req = ViewRequest {
        max_nodes: q
            .max_nodes
            .unwrap_or(defaults.max_nodes)
            .clamp(1, 1_000_000),
        max_links: q.max_links.unwrap_or(defaults.max_links).min(10_000_000),
        threshold: q
            .threshold
            .filter(|t| t.is_finite())
            .unwrap_or(defaults.threshold),
        keep: q
            .keep
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let source = st.source.clone();
    let result = blocking(move || -> Result<Vec<u8>> {
        let g = source.load(&slug)?;
        Ok(g.view(&req).0)
    })
    .await;
    match result {
        Some(Ok(bytes)) => body_response(&headers, bytes, "application/json", true),
        Some(Err(e)) => error_response(&e),
        None => internal("loading the graph failed"),
    }
}

async fn data_file(State(st): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    let rel = tail(&uri, "/data/").or_else(|| tail(&uri, "/graph_data/"));
    let Some(rel) = rel else {
        return not_found_response();
    };
    let dir = st.data_dir.clone();
    let source = st.source.clone();
    let name = rel.clone();
    let Some(found) = blocking(move || {
        let path = files::resolve_in(&dir, &rel)?;
        let len = std::fs::metadata(&path).ok()?.len();
        Some((path, len))
    })
    .await
    else {
        return internal("file lookup failed");
    };
    let Some((path, len)) = found else {
        if name == GRAPH_LIST_FILE {
            // No list file: synthesise one from the graphs present.
            return match blocking(move || source.list()).await {
                Some(Ok(list)) => {
                    let body = serde_json::json!({ "graphs": list }).to_string();
                    body_response(&headers, body.into_bytes(), "application/json", true)
                }
                _ => not_found_response(),
            };
        }
        return not_found_response();
    };
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let gz = len > 1024 && files::accepts_gzip(accept);
    let body = if gz {
        files::stream_gzip(&path).await
    } else {
        files::stream_range(&path, None).await
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return internal(&format!("cannot read file: {e}")),
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(files::content_type(&path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gz {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    } else {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}

async fn feature_file(State(st): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    let (Some(dir), Some(rel)) = (st.features_dir.clone(), tail(&uri, "/features/")) else {
        return not_found_response();
    };
    let Some(Some((path, len))) = blocking(move || {
        let path = files::resolve_in(&dir, &rel)?;
        let len = std::fs::metadata(&path).ok()?.len();
        Some((path, len))
    })
    .await
    else {
        return not_found_response();
    };
    ranged_file(path, len, &headers).await
}

/// A file of the dashboards that belong to graph `slug` (found from its metadata, see
/// [`crate::dashboards`]); only dashboard file names are served from such a folder.
async fn graph_feature_file(
    State(st): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(rest) = tail(&uri, "/graph-features/") else {
        return not_found_response();
    };
    let Some((slug, name)) = rest.split_once('/') else {
        return not_found_response();
    };
    if !crate::source::is_valid_slug(slug) || !crate::dashboards::is_dashboard_file(name) {
        return not_found_response();
    }
    let (slug, name) = (slug.to_string(), name.to_string());
    let source = st.source.clone();
    let Some(Some((path, len))) = blocking(move || {
        let graphs = source.list().ok()?;
        let meta = graphs
            .iter()
            .find(|g| g.get("slug").and_then(Value::as_str) == Some(slug.as_str()))?;
        let dir = crate::dashboards::dashboards_for(meta)?;
        let path = files::resolve_in(&dir, &name)?;
        let len = std::fs::metadata(&path).ok()?.len();
        Some((path, len))
    })
    .await
    else {
        return not_found_response();
    };
    ranged_file(path, len, &headers).await
}

/// A file, whole or the one byte range asked for, never gzip.
async fn ranged_file(path: PathBuf, len: u64, headers: &HeaderMap) -> Response {
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match files::parse_range(range_header, len) {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        RangeRequest::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = match files::stream_range(&path, range).await {
        Ok(b) => b,
        Err(e) => return internal(&format!("cannot read file: {e}")),
    };
    let n = range.map_or(len, |r| r.end - r.start + 1);
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(files::content_type(&path)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(r) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{len}", r.start, r.end)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

async fn save_graph(State(st): State<Arc<AppState>>, uri: Uri, body: Bytes) -> Response {
    let Some(slug) = tail(&uri, "/save_graph/") else {
        return not_found_response();
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}\n")),
    };
    if let Err(e) = crate::state::validate_qparams(&value) {
        return error_response(&e);
    }
    let source = st.source.clone();
    match blocking(move || source.save_state(&slug, &value)).await {
        Some(Ok(())) => {
            let mut r = text(StatusCode::OK, "{\"saved\":true}");
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Some(Err(e)) => error_response(&e),
        None => internal("saving failed"),
    }
}
