//! Shared test helpers: fixture folders, a raw HTTP/1.1 client (so that requests reach the
//! server exactly as written, `..` and all), and a small WebDriver client for Chromium.
#![allow(dead_code)]

pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use adag_serve::{ServeConfig, Server};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture_graphs() -> PathBuf {
    repo_root().join("fixtures/graphs")
}

/// A temp folder `graphs/` holding copies of the committed fixture graphs, next to a
/// `secret.txt` that no request may ever read.
pub struct Workspace {
    pub tmp: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let tmp = tempfile::tempdir().unwrap();
        let graphs = tmp.path().join("graphs");
        std::fs::create_dir(&graphs).unwrap();
        for f in [
            "austin-clt.json",
            "capital-neurons.json",
            "graph-metadata.json",
        ] {
            std::fs::copy(fixture_graphs().join(f), graphs.join(f)).unwrap();
        }
        std::fs::write(tmp.path().join("secret.txt"), SECRET).unwrap();
        Workspace { tmp }
    }

    pub fn graphs(&self) -> PathBuf {
        self.tmp.path().join("graphs")
    }

    pub fn features(&self) -> PathBuf {
        let f = self.tmp.path().join("features");
        std::fs::create_dir_all(&f).unwrap();
        f
    }

    pub fn graph_file(&self, slug: &str) -> PathBuf {
        self.graphs().join(format!("{slug}.json"))
    }

    pub fn start(&self) -> Server {
        Server::start(
            ServeConfig::new(self.graphs())
                .port(0)
                .features_dir(self.features()),
        )
        .unwrap()
    }
}

pub const SECRET: &str = "TOP-SECRET-CONTENT-7f3a";

// ---- raw HTTP ----

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        let body = if self.header("content-encoding") == Some("gzip") {
            gunzip(&self.body)
        } else {
            self.body.clone()
        };
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Sends `head` (request line and headers, without the final blank line) and `body`, with
/// `Connection: close`, and reads the whole response.
pub fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    // The server may answer (413) and close before reading a large body; a failed write is fine.
    let _ = s.write_all(&req);
    parse_response(&read_response(&mut s, head.starts_with("HEAD ")))
}

/// Reads one response: up to the end of its body by Content-Length or chunking, else to EOF.
/// (Some servers keep the connection open despite `Connection: close`.)
fn read_response(s: &mut TcpStream, is_head: bool) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let complete = |raw: &[u8]| -> bool {
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let body = &raw[split + 4..];
        if is_head || head.contains(" 204 ") || head.contains(" 304 ") {
            return true;
        }
        for line in head.lines() {
            if let Some(v) = line.strip_prefix("content-length:") {
                return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
            }
            if line.starts_with("transfer-encoding:") && line.contains("chunked") {
                return body.ends_with(b"0\r\n\r\n");
            }
        }
        false
    };
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if complete(&raw) {
                    break;
                }
            }
        }
    }
    raw
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_str = std::str::from_utf8(&b[..eol]).unwrap();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, &format!("GET {path} HTTP/1.1"), b"")
}

pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut head = format!("GET {path} HTTP/1.1");
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    request(addr, &head, b"")
}

/// A save as the viewer page sends it: JSON, with the server's own `Origin`.
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Resp {
    post_with(
        addr,
        path,
        &[
            ("Content-Type", "application/json"),
            ("Origin", &format!("http://{addr}")),
        ],
        body,
    )
}

/// A POST with exactly these headers (plus Host, Connection and Content-Length).
pub fn post_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut head = format!("POST {path} HTTP/1.1\r\nContent-Length: {}", body.len());
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    request(addr, &head, body)
}

/// Like [`request`] but with this `Host` header instead of the address.
pub fn request_as_host(addr: SocketAddr, host: &str, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{head}\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    let _ = s.write_all(&req);
    parse_response(&read_response(&mut s, false))
}

// ---- feature-detail files ----

/// Writes circuit-tracer's binary feature format into `dir`: `index.json.gz` (by layer:
/// offsets and file name) and `layer_{l}.bin` (4-byte LE length + zlib JSON per feature).
/// `features` maps (layer, feature index) to the feature JSON; `d` is the dictionary size.
pub fn write_binary_features(
    dir: &Path,
    n_layers: usize,
    d: usize,
    features: &[(usize, usize, serde_json::Value)],
) {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).unwrap();
    let mut index = Vec::new();
    for l in 0..n_layers {
        let mut bin = Vec::new();
        let mut offsets = Vec::with_capacity(d + 1);
        for f in 0..d {
            offsets.push(bin.len());
            if let Some((_, _, v)) = features.iter().find(|(fl, ff, _)| *fl == l && *ff == f) {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(v.to_string().as_bytes()).unwrap();
                let z = z.finish().unwrap();
                bin.extend_from_slice(&(z.len() as u32).to_le_bytes());
                bin.extend_from_slice(&z);
            }
        }
        offsets.push(bin.len());
        let name = format!("layer_{l}.bin");
        std::fs::write(dir.join(&name), &bin).unwrap();
        index.push(serde_json::json!({"offsets": offsets, "filename": name}));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(serde_json::Value::Array(index).to_string().as_bytes())
        .unwrap();
    std::fs::write(dir.join("index.json.gz"), gz.finish().unwrap()).unwrap();
}

/// A big synthetic graph in the circuit-tracer schema: `n_layers × n_pos` cells of features,
/// an error node per cell (new id scheme `{l}_-1_{p}`), embeddings, 3 logits, and `n_links`
/// links from lower to higher rows with signed weights. Deterministic.
pub fn synthetic_graph(
    slug: &str,
    n_layers: usize,
    n_pos: usize,
    n_nodes: usize,
    n_links: usize,
) -> Vec<u8> {
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = String::with_capacity(n_links * 70 + n_nodes * 250);
    let tokens: Vec<String> = (0..n_pos).map(|p| format!("t{p}")).collect();
    out.push_str(&format!(
        "{{\"metadata\":{{\"slug\":\"{slug}\",\"scan\":\"synthetic\",\"transcoder_list\":[],\"prompt_tokens\":{},\"prompt\":\"synthetic\",\"node_threshold\":null,\"schema_version\":1}},",
        serde_json::to_string(&tokens).unwrap()
    ));
    out.push_str("\"qParams\":{\"pinnedIds\":[],\"supernodes\":[],\"linkType\":\"both\",\"clickedId\":\"\",\"sg_pos\":\"\"},\"nodes\":[");
    // (id, row) for link generation; row 0 = embeddings, n_layers+1 = logits.
    let mut ids: Vec<(String, usize)> = Vec::with_capacity(n_nodes);
    fn push(
        out: &mut String,
        ids: &mut Vec<(String, usize)>,
        id: String,
        row: usize,
        json: String,
    ) {
        if !ids.is_empty() {
            out.push(',');
        }
        out.push_str(&json);
        ids.push((id, row));
    }
    for p in 0..n_pos {
        let id = format!("E_{}_{p}", 1000 + p);
        let j = format!("{{\"node_id\":\"{id}\",\"feature\":{p},\"layer\":\"E\",\"ctx_idx\":{p},\"feature_type\":\"embedding\",\"token_prob\":0.0,\"is_target_logit\":false,\"run_idx\":0,\"reverse_ctx_idx\":0,\"jsNodeId\":\"E_{}-{p}\",\"clerp\":\"\",\"influence\":0.5,\"activation\":null}}", 1000 + p);
        push(&mut out, &mut ids, id, 0, j);
    }
    for k in 0..3 {
        let v = 500 + k;
        let id = format!("{}_{v}_{}", n_layers + 1, n_pos - 1);
        let j = format!("{{\"node_id\":\"{id}\",\"feature\":{v},\"layer\":\"{}\",\"ctx_idx\":{},\"feature_type\":\"logit\",\"token_prob\":{},\"is_target_logit\":{},\"run_idx\":0,\"reverse_ctx_idx\":0,\"jsNodeId\":\"L_{v}-{}\",\"clerp\":\"Output \\\"tok{k}\\\" (p=0.{})\",\"influence\":null,\"activation\":null}}",
            n_layers + 1, n_pos - 1, 0.5 / (k + 1) as f64, k == 0, n_pos - 1, 5 - k);
        push(&mut out, &mut ids, id, n_layers + 1, j);
    }
    for l in 0..n_layers {
        for p in 0..n_pos {
            let id = format!("{l}_-1_{p}");
            let j = format!("{{\"node_id\":\"{id}\",\"feature\":-1,\"layer\":\"{l}\",\"ctx_idx\":{p},\"feature_type\":\"mlp reconstruction error\",\"token_prob\":0.0,\"is_target_logit\":false,\"run_idx\":0,\"reverse_ctx_idx\":0,\"jsNodeId\":\"{l}_-1-{p}\",\"clerp\":\"\",\"influence\":{},\"activation\":null}}", (next() % 1000) as f64 / 1000.0);
            push(&mut out, &mut ids, id, l + 1, j);
        }
    }
    let mut f = 0usize;
    while ids.len() < n_nodes {
        let l = (next() as usize) % n_layers;
        let p = (next() as usize) % n_pos;
        f += 1;
        let id = format!("{l}_{f}_{p}");
        let infl = (next() % 100_000) as f64 / 100_000.0;
        let j = format!("{{\"node_id\":\"{id}\",\"feature\":{f},\"layer\":\"{l}\",\"ctx_idx\":{p},\"feature_type\":\"cross layer transcoder\",\"token_prob\":0.0,\"is_target_logit\":false,\"run_idx\":0,\"reverse_ctx_idx\":0,\"jsNodeId\":\"{l}_{f}-0\",\"clerp\":\"feature {f} of layer {l}\",\"influence\":{infl},\"activation\":{}}}", (next() % 1000) as f64 / 100.0);
        push(&mut out, &mut ids, id, l + 1, j);
    }
    out.push_str("],\"links\":[");
    let n = ids.len();
    let mut written = 0;
    while written < n_links {
        let a = (next() as usize) % n;
        let b = (next() as usize) % n;
        let (s, t) = if ids[a].1 < ids[b].1 {
            (a, b)
        } else if ids[b].1 < ids[a].1 {
            (b, a)
        } else {
            continue;
        };
        if written > 0 {
            out.push(',');
        }
        let w = ((next() % 20_000) as f64 - 10_000.0) / 1000.0;
        out.push_str(&format!(
            "{{\"source\":\"{}\",\"target\":\"{}\",\"weight\":{w}}}",
            ids[s].0, ids[t].0
        ));
        written += 1;
    }
    out.push_str("]}");
    out.into_bytes()
}
