//! Parity of `ModelTokenizer` with HuggingFace transformers on real tokenizers.
//!
//! The goldens in `fixtures/tokenizers/golden/` were written by `tools/make_tokenizer_goldens.py`
//! from transformers' own answers. The tokenizer files themselves are not committed (Llama and
//! Gemma licences), so each test skips with a message when they have not been fetched with
//! `tools/fetch_tokenizers.sh`.

use std::path::{Path, PathBuf};

use adag_text::{ChatMessage, ModelTokenizer};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("golden ids must be an array")
        .iter()
        .map(|x| x.as_u64().expect("golden id must be an integer") as u32)
        .collect()
}

fn token(v: &Value) -> Option<(String, u32)> {
    let arr = v.as_array()?;
    Some((arr[0].as_str()?.to_string(), arr[1].as_u64()? as u32))
}

fn str_of(v: &Value) -> &str {
    v.as_str().expect("golden value must be a string")
}

/// Compares one tokenizer against its golden file; collects every mismatch before failing so a
/// single run shows the whole picture.
fn check(name: &str) {
    let root = repo_root();
    let dir = root.join("fixtures/tokenizers").join(name);
    if !dir.join("tokenizer.json").exists() {
        eprintln!(
            "skipping {name}: {} is absent (not committed for licence reasons); run tools/fetch_tokenizers.sh",
            dir.join("tokenizer.json").display()
        );
        return;
    }
    let golden_path = root
        .join("fixtures/tokenizers/golden")
        .join(format!("{name}.json"));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", golden_path.display())),
    )
    .unwrap_or_else(|e| panic!("parsing {}: {e}", golden_path.display()));
    let tok = ModelTokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("loading {name}: {e}"));

    let mut bad: Vec<String> = Vec::new();
    let mut expect = |what: String, ok: bool, detail: String| {
        if !ok {
            bad.push(format!("{what}: {detail}"));
        }
    };

    expect(
        "vocab_size".into(),
        tok.vocab_size() as u64 == golden["vocab_size"].as_u64().unwrap_or(0),
        format!("rust {} vs hf {}", tok.vocab_size(), golden["vocab_size"]),
    );
    let bos = tok.bos_policy();
    expect(
        "bos_token".into(),
        bos.bos_token == token(&golden["bos_token"]),
        format!("rust {:?} vs hf {}", bos.bos_token, golden["bos_token"]),
    );
    expect(
        "tokenizer_adds_bos".into(),
        Some(bos.tokenizer_adds_bos) == golden["tokenizer_adds_bos"].as_bool(),
        format!(
            "rust {} vs hf {}",
            bos.tokenizer_adds_bos, golden["tokenizer_adds_bos"]
        ),
    );
    expect(
        "eos_token".into(),
        tok.eos_token() == token(&golden["eos_token"]),
        format!("rust {:?} vs hf {}", tok.eos_token(), golden["eos_token"]),
    );
    expect(
        "pad_token".into(),
        tok.pad_token() == token(&golden["pad_token"]),
        format!("rust {:?} vs hf {}", tok.pad_token(), golden["pad_token"]),
    );

    let want_special = ids(&golden["special_ids"]);
    let got_special: Vec<u32> = tok.special_ids().iter().copied().collect();
    expect(
        "special_ids".into(),
        got_special == want_special,
        format!(
            "rust {} ids vs hf {} ids",
            got_special.len(),
            want_special.len()
        ),
    );

    let texts = golden["texts"].as_array().expect("golden texts");
    assert!(!texts.is_empty());
    for t in texts {
        let text = str_of(&t["text"]);
        for (flag, key) in [(true, "ids_with_special"), (false, "ids_without_special")] {
            let want = ids(&t[key]);
            let got = tok
                .encode(text, flag)
                .unwrap_or_else(|e| panic!("encode {text:?}: {e}"));
            expect(
                format!("encode({text:?}, {flag})"),
                got == want,
                format!("rust {got:?} vs hf {want:?}"),
            );
        }
        let with = ids(&t["ids_with_special"]);
        for (skip, key) in [(false, "decoded"), (true, "decoded_skip_special")] {
            let got = tok
                .decode(&with, skip)
                .unwrap_or_else(|e| panic!("decode {with:?}: {e}"));
            let want = str_of(&t[key]);
            expect(
                format!("decode({text:?}, skip={skip})"),
                got == want,
                format!("rust {got:?} vs hf {want:?}"),
            );
        }
        let got = tok
            .token_strings(&with)
            .unwrap_or_else(|e| panic!("token_strings: {e}"));
        let want: Vec<&str> = t["token_strings"]
            .as_array()
            .expect("token_strings")
            .iter()
            .map(str_of)
            .collect();
        expect(
            format!("token_strings({text:?})"),
            got == want,
            format!("rust {got:?} vs hf {want:?}"),
        );
    }

    let chats = golden["chats"].as_array().expect("golden chats");
    assert!(!chats.is_empty());
    for c in chats {
        let label = format!(
            "chat {} (add_generation_prompt={})",
            str_of(&c["name"]),
            c["add_generation_prompt"]
        );
        let messages: Vec<ChatMessage> =
            serde_json::from_value(c["messages"].clone()).expect("golden messages");
        let agp = c["add_generation_prompt"]
            .as_bool()
            .expect("add_generation_prompt");
        let rendered = tok.apply_chat_template(&messages, agp);
        match (&rendered, c.get("error")) {
            (Err(e), Some(_)) => expect(
                label.clone(),
                matches!(e, adag_text::Error::ChatTemplate(_)),
                format!("wrong error kind {e:?}"),
            ),
            (Ok(text), Some(err)) => expect(
                label.clone(),
                false,
                format!("rendered {text:?} but hf raised {err}"),
            ),
            (Err(e), None) => expect(
                label.clone(),
                false,
                format!("error {e} but hf rendered {}", c["rendered"]),
            ),
            (Ok(text), None) => {
                let want = str_of(&c["rendered"]);
                expect(
                    label.clone(),
                    text == want,
                    format!("rust {text:?} vs hf {want:?}"),
                );
                let got = tok
                    .encode(text, false)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let want = ids(&c["ids"]);
                expect(
                    format!("{label} ids"),
                    got == want,
                    format!("rust {got:?} vs hf {want:?}"),
                );
            }
        }
    }

    for p in golden["prompts"].as_array().expect("golden prompts") {
        let prompt = str_of(&p["prompt"]);
        for (chat, key) in [(false, "plain_ids"), (true, "chat_ids")] {
            let want = ids(&p[key]);
            match tok.prompt_ids(prompt, chat) {
                Ok(got) => expect(
                    format!("prompt_ids({prompt:?}, chat={chat})"),
                    got == want,
                    format!("rust {got:?} vs hf {want:?}"),
                ),
                Err(e) => expect(
                    format!("prompt_ids({prompt:?}, chat={chat})"),
                    false,
                    e.to_string(),
                ),
            }
        }
    }

    assert!(
        bad.is_empty(),
        "{name}: {} mismatches with transformers:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!(
        "{name}: parity ok ({} texts, {} chats); BOS policy {:?}",
        texts.len(),
        chats.len(),
        tok.bos_policy()
    );
}

#[test]
fn qwen3_matches_transformers() {
    check("qwen3");
}

#[test]
fn llama3_1_matches_transformers() {
    check("llama3_1");
}

#[test]
fn gemma3_matches_transformers() {
    check("gemma3");
}
