//! The HTTP server as a client sees it, over raw sockets: confinement, 404s, gzip, byte
//! ranges, saving UI state (and refusing bad saves), the screen-sized view, and binding; and
//! what it refuses to other sites (cross-site writes, foreign Host names, symlinks out).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use adag_serve::{ServeConfig, Server};
use common::*;
use serde_json::{json, Value};

fn assert_no_secret(r: &Resp, what: &str) {
    assert!(
        !r.text().contains(SECRET) && !r.text().contains("[workspace]"),
        "{what} leaked a file"
    );
}

#[test]
fn traversal_attempts_are_404() {
    let ws = Workspace::new();
    // A symlink inside a served folder that points outside must not be followed.
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        ws.tmp.path().join("secret.txt"),
        ws.graphs().join("link.json"),
    )
    .unwrap();
    std::fs::write(ws.features().join("ok.bin"), b"fine").unwrap();
    let server = ws.start();
    let a = server.addr();
    assert_eq!(get(a, "/features/ok.bin").status, 200);
    for path in [
        "/data/../secret.txt",
        "/data/../../Cargo.toml",
        "/graph_data/../secret.txt",
        "/features/../secret.txt",
        "/features/../graphs/austin-clt.json",
        "/data/%2e%2e/secret.txt",
        "/data/%2E%2E%2Fsecret.txt",
        "/data/..%2fsecret.txt",
        "/data/..%5csecret.txt",
        "/data/%2fetc%2fpasswd",
        "/data//etc/passwd",
        "/features//etc/passwd",
        "/data/./austin-clt.json",
        "/data/austin-clt.json%00.txt",
        "/data/%ff%fe",
        "/data/link.json",
        "/assets/../../Cargo.toml",
        "/assets/%2e%2e/app.css",
        "/api/graph/..%2fsecret",
        "/api/graph/%2e%2e",
        "/../secret.txt",
    ] {
        let r = get(a, path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_no_secret(&r, path);
    }
    // Absolute-form request targets do not escape either.
    let r = request(a, "GET http://localhost/../secret.txt HTTP/1.1", b"");
    // (421: its authority, `localhost` without the port, does not name this server.)
    assert!(matches!(r.status, 400 | 404 | 421), "{}", r.status);
    assert_no_secret(&r, "absolute-form");
}

#[test]
fn unknown_paths_are_404_and_known_ones_are_served() {
    let ws = Workspace::new();
    let server = ws.start();
    let a = server.addr();
    for path in [
        "/nope",
        "/assets/nope.js",
        "/api/graph/nope",
        "/data/nope.json",
        "/api",
        "/features/x",
    ] {
        assert_eq!(get(a, path).status, 404, "{path}");
    }
    let index = get(a, "/");
    assert_eq!(index.status, 200);
    assert!(index.text().contains("/assets/js/main.js"));
    for asset in [
        "app.css",
        "js/main.js",
        "js/canvas.js",
        "js/panel.js",
        "js/subgraph.js",
        "js/features.js",
        "js/model.js",
        "js/state.js",
        "js/util.js",
    ] {
        let r = get(a, &format!("/assets/{asset}"));
        assert_eq!(r.status, 200, "{asset}");
        assert!(!r.body.is_empty());
    }
    assert!(get(a, "/assets/js/main.js")
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    // The list names both fixture graphs.
    let list = get(a, "/api/graphs").json();
    let slugs: Vec<&str> = list["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["austin-clt", "capital-neurons"]);
}

#[test]
fn graph_list_is_synthesised_without_metadata_file() {
    let ws = Workspace::new();
    std::fs::remove_file(ws.graphs().join("graph-metadata.json")).unwrap();
    std::fs::write(ws.graphs().join("not-a-graph.json"), b"[1, 2]").unwrap();
    let server = ws.start();
    let list = get(server.addr(), "/data/graph-metadata.json").json();
    let slugs: Vec<&str> = list["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["austin-clt", "capital-neurons"]);
    assert_eq!(list["graphs"][0]["scan"], json!("adag-demo-clt"));
}

#[test]
fn gzip_is_negotiated() {
    let ws = Workspace::new();
    let server = ws.start();
    let a = server.addr();
    let file = std::fs::read(ws.graph_file("austin-clt")).unwrap();
    for path in ["/graph_data/austin-clt.json", "/data/austin-clt.json"] {
        let plain = get(a, path);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body, file);
        let gz = get_with(a, path, &[("Accept-Encoding", "gzip, deflate")]);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        assert!(
            gz.body.len() < file.len() / 3,
            "{} vs {}",
            gz.body.len(),
            file.len()
        );
        assert_eq!(gunzip(&gz.body), file);
        let refused = get_with(a, path, &[("Accept-Encoding", "gzip;q=0, br")]);
        assert_eq!(refused.header("content-encoding"), None);
    }
    let view = get_with(a, "/api/graph/austin-clt", &[("Accept-Encoding", "gzip")]);
    assert_eq!(view.header("content-encoding"), Some("gzip"));
    let v = view.json();
    let orig: Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(v["nodes"], orig["nodes"]);
    assert_eq!(v["links"], orig["links"]);
    assert_eq!(v["metadata"], orig["metadata"]);
}

#[test]
fn feature_files_honour_ranges() {
    let ws = Workspace::new();
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    std::fs::create_dir_all(ws.features().join("scan")).unwrap();
    std::fs::write(ws.features().join("scan/layer_0.bin"), &data).unwrap();
    let server = ws.start();
    let a = server.addr();
    let path = "/features/scan/layer_0.bin";
    let full = get_with(a, path, &[("Accept-Encoding", "gzip")]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        full.header("content-encoding"),
        None,
        "binary files are never re-encoded"
    );
    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=900-5000", 900, 999),
        ("bytes=0-0", 0, 0),
    ] {
        let r = get_with(a, path, &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, &data[start..=end], "{range}");
        assert_eq!(
            r.header("content-range").unwrap(),
            format!("bytes {start}-{end}/1000")
        );
        assert_eq!(
            r.header("content-length").unwrap(),
            (end - start + 1).to_string()
        );
    }
    let r = get_with(a, path, &[("Range", "bytes=1000-1010")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    // Several ranges or nonsense: the whole file, as RFC 9110 allows.
    for range in ["bytes=0-1,5-6", "lines=1-2", "bytes=x-y"] {
        let r = get_with(a, path, &[("Range", range)]);
        assert_eq!((r.status, r.body.len()), (200, 1000), "{range}");
    }
    // HEAD tells the size without the body (the viewer probes index.json.gz this way).
    let h = request(a, &format!("HEAD {path} HTTP/1.1"), b"");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("1000"));
    assert!(h.body.is_empty());
}

#[test]
fn binary_feature_records_decode() {
    let ws = Workspace::new();
    let feat = json!({"index": 7, "top_logits": [" Austin"], "examples_quantiles": []});
    write_binary_features(
        &ws.features().join("adag-demo-clt"),
        2,
        10,
        &[(1, 7, feat.clone())],
    );
    let server = ws.start();
    let a = server.addr();
    let index: Value = serde_json::from_slice(&gunzip(
        &get(a, "/features/adag-demo-clt/index.json.gz").body,
    ))
    .unwrap();
    let offs = index[1]["offsets"].as_array().unwrap();
    let (s, e) = (offs[7].as_u64().unwrap(), offs[8].as_u64().unwrap());
    let r = get_with(
        a,
        "/features/adag-demo-clt/layer_1.bin",
        &[("Range", &format!("bytes={s}-{}", e - 1))],
    );
    assert_eq!(r.status, 206);
    let n = u32::from_le_bytes(r.body[..4].try_into().unwrap()) as usize;
    assert_eq!(n + 4, r.body.len());
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&r.body[4..]), &mut json)
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), feat);
}

#[test]
fn save_replaces_qparams_atomically() {
    let ws = Workspace::new();
    let server = ws.start();
    let a = server.addr();
    let path = ws.graph_file("austin-clt");
    let before: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let q = json!({"pinnedIds": ["0_2051_3", "2_845_4"], "supernodes": [["Texas→Austin", "0_2051_3", "2_845_4"]],
                   "linkType": "inputs", "clickedId": "2_845_4", "sg_pos": "", "annotations": {"2_845_4": "says Austin"}});
    let r = post(a, "/save_graph/austin-clt", q.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(after["qParams"], q);
    for k in ["metadata", "nodes", "links"] {
        assert_eq!(after[k], before[k], "{k} changed");
    }
    // The view reflects the save at once (the cache follows the file).
    assert_eq!(get(a, "/api/graph/austin-clt").json()["qParams"], q);
    let leftovers: Vec<String> = std::fs::read_dir(ws.graphs())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn malformed_or_oversized_posts_change_nothing() {
    let ws = Workspace::new();
    let server = Server::start(ServeConfig {
        max_post_bytes: 64 * 1024,
        ..ServeConfig::new(ws.graphs()).port(0)
    })
    .unwrap();
    let a = server.addr();
    let path = ws.graph_file("austin-clt");
    let original = std::fs::read(&path).unwrap();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{not json".to_vec(), 400),
        (b"".to_vec(), 400),
        (b"[1,2]".to_vec(), 400),
        (br#"{"pinnedIds": [1, 2]}"#.to_vec(), 400),
        (br#"{"supernodes": [["name", 5]]}"#.to_vec(), 400),
        (br#"{"supernodes": [[]]}"#.to_vec(), 400),
        (br#"{"linkType": "sideways"}"#.to_vec(), 400),
        (br#"{"annotations": ["x"]}"#.to_vec(), 400),
        (b"\xff\xfe{}".to_vec(), 400),
        (
            format!("{{\"pinnedIds\": [\"{}\"]}}", "x".repeat(200 * 1024)).into_bytes(),
            413,
        ),
    ];
    for (body, status) in cases {
        let r = post(a, "/save_graph/austin-clt", &body);
        assert_eq!(
            r.status,
            status,
            "{:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(40)]),
            r.text()
        );
        assert_eq!(std::fs::read(&path).unwrap(), original, "the file changed");
    }
    // A body larger than the limit sent without Content-Length (chunked) is refused too.
    let big = format!("{{\"pinnedIds\": [\"{}\"]}}", "y".repeat(100 * 1024));
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let r = request(
        a,
        &format!("POST /save_graph/austin-clt HTTP/1.1\r\nContent-Type: application/json\r\nOrigin: http://{a}\r\nTransfer-Encoding: chunked"),
        chunked.as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(std::fs::read(&path).unwrap(), original);
    // Unknown graphs and names that are not file stems: 404, and nothing is created.
    for slug in ["nope", "..%2fsecret", "%2e%2e", "graph-metadata"] {
        let r = post(a, &format!("/save_graph/{slug}"), b"{}");
        assert_eq!(r.status, 404, "{slug}");
    }
    assert_eq!(
        std::fs::read_to_string(ws.tmp.path().join("secret.txt")).unwrap(),
        SECRET
    );
    let names: Vec<String> = std::fs::read_dir(ws.graphs())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // GET on the save route is not a save.
    assert_eq!(get(a, "/save_graph/austin-clt").status, 405);
}

#[test]
fn large_graph_view_is_sized_for_the_screen() {
    let ws = Workspace::new();
    std::fs::write(
        ws.graph_file("big"),
        synthetic_graph("big", 12, 40, 10_000, 200_000),
    )
    .unwrap();
    let server = ws.start();
    let a = server.addr();
    let keep = "0_-1_3";
    let t0 = std::time::Instant::now();
    let r = get_with(
        a,
        &format!("/api/graph/big?max_nodes=2000&max_links=3000&keep={keep}"),
        &[("Accept-Encoding", "gzip")],
    );
    let first = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let nodes = v["nodes"].as_array().unwrap();
    let links = v["links"].as_array().unwrap();
    assert_eq!(v["view"]["total_nodes"], json!(10_000));
    assert_eq!(v["view"]["total_links"], json!(200_000));
    assert_eq!(nodes.len(), 2000);
    assert_eq!(links.len(), 3000);
    assert_eq!(v["view"]["truncated_nodes"], json!(true));
    assert_eq!(v["view"]["truncated_links"], json!(true));
    // The links sent are the strongest among the sent nodes.
    let all = get(
        a,
        &format!("/api/graph/big?max_nodes=2000&max_links=1000000&keep={keep}"),
    )
    .json();
    let all_links = all["links"].as_array().unwrap();
    assert!(all_links.len() > 3000);
    let mut w: Vec<f64> = all_links
        .iter()
        .map(|l| l["weight"].as_f64().unwrap().abs())
        .collect();
    w.sort_by(|a, b| b.total_cmp(a));
    let weakest_sent = links
        .iter()
        .map(|l| l["weight"].as_f64().unwrap().abs())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(weakest_sent, w[2999]);
    let ids: std::collections::HashSet<&str> = nodes
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(keep));
    // Every embedding and logit is sent; every link joins sent nodes.
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["feature_type"] == "embedding")
            .count(),
        40
    );
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["feature_type"] == "logit")
            .count(),
        3
    );
    for l in links {
        assert!(
            ids.contains(l["source"].as_str().unwrap())
                && ids.contains(l["target"].as_str().unwrap())
        );
    }
    // Prunable nodes sent are the most influential (lowest cumulative influence).
    let cut = v["view"]["influence_cut"].as_f64().unwrap();
    for n in nodes {
        let t = n["feature_type"].as_str().unwrap();
        if t != "embedding" && t != "logit" && n["node_id"] != keep {
            assert!(n["influence"].as_f64().unwrap() <= cut);
        }
    }
    // A second request is served from the cache.
    let t1 = std::time::Instant::now();
    assert_eq!(get(a, "/api/graph/big?max_nodes=100").status, 200);
    eprintln!(
        "10k nodes / 200k links: first view {first:?}, cached view {:?}",
        t1.elapsed()
    );
}

#[test]
fn binds_loopback_by_default() {
    let cfg = ServeConfig::new("x");
    assert_eq!(cfg.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(cfg.port, 8041);
    let ws = Workspace::new();
    let server = Server::start(ServeConfig::new(ws.graphs()).port(0).slug("austin-clt")).unwrap();
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(server.url(), format!("http://{addr}/?slug=austin-clt"));
    // If this machine has a non-loopback address, the server must not answer on it.
    let outward = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = outward {
        let there = SocketAddr::new(ip, addr.port());
        assert!(
            TcpStream::connect_timeout(&there, std::time::Duration::from_secs(2)).is_err(),
            "reachable on {there}"
        );
        // With --host 0.0.0.0 it is reachable there, and the URL still names loopback.
        let open = Server::start(
            ServeConfig::new(ws.graphs())
                .port(0)
                .host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        )
        .unwrap();
        let there = SocketAddr::new(ip, open.addr().port());
        assert_eq!(get(there, "/api/graphs").status, 200);
        assert!(open.url().starts_with("http://127.0.0.1:"));
    } else {
        eprintln!("no non-loopback address on this machine; checked the bound address only");
    }
    // A taken port is a clear error.
    let e = Server::start(ServeConfig::new(ws.graphs()).port(addr.port()))
        .err()
        .unwrap();
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[test]
fn bad_configuration_is_refused() {
    let e = Server::start(ServeConfig::new("/definitely/not/here").port(0))
        .err()
        .unwrap();
    assert!(e.to_string().contains("/definitely/not/here"), "{e}");
    let ws = Workspace::new();
    let e = Server::start(
        ServeConfig::new(ws.graphs())
            .port(0)
            .features_dir("/nope/features"),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("/nope/features"), "{e}");
    let e = Server::start(ServeConfig::new(ws.graphs()).port(0).slug("../x"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("invalid graph name"), "{e}");
}

#[test]
fn broken_graph_file_is_a_clear_500() {
    let ws = Workspace::new();
    std::fs::write(
        ws.graph_file("broken"),
        br#"{"metadata": {}, "nodes": [{"layer": "0"}], "links": []}"#,
    )
    .unwrap();
    let server = ws.start();
    let r = get(server.addr(), "/api/graph/broken");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("broken.json") && r.text().contains("node_id"),
        "{}",
        r.text()
    );
}

/// The save token the server wrote into the viewer page.
fn page_token(a: SocketAddr) -> String {
    let page = get(a, "/").text();
    let marker = r#"<meta name="adag-save-token" content=""#;
    let start = page.find(marker).expect("the page carries a save token") + marker.len();
    let len = page[start..].find('"').unwrap();
    page[start..start + len].to_string()
}

#[test]
fn cross_site_writes_are_refused() {
    let ws = Workspace::new();
    let server = ws.start();
    let a = server.addr();
    let path = ws.graph_file("austin-clt");
    let original = std::fs::read(&path).unwrap();
    let body = br#"{"annotations":{"E_1_0":"x"}}"#;
    let own = format!("http://{a}");
    let token = page_token(a);
    assert_eq!(token.len(), 32, "{token}");
    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // The probe's attack: a simple (no preflight) cross-site POST.
        (
            "text/plain from another site",
            vec![
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
        ),
        (
            "JSON from another site",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", "http://evil.example"),
            ],
        ),
        (
            "JSON from another port",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", "http://127.0.0.1:1"),
            ],
        ),
        (
            "opaque origin",
            vec![("Content-Type", "application/json"), ("Origin", "null")],
        ),
        (
            "a form from this origin",
            vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", &own),
            ],
        ),
        (
            "text/plain from this origin",
            vec![("Content-Type", "text/plain"), ("Origin", &own)],
        ),
        (
            "no Origin, no token",
            vec![("Content-Type", "application/json")],
        ),
        (
            "no Origin, wrong token",
            vec![
                ("Content-Type", "application/json"),
                ("X-Adag-Token", "0123456789abcdef0123456789abcdef"),
            ],
        ),
        (
            "another site, right token",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", "http://evil.example"),
                ("X-Adag-Token", &token),
            ],
        ),
    ];
    for (what, headers) in &refused {
        let r = post_with(a, "/save_graph/austin-clt", headers, body);
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        assert!(r.text().starts_with("refused:"), "{what}: {}", r.text());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            original,
            "{what} changed the file"
        );
    }
    // Other methods are writes too.
    let r = request(
        a,
        "PUT /save_graph/austin-clt HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2",
        b"{}",
    );
    assert_eq!(r.status, 403);

    // The page's own ways: same-origin JSON, or JSON with the token and no Origin.
    for (what, headers) in [
        (
            "same origin",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", own.as_str()),
            ],
        ),
        (
            "localhost origin",
            vec![
                ("Content-Type", "application/json; charset=utf-8"),
                ("Origin", &format!("http://localhost:{}", a.port())),
            ],
        ),
        (
            "token",
            vec![
                ("Content-Type", "application/json"),
                ("X-Adag-Token", &token),
            ],
        ),
    ] {
        let r = post_with(a, "/save_graph/austin-clt", &headers, body);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
    }
    let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(after["qParams"]["annotations"]["E_1_0"], "x");
    // Each server has its own token.
    let other = ws.start();
    assert_ne!(page_token(other.addr()), token);
}

#[test]
fn foreign_host_names_are_refused() {
    let ws = Workspace::new();
    let server = ws.start();
    let a = server.addr();
    let path = ws.graph_file("austin-clt");
    let original = std::fs::read(&path).unwrap();
    let port = a.port();
    for host in [
        "rebind.example".to_string(),
        format!("rebind.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("10.1.2.3:{port}"),
        "127.0.0.1".to_string(),
    ] {
        for target in [
            "/api/graphs",
            "/",
            "/data/austin-clt.json",
            "/api/graph/austin-clt",
        ] {
            let r = request_as_host(a, &host, &format!("GET {target} HTTP/1.1"), b"");
            assert_eq!(r.status, 421, "{host} {target}: {}", r.text());
            assert!(!r.text().contains("austin"), "{host} {target} leaked");
        }
        // A rebinding page is same-origin with itself: its Origin matches its Host.
        let r = request_as_host(
            a,
            &host,
            &format!("POST /save_graph/austin-clt HTTP/1.1\r\nContent-Type: application/json\r\nOrigin: http://{host}\r\nContent-Length: 2"),
            b"{}",
        );
        assert_eq!(r.status, 421, "{host} save");
    }
    assert_eq!(std::fs::read(&path).unwrap(), original);
    // An absolute-form target naming another host is refused even with a good Host header.
    let r = request(a, "GET http://rebind.example/api/graphs HTTP/1.1", b"");
    assert_eq!(r.status, 421);
    // The bound address's own names are served.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = request_as_host(a, &host, "GET /api/graphs HTTP/1.1", b"");
        assert_eq!(r.status, 200, "{host}");
    }
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_folder_are_not_followed() {
    use std::os::unix::fs::symlink;
    let ws = Workspace::new();
    // A valid graph outside the served folder, linked in under two names.
    let outside = ws.tmp.path().join("out.json");
    let mut graph: Value =
        serde_json::from_slice(&std::fs::read(ws.graph_file("capital-neurons")).unwrap()).unwrap();
    graph["metadata"]["slug"] = json!("evil");
    graph["metadata"]["prompt"] = json!(SECRET);
    std::fs::write(&outside, serde_json::to_vec(&graph).unwrap()).unwrap();
    let outside_before = std::fs::read(&outside).unwrap();
    symlink(&outside, ws.graph_file("evil")).unwrap();
    // A link that stays inside the folder is an alias of that graph.
    symlink("austin-clt.json", ws.graph_file("alias")).unwrap();
    // The list file itself linked out is ignored (the list is synthesised).
    std::fs::remove_file(ws.graphs().join("graph-metadata.json")).unwrap();
    let outside_list = ws.tmp.path().join("list.json");
    std::fs::write(
        &outside_list,
        json!({"graphs": [{"slug": "austin-clt", "prompt": SECRET}]}).to_string(),
    )
    .unwrap();
    symlink(&outside_list, ws.graphs().join("graph-metadata.json")).unwrap();

    let server = ws.start();
    let a = server.addr();
    for path in [
        "/api/graph/evil",
        "/data/evil.json",
        "/graph_data/evil.json",
    ] {
        let r = get(a, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains(SECRET), "{path} leaked");
    }
    for path in ["/api/graphs", "/data/graph-metadata.json"] {
        let r = get(a, path);
        assert_eq!(r.status, 200);
        assert!(!r.text().contains(SECRET), "{path} leaked: {}", r.text());
        let slugs: Vec<String> = r.json()["graphs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["slug"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !slugs.contains(&"evil".to_string()),
            "{path} lists the link: {slugs:?}"
        );
        assert!(slugs.contains(&"alias".to_string()), "{slugs:?}");
    }
    // A save through the outward link writes nothing, anywhere.
    let q = json!({"annotations": {"x": "y"}});
    let r = post(a, "/save_graph/evil", q.to_string().as_bytes());
    assert_eq!(r.status, 404);
    assert_eq!(std::fs::read(&outside).unwrap(), outside_before);
    assert!(std::fs::symlink_metadata(ws.graph_file("evil"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A save through the inside alias updates the target and leaves the link a link.
    let r = post(a, "/save_graph/alias", q.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(std::fs::symlink_metadata(ws.graph_file("alias"))
        .unwrap()
        .file_type()
        .is_symlink());
    let target: Value =
        serde_json::from_slice(&std::fs::read(ws.graph_file("austin-clt")).unwrap()).unwrap();
    assert_eq!(target["qParams"], q);
    assert_eq!(get(a, "/api/graph/alias").json()["qParams"], q);
}
