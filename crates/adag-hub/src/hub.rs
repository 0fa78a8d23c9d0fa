//! The hub client: cache-first file resolution and resumable, verified downloads over the
//! hub's `resolve` protocol.
//!
//! Protocol (as `huggingface_hub.hf_hub_download` speaks it):
//! 1. `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` without following redirects. The answer
//!    (200, or a 302 to a CDN for LFS files) carries `X-Repo-Commit`, the ETag (`X-Linked-Etag`
//!    for LFS, else `ETag`; the sha256 of the contents for LFS) and the size (`X-Linked-Size` or
//!    `Content-Length`). A relative redirect (renamed repository) is followed.
//! 2. `GET` the final URL into `blobs/{etag}.incomplete`, with `Range: bytes={n}-` when `n` bytes
//!    are already there (206 appends; 200 restarts).
//! 3. Check the size, and the sha256 when the ETag is one; rename to `blobs/{etag}`; link
//!    `snapshots/{commit}/{file}`; write `refs/{revision}`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::cache::{is_commit, RepoCache};
use crate::error::{io, Error, Result};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to reach the hub, and where its files are cached.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL (`HF_ENDPOINT`), without a trailing `/`.
    pub endpoint: String,
    /// The hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// Bearer token (`HF_TOKEN`, else `$HF_HOME/token`).
    pub token: Option<String>,
    /// Never touch the network (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Draw progress bars on stderr (only when it is a terminal).
    pub progress: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
}

impl HubConfig {
    /// Reads the variables `huggingface_hub` reads, with its defaults.
    pub fn from_env() -> HubConfig {
        let home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            env("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = env("HF_HUB_CACHE")
            .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = env("HF_TOKEN")
            .or_else(|| env("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                std::fs::read_to_string(home.join("token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        HubConfig {
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token,
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
            progress: true,
        }
    }
}

/// A hub client bound to one cache.
pub struct Hub {
    cfg: HubConfig,
    client: Client,
}

/// What the `HEAD` of a file says.
struct Meta {
    commit: String,
    etag: String,
    size: Option<u64>,
    url: String,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
}

/// `W/"abc"` → `abc`.
fn clean_etag(s: &str) -> String {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// `blobs/{etag}.incomplete`, huggingface_hub's name for a partial download.
pub(crate) fn incomplete(blob: &Path) -> PathBuf {
    let mut name = blob.file_name().unwrap_or_default().to_os_string();
    name.push(".incomplete");
    blob.with_file_name(name)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn join_url(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        // Relative: keep scheme and host of `base`.
        let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
        let host_end = base[after_scheme..]
            .find('/')
            .map(|i| after_scheme + i)
            .unwrap_or(base.len());
        format!("{}{}", &base[..host_end], location)
    }
}

fn same_host(a: &str, b: &str) -> bool {
    let host = |u: &str| {
        let s = u.find("://").map(|i| i + 3).unwrap_or(0);
        u[s..].split('/').next().unwrap_or("").to_string()
    };
    host(a) == host(b)
}

impl Hub {
    /// A client for `cfg`.
    pub fn new(cfg: HubConfig) -> Result<Hub> {
        let client = Client::builder()
            // Redirects are followed by hand: HEAD must see the 302's headers, and the token
            // must not travel to the CDN.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(20))
            .user_agent(concat!("adag/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http {
                url: cfg.endpoint.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Hub { cfg, client })
    }

    /// A client configured from the environment.
    pub fn from_env() -> Result<Hub> {
        Hub::new(HubConfig::from_env())
    }

    /// The configuration in use.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// The local path of `file` in `repo` at `revision`, downloading it if the cache lacks it.
    pub fn file(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf> {
        self.try_file(repo, revision, file)?
            .ok_or_else(|| Error::NotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.to_string(),
                endpoint: self.cfg.endpoint.clone(),
            })
    }

    /// Like [`Hub::file`], but a file the repository does not have is `None` (remembered in
    /// `.no_exist/`, so asking again needs no network).
    pub fn try_file(&self, repo: &str, revision: &str, file: &str) -> Result<Option<PathBuf>> {
        let rc = RepoCache::new(&self.cfg.cache, repo);
        // Cache first: a revision already resolved to a commit needs no request. (A branch that
        // moved on the hub is picked up after deleting `refs/{revision}`, or by pinning a commit.)
        if let Some(commit) = rc.commit(revision) {
            if let Some(p) = rc.cached(&commit, file) {
                return Ok(Some(p));
            }
            if rc.known_missing(&commit, file) {
                return Ok(None);
            }
        }
        if self.cfg.offline {
            return Err(Error::OfflineMissing {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.to_string(),
                cache: self.cfg.cache.clone(),
            });
        }
        let meta = match self.head(repo, revision, file, &rc)? {
            Some(m) => m,
            None => return Ok(None),
        };
        rc.set_ref(revision, &meta.commit)?;
        let blob = rc.blob(&meta.etag);
        if !blob.exists() {
            self.download(repo, file, &meta, &blob)?;
        }
        rc.link(&meta.commit, file, &meta.etag).map(Some)
    }

    fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.cfg.endpoint, repo, revision, file
        )
    }

    fn send(&self, method: reqwest::Method, url: &str, range: Option<u64>) -> Result<Response> {
        let mut req = self
            .client
            .request(method, url)
            .header("Accept-Encoding", "identity");
        if let Some(t) = &self.cfg.token {
            if same_host(url, &self.cfg.endpoint) {
                req = req.header(AUTHORIZATION, format!("Bearer {t}"));
            }
        }
        if let Some(n) = range {
            req = req.header(RANGE, format!("bytes={n}-"));
        }
        req.send().map_err(|e| Error::Http {
            url: url.to_string(),
            reason: format!("request failed: {e}"),
        })
    }

    fn status_error(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        url: &str,
        s: StatusCode,
    ) -> Error {
        match s.as_u16() {
            401 | 403 => Error::Gated {
                repo: repo.to_string(),
                status: s.as_u16(),
            },
            404 => Error::NotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.to_string(),
                endpoint: self.cfg.endpoint.clone(),
            },
            _ => Error::Http {
                url: url.to_string(),
                reason: format!("HTTP {s}"),
            },
        }
    }

    fn head(&self, repo: &str, revision: &str, file: &str, rc: &RepoCache) -> Result<Option<Meta>> {
        let mut url = self.resolve_url(repo, revision, file);
        for _ in 0..5 {
            let r = self.send(reqwest::Method::HEAD, &url, None)?;
            let h = r.headers();
            let s = r.status();
            if s == StatusCode::NOT_FOUND {
                // The hub names the commit even for a missing file of an existing revision.
                if let Some(commit) = header(h, "x-repo-commit") {
                    rc.set_ref(revision, &commit)?;
                    rc.mark_missing(&commit, file)?;
                    return Ok(None);
                }
                return Err(self.status_error(repo, revision, file, &url, s));
            }
            if s.is_redirection() {
                let loc = header(h, LOCATION.as_str()).unwrap_or_default();
                // A redirect with metadata points at the file's storage (LFS); a bare relative
                // one is a renamed repository, followed like huggingface_hub does.
                if header(h, "x-repo-commit").is_none() && loc.starts_with('/') {
                    url = join_url(&url, &loc);
                    continue;
                }
            } else if !s.is_success() {
                return Err(self.status_error(repo, revision, file, &url, s));
            }
            let missing = |what: &str| Error::Http {
                url: url.clone(),
                reason: format!("the hub's answer lacks {what}; is HF_ENDPOINT a HuggingFace hub?"),
            };
            let commit = header(h, "x-repo-commit").ok_or_else(|| missing("X-Repo-Commit"))?;
            let etag = header(h, "x-linked-etag")
                .or_else(|| header(h, ETAG.as_str()))
                .map(|e| clean_etag(&e))
                .filter(|e| !e.is_empty() && !e.contains(['/', '\\']))
                .ok_or_else(|| missing("an ETag"))?;
            let size = header(h, "x-linked-size")
                .or_else(|| header(h, CONTENT_LENGTH.as_str()))
                .and_then(|v| v.parse().ok());
            let dl = if s.is_redirection() {
                join_url(&url, &header(h, LOCATION.as_str()).unwrap_or_default())
            } else {
                url.clone()
            };
            return Ok(Some(Meta {
                commit,
                etag,
                size,
                url: dl,
            }));
        }
        Err(Error::Http {
            url,
            reason: "too many redirects".into(),
        })
    }

    fn download(&self, repo: &str, file: &str, meta: &Meta, blob: &Path) -> Result<()> {
        let part = incomplete(blob);
        if let Some(parent) = blob.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let complete_already = meta.size.is_some_and(|n| have == n && n > 0);
        if !complete_already {
            self.fetch_into(repo, file, meta, &part, have)?;
        }
        self.verify(repo, file, meta, &part)?;
        std::fs::rename(&part, blob).map_err(io(blob))
    }

    fn fetch_into(
        &self,
        repo: &str,
        file: &str,
        meta: &Meta,
        part: &Path,
        have: u64,
    ) -> Result<()> {
        let range = (have > 0).then_some(have);
        let mut url = meta.url.clone();
        let mut resp = None;
        for _ in 0..5 {
            let r = self.send(reqwest::Method::GET, &url, range)?;
            if r.status().is_redirection() {
                let loc = header(r.headers(), LOCATION.as_str()).unwrap_or_default();
                url = join_url(&url, &loc);
                continue;
            }
            resp = Some(r);
            break;
        }
        let mut r = resp.ok_or_else(|| Error::Http {
            url: url.clone(),
            reason: "too many redirects".into(),
        })?;
        let (mut out, start) = match r.status() {
            StatusCode::PARTIAL_CONTENT => {
                tracing::info!("{repo}/{file}: resuming at byte {have}");
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(part)
                    .map_err(io(part))?;
                (f, have)
            }
            s if s.is_success() => (std::fs::File::create(part).map_err(io(part))?, 0),
            s => return Err(self.status_error(repo, "", file, &url, s)),
        };
        let bar = if self.cfg.progress {
            let b = indicatif::ProgressBar::new(meta.size.unwrap_or(0));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(format!("{repo}/{file}"));
            b.set_position(start);
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf).map_err(|e| Error::Http {
                url: url.clone(),
                reason: format!(
                    "download interrupted ({e}); the partial file is kept and the next run resumes it"
                ),
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(io(part))?;
            bar.inc(n as u64);
        }
        out.sync_all().map_err(io(part))?;
        bar.finish_and_clear();
        Ok(())
    }

    fn verify(&self, repo: &str, file: &str, meta: &Meta, part: &Path) -> Result<()> {
        let corrupt = |reason: String| {
            let _ = std::fs::remove_file(part);
            Error::Corrupt {
                repo: repo.to_string(),
                file: file.to_string(),
                reason,
            }
        };
        let len = std::fs::metadata(part).map_err(io(part))?.len();
        if let Some(n) = meta.size {
            if len != n {
                return Err(corrupt(format!("expected {n} bytes, got {len}")));
            }
        }
        // LFS files are named by their sha256; small git files by a git hash we do not recheck.
        if is_sha256(&meta.etag) {
            let mut h = Sha256::new();
            let mut f = std::fs::File::open(part).map_err(io(part))?;
            std::io::copy(&mut f, &mut h).map_err(io(part))?;
            let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            if !got.eq_ignore_ascii_case(&meta.etag) {
                return Err(corrupt(format!("sha256 {got}, the hub says {}", meta.etag)));
            }
        }
        Ok(())
    }

    /// The snapshot folder of `repo` at `revision` (it exists once a file was fetched).
    pub fn snapshot_dir(&self, repo: &str, revision: &str) -> Option<PathBuf> {
        let rc = RepoCache::new(&self.cfg.cache, repo);
        rc.commit(revision).map(|c| rc.snapshot(&c))
    }

    /// Whether `revision` is pinned to a commit.
    pub fn is_commit(revision: &str) -> bool {
        is_commit(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_urls() {
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert_eq!(clean_etag("\"abc\""), "abc");
        assert_eq!(
            join_url("http://127.0.0.1:5/a/resolve/main/x", "/b/resolve/main/x"),
            "http://127.0.0.1:5/b/resolve/main/x"
        );
        assert_eq!(join_url("http://a/x", "https://cdn/y"), "https://cdn/y");
        assert!(same_host("http://a:1/x", "http://a:1"));
        assert!(!same_host("http://a:1/x", "http://cdn/x"));
    }
}
