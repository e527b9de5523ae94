//! Model configuration: what r1 reads from (and writes to) a Hugging Face `config.json`.
//!
//! Three architectures are supported, `Qwen2ForCausalLM`, `Qwen3ForCausalLM` (dense: per-head
//! RMSNorm on queries and keys, attention biases only with `attention_bias`) and
//! `LlamaForCausalLM`, in both the
//! older layout (`rope_theta`, `rope_scaling`, `torch_dtype` at top level, transformers 4.x) and
//! the newer one (`rope_parameters`, `dtype`, transformers 5.x). Keys r1 does not use are
//! kept and written back on save; a value that would change the maths and that r1 does not
//! implement (another activation, sliding-window attention, YaRN scaling...) is an error
//! naming it rather than a silently different model.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{ModelError, Result};

/// Decoder family. Qwen2 has biases on q/k/v; Qwen3 and Llama have them on q/k/v/o only
/// when `attention_bias` is set; Qwen3 normalises each head's queries and keys (RMSNorm over
/// `head_dim`) before the rotary embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    Qwen2,
    Qwen3,
    Llama,
}

impl Architecture {
    /// The `architectures` entry transformers expects.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Llama => "LlamaForCausalLM",
        }
    }

    fn model_type(self) -> &'static str {
        match self {
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Llama => "llama",
        }
    }
}

/// How rotary frequencies are scaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor` (equivalently, every frequency).
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

/// The resolved configuration of a decoder, independent of the JSON layout it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama with `attention_bias` only).
    pub o_bias: bool,
    /// Biases on the MLP projections (Llama's `mlp_bias`).
    pub mlp_bias: bool,
    /// RMSNorm over `head_dim` on each head's queries and keys, before RoPE (Qwen3).
    #[serde(default)]
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The dtype the checkpoint's weights are stored in (`float32`, `bfloat16`, `float16`).
    pub dtype: String,
    /// Every key of the original `config.json`, written back on save.
    #[serde(skip)]
    pub extra: Map<String, Value>,
}

impl ModelConfig {
    /// Reads `config.json` from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json { path, source })?;
        Self::from_hf_json(&value)
    }

    /// Parses a Hugging Face config, old or new layout.
    pub fn from_hf_json(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| ModelError::Config("the top level must be a JSON object".into()))?;
        let architecture = match obj.get("architectures").and_then(Value::as_array) {
            Some(a) if a.len() == 1 => match a[0].as_str().unwrap_or_default() {
                "Qwen2ForCausalLM" => Architecture::Qwen2,
                "Qwen3ForCausalLM" => Architecture::Qwen3,
                "LlamaForCausalLM" => Architecture::Llama,
                other => {
                    return Err(ModelError::Unsupported {
                        what: "architecture",
                        value: other.to_string(),
                        supported: "Qwen2ForCausalLM, Qwen3ForCausalLM (dense) and LlamaForCausalLM",
                    });
                }
            },
            _ => {
                return Err(ModelError::Config(
                    "`architectures` must list exactly one architecture, e.g. [\"Qwen2ForCausalLM\"]".into(),
                ));
            }
        };

        let hidden_size = req_usize(obj, "hidden_size")?;
        let num_heads = req_usize(obj, "num_attention_heads")?;
        let num_kv_heads = opt_usize(obj, "num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match opt_usize(obj, "head_dim")? {
            Some(d) => d,
            None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(ModelError::Config(format!(
                    "hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}; set `head_dim`"
                )));
            }
        };
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(ModelError::Config(format!(
                "num_attention_heads {num_heads} must be a multiple of num_key_value_heads {num_kv_heads}"
            )));
        }
        if head_dim % 2 != 0 {
            return Err(ModelError::Config(format!("head_dim {head_dim} must be even for rotary embeddings")));
        }

        let act = obj.get("hidden_act").and_then(Value::as_str).unwrap_or("silu");
        if act != "silu" {
            return Err(ModelError::Unsupported { what: "hidden_act", value: act.into(), supported: "silu" });
        }
        if obj.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err(ModelError::Unsupported {
                what: "use_sliding_window",
                value: "true".into(),
                supported: "full attention only (use_sliding_window: false)",
            });
        }
        if let Some(types) = obj.get("layer_types").and_then(Value::as_array)
            && let Some(other) = types.iter().find(|t| t.as_str() != Some("full_attention"))
        {
            return Err(ModelError::Unsupported {
                what: "layer type",
                value: other.to_string(),
                supported: "full_attention",
            });
        }
        if let Some(p) = obj.get("pretraining_tp").and_then(Value::as_u64)
            && p != 1
        {
            return Err(ModelError::Unsupported { what: "pretraining_tp", value: p.to_string(), supported: "1" });
        }

        // Rope: newer layout nests it under `rope_parameters`, older has `rope_theta` and
        // `rope_scaling` at the top.
        let rope_params = obj.get("rope_parameters").filter(|v| !v.is_null());
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .or_else(|| obj.get("rope_theta"))
            .map(|v| v.as_f64().ok_or_else(|| ModelError::Config("`rope_theta` must be a number".into())))
            .transpose()?
            .unwrap_or(10_000.0);
        let scaling_src = rope_params.or_else(|| obj.get("rope_scaling").filter(|v| !v.is_null()));
        let rope_scaling = match scaling_src {
            None => RopeScaling::Default,
            Some(s) => parse_rope_scaling(s)?,
        };

        let (qkv_bias, o_bias, mlp_bias) = match architecture {
            Architecture::Qwen2 => (true, false, false),
            Architecture::Qwen3 => {
                let ab = obj.get("attention_bias").and_then(Value::as_bool).unwrap_or(false);
                (ab, ab, false)
            }
            Architecture::Llama => {
                let ab = obj.get("attention_bias").and_then(Value::as_bool).unwrap_or(false);
                let mb = obj.get("mlp_bias").and_then(Value::as_bool).unwrap_or(false);
                (ab, ab, mb)
            }
        };

        let eos_token_ids = match obj.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a.iter().map(|x| token_id(x, "eos_token_id")).collect::<Result<_>>()?,
            Some(x) => vec![token_id(x, "eos_token_id")?],
        };
        let bos_token_id = match obj.get("bos_token_id") {
            None | Some(Value::Null) => None,
            Some(x) => Some(token_id(x, "bos_token_id")?),
        };
        let dtype = obj
            .get("dtype")
            .or_else(|| obj.get("torch_dtype"))
            .and_then(Value::as_str)
            .unwrap_or("float32")
            .to_string();

        let cfg = Self {
            architecture,
            vocab_size: req_usize(obj, "vocab_size")?,
            hidden_size,
            intermediate_size: req_usize(obj, "intermediate_size")?,
            num_layers: req_usize(obj, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            max_position_embeddings: opt_usize(obj, "max_position_embeddings")?.unwrap_or(4096),
            rope_theta,
            rope_scaling,
            rms_norm_eps: obj.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            tie_word_embeddings: obj.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm: architecture == Architecture::Qwen3,
            bos_token_id,
            eos_token_ids,
            dtype,
            extra: obj.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks sizes that would otherwise fail deep inside a tensor op.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
        ] {
            if v == 0 {
                return Err(ModelError::Config(format!("`{name}` must be positive")));
            }
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return Err(ModelError::Config("`rope_theta` must be positive".into()));
        }
        Ok(())
    }

    /// Heads of queries per key/value head.
    pub fn gqa_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// The config as transformers writes it (older layout, which transformers 4.x and 5.x
    /// both read), with every unknown key of the original kept.
    pub fn to_hf_json(&self, dtype: &str) -> Value {
        let mut obj = self.extra.clone();
        // Drop both layouts' rope keys; they are rewritten below from the resolved values.
        for k in ["rope_parameters", "rope_scaling", "rope_theta", "dtype", "torch_dtype"] {
            obj.remove(k);
        }
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let fields = json!({
            "architectures": [self.architecture.hf_name()],
            "model_type": self.architecture.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": dtype,
        });
        for (k, v) in fields.as_object().expect("object literal") {
            obj.insert(k.clone(), v.clone());
        }
        match self.architecture {
            Architecture::Llama => {
                obj.insert("attention_bias".into(), json!(self.qkv_bias));
                obj.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
            Architecture::Qwen3 => {
                obj.insert("attention_bias".into(), json!(self.qkv_bias));
            }
            Architecture::Qwen2 => {}
        }
        let scaling = match self.rope_scaling {
            RopeScaling::Default => Value::Null,
            other => serde_json::to_value(other).expect("plain struct"),
        };
        obj.insert("rope_scaling".into(), scaling);
        Value::Object(obj)
    }
}

fn parse_rope_scaling(s: &Value) -> Result<RopeScaling> {
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        s.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| ModelError::Config(format!("rope scaling `{kind}` needs a numeric `{k}`")))
    };
    Ok(match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: num("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(ModelError::Unsupported {
                what: "rope scaling type",
                value: other.into(),
                supported: "default, linear and llama3",
            });
        }
    })
}

fn token_id(v: &Value, key: &str) -> Result<u32> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| ModelError::Config(format!("`{key}` must be a token id or a list of them, got {v}")))
}

fn opt_usize(obj: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|x| Some(x as usize))
            .ok_or_else(|| ModelError::Config(format!("`{key}` must be a non-negative integer, got {v}"))),
    }
}

fn req_usize(obj: &Map<String, Value>, key: &str) -> Result<usize> {
    opt_usize(obj, key)?.ok_or_else(|| ModelError::Config(format!("missing `{key}`")))
}
