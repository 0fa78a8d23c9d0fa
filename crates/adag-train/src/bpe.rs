//! Byte-level BPE trained on the demo corpus with the `tokenizers` crate, saved as a standard
//! `tokenizer.json` + `tokenizer_config.json` that `transformers` loads as a fast tokenizer.
//!
//! Digits are split one per token before the byte-level step (as Llama 2 and Qwen do): addition
//! is then digit arithmetic the model can generalise, not a lookup over 100 number tokens.
//! A template post-processor prepends `<|bos|>`, so `tokenizer(text)` in `transformers` and
//! `encode(text, true)` in adag both start with BOS.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

use crate::error::{Error, Result};
use crate::io::write_atomic;

/// Beginning of sequence; id 0.
pub const BOS: &str = "<|bos|>";
/// End of sequence; id 1.
pub const EOS: &str = "<|eos|>";
/// Padding; id 2.
pub const PAD: &str = "<|pad|>";

/// Trains a byte-level BPE with `vocab_size` entries on `texts` and returns the
/// `tokenizer.json` text. Deterministic for a given input.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<String> {
    let tk = |e: tokenizers::Error| Error::Tokenizer(e.to_string());
    let pre = PreTokenizerWrapper::Sequence(Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]));
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .special_tokens(vec![(BOS, 0u32)])
        .build()
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::default()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(pre))
    .with_post_processor(Some(PostProcessorWrapper::Template(post)))
    .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())))
    .build()
    .map_err(tk)?;
    let specials = [BOS, EOS, PAD]
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut trainer: BpeTrainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    tokenizer.train(&mut trainer, texts.iter()).map_err(tk)?;
    tokenizer.to_string(true).map_err(tk)
}

/// `tokenizer_config.json` for the demo tokenizer: names the special tokens so that
/// `transformers` and adag's BOS policy agree.
pub fn tokenizer_config_json() -> String {
    serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": true,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 256
    })
    .to_string()
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
pub fn save_tokenizer(dir: &Path, tokenizer_json: &str) -> Result<()> {
    write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    write_atomic(
        &dir.join("tokenizer_config.json"),
        tokenizer_config_json().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_tokenizer_prepends_bos_and_splits_digits() {
        let texts: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "The capital of Texas is Austin. {}+{}={}.",
                    i % 90 + 10,
                    42,
                    i % 90 + 52
                )
            })
            .collect();
        let json = train_tokenizer(&texts, 300).unwrap();
        let tok = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(tok.token_to_id(BOS), Some(0));
        assert_eq!(tok.token_to_id(EOS), Some(1));
        let enc = tok.encode("36+59=95.", true).unwrap();
        assert_eq!(
            enc.get_tokens(),
            &[BOS, "3", "6", "+", "5", "9", "=", "9", "5", "."]
        );
        let enc = tok.encode("The capital of Texas is Austin.", true).unwrap();
        assert!(
            enc.get_tokens().contains(&"ĠAustin".to_string()),
            "{:?}",
            enc.get_tokens()
        );
    }
}
