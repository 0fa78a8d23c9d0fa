//! Reading replies: descriptions after their marker, filled-in simulator blanks, labels.
//!
//! A reply is either usable, **refused** (the model declined; the reference's API explainer
//! does this on jailbreak text) or **malformed** (no marker, empty, too long, out-of-range
//! number). Callers retry the last two in later rounds and record them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::prompts::BANNED_LABEL_WORDS;

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "lowercase")]
pub enum Unusable {
    /// The model declined.
    Refused(String),
    /// The reply did not have the expected form.
    Malformed(String),
    /// The endpoint rejected this request (e.g. longer than the model's context).
    Rejected(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Refused(s) => write!(f, "refused: {s}"),
            Unusable::Malformed(s) => write!(f, "malformed: {s}"),
            Unusable::Rejected(s) => write!(f, "rejected: {s}"),
        }
    }
}

/// Longest description accepted (characters); longer replies ramble past the one line asked.
pub const MAX_DESCRIPTION_CHARS: usize = 400;

const REFUSAL_OPENINGS: [&str; 9] = [
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm sorry",
    "i am sorry",
    "i'm unable",
    "i am unable",
];

/// Whether a reply is a refusal: the backend says so (`finish_reason` `refusal` or
/// `content_filter`), or the text opens with one of the usual refusals.
pub fn is_refusal(text: &str, finish_reason: Option<&str>) -> bool {
    if matches!(finish_reason, Some("refusal" | "content_filter")) {
        return true;
    }
    let t = text.trim_start().to_lowercase().replace('’', "'");
    REFUSAL_OPENINGS.iter().any(|r| t.starts_with(r))
}

/// The text after `marker` (e.g. `[DESCRIPTION]`), an optional `:`, up to the end of that
/// line; surrounding quotes and whitespace removed.
pub fn parse_marked(
    text: &str,
    marker: &str,
    finish_reason: Option<&str>,
) -> Result<String, Unusable> {
    let Some(at) = text.rfind(marker) else {
        if is_refusal(text, finish_reason) {
            return Err(Unusable::Refused(preview(text)));
        }
        return Err(Unusable::Malformed(format!(
            "no {marker} in {:?}",
            preview(text)
        )));
    };
    let rest = text[at + marker.len()..].trim_start();
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
    let line = rest.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let d = strip_quotes(line.trim());
    if d.is_empty() {
        return Err(Unusable::Malformed(format!("empty text after {marker}")));
    }
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Unusable::Malformed(format!(
            "{} characters after {marker} (at most {MAX_DESCRIPTION_CHARS})",
            d.chars().count()
        )));
    }
    if is_refusal(d, None) {
        return Err(Unusable::Refused(preview(d)));
    }
    Ok(d.to_string())
}

/// Removes one pair of surrounding quotes (`"…"`, `'…'`, `` `…` ``), only when both ends match,
/// so that a description ending in a quoted word keeps its closing quote.
fn strip_quotes(s: &str) -> &str {
    for q in ['"', '\'', '`'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].trim();
        }
    }
    s
}

fn preview(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Where in `text` the filled value of line `(i, …, N)` sits, for every line that has one:
/// `index → (byte offset of N, N)`. Lines are matched by their leading index, so reordered or
/// missing lines are tolerated; the value is the last integer before the line's closing `)`.
pub fn parse_indexed_fills(text: &str) -> BTreeMap<usize, (usize, i64)> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim_end();
        let lead = line.len() - line.trim_start().len();
        let Some(body) = t.trim_start().strip_prefix('(') else {
            continue;
        };
        let Some(close) = body.rfind(')') else {
            continue;
        };
        let body = &body[..close];
        let Some(comma) = body.find(',') else {
            continue;
        };
        let Ok(idx) = body[..comma].trim().parse::<usize>() else {
            continue;
        };
        if let Some((pos, v)) = last_integer(body) {
            // Offset of the number in the whole text: line start + leading space + "(" + pos.
            out.insert(idx, (start + lead + 1 + pos, v));
        }
    }
    out
}

/// The last integer in `s` after its last comma: (byte offset, value).
fn last_integer(s: &str) -> Option<(usize, i64)> {
    let comma = s.rfind(',')?;
    let tail = &s[comma + 1..];
    let trimmed = tail.trim();
    let v: i64 = trimmed.parse().ok()?;
    let pos = comma + 1 + tail.find(trimmed)?;
    Some((pos, v))
}

/// The output simulator's filled list `[('tok', N), …]`: the values in order, `None` where a
/// value is missing or not an integer.
pub fn parse_pair_fills(text: &str, n: usize) -> Vec<Option<(usize, i64)>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut base = 0;
    while out.len() < n {
        let Some(open) = rest.find('(') else { break };
        let Some(close_rel) = rest[open..].find(')') else {
            break;
        };
        let inner = &rest[open + 1..open + close_rel];
        out.push(last_integer(inner).map(|(p, v)| (base + open + 1 + p, v)));
        base += open + close_rel + 1;
        rest = &rest[open + close_rel + 1..];
    }
    out.resize(n, None);
    out
}

/// Expected score from one generated token's `top_logprobs`: the alternatives that are score
/// tokens (integers in `lo..=hi`, surrounding whitespace ignored) renormalised. `None` when
/// none of them is a score token.
pub fn expected_from_top(top: &[(String, f32)], lo: i64, hi: i64) -> Option<f32> {
    let mut best: BTreeMap<i64, f32> = BTreeMap::new();
    for (t, lp) in top {
        if let Ok(v) = t.trim().parse::<i64>() {
            if (lo..=hi).contains(&v) {
                // The same number as several tokens (" 5", "5"): their probabilities add.
                *best.entry(v).or_insert(0.0) += lp.exp();
            }
        }
    }
    let z: f32 = best.values().sum();
    if z <= 0.0 {
        return None;
    }
    Some(best.iter().map(|(v, p)| *v as f32 * p).sum::<f32>() / z)
}

/// A validated label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The label as stored (`not[...]` for inhibitory clusters).
    pub text: String,
    /// Whether it is written `not[...]`.
    pub negated: bool,
}

/// Parses and validates a label reply: first non-empty line, `Label:`-style prefixes,
/// quotes and a final period removed; 1–3 words inside an optional `not[…]`; no banned word.
pub fn parse_label(text: &str) -> Result<Label, Unusable> {
    if is_refusal(text, None) {
        return Err(Unusable::Refused(preview(text)));
    }
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| Unusable::Malformed("empty label".into()))?;
    let line = line
        .strip_prefix("Label:")
        .or_else(|| line.strip_prefix("label:"))
        .unwrap_or(line);
    validate_label(line)
}

/// Validates one label string (see [`parse_label`]).
pub fn validate_label(s: &str) -> Result<Label, Unusable> {
    let s = s
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == '`' || c == '*')
        .trim()
        .trim_end_matches('.')
        .trim();
    let (inner, negated) = match s
        .strip_prefix("not[")
        .or_else(|| s.strip_prefix("Not["))
        .and_then(|r| r.strip_suffix(']'))
    {
        Some(inner) => (inner.trim(), true),
        None => (s, false),
    };
    let words: Vec<&str> = inner.split_whitespace().collect();
    if words.is_empty() || words.len() > 3 {
        return Err(Unusable::Malformed(format!(
            "label {s:?} has {} words (1 to 3 expected)",
            words.len()
        )));
    }
    if inner.contains(['[', ']', '\n', ':']) {
        return Err(Unusable::Malformed(format!(
            "label {s:?} contains brackets or a colon"
        )));
    }
    for w in &words {
        let lw = w.to_lowercase();
        let lw = lw.trim_matches(|c: char| !c.is_alphanumeric());
        if BANNED_LABEL_WORDS
            .iter()
            .any(|b| lw == *b || lw == format!("{b}s"))
        {
            return Err(Unusable::Malformed(format!(
                "label {s:?} uses the banned word {w:?}"
            )));
        }
    }
    let inner = words.join(" ");
    Ok(Label {
        text: if negated {
            format!("not[{inner}]")
        } else {
            inner
        },
        negated,
    })
}

/// Parses a batched label reply (`CLUSTER_ID: label` per line) for the given ids: each id's
/// label or why it is unusable (missing line, invalid label).
pub fn parse_label_batch(text: &str, ids: &[String]) -> BTreeMap<String, Result<Label, Unusable>> {
    let mut found: BTreeMap<String, Result<Label, Unusable>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches(['-', '*']).trim();
        let Some((id, label)) = line.split_once(':') else {
            continue;
        };
        let id = id.trim().trim_matches('*').trim();
        let id = id.strip_prefix("Group ").unwrap_or(id).trim();
        if ids.iter().any(|i| i == id) && !found.contains_key(id) {
            found.insert(id.to_string(), validate_label(label));
        }
    }
    ids.iter()
        .map(|id| {
            let r = found
                .remove(id)
                .unwrap_or_else(|| Err(Unusable::Malformed(format!("no line for {id}"))));
            (id.clone(), r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_after_their_marker() {
        assert_eq!(
            parse_marked("[DESCRIPTION]: city names in Texas", "[DESCRIPTION]", None),
            Ok("city names in Texas".into())
        );
        assert_eq!(
            parse_marked(
                "Thinking...\n[DESCRIPTION]:\n\"the word capital\"\nmore",
                "[DESCRIPTION]",
                None
            ),
            Ok("the word capital".into())
        );
        assert_eq!(
            parse_marked("[EXPLANATION] promotes state names", "[EXPLANATION]", None),
            Ok("promotes state names".into())
        );
        assert_eq!(
            parse_marked("[DESCRIPTION]: the token \"Texas\"", "[DESCRIPTION]", None),
            Ok("the token \"Texas\"".into())
        );
        assert!(matches!(
            parse_marked("city names", "[DESCRIPTION]", None),
            Err(Unusable::Malformed(_))
        ));
        assert!(matches!(
            parse_marked("[DESCRIPTION]:   ", "[DESCRIPTION]", None),
            Err(Unusable::Malformed(_))
        ));
        let long = format!("[DESCRIPTION]: {}", "word ".repeat(100));
        assert!(matches!(
            parse_marked(&long, "[DESCRIPTION]", None),
            Err(Unusable::Malformed(_))
        ));
        assert!(matches!(
            parse_marked("I'm sorry, I can't help with that.", "[DESCRIPTION]", None),
            Err(Unusable::Refused(_))
        ));
        assert!(matches!(
            parse_marked("", "[DESCRIPTION]", Some("refusal")),
            Err(Unusable::Refused(_))
        ));
        assert!(matches!(
            parse_marked(
                "[DESCRIPTION]: I cannot describe this",
                "[DESCRIPTION]",
                None
            ),
            Err(Unusable::Refused(_))
        ));
    }

    #[test]
    fn filled_lines_by_index_with_offsets() {
        let text = "(0, 'The', 0)\n(2, ' is', 7)\n(1, ' capital', 10)\n(3, 'x', [blank])\n";
        let f = parse_indexed_fills(text);
        assert_eq!(f.len(), 3);
        assert_eq!(f[&0].1, 0);
        assert_eq!(f[&1].1, 10);
        assert_eq!(f[&2].1, 7);
        assert_eq!(&text[f[&2].0..f[&2].0 + 1], "7");
        assert_eq!(&text[f[&1].0..f[&1].0 + 2], "10");
        // A token containing a comma and a parenthesis.
        let f = parse_indexed_fills("(4, ',)', 3)\n");
        assert_eq!(f[&4].1, 3);
    }

    #[test]
    fn pair_fills_in_order() {
        let t = "[(' Austin', 9), (' Dallas', -3), (' the', [blank])]";
        let v = parse_pair_fills(t, 4);
        assert_eq!(v[0].map(|x| x.1), Some(9));
        assert_eq!(v[1].map(|x| x.1), Some(-3));
        assert_eq!(v[2], None);
        assert_eq!(v[3], None);
        assert_eq!(&t[v[1].unwrap().0..v[1].unwrap().0 + 2], "-3");
    }

    #[test]
    fn expected_value_over_score_tokens() {
        let top = vec![
            ("5".to_string(), (0.5f32).ln()),
            (" 7".to_string(), (0.25f32).ln()),
            ("x".to_string(), (0.25f32).ln()),
        ];
        let e = expected_from_top(&top, 0, 10).unwrap();
        assert!((e - (5.0 * 0.5 + 7.0 * 0.25) / 0.75).abs() < 1e-5);
        assert_eq!(expected_from_top(&top[2..], 0, 10), None);
        let out_of_range = vec![("11".to_string(), 0.0)];
        assert_eq!(expected_from_top(&out_of_range, 0, 10), None);
    }

    #[test]
    fn labels_are_validated() {
        assert_eq!(parse_label("Texas").unwrap().text, "Texas");
        assert_eq!(
            parse_label("Label: \"state names.\"").unwrap().text,
            "state names"
        );
        let n = parse_label("not[ Texas ]").unwrap();
        assert!(n.negated);
        assert_eq!(n.text, "not[Texas]");
        assert!(parse_label("capital city lookup").is_err());
        assert!(parse_label("Answers").is_err());
        assert!(parse_label("a very long label here").is_err());
        assert!(parse_label("").is_err());
        assert!(matches!(
            parse_label("I'm sorry, I can't."),
            Err(Unusable::Refused(_))
        ));
    }

    #[test]
    fn batch_labels_per_id() {
        let ids = vec!["C0".to_string(), "C1".to_string(), "C2".to_string()];
        let r = parse_label_batch(
            "Here you go:\nC0: Texas\n- **C1**: not[addition carry]\nC9: x\n",
            &ids,
        );
        assert_eq!(r["C0"].as_ref().unwrap().text, "Texas");
        assert_eq!(r["C1"].as_ref().unwrap().text, "not[addition carry]");
        assert!(r["C2"].is_err());
        assert_eq!(r.len(), 3);
    }
}
