//! `adag intervene`: set, scale or zero transcoder features and compare next-token predictions.

use std::path::PathBuf;

use adag_engine::intervene::{feature_intervention, generate, Intervention, Mode};
use adag_engine::prepare_tokens;
use adag_model::{probabilities, LoadedModel};
use anyhow::{Context, Result};
use candle_core::Tensor;

use crate::common::{device, printable, DeviceArg};

/// How downstream layers respond.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Real MLPs downstream; features re-encoded from the perturbed run.
    OpenLoop,
    /// Everything frozen at the clean run: the attribution graph's linear model.
    Constrained,
}

/// Arguments of `adag intervene`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The prompt.
    #[arg(long, short = 'p')]
    prompt: String,
    /// Model directory (default as for `adag attribute`).
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Transcoder directory or config.yaml (default: the bundled demo transcoders).
    #[arg(long, short = 't')]
    transcoders: Option<PathBuf>,
    /// `LAYER:POS:FEATURE=VALUE` sets, `LAYER:POS:FEATURE*FACTOR` scales (0 ablates); `POS` may
    /// be `N+` for position N and every later one, generated tokens included. Repeatable.
    #[arg(long = "set", value_name = "INTERVENTION", required = true)]
    interventions: Vec<String>,
    /// How the model responds.
    #[arg(long, value_enum, default_value = "open-loop")]
    mode: ModeArg,
    /// Open loop: freeze attention patterns at the clean run.
    #[arg(long)]
    freeze_attention: bool,
    /// Greedily generate this many tokens with the interventions applied.
    #[arg(long, default_value_t = 0)]
    generate: usize,
    /// Next tokens to show.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Device.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

fn top(m: &LoadedModel, logits: &Tensor, k: usize) -> Result<Vec<(String, f32)>> {
    let p = probabilities(logits)?.to_vec1::<f32>()?;
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    idx.into_iter()
        .take(k)
        .map(|i| Ok((m.tokenizer.token_strings(&[i as u32])?.remove(0), p[i])))
        .collect()
}

/// Runs `adag intervene`.
pub fn run(args: Args) -> Result<()> {
    let (model_dir, tc_dir) = super::attribute::resolve_paths(&args.model, &args.transcoders)?;
    let opts = adag_model::LoadOptions {
        device: device(args.device)?,
        ..Default::default()
    };
    let tc = crate::common::load_transcoders(&tc_dir, &opts.device)
        .with_context(|| format!("loading transcoders {}", tc_dir.display()))?;
    let m = LoadedModel::load(&model_dir, &opts)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let mut ivs: Vec<Intervention> = Vec::with_capacity(args.interventions.len());
    for s in &args.interventions {
        ivs.push(
            s.parse::<Intervention>()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let tokens = prepare_tokens(&m.tokenizer, &args.prompt)?;
    let mode = match args.mode {
        ModeArg::OpenLoop => Mode::OpenLoop {
            freeze_attention: args.freeze_attention,
        },
        ModeArg::Constrained => Mode::Constrained,
    };
    let last = tokens.len() - 1;
    let clean = feature_intervention(&m.model, &tokens, &tc, &[], mode)?;
    let steered = feature_intervention(&m.model, &tokens, &tc, &ivs, mode)?;
    let (before, after) = (
        top(&m, &clean.logits.get(last)?, args.top_k)?,
        top(&m, &steered.logits.get(last)?, args.top_k)?,
    );
    println!("{:<32} {:<32}", "clean", "intervened");
    for (b, a) in before.iter().zip(&after) {
        println!(
            "{:<32} {:<32}",
            format!("{:>7.4}  {}", b.1, printable(&b.0)),
            format!("{:>7.4}  {}", a.1, printable(&a.0))
        );
    }
    if args.generate > 0 {
        let (plain, _) = generate(&m.model, &tokens, &tc, &[], args.generate)?;
        let (new, _) = generate(&m.model, &tokens, &tc, &ivs, args.generate)?;
        println!(
            "\nclean:      {}",
            printable(&m.tokenizer.decode(&plain, false)?)
        );
        println!(
            "intervened: {}",
            printable(&m.tokenizer.decode(&new, false)?)
        );
    }
    Ok(())
}
