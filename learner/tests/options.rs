//! Options, limits and errors of the learner's pieces, as tables of cases.

mod common;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use common::*;
use r1_learner::LearnerError;
use r1_learner::clip::{clip_grad_norm, global_grad_norm};
use r1_learner::grpo::{Aggregation, GrpoBatch, GrpoConfig, group_advantages, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_learner::schedule::{Decay, ScheduleConfig};
use r1_learner::sft::{sft_loss, token_logprobs};

fn t2(rows: &[&[f32]]) -> Tensor<B, 2> {
    let v: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(v, [rows.len(), rows[0].len()]), &device())
}

fn batch(mask: &[&[f32]], with_ref: bool) -> GrpoBatch<B> {
    let shape: Vec<&[f32]> = mask.iter().map(|r| &r[..]).collect();
    let logp = t2(&shape).mul_scalar(-0.7).sub_scalar(0.1);
    GrpoBatch {
        old_logp: Some(logp.clone().add_scalar(0.05)),
        ref_logp: with_ref.then(|| logp.clone().sub_scalar(0.1)),
        behaviour_logp: None,
        advantages: Tensor::ones([mask.len()], &device()),
        mask: t2(mask),
        logp: logp.require_grad(),
    }
}

#[test]
fn config_parses_paper_names_and_rejects_unknown_keys() {
    let cases: &[(&str, Result<GrpoConfig, &str>)] = &[
        ("{}", Ok(GrpoConfig::default())),
        (
            r#"{"aggregation": "token-mean", "clip_eps_high": 0.28}"#,
            Ok(GrpoConfig { aggregation: Aggregation::TokenMean, clip_eps_high: 0.28, ..Default::default() }),
        ),
        (
            r#"{"aggregation": "seq-mean-token-sum-norm", "token_sum_norm": 4096, "std_normalize": false}"#,
            Ok(GrpoConfig {
                aggregation: Aggregation::SeqMeanTokenSumNorm,
                token_sum_norm: Some(4096),
                std_normalize: false,
                ..Default::default()
            }),
        ),
        (r#"{"aggregation": "seq-mean"}"#, Err("unknown variant `seq-mean`")),
    ];
    for (json, want) in cases {
        let got = serde_json::from_str::<GrpoConfig>(json).map_err(|e| e.to_string());
        match want {
            Ok(cfg) => assert_eq!(got.as_ref(), Ok(cfg), "{json}"),
            Err(msg) => assert!(got.as_ref().is_err_and(|e| e.contains(msg)), "{json}: {got:?}"),
        }
    }
    let defaults = GrpoConfig::default();
    assert_eq!((defaults.clip_eps_low, defaults.clip_eps_high, defaults.beta), (0.2, 0.2, 0.001));
    assert!(serde_json::from_str::<OptimConfig>(r#"{"learning_rate": 1e-6}"#).is_err());
}

#[test]
fn config_limits_are_checked_at_their_boundary() {
    let with = |f: fn(&mut GrpoConfig)| {
        let mut c = GrpoConfig::default();
        f(&mut c);
        c
    };
    // (config, valid?) with each limit just inside and just outside.
    let cases = [
        (with(|c| c.clip_eps_low = 0.0), true),
        (with(|c| c.clip_eps_low = -0.01), false),
        (GrpoConfig::r1(), true),
        (with(|c| c.clip_eps_high = f64::NAN), false),
        (with(|c| c.beta = 0.0), true),
        (with(|c| c.beta = -1e-9), false),
        (with(|c| c.tis_cap = Some(1.0)), true),
        (with(|c| c.tis_cap = Some(0.99)), false),
        (GrpoConfig { token_sum_norm: Some(1), ..GrpoConfig::dr_grpo() }, true),
        (GrpoConfig { token_sum_norm: Some(0), ..GrpoConfig::dr_grpo() }, false),
        (with(|c| c.token_sum_norm = Some(8)), false), // not read by seq-mean-token-mean
        (with(|c| c.log_ratio_clamp = 80.0), true),
        (with(|c| c.log_ratio_clamp = 80.5), false),
        (with(|c| c.log_ratio_clamp = 0.0), false),
        (GrpoConfig::dapo(), true),
        (with(|c| c.adv_eps = f64::NAN), false),
    ];
    for (cfg, ok) in cases {
        let got = cfg.validate("algorithm.learner");
        assert_eq!(got.is_ok(), ok, "{cfg:?}: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains("algorithm.learner."), "{e}");
        }
    }
    // The loss refuses what it cannot compute: Dr. GRPO without its constant normaliser
    // (a run spec fills it in; the batch's padded width is no constant).
    let mask: &[&[f32]] = &[&[1.0, 1.0]];
    let err = grpo_loss(batch(mask, false), &GrpoConfig::dr_grpo(), None).unwrap_err();
    assert!(matches!(&err, LearnerError::Config(m) if m.contains("token_sum_norm is unset")), "{err}");
    let opt = |f: fn(&mut OptimConfig)| {
        let mut c = OptimConfig::default();
        f(&mut c);
        Optim::<B, Toy<B>>::new(c).err().map(|e| e.to_string())
    };
    assert_eq!(opt(|_| {}), None);
    assert!(opt(|c| c.lr = 0.0).is_some_and(|e| e.contains("positive learning rate")));
    assert!(opt(|c| c.beta2 = 1.0).is_some());
    assert!(opt(|c| c.max_grad_norm = Some(0.0)).is_some());
}

#[test]
fn group_advantages_cases() {
    let on = GrpoConfig::default();
    let off = GrpoConfig { std_normalize: false, ..Default::default() };
    // (rewards, group size, config, advantages, degenerate groups)
    let s = 1.0 / (0.5f64.sqrt() + 1e-6); // std of {0, 1} is sqrt(1/2)
    type Case<'a> = (Vec<f64>, usize, &'a GrpoConfig, Vec<f64>, Vec<usize>);
    let cases: Vec<Case> = vec![
        (vec![1.0, 0.0], 2, &on, vec![0.5 * s, -0.5 * s], vec![]),
        (vec![1.0, 0.0], 2, &off, vec![0.5, -0.5], vec![]),
        (vec![1.0, 1.0, 0.0, 0.0, 3.0, 0.0], 2, &off, vec![0.0, 0.0, 0.0, 0.0, 1.5, -1.5], vec![0, 1]),
        (vec![0.7, 0.7, 0.7], 3, &on, vec![0.0; 3], vec![0]),
        (vec![2.0, 5.0], 1, &on, vec![0.0, 0.0], vec![0, 1]),
    ];
    for (rewards, g, cfg, adv, degenerate) in cases {
        let got = group_advantages(&rewards, g, cfg).unwrap();
        let mut c = Checker::default();
        c.check(&format!("{rewards:?}"), &got.advantages.iter().map(|&a| a as f64).collect::<Vec<_>>(), &adv, 1e-6);
        c.finish();
        assert_eq!(got.degenerate_groups, degenerate, "{rewards:?}");
    }
    assert!(matches!(
        group_advantages(&[1.0, 0.0, 1.0], 2, &on),
        Err(LearnerError::RaggedGroups { rewards: 3, group_size: 2 })
    ));
    assert!(matches!(group_advantages(&[1.0], 0, &on), Err(LearnerError::RaggedGroups { .. })));
    let err = group_advantages(&[1.0, f64::NAN], 2, &on).unwrap_err();
    assert!(matches!(err, LearnerError::NonFiniteReward { index: 1, .. }), "{err}");
}

#[test]
fn grpo_inputs_are_checked() {
    let cfg = GrpoConfig::default();
    let err = grpo_loss(batch(&[&[1.0, 1.0]], false), &cfg, None).unwrap_err();
    assert!(matches!(err, LearnerError::MissingReference { .. }), "{err}");
    let out = grpo_loss(batch(&[&[1.0, 1.0]], false), &GrpoConfig { beta: 0.0, ..cfg.clone() }, None).unwrap();
    assert_eq!(out.stats.kl_ref_mean, None);

    let mut b = batch(&[&[1.0, 1.0], &[1.0, 0.0]], true);
    b.mask = t2(&[&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0]]);
    assert!(matches!(grpo_loss(b, &cfg, None), Err(LearnerError::Shape { name: "mask", .. })));
    let mut b = batch(&[&[1.0, 1.0]], true);
    b.advantages = Tensor::ones([2], &device());
    assert!(matches!(grpo_loss(b, &cfg, None), Err(LearnerError::Shape { name: "advantages", .. })));
    let mut b = batch(&[&[1.0, 1.0]], true);
    b.behaviour_logp = Some(t2(&[&[0.0]]));
    assert!(matches!(grpo_loss(b, &cfg, None), Err(LearnerError::Shape { name: "behaviour_logp", .. })));
}

#[test]
fn an_all_padding_batch_gives_zero_loss_and_zero_gradient() {
    for aggregation in [Aggregation::SeqMeanTokenMean, Aggregation::TokenMean, Aggregation::SeqMeanTokenSumNorm] {
        let b = batch(&[&[0.0, 0.0], &[0.0, 0.0]], true);
        let logp = b.logp.clone();
        let out = grpo_loss(
            b,
            &GrpoConfig {
                aggregation,
                token_sum_norm: (aggregation == Aggregation::SeqMeanTokenSumNorm).then_some(2),
                tis_cap: Some(2.0),
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let grads = out.loss.clone().backward();
        assert_eq!(values(out.loss), vec![0.0], "{aggregation:?}");
        assert_eq!(values(logp.grad(&grads).unwrap()), vec![0.0; 4], "{aggregation:?}");
        assert_eq!((out.stats.tokens, out.stats.clip_frac, out.stats.ratio_max), (0.0, 0.0, 0.0));
    }
}

#[test]
fn schedule_factors_at_their_boundaries() {
    let cos = ScheduleConfig { warmup_steps: 4, decay: Decay::Cosine, total_steps: 14, min_lr_ratio: 0.1 };
    let constant = ScheduleConfig { warmup_steps: 2, ..Default::default() };
    let cases: &[(&ScheduleConfig, u64, f64)] = &[
        (&cos, 0, 0.25),
        (&cos, 3, 1.0),
        (&cos, 4, 1.0),
        (&cos, 9, 0.55),
        (&cos, 14, 0.1),
        (&cos, 1000, 0.1),
        (&constant, 0, 0.5),
        (&constant, 1, 1.0),
        (&constant, 99, 1.0),
        (&ScheduleConfig::default(), 0, 1.0),
    ];
    for &(s, step, want) in cases {
        assert!((s.factor(step) - want).abs() < 1e-12, "{s:?} at {step}: {} != {want}", s.factor(step));
    }
}

/// Two parameters whose gradients have norms 3 and 4 (global norm 5).
#[derive(Module, Debug)]
struct Two<B: Backend> {
    a: Param<Tensor<B, 1>>,
    b: Param<Tensor<B, 1>>,
}

fn two_grads() -> (Two<B>, GradientsParams) {
    let m = Two {
        a: Param::from_tensor(Tensor::zeros([2], &device())),
        b: Param::from_tensor(Tensor::zeros([1], &device())),
    };
    // d/da (3a0) = [3, 0], d/db (4b0) = [4]
    let loss = m.a.val().mul(Tensor::from_floats([3.0, 0.0], &device())).sum() + m.b.val().mul_scalar(4.0).sum();
    let grads = GradientsParams::from_grads::<B, Two<B>>(loss.backward(), &m);
    (m, grads)
}

#[test]
fn clipping_uses_the_global_norm() {
    // (max_norm, expected grads of a and b after clipping)
    let s = 1.0 / (5.0 + 1e-6);
    let cases: &[(f64, [f64; 3])] = &[
        (1.0, [3.0 * s, 0.0, 4.0 * s]), // per-tensor clipping would give [1, 0, 1]
        (4.999, [3.0 * 4.999 / (5.0 + 1e-6), 0.0, 4.0 * 4.999 / (5.0 + 1e-6)]),
        (5.0, [3.0, 0.0, 4.0]),
        (100.0, [3.0, 0.0, 4.0]),
    ];
    for &(max, want) in cases {
        let (m, grads) = two_grads();
        let (mut g, norm) = clip_grad_norm::<B, Two<B>>(&m, grads, max);
        assert!((norm - 5.0).abs() < 1e-6);
        let mut got = values(g.remove::<Inner, 1>(m.a.id).unwrap());
        got.extend(values(g.remove::<Inner, 1>(m.b.id).unwrap()));
        let mut c = Checker::default();
        c.check(&format!("clip at {max}"), &got, &want, 1e-6);
        c.finish();
    }
    let (m, mut grads) = two_grads();
    assert!((global_grad_norm::<B, Two<B>>(&m, &mut grads) - 5.0).abs() < 1e-6);
    assert_eq!(grads.len(), 2, "computing the norm must leave the gradients in place");
}

#[test]
fn sft_masks_prompt_tokens_and_checks_shapes() {
    // Uniform logits: every token has log-prob −ln V, so the loss is ln V whatever the mask.
    let logits = Tensor::<B, 3>::zeros([2, 3, 5], &device());
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4, 0], [2, 3]), &device());
    let lp = values(token_logprobs(logits.clone(), targets.clone()));
    assert!(lp.iter().all(|&x| (x + 5f64.ln()).abs() < 1e-6), "{lp:?}");
    let mask = t2(&[&[0.0, 1.0, 1.0], &[0.0, 0.0, 1.0]]);
    let loss = values(sft_loss(logits.clone(), targets.clone(), mask.clone(), None).unwrap())[0];
    assert!((loss - 5f64.ln()).abs() < 1e-6);
    // A global denominator twice the local count halves the loss.
    let half = values(sft_loss(logits.clone(), targets.clone(), mask, Some(6)).unwrap())[0];
    assert!((half - 5f64.ln() / 2.0).abs() < 1e-6);
    let bad = Tensor::<B, 2, Int>::zeros([2, 2], &device());
    assert!(matches!(
        sft_loss(logits, bad, t2(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]]), None),
        Err(LearnerError::Shape { name: "targets", .. })
    ));
}

#[test]
fn a_tied_parameter_counts_once_in_the_global_norm() {
    // One parameter reachable through two fields, as a tied LM head is.
    let p = Param::from_tensor(Tensor::<B, 1>::zeros([2], &device()));
    let m = Two { a: p.clone(), b: p };
    let loss = m.a.val().mul(Tensor::from_floats([3.0, 0.0], &device())).sum()
        + m.b.val().mul(Tensor::from_floats([0.0, 4.0], &device())).sum();
    let mut grads = GradientsParams::from_grads::<B, Two<B>>(loss.backward(), &m);
    let norm = global_grad_norm::<B, Two<B>>(&m, &mut grads);
    assert!((norm - 5.0).abs() < 1e-6, "counted twice would be 7.07, got {norm}");
    let (mut g, _) = clip_grad_norm::<B, Two<B>>(&m, grads, 1.0);
    let got = values(g.remove::<Inner, 1>(m.a.id).unwrap());
    let s = 1.0 / (5.0 + 1e-6);
    let mut c = Checker::default();
    c.check("tied grad scaled once", &got, &[3.0 * s, 4.0 * s], 1e-6);
    c.finish();
}
