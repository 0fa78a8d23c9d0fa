//! `adag steer --judge …`: steering success rates (ASR) with a rule or LLM judge.
//!
//! Kept apart from `steer.rs` (the logit report) so each stays small; the sampling, judging
//! and statistics live in `adag_analysis::{asr, judge}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use adag_analysis::asr::{self, SampleOptions, SweepInputs};
use adag_analysis::judge::{Judge, LlmJudge, RuleJudge, DEFAULT_RUBRIC};
use adag_analysis::steer::{Scope, Steerer, Target};
use adag_circuit::Circuit;
use adag_llm::{BackendConfig, ChatRequest, Llm, LlmOptions, Message};
use adag_model::ModelTokenizer;
use anyhow::{Context, Result};

/// Flags of the success-rate mode.
#[derive(Debug, clap::Args)]
pub struct AsrArgs {
    /// Judge sampled continuations instead of reporting logits: `answer` (starts with one of
    /// the prompt's given answers), `contains:TEXT`, `regex:PATTERN` (each prefixed with `not-`
    /// to negate) or `llm:BACKEND` (any
    /// `adag describe --backend` spec: `llm:openai:URL`, `llm:anthropic`, `llm:local`) asking
    /// --rubric of each continuation, yes/no with a reason.
    #[arg(long)]
    pub judge: Option<String>,
    /// The yes/no question an LLM judge answers about each continuation.
    #[arg(long, default_value = DEFAULT_RUBRIC)]
    pub rubric: String,
    /// Continuations sampled per prompt and setting.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Tokens per continuation.
    #[arg(long, default_value_t = 8)]
    pub max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus (top-p) mass.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Seed of the samples (the same draws at every cluster and scale).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// LLM judge cache (default: llm-cache/ in the circuit directory).
    #[arg(long)]
    pub judge_cache: Option<PathBuf>,
}

/// The judge named by `spec`.
fn make_judge<'a>(args: &AsrArgs, llm: Option<&'a Llm>) -> Result<Box<dyn Judge + 'a>> {
    let spec = args.judge.as_deref().unwrap_or_default();
    match llm {
        Some(llm) => {
            let rubric = args.rubric.clone();
            Ok(Box::new(LlmJudge::new(
                rubric,
                llm.describe(),
                move |system: &str, user: &str| {
                    let req = ChatRequest {
                        max_tokens: 128,
                        ..ChatRequest::new(vec![Message::system(system), Message::user(user)])
                    };
                    llm.chat(&req).map(|r| r.text).map_err(|e| e.to_string())
                },
            )))
        }
        None => Ok(Box::new(
            spec.parse::<RuleJudge>()
                .map_err(|e| anyhow::anyhow!("--judge: {e}"))?,
        )),
    }
}

/// Runs the sweep and prints/writes its table.
#[allow(clippy::too_many_arguments)]
pub fn run(
    args: &AsrArgs,
    steerer: &Steerer,
    circuit: &Circuit,
    targets: &[Target],
    scales: &[f32],
    scope: Scope,
    prompts: &dyn Fn(&Target) -> Vec<u64>,
    tok: Option<&ModelTokenizer>,
    out: Option<&Path>,
    circuit_dir: &Path,
) -> Result<()> {
    let spec = args.judge.as_deref().unwrap_or_default();
    let llm = match spec.strip_prefix("llm:") {
        Some(backend) => {
            let cfg: BackendConfig = backend
                .parse()
                .with_context(|| format!("--judge {spec:?}"))?;
            let cache = args
                .judge_cache
                .clone()
                .unwrap_or_else(|| circuit_dir.join("llm-cache"));
            let opts = LlmOptions::default()
                .timeout(Duration::from_secs(120))
                .cache_dir(cache);
            Some(Llm::from_config(&cfg, opts).with_context(|| format!("--judge {spec:?}"))?)
        }
        None => None,
    };
    let judge = make_judge(args, llm.as_ref())?;
    let opts = SampleOptions {
        samples: args.samples,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        scope,
    };
    let decode = |ids: &[u32]| -> String {
        tok.and_then(|t| t.decode(ids, false).ok())
            .unwrap_or_else(|| format!("{ids:?}"))
    };
    let prompt_text = |id: u64| -> (String, Vec<String>) {
        circuit
            .prompts
            .iter()
            .find(|p| p.prompt_id == id)
            .map(|p| (p.prompt.clone(), p.answers.clone()))
            .unwrap_or_default()
    };
    let inputs = SweepInputs {
        prompts,
        decode: &decode,
        prompt_text: &prompt_text,
    };
    eprintln!(
        "judge: {}; {} samples × {} tokens per prompt (T {}, top-p {}, seed {})",
        judge.describe(),
        opts.samples,
        opts.max_tokens,
        opts.temperature,
        opts.top_p,
        opts.seed
    );
    let total = targets.len() * scales.len();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (rows, samples) = asr::sweep(
        steerer,
        targets,
        scales,
        &opts,
        &inputs,
        judge.as_ref(),
        &mut |done| {
            if tty {
                eprint!("\r{done}/{total} settings judged");
            }
        },
    )?;
    if tty {
        eprintln!();
    }
    print!("{}", asr::table(&rows));
    if let Some(out) = out {
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", out.display()));
        asr::write_parquet(&with("asr.parquet"), &rows)?;
        adag_circuit::store::write_atomic(&with("asr.csv"), asr::csv(&rows).as_bytes())?;
        let mut lines = String::new();
        for s in &samples {
            lines.push_str(&serde_json::to_string(s)?);
            lines.push('\n');
        }
        adag_circuit::store::write_atomic(&with("samples.jsonl"), lines.as_bytes())?;
        println!("→ {}.{{asr.csv,asr.parquet,samples.jsonl}}", out.display());
    }
    Ok(())
}
