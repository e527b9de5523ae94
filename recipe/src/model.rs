//! The base model's shape and its Hugging Face folder: a randomly initialised Qwen2 decoder
//! sized to the trained tokenizer, saved with `r1_model::weights::save` plus the tokenizer
//! files and a `generation_config.json`.

use std::path::Path;

use burn::tensor::backend::Backend;
use r1_model::weights::SaveOptions;
use r1_model::{CausalLm, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::RecipeError;

/// A Qwen2 shape; the vocabulary comes from the tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub max_position_embeddings: usize,
}

impl Default for ModelShape {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 384,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            // Six worked problems of `long_chain` and `solve` up to level 3 make sheets of
            // up to ~390 tokens.
            max_position_embeddings: 512,
        }
    }
}

impl ModelShape {
    /// The shape of an existing model.
    pub fn of(cfg: &ModelConfig) -> Self {
        Self {
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_layers: cfg.num_layers,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            max_position_embeddings: cfg.max_position_embeddings,
        }
    }

    /// The Qwen2 config for this shape with a tied head, `vocab_size` tokens and `eos` as the
    /// end-of-sequence id.
    pub fn config(&self, vocab_size: usize, eos: u32) -> Result<ModelConfig, RecipeError> {
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(RecipeError::Config(format!(
                "`model.hidden_size` {} must be a multiple of `model.num_heads` {}",
                self.hidden_size, self.num_heads
            )));
        }
        let cfg = ModelConfig::from_hf_json(&serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"],
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": 10000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true,
            "use_sliding_window": false,
            "bos_token_id": null,
            "eos_token_id": eos,
            "pad_token_id": eos,
        }))
        .map_err(|e| RecipeError::Config(format!("the `model` shape is not a valid Qwen2 config: {e}")))?;
        Ok(cfg)
    }
}

/// Saves `model` and the tokenizer files of `tokenizer_dir` as one Hugging Face folder, with a
/// `generation_config.json` that samples at temperature 1 and stops at EOS.
pub fn save_hf<B: Backend>(model: &CausalLm<B>, tokenizer_dir: &Path, out: &Path) -> Result<(), RecipeError> {
    r1_model::weights::save(model, out, &SaveOptions::default())?;
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let from = tokenizer_dir.join(name);
        if from.exists() && tokenizer_dir != out {
            std::fs::copy(&from, out.join(name)).map_err(|e| RecipeError::io(&from, e))?;
        }
    }
    let eos = model.config().eos_token_ids.first().copied();
    let generation = serde_json::json!({
        "eos_token_id": eos,
        "pad_token_id": eos,
        "do_sample": true,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 128,
    });
    let path = out.join("generation_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&generation).expect("json") + "\n")
        .map_err(|e| RecipeError::io(&path, e))
}
