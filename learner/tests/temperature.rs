//! The temperature rule end to end: completions sampled at T = 0.7 carry log-probs under
//! softmax(logits / T), the learner scores them at the same T, and a GRPO step on those
//! on-policy samples sees a ratio of 1 on every token: π_θ / π_old, and the truncated
//! importance weight π_old / π_actor (`tis_cap`), which compares the learner's log-probs with
//! the actors'. No token is clipped even with a clip range of 1e-4, and the loss is exactly
//! −mean(advantage). A learner that scores at T = 1 instead (the bug TRL fixed in its issue
//! 4159) weighs the same samples by π₁ / π_0.7 and gets another loss.

use std::path::PathBuf;

use r1_learner::collective::SingleRank;
use r1_learner::grpo::GrpoConfig;
use r1_learner::optim::OptimConfig;
use r1_learner::trainer::{Rollout, Trainer};
use r1_model::{CpuTrainBackend, SamplingParams};

type B = CpuTrainBackend;

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
}

#[test]
fn on_policy_samples_have_ratio_one_at_the_sampling_temperature() {
    let dev = Default::default();
    let temperature = 0.7;
    let sampler = r1_model::load::<r1_model::CpuBackend>(&fixture(), &dev).unwrap();
    let prompts = vec![vec![3u32, 17, 40, 2], vec![5, 6, 7], vec![1, 2, 9, 11, 30]];
    let params = SamplingParams { temperature, max_new_tokens: 10, seed: 4, ..Default::default() };
    let out = r1_model::sample::generate(&sampler, &prompts, 2, &params, None, &dev, &mut |_| {}).unwrap();
    let mut rollouts = Vec::new();
    for (prompt, samples) in prompts.iter().zip(&out) {
        for (j, s) in samples.iter().enumerate() {
            rollouts.push(Rollout {
                prompt: prompt.clone(),
                completion: s.tokens.clone(),
                behaviour_logp: s.logprobs.clone(),
                advantage: if j == 0 { 1.0 } else { -0.5 },
            });
        }
    }
    let mean_adv = rollouts.iter().map(|r| r.advantage as f64).sum::<f64>() / rollouts.len() as f64;
    // A trust region of 1e-4: any token whose ratio is off by more is clipped and counted.
    let grpo =
        GrpoConfig { beta: 0.0, clip_eps_low: 1e-4, clip_eps_high: 1e-4, tis_cap: Some(1e6), ..GrpoConfig::default() };
    // (learner's sampling temperature, whether the ratio is 1)
    for (learner_t, ratio_one) in [(temperature, true), (1.0, false)] {
        let model = r1_model::load::<B>(&fixture(), &dev).unwrap();
        let mut t = Trainer::new(model, None, grpo.clone(), OptimConfig::default(), 8, dev)
            .unwrap()
            .with_sampling_temperature(learner_t);
        // off_policy: π_old is taken at the batch's start and weighed against the actors'.
        let report = t.grpo_step(&rollouts, true, &mut SingleRank).unwrap();
        if ratio_one {
            assert_eq!(report.clip_frac, 0.0, "T = {learner_t}: {report:?}");
            assert!(
                (report.loss + mean_adv).abs() < 1e-5,
                "T = {learner_t}: loss {} vs −mean(A) {}",
                report.loss,
                -mean_adv
            );
        } else {
            // The importance weights π_1 / π_0.7 are not 1: the loss is no longer −mean(A).
            assert!(
                (report.loss + mean_adv).abs() > 1e-3,
                "T = {learner_t}: the untempered learner should be off policy: {report:?}"
            );
        }
    }
}
