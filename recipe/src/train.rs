//! Plain supervised training of a [`CausalLm`]: pretraining, cold-start SFT and distillation
//! are the same loop with different data and masks.
//!
//! Each example is a prompt and a completion (token ids; the completion ends with EOS). The
//! loss is [`r1_learner::sft`]'s masked next-token cross-entropy over the completion tokens,
//! or over every token after the first when [`SftConfig::loss_on_prompt`] is set (that is
//! pretraining). Optimisation is [`r1_learner::optim::Optim`]: AdamW, warmup + cosine
//! schedule, global-norm clipping.
//!
//! Batches: each epoch is a seeded permutation of the examples, cut into windows of 16
//! batches; each window is sorted by length before it is cut, so rows of a batch have similar
//! lengths and little padding, and the batches of a window are then shuffled. The order is a
//! function of the seed alone.
//!
//! This lives here rather than in `r1-learner` because it drives `r1-model`'s decoder, which
//! the learner's library does not depend on.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use r1_learner::collective::{Collective, SingleRank};
use r1_learner::flat::all_reduce_grads;
use r1_learner::optim::{Optim, OptimConfig};
use r1_learner::schedule::{Decay, ScheduleConfig};
use r1_learner::sft::sft_loss_from_logprobs;
use r1_model::batch::PaddedBatch;
use r1_model::{CausalLm, PromptTemplate, TextTokenizer};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::RecipeError;
use crate::data::SftRecord;

/// One training sequence: prompt ids then completion ids (EOS included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
}

impl Example {
    pub fn len(&self) -> usize {
        self.prompt.len() + self.completion.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Training options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub warmup_steps: u64,
    /// Cosine floor, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Train on prompt tokens too (pretraining), not only on the completion.
    pub loss_on_prompt: bool,
    /// Seeds the data order.
    pub seed: u64,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            loss_on_prompt: false,
            seed: 0,
        }
    }
}

impl SftConfig {
    fn optim(&self) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            max_grad_norm: Some(self.max_grad_norm),
            schedule: ScheduleConfig {
                warmup_steps: self.warmup_steps,
                decay: Decay::Cosine,
                total_steps: self.steps,
                min_lr_ratio: self.min_lr_ratio,
            },
            ..OptimConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), RecipeError> {
        if self.steps == 0 || self.batch_size == 0 {
            return Err(RecipeError::Config("SFT `steps` and `batch_size` must be at least 1".into()));
        }
        Ok(())
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepLog {
    /// 1-based.
    pub step: u64,
    pub steps: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Tokens in the loss so far.
    pub tokens: u64,
    pub seconds: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: u64,
    pub examples: usize,
    /// Tokens in the loss, summed over steps.
    pub tokens: u64,
    pub seconds: f64,
    /// Mean loss of the first and the last 10 steps.
    pub first_loss: f64,
    pub final_loss: f64,
}

/// Tokenizes SFT records: the prompt through `template`, the completion as is, then EOS.
/// A record longer than `max_len` tokens is an error naming it.
pub fn encode(
    records: &[SftRecord],
    tokenizer: &TextTokenizer,
    template: PromptTemplate,
    eos: u32,
    max_len: usize,
) -> Result<Vec<Example>, RecipeError> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let prompt = tokenizer.encode(&tokenizer.render(template, &r.prompt)?)?;
            let mut completion = tokenizer.encode(&r.completion)?;
            completion.push(eos);
            if prompt.is_empty() {
                return Err(RecipeError::Input(format!("record {} has an empty prompt", i + 1)));
            }
            let len = prompt.len() + completion.len();
            if len > max_len {
                return Err(RecipeError::Input(format!(
                    "record {} is {len} tokens long, over the model's {max_len} positions; shorten it or drop it",
                    i + 1
                )));
            }
            Ok(Example { prompt, completion })
        })
        .collect()
}

/// Batches of example indices for every step, in training order.
pub fn batch_order(lengths: &[usize], batch_size: usize, steps: u64, seed: u64) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(steps as usize);
    let mut epoch = 0u64;
    while (out.len() as u64) < steps {
        let mut rng = crate::data::stream(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15), "sft-order");
        let mut idx: Vec<usize> = (0..lengths.len()).collect();
        idx.shuffle(&mut rng);
        let mut batches = Vec::new();
        for window in idx.chunks(batch_size * 16) {
            let mut w = window.to_vec();
            w.sort_by_key(|&i| lengths[i]);
            batches.extend(w.chunks(batch_size).map(<[usize]>::to_vec));
        }
        batches.shuffle(&mut rng);
        out.extend(batches);
        epoch += 1;
    }
    out.truncate(steps as usize);
    out
}

/// Trains `model` on `data` for `cfg.steps` steps; `on_step` sees every step.
pub fn train<B: AutodiffBackend>(
    model: CausalLm<B>,
    data: &[Example],
    cfg: &SftConfig,
    device: &B::Device,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<(CausalLm<B>, TrainReport), RecipeError> {
    train_ranked(model, data, cfg, device, &mut SingleRank, on_step)
}

/// [`train`] as one of `collective`'s data-parallel ranks. Every rank passes the same model,
/// data and config; each step every rank builds the same batch, takes every
/// `world_size`-th row of it from its own rank on (rows are sorted by length, so shards are
/// alike), and the gradients, normalised by the whole batch's tokens, are summed over ranks
/// before the same optimizer step everywhere: all ranks end with the same weights. The
/// result depends on the number of ranks (sums in another order), never on their timing.
pub fn train_ranked<B: AutodiffBackend>(
    model: CausalLm<B>,
    data: &[Example],
    cfg: &SftConfig,
    device: &B::Device,
    collective: &mut dyn Collective,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<(CausalLm<B>, TrainReport), RecipeError> {
    cfg.validate()?;
    if data.is_empty() {
        return Err(RecipeError::Input("no training examples".into()));
    }
    let vocab = model.config().vocab_size;
    let positions = model.config().max_position_embeddings;
    for (i, ex) in data.iter().enumerate() {
        if ex.prompt.is_empty() || ex.completion.is_empty() {
            return Err(RecipeError::Input(format!("example {i} needs a non-empty prompt and completion")));
        }
        if let Some(t) = ex.prompt.iter().chain(&ex.completion).find(|&&t| t as usize >= vocab) {
            return Err(RecipeError::Input(format!("example {i} has token {t}, outside the vocabulary of {vocab}")));
        }
        if ex.len() > positions {
            return Err(RecipeError::Input(format!(
                "example {i} has {} tokens, over the model's {positions} positions",
                ex.len()
            )));
        }
    }
    let mut optim = Optim::<B, CausalLm<B>>::new(cfg.optim())?;
    let lengths: Vec<usize> = data.iter().map(Example::len).collect();
    let order = batch_order(&lengths, cfg.batch_size, cfg.steps, cfg.seed);
    let t0 = Instant::now();
    let mut model = model;
    let mut losses = Vec::with_capacity(order.len());
    let mut tokens = 0u64;
    let (rank, world) = (collective.rank(), collective.world_size());
    let ring_err = |e: r1_learner::collective::CollectiveError| {
        RecipeError::Input(format!("data-parallel training (rank {rank} of {world}): {e}"))
    };
    for (s, rows) in order.iter().enumerate() {
        // Tokens in the loss of the whole batch, every rank's rows.
        let trained = |i: usize| if cfg.loss_on_prompt { data[i].len() - 1 } else { data[i].completion.len() };
        let n: usize = rows.iter().map(|&i| trained(i)).sum();
        tokens += n as u64;
        let mine: Vec<usize> = rows.iter().copied().skip(rank).step_by(world).collect();
        let (mut value, grads) = if mine.is_empty() {
            (0.0, GradientsParams::new())
        } else {
            let seqs: Vec<Vec<u32>> =
                mine.iter().map(|&i| [data[i].prompt.as_slice(), &data[i].completion].concat()).collect();
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            let batch = PaddedBatch::new(&refs, 0);
            let w = batch.len - 1;
            let mut mask = vec![0.0f32; batch.batch * w];
            for (r, &i) in mine.iter().enumerate() {
                let pad = batch.pads[r];
                let end = pad + data[i].len() - 1;
                mask[r * w + end - trained(i)..r * w + end].fill(1.0);
            }
            let logp = r1_model::logprobs::token_logprobs(&model, &batch, device);
            let mask = Tensor::from_data(TensorData::new(mask, [batch.batch, w]), device);
            let loss = sft_loss_from_logprobs(logp, mask, Some(n))?;
            let value: f64 = loss.clone().into_data().convert::<f64>().to_vec::<f64>().expect("float loss")[0];
            (value, GradientsParams::from_grads(loss.backward(), &model))
        };
        if s == 0 && world > 1 {
            // Every rank must start from rank 0's weights, or the summed gradients mean
            // nothing. Checked after the first forward pass: weights are drawn when first
            // read, and reading them in another order first would draw other ones.
            let mine = fingerprint(&model);
            let mut words = [f32::from_bits(mine as u32), f32::from_bits((mine >> 32) as u32)];
            collective.broadcast(&mut words, 0).map_err(ring_err)?;
            let first = words[0].to_bits() as u64 | ((words[1].to_bits() as u64) << 32);
            if first != mine {
                return Err(RecipeError::Input(format!(
                    "data-parallel training: rank {rank} starts from other weights than rank 0 (fingerprint \
                     {mine:016x}, rank 0 {first:016x}); every rank must build the model from the same config \
                     and seed, and get rows of the first batch"
                )));
            }
        }
        let grads = all_reduce_grads::<B, CausalLm<B>>(&model, grads, collective).map_err(ring_err)?;
        if world > 1 {
            let mut v = [value as f32];
            collective.all_reduce_sum(&mut v).map_err(ring_err)?;
            value = v[0] as f64;
        }
        if !value.is_finite() {
            return Err(RecipeError::Diverged { step: s as u64 + 1, loss: value });
        }
        let (next, stats) = optim.step(model, grads);
        model = next;
        losses.push(value);
        on_step(&StepLog {
            step: s as u64 + 1,
            steps: cfg.steps,
            loss: value,
            lr: stats.lr,
            grad_norm: stats.grad_norm,
            tokens,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let k = losses.len().min(10);
    let report = TrainReport {
        steps: cfg.steps,
        examples: data.len(),
        tokens,
        seconds: t0.elapsed().as_secs_f64(),
        first_loss: mean(&losses[..k]),
        final_loss: mean(&losses[losses.len() - k..]),
    };
    Ok((model, report))
}

/// FNV-1a over the bits of every parameter, in the module's order: equal on two ranks
/// exactly when they hold the same weights (short of a collision).
pub fn fingerprint<B: burn::tensor::backend::Backend, M: burn::module::Module<B>>(module: &M) -> u64 {
    struct Fnv(u64);
    impl<B: burn::tensor::backend::Backend> burn::module::ModuleVisitor<B> for Fnv {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let data = param.val().into_data().convert::<f32>();
            for v in data.as_slice::<f32>().expect("f32 weights") {
                for b in v.to_bits().to_le_bytes() {
                    self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    module.visit(&mut h);
    h.0
}

/// The inference copy of a trained model (no autodiff graph).
pub fn inference<B: AutodiffBackend>(model: &CausalLm<B>) -> CausalLm<B::InnerBackend> {
    model.valid()
}

#[cfg(test)]
mod tests {
    use burn::tensor::backend::Backend;
    use r1_model::CpuTrainBackend;

    use super::*;
    use crate::ModelShape;

    /// A small model config (67 tokens, EOS 1) with `layers` layers, and `n` examples of
    /// varied lengths.
    fn toy(layers: usize, n: u32) -> (r1_model::ModelConfig, Vec<Example>) {
        let shape = ModelShape {
            hidden_size: 32,
            intermediate_size: 64,
            num_layers: layers,
            num_heads: 4,
            num_kv_heads: 2,
            max_position_embeddings: 64,
        };
        let data = (0..n)
            .map(|i| Example {
                prompt: (0..5 + i % 7).map(|j| 2 + (i * 31 + j * 17) % 65).collect(),
                completion: (0..3 + i % 11).map(|j| 2 + (i * 13 + j * 29) % 65).chain([1]).collect(),
            })
            .collect();
        (shape.config(67, 1).unwrap(), data)
    }

    /// Held by a test from seeding the backend to initialising its model.
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Two trainings from the same seed on the same data give bit-identical steps. (Burn's own
    /// softmax, log-softmax and RMSNorm gradients went through an approximate reciprocal whose
    /// result depended on buffer alignment, so they did not: see `r1_model::ops`.)
    #[test]
    fn training_is_a_function_of_the_seed() {
        let (cfg, data) = toy(2, 24);
        let sft = SftConfig {
            steps: 8,
            batch_size: 6,
            lr: 1e-2,
            warmup_steps: 2,
            loss_on_prompt: true,
            ..SftConfig::default()
        };
        let run = || {
            let device = Default::default();
            // The seed is process-wide: no other test may seed between this and the init.
            let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
            CpuTrainBackend::seed(&device, 3);
            let model = CausalLm::<CpuTrainBackend>::init(&cfg, &device);
            let mut steps = Vec::new();
            train(model, &data, &sft, &device, &mut |s| steps.push((s.loss.to_bits(), s.grad_norm.to_bits()))).unwrap();
            steps
        };
        let first = run();
        for attempt in 0..4 {
            // Allocations in between move the next run's buffers.
            let _shift: Vec<Vec<f32>> = (0..attempt * 5).map(|k| vec![0.0; 3 + k]).collect();
            assert_eq!(run(), first, "run {} differs from the first", attempt + 2);
        }
    }

    /// Two data-parallel ranks end with the same weights as each other, and, up to the order
    /// of float sums, as one rank training every row.
    #[test]
    fn two_ranks_train_as_one() {
        use r1_learner::collective::tcp::{RingConfig, TcpRing};
        let (cfg, data) = toy(1, 30);
        // A batch of 7: the ranks get 4 and 3 rows.
        let sft = SftConfig { steps: 6, batch_size: 7, lr: 1e-2, warmup_steps: 1, ..SftConfig::default() };
        let probe: Vec<Vec<u32>> = vec![(2..20).collect(), (30..41).collect()];
        // One initial model for every run: the backend's seed is process-wide and weights
        // are drawn when first read, so ranks that initialised on their own threads would
        // race for it (the fingerprint reads, and so draws, them all here).
        let init = {
            let _seeded = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
            CpuTrainBackend::seed(&Default::default(), 9);
            let m = CausalLm::<CpuTrainBackend>::init(&cfg, &Default::default());
            fingerprint(&m);
            m
        };
        let run = |collective: &mut dyn Collective| {
            let device = Default::default();
            let model = init.clone();
            let mut losses = Vec::new();
            let (model, _) =
                train_ranked(model, &data, &sft, &device, collective, &mut |s| losses.push(s.loss)).unwrap();
            let scores = r1_model::logprobs::score(&inference(&model), &probe, 4, &device).unwrap();
            (losses, scores.concat())
        };
        let (one_loss, one) = run(&mut SingleRank);
        let master = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|rank| {
                    let (master, run) = (master.clone(), &run);
                    s.spawn(move || {
                        let mut ring = TcpRing::join(&RingConfig {
                            rank,
                            world_size: 2,
                            master_addr: master,
                            bind_addr: "127.0.0.1:0".into(),
                            timeout: std::time::Duration::from_secs(30),
                        })
                        .unwrap();
                        run(&mut ring)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(results[0], results[1], "both ranks hold the same model and log the same losses");
        for (a, b) in results[0].0.iter().zip(&one_loss) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "loss {a} vs one rank's {b}");
        }
        for (a, b) in results[0].1.iter().zip(&one) {
            assert!((a - b).abs() <= 1e-4, "log-prob {a} vs one rank's {b}");
        }
    }

    #[test]
    fn every_epoch_visits_each_example_once_in_length_sorted_windows() {
        let lengths: Vec<usize> = (0..50).map(|i| (i * 37) % 23 + 1).collect();
        // (batch size, steps) covering a ragged last batch and several epochs.
        for (bs, steps) in [(4, 13), (7, 8), (50, 3), (64, 2)] {
            let order = batch_order(&lengths, bs, steps, 5);
            assert_eq!(order.len(), steps as usize);
            let per_epoch = 50usize.div_ceil(bs);
            for epoch in order.chunks(per_epoch).filter(|e| e.len() == per_epoch) {
                let mut seen: Vec<usize> = epoch.concat();
                seen.sort_unstable();
                assert_eq!(seen, (0..50).collect::<Vec<_>>(), "batch size {bs}");
            }
            for b in &order {
                assert!(b.len() <= bs && !b.is_empty());
                assert!(b.windows(2).all(|w| lengths[w[0]] <= lengths[w[1]]), "rows of a batch are sorted by length");
            }
            assert_eq!(order, batch_order(&lengths, bs, steps, 5), "the order is a function of the seed");
            assert_ne!(order, batch_order(&lengths, bs, steps, 6));
        }
    }
}
