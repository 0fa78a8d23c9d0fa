//! Bad inputs a careless user (or an attacker) could give: each is a clean error (exit 2)
//! naming what is wrong, never a panic, an unbounded allocation or a silently wrong result.

use crate::common::{fails, s};

/// More tokens than the llama fixture's context (max_position_embeddings 256).
fn long_prompt() -> String {
    "The capital of the state containing Dallas is Austin. ".repeat(60)
}

#[test]
fn run_refuses_a_prompt_longer_than_the_context() {
    let e = fails(&["run", "-m", "fixtures/models/llama", "-p", &long_prompt()]);
    assert!(
        e.contains("the prompt has") && e.contains("more than the model's context of 256 tokens"),
        "{e}"
    );
}

#[test]
fn trace_names_the_dataset_item_that_is_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(
        &data,
        format!(
            "{{\"prompt\": \"Dallas is in\"}}\n{{\"prompt\": \"{}\"}}\n",
            long_prompt()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let args = [
        "trace",
        "--model",
        "fixtures/models/llama",
        "--dataset",
        s(&data),
    ];
    let e = fails(&[&args[..], &["--out", s(&out), "--quiet"]].concat());
    assert!(
        e.contains("prompt 1 of") && e.contains("d.jsonl has") && e.contains("context of 256"),
        "{e}"
    );
    let e = fails(
        &[
            &args[..],
            &["--out", s(&out), "--quiet", "--blacklist", "L7/0"],
        ]
        .concat(),
    );
    assert!(
        e.contains("`blacklist`: neuron L7/0 is outside the model (3 layers of 128 neurons)"),
        "{e}"
    );
}

#[test]
fn intervene_refuses_to_generate_past_the_context() {
    let e = fails(&[
        "intervene",
        "--prompt",
        "36+59=",
        "--set",
        "1:5:3*0",
        "--generate",
        "100000",
    ]);
    assert!(
        e.contains("the prompt plus 100000 generated tokens has")
            && e.contains("more than the model's context of 2048 tokens"),
        "{e}"
    );
}
