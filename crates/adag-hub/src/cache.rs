//! The HuggingFace cache layout, shared with `huggingface_hub`, transformers and
//! `huggingface-cli`, so a file any of them downloaded is reused and vice versa:
//!
//! ```text
//! {cache}/models--{org}--{name}/
//!     blobs/{etag}                      file contents, named by the hub's ETag (sha256 for LFS)
//!     blobs/{etag}.incomplete           a download in progress (resumed with an HTTP Range)
//!     refs/{revision}                   the commit hash a branch or tag pointed at
//!     snapshots/{commit}/{file}         relative symlink to ../../blobs/{etag}
//!     .no_exist/{commit}/{file}         empty marker: the file is absent at that commit
//! ```

use std::path::{Path, PathBuf};

use crate::error::{io, Result};

/// One repository's folder in the cache.
#[derive(Debug, Clone)]
pub struct RepoCache {
    /// `{cache}/models--{org}--{name}`.
    pub dir: PathBuf,
}

/// Whether `rev` is a full commit hash (then it needs no `refs/` lookup).
pub fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

impl RepoCache {
    /// The folder of `repo` (`org/name`) under `cache`.
    pub fn new(cache: &Path, repo: &str) -> RepoCache {
        RepoCache {
            dir: cache.join(format!("models--{}", repo.replace('/', "--"))),
        }
    }

    /// The commit `revision` resolves to, if known locally.
    pub fn commit(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        std::fs::read_to_string(self.dir.join("refs").join(revision))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Records that `revision` points at `commit` (atomically).
    pub fn set_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        write_atomic(&path, commit.as_bytes())
    }

    /// `snapshots/{commit}`.
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    /// The cached file, if present.
    pub fn cached(&self, commit: &str, file: &str) -> Option<PathBuf> {
        let p = self.snapshot(commit).join(file);
        // `exists` follows the symlink: a dangling link (blob deleted) counts as missing.
        p.exists().then_some(p)
    }

    /// Whether the file is known to be absent at `commit`.
    pub fn known_missing(&self, commit: &str, file: &str) -> bool {
        self.dir.join(".no_exist").join(commit).join(file).exists()
    }

    /// Remembers that the file is absent at `commit`, so the next run asks no server.
    pub fn mark_missing(&self, commit: &str, file: &str) -> Result<()> {
        let p = self.dir.join(".no_exist").join(commit).join(file);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, b"").map_err(io(&p))
    }

    /// `blobs/{etag}`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    /// Points `snapshots/{commit}/{file}` at `blobs/{etag}` and returns the snapshot path.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let dst = self.snapshot(commit).join(file);
        let parent = dst.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        // snapshots/{commit}/a/b/file → ../../../../blobs/{etag}: one `..` per folder level.
        let depth = 2 + file.matches('/').count();
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        let tmp = parent.join(format!(
            ".{}.{}.tmp",
            dst.file_name().and_then(|n| n.to_str()).unwrap_or("link"),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        make_link(&target, &self.blob(etag), &tmp)?;
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        Ok(dst)
    }
}

#[cfg(unix)]
fn make_link(relative: &Path, _blob: &Path, at: &Path) -> Result<()> {
    std::os::unix::fs::symlink(relative, at).map_err(io(at))
}

/// Without symlinks (as huggingface_hub on Windows without developer mode), the snapshot holds
/// a copy.
#[cfg(not(unix))]
fn make_link(_relative: &Path, blob: &Path, at: &Path) -> Result<()> {
    std::fs::copy(blob, at).map(|_| ()).map_err(io(at))
}

/// Writes `bytes` to `path` through the workspace's one [`adag_core::write_atomic`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    adag_core::write_atomic(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_huggingface_hub() {
        let d = tempfile::tempdir().unwrap();
        let c = RepoCache::new(d.path(), "google/gemma-2-2b");
        assert_eq!(c.dir, d.path().join("models--google--gemma-2-2b"));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert!(is_commit(commit));
        assert!(!is_commit("main"));
        c.set_ref("main", commit).unwrap();
        assert_eq!(c.commit("main").as_deref(), Some(commit));
        std::fs::create_dir_all(c.dir.join("blobs")).unwrap();
        std::fs::write(c.blob("e1"), b"hello").unwrap();
        let p = c.link(commit, "a/b/x.json", "e1").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(&p).unwrap(),
            Path::new("../../../../blobs/e1")
        );
        assert_eq!(c.cached(commit, "a/b/x.json"), Some(p));
        assert!(!c.known_missing(commit, "y"));
        c.mark_missing(commit, "y").unwrap();
        assert!(c.known_missing(commit, "y"));
    }
}
