//! A deterministic, offline rule-based explainer: it answers every prompt of this crate by
//! simple rules, so the whole pipeline (and `adag describe --backend rules`) runs without a
//! model server: for dry runs (see the prompts, the exemplars, the files) and for tests. Its
//! descriptions are "the token X" for the most often highlighted X (a highlight baseline), its
//! simulations mark the tokens its description names. It is not a language model: read nothing
//! about a cluster's meaning beyond that baseline from its output.

use std::collections::BTreeMap;

use adag_llm::{ChatReply, ChatRequest, LlmBackend, Role, Usage};

use crate::prompts;

/// The rule-based backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct RuleBackend;

/// Texts between `{{` and `}}`, in order.
fn highlighted(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(a) = rest.find("{{") {
        let Some(b) = rest[a..].find("}}") else { break };
        out.push(&rest[a + 2..a + b]);
        rest = &rest[a + b + 2..];
    }
    out
}

/// Python-style quoted strings of a text, in order (the tokens of the tuples).
fn quoted(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\'' || c == '"' {
            let mut t = String::new();
            while let Some(d) = it.next() {
                if d == '\\' {
                    if let Some(e) = it.next() {
                        t.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            e => e,
                        });
                    }
                } else if d == c {
                    break;
                } else {
                    t.push(d);
                }
            }
            out.push(t);
        }
    }
    out
}

fn description_of(user: &str) -> &str {
    user.lines()
        .find_map(|l| l.strip_prefix("Description: "))
        .unwrap_or("")
}

fn named_token(desc: &str) -> Option<String> {
    quoted(desc).into_iter().next()
}

fn answer(req: &ChatRequest) -> String {
    let system = req
        .messages
        .iter()
        .find(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    if system == prompts::INPUT_EXPLAINER_SYSTEM {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for h in highlighted(user) {
            *counts.entry(h).or_default() += 1;
        }
        let top = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(t, _)| t)
            .unwrap_or("nothing");
        return format!("[DESCRIPTION]: the token \"{top}\"");
    }
    if system == prompts::OUTPUT_EXPLAINER_SYSTEM {
        // Pairs ('tok', s): the continuation with the largest |s|.
        let mut best: Option<(String, i64)> = None;
        for line in user.lines().filter(|l| l.starts_with("Continuations: ")) {
            for part in line.split("), (") {
                let toks = quoted(part);
                let score = part
                    .trim_end_matches([')', ']'])
                    .rsplit(',')
                    .next()
                    .and_then(|v| v.trim().parse::<i64>().ok());
                if let (Some(t), Some(s)) = (toks.into_iter().next(), score) {
                    if best.as_ref().is_none_or(|b| s.abs() > b.1.abs()) {
                        best = Some((t, s));
                    }
                }
            }
        }
        return match best {
            Some((t, s)) if s < 0 => format!("[EXPLANATION]: suppresses \"{}\"", t.trim()),
            Some((t, _)) => format!("[EXPLANATION]: promotes \"{}\"", t.trim()),
            None => "[EXPLANATION]: no effect".into(),
        };
    }
    if system == prompts::INPUT_SIMULATOR_SYSTEM {
        let name = named_token(description_of(user)).unwrap_or_default();
        let mut out = String::new();
        for line in user
            .lines()
            .filter(|l| l.starts_with('(') && l.ends_with("[blank])"))
        {
            let tok = quoted(line).into_iter().next().unwrap_or_default();
            let hit = !name.is_empty() && tok.trim() == name.trim();
            out.push_str(&line.replace("[blank]", if hit { "10" } else { "0" }));
            out.push('\n');
        }
        return out;
    }
    if system == prompts::OUTPUT_SIMULATOR_SYSTEM {
        let desc = description_of(user);
        let name = named_token(desc).unwrap_or_default();
        let value = if desc.starts_with("suppresses") {
            "-10"
        } else {
            "10"
        };
        let line = user
            .lines()
            .find(|l| l.starts_with("Continuations: "))
            .unwrap_or("");
        let parts: Vec<String> = line
            .trim_start_matches("Continuations: [")
            .trim_end_matches(']')
            .split("), (")
            .map(|p| {
                let tok = quoted(p).into_iter().next().unwrap_or_default();
                let v = if !name.is_empty() && tok.trim() == name.trim() {
                    value
                } else {
                    "0"
                };
                format!("({}, {v})", prompts::py_repr(&tok))
            })
            .collect();
        return format!("[{}]", parts.join(", "));
    }
    if system == prompts::label_system() {
        let mut lines = Vec::new();
        let mut current: Option<&str> = None;
        for l in user.lines() {
            if let Some(id) = l.strip_prefix("Group ") {
                current = Some(id.trim());
            }
            if let (Some(id), Some(rest)) = (current, l.strip_prefix("Input side: ")) {
                let word = named_token(rest).unwrap_or_else(|| "unknown".into());
                let word = word.trim().to_string();
                lines.push((id.to_string(), word));
            }
            if let (Some(id), Some(eff)) = (current, l.strip_prefix("Effect on the prediction: ")) {
                if eff == "inhibitory" {
                    if let Some(last) = lines.iter_mut().rev().find(|x| x.0 == id) {
                        last.1 = format!("not[{}]", last.1);
                    }
                }
            }
        }
        if lines.len() == 1 {
            return lines.remove(0).1;
        }
        return lines
            .into_iter()
            .map(|(id, w)| format!("{id}: {w}\n"))
            .collect();
    }
    "[DESCRIPTION]: unknown".into()
}

impl LlmBackend for RuleBackend {
    fn describe(&self) -> String {
        "rules (offline rule-based explainer: the most highlighted token)".into()
    }

    fn supports_logprobs(&self) -> bool {
        false
    }

    fn chat(&self, req: &ChatRequest) -> adag_llm::Result<ChatReply> {
        let text = answer(req);
        let input: usize = req.messages.iter().map(|m| m.content.len()).sum();
        Ok(ChatReply {
            usage: Usage {
                input_tokens: input.div_ceil(4) as u64,
                output_tokens: text.len().div_ceil(4) as u64,
            },
            text,
            logprobs: Vec::new(),
            finish_reason: Some("stop".into()),
            cached: false,
        })
    }
}
