//! Named model shapes for benchmarks with random weights.

use clap::ValueEnum;
use r1_model::ModelConfig;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// Qwen2.5-0.5B: 24 layers, hidden 896, 14 heads / 2 kv heads, vocab 151936 (494M params)
    #[value(name = "qwen2.5-0.5b")]
    Qwen25_05b,
    /// A laptop-sized Qwen2: 4 layers, hidden 256, 4 heads / 2 kv heads, vocab 8192
    Small,
}

impl Shape {
    pub fn config(self) -> ModelConfig {
        let (vocab, hidden, inter, layers, heads, kv) = match self {
            Self::Qwen25_05b => (151_936, 896, 4864, 24, 14, 2),
            Self::Small => (8192, 256, 768, 4, 4, 2),
        };
        ModelConfig::from_hf_json(&json!({
            "architectures": ["Qwen2ForCausalLM"], "vocab_size": vocab, "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "max_position_embeddings": 32768, "rope_theta": 1e6,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
        }))
        .expect("built-in shapes are valid")
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Qwen25_05b => "qwen2.5-0.5b",
            Self::Small => "small",
        }
    }
}
