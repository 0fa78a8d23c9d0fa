//! OpenAI-compatible chat completions: vLLM, llama.cpp's server, Ollama, OpenAI, `adag
//! serve-llm`.
//!
//! `POST {base_url}/chat/completions` with `model`, `messages`, `temperature`, `max_tokens`,
//! `seed`, `stop`, and `logprobs: true` + `top_logprobs: n` when the request asks for them. The
//! reply's `choices[0].message.content` is the text; a non-null `message.refusal` makes the reply
//! a refusal (`finish_reason: "refusal"`, text = the refusal message when there is no content);
//! `choices[0].logprobs.content[]` becomes [`TokenLogprob`]s and `usage` the token counts.
//!
//! The key, when one is configured, is read from an environment variable and sent as
//! `Authorization: Bearer`; local servers usually need none.

use std::time::Duration;

use serde_json::Value;

use crate::http::Http;
use crate::secret::ApiKey;
use crate::wire::{Content, Stop, WireMessage, WireReply, WireRequest};
use crate::{ChatReply, ChatRequest, LlmBackend, LlmError, Result, Role, TokenLogprob, Usage};

/// An OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiBackend {
    base_url: String,
    model: String,
    key: Option<ApiKey>,
    http: Http,
}

impl OpenAiBackend {
    /// Connects to `base_url` (e.g. `http://127.0.0.1:8000/v1`, the part before
    /// `/chat/completions`). `model = None` asks the endpoint's `GET /models` and takes the first
    /// model it lists (what a vLLM or `adag serve-llm` serving one model wants). `api_key_env`
    /// names the variable holding the key; it must be set when given.
    pub fn new(
        base_url: &str,
        model: Option<&str>,
        api_key_env: Option<&str>,
        timeout: Duration,
    ) -> Result<OpenAiBackend> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(LlmError::Config(format!(
                "OpenAI-compatible base URL {base_url:?} must start with http:// or https:// \
                 (e.g. http://127.0.0.1:8000/v1)"
            )));
        }
        let key = api_key_env.map(ApiKey::from_env).transpose()?;
        let http = Http::new(timeout)?;
        let model = match model {
            Some(m) => m.to_string(),
            None => first_model(&http, &base_url, key.as_ref())?,
        };
        Ok(OpenAiBackend {
            base_url,
            model,
            key,
            http,
        })
    }

    /// The model requests go to when they name none.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn auth_header(&self) -> Option<String> {
        self.key.as_ref().map(|k| format!("Bearer {}", k.value()))
    }
}

/// `GET {base}/models` → the first `data[].id`.
fn first_model(http: &Http, base: &str, key: Option<&ApiKey>) -> Result<String> {
    let url = format!("{base}/models");
    let auth = key.map(|k| format!("Bearer {}", k.value()));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let v = http.get_json(&url, &headers, key).map_err(|e| match e {
        LlmError::Config(m) => LlmError::Config(m),
        other => LlmError::Config(format!(
            "no model given for {base} and asking the endpoint for its models failed ({other}); \
             name one with `model=NAME`"
        )),
    })?;
    v.pointer("/data/0/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| LlmError::Malformed {
            endpoint: url,
            message: "no `data[0].id` in the model list; name the model with `model=NAME`".into(),
        })
}

/// The request body for `request` (model already resolved).
pub(crate) fn wire_request(request: &ChatRequest, model: &str) -> WireRequest {
    WireRequest {
        model: Some(model.to_string()),
        messages: request
            .messages
            .iter()
            .map(|m| WireMessage {
                role: role_name(m.role).to_string(),
                content: Content::Text(m.content.clone()),
            })
            .collect(),
        temperature: Some(request.temperature),
        max_tokens: Some(request.max_tokens),
        seed: request.seed,
        stop: (!request.stop.is_empty()).then(|| Stop::Many(request.stop.clone())),
        logprobs: request.top_logprobs.map(|_| true),
        top_logprobs: request.top_logprobs,
        ..WireRequest::default()
    }
}

/// OpenAI's name of a role.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// Reads a reply body.
pub(crate) fn parse_reply(body: Value, endpoint: &str) -> Result<ChatReply> {
    let malformed = |message: String| LlmError::Malformed {
        endpoint: endpoint.to_string(),
        message,
    };
    let reply: WireReply = serde_json::from_value(body)
        .map_err(|e| malformed(format!("not a chat completion: {e}")))?;
    let choice = reply
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| malformed("`choices` is empty".into()))?;
    let refusal = choice.message.refusal.filter(|r| !r.is_empty());
    let (text, finish_reason) = match (choice.message.content, refusal) {
        (content, Some(r)) => (
            content.filter(|c| !c.is_empty()).unwrap_or(r),
            Some("refusal".to_string()),
        ),
        (Some(c), None) => (c, choice.finish_reason),
        (None, None) => {
            return Err(malformed(
                "`choices[0].message` has neither `content` nor `refusal`".into(),
            ))
        }
    };
    let logprobs = choice
        .logprobs
        .and_then(|l| l.content)
        .unwrap_or_default()
        .into_iter()
        .map(|t| TokenLogprob {
            token: t.token,
            logprob: t.logprob,
            top: t
                .top_logprobs
                .into_iter()
                .map(|a| (a.token, a.logprob))
                .collect(),
        })
        .collect();
    let usage = reply
        .usage
        .map(|u| Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        })
        .unwrap_or_default();
    Ok(ChatReply {
        text,
        logprobs,
        finish_reason,
        usage,
        cached: false,
    })
}

impl LlmBackend for OpenAiBackend {
    fn describe(&self) -> String {
        format!("openai-compatible {} (model {})", self.base_url, self.model)
    }

    fn supports_logprobs(&self) -> bool {
        true
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatReply> {
        let model = request.model.as_deref().unwrap_or(&self.model);
        let body = serde_json::to_value(wire_request(request, model))
            .map_err(|e| LlmError::Config(format!("cannot encode the request: {e}")))?;
        let url = format!("{}/chat/completions", self.base_url);
        let auth = self.auth_header();
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let v = self
            .http
            .post_json(&url, &headers, &body, self.key.as_ref())?;
        parse_reply(v, &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn request_body_has_logprobs_only_when_asked() {
        let mut r = ChatRequest::new(vec![Message::system("s"), Message::user("u")]);
        let v = serde_json::to_value(wire_request(&r, "m")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"m","messages":[{"role":"system","content":"s"},
                {"role":"user","content":"u"}],"temperature":0.0,"max_tokens":256})
        );
        r.top_logprobs = Some(3);
        r.seed = Some(7);
        r.stop = vec!["\n".into()];
        r.sample_index = 4;
        let v = serde_json::to_value(wire_request(&r, "m")).unwrap();
        assert_eq!(v["logprobs"], true);
        assert_eq!(v["top_logprobs"], 3);
        assert_eq!(v["seed"], 7);
        assert_eq!(v["stop"], serde_json::json!(["\n"]));
        assert!(v.get("sample_index").is_none());
    }

    #[test]
    fn parses_refusal_and_missing_content() {
        let body = serde_json::json!({"choices":[{"message":{"role":"assistant","content":null,
            "refusal":"I can't help with that."},"finish_reason":"stop"}]});
        let r = parse_reply(body, "e").unwrap();
        assert!(r.is_refusal());
        assert_eq!(r.text, "I can't help with that.");
        let body = serde_json::json!({"choices":[{"message":{"role":"assistant"}}]});
        assert!(matches!(
            parse_reply(body, "e"),
            Err(LlmError::Malformed { .. })
        ));
        let body = serde_json::json!({"choices":[]});
        assert!(matches!(
            parse_reply(body, "e"),
            Err(LlmError::Malformed { .. })
        ));
    }
}
