//! `adag intervene`: set, scale or zero transcoder features (or MLP neurons, `--basis neurons`)
//! and compare next-token predictions.

use std::path::PathBuf;

use crate::common::ModelArgs;
use crate::tokens::{show, show_all};
use adag_engine::intervene::{generate, intervene, Action, Intervention, Mode, Position};
use adag_engine::prepare_tokens;
use adag_model::{probabilities, LoadedModel};
use anyhow::{Context, Result};

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
    #[command(flatten)]
    model: ModelArgs,
    /// Transcoder directory or config.yaml (default: the bundled demo transcoders).
    #[arg(long, short = 't')]
    transcoders: Option<PathBuf>,
    /// What the interventions name: transcoder features, or the model's MLP neurons (set in
    /// `mlp.hook_post`).
    #[arg(long, value_enum, default_value = "transcoders")]
    basis: super::attribute::BasisArg,
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
}

/// The `k` most probable next tokens: (id, probability).
fn top(p: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, p[i])).collect()
}

/// How an intervention reads back to the user: `L1 F3 @5 ×0` (`N3` for a neuron).
fn describe(iv: &Intervention, unit: char) -> String {
    let pos = match iv.pos {
        Position::At(p) => format!("@{p}"),
        Position::From(p) => format!("@{p}+"),
    };
    let op = match iv.action {
        Action::Set(v) => format!("= {v}"),
        Action::Scale(f) => format!("× {f}"),
    };
    format!("L{} {unit}{} {pos} {op}", iv.layer, iv.feature)
}

/// Runs `adag intervene`.
pub fn run(args: Args) -> Result<()> {
    let opts = args.model.load_options()?;
    let (model_dir, basis) = super::attribute::load_basis(
        args.basis,
        &args.model.model,
        &args.transcoders,
        &opts.device,
    )?;
    let tc = basis.as_ref();
    let (unit, unit_name) = match args.basis {
        super::attribute::BasisArg::Transcoders => ('F', "feature"),
        super::attribute::BasisArg::Neurons => ('N', "neuron"),
    };
    let describe = |iv: &Intervention| describe(iv, unit);
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
    let clean = intervene(&m.model, &tokens, tc, &[], mode)?;
    let steered = intervene(&m.model, &tokens, tc, &ivs, mode)?;
    // Activations as the features fire (post-activation), whatever the mode reports.
    let fired = match mode {
        Mode::Constrained => Some(intervene(
            &m.model,
            &tokens,
            tc,
            &[],
            Mode::OpenLoop {
                freeze_attention: false,
            },
        )?),
        Mode::OpenLoop { .. } => None,
    };
    let fired = fired.as_ref().unwrap_or(&clean);

    println!(
        "prompt: {}",
        tokens
            .iter()
            .enumerate()
            .map(|(p, &id)| Ok(format!("{p}:{}", show(&m.tokenizer, id)?)))
            .collect::<Result<Vec<_>>>()?
            .join(" ")
    );
    println!("interventions (clean activation → set to):");
    for iv in &ivs {
        let acts = fired
            .activations
            .get(iv.layer)
            .with_context(|| format!("{}: no layer {}", describe(iv), iv.layer))?;
        let (first, end) = match iv.pos {
            Position::At(p) => (p, p + 1),
            Position::From(p) => (p, tokens.len()),
        };
        for (p, &tok) in tokens.iter().enumerate().take(end).skip(first) {
            let a = acts
                .get(p)
                .and_then(|r| r.get(iv.feature as usize))
                .and_then(|v| v.to_scalar::<f32>())
                .with_context(|| {
                    format!(
                        "{}: no {unit_name} {} at position {p}",
                        describe(iv),
                        iv.feature
                    )
                })?
                + 0.0; // no "-0.0000"
            let new = match iv.action {
                Action::Set(v) => v,
                Action::Scale(f) => a * f + 0.0,
            };
            let note = match (a == 0.0, iv.action) {
                (true, Action::Scale(_)) => "  (inactive here: scaling changes nothing)",
                (true, Action::Set(_)) => "  (inactive in the clean run)",
                _ => "",
            };
            println!(
                "  {:<20} pos {p:<3} {:<12} {a:>9.4} → {new:.4}{note}",
                describe(iv),
                show(&m.tokenizer, tok)?
            );
        }
        if first >= tokens.len() {
            println!(
                "  {:<20} starts after the prompt: it acts on generated tokens only",
                describe(iv)
            );
        }
    }

    let logits = |o: &adag_engine::intervene::InterventionOutput| -> Result<(Vec<f32>, Vec<f32>)> {
        let l = o.logits.get(last)?;
        Ok((l.to_vec1::<f32>()?, probabilities(&l)?.to_vec1::<f32>()?))
    };
    let ((lc, pc), (ls, ps)) = (logits(&clean)?, logits(&steered)?);
    let (before, after) = (top(&pc, args.top_k), top(&ps, args.top_k));
    println!("\nnext token\n  {:<32} intervened", "clean");
    for (b, a) in before.iter().zip(&after) {
        let clean = format!("{:>7.4}  {}", b.1, show(&m.tokenizer, b.0 as u32)?);
        let after = format!("{:>7.4}  {}", a.1, show(&m.tokenizer, a.0 as u32)?);
        println!("  {clean:<32} {after}");
    }
    println!("\nlogit changes (clean top {}):", before.len());
    println!(
        "  {:<16} {:>9} {:>9} {:>9}   prob",
        "token", "clean", "after", "Δ"
    );
    for &(i, _) in &before {
        println!(
            "  {:<16} {:>9.4} {:>9.4} {:>+9.4}   {:.4} → {:.4}",
            show(&m.tokenizer, i as u32)?,
            lc[i],
            ls[i],
            ls[i] - lc[i],
            pc[i],
            ps[i]
        );
    }
    if args.generate > 0 {
        let (plain, _) = generate(&m.model, &tokens, tc, &[], args.generate)?;
        let (new, _) = generate(&m.model, &tokens, tc, &ivs, args.generate)?;
        println!("\nclean:      {}", show_all(&m.tokenizer, &plain)?);
        println!("intervened: {}", show_all(&m.tokenizer, &new)?);
    }
    Ok(())
}
