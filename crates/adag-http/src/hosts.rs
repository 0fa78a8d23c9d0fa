//! Which `Host` (and `Origin`) values name this server.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The `Host` values a server bound to one address answers to: `127.0.0.1`, `localhost`,
/// `[::1]` and the bound IP, each with the bound port. A wildcard bind (`0.0.0.0`, `::`) also
/// accepts any IP literal: DNS rebinding needs a *name*, and a literal IP in `Host` means the
/// browser connected to that IP itself.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    port: u16,
    names: Vec<String>,
    any_ip_literal: bool,
}

impl HostPolicy {
    /// The policy for a server listening on `addr` (its real port, after binding port 0).
    pub fn for_bound(addr: SocketAddr) -> HostPolicy {
        let mut names: Vec<String> = ["127.0.0.1", "localhost", "[::1]"].map(String::from).into();
        let own = match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        if !names.contains(&own) {
            names.push(own);
        }
        HostPolicy {
            port: addr.port(),
            names,
            any_ip_literal: addr.ip().is_unspecified(),
        }
    }

    /// Whether a `Host` header value (`name[:port]`) names this server. The port must be the
    /// bound one; it may be left out only when that is 80, as HTTP allows.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = match host.rsplit_once(':') {
            // `[::1]` alone has colons but no port; a port follows the closing bracket.
            Some((n, p)) if !p.contains(']') => (n, Some(p)),
            _ => (host.as_str(), None),
        };
        let port_ok = match port {
            Some(p) => p.parse::<u16>().is_ok_and(|p| p == self.port) && !p.starts_with('+'),
            None => self.port == 80,
        };
        if !port_ok || name.is_empty() {
            return false;
        }
        if self.names.iter().any(|n| n == name) {
            return true;
        }
        self.any_ip_literal && is_ip_literal(name)
    }

    /// Whether an `Origin` header value is a page of this server (`http://` + an allowed Host).
    /// The opaque origin `null` never is.
    pub fn allows_origin(&self, origin: &str) -> bool {
        origin
            .trim()
            .strip_prefix("http://")
            .is_some_and(|h| !h.contains('/') && self.allows_host(h))
    }

    /// The Host values this server answers to, for error messages.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("{n}:{}", self.port))
            .collect();
        let mut s = list.join(", ");
        if self.any_ip_literal {
            s.push_str(", or any IP address with that port");
        }
        s
    }
}

fn is_ip_literal(name: &str) -> bool {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => name.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

/// Axum middleware (`axum::middleware::from_fn_with_state(policy, require_known_host)`): answers
/// 421 Misdirected Request to a request whose `Host` header, or whose absolute-form target,
/// does not name this server (see [`HostPolicy`]).
pub async fn require_known_host(
    State(policy): State<HostPolicy>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let authority = req.uri().authority().map(|a| a.as_str());
    let ok = match (host, authority) {
        (Some(h), Some(a)) => policy.allows_host(h) && policy.allows_host(a),
        (Some(h), None) => policy.allows_host(h),
        (None, Some(a)) => policy.allows_host(a),
        (None, None) => false,
    };
    if ok {
        return next.run(req).await;
    }
    tracing::warn!(
        "refused a request for Host {:?} (DNS-rebinding protection)",
        host.unwrap_or("")
    );
    let mut r = (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this server answers only to Host {} (DNS-rebinding protection)\n",
            policy.describe()
        ),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(addr: &str) -> HostPolicy {
        HostPolicy::for_bound(addr.parse().unwrap())
    }

    #[test]
    fn loopback_bind_accepts_only_its_names_and_port() {
        let p = policy("127.0.0.1:8041");
        for ok in [
            "127.0.0.1:8041",
            "localhost:8041",
            "LOCALHOST:8041",
            "[::1]:8041",
        ] {
            assert!(p.allows_host(ok), "{ok}");
        }
        for bad in [
            "rebind.example:8041",
            "rebind.example",
            "127.0.0.1",
            "127.0.0.1:8042",
            "127.0.0.1:+8041",
            "localhost.:8041",
            "127.0.0.1.nip.io:8041",
            "10.0.0.1:8041",
            "[::1]",
            ":8041",
            "",
        ] {
            assert!(!p.allows_host(bad), "{bad}");
        }
        assert!(p.allows_origin("http://localhost:8041"));
        for bad in [
            "null",
            "https://localhost:8041",
            "http://evil.example",
            "http://localhost:8041/x",
            "http://localhost:9999",
        ] {
            assert!(!p.allows_origin(bad), "{bad}");
        }
    }

    #[test]
    fn wildcard_bind_accepts_ip_literals_but_not_names() {
        let p = policy("0.0.0.0:8041");
        assert!(p.allows_host("192.168.1.7:8041"));
        assert!(p.allows_host("[fe80::1]:8041"));
        assert!(p.allows_host("localhost:8041"));
        assert!(!p.allows_host("rebind.example:8041"));
        assert!(!p.allows_host("192.168.1.7:80"));
        // A specific address is accepted as itself, and nothing else numeric is.
        let q = policy("192.168.1.7:80");
        assert!(q.allows_host("192.168.1.7"));
        assert!(q.allows_host("192.168.1.7:80"));
        assert!(!q.allows_host("192.168.1.8:80"));
        let v6 = policy("[::1]:8042");
        assert!(v6.allows_host("[::1]:8042"));
        assert!(v6.allows_host("localhost:8042"));
    }
}
