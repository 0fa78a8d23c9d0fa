//! Which backend to use: a serde [`BackendConfig`] (for config files) or a compact string (for
//! `--backend` on the command line).
//!
//! # Config (JSON/YAML)
//!
//! ```yaml
//! kind: openai            # openai | anthropic | local
//! base_url: http://127.0.0.1:8000/v1
//! model: meta-llama/Llama-3.1-8B-Instruct   # optional: the endpoint's first model
//! api_key_env: OPENAI_API_KEY               # optional: no Authorization header
//! ```
//!
//! `anthropic` takes the same fields, all optional (`https://api.anthropic.com`,
//! [`crate::anthropic::DEFAULT_MODEL`], `ANTHROPIC_API_KEY`); `local` takes `model_dir`
//! (default: the bundled demo model), `device` (`cpu`, `cuda`) and `dtype` (`f32`, `bf16`,
//! `f16`).
//!
//! # Compact string
//!
//! `KIND[:MAIN][,option=value...]`:
//!
//! | string | backend |
//! |---|---|
//! | `openai:http://127.0.0.1:8000/v1` | an OpenAI-compatible server (vLLM, llama.cpp, Ollama's `/v1`, `adag serve-llm`), no key, its first model |
//! | `openai:http://host/v1,model=NAME,key-env=VAR` | the same with a model and a key from `$VAR` |
//! | `openai` | `https://api.openai.com/v1` with `$OPENAI_API_KEY` (name a `model=`) |
//! | `anthropic` | the Anthropic API, default model, `$ANTHROPIC_API_KEY` |
//! | `anthropic:MODEL,base-url=URL,key-env=VAR` | the same, configured |
//! | `local` / `local:DIR` | the bundled demo model / the model in `DIR`, in-process (CPU, f32) |
//! | `local:DIR,device=cuda,dtype=bf16` | the same on the first GPU (adag built with `--features cuda`) |

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::anthropic::{self, AnthropicBackend};
use crate::local::{LocalBackend, LocalModel};
use crate::openai::OpenAiBackend;
use crate::{LlmBackend, LlmError, Result};

/// OpenAI's own endpoint, for a bare `openai`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The key variable of a bare `openai`.
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";

/// A backend choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// An OpenAI-compatible chat-completions endpoint.
    Openai {
        /// The URL before `/chat/completions`.
        base_url: String,
        /// Model name; `None` = the first one the endpoint lists.
        #[serde(default)]
        model: Option<String>,
        /// Environment variable with the key; `None` = send no key.
        #[serde(default)]
        api_key_env: Option<String>,
    },
    /// The Anthropic Messages API.
    Anthropic {
        /// The URL before `/v1/messages`.
        #[serde(default = "default_anthropic_url")]
        base_url: String,
        /// Model name.
        #[serde(default = "default_anthropic_model")]
        model: String,
        /// Environment variable with the key.
        #[serde(default = "default_anthropic_key")]
        api_key_env: String,
    },
    /// A model directory loaded in-process.
    Local {
        /// HuggingFace model directory; `None` = the bundled demo model.
        #[serde(default)]
        model_dir: Option<PathBuf>,
        /// `cpu` (default) or `cuda` (the first GPU; needs adag built with `--features cuda`).
        #[serde(default)]
        device: Option<String>,
        /// `f32` (default), `bf16` or `f16` (GPU).
        #[serde(default)]
        dtype: Option<String>,
    },
}

fn default_anthropic_url() -> String {
    anthropic::DEFAULT_BASE_URL.into()
}
fn default_anthropic_model() -> String {
    anthropic::DEFAULT_MODEL.into()
}
fn default_anthropic_key() -> String {
    anthropic::DEFAULT_KEY_ENV.into()
}

impl BackendConfig {
    /// Connects (HTTP) or loads (local) the backend; `timeout` bounds each request.
    pub fn build(&self, timeout: Duration) -> Result<Box<dyn LlmBackend>> {
        Ok(match self {
            BackendConfig::Openai {
                base_url,
                model,
                api_key_env,
            } => Box::new(OpenAiBackend::new(
                base_url,
                model.as_deref(),
                api_key_env.as_deref(),
                timeout,
            )?),
            BackendConfig::Anthropic {
                base_url,
                model,
                api_key_env,
            } => Box::new(AnthropicBackend::new(
                base_url,
                model,
                api_key_env,
                timeout,
            )?),
            BackendConfig::Local {
                model_dir,
                device,
                dtype,
            } => {
                let opts = load_options(device.as_deref(), dtype.as_deref())?;
                let dir = match model_dir {
                    Some(d) => d.clone(),
                    None => crate::local::default_model_dir()?,
                };
                let model = LocalModel::load(&dir, &opts)?;
                Box::new(LocalBackend::new(std::sync::Arc::new(model)).with_timeout(timeout))
            }
        })
    }
}

/// Load options from the `device` and `dtype` names.
fn load_options(device: Option<&str>, dtype: Option<&str>) -> Result<adag_model::LoadOptions> {
    use candle_core::Device;
    let device = match device.unwrap_or("cpu") {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(0).map_err(|e| {
            LlmError::Config(format!(
                "device cuda: {e} (adag must be built with `--features cuda` and a GPU present)"
            ))
        })?,
        other => {
            return Err(LlmError::Config(format!(
                "device {other:?}: expected cpu or cuda"
            )))
        }
    };
    let name = dtype.unwrap_or("f32");
    let dtype = adag_model::parse_dtype(name).ok_or_else(|| {
        LlmError::Config(format!("dtype {name:?}: {}", adag_model::DTYPE_CHOICES))
    })?;
    Ok(adag_model::LoadOptions { dtype, device })
}

impl FromStr for BackendConfig {
    type Err = LlmError;

    /// Parses the compact form (see the module doc).
    fn from_str(s: &str) -> Result<BackendConfig> {
        let s = s.trim();
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (kind, main) = match head.split_once(':') {
            Some((k, m)) => (k, Some(m).filter(|m| !m.is_empty())),
            None => (head, None),
        };
        let mut options: Vec<(&str, &str)> = Vec::new();
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| {
                LlmError::Config(format!(
                    "backend {s:?}: option {p:?} is not key=value (e.g. model=NAME)"
                ))
            })?;
            options.push((k.trim(), v.trim()));
        }
        let take = |allowed: &[&str]| -> Result<Vec<(String, String)>> {
            options
                .iter()
                .map(|(k, v)| {
                    if allowed.contains(k) {
                        Ok((k.to_string(), v.to_string()))
                    } else {
                        Err(LlmError::Config(format!(
                            "backend {s:?}: unknown option {k:?} for {kind}; allowed: {}",
                            allowed.join(", ")
                        )))
                    }
                })
                .collect()
        };
        let get = |opts: &[(String, String)], key: &str| {
            opts.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        match kind {
            "openai" => {
                let opts = take(&["model", "key-env"])?;
                let (base_url, default_key) = match main {
                    Some(url) => (url.to_string(), None),
                    None => (
                        OPENAI_BASE_URL.to_string(),
                        Some(OPENAI_KEY_ENV.to_string()),
                    ),
                };
                Ok(BackendConfig::Openai {
                    base_url,
                    model: get(&opts, "model"),
                    api_key_env: get(&opts, "key-env").or(default_key),
                })
            }
            "anthropic" => {
                let opts = take(&["base-url", "key-env"])?;
                Ok(BackendConfig::Anthropic {
                    base_url: get(&opts, "base-url").unwrap_or_else(default_anthropic_url),
                    model: main
                        .map(str::to_string)
                        .unwrap_or_else(default_anthropic_model),
                    api_key_env: get(&opts, "key-env").unwrap_or_else(default_anthropic_key),
                })
            }
            "local" => {
                let opts = take(&["device", "dtype"])?;
                Ok(BackendConfig::Local {
                    model_dir: main.map(PathBuf::from),
                    device: get(&opts, "device"),
                    dtype: get(&opts, "dtype"),
                })
            }
            other => Err(LlmError::Config(format!(
                "backend {s:?}: unknown kind {other:?}; expected openai:URL, anthropic[:MODEL] \
                 or local[:DIR]"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> BackendConfig {
        s.parse().unwrap()
    }

    #[test]
    fn compact_strings() {
        assert_eq!(
            parse("openai:http://127.0.0.1:8000/v1"),
            BackendConfig::Openai {
                base_url: "http://127.0.0.1:8000/v1".into(),
                model: None,
                api_key_env: None
            }
        );
        assert_eq!(
            parse("openai:http://h/v1,model=m,key-env=K"),
            BackendConfig::Openai {
                base_url: "http://h/v1".into(),
                model: Some("m".into()),
                api_key_env: Some("K".into())
            }
        );
        assert_eq!(
            parse("openai"),
            BackendConfig::Openai {
                base_url: OPENAI_BASE_URL.into(),
                model: None,
                api_key_env: Some(OPENAI_KEY_ENV.into())
            }
        );
        assert_eq!(
            parse("anthropic"),
            BackendConfig::Anthropic {
                base_url: anthropic::DEFAULT_BASE_URL.into(),
                model: anthropic::DEFAULT_MODEL.into(),
                api_key_env: "ANTHROPIC_API_KEY".into()
            }
        );
        assert_eq!(
            parse("anthropic:claude-x,base-url=http://127.0.0.1:9/,key-env=K"),
            BackendConfig::Anthropic {
                base_url: "http://127.0.0.1:9/".into(),
                model: "claude-x".into(),
                api_key_env: "K".into()
            }
        );
        assert_eq!(
            parse("local"),
            BackendConfig::Local {
                model_dir: None,
                device: None,
                dtype: None
            }
        );
        assert_eq!(
            parse("local:models/demo,device=cuda,dtype=bf16"),
            BackendConfig::Local {
                model_dir: Some("models/demo".into()),
                device: Some("cuda".into()),
                dtype: Some("bf16".into())
            }
        );
    }

    #[test]
    fn bad_strings_say_what_was_expected() {
        for (s, needle) in [
            ("gpt", "unknown kind"),
            ("openai:http://h,modle=x", "unknown option \"modle\""),
            ("openai:http://h,model", "key=value"),
            ("local:x,model=y", "unknown option"),
        ] {
            let e = s.parse::<BackendConfig>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn bad_device_or_dtype_is_a_config_error() {
        assert!(load_options(Some("tpu"), None)
            .unwrap_err()
            .to_string()
            .contains("cpu or cuda"));
        assert!(load_options(None, Some("f8"))
            .unwrap_err()
            .to_string()
            .contains("f32, bf16 or f16"));
        assert!(load_options(None, None).is_ok());
    }

    #[test]
    fn serde_form_with_defaults() {
        let c: BackendConfig = serde_json::from_str(r#"{"kind":"anthropic"}"#).unwrap();
        assert_eq!(c, parse("anthropic"));
        let c: BackendConfig =
            serde_json::from_str(r#"{"kind":"openai","base_url":"http://h/v1","model":"m"}"#)
                .unwrap();
        assert_eq!(c, parse("openai:http://h/v1,model=m"));
        let e = serde_json::from_str::<BackendConfig>(r#"{"kind":"openai","url":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("url"), "{e}");
    }
}
