//! Several optimizer steps per rollout batch (`minibatches_per_batch` × `epochs_per_batch`)
//! against PyTorch (`learner/reference/minibatch_reference.py`): π_old fixed at the batch's
//! start, truncated importance weights on a batch mixing stale and fresh rows, clipping
//! and AdamW, on the real decoder.

mod common;

use std::path::PathBuf;

use common::{Checker, golden};
use r1_learner::collective::SingleRank;
use r1_learner::grpo::GrpoConfig;
use r1_learner::optim::OptimConfig;
use r1_learner::trainer::{Rollout, TrainError, Trainer};
use r1_model::{CausalLm, CpuBackend, CpuTrainBackend};
use serde_json::Value;

type B = CpuTrainBackend;

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn rollouts(g: &Value) -> Vec<Rollout> {
    g["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Rollout {
            prompt: u32s(&r["prompt"]),
            completion: u32s(&r["completion"]),
            behaviour_logp: f32s(&r["behaviour_logp"]),
            advantage: r["advantage"].as_f64().unwrap() as f32,
        })
        .collect()
}

fn trainer(g: &Value, minibatches: usize, epochs: usize) -> Trainer<B> {
    let c = &g["config"];
    let f = |k: &str| c[k].as_f64().unwrap();
    let dev = Default::default();
    let model = r1_model::load::<B>(&fixture(), &dev).unwrap();
    let reference = r1_model::load::<CpuBackend>(&fixture(), &dev).unwrap();
    let grpo = GrpoConfig {
        clip_eps_low: f("clip_eps_low"),
        clip_eps_high: f("clip_eps_high"),
        beta: f("beta"),
        tis_cap: Some(f("tis_cap")),
        log_ratio_clamp: f("log_ratio_clamp"),
        ..GrpoConfig::default()
    };
    let optim = OptimConfig {
        lr: f("lr"),
        beta1: f("beta1"),
        beta2: f("beta2"),
        eps: f("adam_eps"),
        weight_decay: f("weight_decay"),
        max_grad_norm: Some(f("max_grad_norm")),
        ..OptimConfig::default()
    };
    Trainer::new(model, Some(reference), grpo, optim, 2, dev).unwrap().with_steps_per_batch(minibatches, epochs)
}

/// log-probs of each rollout's completion under `model`, one sequence at a time.
fn completion_logp(model: &CausalLm<CpuBackend>, r: &Rollout) -> Vec<f64> {
    let seq = [r.prompt.as_slice(), &r.completion].concat();
    let batch = r1_model::batch::PaddedBatch::padded_to(&[seq.as_slice()], 0, seq.len());
    let logp = r1_model::logprobs::token_logprobs(model, &batch, &Default::default());
    let v: Vec<f32> = logp.into_data().convert::<f32>().to_vec().unwrap();
    let start = r.prompt.len() - 1;
    v[start..start + r.completion.len()].iter().map(|&x| x as f64).collect()
}

#[test]
fn minibatch_epochs_match_pytorch() {
    let g = golden("minibatch_golden.json");
    let c = &g["config"];
    let (m, e) = (c["minibatches"].as_u64().unwrap() as usize, c["epochs"].as_u64().unwrap() as usize);
    let rollouts = rollouts(&g);
    let mut t = trainer(&g, m, e);
    let report = t.grpo_step(&rollouts, true, &mut SingleRank).unwrap();
    let steps = g["steps"].as_array().unwrap();
    assert_eq!(report.optimizer_steps as usize, steps.len());
    assert_eq!(t.optim().steps() as usize, steps.len(), "one optimizer step per minibatch and epoch");
    let mean = |k: &str| steps.iter().map(|s| s[k].as_f64().unwrap()).sum::<f64>() / steps.len() as f64;
    let mut check = Checker::default();
    check.check("mean loss over the steps", &[report.loss], &[mean("loss")], 1e-4);
    check.check("mean grad norm over the steps", &[report.grad_norm], &[mean("grad_norm")], 1e-4);
    let model = t.inference_model();
    for (i, (r, want)) in rollouts.iter().zip(g["final_logp"].as_array().unwrap()).enumerate() {
        let want: Vec<f64> = want.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        check.check(&format!("rollout {i}: log-probs after the batch"), &completion_logp(&model, r), &want, 2e-4);
    }
    check.finish();
}

/// The same batch as one step against as several: the updates differ (the extra steps act);
/// minibatches of unequal size are taken, and more minibatches than rollouts are refused.
#[test]
fn steps_per_batch_act_and_are_checked() {
    let g = golden("minibatch_golden.json");
    let rollouts = rollouts(&g);
    let after = |m: usize, e: usize| {
        let mut t = trainer(&g, m, e);
        t.grpo_step(&rollouts, true, &mut SingleRank).unwrap();
        completion_logp(&t.inference_model(), &rollouts[2])
    };
    let one = after(1, 1);
    let four = after(2, 2);
    let moved = one.iter().zip(&four).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-4, "four steps moved the policy as far as one: {moved}");

    let mut t = trainer(&g, 4, 1);
    t.grpo_step(&rollouts, true, &mut SingleRank).unwrap();
    assert_eq!(t.optim().steps(), 4, "minibatches of 1, 2, 1 and 2 rows");
    let mut t = trainer(&g, 6, 1);
    t.grpo_step(&rollouts, true, &mut SingleRank).unwrap();
    let mut t = trainer(&g, 7, 1);
    let err = t.grpo_step(&rollouts, true, &mut SingleRank).unwrap_err();
    assert!(matches!(err, TrainError::Minibatches { rows: 6, minibatches: 7 }), "{err}");
    assert!(err.to_string().contains("minibatches_per_batch"), "{err}");
}
