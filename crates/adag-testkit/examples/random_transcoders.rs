//! Writes a random transcoder set in circuit-tracer's native format, sized for a model.
//!
//! ```text
//! cargo run -p adag-testkit --example random_transcoders -- OUT_DIR MODEL_DIR [plt|clt] [D_TC] [SEED]
//! ```
//! Used for `fixtures/transcoders/*` (committed) and for benchmarks. `model_name` in the written
//! config.yaml is MODEL_DIR relative to OUT_DIR's parent... as given, so keep both relative to the
//! repository root and pass paths accordingly.

use std::path::PathBuf;

use adag_testkit::transcoders::{write_random_transcoders, RandomSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, model, rest @ ..] = &args[..] else {
        return Err("usage: random_transcoders OUT_DIR MODEL_DIR [plt|clt] [D_TC] [SEED]".into());
    };
    let cfg = adag_model::ModelConfig::from_dir(model.as_ref())?;
    let clt = rest.first().map(|s| s == "clt").unwrap_or(false);
    let d_tc = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let seed = rest.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let out = PathBuf::from(out);
    let spec = RandomSpec {
        cross_layer: clt,
        n_layers: cfg.n_layers,
        d_model: cfg.d_model,
        d_tc,
        activation: if clt {
            "relu".into()
        } else {
            "jump_relu".into()
        },
        k: 0,
        skip: !clt,
        input_hook: "mlp.hook_in".into(),
        output_hook: "hook_mlp_out".into(),
        density: 0.08,
        seed,
    };
    write_random_transcoders(&out, &spec)?;
    // Point model_name at the model, relative to the transcoder directory.
    let rel = pathdiff(
        &std::fs::canonicalize(model)?,
        &std::fs::canonicalize(&out)?,
    );
    let cfg_path = out.join("config.yaml");
    let mut yaml = std::fs::read_to_string(&cfg_path)?;
    yaml.push_str(&format!("model_name: {}\n", rel.display()));
    std::fs::write(cfg_path, yaml)?;
    println!(
        "wrote {} ({} layers × {d_tc} features)",
        out.display(),
        cfg.n_layers
    );
    Ok(())
}

/// `target` relative to `base`.
fn pathdiff(target: &std::path::Path, base: &std::path::Path) -> PathBuf {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}
