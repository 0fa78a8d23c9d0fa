//! OpenAI chat-completions JSON, the subset adag speaks in both directions: the client writes
//! requests and reads replies ([`crate::openai`]), `adag serve-llm` reads requests and writes
//! replies ([`crate::server`]). Fields the other side may leave out are `Option`/defaulted, so
//! the same types parse vLLM, llama.cpp, Ollama and OpenAI replies.

use serde::{Deserialize, Serialize};

/// `POST /chat/completions` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WireRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub messages: Vec<WireMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// OpenAI's newer name for `max_tokens`; read by the server, never written.
    #[serde(default, skip_serializing)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u8>,
    /// Read by the server to refuse anything but 1.
    #[serde(default, skip_serializing)]
    pub n: Option<u32>,
    /// Read by the server to refuse streaming.
    #[serde(default, skip_serializing)]
    pub stream: Option<bool>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// A request message; `content` is a string or a list of `{"type":"text","text":...}` parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    pub role: String,
    pub content: Content,
}

/// Message content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// The reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireReply {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    pub choices: Vec<WireChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// One choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireChoice {
    #[serde(default)]
    pub index: u32,
    pub message: WireReplyMessage,
    #[serde(default)]
    pub logprobs: Option<WireLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant message of a choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireReplyMessage {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
}

/// `choices[i].logprobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireLogprobs {
    #[serde(default)]
    pub content: Option<Vec<WireTokenLogprob>>,
}

/// One generated token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireTokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<WireTopLogprob>,
}

/// One alternative.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireTopLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}
