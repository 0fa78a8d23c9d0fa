//! `adag features`: feature dashboards (top activating contexts, density, histogram, output
//! logits) for a transcoder set or the MLP neurons, in the feature-detail format the viewer
//! reads. The statistics live in `adag-features`; this file streams the corpus through the model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use adag_core::{HookName, Site};
use adag_engine::transcoder::{TranscoderKind, TranscoderSet};
use adag_features::write::{detail_json, write_feature_dir, UnitMeta};
use adag_features::{CollectConfig, Collector};
use adag_model::{Batch, CacheFilter, LoadedModel};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};

/// What the dashboards describe.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum BasisArg {
    /// Transcoder features (PLT or CLT, from `--transcoders`).
    Transcoders,
    /// MLP neurons (`mlp.hook_post`).
    Neurons,
}

/// Arguments of `adag features`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory or hub id (default: the transcoders' `model_name`, else the bundled
    /// demo model).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub load: crate::common::LoadArgs,
    /// Transcoder directory (default: the bundled demo transcoders).
    #[arg(long, short = 't')]
    pub transcoders: Option<PathBuf>,
    /// Transcoder features or MLP neurons.
    #[arg(long, value_enum, default_value = "transcoders")]
    pub basis: BasisArg,
    /// Corpus: plain text (one document per line), JSONL with a `text` field, or Parquet with a
    /// `text` column (by extension); default the demo corpus (sentences drawn as the demo model was trained, fixed seed).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Sentences of the demo corpus when no --corpus is given.
    #[arg(long, default_value_t = 6000)]
    pub demo_sentences: usize,
    /// Output folder (default: `<transcoders>/features`, or `<model>/features/neurons`, where
    /// `adag serve` and `adag attribute --serve` look without a flag).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Top contexts kept per unit.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    /// Tokens shown on each side of an example's peak.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Contexts kept per activation interval (log2 bins).
    #[arg(long, default_value_t = 2)]
    pub per_bin: usize,
    /// Tokens per context.
    #[arg(long, default_value_t = 64)]
    pub ctx_len: usize,
    /// Contexts per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Stop after this many tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Top and bottom output logits listed per unit.
    #[arg(long, default_value_t = 10)]
    pub n_logits: usize,
    /// Batches between saved states (a killed run resumes from the last one).
    #[arg(long, default_value_t = 20)]
    pub checkpoint_every: usize,
    /// Ignore a saved state and start over.
    #[arg(long)]
    pub fresh: bool,
}

/// The state file inside the output folder; removed when the dashboards are written.
const STATE: &str = ".adag-features-state.json";

/// Runs `adag features`.
pub fn run(args: Args) -> Result<()> {
    if args.ctx_len == 0 || args.batch == 0 {
        bail!("--ctx-len and --batch must be at least 1");
    }
    let (model_dir, tc_dir) =
        crate::commands::attribute::resolve_paths(&args.model, &args.transcoders)?;
    let opts = args.load.load_options()?;
    let lm = LoadedModel::load(&model_dir, &opts)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let tc = match args.basis {
        BasisArg::Transcoders => {
            let tc = crate::common::load_transcoders(&tc_dir, &opts.device)
                .with_context(|| format!("loading transcoders {}", tc_dir.display()))?;
            tc.check_model(&lm.model.cfg)?;
            Some(tc)
        }
        BasisArg::Neurons => None,
    };
    let out = match (&args.out, &tc) {
        (Some(o), _) => o.clone(),
        (None, Some(tc)) => tc.source.join("features"),
        (None, None) => model_dir.join("features").join("neurons"),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // The token stream, cut into contexts.
    let docs = match &args.corpus {
        Some(p) => adag_features::corpus::read_documents(p)?,
        None => {
            let mut rng = adag_train::rng::Rng::derive(0, "features-corpus");
            (0..args.demo_sentences)
                .map(|_| adag_train::corpus::sample_sentence(&mut rng))
                .collect()
        }
    };
    let mut stream = Vec::new();
    for d in &docs {
        stream.extend(lm.tokenizer.encode(d, true)?);
        if args.max_tokens.is_some_and(|m| stream.len() >= m) {
            break;
        }
    }
    let usable = args
        .max_tokens
        .map_or(stream.len(), |m| m.min(stream.len()));
    let contexts: Vec<Vec<u32>> = stream[..usable]
        .chunks_exact(args.ctx_len)
        .map(<[u32]>::to_vec)
        .collect();
    if contexts.is_empty() {
        bail!(
            "the corpus has {usable} tokens, fewer than one context of --ctx-len {}",
            args.ctx_len
        );
    }

    let cfg = &lm.model.cfg;
    let n_layers = cfg.n_layers;
    let units = tc.as_ref().map_or(cfg.d_mlp, |t| t.d_tc);
    let collect = CollectConfig {
        k: args.k,
        window: args.window,
        per_bin: args.per_bin,
    };
    // `special tokens skipped`: states written before special-token positions were skipped
    // are not resumed into a run that skips them.
    let fingerprint = format!(
        "special tokens skipped|{:?}|{}|{}|{:?}|{}|{:?}|{:?}|{}|{}",
        args.basis,
        model_dir.display(),
        tc_dir.display(),
        args.corpus,
        args.demo_sentences,
        args.max_tokens,
        collect,
        args.ctx_len,
        contexts.len()
    );
    let state_path = out.join(STATE);
    let mut cols = match load_state(&state_path, &fingerprint, args.fresh)? {
        Some(c) => {
            eprintln!(
                "resuming after {} of {} contexts ({})",
                c[0].n_seqs,
                contexts.len(),
                state_path.display()
            );
            c
        }
        None => (0..n_layers)
            .map(|_| Collector::new(units, collect))
            .collect(),
    };

    let special = lm.tokenizer.special_ids().clone();
    let (site, hook_site) = match &tc {
        Some(t) => (t.read.site(), t.read.site()),
        None => (Site::MlpPost, Site::MlpPost),
    };
    let filter = CacheFilter::sites([site]);
    let done = cols[0].n_seqs as usize;
    let pb = indicatif::ProgressBar::new((contexts.len() * args.ctx_len) as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "features [{bar:30}] {pos}/{len} tokens, {per_sec} ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_position((done * args.ctx_len) as u64);
    let (mut t_forward, mut t_rest) = (0.0f64, 0.0f64);
    let mut n_tok = 0usize;
    for (bi, chunk) in contexts[done..].chunks(args.batch).enumerate() {
        let t0 = Instant::now();
        let fwd = lm.model.forward(&Batch::new(chunk.to_vec())?, &filter)?;
        let t1 = Instant::now();
        for (l, col) in cols.iter_mut().enumerate() {
            let x = fwd.cache.get(HookName::Block(l, hook_site))?;
            let (b, t, d) = x.dims3()?;
            let x = x.reshape((b * t, d))?;
            let acts = match &tc {
                Some(tc) => tc.activate(l, &tc.pre_activations(l, &x)?)?,
                None => x.to_dtype(DType::F32)?,
            };
            let acts = acts.flatten_all()?.to_vec1::<f32>()?;
            let per = t * units;
            for (i, toks) in chunk.iter().enumerate() {
                // Special tokens (the BOS that separates packed documents, turn markers) are
                // control positions, not content: a unit's examples and density are over the
                // text, as Neuronpedia's dashboards leave BOS out. Many units fire on BOS,
                // which otherwise filled their top contexts with it.
                col.add_sequence_skipping(toks, &acts[i * per..(i + 1) * per], &|tok| {
                    special.contains(&tok)
                })?;
            }
        }
        t_forward += (t1 - t0).as_secs_f64();
        t_rest += t1.elapsed().as_secs_f64();
        n_tok += chunk.len() * args.ctx_len;
        pb.inc((chunk.len() * args.ctx_len) as u64);
        if (bi + 1) % args.checkpoint_every.max(1) == 0 {
            save_state(&state_path, &fingerprint, &cols)?;
        }
    }
    pb.finish_and_clear();
    if n_tok > 0 {
        eprintln!(
            "{n_tok} tokens: forward {:.0} tokens/s; with encoding and bookkeeping {:.0} tokens/s (+{:.0}% on the forward)",
            n_tok as f64 / t_forward,
            n_tok as f64 / (t_forward + t_rest),
            100.0 * t_rest / t_forward.max(1e-12)
        );
    }

    // Output logits of every unit: its write direction through the unembedding.
    let logits = unit_logits(&lm, tc.as_ref(), args.n_logits)?;
    let vocab: Vec<String> = lm
        .tokenizer
        .token_strings(&(0..cfg.d_vocab as u32).collect::<Vec<_>>())?;
    let tok = |t: u32| {
        vocab
            .get(t as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{t}"))
    };
    let set_id = match &tc {
        Some(t) => t.scan.clone(),
        None => format!(
            "{}/neurons",
            model_dir
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned())
        ),
    };
    let mut layers = Vec::with_capacity(n_layers);
    for (l, col) in cols.iter().enumerate() {
        let id = format!("{set_id}/layer_{l}");
        let details = (0..units)
            .map(|j| {
                let (top, bottom) = &logits[l][j];
                let meta = UnitMeta {
                    transcoder_id: &id,
                    index: j,
                    top_logits: top.iter().map(|&t| tok(t)).collect(),
                    bottom_logits: bottom.iter().map(|&t| tok(t)).collect(),
                };
                detail_json(col, j, &meta, &tok)
            })
            .collect();
        layers.push(details);
    }
    write_feature_dir(&out, &layers)?;
    // The same records as one table for pandas, next to the viewer's files.
    adag_features::table::write_table(&out, &layers)?;
    if state_path.exists() {
        std::fs::remove_file(&state_path)
            .with_context(|| format!("removing {}", state_path.display()))?;
    }
    let alive: usize = cols
        .iter()
        .map(|c| c.units.iter().filter(|u| u.n_active > 0).count())
        .sum();
    eprintln!(
        "wrote {} ({} layers × {units} units, {alive} ever active, {} contexts of {} tokens)",
        out.display(),
        n_layers,
        contexts.len(),
        args.ctx_len
    );
    Ok(())
}

fn load_state(path: &Path, fingerprint: &str, fresh: bool) -> Result<Option<Vec<Collector>>> {
    if fresh || !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a saved adag features state (delete it or pass --fresh)",
            path.display()
        )
    })?;
    if v["fingerprint"].as_str() != Some(fingerprint) {
        eprintln!(
            "{}: saved by a run with other settings; starting over",
            path.display()
        );
        return Ok(None);
    }
    let cols: Vec<Collector> =
        serde_json::from_value(v["collectors"].clone()).with_context(|| {
            format!(
                "{}: not a saved adag features state (delete it or pass --fresh)",
                path.display()
            )
        })?;
    Ok(Some(cols))
}

fn save_state(path: &Path, fingerprint: &str, cols: &[Collector]) -> Result<()> {
    let v = serde_json::json!({"fingerprint": fingerprint, "collectors": cols});
    adag_features::write::write_atomic(path, &serde_json::to_vec(&v)?)?;
    Ok(())
}

/// Per layer and unit, the `n` most promoted and most suppressed token ids: the unit's output
/// direction (a transcoder's decoder row — a CLT's last-layer decoder, as circuit-tracer does —
/// or a neuron's down-projection column) times the unembedding.
#[allow(clippy::type_complexity)]
fn unit_logits(
    lm: &LoadedModel,
    tc: Option<&TranscoderSet>,
    n: usize,
) -> Result<Vec<Vec<(Vec<u32>, Vec<u32>)>>> {
    let w = &lm.model.weights;
    let unembed = w.unembed.to_dtype(DType::F32)?;
    let mut out = Vec::new();
    for l in 0..lm.model.cfg.n_layers {
        let rows: Tensor = match tc {
            Some(tc) => {
                let dec = tc.layers[l].w_dec.load(unembed.device())?;
                match tc.kind {
                    TranscoderKind::PerLayer => dec,
                    TranscoderKind::CrossLayer => {
                        let n_out = dec.dim(1)?;
                        dec.narrow(1, n_out - 1, 1)?.squeeze(1)?
                    }
                }
            }
            None => w.blocks[l].mlp.down.weight.t()?,
        };
        let logits = rows.to_dtype(DType::F32)?.matmul(&unembed.t()?)?;
        let order = logits.arg_sort_last_dim(false)?.to_vec2::<u32>()?;
        out.push(
            order
                .into_iter()
                .map(|o| {
                    let k = n.min(o.len());
                    (
                        o[..k].to_vec(),
                        o[o.len() - k..].iter().rev().copied().collect(),
                    )
                })
                .collect(),
        );
    }
    Ok(out)
}
