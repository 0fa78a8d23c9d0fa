//! The HTTP plumbing both protocols share: one blocking client with a timeout, and the mapping
//! of statuses to [`LlmError`] (which decides what the retry loop tries again).
//!
//! | answer | error |
//! |---|---|
//! | 429, 529 (Anthropic "overloaded") | [`LlmError::RateLimited`] with `retry-after` / `retry-after-ms` |
//! | 408, 5xx, connection failures | [`LlmError::Transient`] |
//! | no answer within the timeout | [`LlmError::Timeout`] |
//! | other 4xx | [`LlmError::Rejected`] with the server's `error.message` |
//! | 2xx that is not JSON | [`LlmError::Malformed`] |

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::Value;

use crate::secret::{redact, ApiKey};
use crate::{LlmError, Result};

/// Longest server message kept in an error (bodies can be whole HTML pages).
const MAX_MESSAGE: usize = 500;

/// A blocking HTTP client with a per-request timeout.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client,
    timeout: Duration,
}

impl Http {
    /// A client whose every request gives up after `timeout`.
    pub(crate) fn new(timeout: Duration) -> Result<Http> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("adag/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http { client, timeout })
    }

    /// `GET url`, JSON back.
    pub(crate) fn get_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        key: Option<&ApiKey>,
    ) -> Result<Value> {
        let mut req = self.client.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req, url, key)
    }

    /// `POST url` with a JSON body, JSON back.
    pub(crate) fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
        key: Option<&ApiKey>,
    ) -> Result<Value> {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req, url, key)
    }

    fn send(
        &self,
        req: reqwest::blocking::RequestBuilder,
        url: &str,
        key: Option<&ApiKey>,
    ) -> Result<Value> {
        let endpoint = url.to_string();
        let resp = req
            .send()
            .map_err(|e| self.transport_error(&endpoint, &e, key))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let body = resp
            .bytes()
            .map_err(|e| self.transport_error(&endpoint, &e, key))?;
        let text = String::from_utf8_lossy(&body);
        match status {
            200..=299 => serde_json::from_slice(&body).map_err(|e| LlmError::Malformed {
                endpoint,
                message: redact(key, &format!("not JSON ({e}): {}", clip(&text))),
            }),
            429 | 529 => Err(LlmError::RateLimited {
                endpoint,
                retry_after_s: retry_after,
            }),
            408 | 500..=599 => Err(LlmError::Transient {
                endpoint,
                message: redact(key, &format!("HTTP {status}: {}", server_message(&text))),
            }),
            _ => Err(LlmError::Rejected {
                endpoint,
                status,
                message: redact(key, &server_message(&text)),
            }),
        }
    }

    fn transport_error(
        &self,
        endpoint: &str,
        e: &reqwest::Error,
        key: Option<&ApiKey>,
    ) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                endpoint: endpoint.to_string(),
                seconds: self.timeout.as_secs_f64(),
            }
        } else {
            LlmError::Transient {
                endpoint: endpoint.to_string(),
                message: redact(key, &error_chain(e)),
            }
        }
    }
}

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds; an HTTP date is ignored (the backoff
/// applies instead).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))
}

/// The `error.message` of an OpenAI/Anthropic error body, else the body itself, clipped.
fn server_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let msg = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
    });
    match msg {
        Some(m) => clip(m),
        None if text.trim().is_empty() => "(empty body)".to_string(),
        None => clip(text),
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX_MESSAGE).collect();
        format!("{head}…")
    }
}

/// reqwest's message plus its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_message_prefers_error_message() {
        assert_eq!(
            server_message(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(server_message("plain"), "plain");
        assert_eq!(server_message(""), "(empty body)");
        assert_eq!(clip(&"x".repeat(600)).chars().count(), MAX_MESSAGE + 1);
    }
}
