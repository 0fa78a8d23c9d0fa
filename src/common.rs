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

/// `--model`, `--dtype`, `--device`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// HuggingFace model directory (config.json, *.safetensors, tokenizer.json); defaults to
    /// the bundled demo model (models/demo).
    #[arg(long, short = 'm', default_value_os_t = default_model())]
    pub model: PathBuf,
    /// Dtype of weights and activations.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

impl ModelArgs {
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
