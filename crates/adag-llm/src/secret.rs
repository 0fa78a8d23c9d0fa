//! API keys: read from an environment variable, never printed.
//!
//! The key lives only in this type. Its `Debug` shows the variable's name, backends' `describe()`
//! never include it, cache keys are computed without it, and every message that came back from
//! a server is passed through [`ApiKey::redact`] before it becomes an error, so an endpoint that
//! echoes the key cannot leak it into logs.

use crate::{LlmError, Result};

/// A secret read from the environment.
#[derive(Clone)]
pub(crate) struct ApiKey {
    var: String,
    value: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey(${}, redacted)", self.var)
    }
}

impl ApiKey {
    /// Reads `var`; a missing or empty variable is a configuration error naming the variable
    /// (and only the variable).
    pub(crate) fn from_env(var: &str) -> Result<ApiKey> {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(ApiKey {
                var: var.to_string(),
                value: value.trim().to_string(),
            }),
            Ok(_) => Err(LlmError::Config(format!(
                "the API key variable ${var} is empty; set it to your key"
            ))),
            Err(_) => Err(LlmError::Config(format!(
                "the API key variable ${var} is not set; export it (or name another variable \
                 with `key-env=VAR` / `api_key_env`)"
            ))),
        }
    }

    /// The key, for the request header only.
    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        if self.value.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.value, "***")
        }
    }
}

/// Redacts with an optional key.
pub(crate) fn redact(key: Option<&ApiKey>, text: &str) -> String {
    match key {
        Some(k) => k.redact(text),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_redact_hide_the_value() {
        let k = ApiKey {
            var: "X_KEY".into(),
            value: "sk-very-secret".into(),
        };
        let dbg = format!("{k:?}");
        assert!(
            !dbg.contains("sk-very-secret") && dbg.contains("X_KEY"),
            "{dbg}"
        );
        assert_eq!(k.redact("bad key sk-very-secret!"), "bad key ***!");
    }

    #[test]
    fn missing_variable_names_the_variable() {
        let err = ApiKey::from_env("ADAG_LLM_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(
            err.to_string().contains("$ADAG_LLM_TEST_SURELY_UNSET_VAR"),
            "{err}"
        );
    }
}
