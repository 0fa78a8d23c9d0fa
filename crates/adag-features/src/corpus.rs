//! Corpus files: plain text (one document per non-empty line) or JSONL with a `text` field.

use std::io::BufRead;
use std::path::Path;

use crate::error::{io, Error, Result};

/// Reads the documents of a corpus file; the format follows the extension (`.jsonl` is JSONL,
/// anything else plain text).
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut docs = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                reason: format!("line {}: {e}", i + 1),
            })?;
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| Error::Parse {
                    path: path.to_path_buf(),
                    reason: format!(
                        "line {}: expected an object with a string field `text`",
                        i + 1
                    ),
                })?;
            docs.push(text.to_string());
        } else {
            docs.push(line);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("c.txt");
        std::fs::write(&t, "one\n\ntwo\n").unwrap();
        assert_eq!(read_documents(&t).unwrap(), ["one", "two"]);
        let j = dir.path().join("c.jsonl");
        std::fs::write(&j, "{\"text\": \"a b\"}\n{\"id\": 3}\n").unwrap();
        let e = read_documents(&j).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: line 2: expected an object with a string field `text`",
                j.display()
            )
        );
        std::fs::write(&j, "{\"text\": \"a b\"}\n").unwrap();
        assert_eq!(read_documents(&j).unwrap(), ["a b"]);
    }
}
