//! Every prompt text the pipeline sends, in one place so that tests can pin them exactly
//! (reference §6 and §7; the wording is adag's own, the structure the reference's).

use adag_llm::Message;

/// System prompt of the input-side explainer. The structure follows the reference's
/// finetuned-explainer prompt: marked tokens, "only depends on words before", one line
/// answered after `[DESCRIPTION]:`.
pub const INPUT_EXPLAINER_SYSTEM: &str = "You are a meticulous AI researcher investigating a \
group of neurons inside a language model. You will see excerpts of text. In each excerpt, the \
tokens that most strongly drive the group's activity are marked like {{this}}; unmarked text \
drives it little or not at all. The group's activity at a token only depends on the words \
before it and the token itself, never on what follows. Find what the marked tokens have in \
common, looking at the marked words and at the context just before them, and describe it in \
a short phrase that would let someone predict which tokens of a new text get marked. Be \
specific; do not mention the markers. Answer with one line: [DESCRIPTION]: <your description>";

/// System prompt of the output-side explainer (the reference's contrib "minibatch" format).
pub const OUTPUT_EXPLAINER_SYSTEM: &str = "You are a meticulous AI researcher investigating a \
group of neurons inside a language model. For each prompt below you see possible continuations \
(next tokens) with a score from -10 to 10: how strongly the group pushes the model towards \
that continuation (positive: promotes it; negative: suppresses it; 0: no effect). Describe in \
one short phrase what the group does to the model's prediction, e.g. which kind of \
continuation it promotes or suppresses. Be specific. Answer with one line: \
[EXPLANATION]: <your explanation>";

/// Prefix of the in-process simulator's input; the record's tokens follow it directly
/// (the reference's finetuned-simulator format).
pub fn simulator_prefix(explanation: &str) -> String {
    format!("## Neuron Description: {explanation}\n\n ## Input: ")
}

/// A string as a Python literal, the way the reference prints tokens in its tuples.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::new();
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The input-side explainer conversation: one user message of `Excerpt {i}:{text}\n` lines.
pub fn input_explainer(excerpts: &[String]) -> Vec<Message> {
    let body: String = excerpts
        .iter()
        .enumerate()
        .map(|(i, t)| format!("Excerpt {}:{t}\n", i + 1))
        .collect();
    vec![Message::system(INPUT_EXPLAINER_SYSTEM), Message::user(body)]
}

/// One output-side item: the prompt text and its `(continuation, score)` pairs.
pub fn output_item(i: usize, prompt: &str, continuations: &[(String, i32)]) -> String {
    let pairs: Vec<String> = continuations
        .iter()
        .map(|(t, s)| format!("({}, {s})", py_repr(t)))
        .collect();
    format!(
        "{i}:\nPrompt: {}\nContinuations: [{}]\n",
        py_repr(prompt),
        pairs.join(", ")
    )
}

/// The output-side explainer conversation.
pub fn output_explainer(items: &[(String, Vec<(String, i32)>)]) -> Vec<Message> {
    let body: String = items
        .iter()
        .enumerate()
        .map(|(i, (p, c))| output_item(i + 1, p, c))
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        Message::system(OUTPUT_EXPLAINER_SYSTEM),
        Message::user(body),
    ]
}

/// System prompt of the chat simulator, input side.
pub const INPUT_SIMULATOR_SYSTEM: &str = "You predict the activity of a group of neurons in a \
language model from a description of what drives it. You get the description and a text split \
into tokens, one per line as (index, 'token', [blank]). Replace every [blank] with an integer \
from 0 (no activity) to 10 (strongest activity) for that token; the activity at a token only \
depends on the tokens up to it. Answer with exactly the same lines, blanks filled, and nothing \
else.";

/// The chat simulator's input-side conversation for one record.
pub fn input_simulator(explanation: &str, tokens: &[String]) -> Vec<Message> {
    input_simulator_many(explanation, &[tokens])
}

/// The chat simulator's input-side conversation for several records: tokens numbered on
/// across records, each record after an `Excerpt {k}:` line (one record: no header).
pub fn input_simulator_many(explanation: &str, records: &[&[String]]) -> Vec<Message> {
    let mut lines = String::new();
    let mut i = 0;
    for (k, tokens) in records.iter().enumerate() {
        if records.len() > 1 {
            lines.push_str(&format!("Excerpt {}:\n", k + 1));
        }
        for t in tokens.iter() {
            lines.push_str(&format!("({i}, {}, [blank])\n", py_repr(t)));
            i += 1;
        }
    }
    vec![
        Message::system(INPUT_SIMULATOR_SYSTEM),
        Message::user(format!("Description: {explanation}\n\nTokens:\n{lines}")),
    ]
}

/// System prompt of the chat simulator, output side.
pub const OUTPUT_SIMULATOR_SYSTEM: &str = "You predict what a group of neurons in a language \
model does to the model's next-token prediction, from a description of it. You get the \
description, a prompt and candidate continuations as ('token', [blank]). Replace every [blank] \
with an integer from -10 (strongly suppresses that continuation) to 10 (strongly promotes it). \
Answer with exactly the same list, blanks filled, and nothing else.";

/// The chat simulator's output-side conversation for one record.
pub fn output_simulator(explanation: &str, prompt: &str, continuations: &[String]) -> Vec<Message> {
    let pairs: Vec<String> = continuations
        .iter()
        .map(|t| format!("({}, [blank])", py_repr(t)))
        .collect();
    vec![
        Message::system(OUTPUT_SIMULATOR_SYSTEM),
        Message::user(format!(
            "Description: {explanation}\n\nPrompt: {}\nContinuations: [{}]",
            py_repr(prompt),
            pairs.join(", ")
        )),
    ]
}

/// Words a label may not contain (reference §7): they describe every cluster and so none.
pub const BANNED_LABEL_WORDS: [&str; 7] = [
    "focus",
    "answer",
    "response",
    "promotion",
    "lookup",
    "recall",
    "mapping",
];

/// System prompt of the labeller (both modes).
pub fn label_system() -> String {
    format!(
        "You name groups of neurons in a language model. For each group you get a description \
of what drives it (input side), a description of what it does to the model's prediction \
(output side), and prompts where it matters most. Give it a label of 1 to 3 words. Rules:\n\
- lowercase, except proper nouns;\n\
- be specific: name the concept, token or operation, not a generic role;\n\
- never use these words: {};\n\
- if the group is inhibitory (it suppresses the prediction), write the label as not[label];\n\
- an input side starting with \"{}\" names what suppresses the group, not what drives it.\n\
Example: a group that reads the city Dallas and promotes the state it is in, on prompts such \
as \"The capital of the state containing Dallas is\", is labelled: Texas",
        BANNED_LABEL_WORDS.join(", "),
        crate::describe::NEG_MARKER.trim_end()
    )
}

/// What the labeller knows about one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelInput {
    /// Cluster id.
    pub id: String,
    /// Best input-side description, if any.
    pub input: Option<String>,
    /// Best output-side description, if any.
    pub output: Option<String>,
    /// Whether the cluster's summed attribution is negative.
    pub inhibitory: bool,
    /// Up to 10 `prompt → label` lines where the cluster's Σ|attribution| is largest.
    pub top_prompts: Vec<String>,
    /// Rich mode: the cluster's top units with their own exemplars ([`crate::rich`]); empty
    /// otherwise.
    pub units: Vec<crate::rich::UnitContext>,
}

fn label_block(c: &LabelInput) -> String {
    let none = "(none)".to_string();
    let mut s = format!(
        "Input side: {}\nOutput side: {}\nEffect on the prediction: {}\n",
        c.input.as_ref().unwrap_or(&none),
        c.output.as_ref().unwrap_or(&none),
        if c.inhibitory {
            "inhibitory"
        } else {
            "excitatory"
        }
    );
    if !c.top_prompts.is_empty() {
        s.push_str("Top prompts:\n");
        for p in &c.top_prompts {
            s.push_str(&format!("- {p}\n"));
        }
    }
    if !c.units.is_empty() {
        s.push_str(
            "Top units of the group (most attribution first, [mean attribution]), each with the \
             corpus contexts where it fires most (peak tokens in {{…}}):\n",
        );
        for u in &c.units {
            s.push_str(&format!("- {} [{:+.4}]", u.name(), u.mean_attribution));
            if let Some(d) = &u.description {
                s.push_str(&format!(": {d}"));
            }
            s.push('\n');
            for e in &u.excerpts {
                s.push_str(&format!("    · {}\n", e.trim()));
            }
        }
    }
    s
}

/// The per-cluster label conversation; the answer is the label alone.
pub fn label_one(c: &LabelInput) -> Vec<Message> {
    vec![
        Message::system(label_system()),
        Message::user(format!(
            "Group {}\n{}\nAnswer with the label only.",
            c.id,
            label_block(c)
        )),
    ]
}

/// The batched label conversation: every cluster, answered one `CLUSTER_ID: label` per line.
pub fn label_batch(cs: &[LabelInput]) -> Vec<Message> {
    let blocks: Vec<String> = cs
        .iter()
        .map(|c| format!("Group {}\n{}", c.id, label_block(c)))
        .collect();
    vec![
        Message::system(label_system()),
        Message::user(format!(
            "{}\nAnswer with one line per group, `GROUP_ID: label`, for example `{}: Texas`.",
            blocks.join("\n"),
            cs.first().map(|c| c.id.as_str()).unwrap_or("C0")
        )),
    ]
}
