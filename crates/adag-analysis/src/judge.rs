//! Judges of steered continuations: did a sample show the behaviour being measured?
//!
//! ADAG's sensitivity scripts ask an LLM (Claude Haiku) a yes/no question about each sampled
//! continuation and report `ASR = yes / (yes + no)`. A judge here is either
//! - a **rule** (`contains:TEXT`, `regex:PATTERN`, or `answer`: the continuation starts with
//!   one of the prompt's given answers; each optionally negated with `not-`): offline,
//!   deterministic, for tasks whose success is a visible string (the demo's capitals);
//! - an **LLM with a rubric** ([`LlmJudge`]): any chat backend (the CLI passes adag-llm's
//!   backends, `adag serve-llm` included) answers `yes` or `no` on its first line and a reason
//!   after it. A reply that starts with neither is *unclear*, kept with its text and counted
//!   apart, never silently read as a no (the reference counts incoherent replies separately).
//!
//! The LLM judge takes the chat call as a closure so that this crate does not depend on the
//! HTTP stack; the CLI wraps an `adag_llm::Llm` (cache, retries) in it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `Some(true)`: the behaviour is there; `Some(false)`: it is not; `None`: the judge's
    /// reply could not be read as yes or no.
    pub success: Option<bool>,
    /// Why: the rule that matched or not, or the LLM's reason (its whole reply when unclear).
    pub reason: String,
}

/// Decides whether a continuation of a prompt shows the behaviour.
pub trait Judge {
    /// What the judge is, for reports (`contains:" Austin"`, `llm: …`).
    fn describe(&self) -> String;
    /// Judges `continuation`, generated after `prompt` whose given answers (prompts.parquet's
    /// `answers`, possibly none) are `answers`.
    fn judge(&self, prompt: &str, answers: &[String], continuation: &str) -> Result<Verdict>;
}

/// An offline judge: a literal substring or a regular expression, optionally negated.
#[derive(Debug, Clone)]
pub struct RuleJudge {
    spec: String,
    matcher: Matcher,
    negate: bool,
}

#[derive(Debug, Clone)]
enum Matcher {
    Contains(String),
    Regex(regex::Regex),
    /// Starts with one of the prompt's given answers (leading whitespace of both ignored).
    Answer,
}

impl std::str::FromStr for RuleJudge {
    type Err = Error;

    /// `contains:TEXT`, `regex:PATTERN`, `not-contains:TEXT` or `not-regex:PATTERN`.
    fn from_str(spec: &str) -> Result<Self> {
        let (negate, rest) = match spec.strip_prefix("not-") {
            Some(r) => (true, r),
            None => (false, spec),
        };
        let matcher = if rest == "answer" {
            Matcher::Answer
        } else if let Some(t) = rest.strip_prefix("contains:") {
            if t.is_empty() {
                return Err(Error::Input(format!(
                    "judge {spec:?}: contains: needs a non-empty text"
                )));
            }
            Matcher::Contains(t.to_string())
        } else if let Some(p) = rest.strip_prefix("regex:") {
            Matcher::Regex(
                regex::Regex::new(p)
                    .map_err(|e| Error::Input(format!("judge {spec:?}: bad regex: {e}")))?,
            )
        } else {
            return Err(Error::Input(format!(
                "judge {spec:?}: expected answer, contains:TEXT, regex:PATTERN (optionally \
                 prefixed with not-) or llm:BACKEND"
            )));
        };
        Ok(RuleJudge {
            spec: spec.to_string(),
            matcher,
            negate,
        })
    }
}

impl Judge for RuleJudge {
    fn describe(&self) -> String {
        format!("rule {}", self.spec)
    }

    fn judge(&self, _prompt: &str, answers: &[String], continuation: &str) -> Result<Verdict> {
        let (hit, what) = match &self.matcher {
            Matcher::Answer => {
                if answers.is_empty() {
                    return Err(Error::Input(format!(
                        "judge {:?}: the prompt has no given answers (prompts.parquet `answers` \
                         is empty); use contains:, regex: or llm:",
                        self.spec
                    )));
                }
                let c = continuation.trim_start();
                let hit = answers
                    .iter()
                    .any(|a| !a.trim().is_empty() && c.starts_with(a.trim_start()));
                (hit, format!("the answers {answers:?}"))
            }
            Matcher::Contains(t) => (continuation.contains(t.as_str()), format!("{t:?}")),
            Matcher::Regex(r) => (r.is_match(continuation), format!("/{}/", r.as_str())),
        };
        Ok(Verdict {
            success: Some(hit != self.negate),
            reason: format!("{} {what}", if hit { "matches" } else { "no match for" }),
        })
    }
}

/// The rubric used when none is given: the reference's ASR question is task-specific, so the
/// default only asks whether the continuation does what the rubric file would say.
pub const DEFAULT_RUBRIC: &str = "Does the continuation state the correct answer to the prompt?";

/// System prompt of the LLM judge.
const JUDGE_SYSTEM: &str = "You are a strict evaluator of text written by a language model. \
You are given a prompt, a continuation the model wrote after it, and a yes/no question about \
the continuation. Answer on the first line with exactly `yes` or `no`. On the second line, give \
a one-sentence reason.";

/// The user message sent to the LLM judge for one continuation; the prompt's given answers,
/// when it has any, are shown as the expected answer.
pub fn judge_message(rubric: &str, prompt: &str, answers: &[String], continuation: &str) -> String {
    let expected = if answers.is_empty() {
        String::new()
    } else {
        format!("Expected answer: {}\n\n", answers.join(" or "))
    };
    format!(
        "Prompt:\n{prompt}\n\n{expected}Continuation:\n{continuation}\n\nQuestion: {rubric}\n\
         Answer `yes` or `no` on the first line, then the reason."
    )
}

/// Reads a judge's reply: the first word of its first non-empty line (markdown and
/// punctuation stripped, any case) is `yes` or `no`; the rest is the reason. Anything else is
/// unclear, with the whole reply as the reason.
pub fn parse_verdict(reply: &str) -> Verdict {
    let trimmed = reply.trim();
    let first_line = trimmed.lines().next().unwrap_or("");
    let word: String = first_line
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    let success = match word.as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    };
    let reason = match success {
        Some(_) => {
            // After the verdict word: the rest of the first line, then the following lines.
            let after_word = first_line
                .trim_start_matches(|c: char| !c.is_alphanumeric())
                .get(word.len()..)
                .unwrap_or("")
                .trim_start_matches(|c: char| !c.is_alphanumeric())
                .trim();
            let rest = trimmed.lines().skip(1).collect::<Vec<_>>().join(" ");
            [after_word, rest.trim()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        }
        None => trimmed.to_string(),
    };
    Verdict { success, reason }
}

/// A chat call: (system prompt, user message) → reply text, or an error message.
pub type Ask<'a> = dyn Fn(&str, &str) -> std::result::Result<String, String> + 'a;

/// An LLM judge with a rubric question.
pub struct LlmJudge<'a> {
    rubric: String,
    name: String,
    ask: Box<Ask<'a>>,
}

impl<'a> LlmJudge<'a> {
    /// A judge asking `rubric` of each continuation through `ask`; `name` describes the
    /// backend in reports.
    pub fn new(
        rubric: impl Into<String>,
        name: impl Into<String>,
        ask: impl Fn(&str, &str) -> std::result::Result<String, String> + 'a,
    ) -> Self {
        LlmJudge {
            rubric: rubric.into(),
            name: name.into(),
            ask: Box::new(ask),
        }
    }
}

impl Judge for LlmJudge<'_> {
    fn describe(&self) -> String {
        format!("llm {} ({:?})", self.name, self.rubric)
    }

    fn judge(&self, prompt: &str, answers: &[String], continuation: &str) -> Result<Verdict> {
        let message = judge_message(&self.rubric, prompt, answers, continuation);
        let reply = (self.ask)(JUDGE_SYSTEM, &message)
            .map_err(|e| Error::Input(format!("judge {}: {e}", self.name)))?;
        Ok(parse_verdict(&reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read_from_the_first_word() {
        let v = parse_verdict("**Yes.** It names Austin.\n");
        assert_eq!(v.success, Some(true));
        assert_eq!(v.reason, "It names Austin.");
        let v = parse_verdict("no\nThe continuation names Texas, not its capital.");
        assert_eq!(v.success, Some(false));
        assert_eq!(v.reason, "The continuation names Texas, not its capital.");
        // "Nope" or "Yesterday" are not verdicts: unclear, with the whole reply kept.
        for reply in ["Nope, not at all", "Yesterday it said Austin", "", "Maybe."] {
            let v = parse_verdict(reply);
            assert_eq!(v.success, None, "{reply:?}");
            assert_eq!(v.reason, reply.trim());
        }
    }

    #[test]
    fn rules_match_and_negate() {
        let none: &[String] = &[];
        let c: RuleJudge = "contains: Austin".parse().unwrap();
        assert_eq!(
            c.judge("p", none, " Austin is").unwrap().success,
            Some(true)
        );
        assert_eq!(c.judge("p", none, " Texas").unwrap().success, Some(false));
        let n: RuleJudge = "not-regex:^\\s*Tex".parse().unwrap();
        assert_eq!(n.judge("p", none, " Texas").unwrap().success, Some(false));
        assert_eq!(n.judge("p", none, " Austin").unwrap().success, Some(true));
        let a: RuleJudge = "answer".parse().unwrap();
        let austin = [" Austin".to_string()];
        assert_eq!(
            a.judge("p", &austin, " Austin.").unwrap().success,
            Some(true)
        );
        // Containing the answer later is not giving it.
        let later = a.judge("p", &austin, " Texas, not Austin").unwrap();
        assert_eq!(later.success, Some(false));
        let e = a.judge("p", none, " Austin").unwrap_err().to_string();
        assert!(e.contains("the prompt has no given answers"), "{e}");
        let e = "regex:(".parse::<RuleJudge>().unwrap_err().to_string();
        assert!(e.starts_with("judge \"regex:(\": bad regex"), "{e}");
        let e = "startswith:x".parse::<RuleJudge>().unwrap_err().to_string();
        assert!(
            e.contains("expected answer, contains:TEXT, regex:PATTERN"),
            "{e}"
        );
    }
}
