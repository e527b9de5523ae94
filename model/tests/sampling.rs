//! Sampling controls: stop tokens, stop strings, seeds, top-k/top-p and their validation; the
//! CPU sampler (continuous batching, shared prompts, KV budget) against the Burn path.

use std::path::PathBuf;

use r1_model::sample::{generate, generate_burn};
use r1_model::{CpuBackend, FinishReason, SamplingParams, TextTokenizer};

type B = CpuBackend;

fn dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen2-tiny")
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 33, 2, 90, 11], vec![7, 8]]
}

#[test]
fn stop_tokens_and_strings_end_samples() {
    let model = r1_model::load::<B>(&dir(), &Default::default()).unwrap();
    let tok = TextTokenizer::from_dir(&dir()).unwrap();
    let greedy = SamplingParams { temperature: 0.0, max_new_tokens: 6, ..Default::default() };
    let base = generate(&model, &prompts(), 1, &greedy, None, &Default::default(), &mut |_| {}).unwrap();
    for (i, s) in base.iter().enumerate() {
        let g = &s[0].tokens;
        assert_eq!((g.len(), s[0].finish), (6, FinishReason::Length));
        // Stop at the third greedy token: the sample ends there (or earlier if it came before).
        let p = SamplingParams { stop_token_ids: vec![g[2]], ..greedy.clone() };
        let out = &generate(&model, &prompts(), 1, &p, None, &Default::default(), &mut |_| {}).unwrap()[i][0];
        let at = g.iter().position(|&t| t == g[2]).unwrap();
        assert_eq!((out.tokens.as_slice(), out.finish), (&g[..=at], FinishReason::Stop), "prompt {i}");
        // A stop string made of the text of the first four tokens ends the sample there.
        let text = tok.decode(&g[..4]).unwrap();
        let p = SamplingParams { stop_strings: vec![text.clone()], ..greedy.clone() };
        let out = &generate(&model, &prompts(), 1, &p, Some(&tok), &Default::default(), &mut |_| {}).unwrap()[i][0];
        assert_eq!(out.finish, FinishReason::StopString, "prompt {i}");
        assert!(out.tokens.len() <= 4 && tok.decode(&out.tokens).unwrap().contains(&text), "prompt {i}");
    }
}

#[test]
fn seeds_make_samples_reproducible_and_independent_of_the_batch() {
    let model = r1_model::load::<B>(&dir(), &Default::default()).unwrap();
    let p = SamplingParams { max_new_tokens: 8, seed: 11, top_k: 40, top_p: 0.95, ..Default::default() };
    let run = |prompts: &[Vec<u32>], max_batch| {
        generate(&model, prompts, 3, &SamplingParams { max_batch, ..p.clone() }, None, &Default::default(), &mut |_| {})
            .unwrap()
    };
    let a = run(&prompts(), 64);
    assert_eq!(a, run(&prompts(), 64), "same seed, same samples");
    // One prompt per chunk (max_batch 3) decodes in different batches: samples are unchanged.
    assert_eq!(a, run(&prompts(), 3));
    let other = generate(
        &model,
        &prompts(),
        3,
        &SamplingParams { seed: 12, ..p.clone() },
        None,
        &Default::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(a, other, "another seed, other samples");
    // The G samples of one prompt differ from each other.
    assert!(a[0][0].tokens != a[0][1].tokens || a[0][1].tokens != a[0][2].tokens);
    // top_k 1 is greedy whatever the temperature.
    let k1 = SamplingParams { top_k: 1, temperature: 1.5, ..p.clone() };
    let greedy = SamplingParams { temperature: 0.0, ..p.clone() };
    let g = |p: &SamplingParams| generate(&model, &prompts(), 1, p, None, &Default::default(), &mut |_| {}).unwrap();
    let (x, y) = (g(&k1), g(&greedy));
    assert_eq!(x[0][0].tokens, y[0][0].tokens);
}

#[test]
fn bad_requests_are_named() {
    let model = r1_model::load::<B>(&dir(), &Default::default()).unwrap();
    let ok = SamplingParams { max_new_tokens: 4, ..Default::default() };
    let cases: Vec<(Vec<Vec<u32>>, usize, SamplingParams, &str)> = vec![
        (prompts(), 1, SamplingParams { temperature: -1.0, ..ok.clone() }, "temperature -1"),
        (prompts(), 1, SamplingParams { top_p: 0.0, ..ok.clone() }, "top_p 0 must be in (0, 1]"),
        (prompts(), 1, SamplingParams { top_p: 1.01, ..ok.clone() }, "top_p 1.01"),
        (prompts(), 1, SamplingParams { max_new_tokens: 0, ..ok.clone() }, "max_new_tokens must be at least 1"),
        (prompts(), 0, ok.clone(), "n (samples per prompt) must be at least 1"),
        (vec![vec![]], 1, ok.clone(), "prompt 0 is empty"),
        (vec![vec![1], vec![320]], 1, ok.clone(), "prompt 1 has token id 320, outside the model's vocabulary of 320"),
        (
            vec![vec![1; 250]],
            1,
            SamplingParams { max_new_tokens: 7, ..ok.clone() },
            "exceeds the model's 256 positions",
        ),
        (
            prompts(),
            1,
            SamplingParams { stop_strings: vec!["x".into()], ..ok.clone() },
            "stop strings need a tokenizer",
        ),
        (prompts(), 1, SamplingParams { kv_budget_mib: Some(0), ..ok.clone() }, "kv_budget_mib must be at least 1"),
    ];
    for (prompts, n, p, frag) in cases {
        let err = generate(&model, &prompts, n, &p, None, &Default::default(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains(frag), "`{err}` lacks `{frag}`");
    }
    // Exactly at the position limit is fine.
    let p = SamplingParams { max_new_tokens: 6, temperature: 0.0, ..ok };
    assert!(generate(&model, &[vec![1; 250]], 1, &p, None, &Default::default(), &mut |_| {}).is_ok());
}

/// Prompts of mixed lengths, and stop tokens that end samples at mixed lengths.
fn mixed() -> (Vec<Vec<u32>>, SamplingParams) {
    let prompts: Vec<Vec<u32>> =
        (0..5).map(|i| (0..[3, 40, 1, 17, 9][i]).map(|j| ((i * 31 + j * 7) % 300 + 1) as u32).collect()).collect();
    let p = SamplingParams {
        max_new_tokens: 24,
        seed: 5,
        stop_token_ids: (0..320).filter(|t| t % 13 == 0).collect(),
        ..Default::default()
    };
    (prompts, p)
}

#[test]
fn the_cpu_sampler_draws_the_burn_paths_tokens_whatever_its_slots() {
    let model = r1_model::load::<B>(&dir(), &Default::default()).unwrap();
    let (prompts, p) = mixed();
    let keys: Vec<u64> = (0..prompts.len() as u64).map(|k| k * 7 + 3).collect();
    let dev = Default::default();
    for (n, top) in [(3, (0, 1.0)), (1, (40, 0.95))] {
        let p = SamplingParams { top_k: top.0, top_p: top.1, ..p.clone() };
        let reference = generate_burn(
            &model,
            &prompts,
            &keys,
            n,
            &SamplingParams { max_batch: 64, ..p.clone() },
            None,
            &dev,
            &mut |_| {},
        )
        .unwrap();
        let lengths: Vec<usize> = reference.iter().flatten().map(|s| s.tokens.len()).collect();
        assert!(lengths.iter().min() < lengths.iter().max(), "samples end at mixed lengths: {lengths:?}");
        // 1 slot (one sample at a time), 4 (groups split over steps), 64 (all at once).
        for max_batch in [1, 4, 64] {
            let mut steps = Vec::new();
            let out = r1_model::sample::generate_keyed(
                &model,
                &prompts,
                &keys,
                n,
                &SamplingParams { max_batch, ..p.clone() },
                None,
                &dev,
                &mut |k| steps.push(k),
            )
            .unwrap();
            assert!(steps.iter().all(|&k| k <= max_batch), "at most {max_batch} rows per step: {steps:?}");
            assert_eq!(steps.iter().sum::<usize>(), lengths.iter().sum::<usize>());
            for (g, (a, b)) in out.iter().zip(&reference).enumerate() {
                for (s, (x, y)) in a.iter().zip(b).enumerate() {
                    assert_eq!(
                        (&x.tokens, x.finish),
                        (&y.tokens, y.finish),
                        "n {n} max_batch {max_batch} prompt {g} sample {s}"
                    );
                    for (u, v) in x.logprobs.iter().zip(&y.logprobs) {
                        assert!((u - v).abs() < 1e-4, "log-prob {u} vs {v}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_kv_budget_limits_the_slots() {
    let model = r1_model::load::<B>(&dir(), &Default::default()).unwrap();
    // Prompts up to 200 tokens and 56 new ones: 255 positions of 512 bytes (2 layers × K and
    // V × 2 kv heads × 16 × f32) per sequence, so a 1 MiB cache holds 8 of the 10 sequences.
    let prompts: Vec<Vec<u32>> =
        (0..5).map(|i| (0..[200, 3, 120, 64, 9][i]).map(|j| ((i * 31 + j * 7) % 300 + 1) as u32).collect()).collect();
    let cfg = model.config();
    let per_seq = (200 + 55) * cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 4;
    assert_eq!((1 << 20) / per_seq, 8);
    let p = SamplingParams {
        max_new_tokens: 56,
        seed: 9,
        stop_token_ids: (0..320).filter(|t| t % 11 == 0).collect(),
        ..Default::default()
    };
    let run = |kv_budget_mib| {
        let mut widest = 0;
        let out = generate(
            &model,
            &prompts,
            2,
            &SamplingParams { kv_budget_mib, ..p.clone() },
            None,
            &Default::default(),
            &mut |k| widest = widest.max(k),
        )
        .unwrap();
        (out, widest)
    };
    let (all, widest_all) = run(None);
    assert_eq!(widest_all, 10);
    let (some, widest) = run(Some(1));
    assert_eq!(some, all, "fewer slots, same samples");
    assert_eq!(widest, 8, "rows in the widest step");
}
