//! The on-disk cache of requests and replies, so an interrupted run resumes without paying twice.
//!
//! One JSON file per request, `{dir}/{key}.json`, where `key` is the SHA-256 (hex) of the
//! backend's identity ([`crate::LlmBackend::describe`]: protocol, base URL, model, for a local
//! model a fingerprint of its weights; never a key) and the request's JSON (which includes
//! `sample_index`, so the k-th sample of a sampled request has its own entry).
//!
//! # File format
//!
//! ```json
//! {"version": 1, "backend": "openai-compatible http://127.0.0.1:8042/v1 (model demo)",
//!  "request": {...ChatRequest...}, "reply": {...ChatReply...}}
//! ```
//!
//! A file whose backend or request differs from the one looked up (a hash collision, or a hand
//! edit) is ignored, not trusted. Files are written to a temporary file in the same folder and
//! renamed, so a killed run never leaves half a file; an unreadable file is a [`LlmError::Cache`]
//! naming it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ChatReply, ChatRequest, LlmError, Result};

const VERSION: u32 = 1;

/// A cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    version: u32,
    backend: String,
    request: ChatRequest,
    reply: ChatReply,
}

impl Cache {
    /// Uses (and creates) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Cache> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| LlmError::Cache {
            path: dir.display().to_string(),
            message: format!("cannot create the cache folder: {e}"),
        })?;
        Ok(Cache { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a request to a backend.
    pub fn key(backend: &str, request: &ChatRequest) -> String {
        let mut h = Sha256::new();
        h.update(backend.as_bytes());
        h.update([0u8]);
        h.update(
            serde_json::to_string(request)
                .unwrap_or_default()
                .as_bytes(),
        );
        crate::local::hex(&h.finalize())
    }

    /// The file a request is stored in.
    pub fn path(&self, backend: &str, request: &ChatRequest) -> PathBuf {
        self.dir
            .join(format!("{}.json", Cache::key(backend, request)))
    }

    /// The stored reply, marked `cached`, if there is one for exactly this backend and request.
    pub fn get(&self, backend: &str, request: &ChatRequest) -> Result<Option<ChatReply>> {
        let path = self.path(backend, request);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(cache_error(&path, format!("cannot read: {e}"))),
        };
        let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
            cache_error(
                &path,
                format!("not a cache entry ({e}); delete the file to ask again"),
            )
        })?;
        if entry.version != VERSION || entry.backend != backend || &entry.request != request {
            return Ok(None);
        }
        let mut reply = entry.reply;
        reply.cached = true;
        Ok(Some(reply))
    }

    /// Stores a reply (atomically: temporary file, then rename).
    pub fn put(&self, backend: &str, request: &ChatRequest, reply: &ChatReply) -> Result<()> {
        let path = self.path(backend, request);
        let mut reply = reply.clone();
        reply.cached = false;
        let entry = Entry {
            version: VERSION,
            backend: backend.to_string(),
            request: request.clone(),
            reply,
        };
        let json = serde_json::to_vec_pretty(&entry)
            .map_err(|e| cache_error(&path, format!("cannot encode: {e}")))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|e| cache_error(&path, format!("cannot create a temporary file: {e}")))?;
        std::io::Write::write_all(&mut tmp, &json)
            .map_err(|e| cache_error(&path, format!("cannot write: {e}")))?;
        tmp.persist(&path)
            .map_err(|e| cache_error(&path, format!("cannot rename into place: {e}")))?;
        Ok(())
    }
}

fn cache_error(path: &Path, message: String) -> LlmError {
    LlmError::Cache {
        path: path.display().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Usage};

    fn reply() -> ChatReply {
        ChatReply {
            text: "hi".into(),
            logprobs: vec![],
            finish_reason: Some("stop".into()),
            usage: Usage {
                input_tokens: 3,
                output_tokens: 1,
            },
            cached: false,
        }
    }

    #[test]
    fn round_trip_and_keys_separate_backends_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let req = ChatRequest::new(vec![Message::user("x")]);
        assert!(cache.get("b1", &req).unwrap().is_none());
        cache.put("b1", &req, &reply()).unwrap();
        let got = cache.get("b1", &req).unwrap().unwrap();
        assert!(got.cached);
        assert_eq!(got.text, "hi");
        assert!(cache.get("b2", &req).unwrap().is_none());
        let mut other = req.clone();
        other.sample_index = 1;
        assert!(cache.get("b1", &other).unwrap().is_none());
        assert_ne!(Cache::key("b1", &req), Cache::key("b1", &other));
        // Only the entry itself is left in the folder (no temporary files).
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_entry_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let req = ChatRequest::new(vec![Message::user("x")]);
        std::fs::write(cache.path("b", &req), "{not json").unwrap();
        let err = cache.get("b", &req).unwrap_err();
        assert!(err.to_string().contains(&Cache::key("b", &req)), "{err}");
    }
}
