//! Serving files from a folder safely: URL path decoding, confinement, byte ranges and gzip.

use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};

/// Percent-decodes a URL path; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let h = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Resolves a decoded, `/`-separated relative path inside `root`, or `None` if it could name
/// anything outside: absolute paths, empty, `.` or `..` components, backslashes, NUL, drive
/// prefixes, and (after resolving symlinks) any file whose real path is not under `root`'s.
/// Only regular files are returned.
pub fn resolve_in(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains(['\\', '\0', ':']) {
        return None;
    }
    let mut path = PathBuf::new();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) => path.push(c),
            _ => return None,
        }
    }
    let root = root.canonicalize().ok()?;
    let real = root.join(&path).canonicalize().ok()?;
    (real.starts_with(&root) && real.is_file()).then_some(real)
}

/// A single byte range, inclusive of both ends, within a file of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable `Range` header (absent, malformed, several ranges): send the whole file.
    Full,
    /// One satisfiable range: send 206.
    Partial(ByteRange),
    /// A well-formed range that lies outside the file: send 416.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` (RFC 9110 §14.1.2). Anything this does not
/// understand is ignored, as the RFC allows, and the whole file is sent.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(h) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(ByteRange {
                    start: len.saturating_sub(n),
                    end: len - 1,
                })
            }
        }
        (false, Some(start), end) => {
            if !b.trim().is_empty() && end.is_none() {
                return RangeRequest::Full;
            }
            if let Some(e) = end {
                if e < start {
                    return RangeRequest::Full;
                }
            }
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(ByteRange {
                start,
                end: end.unwrap_or(len - 1).min(len - 1),
            })
        }
        _ => RangeRequest::Full,
    }
}

/// Bytes read from a file per chunk of a streamed response.
const CHUNK: usize = 64 * 1024;

/// A response body that streams `range` (or all) of `path` from disk, so a large file costs one
/// chunk of memory per request, not its size.
pub async fn stream_range(
    path: &Path,
    range: Option<ByteRange>,
) -> std::io::Result<axum::body::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let reader = match range {
        None => f.take(u64::MAX),
        Some(r) => {
            f.seek(SeekFrom::Start(r.start)).await?;
            f.take(r.end - r.start + 1)
        }
    };
    Ok(axum::body::Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, CHUNK),
    ))
}

/// A response body that streams `path` gzip-compressed (level 3, as [`gzip`]), one chunk at a
/// time.
pub async fn stream_gzip(path: &Path) -> std::io::Result<axum::body::Body> {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(3));
    let state = Some((file, enc, vec![0u8; CHUNK]));
    let stream = futures_util::stream::unfold(state, |state| async move {
        let (mut file, mut enc, mut buf) = state?;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => return Some((Err(e), None)),
            };
            if n == 0 {
                return Some((enc.finish(), None));
            }
            if let Err(e) = enc.write_all(&buf[..n]) {
                return Some((Err(e), None));
            }
            let out = std::mem::take(enc.get_mut());
            if !out.is_empty() {
                return Some((Ok(out), Some((file, enc, buf))));
            }
        }
    });
    Ok(axum::body::Body::from_stream(stream))
}

/// Whether an `Accept-Encoding` header admits gzip (a `q=0` weight refuses it).
pub fn accepts_gzip(header: Option<&str>) -> bool {
    header.is_some_and(|h| {
        h.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

/// Gzips `bytes` at level 3 (circuit-tracer's server uses the same level: fast, ~5x on JSON).
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::new(3),
    );
    enc.write_all(bytes)?;
    enc.finish()
}

/// Content type by file extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2e%2E%2f").as_deref(), Some("../"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn confinement() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        assert!(resolve_in(&root, "sub/a.json").is_some());
        for bad in [
            "../secret",
            "sub/../../secret",
            "sub/../sub/a.json",
            "/etc/passwd",
            "sub//a.json",
            "./sub/a.json",
            "sub\\a.json",
            "C:/x",
            "sub",
            "",
            "sub/missing",
        ] {
            assert_eq!(resolve_in(&root, bad), None, "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
            assert_eq!(resolve_in(&root, "link"), None);
        }
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |s, e| Partial(ByteRange { start: s, end: e });
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), r(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=90-500"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), r(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 100), Full);
        assert_eq!(parse_range(Some("bytes=+1-2"), 100), Full);
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, GZIP;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br")));
        assert!(!accepts_gzip(None));
    }
}
