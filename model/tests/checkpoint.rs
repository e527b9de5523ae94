//! Saving and loading checkpoints: round trips in every dtype and layout, HF naming, and
//! clear errors for broken folders.

use std::path::{Path, PathBuf};

use r1_model::weights::{self, SaveDtype, SaveOptions};
use r1_model::{CausalLm, CpuBackend, logprobs};

type B = CpuBackend;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tensor_names(dir: &Path) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("model") && name.ends_with(".safetensors") {
            let bytes = std::fs::read(&p).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            out.extend(st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())));
        }
    }
    out.sort();
    out
}

fn probe(model: &CausalLm<B>) -> Vec<f32> {
    let seqs = vec![vec![1, 5, 9, 33, 2, 7], vec![4, 4, 8]];
    logprobs::score(model, &seqs, 4, &Default::default()).unwrap().concat()
}

#[test]
fn save_load_round_trips() {
    // (fixture, dtype, shard bytes, tolerance on log-probs after the round trip)
    let cases = [
        ("qwen2-tiny", SaveDtype::F32, None, 0.0),
        ("qwen2-tiny", SaveDtype::Bf16, Some(50_000), 0.05),
        ("llama-tiny", SaveDtype::F32, Some(100_000), 0.0),
        ("llama-tiny", SaveDtype::Bf16, None, 0.0), // its weights are bf16 already: exact
        ("llama-tiny", SaveDtype::F16, None, 0.05),
        ("qwen3-tiny", SaveDtype::F32, None, 0.0),
        ("qwen3-tiny", SaveDtype::Bf16, None, 0.05),
    ];
    for (name, dtype, shard, tol) in cases {
        let dev = Default::default();
        let model = weights::load::<B>(&fixture(name), &dev).unwrap();
        let out = tempfile::tempdir().unwrap();
        weights::save(&model, out.path(), &SaveOptions { dtype, max_shard_bytes: shard }).unwrap();
        assert_eq!(out.path().join("model.safetensors.index.json").exists(), shard.is_some(), "{name} {dtype:?}");
        // Same names and HF shapes as the checkpoint transformers wrote.
        assert_eq!(tensor_names(out.path()), tensor_names(&fixture(name)), "{name} {dtype:?}");
        let back = weights::load::<B>(out.path(), &dev).unwrap();
        let (a, b) = (probe(&model), probe(&back));
        let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(err <= tol, "{name} {dtype:?}: round-trip log-prob error {err} > {tol}");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["torch_dtype"], dtype.hf_name());
    }
}

#[test]
fn broken_checkpoints_are_named() {
    let dev = Default::default();
    let model = weights::load::<B>(&fixture("qwen2-tiny"), &dev).unwrap();
    type Break = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "no weights",
            Box::new(|d: &Path| std::fs::remove_file(d.join("model.safetensors")).unwrap()),
            "has neither model.safetensors nor model.safetensors.index.json",
        ),
        (
            "truncated file",
            Box::new(|d: &Path| {
                let p = d.join("model.safetensors");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            }),
            "is not a valid safetensors file",
        ),
        (
            "wrong shape",
            Box::new(|d: &Path| {
                let p = d.join("config.json");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"intermediate_size\": 176", "\"intermediate_size\": 170");
                std::fs::write(&p, t).unwrap();
            }),
            "has shape [176, 64], config.json implies [170, 64]",
        ),
        (
            "fewer layers in config",
            Box::new(|d: &Path| {
                let p = d.join("config.json");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1");
                std::fs::write(&p, t).unwrap();
            }),
            "tensor(s) r1's Qwen2ForCausalLM model does not use, e.g. `model.layers.1",
        ),
        (
            "more layers in config",
            Box::new(|d: &Path| {
                let p = d.join("config.json");
                let t = std::fs::read_to_string(&p)
                    .unwrap()
                    .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
                std::fs::write(&p, t).unwrap();
            }),
            "tensor `model.layers.2.input_layernorm.weight` is missing",
        ),
        ("bad json", Box::new(|d: &Path| std::fs::write(d.join("config.json"), "{").unwrap()), "is not valid JSON"),
    ];
    for (name, breakit, frag) in cases {
        let dir = tempfile::tempdir().unwrap();
        weights::save(&model, dir.path(), &SaveOptions::default()).unwrap();
        breakit(dir.path());
        let err = weights::load::<B>(dir.path(), &dev).unwrap_err().to_string();
        assert!(err.contains(frag), "{name}: `{err}` lacks `{frag}`");
    }
}

#[test]
fn fresh_model_has_the_checkpoint_layout() {
    let dev = Default::default();
    let cfg = r1_model::ModelConfig::from_dir(&fixture("llama-tiny")).unwrap();
    let model = CausalLm::<B>::init(&cfg, &dev);
    let out = tempfile::tempdir().unwrap();
    weights::save(&model, out.path(), &SaveOptions::default()).unwrap();
    assert_eq!(tensor_names(out.path()), tensor_names(&fixture("llama-tiny")));
    assert!(probe(&model).iter().all(|x| x.is_finite()));
}
