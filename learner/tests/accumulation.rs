//! Gradient accumulation: k micro-batches of b rows give the update of one batch of k·b
//! rows, when each micro-batch loss is normalised by the whole batch's denominators.

mod common;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use common::*;
use r1_learner::clip::{GradAccumulator, clip_grad_norm};
use r1_learner::grpo::{Aggregation, Denominators, GrpoBatch, GrpoConfig, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_learner::sft::{sft_loss, token_logprobs};

const ROWS: usize = 8;
const T: usize = 6;
const F: usize = 5;
const V: usize = 7;

/// A policy small enough to reason about: logits = features · w.
#[derive(Module, Debug)]
struct Policy<B: Backend> {
    w: Param<Tensor<B, 2>>,
}

impl<B: Backend> Policy<B> {
    fn logits(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, f] = x.dims();
        x.reshape([b * t, f]).matmul(self.w.val()).reshape([b, t, V])
    }
}

struct Data {
    x: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    old: Tensor<B, 2>,
    reference: Tensor<B, 2>,
    adv: Tensor<B, 1>,
    mask: Tensor<B, 2>,
    mask_host: Vec<f32>,
}

/// Deterministic pseudo-random values (Burn's global RNG is shared by parallel tests).
fn host_random<const D: usize>(shape: [usize; D], seed: u64, f: impl Fn(f64) -> f64) -> Tensor<B, D> {
    let n = shape.iter().product::<usize>();
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            f((s >> 11) as f64 / (1u64 << 53) as f64) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &device())
}

fn data() -> Data {
    // Roughly standard normal: the sum of four uniforms, centred and scaled.
    let normal = |shape: [usize; 2], seed: u64, s: f64| {
        (0..4u64)
            .map(|i| host_random(shape, seed * 10 + i, |u| u))
            .reduce(|a, b| a + b)
            .unwrap()
            .sub_scalar(2.0)
            .mul_scalar(s * 3f64.sqrt())
    };
    let x = normal([ROWS * T, F], 1, 1.0).reshape([ROWS, T, F]);
    let targets = host_random([ROWS, T], 2, |u| (u * V as f64).floor()).int();
    let base = token_logprobs(policy().logits(x.clone()), targets.clone()).detach();
    // Completion lengths differ a lot, so per-micro-batch token counts differ too.
    let lens = [6, 1, 3, 5, 2, 6, 4, 1];
    let mask_host: Vec<f32> = lens.iter().flat_map(|&l| (0..T).map(move |t| if t < l { 1.0 } else { 0.0 })).collect();
    Data {
        old: base.clone() + normal([ROWS, T], 3, 0.3),
        reference: base + normal([ROWS, T], 4, 0.2),
        adv: normal([ROWS, 1], 5, 1.0).reshape([ROWS]),
        mask: Tensor::from_data(TensorData::new(mask_host.clone(), [ROWS, T]), &device()),
        x,
        targets,
        mask_host,
    }
}

fn policy() -> Policy<B> {
    let w: Vec<f32> = (0..F * V).map(|i| ((i * 37 % 11) as f32 - 5.0) / 10.0).collect();
    Policy { w: Param::from_tensor(Tensor::from_data(TensorData::new(w, [F, V]), &device())) }
}

/// Gradients of the loss on rows `r` of the data, for `policy`.
type LossFn<'a> = dyn Fn(&Policy<B>, &Data, std::ops::Range<usize>) -> Tensor<B, 1> + 'a;

fn grads(policy: &Policy<B>, d: &Data, micro: usize, loss: &LossFn, mean: bool) -> GradientsParams {
    let mut acc = GradAccumulator::default();
    for start in (0..ROWS).step_by(micro) {
        let l = loss(policy, d, start..start + micro);
        acc.add(policy, GradientsParams::from_grads::<B, Policy<B>>(l.backward(), policy));
    }
    if mean { acc.mean(policy) } else { acc.sum() }
}

fn rows<BK: Backend, const D: usize, K: burn::tensor::BasicOps<BK>>(
    t: &Tensor<BK, D, K>,
    r: &std::ops::Range<usize>,
) -> Tensor<BK, D, K> {
    t.clone().narrow(0, r.start, r.len())
}

fn grpo(cfg: GrpoConfig, global: bool) -> impl Fn(&Policy<B>, &Data, std::ops::Range<usize>) -> Tensor<B, 1> {
    move |p, d, r| {
        let logp = token_logprobs(p.logits(rows(&d.x, &r)), rows(&d.targets, &r));
        let batch = GrpoBatch {
            logp,
            old_logp: Some(rows(&d.old, &r)),
            ref_logp: Some(rows(&d.reference, &r)),
            behaviour_logp: None,
            advantages: rows(&d.adv, &r),
            mask: rows(&d.mask, &r),
        };
        let den = global.then(|| Denominators::from_mask(&d.mask_host, ROWS));
        grpo_loss(batch, &cfg, den).unwrap().loss
    }
}

/// Gradient (globally clipped) and weights after one optimizer step, from gradients
/// accumulated over `micro`-row micro-batches. AdamW's eps is large so that the update
/// depends on the gradient's size, not only on its sign as Adam's first step does.
fn step(micro: usize, loss: &LossFn, mean: bool) -> Vec<f64> {
    let d = data();
    let p = policy();
    let g = grads(&p, &d, micro, loss, mean);
    let (g, _) = clip_grad_norm::<B, Policy<B>>(&p, g, 0.05);
    let mut out = values(g.get::<Inner, 2>(p.w.id).unwrap());
    let cfg = OptimConfig { lr: 0.1, eps: 1.0, max_grad_norm: Some(0.05), ..OptimConfig::default() };
    let mut optim = Optim::new(cfg).unwrap();
    let (p, stats) = optim.step(p, g);
    assert!(stats.grad_norm > 0.05 * 0.999 && stats.grad_norm < 0.05 * 1.001, "already clipped: {stats:?}");
    out.extend(values(p.w.val()));
    out
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn micro_batches_with_global_denominators_match_the_full_batch() {
    let mut c = Checker::default();
    for agg in [Aggregation::SeqMeanTokenMean, Aggregation::TokenMean, Aggregation::SeqMeanTokenSumNorm] {
        let cfg = GrpoConfig {
            aggregation: agg,
            token_sum_norm: (agg == Aggregation::SeqMeanTokenSumNorm).then_some(16),
            beta: 0.05,
            clip_eps_high: 0.28,
            ..GrpoConfig::default()
        };
        let loss = grpo(cfg, true);
        let full = step(ROWS, &loss, false);
        for micro in [1, 2, 4] {
            c.check(&format!("{agg:?}, {micro}-row micro-batches"), &step(micro, &loss, false), &full, 1e-6);
        }
    }
    c.finish();
}

#[test]
fn token_mean_with_per_micro_batch_denominators_does_not_match() {
    // The boundary of the rule above: normalising each micro-batch by its own token count
    // weighs tokens of short micro-batches more, and the update differs.
    let cfg = GrpoConfig { aggregation: Aggregation::TokenMean, ..GrpoConfig::default() };
    let full = step(ROWS, &grpo(cfg.clone(), false), false);
    let local = step(2, &grpo(cfg, false), false);
    assert!(max_diff(&local, &full) > 1e-4, "per-micro-batch normalisation should change the update");
}

#[test]
fn mean_of_equal_micro_batches_matches_the_full_batch() {
    // SFT with each micro-batch's own mean, all micro-batches holding the same token count.
    let sft = |p: &Policy<B>, d: &Data, r: std::ops::Range<usize>| {
        let mask = Tensor::<B, 2>::ones([r.len(), T], &device());
        sft_loss(p.logits(rows(&d.x, &r)), rows(&d.targets, &r), mask, None).unwrap()
    };
    let full = step(ROWS, &sft, false);
    let mut c = Checker::default();
    c.check("sft mean over 4 micro-batches", &step(2, &sft, true), &full, 1e-6);
    c.finish();
    let (d, p) = (data(), policy());
    let w = |g: GradientsParams| values(g.get::<Inner, 2>(p.w.id).unwrap());
    let (sum, mean) = (w(grads(&p, &d, 2, &sft, false)), w(grads(&p, &d, 2, &sft, true)));
    c = Checker::default();
    c.check(
        "sum of 4 micro-batch means = 4 x their mean",
        &sum,
        &mean.iter().map(|g| 4.0 * g).collect::<Vec<_>>(),
        1e-6,
    );
    c.finish();
}
