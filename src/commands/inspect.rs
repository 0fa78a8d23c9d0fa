//! `adag inspect`: what a model directory contains, without loading the weights into memory.

use std::path::PathBuf;

use adag_model::config::RopeScaling;
use adag_model::weights::WeightFiles;
use adag_model::{ModelConfig, ModelTokenizer};
use anyhow::Result;
use serde_json::json;

/// Arguments of `adag inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HuggingFace model directory (default: the bundled demo model, models/demo).
    #[arg(long, short = 'm', default_value_os_t = crate::common::default_model())]
    model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `adag inspect`.
pub fn run(args: Args) -> Result<()> {
    let dir = crate::common::resolve_model(&args.model)?;
    let cfg = ModelConfig::from_dir(&dir)?;
    let files = WeightFiles::open(&dir)?;
    let tok = ModelTokenizer::from_dir(&dir)?;
    let policy = tok.bos_policy();
    let sliding: Vec<usize> = cfg
        .sliding_window
        .iter()
        .enumerate()
        .filter(|(_, w)| w.is_some())
        .map(|(l, _)| l)
        .collect();
    let rope = match cfg.rope.scaling {
        RopeScaling::None => format!("theta {}", cfg.rope.theta),
        RopeScaling::Linear { factor } => format!("theta {}, linear ×{factor}", cfg.rope.theta),
        RopeScaling::Llama3 {
            factor,
            original_max_position_embeddings,
            ..
        } => {
            format!(
                "theta {}, llama3 ×{factor} (original context {original_max_position_embeddings})",
                cfg.rope.theta
            )
        }
    };
    let info = json!({
        "model": args.model.display().to_string(),
        "architecture": cfg.architecture.hf_name(),
        "d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_kv_heads, "d_head": cfg.d_head, "d_mlp": cfg.d_mlp, "d_vocab": cfg.d_vocab,
        "n_params": cfg.n_params(),
        "weight_files": files.n_files(),
        "dtype_on_disk": files.disk_dtypes(),
        "tied_embeddings": cfg.tie_embeddings,
        "rope": rope,
        "sliding_window_layers": sliding,
        "attn_softcap": cfg.attn_softcap, "final_softcap": cfg.final_softcap,
        "tokenizer": {
            "vocab_size": tok.vocab_size(),
            "bos": policy.bos_token.as_ref().map(|(t, i)| json!({"token": t, "id": i})),
            "tokenizer_adds_bos": policy.tokenizer_adds_bos,
            "eos": tok.eos_token().map(|(t, i)| json!({"token": t, "id": i})),
            "pad": tok.pad_token().map(|(t, i)| json!({"token": t, "id": i})),
            "chat_template": tok.has_chat_template(),
        },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let dtypes: Vec<String> = files
        .disk_dtypes()
        .iter()
        .map(|(d, n)| format!("{d} ×{n}"))
        .collect();
    println!("model         {}", args.model.display());
    println!("architecture  {}", cfg.architecture.hf_name());
    println!("parameters    {:.3}M", cfg.n_params() as f64 / 1e6);
    println!(
        "sizes         d_model {}, layers {}, heads {} (kv {}), d_head {}, d_mlp {}, vocab {}",
        cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    );
    println!(
        "weights       {} file(s); on disk {}",
        files.n_files(),
        dtypes.join(", ")
    );
    println!(
        "embeddings    {}",
        if cfg.tie_embeddings {
            "tied (unembedding = embedding)"
        } else {
            "untied"
        }
    );
    println!("rope          {rope}");
    if !sliding.is_empty() {
        println!(
            "sliding       window {:?} on layers {sliding:?}",
            cfg.sliding_window.iter().flatten().next()
        );
    }
    if cfg.attn_softcap.is_some() || cfg.final_softcap.is_some() {
        println!(
            "soft-caps     attention {:?}, final {:?}",
            cfg.attn_softcap, cfg.final_softcap
        );
    }
    let show =
        |t: Option<(String, u32)>| t.map_or("none".to_string(), |(s, i)| format!("{s} ({i})"));
    println!("tokenizer     vocab {}", tok.vocab_size());
    println!(
        "  BOS         {}; {}",
        show(policy.bos_token.clone()),
        if policy.tokenizer_adds_bos {
            "added by the tokenizer when encoding a prompt"
        } else {
            "not added by the tokenizer"
        }
    );
    println!("  EOS         {}", show(tok.eos_token()));
    println!("  pad         {}", show(tok.pad_token()));
    println!(
        "  chat        {}",
        if tok.has_chat_template() {
            "template present (use --chat)"
        } else {
            "no chat template"
        }
    );
    Ok(())
}
