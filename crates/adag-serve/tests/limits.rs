//! Connection limits over real sockets: a client that never finishes its request head, sits
//! idle, trickles a body or stops reading is cut off within the configured time; files are
//! streamed, so many downloads of a large file do not each hold it in memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use adag_serve::{Limits, ServeConfig, Server};
use common::*;

fn limits(secs: u64) -> Limits {
    let d = Duration::from_secs(secs);
    Limits {
        header_read: d,
        body_read: d,
        write_stall: d,
    }
}

fn start(ws: &Workspace, l: Limits) -> Server {
    Server::start(ServeConfig::new(ws.graphs()).port(0).limits(l)).unwrap()
}

/// Reads until the server closes the socket; the time that took, or `None` if it was still
/// open after `patience` (the old server kept such sockets open indefinitely).
fn closed_within(s: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(patience)).unwrap();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(t.elapsed()), // reset: closed
        }
        if t.elapsed() > patience {
            return None;
        }
    }
}

#[test]
fn slow_headers_and_idle_sockets_are_closed() {
    let ws = Workspace::new();
    let server = start(&ws, limits(1));
    let a = server.addr();
    // 20 slowloris sockets: half a request line each, then nothing.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /api/graphs HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    // One that connects and sends nothing at all.
    let mut silent = TcpStream::connect(a).unwrap();
    for s in slow.iter_mut().chain([&mut silent]) {
        let t = closed_within(s, Duration::from_secs(8)).expect("socket still open after 8 s");
        assert!(t < Duration::from_secs(4), "closed only after {t:?}");
    }
    // A keep-alive connection is served, then closed once idle for the limit.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(format!("GET /api/graphs HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
        .unwrap();
    let t = closed_within(&mut s, Duration::from_secs(8)).expect("idle socket still open");
    assert!(t < Duration::from_secs(4), "closed only after {t:?}");
    // The server still answers.
    assert_eq!(get(a, "/api/graphs").status, 200);
}

#[test]
fn a_trickled_body_fails_and_closes() {
    let ws = Workspace::new();
    let server = start(&ws, limits(1));
    let a = server.addr();
    let path = ws.graph_file("austin-clt");
    let original = std::fs::read(&path).unwrap();
    let mut s = TcpStream::connect(a).unwrap();
    let head = format!("POST /save_graph/austin-clt HTTP/1.1\r\nHost: {a}\r\nOrigin: http://{a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"pin");
    s.write_all(head.as_bytes()).unwrap();
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        t.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(std::fs::read(&path).unwrap(), original);
}

/// Resident memory of this process, bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// `n` bytes that gzip cannot shrink (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E3779B97F4A7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn data_files_are_streamed_and_stalled_readers_cut_off() {
    const SIZE: usize = 48 << 20;
    let ws = Workspace::new();
    let bytes = noise(SIZE);
    std::fs::write(ws.graphs().join("big.bin"), &bytes).unwrap();
    let small = noise(4096);
    std::fs::write(ws.graphs().join("small.bin"), &small).unwrap();
    drop(bytes);
    let server = start(&ws, limits(2));
    let a = server.addr();
    // Streamed content is the file, plain and gzip.
    let r = get(a, "/data/small.bin");
    assert_eq!(r.body, small);
    let r = get_with(a, "/data/small.bin", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), small);

    // 6 downloads of the 48 MB file that never read past the first bytes.
    let before = rss();
    let mut readers: Vec<TcpStream> = (0..6)
        .map(|i| {
            let mut s = TcpStream::connect(a).unwrap();
            let enc = if i % 2 == 0 { "gzip" } else { "identity" };
            s.write_all(
                format!(
                    "GET /data/big.bin HTTP/1.1\r\nHost: {a}\r\nAccept-Encoding: {enc}\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            let mut first = [0u8; 16];
            s.read_exact(&mut first).unwrap();
            assert_eq!(&first[..12], b"HTTP/1.1 200");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss().saturating_sub(before);
    // Reading each into memory would hold 6 × 48 MB; streaming holds socket buffers and a chunk.
    assert!(
        grown < 64 << 20,
        "memory grew by {} MB for 6 stalled downloads",
        grown >> 20
    );
    // Readers that stopped are cut off once their writes stall for the limit.
    std::thread::sleep(Duration::from_secs(3));
    for s in &mut readers {
        let mut got = 16usize;
        let t = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
            assert!(t.elapsed() < Duration::from_secs(20), "never cut off");
        }
        assert!(got < SIZE, "the whole file arrived despite the stall");
    }
    assert_eq!(get(a, "/data/small.bin").body, small);
}
