//! The Anthropic Messages API.
//!
//! `POST {base_url}/v1/messages` with headers `x-api-key` (from an environment variable,
//! `ANTHROPIC_API_KEY` by default) and `anthropic-version: 2023-06-01`. System messages are
//! joined (blank line between) into the top-level `system`; the other messages keep their order
//! as `{"role", "content"}` with string content; `stop` becomes `stop_sequences`. `seed` and
//! `top_logprobs` have no Anthropic equivalent and are not sent ([`LlmBackend::supports_logprobs`]
//! is false, so replies carry no logprobs).
//!
//! The reply's `text` content blocks are concatenated. `stop_reason` is reported in the OpenAI
//! vocabulary the rest of adag uses: `end_turn`/`stop_sequence` → `"stop"`, `max_tokens` →
//! `"length"`, `refusal` → `"refusal"`; anything else is passed through. `usage.input_tokens` /
//! `output_tokens` are the token counts. 429 and 529 (overloaded) are rate limits, and their
//! `retry-after` is honoured by the retry loop.

use std::time::Duration;

use serde_json::{json, Value};

use crate::http::Http;
use crate::secret::ApiKey;
use crate::{ChatReply, ChatRequest, LlmBackend, LlmError, Result, Role, Usage};

/// Where the API lives unless configured otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The environment variable the key is read from unless configured otherwise.
pub const DEFAULT_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// The model used when none is configured.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// The protocol version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// An Anthropic Messages endpoint.
#[derive(Debug)]
pub struct AnthropicBackend {
    base_url: String,
    model: String,
    key: ApiKey,
    http: Http,
}

impl AnthropicBackend {
    /// Reads the key from `api_key_env` (it must be set) and prepares the client.
    pub fn new(
        base_url: &str,
        model: &str,
        api_key_env: &str,
        timeout: Duration,
    ) -> Result<AnthropicBackend> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(LlmError::Config(format!(
                "Anthropic base URL {base_url:?} must start with http:// or https://"
            )));
        }
        Ok(AnthropicBackend {
            base_url,
            model: model.to_string(),
            key: ApiKey::from_env(api_key_env)?,
            http: Http::new(timeout)?,
        })
    }
}

/// The request body.
pub(crate) fn request_body(request: &ChatRequest, model: &str) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| {
            let role = if m.role == Role::User {
                "user"
            } else {
                "assistant"
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "temperature": request.temperature,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    body
}

/// Reads a Messages reply.
pub(crate) fn parse_reply(v: &Value, endpoint: &str) -> Result<ChatReply> {
    let malformed = |message: &str| LlmError::Malformed {
        endpoint: endpoint.to_string(),
        message: message.to_string(),
    };
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `content` array in the reply"))?;
    let mut text = String::new();
    for b in blocks {
        if b.get("type").and_then(Value::as_str) == Some("text") {
            let t = b
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("a `text` content block has no `text` string"))?;
            text.push_str(t);
        }
    }
    let stop_reason = v.get("stop_reason").and_then(Value::as_str);
    let finish_reason = stop_reason.map(|r| {
        match r {
            "end_turn" | "stop_sequence" => "stop",
            "max_tokens" => "length",
            other => other,
        }
        .to_string()
    });
    let count = |field: &str| {
        v.pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(ChatReply {
        text,
        logprobs: Vec::new(),
        finish_reason,
        usage: Usage {
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
        },
        cached: false,
    })
}

impl LlmBackend for AnthropicBackend {
    fn describe(&self) -> String {
        format!("anthropic {} (model {})", self.base_url, self.model)
    }

    fn supports_logprobs(&self) -> bool {
        false
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatReply> {
        let model = request.model.as_deref().unwrap_or(&self.model);
        let body = request_body(request, model);
        let url = format!("{}/v1/messages", self.base_url);
        let headers = [
            ("x-api-key", self.key.value()),
            ("anthropic-version", API_VERSION),
        ];
        let v = self
            .http
            .post_json(&url, &headers, &body, Some(&self.key))?;
        parse_reply(&v, &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn stop_reasons_in_openai_vocabulary() {
        for (anthropic, ours) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("refusal", "refusal"),
            ("pause_turn", "pause_turn"),
        ] {
            let v = json!({"content": [], "stop_reason": anthropic});
            let r = parse_reply(&v, "e").unwrap();
            assert_eq!(r.finish_reason.as_deref(), Some(ours));
        }
        assert!(matches!(
            parse_reply(&json!({"stop_reason": "end_turn"}), "e"),
            Err(LlmError::Malformed { .. })
        ));
    }

    #[test]
    fn several_system_messages_are_joined() {
        let r = ChatRequest::new(vec![
            Message::system("a"),
            Message::user("u"),
            Message::system("b"),
        ]);
        let v = request_body(&r, "m");
        assert_eq!(v["system"], "a\n\nb");
        assert_eq!(v["messages"], json!([{"role": "user", "content": "u"}]));
    }
}
