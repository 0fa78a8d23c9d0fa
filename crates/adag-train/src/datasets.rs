//! The demo model's datasets for `adag trace` (`fixtures/datasets/demo-*.jsonl`).
//!
//! Why here: the prompts must be ones the demo model was *not* trained on, in the exact wording
//! of its corpus, so a circuit traced on them is a computation rather than a memorised sentence.
//! Building them from [`corpus`]'s held-out rules (instead of writing them by hand) keeps them
//! in step with the model: a test regenerates the files and compares them with the committed
//! ones (`ADAG_UPDATE_FIXTURES=1` rewrites them).
//!
//! Each item gives `answers` (the correct first token), so a trace explains the right answer
//! even where the model is unsure, and a `label` that groups the prompts for `adag correlate`
//! and for reading the circuits: the state (two-hop), whether the units digits carry
//! (addition), the subject's number (agreement).

use std::path::Path;

use crate::corpus::{eval_items, two_hop_held_out, Task, STATES};

/// One dataset line: the fields of `adag_circuit::DatasetItem` the demo sets use, prompt first
/// (a JSON map would sort the keys, burying the prompt at the end of each line).
fn line(prompt: &str, label: &str, answer: &str) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"prompt\":{},\"label\":{},\"answers\":[{}]}}",
        q(prompt),
        q(label),
        q(answer)
    )
}

/// `(file name, JSONL text)` of the three demo datasets, in a fixed order.
pub fn demo_datasets() -> Vec<(&'static str, String)> {
    // Two-hop recall on the 28 cities held out of two-hop sentences (Dallas among them).
    let mut capitals = String::new();
    for (s, (state, capital, cities)) in STATES.iter().enumerate() {
        for (c, city) in cities.iter().enumerate() {
            if two_hop_held_out(s, c) {
                let prompt = format!("The capital of the state containing {city} is");
                capitals += &line(&prompt, state, &format!(" {capital}"));
                capitals.push('\n');
            }
        }
    }
    let items = eval_items();
    // Every 8th held-out addition pair (47 of 373); the first answer token is the sum's first
    // digit (digits are single tokens).
    let mut addition = String::new();
    let sums = items.iter().filter(|i| i.task == Task::Addition);
    for item in sums.step_by(8) {
        let (a, b) = item.prompt.trim_end_matches('=').split_once('+').unwrap();
        let units = a.as_bytes()[1] - b'0' + b.as_bytes()[1] - b'0';
        let label = if units >= 10 { "carry" } else { "no-carry" };
        addition += &line(&item.prompt, label, &item.answer[..1]);
        addition.push('\n');
    }
    // Agreement across an opposite-number distractor, held-out subjects: one distractor per
    // (subject, preposition) and both numbers (72 of the 144 evaluation prompts).
    let mut agreement = String::new();
    let attraction = items.iter().filter(|i| i.task == Task::Agreement);
    for (n, item) in attraction.enumerate().filter(|(n, _)| (n / 2) % 2 == 0) {
        let label = if n % 2 == 0 { "singular" } else { "plural" };
        agreement += &line(&item.prompt, label, &item.answer);
        agreement.push('\n');
    }
    vec![
        ("demo-capitals.jsonl", capitals),
        ("demo-addition.jsonl", addition),
        ("demo-agreement.jsonl", agreement),
    ]
}

/// Writes [`demo_datasets`] into `dir`.
pub fn write_demo_datasets(dir: &Path) -> crate::Result<()> {
    for (name, text) in demo_datasets() {
        crate::io::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/datasets")
    }

    /// The committed files are exactly what the held-out rules give (rewrite them with
    /// `ADAG_UPDATE_FIXTURES=1 cargo test -p adag-train -- demo_datasets`).
    #[test]
    fn demo_datasets_match_the_committed_fixtures() {
        if std::env::var_os("ADAG_UPDATE_FIXTURES").is_some() {
            write_demo_datasets(&fixtures()).unwrap();
        }
        for (name, text) in demo_datasets() {
            let path = fixtures().join(name);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(committed, text, "{name} is stale");
        }
    }

    #[test]
    fn demo_datasets_hold_the_documented_prompts() {
        let sets = demo_datasets();
        let rows = |i: usize| -> Vec<serde_json::Value> {
            sets[i]
                .1
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let capitals = rows(0);
        assert_eq!(capitals.len(), 28);
        assert_eq!(
            capitals[0],
            serde_json::json!({"prompt": "The capital of the state containing Dallas is",
                "label": "Texas", "answers": [" Austin"]})
        );
        let addition = rows(1);
        assert_eq!(addition.len(), 47);
        for r in &addition {
            let p = r["prompt"].as_str().unwrap();
            let (a, b) = p.trim_end_matches('=').split_once('+').unwrap();
            let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
            assert!(crate::corpus::addition_held_out(a, b), "{p}");
            let first = (a + b).to_string()[..1].to_string();
            assert_eq!(r["answers"][0], first.as_str(), "{p}");
            let carry = a % 10 + b % 10 >= 10;
            assert_eq!(r["label"] == "carry", carry, "{p}");
        }
        let agreement = rows(2);
        assert_eq!(agreement.len(), 72);
        for r in &agreement {
            let p = r["prompt"].as_str().unwrap();
            let subject = p.split(' ').nth(1).unwrap();
            let plural = crate::corpus::NOUNS.iter().any(|(_, pl)| *pl == subject);
            assert_eq!(r["label"] == "plural", plural, "{p}");
            assert_eq!(r["answers"][0], if plural { " are" } else { " is" }, "{p}");
        }
    }
}
