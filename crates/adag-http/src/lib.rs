//! adag-http: the hardening that adag's two local HTTP servers share — `adag serve` (the
//! viewer, `adag-serve`) and `adag serve-llm` (`adag-llm`).
//!
//! Both servers listen on loopback and trust nothing about their callers beyond that. Two
//! attacks reach a loopback server anyway, and this crate closes both:
//!
//! 1. **DNS rebinding.** A web page on `rebind.example` re-points its name at 127.0.0.1 and then
//!    talks to the server as a same-origin page. Its requests carry `Host: rebind.example:PORT`,
//!    so [`HostPolicy`] (applied by [`require_known_host`]) answers 421 to any Host that does
//!    not name the bound address.
//! 2. **Resource exhaustion.** [`serve`] is an accept loop (hyper's HTTP/1 connection driver
//!    behind an axum `Router`) with the timeouts that `axum::serve` does not set: a request
//!    head must arrive within [`Limits::header_read`] (also the keep-alive idle time), a body
//!    within [`Limits::body_read`], and a response write that makes no progress for
//!    [`Limits::write_stall`] closes the connection.
//!
//! ```
//! use std::net::SocketAddr;
//! use adag_http::HostPolicy;
//! let p = HostPolicy::for_bound("127.0.0.1:8041".parse::<SocketAddr>().unwrap());
//! assert!(p.allows_host("localhost:8041"));
//! assert!(!p.allows_host("rebind.example:8041"));
//! assert!(p.allows_origin("http://127.0.0.1:8041"));
//! ```
#![deny(missing_docs)]

mod hosts;
mod limits;

pub use hosts::{require_known_host, HostPolicy};
pub use limits::{serve, Limits};
