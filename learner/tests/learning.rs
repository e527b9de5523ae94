//! The losses point the right way: a few steps on a toy policy move it towards reward
//! (GRPO) or towards the data (SFT). The golden tests check the numbers; this checks the sign.

mod common;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use common::*;
use r1_learner::grpo::{Aggregation, GrpoBatch, GrpoConfig, group_advantages, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_learner::sft::sft_loss_from_logprobs;

const V: usize = 4;

/// A one-step "language model": a distribution over V answers.
#[derive(Module, Debug)]
struct Bandit<B: Backend> {
    logits: Param<Tensor<B, 1>>,
}

impl<B: Backend> Bandit<B> {
    fn new() -> Self {
        Self { logits: Param::from_tensor(Tensor::zeros([V], &Default::default())) }
    }

    /// log π(answer) for each answer, as [n, 1] (one completion token per sample).
    fn logp(&self, answers: &[usize]) -> Tensor<B, 2> {
        let idx: Vec<i64> = answers.iter().map(|&a| a as i64).collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [answers.len()]), &Default::default());
        log_softmax(self.logits.val(), 0).select(0, idx).unsqueeze_dim(1)
    }

    fn probs(&self) -> Vec<f64> {
        values(burn::tensor::activation::softmax(self.logits.val(), 0))
    }
}

/// Inverse-CDF sampling with a xorshift generator.
fn sample(probs: &[f64], n: usize, state: &mut u64) -> Vec<usize> {
    (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
            let mut acc = 0.0;
            probs
                .iter()
                .position(|p| {
                    acc += p;
                    u < acc
                })
                .unwrap_or(V - 1)
        })
        .collect()
}

#[test]
fn grpo_moves_the_policy_towards_reward_under_every_aggregation() {
    // Answer 0 is right (reward 1), answer 1 half right, the others wrong.
    let reward = |a: usize| [1.0, 0.5, 0.0, 0.0][a];
    let (groups, g) = (4, 8);
    for aggregation in [Aggregation::SeqMeanTokenMean, Aggregation::TokenMean, Aggregation::SeqMeanTokenSumNorm] {
        let cfg = GrpoConfig {
            aggregation,
            token_sum_norm: (aggregation == Aggregation::SeqMeanTokenSumNorm).then_some(8),
            beta: 0.01,
            ..GrpoConfig::default()
        };
        let mut policy = Bandit::<B>::new();
        let reference: Tensor<B, 1> = log_softmax(policy.logits.val(), 0).detach();
        let mut optim = Optim::new(OptimConfig { lr: 0.05, ..OptimConfig::default() }).unwrap();
        let mut rng = 0x5eed_u64;
        let start = policy.probs()[0];
        for _ in 0..60 {
            let answers = sample(&policy.probs(), groups * g, &mut rng);
            let rewards: Vec<f64> = answers.iter().map(|&a| reward(a)).collect();
            let adv = group_advantages(&rewards, g, &cfg).unwrap();
            let idx: Vec<i64> = answers.iter().map(|&a| a as i64).collect();
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [answers.len()]), &device());
            let batch = GrpoBatch {
                logp: policy.logp(&answers),
                old_logp: None,
                ref_logp: Some(reference.clone().select(0, idx).unsqueeze_dim(1)),
                behaviour_logp: None,
                advantages: Tensor::from_floats(adv.advantages.as_slice(), &device()),
                mask: Tensor::ones([answers.len(), 1], &device()),
            };
            let loss = grpo_loss(batch, &cfg, None).unwrap().loss;
            let grads = GradientsParams::from_grads::<B, Bandit<B>>(loss.backward(), &policy);
            policy = optim.step(policy, grads).0;
        }
        let end = policy.probs()[0];
        assert!(start < 0.3 && end > 0.85, "{aggregation:?}: p(right answer) went {start} -> {end}");
    }
}

#[test]
fn sft_moves_the_policy_towards_the_data() {
    let mut policy = Bandit::<B>::new();
    let mut optim = Optim::new(OptimConfig { lr: 0.05, ..OptimConfig::default() }).unwrap();
    let data = [2, 2, 2, 3];
    for _ in 0..60 {
        let loss = sft_loss_from_logprobs(policy.logp(&data), Tensor::ones([4, 1], &device()), None).unwrap();
        let grads = GradientsParams::from_grads::<B, Bandit<B>>(loss.backward(), &policy);
        policy = optim.step(policy, grads).0;
    }
    let p = policy.probs();
    assert!(
        (p[2] - 0.75).abs() < 0.05 && (p[3] - 0.25).abs() < 0.05,
        "maximum likelihood is (0, 0, .75, .25), got {p:?}"
    );
}
