//! What a user may type for `--model` / `--transcoders`: a local path, `org/name[/subdir][@rev]`,
//! or `hf://org/name[/subdir][@rev]` (also `?revision=rev`, circuit-tracer's URI form).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default revision, as on the hub.
pub const MAIN: &str = "main";

/// A file or folder inside a hub repository at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `org/name`.
    pub repo: String,
    /// Path inside the repository ("" for its root), without leading or trailing `/`.
    pub path: String,
    /// Branch, tag or commit hash.
    pub revision: String,
}

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A file or directory on this machine.
    Local(PathBuf),
    /// Something on the hub.
    Hub(HubRef),
}

impl Reference {
    /// Parses `s`. An existing local path always wins, so a directory that happens to be named
    /// `org/name` is still opened locally (as circuit-tracer's cache check does); `hf://` is
    /// always the hub.
    pub fn parse(s: &str) -> Result<Reference> {
        if let Some(rest) = s.strip_prefix("hf://") {
            return parse_hub(s, rest).map(Reference::Hub);
        }
        if Path::new(s).exists() || s.starts_with('.') || s.starts_with('/') || s.contains('\\') {
            return Ok(Reference::Local(PathBuf::from(s)));
        }
        // A bare hub id is `org/name[@rev]`; a deeper path (`a/b/c`) is a local path that does
        // not exist (subfolders of a repo need `hf://`), so its error names the missing path.
        if s.split('@').next().unwrap_or(s).matches('/').count() != 1 {
            return Ok(Reference::Local(PathBuf::from(s)));
        }
        match parse_hub(s, s) {
            Ok(h) => Ok(Reference::Hub(h)),
            // Not hub-shaped: a local path that does not exist; loading it names the path.
            Err(_) => Ok(Reference::Local(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hf://{}", self.repo)?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        if self.revision != MAIN {
            write!(f, "@{}", self.revision)?;
        }
        Ok(())
    }
}

fn bad(reference: &str, reason: impl Into<String>) -> Error {
    Error::BadReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_hub(whole: &str, s: &str) -> Result<HubRef> {
    let (s, query_rev) = match s.split_once("?revision=") {
        Some((a, r)) => (a, Some(r)),
        None => (s, None),
    };
    let (s, at_rev) = match s.rsplit_once('@') {
        Some((a, r)) => (a, Some(r)),
        None => (s, None),
    };
    let revision = match (query_rev, at_rev) {
        (Some(_), Some(_)) => return Err(bad(whole, "two revisions given")),
        (Some(r), None) | (None, Some(r)) => r,
        (None, None) => MAIN,
    };
    if revision.is_empty() {
        return Err(bad(whole, "empty revision"));
    }
    let mut parts = s.trim_end_matches('/').split('/');
    let (org, name) = match (parts.next(), parts.next()) {
        (Some(o), Some(n)) => (o, n),
        _ => return Err(bad(whole, "a hub id has the form org/name")),
    };
    if !valid_name(org) || !valid_name(name) {
        return Err(bad(
            whole,
            "org and name may hold letters, digits, `-`, `_` and `.` only",
        ));
    }
    let path: Vec<&str> = parts.collect();
    if path.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(bad(whole, "empty, `.` or `..` path segment"));
    }
    Ok(HubRef {
        repo: format!("{org}/{name}"),
        path: path.join("/"),
        revision: revision.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, path: &str, rev: &str) -> Reference {
        Reference::Hub(HubRef {
            repo: repo.into(),
            path: path.into(),
            revision: rev.into(),
        })
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Reference::parse("google/gemma-2-2b").unwrap(),
            hub("google/gemma-2-2b", "", "main")
        );
        assert_eq!(
            Reference::parse("meta-llama/Llama-3.2-1B@v1.0").unwrap(),
            hub("meta-llama/Llama-3.2-1B", "", "v1.0")
        );
        assert_eq!(
            Reference::parse(
                "hf://mwhanna/gemma-scope-2-1b-pt/transcoder_all/width_16k_l0_small@abc"
            )
            .unwrap(),
            hub(
                "mwhanna/gemma-scope-2-1b-pt",
                "transcoder_all/width_16k_l0_small",
                "abc"
            )
        );
        assert_eq!(
            Reference::parse("hf://mntss/skip-transcoder-Llama-3.2-1B-131k-nobos/layer_3.safetensors?revision=new-training").unwrap(),
            hub("mntss/skip-transcoder-Llama-3.2-1B-131k-nobos", "layer_3.safetensors", "new-training")
        );
        assert_eq!(
            Reference::parse("./models/demo").unwrap(),
            Reference::Local("./models/demo".into())
        );
        assert_eq!(
            Reference::parse("mymodel").unwrap(),
            Reference::Local("mymodel".into())
        );
    }

    #[test]
    fn existing_local_path_wins_over_hub_id() {
        let d = std::env::temp_dir();
        let s = d.to_str().unwrap();
        assert_eq!(Reference::parse(s).unwrap(), Reference::Local(d.clone()));
    }

    #[test]
    fn bad_hub_uris_say_why() {
        let e = Reference::parse("hf://gemma").unwrap_err().to_string();
        assert!(
            e.contains("`hf://gemma` is not a model reference: a hub id has the form org/name"),
            "{e}"
        );
        let e = Reference::parse("hf://a/b/../c").unwrap_err().to_string();
        assert!(e.contains("`..`"), "{e}");
        let e = Reference::parse("hf://a/b@").unwrap_err().to_string();
        assert!(e.contains("empty revision"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["hf://a/b", "hf://a/b/c/d.npz", "hf://a/b/c@dev"] {
            match Reference::parse(s).unwrap() {
                Reference::Hub(h) => assert_eq!(h.to_string(), s),
                r => panic!("{r:?}"),
            }
        }
    }
}
