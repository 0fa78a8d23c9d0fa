//! Prompt preparation on the fixture tokenizers: chat template + seed handling.
//!
//! Expected tokens were produced with HF transformers (`AutoTokenizer.apply_chat_template`
//! on `fixtures/models/{llama,qwen3}`) following the reference's `prepare_ci`: render
//! `[system?, user, assistant(seed)]`, cut at the last eos when there is a seed, append the
//! tokenizer's space token when the seed ends in a space; the plain path encodes
//! `prompt + " " + seed` with special tokens.

use std::path::PathBuf;

use adag_circuit::dataset::DatasetItem;
use adag_circuit::prepare::{prepare, PromptOptions};
use adag_model::ModelTokenizer;

fn tok(name: &str) -> ModelTokenizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name);
    ModelTokenizer::from_dir(&dir).unwrap()
}

const Q: &str = "What is the capital of Texas?";

fn item(seed: Option<&str>) -> DatasetItem {
    DatasetItem {
        prompt: Q.into(),
        seed: seed.map(String::from),
        ..Default::default()
    }
}

fn chat() -> PromptOptions {
    PromptOptions {
        use_chat_format: true,
        ..Default::default()
    }
}

fn plain() -> PromptOptions {
    PromptOptions::default()
}

fn check(t: &ModelTokenizer, seed: Option<&str>, opts: &PromptOptions, ids: &[u32], strs: &[&str]) {
    let p = prepare(t, &item(seed), 0, None, opts).unwrap();
    assert_eq!(p.token_strings, strs, "seed {seed:?}");
    assert_eq!(p.tokens, ids, "seed {seed:?}");
    assert_eq!(p.traced_position() as usize, ids.len() - 1);
}

const LLAMA_SEED: &[u32] = &[
    0, 2, 89, 87, 73, 86, 3, 203, 203, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56,
    73, 92, 272, 35, 4, 2, 272, 87, 275, 88, 69, 82, 88, 3, 203, 203, 37, 82, 87, 91, 73, 86, 30,
];
const LLAMA_SEED_STR: &[&str] = &[
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "u",
    "s",
    "e",
    "r",
    "<|end_header_id|>",
    "\n",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|eot_id|>",
    "<|start_header_id|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "<|end_header_id|>",
    "\n",
    "\n",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
];
const LLAMA_SEED_SPACE: &[u32] = &[
    0, 2, 89, 87, 73, 86, 3, 203, 203, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56,
    73, 92, 272, 35, 4, 2, 272, 87, 275, 88, 69, 82, 88, 3, 203, 203, 37, 82, 87, 91, 73, 86, 30,
    225,
];
const LLAMA_SEED_SPACE_STR: &[&str] = &[
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "u",
    "s",
    "e",
    "r",
    "<|end_header_id|>",
    "\n",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|eot_id|>",
    "<|start_header_id|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "<|end_header_id|>",
    "\n",
    "\n",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
    " ",
];
const LLAMA_EMPTY: &[u32] = &[
    0, 2, 89, 87, 73, 86, 3, 203, 203, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56,
    73, 92, 272, 35, 4, 2, 272, 87, 275, 88, 69, 82, 88, 3, 203, 203,
];
const LLAMA_EMPTY_STR: &[&str] = &[
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "u",
    "s",
    "e",
    "r",
    "<|end_header_id|>",
    "\n",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|eot_id|>",
    "<|start_header_id|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "<|end_header_id|>",
    "\n",
    "\n",
];
const LLAMA_NONE: &[u32] = &[
    0, 2, 89, 87, 73, 86, 3, 203, 203, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56,
    73, 92, 272, 35, 4, 2, 272, 87, 275, 88, 69, 82, 88, 3, 203, 203,
];
const LLAMA_NONE_STR: &[&str] = &[
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "u",
    "s",
    "e",
    "r",
    "<|end_header_id|>",
    "\n",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|eot_id|>",
    "<|start_header_id|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "<|end_header_id|>",
    "\n",
    "\n",
];
const LLAMA_SYSTEM: &[u32] = &[
    0, 2, 87, 93, 293, 73, 81, 3, 203, 203, 38, 73, 225, 70, 86, 77, 73, 74, 18, 4, 2, 89, 87, 73,
    86, 3, 203, 203, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56, 73, 92, 272, 35,
    4, 2, 272, 87, 275, 88, 69, 82, 88, 3, 203, 203, 37, 82, 87, 91, 73, 86, 30,
];
const LLAMA_SYSTEM_STR: &[&str] = &[
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "s",
    "y",
    "st",
    "e",
    "m",
    "<|end_header_id|>",
    "\n",
    "\n",
    "B",
    "e",
    " ",
    "b",
    "r",
    "i",
    "e",
    "f",
    ".",
    "<|eot_id|>",
    "<|start_header_id|>",
    "u",
    "s",
    "e",
    "r",
    "<|end_header_id|>",
    "\n",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|eot_id|>",
    "<|start_header_id|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "<|end_header_id|>",
    "\n",
    "\n",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
];
const LLAMA_PLAIN_SEED: &[u32] = &[
    0, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56, 73, 92, 272, 35, 225, 37, 82,
    87, 91, 73, 86, 30,
];
const LLAMA_PLAIN_SEED_STR: &[&str] = &[
    "<|begin_of_text|>",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    " ",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
];
const LLAMA_PLAIN_SPACE: &[u32] = &[
    0, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56, 73, 92, 272, 35, 225, 37, 82,
    87, 91, 73, 86, 30, 225,
];
const LLAMA_PLAIN_SPACE_STR: &[&str] = &[
    "<|begin_of_text|>",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    " ",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
    " ",
];
const LLAMA_PLAIN_NONE: &[u32] = &[
    0, 59, 76, 273, 299, 281, 282, 84, 265, 271, 279, 74, 225, 56, 73, 92, 272, 35,
];
const LLAMA_PLAIN_NONE_STR: &[&str] = &[
    "<|begin_of_text|>",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
];
const QWEN3_SEED: &[u32] = &[
    1, 85, 91, 291, 71, 79, 201, 59, 81, 87, 305, 261, 223, 262, 78, 82, 72, 87, 78, 261, 85, 85,
    273, 86, 67, 80, 86, 16, 2, 201, 1, 87, 85, 71, 84, 201, 57, 74, 271, 297, 279, 280, 82, 263,
    269, 277, 72, 223, 54, 71, 90, 270, 33, 2, 201, 1, 270, 85, 273, 86, 67, 80, 86, 201, 35, 80,
    85, 89, 71, 84, 28,
];
const QWEN3_SEED_STR: &[&str] = &[
    "<|im_start|>",
    "s",
    "y",
    "st",
    "e",
    "m",
    "\n",
    "Y",
    "o",
    "u",
    " are",
    " a",
    " ",
    "he",
    "l",
    "p",
    "f",
    "u",
    "l",
    " a",
    "s",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    ".",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "u",
    "s",
    "e",
    "r",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "\n",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
];
const QWEN3_SEED_SPACE: &[u32] = &[
    1, 85, 91, 291, 71, 79, 201, 59, 81, 87, 305, 261, 223, 262, 78, 82, 72, 87, 78, 261, 85, 85,
    273, 86, 67, 80, 86, 16, 2, 201, 1, 87, 85, 71, 84, 201, 57, 74, 271, 297, 279, 280, 82, 263,
    269, 277, 72, 223, 54, 71, 90, 270, 33, 2, 201, 1, 270, 85, 273, 86, 67, 80, 86, 201, 35, 80,
    85, 89, 71, 84, 28, 223,
];
const QWEN3_SEED_SPACE_STR: &[&str] = &[
    "<|im_start|>",
    "s",
    "y",
    "st",
    "e",
    "m",
    "\n",
    "Y",
    "o",
    "u",
    " are",
    " a",
    " ",
    "he",
    "l",
    "p",
    "f",
    "u",
    "l",
    " a",
    "s",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    ".",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "u",
    "s",
    "e",
    "r",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "\n",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
    " ",
];
const QWEN3_EMPTY: &[u32] = &[
    1, 85, 91, 291, 71, 79, 201, 59, 81, 87, 305, 261, 223, 262, 78, 82, 72, 87, 78, 261, 85, 85,
    273, 86, 67, 80, 86, 16, 2, 201, 1, 87, 85, 71, 84, 201, 57, 74, 271, 297, 279, 280, 82, 263,
    269, 277, 72, 223, 54, 71, 90, 270, 33, 2, 201, 1, 270, 85, 273, 86, 67, 80, 86, 201,
];
const QWEN3_EMPTY_STR: &[&str] = &[
    "<|im_start|>",
    "s",
    "y",
    "st",
    "e",
    "m",
    "\n",
    "Y",
    "o",
    "u",
    " are",
    " a",
    " ",
    "he",
    "l",
    "p",
    "f",
    "u",
    "l",
    " a",
    "s",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    ".",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "u",
    "s",
    "e",
    "r",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "\n",
];
const QWEN3_NONE: &[u32] = &[
    1, 85, 91, 291, 71, 79, 201, 59, 81, 87, 305, 261, 223, 262, 78, 82, 72, 87, 78, 261, 85, 85,
    273, 86, 67, 80, 86, 16, 2, 201, 1, 87, 85, 71, 84, 201, 57, 74, 271, 297, 279, 280, 82, 263,
    269, 277, 72, 223, 54, 71, 90, 270, 33, 2, 201, 1, 270, 85, 273, 86, 67, 80, 86, 201,
];
const QWEN3_NONE_STR: &[&str] = &[
    "<|im_start|>",
    "s",
    "y",
    "st",
    "e",
    "m",
    "\n",
    "Y",
    "o",
    "u",
    " are",
    " a",
    " ",
    "he",
    "l",
    "p",
    "f",
    "u",
    "l",
    " a",
    "s",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    ".",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "u",
    "s",
    "e",
    "r",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "\n",
];
const QWEN3_SYSTEM: &[u32] = &[
    1, 85, 91, 291, 71, 79, 201, 36, 71, 223, 68, 84, 75, 71, 72, 16, 2, 201, 1, 87, 85, 71, 84,
    201, 57, 74, 271, 297, 279, 280, 82, 263, 269, 277, 72, 223, 54, 71, 90, 270, 33, 2, 201, 1,
    270, 85, 273, 86, 67, 80, 86, 201, 35, 80, 85, 89, 71, 84, 28,
];
const QWEN3_SYSTEM_STR: &[&str] = &[
    "<|im_start|>",
    "s",
    "y",
    "st",
    "e",
    "m",
    "\n",
    "B",
    "e",
    " ",
    "b",
    "r",
    "i",
    "e",
    "f",
    ".",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "u",
    "s",
    "e",
    "r",
    "\n",
    "W",
    "h",
    "at",
    " is",
    " the",
    " ca",
    "p",
    "it",
    "al",
    " o",
    "f",
    " ",
    "T",
    "e",
    "x",
    "as",
    "?",
    "<|im_end|>",
    "\n",
    "<|im_start|>",
    "as",
    "s",
    "is",
    "t",
    "a",
    "n",
    "t",
    "\n",
    "A",
    "n",
    "s",
    "w",
    "e",
    "r",
    ":",
];
const QWEN3_PLAIN_SEED: &[u32] = &[
    57, 74, 271, 297, 279, 280, 82, 263, 269, 277, 72, 223, 54, 71, 90, 270, 33, 223, 35, 80, 85,
    89, 71, 84, 28,
];
const QWEN3_PLAIN_SEED_STR: &[&str] = &[
    "W", "h", "at", " is", " the", " ca", "p", "it", "al", " o", "f", " ", "T", "e", "x", "as",
    "?", " ", "A", "n", "s", "w", "e", "r", ":",
];
const QWEN3_PLAIN_SPACE: &[u32] = &[
    57, 74, 271, 297, 279, 280, 82, 263, 269, 277, 72, 223, 54, 71, 90, 270, 33, 223, 35, 80, 85,
    89, 71, 84, 28, 223,
];
const QWEN3_PLAIN_SPACE_STR: &[&str] = &[
    "W", "h", "at", " is", " the", " ca", "p", "it", "al", " o", "f", " ", "T", "e", "x", "as",
    "?", " ", "A", "n", "s", "w", "e", "r", ":", " ",
];
const QWEN3_PLAIN_NONE: &[u32] = &[
    57, 74, 271, 297, 279, 280, 82, 263, 269, 277, 72, 223, 54, 71, 90, 270, 33,
];
const QWEN3_PLAIN_NONE_STR: &[&str] = &[
    "W", "h", "at", " is", " the", " ca", "p", "it", "al", " o", "f", " ", "T", "e", "x", "as", "?",
];

#[test]
fn llama_template() {
    let t = tok("llama");
    check(&t, Some("Answer:"), &chat(), LLAMA_SEED, LLAMA_SEED_STR);
    check(
        &t,
        Some("Answer: "),
        &chat(),
        LLAMA_SEED_SPACE,
        LLAMA_SEED_SPACE_STR,
    );
    check(&t, Some("[EMPTY]"), &chat(), LLAMA_EMPTY, LLAMA_EMPTY_STR);
    check(&t, None, &chat(), LLAMA_NONE, LLAMA_NONE_STR);
    // [EMPTY] is the generation prompt.
    assert_eq!(LLAMA_EMPTY, LLAMA_NONE);
    let sys = PromptOptions {
        system_prompt: Some("Be brief.".into()),
        ..chat()
    };
    check(&t, Some("Answer:"), &sys, LLAMA_SYSTEM, LLAMA_SYSTEM_STR);
}

#[test]
fn qwen3_chatml_template() {
    let t = tok("qwen3");
    check(&t, Some("Answer:"), &chat(), QWEN3_SEED, QWEN3_SEED_STR);
    check(
        &t,
        Some("Answer: "),
        &chat(),
        QWEN3_SEED_SPACE,
        QWEN3_SEED_SPACE_STR,
    );
    check(&t, Some("[EMPTY]"), &chat(), QWEN3_EMPTY, QWEN3_EMPTY_STR);
    check(&t, None, &chat(), QWEN3_NONE, QWEN3_NONE_STR);
    let sys = PromptOptions {
        system_prompt: Some("Be brief.".into()),
        ..chat()
    };
    check(&t, Some("Answer:"), &sys, QWEN3_SYSTEM, QWEN3_SYSTEM_STR);
}

#[test]
fn no_template_appends_the_seed() {
    // The reference's non-chat path dropped the seed; adag traces `prompt + " " + seed`.
    for (name, ids, strs) in [
        (
            "llama",
            [LLAMA_PLAIN_SEED, LLAMA_PLAIN_SPACE, LLAMA_PLAIN_NONE],
            [
                LLAMA_PLAIN_SEED_STR,
                LLAMA_PLAIN_SPACE_STR,
                LLAMA_PLAIN_NONE_STR,
            ],
        ),
        (
            "qwen3",
            [QWEN3_PLAIN_SEED, QWEN3_PLAIN_SPACE, QWEN3_PLAIN_NONE],
            [
                QWEN3_PLAIN_SEED_STR,
                QWEN3_PLAIN_SPACE_STR,
                QWEN3_PLAIN_NONE_STR,
            ],
        ),
    ] {
        let t = tok(name);
        check(&t, Some("Answer:"), &plain(), ids[0], strs[0]);
        check(&t, Some("Answer: "), &plain(), ids[1], strs[1]);
        check(&t, None, &plain(), ids[2], strs[2]);
        // [EMPTY] without a template: the bare prompt.
        check(&t, Some("[EMPTY]"), &plain(), ids[2], strs[2]);
    }
}

#[test]
fn chat_without_template_falls_back_to_plain() {
    // The llama fixture's tokenizer with the chat template removed: a base model.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/llama");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer_config.json")).unwrap())
            .unwrap();
    cfg.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let t = ModelTokenizer::from_dir(dir.path()).unwrap();
    assert!(!t.has_chat_template());
    check(
        &t,
        Some("Answer:"),
        &chat(),
        LLAMA_PLAIN_SEED,
        LLAMA_PLAIN_SEED_STR,
    );
    check(
        &t,
        Some("Answer: "),
        &chat(),
        LLAMA_PLAIN_SPACE,
        LLAMA_PLAIN_SPACE_STR,
    );
    check(&t, None, &chat(), LLAMA_PLAIN_NONE, LLAMA_PLAIN_NONE_STR);
}

#[test]
fn stripped_llama31_template() {
    let t = tok("llama");
    let opts = PromptOptions {
        llama31_stripped_template: true,
        ..chat()
    };
    let p = prepare(&t, &item(Some("Answer: ")), 0, None, &opts).unwrap();
    assert_eq!(
        p.text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of Texas?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nAnswer:<|eot_id|>"
    );
    // The same tokens as the fixture template, with the empty system header in front.
    let head = [
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "s",
        "y",
        "st",
        "e",
        "m",
        "<|end_header_id|>",
        "\n",
        "\n",
        "<|eot_id|>",
    ];
    assert_eq!(&p.token_strings[..head.len()], head);
    assert_eq!(&p.tokens[head.len()..], &LLAMA_SEED_SPACE[1..]);
    let g = prepare(&t, &item(None), 0, None, &opts).unwrap();
    assert!(g
        .text
        .ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
}

#[test]
fn answers_give_first_tokens() {
    let t = tok("llama");
    let it = DatasetItem {
        answers: vec![" Austin".into(), " Dallas".into(), " Austin!".into()],
        ..item(Some("Answer:"))
    };
    let p = prepare(&t, &it, 3, None, &chat()).unwrap();
    let first = |s: &str| t.encode(s, false).unwrap()[0];
    // " Austin" and " Austin!" share their first token: one target.
    assert_eq!(p.targets, Some(vec![first(" Austin"), first(" Dallas")]));
    assert_eq!(p.targets.as_ref().unwrap()[0], 225);
    // Config answers override the item's.
    let over = [" Houston".to_string()];
    let q = prepare(&t, &it, 3, Some(&over), &chat()).unwrap();
    assert_eq!(q.targets, Some(vec![first(" Houston")]));
    assert_eq!(q.answers, over);
    assert_eq!(
        prepare(&t, &item(None), 0, None, &chat()).unwrap().targets,
        None
    );
}

#[test]
fn default_seed_and_errors() {
    let t = tok("qwen3");
    let opts = PromptOptions {
        default_seed: Some("Answer:".into()),
        ..chat()
    };
    let p = prepare(&t, &item(None), 0, None, &opts).unwrap();
    assert_eq!(p.tokens, QWEN3_SEED);
    let empty = DatasetItem::default();
    let e = prepare(&t, &empty, 9, None, &chat())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("prompt 9: "), "{e}");
}
