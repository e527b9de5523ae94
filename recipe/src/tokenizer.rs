//! A byte-level BPE tokenizer trained by r1 on the recipe's text, in Qwen2's layout.
//!
//! The pipeline is Qwen2's: its split regex (each digit is its own piece, so numbers are read
//! digit by digit, see [`SPLIT`]), byte-level mapping without a prefix space, byte-level decoding. The
//! initial alphabet is all 256 bytes, so any text encodes; merges are learnt from the corpus
//! up to the configured vocabulary. `<|endoftext|>` is the special end-of-sequence (and
//! padding) token; `<think>`, `</think>`, `<answer>` and `</answer>` are added (non-special)
//! tokens, so each tag is one token and survives `skip_special_tokens` decoding.
//!
//! Output: `tokenizer.json` and `tokenizer_config.json` (`PreTrainedTokenizerFast`, eos and pad
//! named), which `r1_model::TextTokenizer` and transformers' `AutoTokenizer` both load.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::RecipeError;

/// The end-of-sequence and padding token.
pub const EOS: &str = "<|endoftext|>";
/// The format tags, one token each.
pub const TAGS: [&str; 4] = ["<think>", "</think>", "<answer>", "</answer>"];
/// Qwen2's pre-tokenizer split pattern, exactly: transformers 5 loads a `qwen2` model's
/// tokenizer as `Qwen2Tokenizer`, which applies this pattern whatever `tokenizer.json` says, so
/// any other pattern would tokenize differently there (a space before a digit is its own token).
pub const SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Tokenizer training options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Most tokens, special and added ones included (at least 256 + 5). Training stops early
    /// when no pair occurs `min_frequency` times, so the vocabulary can come out smaller.
    pub vocab_size: usize,
    /// A merge must occur at least this often.
    pub min_frequency: u64,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self { vocab_size: 512, min_frequency: 2 }
    }
}

fn err(e: impl std::fmt::Display) -> RecipeError {
    RecipeError::Tokenizer(e.to_string())
}

/// Trains the tokenizer on `texts`.
pub fn train<'a>(texts: impl Iterator<Item = &'a str> + Send, cfg: &TokenizerConfig) -> Result<Tokenizer, RecipeError> {
    let min = 256 + 1 + TAGS.len();
    if cfg.vocab_size < min {
        return Err(RecipeError::Config(format!(
            "`tokenizer.vocab_size` {} is below {min} (256 bytes, {EOS} and the four format tags)",
            cfg.vocab_size
        )));
    }
    let mut tokenizer = Tokenizer::new(BPE::default());
    let split = Split::new(SplitPattern::Regex(SPLIT.into()), SplitDelimiterBehavior::Isolated, false).map_err(err)?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, false, false)));
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(cfg.vocab_size - TAGS.len())
        .min_frequency(cfg.min_frequency)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer.train(&mut trainer, texts).map_err(err)?;
    let tags: Vec<AddedToken> = TAGS.iter().map(|t| AddedToken::from(*t, false)).collect();
    tokenizer.add_tokens(&tags);
    Ok(tokenizer)
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
pub fn save(tokenizer: &Tokenizer, dir: &Path, model_max_length: usize) -> Result<(), RecipeError> {
    std::fs::create_dir_all(dir).map_err(|e| RecipeError::io(dir, e))?;
    tokenizer.save(dir.join("tokenizer.json"), true).map_err(err)?;
    let cfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": null,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": false,
        "add_prefix_space": false,
    });
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).expect("json") + "\n")
        .map_err(|e| RecipeError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use r1_model::TextTokenizer;

    const CORPUS: &[&str] = &[
        "Question: Compute 47 + 8\nAnswer: 55",
        "A conversation between User and Assistant. User: What is 12 - 5. Assistant:<think> 12 - 5 = 7. </think> <answer> 7 </answer>",
        "Question: Find x if 3 * x + 4 = 19\nSolution: 3 * x = 19 - 4 = 15, x = 15 / 3 = 5. The answer is 5.",
    ];

    fn trained(vocab: usize) -> Tokenizer {
        let texts: Vec<&str> = CORPUS.iter().copied().cycle().take(300).collect();
        train(texts.into_iter(), &TokenizerConfig { vocab_size: vocab, min_frequency: 2 }).unwrap()
    }

    #[test]
    fn round_trips_text_and_keeps_tags_and_digits_whole() {
        let tok = trained(300);
        let dir = tempfile::tempdir().unwrap();
        save(&tok, dir.path(), 512).unwrap();
        let t = TextTokenizer::from_dir(dir.path()).unwrap();
        // (text, pieces that must be single tokens)
        let cases: [(&str, &[&str]); 4] = [
            ("<think> 123 + 4 </think> <answer> 127 </answer>", &["<think>", "</think>", "<answer>", "</answer>"]),
            ("Compute 9081 - 77", &["9", "0", "8", "1"]),
            ("unseen text: ünïcödé ✓ and\ttabs\n", &[]),
            ("<|endoftext|>", &["<|endoftext|>"]),
        ];
        for (text, whole) in cases {
            let ids = t.encode(text).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), text);
            for piece in whole {
                let id = t.token_id(piece).unwrap_or_else(|| panic!("{piece} is not a token"));
                assert!(ids.contains(&id), "{piece} is not one token in {text:?}: {ids:?}");
            }
        }
        // Numbers are read one digit at a time, as Qwen2 reads them.
        let ids = t.encode("x = 9081 + 77").unwrap();
        let pieces: Vec<String> = ids.iter().map(|&i| t.decode(&[i]).unwrap()).collect();
        assert_eq!(pieces, ["x", " =", " ", "9", "0", "8", "1", " +", " ", "7", "7"]);
        assert_eq!(t.eos_token_id(), t.token_id(EOS));
        assert_eq!(tok.get_vocab_size(true), 300);
    }

    #[test]
    fn vocabulary_size_is_checked_at_its_bound() {
        let texts = ["a b"; 4];
        let min = 256 + 1 + TAGS.len();
        for (vocab, ok) in [(min - 1, false), (min, true)] {
            let got = train(texts.iter().copied(), &TokenizerConfig { vocab_size: vocab, min_frequency: 1 });
            assert_eq!(got.is_ok(), ok, "vocab {vocab}: {got:?}");
        }
    }

    #[test]
    fn training_is_deterministic() {
        let a = trained(290).to_string(false).unwrap();
        let b = trained(290).to_string(false).unwrap();
        assert_eq!(a, b);
    }
}
