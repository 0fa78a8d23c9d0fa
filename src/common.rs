//! Options shared by several subcommands.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};

/// Activation dtype.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DtypeArg {
    /// 32-bit float (exact; the CPU default).
    F32,
    /// bfloat16 (GPU).
    Bf16,
    /// float16 (GPU).
    F16,
}

impl From<DtypeArg> for DType {
    fn from(d: DtypeArg) -> DType {
        match d {
            DtypeArg::F32 => DType::F32,
            DtypeArg::Bf16 => DType::BF16,
            DtypeArg::F16 => DType::F16,
        }
    }
}

/// Where tensors live.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DeviceArg {
    /// CPU (always available).
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// `--model`, `--dtype`, `--device` of the commands whose model is their subject (`run`,
/// `attribute`, `intervene`, `serve-llm`).
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// HuggingFace model directory (config.json, *.safetensors, tokenizer.json), hub id
    /// (`org/name[@rev]`) or `hf://` URI; default: the bundled demo model (models/demo), or
    /// with transcoders, their config's `model_name`.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
}

impl ModelArgs {
    /// The model directory: `--model` resolved (hub references fetched), or the demo model.
    pub fn model_dir(&self) -> Result<PathBuf> {
        match &self.model {
            Some(m) => resolve_model(m),
            None => Ok(default_model()),
        }
    }

    /// The load options these flags describe.
    pub fn load_options(&self) -> Result<adag_model::LoadOptions> {
        self.load.load_options()
    }
}

/// `--dtype`, `--device`: how every command that loads a model loads it. Commands whose
/// `--model` defaults to something of their own (a circuit's recorded model, the transcoders'
/// `model_name`) flatten this beside their own `--model`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Dtype of weights and activations.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

impl LoadArgs {
    /// The load options these flags describe.
    pub fn load_options(&self) -> Result<adag_model::LoadOptions> {
        Ok(adag_model::LoadOptions {
            dtype: self.dtype.into(),
            device: device(self.device)?,
        })
    }
}

/// The bundled demo model (`models/demo`), the default of every `--model`. When it cannot be
/// found the relative path is returned, and loading it fails naming that path.
pub fn default_model() -> PathBuf {
    adag_train::bundle::default_model_dir()
        .unwrap_or_else(|_| PathBuf::from(adag_train::bundle::BUNDLE_REL))
}

/// Opens the requested device, or says why it cannot.
pub fn device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device cuda: this adag was built without CUDA support (rebuild with `--features cuda`)");
            }
            Ok(Device::new_cuda(0)?)
        }
    }
}

/// Escapes control characters so a token prints on one line.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '\n' => "\\n".chars().collect::<Vec<_>>(),
            '\t' => "\\t".chars().collect(),
            '\r' => "\\r".chars().collect(),
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

/// `--model`: a local directory as is, or a hub reference (`org/name[@rev]`, `hf://…`) fetched
/// into the HF cache and returned as its snapshot folder ([`adag_hub::resolve_model`]).
pub fn resolve_model(arg: &std::path::Path) -> Result<PathBuf> {
    let text = arg.to_string_lossy();
    adag_hub::resolve_model(&text).map_err(|e| anyhow::anyhow!(e).context(format!("model {text}")))
}

/// `--transcoders`: a local directory or config.yaml, a preset name (`adag presets`), or a hub
/// reference ([`adag_hub::resolve_transcoders`]).
pub fn resolve_transcoders(arg: &std::path::Path) -> Result<PathBuf> {
    let text = arg.to_string_lossy();
    adag_hub::resolve_transcoders(&text)
        .map_err(|e| anyhow::anyhow!(e).context(format!("transcoders {text}")))
}

/// Loads a transcoder set whose `transcoders:` list may name `hf://` files (fetched through the
/// HF cache).
pub fn load_transcoders(
    dir: &std::path::Path,
    device: &Device,
) -> Result<adag_engine::TranscoderSet> {
    let resolve = adag_hub::listed_file_resolver();
    Ok(adag_engine::TranscoderSet::load_with(
        dir, device, &resolve,
    )?)
}
