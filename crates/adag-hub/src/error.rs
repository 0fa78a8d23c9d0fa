//! Errors of hub resolution: every variant names the repository and file it concerns.

use std::path::PathBuf;

/// A hub or cache failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- references ---
    /// A reference that is neither a local path nor `org/name[@rev]` nor `hf://org/name[/sub][@rev]`.
    #[error("`{reference}` is not a model reference: {reason} (expected a local path, `org/name[@revision]` or `hf://org/name[/subdir][@revision]`)")]
    BadReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    // --- offline / cache ---
    /// `HF_HUB_OFFLINE` is set and the cache lacks the file.
    #[error("{repo}@{revision}: `{file}` is not in the HF cache ({cache}) and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download it")]
    OfflineMissing {
        /// Repository id.
        repo: String,
        /// Requested revision.
        revision: String,
        /// File inside the repository.
        file: String,
        /// The cache directory searched.
        cache: PathBuf,
    },
    /// Reading or writing the cache failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    // --- network ---
    /// The repository or revision needs a token.
    #[error("{repo}: access denied (HTTP {status}); this repository is gated or private: accept its licence on huggingface.co and set HF_TOKEN to a token of that account")]
    Gated {
        /// Repository id.
        repo: String,
        /// 401 or 403.
        status: u16,
    },
    /// The repository, revision or file does not exist.
    #[error("{repo}@{revision}: `{file}` not found on {endpoint} (HTTP 404)")]
    NotFound {
        /// Repository id.
        repo: String,
        /// Revision.
        revision: String,
        /// File ("" for the repository listing).
        file: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// Any other HTTP or transport failure.
    #[error("{url}: {reason}")]
    Http {
        /// The URL requested.
        url: String,
        /// Status or transport error.
        reason: String,
    },
    /// The downloaded bytes do not match the hub's checksum or size.
    #[error("{repo}: `{file}` failed verification: {reason}; the partial file was removed, run again to re-download")]
    Corrupt {
        /// Repository id.
        repo: String,
        /// File.
        file: String,
        /// Expected vs actual.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
