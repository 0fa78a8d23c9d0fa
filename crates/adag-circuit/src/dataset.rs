//! Datasets of prompts to trace: JSONL, CSV or YAML.
//!
//! # Formats
//!
//! Every format describes a list of [`DatasetItem`]s with the same fields:
//!
//! | field | aliases | type | meaning |
//! |---|---|---|---|
//! | `prompt` | `question` | string, required, non-empty | the user message |
//! | `seed` | `seed_response` | string, optional | start of the assistant's answer; `[EMPTY]` = an empty assistant turn |
//! | `label` | | string, optional | a name carried to the outputs (`label` column) |
//! | `answers` | `answer`, `true_answer`, `true_answers` | string or list of strings, optional | explain these answers' first tokens instead of the model's top-k |
//!
//! - **JSONL** (`.jsonl`, `.ndjson`): one JSON object per line; blank lines and lines starting
//!   with `//` or `#` are skipped.
//! - **CSV** (`.csv`, RFC 4180: comma-separated, `"` quotes, `""` escapes, quoted fields may span
//!   lines): a header row naming the columns above; an empty cell means "not given"; several
//!   answers in one cell are separated by `|`.
//! - **YAML** (`.yaml`, `.yml`): either a list of items (maps with the fields above), or a map
//!   `{items: [...]}`, or the reference's dataset-module shape: `prompts: [...]` with optional
//!   parallel lists `seed_responses`, `labels`, `true_answers` (`seed_responses` may also be one
//!   string used for every prompt).
//!
//! Unknown fields are errors (a misspelt `seed` would otherwise silently trace the wrong
//! prompt). Every error names the file, the line (JSONL), row (CSV, counting the header as
//! row 1) or item (YAML, 1-based), and the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The seed that stands for an empty assistant turn (the reference's sentinel).
pub const EMPTY_SEED: &str = "[EMPTY]";

/// One prompt of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DatasetItem {
    /// The user message.
    pub prompt: String,
    /// Start of the assistant's answer (the "seed response"); [`EMPTY_SEED`] for an empty turn.
    pub seed: Option<String>,
    /// A name carried to the outputs.
    pub label: Option<String>,
    /// Answers whose first tokens are the targets (empty: the model's top-k).
    pub answers: Vec<String>,
}

/// A loaded dataset: its items and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The file it was read from.
    pub path: PathBuf,
    /// The prompts, in file order; an item's index is its `prompt_id`.
    pub items: Vec<DatasetItem>,
}

const FIELDS: &str =
    "prompt (question), seed (seed_response), label, answers (answer, true_answer, true_answers)";

#[derive(PartialEq)]
enum Field {
    Prompt,
    Seed,
    Label,
    Answers,
}

fn field_of(name: &str) -> Option<Field> {
    Some(match name {
        "prompt" | "question" => Field::Prompt,
        "seed" | "seed_response" => Field::Seed,
        "label" => Field::Label,
        "answers" | "answer" | "true_answer" | "true_answers" => Field::Answers,
        _ => return None,
    })
}

impl Dataset {
    /// Reads a dataset, choosing the format by extension (see the module docs).
    pub fn load(path: &Path) -> Result<Dataset> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let items = match ext.as_str() {
            "jsonl" | "ndjson" => parse_jsonl(path, &text)?,
            "csv" => parse_csv(path, &text)?,
            "yaml" | "yml" => parse_yaml(path, &text)?,
            _ => {
                return Err(Error::Dataset {
                    path: path.into(),
                    at: "file name".into(),
                    field: None,
                    message: format!("unknown dataset format `.{ext}`; use .jsonl, .csv or .yaml"),
                })
            }
        };
        if items.is_empty() {
            return Err(Error::Dataset {
                path: path.into(),
                at: "whole file".into(),
                field: None,
                message: "the dataset has no prompts".into(),
            });
        }
        Ok(Dataset {
            path: path.into(),
            items,
        })
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no prompts (never true for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn err(path: &Path, at: &str, field: Option<&str>, message: impl Into<String>) -> Error {
    Error::Dataset {
        path: path.into(),
        at: at.into(),
        field: field.map(String::from),
        message: message.into(),
    }
}

/// Checks an assembled item: a non-empty prompt, non-empty answers.
fn finish(path: &Path, at: &str, item: Option<DatasetItem>) -> Result<DatasetItem> {
    let item = item.ok_or_else(|| {
        err(
            path,
            at,
            Some("prompt"),
            "missing (every item needs a prompt)",
        )
    })?;
    if item.prompt.is_empty() {
        return Err(err(path, at, Some("prompt"), "empty"));
    }
    if item.answers.iter().any(|a| a.is_empty()) {
        return Err(err(path, at, Some("answers"), "an answer is empty"));
    }
    Ok(item)
}

// ---------------------------------------------------------------- JSON values (JSONL, YAML)

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// An item from a JSON object (JSONL lines and YAML maps both arrive as JSON values).
fn item_from_object(path: &Path, at: &str, v: &serde_json::Value) -> Result<DatasetItem> {
    let obj = v.as_object().ok_or_else(|| {
        err(
            path,
            at,
            None,
            format!("expected an object with a `prompt`, got {}", json_type(v)),
        )
    })?;
    let mut item = DatasetItem::default();
    let mut has_prompt = false;
    for (k, val) in obj {
        let field = field_of(k).ok_or_else(|| {
            err(
                path,
                at,
                Some(k),
                format!("unknown field; known fields: {FIELDS}"),
            )
        })?;
        let string = |val: &serde_json::Value| -> Result<Option<String>> {
            match val {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::String(s) => Ok(Some(s.clone())),
                other => Err(err(
                    path,
                    at,
                    Some(k),
                    format!("expected a string, got {}", json_type(other)),
                )),
            }
        };
        match field {
            Field::Prompt => {
                item.prompt = string(val)?.unwrap_or_default();
                has_prompt = true;
            }
            Field::Seed => item.seed = string(val)?,
            Field::Label => {
                // Numbers are common as labels (ids); accept them as text.
                item.label = match val {
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    other => string(other)?,
                }
            }
            Field::Answers => {
                item.answers = match val {
                    serde_json::Value::Array(xs) => xs
                        .iter()
                        .map(|x| {
                            string(x)?.ok_or_else(|| err(path, at, Some(k), "an answer is null"))
                        })
                        .collect::<Result<_>>()?,
                    other => string(other)?.into_iter().collect(),
                }
            }
        }
    }
    finish(path, at, has_prompt.then_some(item))
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<DatasetItem>> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("//") || t.starts_with('#') {
            continue;
        }
        let at = format!("line {}", i + 1);
        let v: serde_json::Value = serde_json::from_str(t)
            .map_err(|e| err(path, &at, None, format!("not valid JSON: {e}")))?;
        if v.is_object() {
            if let Some(k) = duplicate_key(t) {
                return Err(err(path, &at, Some(&k), "the key appears twice"));
            }
        }
        items.push(item_from_object(path, &at, &v)?);
    }
    Ok(items)
}

/// The first key that appears twice at the top level of the JSON object `t` (serde_json's
/// `Value` keeps the last one silently).
fn duplicate_key(t: &str) -> Option<String> {
    struct Dup(Option<String>);
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Dup;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> std::result::Result<Dup, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut dup = None;
            while let Some(k) = m.next_key::<String>()? {
                m.next_value::<serde::de::IgnoredAny>()?;
                if dup.is_none() && !seen.insert(k.clone()) {
                    dup = Some(k);
                }
            }
            Ok(Dup(dup))
        }
    }
    impl<'de> Deserialize<'de> for Dup {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Dup, D::Error> {
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Dup>(t).ok().and_then(|d| d.0)
}

// ---------------------------------------------------------------- YAML

fn parse_yaml(path: &Path, text: &str) -> Result<Vec<DatasetItem>> {
    let v: serde_json::Value = serde_norway::from_str(text)
        .map_err(|e| err(path, "whole file", None, format!("not valid YAML: {e}")))?;
    let items_of = |xs: &[serde_json::Value]| -> Result<Vec<DatasetItem>> {
        xs.iter()
            .enumerate()
            .map(|(i, x)| item_from_object(path, &format!("item {}", i + 1), x))
            .collect()
    };
    match &v {
        serde_json::Value::Array(xs) => items_of(xs),
        serde_json::Value::Object(m) if m.contains_key("items") => {
            if let Some(k) = m.keys().find(|k| *k != "items") {
                return Err(err(
                    path,
                    "top level",
                    Some(k),
                    "unknown key next to `items`",
                ));
            }
            match &m["items"] {
                serde_json::Value::Array(xs) => items_of(xs),
                other => Err(err(
                    path,
                    "top level",
                    Some("items"),
                    format!("expected a list, got {}", json_type(other)),
                )),
            }
        }
        serde_json::Value::Object(m) => parse_yaml_columns(path, m),
        other => Err(err(
            path,
            "top level",
            None,
            format!(
                "expected a list of items or a map with `prompts`, got {}",
                json_type(other)
            ),
        )),
    }
}

/// The reference's dataset-module shape: parallel lists.
fn parse_yaml_columns(
    path: &Path,
    m: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<DatasetItem>> {
    const KEYS: [&str; 4] = ["prompts", "seed_responses", "labels", "true_answers"];
    if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(err(
            path,
            "top level",
            Some(k),
            format!(
                "unknown key; expected a list of items, `items:`, or {}",
                KEYS.join(", ")
            ),
        ));
    }
    let list = |key: &str| -> Result<Option<&Vec<serde_json::Value>>> {
        match m.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Array(xs)) => Ok(Some(xs)),
            Some(other) if key == "seed_responses" && other.is_string() => Ok(None),
            Some(other) => Err(err(
                path,
                "top level",
                Some(key),
                format!("expected a list, got {}", json_type(other)),
            )),
        }
    };
    let prompts =
        list("prompts")?.ok_or_else(|| err(path, "top level", Some("prompts"), "missing"))?;
    let seeds = list("seed_responses")?;
    let shared_seed = m.get("seed_responses").and_then(|v| v.as_str());
    let labels = list("labels")?;
    let answers = list("true_answers")?;
    for (key, xs) in [
        ("seed_responses", seeds),
        ("labels", labels),
        ("true_answers", answers),
    ] {
        if let Some(xs) = xs {
            if xs.len() != prompts.len() {
                return Err(err(
                    path,
                    "top level",
                    Some(key),
                    format!(
                        "has {} entries but `prompts` has {}",
                        xs.len(),
                        prompts.len()
                    ),
                ));
            }
        }
    }
    (0..prompts.len())
        .map(|i| {
            let mut obj = serde_json::Map::new();
            obj.insert("prompt".into(), prompts[i].clone());
            if let Some(s) = shared_seed {
                obj.insert("seed".into(), s.into());
            }
            if let Some(xs) = seeds {
                obj.insert("seed".into(), xs[i].clone());
            }
            if let Some(xs) = labels {
                obj.insert("label".into(), xs[i].clone());
            }
            if let Some(xs) = answers {
                obj.insert("answers".into(), xs[i].clone());
            }
            item_from_object(
                path,
                &format!("item {}", i + 1),
                &serde_json::Value::Object(obj),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- CSV

/// RFC 4180 records with the 1-based line each record starts on.
fn csv_records(path: &Path, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    return Err(err(
                        path,
                        &format!("row {start}"),
                        None,
                        "unterminated quoted field",
                    ));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    c => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                '"' => {
                    return Err(err(
                        path,
                        &format!("row {start}"),
                        None,
                        format!(
                            "stray `\"` in an unquoted field (field {})",
                            fields.len() + 1
                        ),
                    ))
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                c => {
                    if was_quoted {
                        return Err(err(
                            path,
                            &format!("row {start}"),
                            None,
                            format!("text after a closing quote (field {})", fields.len() + 1),
                        ));
                    }
                    field.push(c)
                }
            }
        }
        fields.push(field);
        // A blank line is no record.
        if !(fields.len() == 1 && fields[0].trim().is_empty()) {
            records.push((start, fields));
        }
    }
    Ok(records)
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<DatasetItem>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv_records(path, text)?;
    let Some(((_, header), rows)) = records.split_first() else {
        return Ok(Vec::new());
    };
    let mut columns = Vec::new();
    for name in header {
        let name = name.trim();
        let f = field_of(name).ok_or_else(|| {
            err(
                path,
                "row 1 (header)",
                Some(name),
                format!("unknown column; known columns: {FIELDS}"),
            )
        })?;
        if columns.contains(&f) {
            // Two columns for one field: which one wins would be an accident of order.
            return Err(err(
                path,
                "row 1 (header)",
                Some(name),
                "names a field an earlier column already gives",
            ));
        }
        columns.push(f);
    }
    if !columns.iter().any(|c| matches!(c, Field::Prompt)) {
        return Err(err(
            path,
            "row 1 (header)",
            Some("prompt"),
            "no `prompt` column",
        ));
    }
    rows.iter()
        .map(|(line, fields)| {
            let at = format!("row {line}");
            if fields.len() != columns.len() {
                return Err(err(
                    path,
                    &at,
                    None,
                    format!(
                        "{} fields, but the header has {}",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            let mut item = DatasetItem::default();
            let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
            for (col, val) in columns.iter().zip(fields) {
                match col {
                    Field::Prompt => item.prompt = val.clone(),
                    Field::Seed => item.seed = opt(val),
                    Field::Label => item.label = opt(val),
                    Field::Answers => {
                        item.answers = if val.is_empty() {
                            Vec::new()
                        } else {
                            val.split('|').map(String::from).collect()
                        }
                    }
                }
            }
            finish(path, &at, Some(item))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Result<Dataset> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        Dataset::load(&p)
    }

    #[test]
    fn duplicate_jsonl_keys_and_csv_headers_are_errors() {
        let e = load(
            "d.jsonl",
            "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"prompt\": \"c\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("d.jsonl")
                && e.contains("line 2")
                && e.contains("prompt")
                && e.contains("the key appears twice"),
            "{e}"
        );
        let e = load("d.csv", "prompt,label,question\na,x,b\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("d.csv")
                && e.contains("row 1 (header)")
                && e.contains("question")
                && e.contains("names a field an earlier column already gives"),
            "{e}"
        );
    }

    fn item(p: &str, seed: Option<&str>, label: Option<&str>, answers: &[&str]) -> DatasetItem {
        DatasetItem {
            prompt: p.into(),
            seed: seed.map(String::from),
            label: label.map(String::from),
            answers: answers.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn jsonl_items_and_aliases() {
        let d = load(
            "d.jsonl",
            "{\"prompt\": \"A?\", \"seed\": \"Answer:\", \"label\": \"a\"}\n\n# comment\n{\"question\": \"B?\", \"seed_response\": \"[EMPTY]\", \"label\": 7, \"answer\": \" x\"}\n{\"prompt\": \"C?\", \"answers\": [\"p\", \"q\"]}\n",
        )
        .unwrap();
        assert_eq!(
            d.items,
            vec![
                item("A?", Some("Answer:"), Some("a"), &[]),
                item("B?", Some("[EMPTY]"), Some("7"), &[" x"]),
                item("C?", None, None, &["p", "q"]),
            ]
        );
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let e = load("bad.jsonl", "{\"prompt\": \"A\"}\n{\"prompt\": 3}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.jsonl: line 2: field `prompt`: expected a string, got a number"),
            "{e}"
        );
        let e = load("bad.jsonl", "{\"prompt\": \"A\"}\n\n{\"promt\": \"B\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3: field `promt`: unknown field"), "{e}");
        let e = load("bad.jsonl", "{\"seed\": \"x\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: field `prompt`: missing"), "{e}");
        let e = load("bad.jsonl", "{\"prompt\": \"\"}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: field `prompt`: empty"), "{e}");
        let e = load("bad.jsonl", "{\"prompt\": \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: not valid JSON"), "{e}");
        let e = load("bad.jsonl", "[1]\n").unwrap_err().to_string();
        assert!(e.contains("line 1: expected an object"), "{e}");
        let e = load("empty.jsonl", "\n").unwrap_err().to_string();
        assert!(e.contains("no prompts"), "{e}");
    }

    #[test]
    fn csv_quotes_multiline_and_answers() {
        let d = load(
            "d.csv",
            "prompt,seed,label,answers\r\n\"What, then?\",Answer: ,x,\" Austin| Dallas\"\n\"Two\nlines \"\"q\"\"\",,,\n",
        )
        .unwrap();
        assert_eq!(
            d.items,
            vec![
                item(
                    "What, then?",
                    Some("Answer: "),
                    Some("x"),
                    &[" Austin", " Dallas"]
                ),
                item("Two\nlines \"q\"", None, None, &[]),
            ]
        );
    }

    #[test]
    fn csv_errors_name_row_and_field() {
        let e = load("bad.csv", "prompt,seeds\na,b\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.csv: row 1 (header): field `seeds`: unknown column"),
            "{e}"
        );
        let e = load("bad.csv", "prompt,seed\na,b\n\"x\ny\",c\nd\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 5: 1 fields, but the header has 2"), "{e}");
        let e = load("bad.csv", "prompt,seed\n,b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 2: field `prompt`: empty"), "{e}");
        let e = load("bad.csv", "seed\nb\n").unwrap_err().to_string();
        assert!(e.contains("no `prompt` column"), "{e}");
        let e = load("bad.csv", "prompt\n\"abc\n").unwrap_err().to_string();
        assert!(e.contains("row 2: unterminated quoted field"), "{e}");
    }

    #[test]
    fn yaml_list_items_and_columns() {
        let a = load(
            "a.yaml",
            "- prompt: A?\n  seed: 'Answer: '\n- {prompt: B?, answers: [' y']}\n",
        )
        .unwrap();
        assert_eq!(
            a.items,
            vec![
                item("A?", Some("Answer: "), None, &[]),
                item("B?", None, None, &[" y"])
            ]
        );
        let b = load("b.yml", "items:\n  - prompt: A?\n").unwrap();
        assert_eq!(b.items, vec![item("A?", None, None, &[])]);
        let c = load(
            "c.yaml",
            "prompts: [A?, B?]\nseed_responses: 'Answer:'\nlabels: [a, b]\n",
        )
        .unwrap();
        assert_eq!(
            c.items,
            vec![
                item("A?", Some("Answer:"), Some("a"), &[]),
                item("B?", Some("Answer:"), Some("b"), &[])
            ]
        );
    }

    #[test]
    fn yaml_errors_name_item_and_field() {
        let e = load("bad.yaml", "- prompt: A\n- prompt: [1]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.yaml: item 2: field `prompt`: expected a string, got a list"),
            "{e}"
        );
        let e = load("bad.yaml", "prompts: [A, B]\nlabels: [a]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `labels`: has 1 entries but `prompts` has 2"),
            "{e}"
        );
        let e = load("bad.yaml", "prompts: [A]\nseeds: [a]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `seeds`: unknown key"), "{e}");
        let e = load("bad.yaml", "- prompt: 'a\n").unwrap_err().to_string();
        assert!(e.contains("not valid YAML"), "{e}");
        let e = load("bad.txt", "x").unwrap_err().to_string();
        assert!(e.contains("unknown dataset format `.txt`"), "{e}");
    }
}
