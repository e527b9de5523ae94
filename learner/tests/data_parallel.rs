//! Data parallelism is exact: N learner ranks, each on a shard of the batch, summing
//! gradients over a TCP ring, end with the weights of one rank trained on the whole batch.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use r1_learner::collective::tcp::{RingConfig, TcpRing};
use r1_learner::collective::{Collective, SingleRank};
use r1_learner::flat::all_reduce_grads;
use r1_learner::grpo::{Aggregation, Denominators, GrpoBatch, GrpoConfig, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_model::batch::PaddedBatch;
use r1_model::{CausalLm, CpuTrainBackend};

type B = CpuTrainBackend;

/// R1-Zero's learning rate.
const LR: f64 = 3e-6;

/// A GRPO batch of 4 sequences (prompt + completion, different lengths) with advantages.
struct Data {
    seqs: Vec<Vec<u32>>,
    prompt_lens: Vec<usize>,
    advantages: Vec<f32>,
}

fn data() -> Data {
    Data {
        seqs: vec![
            vec![3, 17, 40, 2, 9, 100, 7],
            vec![5, 6, 7, 8, 250, 11, 12, 13, 14],
            vec![3, 17, 40, 2, 31, 32],
            vec![1, 2, 3, 4, 5, 6, 7, 8],
        ],
        prompt_lens: vec![4, 4, 4, 3],
        advantages: vec![1.0, -0.5, 0.7, -1.2],
    }
}

/// Loss of the rows `rows` of the batch, normalised by the whole batch's counts.
fn shard_grads(model: &CausalLm<B>, d: &Data, rows: &[usize], cfg: &GrpoConfig, den: Denominators) -> GradientsParams {
    let dev = Default::default();
    let seqs: Vec<&[u32]> = rows.iter().map(|&r| d.seqs[r].as_slice()).collect();
    let width = d.seqs.iter().map(Vec::len).max().unwrap();
    let batch = PaddedBatch::padded_to(&seqs, 0, width);
    let t = batch.len - 1;
    let mut mask = vec![0.0f32; rows.len() * t];
    for (i, &r) in rows.iter().enumerate() {
        // Column j predicts token j+1; completion tokens start at the prompt's end.
        let pad = batch.pads[i];
        for j in pad + d.prompt_lens[r] - 1..t {
            mask[i * t + j] = 1.0;
        }
    }
    let adv: Vec<f32> = rows.iter().map(|&r| d.advantages[r]).collect();
    let logp = r1_model::logprobs::token_logprobs(model, &batch, &dev);
    let out = grpo_loss(
        GrpoBatch::on_policy(
            logp,
            Tensor::from_data(TensorData::new(adv, [rows.len()]), &dev),
            Tensor::from_data(TensorData::new(mask, [rows.len(), t]), &dev),
        ),
        cfg,
        Some(den),
    )
    .unwrap();
    GradientsParams::from_grads(out.loss.backward(), model)
}

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
}

/// Every weight of the model, in checkpoint order.
fn weights(model: &CausalLm<B>) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    r1_model::weights::save(model, dir.path(), &Default::default()).unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
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

/// Trains `steps` steps on the rows this rank owns and returns its final weights.
fn train(rows: &[usize], collective: &mut dyn Collective, cfg: &GrpoConfig, steps: usize) -> Vec<f32> {
    let d = data();
    let mut model = r1_model::load::<B>(&fixture(), &Default::default()).unwrap();
    // Adam's eps is raised from 1e-8 to 1e-6: a gradient that is zero in exact arithmetic
    // (e.g. a k_proj bias, which softmax nearly cancels) is ±1e-10 rounding noise whose sign
    // depends on summation order, and with eps 1e-8 Adam turns that sign into a ±lr step.
    // With eps 1e-6 such noise moves nothing, and the comparison tests the gradients.
    let cfg_opt = OptimConfig { lr: LR, eps: 1e-6, ..Default::default() };
    let mut optim = Optim::<B, CausalLm<B>>::new(cfg_opt).unwrap();
    // Denominators of the whole batch, as the trainer knows them before sharding.
    let tokens: usize = d.seqs.iter().zip(&d.prompt_lens).map(|(s, p)| s.len() - p).sum();
    let den = Denominators { sequences: d.seqs.len(), tokens };
    for _ in 0..steps {
        let grads = shard_grads(&model, &d, rows, cfg, den);
        let grads = all_reduce_grads::<B, _>(&model, grads, collective).unwrap();
        model = optim.step(model, grads).0;
    }
    weights(&model)
}

#[test]
fn two_ranks_on_halves_equal_one_rank_on_the_whole_batch() {
    for aggregation in [Aggregation::SeqMeanTokenMean, Aggregation::TokenMean, Aggregation::SeqMeanTokenSumNorm] {
        let cfg = GrpoConfig {
            beta: 0.0,
            aggregation,
            token_sum_norm: (aggregation == Aggregation::SeqMeanTokenSumNorm).then_some(8),
            ..Default::default()
        };
        let single = train(&[0, 1, 2, 3], &mut SingleRank, &cfg, 3);
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let shards: [&[usize]; 2] = [&[0, 1], &[2, 3]];
        let ranks: Vec<Vec<f32>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|rank| {
                    let cfg = &cfg;
                    s.spawn(move || {
                        let mut ring = TcpRing::join(&RingConfig {
                            rank,
                            world_size: 2,
                            master_addr: format!("127.0.0.1:{port}"),
                            bind_addr: "127.0.0.1:0".into(),
                            timeout: Duration::from_secs(30),
                        })
                        .unwrap();
                        train(shards[rank], &mut ring, cfg, 3)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(ranks[0], ranks[1], "{aggregation:?}: ranks diverged");
        let err = single.iter().zip(&ranks[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(err <= 1e-6, "{aggregation:?}: data-parallel weights differ from single-rank by {err}");
        // The updates were real: weights moved away from the checkpoint.
        let start = weights(&r1_model::load::<B>(&fixture(), &Default::default()).unwrap());
        let moved = single.iter().zip(&start).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved > LR as f32, "{aggregation:?}: training did not change the weights ({moved})");
    }
}
