//! The learner service's `Trainer` on the real decoder: its GRPO and SFT steps give the same
//! weights whatever the micro-batch size and however many ranks share the batch (the
//! trainer shards by row itself), and bad rollouts are refused by index.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use r1_learner::collective::tcp::{RingConfig, TcpRing};
use r1_learner::collective::{Collective, SingleRank};
use r1_learner::grpo::GrpoConfig;
use r1_learner::optim::OptimConfig;
use r1_learner::trainer::{Rollout, Trainer};
use r1_model::{CausalLm, CpuBackend, CpuTrainBackend};

type B = CpuTrainBackend;

/// Small enough that float noise in near-zero gradients, which Adam scales up to ±lr, stays
/// below the 1e-6 tolerance (see data_parallel.rs).
const LR: f64 = 1e-5;

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
}

fn rollouts() -> Vec<Rollout> {
    let r = |prompt: &[u32], completion: &[u32], advantage: f32| Rollout {
        prompt: prompt.to_vec(),
        completion: completion.to_vec(),
        // A behaviour policy a little off the current one, so off-policy steps differ.
        behaviour_logp: completion.iter().map(|&t| -5.0 - (t % 7) as f32 * 0.01).collect(),
        advantage,
    };
    vec![
        r(&[3, 17, 40, 2], &[9, 100, 7], 1.0),
        r(&[3, 17, 40, 2], &[31, 32], -0.5),
        r(&[5, 6, 7], &[8, 250, 11, 12, 13], 0.7),
        r(&[5, 6, 7], &[14], -1.2),
        r(&[1, 2], &[3, 4, 5, 6, 7, 8], 0.3),
    ]
}

fn sft_pairs() -> Vec<(Vec<u32>, Vec<u32>)> {
    vec![(vec![3, 17, 40], vec![2, 9, 100]), (vec![5, 6], vec![7, 8, 250, 11]), (vec![1], vec![2, 3])]
}

/// Every weight, flattened, in checkpoint order.
fn weights(model: &CausalLm<CpuBackend>) -> Vec<f32> {
    let bytes = r1_model::weights::to_safetensors_bytes(model, r1_model::weights::SaveDtype::F32).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    names
        .into_iter()
        .flat_map(|n| {
            st.tensor(n)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Grpo { off_policy: bool },
    Sft,
}

/// Three steps of `kind` on this rank's view of the whole batch; returns the final weights.
fn train(kind: Kind, micro_batch: usize, collective: &mut dyn Collective) -> Vec<f32> {
    let dev = Default::default();
    let model = r1_model::load::<B>(&fixture(), &dev).unwrap();
    let reference = r1_model::load::<CpuBackend>(&fixture(), &dev).unwrap();
    let grpo = GrpoConfig { beta: 0.01, clip_eps_low: 0.2, clip_eps_high: 0.2, ..GrpoConfig::default() };
    // eps 1e-6: see data_parallel.rs (Adam turns ±1e-10 rounding noise into ±lr steps at 1e-8).
    let optim = OptimConfig { lr: LR, eps: 1e-6, ..Default::default() };
    let mut t = Trainer::new(model, Some(reference), grpo, optim, micro_batch, dev).unwrap();
    for _ in 0..3 {
        let report = match kind {
            Kind::Grpo { off_policy } => t.grpo_step(&rollouts(), off_policy, collective).unwrap(),
            Kind::Sft => t.sft_step(&sft_pairs(), collective).unwrap(),
        };
        assert!(report.grad_norm > 0.0 && report.loss.is_finite(), "{kind:?}: {report:?}");
        assert!(report.entropy > 0.0, "{kind:?}: entropy {}", report.entropy);
    }
    weights(&t.inference_model())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn micro_batches_and_ranks_do_not_change_the_update() {
    let start = weights(&r1_model::load::<CpuBackend>(&fixture(), &Default::default()).unwrap());
    for kind in [Kind::Grpo { off_policy: false }, Kind::Grpo { off_policy: true }, Kind::Sft] {
        let whole = train(kind, 8, &mut SingleRank);
        assert!(max_diff(&whole, &start) > LR as f32, "{kind:?}: the steps changed nothing");
        let micro = train(kind, 1, &mut SingleRank);
        assert!(
            max_diff(&whole, &micro) <= 1e-6,
            "{kind:?}: micro-batch 1 vs 8 differ by {}",
            max_diff(&whole, &micro)
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ranks: Vec<Vec<f32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|rank| {
                    s.spawn(move || {
                        let mut ring = TcpRing::join(&RingConfig {
                            rank,
                            world_size: 2,
                            master_addr: format!("127.0.0.1:{port}"),
                            bind_addr: "127.0.0.1:0".into(),
                            timeout: Duration::from_secs(30),
                        })
                        .unwrap();
                        train(kind, 2, &mut ring)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(ranks[0], ranks[1], "{kind:?}: ranks diverged");
        assert!(
            max_diff(&whole, &ranks[0]) <= 1e-6,
            "{kind:?}: 2 ranks vs 1 differ by {}",
            max_diff(&whole, &ranks[0])
        );
    }
}

#[test]
fn bad_rollouts_are_named() {
    let dev = Default::default();
    let model = r1_model::load::<B>(&fixture(), &dev).unwrap();
    let mut t =
        Trainer::new(model, None, GrpoConfig { beta: 0.0, ..GrpoConfig::default() }, OptimConfig::default(), 4, dev)
            .unwrap();
    let good = rollouts()[0].clone();
    let cases: Vec<(Rollout, &str)> = vec![
        (Rollout { prompt: vec![], ..good.clone() }, "rollout 1: has an empty prompt"),
        (Rollout { behaviour_logp: vec![-1.0], ..good.clone() }, "rollout 1: has 3 tokens but 1 log-probs"),
        (
            Rollout { completion: vec![9, 100, 320], ..good.clone() },
            "rollout 1: holds token id 320, outside the model's vocabulary of 320",
        ),
    ];
    for (bad, msg) in cases {
        let err = t.grpo_step(&[good.clone(), bad], false, &mut SingleRank).unwrap_err().to_string();
        assert!(err.contains(msg), "{err}");
    }
    // β > 0 needs the reference model.
    let model = r1_model::load::<B>(&fixture(), &dev).unwrap();
    let err = Trainer::new(model, None, GrpoConfig::default(), OptimConfig::default(), 4, dev).err().unwrap();
    assert!(err.to_string().contains("no reference log-probs"), "{err}");
}
