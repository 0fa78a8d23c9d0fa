//! Corpus files: plain text (one document per non-empty line), JSONL with a `text` field, or
//! Parquet with a `text` column (the usual layout of HuggingFace datasets' shards).

use std::io::BufRead;
use std::path::Path;

use crate::error::{io, Error, Result};

/// Reads the documents of a corpus file; the format follows the extension (`.jsonl` is JSONL,
/// `.parquet` Parquet, anything else plain text).
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    if path.extension().is_some_and(|e| e == "parquet") {
        return read_parquet(path, f);
    }
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

/// The `text` column of a Parquet file (string or large string), batch by batch. Null rows are
/// skipped; every other row is one document, as a JSONL record is (blank text included).
fn read_parquet(path: &Path, f: std::fs::File) -> Result<Vec<String>> {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    let parse = |reason: String| Error::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| parse(format!("not a Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let field = schema.field_with_name("text").map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        parse(format!(
            "expected a string column `text`; the columns are {names:?}"
        ))
    })?;
    if !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
        return Err(parse(format!(
            "column `text` is {}, expected strings",
            field.data_type()
        )));
    }
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["text"]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| parse(e.to_string()))?;
    let mut docs = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parse(e.to_string()))?;
        let col = batch.column(0);
        let texts: Vec<Option<&str>> = match col.data_type() {
            DataType::LargeUtf8 => col.as_string::<i64>().iter().collect(),
            _ => col.as_string::<i32>().iter().collect(),
        };
        docs.extend(texts.into_iter().flatten().map(str::to_string));
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

    fn parquet_corpus(path: &Path, col: &str, texts: &[Option<&str>]) {
        let arr: arrow_array::ArrayRef =
            std::sync::Arc::new(arrow_array::StringArray::from(texts.to_vec()));
        let ids: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::Int32Array::from(
            (0..texts.len() as i32).collect::<Vec<_>>(),
        ));
        let batch = arrow_array::RecordBatch::try_from_iter([("id", ids), (col, arr)]).unwrap();
        let f = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    /// A Parquet corpus yields the same documents as the same text in JSONL (so the same
    /// token stream and the same dashboards); a file without a `text` column names its columns.
    #[test]
    fn parquet_equals_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let texts = [
            "The capital of Texas is Austin.",
            "  ",
            "Dallas is in \"Texas\".\nYes.",
        ];
        let j = dir.path().join("c.jsonl");
        let lines: Vec<String> = texts
            .iter()
            .map(|t| serde_json::json!({ "text": t }).to_string())
            .collect();
        std::fs::write(&j, lines.join("\n")).unwrap();
        let p = dir.path().join("c.parquet");
        let mut cells: Vec<Option<&str>> = texts.iter().map(|t| Some(*t)).collect();
        cells.push(None);
        parquet_corpus(&p, "text", &cells);
        let from_jsonl = read_documents(&j).unwrap();
        assert_eq!(from_jsonl, texts);
        assert_eq!(read_documents(&p).unwrap(), from_jsonl);
        let bad = dir.path().join("b.parquet");
        parquet_corpus(&bad, "content", &[Some("x")]);
        assert_eq!(
            read_documents(&bad).unwrap_err().to_string(),
            format!(
                "{}: expected a string column `text`; the columns are [\"id\", \"content\"]",
                bad.display()
            )
        );
    }
}
