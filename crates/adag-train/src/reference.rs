//! adag's own logits for a few prompts, stored in the bundle so that
//! `tools/check_demo_in_transformers.py` can check that `transformers` computes the same.

use std::path::Path;

use adag_model::{LoadOptions, LoadedModel};

use crate::error::{Context, Error, Result};
use crate::io::write_atomic;

/// One prompt per task, plus filler.
pub const REFERENCE_PROMPTS: &[&str] = &[
    "The capital of the state containing Dallas is",
    "36+59=",
    "The keys to the cabinet",
    "Anna saw the old boat",
];

/// File name of the stored reference, inside the model directory.
pub const REFERENCE_FILE: &str = "reference_logits.json";

/// Loads the saved model from `dir` (through the HF-layout loader, as any user would) and
/// writes `dir/reference_logits.json`: for each prompt, its token ids and the logits of every
/// position.
pub fn write_reference(dir: &Path) -> Result<()> {
    let m = LoadedModel::load(dir, &LoadOptions::default()).context("loading the saved model")?;
    let mut items = Vec::new();
    for p in REFERENCE_PROMPTS {
        let ids = m
            .tokenizer
            .prompt_ids(p, false)
            .map_err(adag_model::Error::from)
            .context("tokenizing")?;
        let logits = m
            .model
            .logits(&ids)
            .context("forward")?
            .to_vec2::<f32>()
            .context("logits")?;
        items.push(serde_json::json!({"prompt": p, "ids": ids, "logits": logits}));
    }
    let json = serde_json::to_string(&serde_json::json!({ "prompts": items }))
        .map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&dir.join(REFERENCE_FILE), json.as_bytes())
}
