//! `adag serve-llm` as a user runs it: bad input fails cleanly, and the default (the bundled
//! demo model) answers OpenAI requests.

use crate::common::{fails, serve_llm};

#[test]
fn missing_model_dir_is_a_clean_error() {
    let err = fails(&["serve-llm", "--model", "no/such/model-dir", "--port", "0"]);
    assert!(
        err.contains("no/such/model-dir") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn bad_host_is_a_usage_error() {
    let err = fails(&["serve-llm", "--host", "not-an-ip"]);
    assert!(err.contains("--host"), "{err}");
}

#[test]
fn serves_the_demo_model_on_a_free_port() {
    let (_server, base) = serve_llm(&["--port", "0", "--name", "demo-served"]);
    let models: serde_json::Value = serde_json::from_str(
        &reqwest::blocking::get(format!("{base}/models"))
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(models["data"][0]["id"], "demo-served");
    let reply: serde_json::Value = serde_json::from_str(
        &reqwest::blocking::Client::new()
            .post(format!("{base}/chat/completions"))
            .body(
                serde_json::json!({"model": "demo-served", "max_tokens": 3, "temperature": 0,
                    "logprobs": true, "top_logprobs": 2,
                    "messages": [{"role": "user", "content": "The capital of Texas is"}]})
                .to_string(),
            )
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reply["model"], "demo-served", "{reply}");
    let n = reply["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=3).contains(&n), "{reply}");
}
