//! `config.json` parsing: both layouts, both architectures, and a clear error for each
//! unsupported option.

use r1_model::ModelConfig;
use r1_model::config::{Architecture, RopeScaling};
use serde_json::{Value, json};

fn base(arch: &str) -> Value {
    json!({
        "architectures": [arch], "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v.as_object_mut().unwrap().insert(key.into(), val);
    v
}

/// Each case: a config and either the expected (architecture, theta, scaling, tied, qkv bias,
/// dtype) or a fragment of the error message.
#[test]
fn parses_or_names_the_problem() {
    type Want = Result<(Architecture, f64, RopeScaling, bool, bool, &'static str), &'static str>;
    let q = || base("Qwen2ForCausalLM");
    let l = || base("LlamaForCausalLM");
    let cases: Vec<(&str, Value, Want)> = vec![
        ("qwen2 defaults", q(), Ok((Architecture::Qwen2, 10000.0, RopeScaling::Default, false, true, "float32"))),
        (
            "old layout",
            with(with(q(), "rope_theta", json!(1e6)), "torch_dtype", json!("bfloat16")),
            Ok((Architecture::Qwen2, 1e6, RopeScaling::Default, false, true, "bfloat16")),
        ),
        (
            "new layout",
            with(
                with(q(), "rope_parameters", json!({"rope_type": "default", "rope_theta": 5e5})),
                "dtype",
                json!("float16"),
            ),
            Ok((Architecture::Qwen2, 5e5, RopeScaling::Default, false, true, "float16")),
        ),
        (
            "llama tied, no bias",
            with(l(), "tie_word_embeddings", json!(true)),
            Ok((Architecture::Llama, 10000.0, RopeScaling::Default, true, false, "float32")),
        ),
        (
            "llama attention_bias",
            with(l(), "attention_bias", json!(true)),
            Ok((Architecture::Llama, 10000.0, RopeScaling::Default, false, true, "float32")),
        ),
        (
            "old rope_scaling linear",
            with(l(), "rope_scaling", json!({"type": "linear", "factor": 2.0})),
            Ok((Architecture::Llama, 10000.0, RopeScaling::Linear { factor: 2.0 }, false, false, "float32")),
        ),
        (
            "qwen3: no bias, q/k norm",
            base("Qwen3ForCausalLM"),
            Ok((Architecture::Qwen3, 10000.0, RopeScaling::Default, false, false, "float32")),
        ),
        (
            "qwen3 attention_bias",
            with(base("Qwen3ForCausalLM"), "attention_bias", json!(true)),
            Ok((Architecture::Qwen3, 10000.0, RopeScaling::Default, false, true, "float32")),
        ),
        ("qwen3 moe", base("Qwen3MoeForCausalLM"), Err("unsupported architecture `Qwen3MoeForCausalLM`")),
        (
            "qwen3 sliding window",
            with(base("Qwen3ForCausalLM"), "use_sliding_window", json!(true)),
            Err("use_sliding_window"),
        ),
        ("unknown architecture", base("MistralForCausalLM"), Err("unsupported architecture `MistralForCausalLM`")),
        ("no architectures", json!({"vocab_size": 3}), Err("`architectures` must list exactly one")),
        ("gelu", with(q(), "hidden_act", json!("gelu")), Err("unsupported hidden_act `gelu`")),
        ("sliding window", with(q(), "use_sliding_window", json!(true)), Err("use_sliding_window")),
        ("sliding layer", with(q(), "layer_types", json!(["full_attention", "sliding_attention"])), Err("layer type")),
        (
            "yarn",
            with(q(), "rope_scaling", json!({"rope_type": "yarn", "factor": 4.0})),
            Err("rope scaling type `yarn`"),
        ),
        (
            "llama3 missing field",
            with(l(), "rope_scaling", json!({"rope_type": "llama3", "factor": 8.0})),
            Err("needs a numeric `low_freq_factor`"),
        ),
        ("bad gqa", with(q(), "num_key_value_heads", json!(3)), Err("multiple of num_key_value_heads 3")),
        (
            "missing vocab",
            {
                let mut v = q();
                v.as_object_mut().unwrap().remove("vocab_size");
                v
            },
            Err("missing `vocab_size`"),
        ),
        ("string size", with(q(), "hidden_size", json!("32")), Err("`hidden_size` must be a non-negative integer")),
        ("zero layers", with(q(), "num_hidden_layers", json!(0)), Err("`num_hidden_layers` must be positive")),
        ("bad eos", with(q(), "eos_token_id", json!("</s>")), Err("`eos_token_id` must be a token id")),
    ];
    for (name, cfg, want) in cases {
        let got = ModelConfig::from_hf_json(&cfg);
        match (got, want) {
            (Ok(c), Ok((arch, theta, scaling, tied, bias, dtype))) => {
                assert_eq!(
                    (c.architecture, c.rope_theta, c.rope_scaling, c.tie_word_embeddings, c.qkv_bias, c.dtype.as_str()),
                    (arch, theta, scaling, tied, bias, dtype),
                    "{name}"
                );
            }
            (Err(e), Err(frag)) => assert!(e.to_string().contains(frag), "{name}: error `{e}` lacks `{frag}`"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn written_config_reads_back_the_same() {
    for v in [
        with(base("Qwen2ForCausalLM"), "rope_parameters", json!({"rope_type": "default", "rope_theta": 1e6})),
        with(
            base("LlamaForCausalLM"),
            "rope_scaling",
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        ),
    ] {
        let c = ModelConfig::from_hf_json(&v).unwrap();
        let back = ModelConfig::from_hf_json(&c.to_hf_json("bfloat16")).unwrap();
        assert_eq!(ModelConfig { dtype: c.dtype.clone(), extra: c.extra.clone(), ..back }, c);
    }
}
