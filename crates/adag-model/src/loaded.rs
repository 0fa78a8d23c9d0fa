//! A model directory loaded whole: weights plus tokenizer.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::tokenizer::ModelTokenizer;
use crate::transformer::{LoadOptions, Transformer};

/// The model and its tokenizer, as the CLI and the engines use them.
pub struct LoadedModel {
    /// Where it was loaded from.
    pub dir: PathBuf,
    /// The network.
    pub model: Transformer,
    /// Its tokenizer, chat template and special tokens.
    pub tokenizer: ModelTokenizer,
}

impl LoadedModel {
    /// Loads config, weights and tokenizer from `dir`.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let model = Transformer::load(dir, opts)?;
        let tokenizer = ModelTokenizer::from_dir(dir)?;
        Ok(LoadedModel {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
        })
    }
}
