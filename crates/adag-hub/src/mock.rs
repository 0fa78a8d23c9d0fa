//! An in-process HuggingFace hub on 127.0.0.1 for tests (feature `mock`). It speaks the part of
//! the real protocol adag uses:
//!
//! - `HEAD|GET /{org}/{name}/resolve/{rev}/{file}`: small files answer 200 with `X-Repo-Commit`
//!   and a git-style `ETag`; LFS files (`*.safetensors`, `*.npz`, or over 1 KiB) answer 302 to
//!   `/lfs/{sha256}` with `X-Repo-Commit`, `X-Linked-Etag` (the sha256) and `X-Linked-Size`;
//!   a missing file of an existing revision is 404 with `X-Repo-Commit`.
//! - `GET /lfs/{sha256}` honours `Range: bytes=N-` (206, `Content-Range`).
//! - Gated repositories answer 401 unless `Authorization: Bearer {token}` is sent.
//!
//! Every request is logged, and the next LFS body can be cut after N bytes to simulate an
//! interrupted download.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use sha2::{Digest, Sha256};

/// One repository: a commit and its files.
#[derive(Debug, Clone, Default)]
pub struct MockRepo {
    /// The commit every revision resolves to.
    pub commit: String,
    /// Path → contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Require this bearer token.
    pub token: Option<String>,
}

#[derive(Default)]
struct Inner {
    repos: BTreeMap<String, MockRepo>,
    log: Vec<String>,
    served: BTreeSet<String>,
    cut_next: Option<usize>,
    offline: bool,
    url: String,
}

/// A running mock hub; it stops when dropped.
pub struct MockHub {
    /// `http://127.0.0.1:{port}`: use as `HF_ENDPOINT`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn is_lfs(path: &str, bytes: &[u8]) -> bool {
    path.ends_with(".safetensors") || path.ends_with(".npz") || bytes.len() > 1024
}

impl MockHub {
    /// Starts a hub serving nothing yet.
    pub fn start() -> MockHub {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let state = inner.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let app = Router::new()
                    .route("/{org}/{name}/resolve/{rev}/{*file}", any(resolve))
                    .route("/lfs/{sha}", get(lfs))
                    .with_state(state);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1");
                let addr = listener.local_addr().expect("local addr");
                url_tx.send(format!("http://{addr}")).expect("send url");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let url: String = url_rx.recv().expect("mock hub started");
        inner.lock().unwrap().url = url.clone();
        MockHub {
            url,
            inner,
            stop: Some(tx),
        }
    }

    /// Adds (or replaces) a repository.
    pub fn add_repo(&self, repo: &str, r: MockRepo) {
        self.inner.lock().unwrap().repos.insert(repo.to_string(), r);
    }

    /// Adds every file under `dir` (recursively) to `repo` under `prefix`.
    pub fn add_dir(&self, repo: &str, prefix: &str, dir: &std::path::Path) {
        let mut g = self.inner.lock().unwrap();
        let r = g.repos.entry(repo.to_string()).or_insert_with(|| MockRepo {
            commit: sha256_hex(repo.as_bytes())[..40].to_string(),
            ..Default::default()
        });
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read fixture dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    let key = if prefix.is_empty() {
                        rel
                    } else {
                        format!("{prefix}/{rel}")
                    };
                    r.files
                        .insert(key, std::fs::read(&p).expect("read fixture"));
                }
            }
        }
    }

    /// Adds one file.
    pub fn add_file(&self, repo: &str, path: &str, bytes: Vec<u8>) {
        let mut g = self.inner.lock().unwrap();
        let r = g.repos.entry(repo.to_string()).or_insert_with(|| MockRepo {
            commit: sha256_hex(repo.as_bytes())[..40].to_string(),
            ..Default::default()
        });
        r.files.insert(path.to_string(), bytes);
    }

    /// Requests so far, as `METHOD path [range]`.
    pub fn log(&self) -> Vec<String> {
        self.inner.lock().unwrap().log.clone()
    }

    /// Forgets the request log and the files served.
    pub fn clear_log(&self) {
        let mut g = self.inner.lock().unwrap();
        g.log.clear();
        g.served.clear();
    }

    /// Cuts the next LFS body after `n` bytes (the connection drops mid-download).
    pub fn cut_next_download(&self, n: usize) {
        self.inner.lock().unwrap().cut_next = Some(n);
    }

    /// Makes every request fail with 503, as an unreachable hub would.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().offline = down;
    }

    /// The files whose contents were sent (`org/name/path`), directly or from LFS storage.
    pub fn fetched(&self) -> BTreeSet<String> {
        self.inner.lock().unwrap().served.clone()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}

async fn resolve(
    State(st): State<Arc<Mutex<Inner>>>,
    AxPath((org, name, rev, file)): AxPath<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let mut g = st.lock().unwrap();
    g.log
        .push(format!("{method} /{org}/{name}/resolve/{rev}/{file}"));
    if g.offline {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Some(repo) = g.repos.get(&format!("{org}/{name}")) else {
        // The real hub answers 401 for unknown repositories to anonymous callers.
        return status(StatusCode::UNAUTHORIZED);
    };
    if let Some(t) = &repo.token {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(format!("Bearer {t}").as_str()) {
            return status(StatusCode::UNAUTHORIZED);
        }
    }
    if rev != "main" && rev != repo.commit {
        return status(StatusCode::NOT_FOUND);
    }
    let Some(bytes) = repo.files.get(&file) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-repo-commit", &repo.commit)
            .header("x-error-code", "EntryNotFound")
            .body(Body::empty())
            .unwrap();
    };
    let sha = sha256_hex(bytes);
    if is_lfs(&file, bytes) {
        return Response::builder()
            .status(StatusCode::FOUND)
            // Absolute, as the real hub's redirect to its CDN.
            .header("location", format!("{}/lfs/{sha}", g.url))
            .header("x-repo-commit", &repo.commit)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", bytes.len().to_string())
            .body(Body::empty())
            .unwrap();
    }
    let b = Response::builder()
        .status(StatusCode::OK)
        .header("x-repo-commit", &repo.commit)
        .header("etag", format!("\"{}\"", &sha[..40]))
        .header("content-length", bytes.len().to_string());
    if method == Method::HEAD {
        b.body(Body::empty()).unwrap()
    } else {
        let body = Body::from(bytes.clone());
        g.served.insert(format!("{org}/{name}/{file}"));
        b.body(body).unwrap()
    }
}

async fn lfs(
    State(st): State<Arc<Mutex<Inner>>>,
    AxPath(sha): AxPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut g = st.lock().unwrap();
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string());
    g.log.push(format!(
        "GET /lfs/{sha}{}",
        range
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default()
    ));
    if g.offline {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    let found = g
        .repos
        .iter()
        .flat_map(|(repo, r)| r.files.iter().map(move |(f, b)| (format!("{repo}/{f}"), b)))
        .find(|(_, b)| sha256_hex(b) == sha)
        .map(|(name, b)| (name, b.clone()));
    let Some((name, bytes)) = found else {
        return status(StatusCode::NOT_FOUND);
    };
    g.served.insert(name);
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (code, body) = match start {
        Some(s) if s < bytes.len() => (StatusCode::PARTIAL_CONTENT, bytes[s..].to_vec()),
        Some(_) => return status(StatusCode::RANGE_NOT_SATISFIABLE),
        None => (StatusCode::OK, bytes.clone()),
    };
    let mut b = Response::builder()
        .status(code)
        .header("content-length", body.len().to_string());
    if let Some(s) = start {
        b = b.header(
            "content-range",
            format!("bytes {s}-{}/{}", bytes.len() - 1, bytes.len()),
        );
    }
    match g.cut_next.take() {
        Some(n) if n < body.len() => {
            // Promise the full length, send n bytes, then fail: the client sees a broken body.
            // The pause lets the server flush the first part before the body fails.
            use futures_util::StreamExt;
            let head = futures_util::stream::iter([Ok::<_, std::io::Error>(body[..n].to_vec())]);
            let fail = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut",
                ))
            });
            b.body(Body::from_stream(head.chain(fail))).unwrap()
        }
        _ => b.body(Body::from(body)).unwrap(),
    }
}
