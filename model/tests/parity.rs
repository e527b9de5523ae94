//! Parity with Hugging Face transformers on the committed random-weight checkpoints
//! (`fixtures/make_fixtures.py` made them and their reference numbers).

use std::path::PathBuf;

use burn::tensor::Tensor;
use r1_model::batch::PaddedBatch;
use r1_model::{CausalLm, CpuBackend, SamplingParams, logprobs, sample};
use safetensors::SafeTensors;

type B = CpuBackend;

const FIXTURES: &[&str] = &["qwen2-tiny", "llama-tiny", "qwen3-tiny"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Reference {
    ids: Vec<Vec<u32>>,
    logits: Vec<Vec<f32>>,
    logprobs: Vec<Vec<f32>>,
    greedy: Vec<Vec<u32>>,
}

fn reference(name: &str) -> Reference {
    let bytes = std::fs::read(fixture(name).join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |k: String| -> Vec<f32> {
        st.tensor(&k).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let ints = |k: String| -> Vec<u32> {
        st.tensor(&k)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    let n = st.names().iter().filter(|k| k.starts_with("ids.")).count();
    Reference {
        ids: (0..n).map(|i| ints(format!("ids.{i}"))).collect(),
        logits: (0..n).map(|i| f32s(format!("logits.{i}"))).collect(),
        logprobs: (0..n).map(|i| f32s(format!("logprobs.{i}"))).collect(),
        greedy: (0..n).map(|i| ints(format!("greedy.{i}"))).collect(),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn load(name: &str) -> CausalLm<B> {
    r1_model::load::<B>(&fixture(name), &Default::default()).unwrap()
}

#[test]
fn logits_match_transformers_in_one_padded_batch() {
    for name in FIXTURES {
        let model = load(name);
        let r = reference(name);
        let dev = Default::default();
        let refs: Vec<&[u32]> = r.ids.iter().map(|s| s.as_slice()).collect();
        let batch = PaddedBatch::new(&refs, 0);
        let hidden = model.forward(batch.tokens(&dev), batch.positions(&dev), batch.causal_bias(&dev), None);
        let logits: Tensor<B, 3> = model.logits(hidden);
        let v = model.config().vocab_size;
        let host: Vec<f32> = logits.into_data().convert::<f32>().into_vec().unwrap();
        for (i, ids) in r.ids.iter().enumerate() {
            let pad = batch.pads[i];
            let row = &host[(i * batch.len + pad) * v..(i + 1) * batch.len * v];
            let err = max_abs_diff(row, &r.logits[i]);
            assert!(err <= 1e-4, "{name} sequence {i} ({} tokens): max |logit error| {err}", ids.len());
        }
    }
}

#[test]
fn logprobs_match_transformers() {
    for name in FIXTURES {
        let model = load(name);
        let r = reference(name);
        let got = logprobs::score(&model, &r.ids, 8, &Default::default()).unwrap();
        for (i, lp) in got.iter().enumerate() {
            let err = max_abs_diff(lp, &r.logprobs[i]);
            assert!(err <= 1e-4, "{name} sequence {i}: max |logprob error| {err}");
        }
    }
}

/// The trainers ask for the log-probs of the last columns only (the completions of
/// left-padded rows): they are the full result's last columns, bit for bit, value and entropy.
#[test]
fn tail_logprobs_are_the_last_columns_of_the_full_ones() {
    let dev = Default::default();
    for name in FIXTURES {
        let model = load(name);
        let r = reference(name);
        let refs: Vec<&[u32]> = r.ids.iter().map(Vec::as_slice).collect();
        let batch = PaddedBatch::new(&refs, 0);
        let t = batch.len - 1;
        let host = |x: Tensor<B, 2>| x.into_data().to_vec::<f32>().unwrap();
        for temperature in [1.0, 0.7] {
            let (full, full_h) = logprobs::token_logprobs_at(&model, &batch, &dev, temperature, true);
            let (full, full_h) = (host(full), host(full_h.unwrap()));
            for last in [1, t / 2, t] {
                let (tail, tail_h) = logprobs::token_logprobs_tail(&model, &batch, &dev, temperature, true, last);
                let (tail, tail_h) = (host(tail), host(tail_h.unwrap()));
                for row in 0..batch.batch {
                    let cols = row * t + t - last..(row + 1) * t;
                    let (got, want) = (&tail[row * last..(row + 1) * last], &full[cols.clone()]);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(got), bits(want), "{name} T {temperature} last {last} row {row}: log-probs");
                    let got_h = &tail_h[row * last..(row + 1) * last];
                    assert_eq!(
                        bits(got_h),
                        bits(&full_h[cols]),
                        "{name} T {temperature} last {last} row {row}: entropy"
                    );
                }
            }
        }
    }
}

/// The tail is 1 to `len − 1` columns: 0, or as many columns as the batch has, is refused.
#[test]
fn tail_logprobs_refuse_a_tail_outside_the_batch() {
    let model = load("qwen2-tiny");
    let batch = PaddedBatch::new(&[&[5, 17, 33, 2][..], &[7, 8]], 0);
    for last in [0, batch.len] {
        let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            logprobs::token_logprobs_tail(&model, &batch, &Default::default(), 1.0, false, last)
        }));
        let message = asked.expect_err("refused").downcast::<String>().map(|m| *m).unwrap_or_default();
        assert!(message.contains(&format!("asked for the last {last} log-probs of a 4-column batch")), "{message}");
    }
    let (ok, _) = logprobs::token_logprobs_tail(&model, &batch, &Default::default(), 1.0, false, batch.len - 1);
    assert_eq!(ok.dims(), [2, 3]);
}

#[test]
fn greedy_sampling_matches_transformers_generate() {
    for name in FIXTURES {
        let model = load(name);
        let r = reference(name);
        let params = SamplingParams { temperature: 0.0, max_new_tokens: 8, ..Default::default() };
        let out = sample::generate(&model, &r.ids, 2, &params, None, &Default::default(), &mut |_| {}).unwrap();
        for (i, samples) in out.iter().enumerate() {
            for s in samples {
                assert_eq!(s.tokens, r.greedy[i], "{name} prompt {i}");
            }
        }
    }
}

/// The temperature rule: a sampled token's log-prob is its log-prob under softmax(logits / T),
/// the distribution it was drawn from, and the learner's teacher-forced log-probs at the same T
/// equal it (1e-5), on the CPU sampler and on the Burn path alike. At T != 1 the untempered
/// log-probs are another number (the bug this rule fixes), which the test also checks.
#[test]
fn sampled_logprobs_equal_teacher_forced_logprobs_at_the_sampling_temperature() {
    let dev = Default::default();
    for name in FIXTURES {
        let model = load(name);
        let r = reference(name);
        let keys: Vec<u64> = (0..r.ids.len() as u64).collect();
        for temperature in [1.0f32, 0.7, 1.3] {
            let params = SamplingParams { temperature, top_p: 0.9, max_new_tokens: 12, seed: 7, ..Default::default() };
            let host = sample::generate(&model, &r.ids, 3, &params, None, &dev, &mut |_| {}).unwrap();
            let burn = sample::generate_burn(&model, &r.ids, &keys, 3, &params, None, &dev, &mut |_| {}).unwrap();
            for (path, out) in [("cpu sampler", &host), ("burn path", &burn)] {
                for (i, samples) in out.iter().enumerate() {
                    let seqs: Vec<Vec<u32>> =
                        samples.iter().map(|s| [r.ids[i].clone(), s.tokens.clone()].concat()).collect();
                    let tf = logprobs::score_at(&model, &seqs, 8, temperature, &dev).unwrap();
                    let raw = logprobs::score(&model, &seqs, 8, &dev).unwrap();
                    for ((s, lp), raw) in samples.iter().zip(&tf).zip(&raw) {
                        let tail = &lp[r.ids[i].len() - 1..];
                        let err = max_abs_diff(&s.logprobs, tail);
                        assert!(
                            err <= 1e-5,
                            "{name} {path} T={temperature} prompt {i}: sampled vs teacher-forced error {err}"
                        );
                        let untempered = max_abs_diff(&s.logprobs, &raw[r.ids[i].len() - 1..]);
                        if temperature != 1.0 {
                            assert!(
                                untempered > 1e-3,
                                "{name} {path} T={temperature}: untempered log-probs agree ({untempered})"
                            );
                        }
                    }
                }
            }
        }
    }
}
