//! Resuming with the real policy model: N GRPO steps straight equal k steps, a checkpoint
//! (HF safetensors weights + AdamW state + RNG + step), a fresh state loaded from it, and
//! N − k more steps. The checkpoint folder also loads as a Hugging Face model.
//!
//! The resumed weights equal the straight run's bit for bit. (They did not before
//! `r1_model::ops`: Burn 0.21's softmax, log-softmax and RMSNorm gradients went through an
//! approximate reciprocal that depended on buffer alignment, so two identical runs differed
//! in the 7th digit.)

use std::path::{Path, PathBuf};

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use r1_learner::checkpoint::{self, TrainerState};
use r1_learner::grpo::{GrpoBatch, GrpoConfig, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_model::batch::PaddedBatch;
use r1_model::weights::SaveOptions;
use r1_model::{CausalLm, CpuTrainBackend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = CpuTrainBackend;

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/llama-tiny")
}

fn optim_cfg() -> OptimConfig {
    OptimConfig { lr: 1e-4, ..Default::default() }
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> f32 {
    let f = |x: &[u8]| -> Vec<f32> {
        x[x.len() % 4..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    // Both files have the same header (same names and shapes), so the payloads line up.
    assert_eq!(a.len(), b.len());
    let header = 8 + u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    f(&a[header..]).iter().zip(f(&b[header..])).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The RNG as words: its 32-byte seed and its 128-bit stream position.
fn rng_words(rng: &ChaCha8Rng) -> Vec<u64> {
    let seed = rng.get_seed();
    let mut w: Vec<u64> = seed.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let pos = rng.get_word_pos();
    w.extend([pos as u64, (pos >> 64) as u64]);
    w
}

fn rng_from_words(w: &[u64]) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    for (i, x) in w[..4].iter().enumerate() {
        seed[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_word_pos(w[4] as u128 | (w[5] as u128) << 64);
    rng
}

/// One GRPO step on a batch drawn from `rng`: random sequences of random lengths, a random
/// prompt/completion split, random rewards in groups of 2.
fn step(model: CausalLm<B>, optim: &mut Optim<B, CausalLm<B>>, rng: &mut ChaCha8Rng) -> CausalLm<B> {
    let dev = Default::default();
    let vocab = model.config().vocab_size as u32;
    let seqs: Vec<Vec<u32>> =
        (0..4).map(|_| (0..rng.random_range(5..12)).map(|_| rng.random_range(0..vocab)).collect()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let batch = PaddedBatch::new(&refs, 0);
    let t = batch.len - 1;
    let mut mask = vec![0.0f32; 4 * t];
    for (i, s) in seqs.iter().enumerate() {
        let prompt = rng.random_range(1..s.len());
        for j in batch.pads[i] + prompt - 1..t {
            mask[i * t + j] = 1.0;
        }
    }
    let rewards: Vec<f64> = (0..4).map(|_| rng.random_range(0..2) as f64).collect();
    let cfg = GrpoConfig { beta: 0.0, ..Default::default() };
    let adv = r1_learner::grpo::group_advantages(&rewards, 2, &cfg).unwrap().advantages;
    let logp = r1_model::logprobs::token_logprobs(&model, &batch, &dev);
    let out = grpo_loss(
        GrpoBatch::on_policy(
            logp,
            Tensor::from_data(TensorData::new(adv, [4]), &dev),
            Tensor::from_data(TensorData::new(mask, [4, t]), &dev),
        ),
        &cfg,
        None,
    )
    .unwrap();
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    optim.step(model, grads).0
}

fn weight_bits(model: &CausalLm<B>, dir: &Path) -> Vec<u8> {
    r1_model::weights::save(model, dir, &SaveOptions::default()).unwrap();
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

#[test]
fn resumed_run_continues_the_straight_run() {
    const N: usize = 5;
    for k in [1, 3] {
        let dev = Default::default();
        // Straight through.
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut model = r1_model::load::<B>(&fixture(), &dev).unwrap();
        let mut optim = Optim::new(optim_cfg()).unwrap();
        for _ in 0..N {
            model = step(model, &mut optim, &mut rng);
        }
        let scratch = tempfile::tempdir().unwrap();
        let straight = weight_bits(&model, &scratch.path().join("a"));

        // k steps, checkpoint, drop everything.
        let ckpts = tempfile::tempdir().unwrap();
        {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            let mut model = r1_model::load::<B>(&fixture(), &dev).unwrap();
            let mut optim = Optim::new(optim_cfg()).unwrap();
            for _ in 0..k {
                model = step(model, &mut optim, &mut rng);
            }
            let state = TrainerState { step: k as u64, rng: rng_words(&rng), ..Default::default() };
            checkpoint::save(
                ckpts.path(),
                k as u64,
                |p: &Path| r1_model::weights::save(&model, p, &SaveOptions::default()),
                &optim,
                &model,
                &state,
                &optim_cfg(),
            )
            .unwrap();
        }

        // Resume from the latest checkpoint, as a restarted learner would.
        let ck = checkpoint::latest(ckpts.path()).unwrap().expect("a checkpoint");
        assert_eq!(ck.step, k as u64);
        let state = ck.trainer_state().unwrap();
        let cfg: OptimConfig = ck.config().unwrap();
        let mut model = r1_model::load::<B>(&ck.path, &dev).unwrap();
        let mut optim = Optim::new(cfg).unwrap();
        ck.load_optimizer(&mut optim, &model, &dev).unwrap();
        let mut rng = rng_from_words(&state.rng);
        for _ in state.step as usize..N {
            model = step(model, &mut optim, &mut rng);
        }
        let resumed = weight_bits(&model, &scratch.path().join("b"));
        let err = max_abs_diff(&straight, &resumed);
        assert!(straight == resumed, "k = {k}: resumed weights differ from the straight run (by up to {err})");

        // The checkpoint moved away from the start (the comparison is not vacuous).
        let start = weight_bits(&r1_model::load::<B>(&fixture(), &dev).unwrap(), &scratch.path().join("c"));
        let moved = max_abs_diff(&start, &resumed);
        assert!(moved > 1e-4, "k = {k}: training moved the weights by only {moved}");
    }
}
