//! `adag run`: the tokens as the model sees them and its next-token distribution.

use adag_model::{probabilities, LoadedModel};
use anyhow::{Context, Result};
use serde_json::json;

use crate::common::ModelArgs;
use crate::tokens::show;

/// Arguments of `adag run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(long, short = 'p')]
    prompt: String,
    /// Wrap the prompt as one user message in the model's chat template (with the generation
    /// prompt appended).
    #[arg(long)]
    chat: bool,
    /// How many next tokens to show.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `adag run`.
pub fn run(args: Args) -> Result<()> {
    let opts = args.model.load_options()?;
    let dir = args.model.model_dir()?;
    let m = LoadedModel::load(&dir, &opts)
        .with_context(|| format!("loading model from {}", dir.display()))?;
    let ids = m.tokenizer.prompt_ids(&args.prompt, args.chat)?;
    let strings = m.tokenizer.token_strings(&ids)?;
    let logits = m.model.logits(&ids)?;
    let last = logits.get(ids.len() - 1)?;
    let probs = probabilities(&last)?.to_vec1::<f32>()?;
    let last = last.to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order.truncate(args.top_k);
    let top: Vec<_> = order
        .iter()
        .map(|&i| {
            let tok = m
                .tokenizer
                .token_strings(&[i as u32])
                .map(|mut v| v.remove(0))
                .unwrap_or_default();
            (i, tok, probs[i], last[i])
        })
        .collect();

    if args.json {
        let out = json!({
            "tokens": ids.iter().zip(&strings).map(|(i, s)| json!({"id": i, "token": s})).collect::<Vec<_>>(),
            "top": top.iter().map(|(i, t, p, l)| json!({"id": i, "token": t, "prob": p, "logit": l})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let policy = m.tokenizer.bos_policy();
    println!(
        "{} tokens{}",
        ids.len(),
        match (&policy.bos_token, args.chat) {
            (_, true) => " (chat template applied)".to_string(),
            (Some((b, _)), false) if policy.tokenizer_adds_bos =>
                format!(" (tokenizer prepends {b})"),
            _ => " (no BOS added)".to_string(),
        }
    );
    // Whitespace shown (␣ space, ↵ newline, ⇥ tab), so a space-only token is not a blank.
    println!("   pos       id  token");
    for (p, id) in ids.iter().enumerate() {
        println!("  {p:>4}  {id:>7}  {}", show(&m.tokenizer, *id)?);
    }
    println!("\nnext token (top {}):", top.len());
    println!("  rank       id   prob      logit  token");
    for (r, (i, _, p, l)) in top.iter().enumerate() {
        println!(
            "  {:>4}  {i:>7}  {p:.4}  {l:>9.4}  {}",
            r + 1,
            show(&m.tokenizer, *i as u32)?
        );
    }
    Ok(())
}
