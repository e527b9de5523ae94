//! One learner rank's training step on the policy model: GRPO on scored rollouts, or SFT
//! on prompt/answer pairs, data-parallel over a [`Collective`].
//!
//! Every rank is handed the whole batch and trains on its shard (rows `i` with
//! `i % world == rank`). Losses are normalised by the whole batch's counts
//! ([`Denominators`]), so the shard gradients summed over ranks are the full batch's
//! gradient, and every rank applies the same AdamW step to the same weights. Each shard is
//! processed in micro-batches whose gradients are summed: its rows, longest first, are packed
//! into micro-batches of at most `micro_batch × (the batch's widest row)` padded tokens, each
//! padded only to its own widest row ([`pack`]). Short rows therefore share a micro-batch
//! instead of each being padded to the batch's widest. Padding is masked, so a row's
//! gradient does not depend on its micro-batch's width beyond float rounding (≤ 1e-6,
//! tested).
//!
//! Several optimizer steps per rollout batch ([`Trainer::with_steps_per_batch`]): the batch
//! is split into `minibatches` contiguous minibatches (of whole groups when the spec's
//! `prompts_per_step` is a multiple of them, as `r1-spec` requires), and each
//! epoch takes one optimizer step per minibatch, as TRL (`num_iterations`) and veRL
//! (`ppo_epochs`, `ppo_mini_batch_size`) do. π_old is fixed at the batch's start: the
//! learner's log-probs of every sample before the first step (see `grpo`'s module doc for
//! why π_old is the learner's and not the actors'). A minibatch's loss is normalised by its
//! own counts.
//!
//! Token layout: a rollout is `prompt ++ completion`; logit column `j` predicts token
//! `j + 1`, so the completion's tokens are scored by the columns from the prompt's last
//! token on. Only those columns are in the loss mask.

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use r1_model::CausalLm;
use r1_model::batch::PaddedBatch;
use serde::Serialize;

use crate::LearnerError;
use crate::clip::GradAccumulator;
use crate::collective::{Collective, CollectiveError};
use crate::flat::all_reduce_grads;
use crate::grpo::{Denominators, GrpoBatch, GrpoConfig, ScalarExt, grpo_loss};
use crate::optim::{Optim, OptimConfig};
use crate::sft::sft_loss_from_logprobs;

/// One sampled completion with the advantage GRPO gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    /// The rendered prompt's tokens.
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    /// log-prob of each completion token under the policy that sampled it.
    pub behaviour_logp: Vec<f32>,
    pub advantage: f32,
}

/// What one step did, summed or averaged over the whole batch (every rank agrees).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepReport {
    pub loss: f64,
    /// Mean k3 KL to the reference model over completion tokens (0 when β = 0).
    pub kl: f64,
    /// Mean policy entropy over completion tokens, in nats.
    pub entropy: f64,
    /// Fraction of tokens whose ratio was clipped, and its two sides (Â < 0 below 1 − ε_low,
    /// Â > 0 above 1 + ε_high).
    pub clip_frac: f64,
    pub clip_frac_low: f64,
    pub clip_frac_high: f64,
    pub grad_norm: f64,
    pub lr: f64,
    /// Completion (or answer) tokens trained on.
    pub tokens: u64,
    pub sequences: u64,
    /// Optimizer steps this batch took (minibatches × epochs); the numbers above are means
    /// over them, `lr` the last one's.
    pub optimizer_steps: u64,
}

/// Errors of a training step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Learner(#[from] LearnerError),
    #[error("all-reduce failed: {0}; a learner rank is gone, restart the fleet from the last checkpoint")]
    Collective(#[from] CollectiveError),
    #[error("rollout {index}: {problem}")]
    Rollout { index: usize, problem: String },
    #[error(
        "a batch of {rows} rollouts cannot make {minibatches} minibatches; use fewer algorithm.learner.minibatches_per_batch than rollouts per batch"
    )]
    Minibatches { rows: usize, minibatches: usize },
}

/// A policy model, its optimizer and (when β > 0) the frozen reference model.
pub struct Trainer<B: AutodiffBackend> {
    model: Option<CausalLm<B>>,
    reference: Option<CausalLm<B::InnerBackend>>,
    optim: Optim<B, CausalLm<B>>,
    grpo: GrpoConfig,
    micro_batch: usize,
    minibatches: usize,
    epochs: usize,
    /// Log-probs (policy and reference) are taken under softmax(logits / this): the
    /// distribution the actors sampled from (`r1_model::sample::logprob_temperature`).
    temperature: f32,
    device: B::Device,
}

/// Per-batch sums every rank contributes, all-reduced in one call.
#[derive(Default)]
struct Sums {
    loss: f64,
    kl_tokens: f64,
    entropy_tokens: f64,
    clip_tokens: f64,
    clip_low_tokens: f64,
    clip_high_tokens: f64,
}

impl Sums {
    fn to_vec(&self) -> Vec<f32> {
        [self.loss, self.kl_tokens, self.entropy_tokens, self.clip_tokens, self.clip_low_tokens, self.clip_high_tokens]
            .map(|x| x as f32)
            .to_vec()
    }

    fn add(&mut self, o: &Sums) {
        self.loss += o.loss;
        self.kl_tokens += o.kl_tokens;
        self.entropy_tokens += o.entropy_tokens;
        self.clip_tokens += o.clip_tokens;
        self.clip_low_tokens += o.clip_low_tokens;
        self.clip_high_tokens += o.clip_high_tokens;
    }
}

impl<B: AutodiffBackend> Trainer<B> {
    /// `reference` is required when the loss has β > 0 (it is the base model, frozen).
    pub fn new(
        model: CausalLm<B>,
        reference: Option<CausalLm<B::InnerBackend>>,
        grpo: GrpoConfig,
        optim: OptimConfig,
        micro_batch: usize,
        device: B::Device,
    ) -> Result<Self, LearnerError> {
        crate::grpo::check_config(&grpo)?;
        if grpo.beta > 0.0 && reference.is_none() {
            return Err(LearnerError::MissingReference { beta: grpo.beta });
        }
        Ok(Self {
            model: Some(model),
            reference,
            optim: Optim::new(optim)?,
            grpo,
            micro_batch: micro_batch.max(1),
            minibatches: 1,
            epochs: 1,
            temperature: 1.0,
            device,
        })
    }

    /// Takes `minibatches × epochs` optimizer steps per GRPO batch (1 × 1 by default).
    pub fn with_steps_per_batch(mut self, minibatches: usize, epochs: usize) -> Self {
        self.minibatches = minibatches.max(1);
        self.epochs = epochs.max(1);
        self
    }

    /// Scores GRPO rollouts under the distribution they were sampled from at
    /// `sampling_temperature` (logits / T; greedy counts as T = 1), as the actors' log-probs
    /// are, so that π_θ / π_old is 1 on on-policy samples at any temperature. SFT steps are
    /// not affected.
    pub fn with_sampling_temperature(mut self, sampling_temperature: f32) -> Self {
        self.temperature = r1_model::sample::logprob_temperature(sampling_temperature);
        self
    }

    pub fn model(&self) -> &CausalLm<B> {
        self.model.as_ref().expect("model is present between steps")
    }

    pub fn optim(&self) -> &Optim<B, CausalLm<B>> {
        &self.optim
    }

    /// Restores the optimizer state of a checkpoint whose weights this trainer holds.
    pub fn load_optimizer(
        &mut self,
        checkpoint: &crate::checkpoint::Checkpoint,
    ) -> Result<(), crate::checkpoint::CheckpointError> {
        let model = self.model.as_ref().expect("model is present between steps");
        checkpoint.load_optimizer(&mut self.optim, model, &self.device)
    }

    /// Why `r` cannot be trained on, if it cannot.
    pub fn check_rollout(&self, r: &Rollout) -> Result<(), String> {
        let vocab = self.model().config().vocab_size as u32;
        if r.prompt.is_empty() {
            return Err("has an empty prompt".into());
        }
        if r.completion.len() != r.behaviour_logp.len() {
            return Err(format!(
                "has {} tokens but {} log-probs; the actor must send one per token",
                r.completion.len(),
                r.behaviour_logp.len()
            ));
        }
        if let Some(t) = r.prompt.iter().chain(&r.completion).find(|&&t| t >= vocab) {
            return Err(format!("holds token id {t}, outside the model's vocabulary of {vocab}"));
        }
        Ok(())
    }

    /// Why an SFT (prompt, answer) pair cannot be trained on, if it cannot.
    pub fn check_pair(&self, prompt: &[u32], answer: &[u32]) -> Result<(), String> {
        let vocab = self.model().config().vocab_size as u32;
        if prompt.is_empty() || answer.is_empty() {
            return Err("needs a non-empty prompt and answer".into());
        }
        if let Some(t) = prompt.iter().chain(answer).find(|&&t| t >= vocab) {
            return Err(format!("holds token id {t}, outside the model's vocabulary of {vocab}"));
        }
        Ok(())
    }

    /// GRPO on `rollouts`, the whole batch in group order: `minibatches × epochs` optimizer
    /// steps (one by default). `off_policy` says the batch holds samples from older weights.
    /// π_old is the policy before the first step: when it can differ from π_θ (stale
    /// samples, or more than one step) the learner computes it, without gradient; otherwise
    /// it is π_θ detached. The truncated importance weight (`tis_cap`) corrects π_old
    /// against the actors' behaviour log-probs.
    pub fn grpo_step(
        &mut self,
        rollouts: &[Rollout],
        off_policy: bool,
        collective: &mut dyn Collective,
    ) -> Result<StepReport, TrainError> {
        for (index, r) in rollouts.iter().enumerate() {
            self.check_rollout(r).map_err(|problem| TrainError::Rollout { index, problem })?;
        }
        let m = self.minibatches;
        if rollouts.len() < m {
            return Err(TrainError::Minibatches { rows: rollouts.len(), minibatches: m });
        }
        // Contiguous minibatches whose sizes differ by at most one: whole groups when the
        // batch is whole (the spec makes prompts_per_step a multiple of the minibatches),
        // near-equal when a group was dropped from it.
        let bounds: Vec<(usize, usize)> =
            (0..m).map(|k| (k * rollouts.len() / m, (k + 1) * rollouts.len() / m)).collect();
        // This rank's rows of each minibatch, packed into micro-batches of at most
        // `micro_batch × (the batch's widest row)` padded tokens. π_old is computed over the
        // same micro-batches as the first step, so on-policy ratios are exactly 1.
        let len = |i: usize| rollouts[i].prompt.len() + rollouts[i].completion.len();
        let widest = rollouts.iter().map(|r| r.prompt.len() + r.completion.len()).max().unwrap_or(0);
        let plan: Vec<Vec<Vec<usize>>> = bounds
            .iter()
            .map(|&(lo, hi)| {
                let mine: Vec<usize> = shard(hi - lo, collective).into_iter().map(|i| lo + i).collect();
                pack(&mine, len, self.micro_batch * widest)
            })
            .collect();
        let old = if off_policy || m * self.epochs > 1 {
            Some(self.old_logprobs(rollouts, plan.iter().flatten(), len))
        } else {
            None
        };
        let mut reports = Vec::with_capacity(m * self.epochs);
        for _epoch in 0..self.epochs {
            for (&(lo, hi), micro) in bounds.iter().zip(&plan) {
                let rows = &rollouts[lo..hi];
                let den = Denominators { sequences: rows.len(), tokens: rows.iter().map(|r| r.completion.len()).sum() };
                let model = self.model.take().expect("model is present between steps");
                let mut acc = GradAccumulator::<CausalLm<B>>::default();
                let mut sums = Sums::default();
                for part in micro {
                    // Rows without completion tokens carry no loss; skip a micro-batch of only those.
                    if part.iter().all(|&i| rollouts[i].completion.is_empty()) {
                        continue;
                    }
                    let width = part.iter().map(|&i| len(i)).max().unwrap_or(0);
                    match self.grpo_micro(&model, rollouts, part, old.as_deref(), width, den) {
                        Ok((grads, s)) => {
                            acc.add(&model, grads);
                            sums.add(&s);
                        }
                        Err(e) => {
                            self.model = Some(model);
                            return Err(e);
                        }
                    }
                }
                let grads = if acc.micro_batches() == 0 { GradientsParams::new() } else { acc.sum() };
                reports.push(self.finish(model, grads, sums, den, collective)?);
            }
        }
        Ok(mean_report(&reports, rollouts))
    }

    /// log π_old of each completion token of the rows of `micro` (micro-batches of row
    /// indices, each padded to its widest row as in training), with the weights held now
    /// (no gradient); other rows are left empty.
    fn old_logprobs<'a>(
        &self,
        rollouts: &[Rollout],
        micro: impl Iterator<Item = &'a Vec<usize>>,
        len: impl Fn(usize) -> usize,
    ) -> Vec<Vec<f32>> {
        let model = self.model().valid();
        let mut old = vec![Vec::new(); rollouts.len()];
        for part in micro {
            // As in training: a part without completion tokens has nothing to score.
            if part.iter().all(|&i| rollouts[i].completion.is_empty()) {
                continue;
            }
            let width = part.iter().map(|&i| len(i)).max().unwrap_or(0);
            let seqs: Vec<Vec<u32>> =
                part.iter().map(|&i| [rollouts[i].prompt.as_slice(), &rollouts[i].completion].concat()).collect();
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            let batch = PaddedBatch::padded_to(&refs, 0, width);
            let (last, skip) = completion_columns(&batch, part.iter().map(|&i| rollouts[i].completion.len()));
            let (logp, _) =
                r1_model::logprobs::token_logprobs_tail(&model, &batch, &self.device, self.temperature, false, last);
            let values: Vec<f32> = logp.into_data().convert::<f32>().to_vec().expect("a float tensor");
            for (k, &i) in part.iter().enumerate() {
                let start = k * last + batch.pads[k] + rollouts[i].prompt.len() - 1 - skip;
                old[i] = values[start..start + rollouts[i].completion.len()].to_vec();
            }
        }
        old
    }

    #[allow(clippy::too_many_arguments)]
    fn grpo_micro(
        &self,
        model: &CausalLm<B>,
        rollouts: &[Rollout],
        rows: &[usize],
        old: Option<&[Vec<f32>]>,
        width: usize,
        den: Denominators,
    ) -> Result<(GradientsParams, Sums), TrainError> {
        let part: Vec<&Rollout> = rows.iter().map(|&i| &rollouts[i]).collect();
        let seqs: Vec<Vec<u32>> = part.iter().map(|r| [r.prompt.as_slice(), &r.completion].concat()).collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let batch = PaddedBatch::padded_to(&refs, 0, width);
        // Log-probs of the completion columns only (the last `t` of each left-padded row).
        let (t, skip) = completion_columns(&batch, part.iter().map(|r| r.completion.len()));
        let b = batch.batch;
        let mut mask = vec![0.0f32; b * t];
        let mut behaviour = vec![0.0f32; b * t];
        let mut old_host = vec![0.0f32; b * t];
        for (i, r) in part.iter().enumerate() {
            let start = batch.pads[i] + r.prompt.len() - 1 - skip;
            for (k, &lp) in r.behaviour_logp.iter().enumerate() {
                mask[i * t + start + k] = 1.0;
                behaviour[i * t + start + k] = lp;
            }
            if let Some(old) = old {
                old_host[i * t + start..i * t + start + r.completion.len()].copy_from_slice(&old[rows[i]]);
            }
        }
        let dev = &self.device;
        let host = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [b, t]), dev);
        let (logp, entropy) = r1_model::logprobs::token_logprobs_tail(model, &batch, dev, self.temperature, true, t);
        let entropy = entropy.expect("entropy was asked for").detach();
        let mask_t = host(mask.clone());
        let entropy_tokens = (entropy * mask_t.clone()).sum().into_scalar_f64();
        let ref_logp = match (&self.reference, self.grpo.beta > 0.0) {
            (Some(reference), true) => Some(Tensor::from_inner(
                r1_model::logprobs::token_logprobs_tail(reference, &batch, dev, self.temperature, false, t).0,
            )),
            _ => None,
        };
        let advantages: Vec<f32> = part.iter().map(|r| r.advantage).collect();
        let out = grpo_loss(
            GrpoBatch {
                logp,
                old_logp: old.map(|_| host(old_host)),
                ref_logp,
                behaviour_logp: self.grpo.tis_cap.map(|_| host(behaviour)),
                advantages: Tensor::from_data(TensorData::new(advantages, [b]), dev),
                mask: mask_t,
            },
            &self.grpo,
            Some(den),
        )?;
        let tokens = out.stats.tokens;
        let sums = Sums {
            loss: out.loss.clone().into_scalar_f64(),
            kl_tokens: out.stats.kl_ref_mean.unwrap_or(0.0) * tokens,
            entropy_tokens,
            clip_tokens: out.stats.clip_frac * tokens,
            clip_low_tokens: out.stats.clip_frac_low * tokens,
            clip_high_tokens: out.stats.clip_frac_high * tokens,
        };
        let grads = GradientsParams::from_grads(out.loss.backward(), model);
        Ok((grads, sums))
    }

    /// One SFT step on `(prompt, answer)` token pairs (the whole batch): cross-entropy on
    /// the answer tokens, averaged over all answer tokens of the batch.
    pub fn sft_step(
        &mut self,
        pairs: &[(Vec<u32>, Vec<u32>)],
        collective: &mut dyn Collective,
    ) -> Result<StepReport, TrainError> {
        for (index, (p, a)) in pairs.iter().enumerate() {
            self.check_pair(p, a).map_err(|problem| TrainError::Rollout { index, problem })?;
        }
        let den = Denominators { sequences: pairs.len(), tokens: pairs.iter().map(|(_, a)| a.len()).sum() };
        let mine = shard(pairs.len(), collective);
        let len = |i: usize| pairs[i].0.len() + pairs[i].1.len();
        let widest = pairs.iter().map(|(p, a)| p.len() + a.len()).max().unwrap_or(0);
        let model = self.model.take().expect("model is present between steps");
        let mut acc = GradAccumulator::<CausalLm<B>>::default();
        let mut sums = Sums::default();
        let dev = self.device.clone();
        for rows in pack(&mine, len, self.micro_batch * widest) {
            let width = rows.iter().map(|&i| len(i)).max().unwrap_or(0);
            let seqs: Vec<Vec<u32>> = rows.iter().map(|&i| [pairs[i].0.as_slice(), &pairs[i].1].concat()).collect();
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            let batch = PaddedBatch::padded_to(&refs, 0, width);
            // The answers' columns only: the last `t` of each left-padded row.
            let (t, skip) = completion_columns(&batch, rows.iter().map(|&i| pairs[i].1.len()));
            let b = batch.batch;
            let mut mask = vec![0.0f32; b * t];
            for (k, &i) in rows.iter().enumerate() {
                let start = batch.pads[k] + pairs[i].0.len() - 1 - skip;
                mask[k * t + start..k * t + start + pairs[i].1.len()].fill(1.0);
            }
            let (logp, entropy) = r1_model::logprobs::token_logprobs_tail(&model, &batch, &dev, 1.0, true, t);
            let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [b, t]), &dev);
            sums.entropy_tokens +=
                (entropy.expect("entropy was asked for").detach() * mask.clone()).sum().into_scalar_f64();
            // Normalised by the whole batch's answer tokens, so shard losses add up.
            let loss = sft_loss_from_logprobs(logp, mask, Some(den.tokens))?;
            sums.loss += loss.clone().into_scalar_f64();
            acc.add(&model, GradientsParams::from_grads(loss.backward(), &model));
        }
        let grads = if acc.micro_batches() == 0 { GradientsParams::new() } else { acc.sum() };
        self.finish(model, grads, sums, den, collective)
    }

    /// Sums gradients and statistics over ranks and applies the optimizer step.
    fn finish(
        &mut self,
        model: CausalLm<B>,
        grads: GradientsParams,
        sums: Sums,
        den: Denominators,
        collective: &mut dyn Collective,
    ) -> Result<StepReport, TrainError> {
        let reduced = all_reduce_grads::<B, CausalLm<B>>(&model, grads, collective);
        let grads = match reduced {
            Ok(g) => g,
            Err(e) => {
                self.model = Some(model);
                return Err(e.into());
            }
        };
        let mut s = sums.to_vec();
        if collective.world_size() > 1
            && let Err(e) = collective.all_reduce_sum(&mut s)
        {
            self.model = Some(model);
            return Err(e.into());
        }
        let (model, stats) = self.optim.step(model, grads);
        self.model = Some(model);
        let tokens = den.tokens.max(1) as f64;
        Ok(StepReport {
            loss: s[0] as f64,
            kl: s[1] as f64 / tokens,
            entropy: s[2] as f64 / tokens,
            clip_frac: s[3] as f64 / tokens,
            clip_frac_low: s[4] as f64 / tokens,
            clip_frac_high: s[5] as f64 / tokens,
            grad_norm: stats.grad_norm,
            lr: stats.lr,
            tokens: den.tokens as u64,
            sequences: den.sequences as u64,
            optimizer_steps: 1,
        })
    }

    /// Replaces the policy weights (e.g. after loading a checkpoint); the optimizer state
    /// must be loaded separately.
    pub fn set_model(&mut self, model: CausalLm<B>) {
        self.model = Some(model);
    }

    /// The policy without autodiff, for saving or publishing.
    pub fn inference_model(&self) -> CausalLm<B::InnerBackend> {
        self.model().valid()
    }
}

/// Packs `rows` into micro-batches of at most `budget` padded tokens (rows × the widest
/// row of the micro-batch): rows sorted longest first (ties by index, so the packing is
/// deterministic), each micro-batch filled while the next row fits. A row longer than the
/// budget gets a micro-batch of its own.
pub fn pack(rows: &[usize], len: impl Fn(usize) -> usize, budget: usize) -> Vec<Vec<usize>> {
    let mut order = rows.to_vec();
    order.sort_by_key(|&i| (std::cmp::Reverse(len(i)), i));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut width = 0;
    for i in order {
        match out.last_mut() {
            // Longest first: the micro-batch's width is its first row's.
            Some(mb) if (mb.len() + 1) * width <= budget => mb.push(i),
            _ => {
                width = len(i);
                out.push(vec![i]);
            }
        }
    }
    out
}

/// The mean of the reports of one batch's optimizer steps, with the batch's counts.
fn mean_report(reports: &[StepReport], rollouts: &[Rollout]) -> StepReport {
    let n = reports.len().max(1) as f64;
    let mean = |f: fn(&StepReport) -> f64| reports.iter().map(f).sum::<f64>() / n;
    StepReport {
        loss: mean(|r| r.loss),
        kl: mean(|r| r.kl),
        entropy: mean(|r| r.entropy),
        clip_frac: mean(|r| r.clip_frac),
        clip_frac_low: mean(|r| r.clip_frac_low),
        clip_frac_high: mean(|r| r.clip_frac_high),
        grad_norm: mean(|r| r.grad_norm),
        lr: reports.last().map_or(0.0, |r| r.lr),
        tokens: rollouts.iter().map(|r| r.completion.len() as u64).sum(),
        sequences: rollouts.len() as u64,
        optimizer_steps: reports.len() as u64,
    }
}

/// The columns of a left-padded `prompt ++ completion` batch that hold completion tokens:
/// the last `last` of its `len − 1` next-token columns, after `skip` others. Completions end
/// every row, so the longest one sets `last` (at least 1, so an empty part still has a
/// column).
fn completion_columns(batch: &PaddedBatch, completions: impl Iterator<Item = usize>) -> (usize, usize) {
    let t = batch.len - 1;
    let last = completions.max().unwrap_or(0).clamp(1, t);
    (last, t - last)
}

/// The row indices rank `r` of `world` trains on.
fn shard(rows: usize, collective: &dyn Collective) -> Vec<usize> {
    let (rank, world) = (collective.rank(), collective.world_size());
    (0..rows).filter(|i| i % world == rank).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_fills_micro_batches_to_the_token_budget_longest_first() {
        // (row lengths, budget) → micro-batches of row indices.
        let cases: Vec<(Vec<usize>, usize, Vec<Vec<usize>>)> = vec![
            (vec![4, 4, 4, 4], 8, vec![vec![0, 1], vec![2, 3]]),
            // Longest first; a short row fills the room the long one leaves.
            (vec![2, 9, 3, 8], 18, vec![vec![1, 3], vec![2, 0]]),
            // Exactly at the budget fits; one more token does not.
            (vec![5, 5, 5], 15, vec![vec![0, 1, 2]]),
            (vec![5, 5, 5], 14, vec![vec![0, 1], vec![2]]),
            // A row wider than the budget trains alone.
            (vec![20, 1, 1], 10, vec![vec![0], vec![1, 2]]),
            (vec![], 10, vec![]),
        ];
        for (lens, budget, want) in cases {
            let rows: Vec<usize> = (0..lens.len()).collect();
            assert_eq!(pack(&rows, |i| lens[i], budget), want, "{lens:?} budget {budget}");
        }
        // Only this rank's rows are packed.
        assert_eq!(pack(&[1, 3], |i| [9, 2, 9, 7][i], 100), vec![vec![3, 1]]);
    }

    #[test]
    fn a_micro_batch_padded_to_its_own_width_gives_the_padded_gradients() {
        type B = r1_model::CpuTrainBackend;
        let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../model/tests/fixtures/qwen2-tiny");
        let dev = Default::default();
        let model = r1_model::load::<B>(&dir, &dev).unwrap();
        let grpo = GrpoConfig { beta: 0.0, ..GrpoConfig::default() };
        let t = Trainer::new(model, None, grpo, OptimConfig::default(), 8, dev).unwrap();
        let r = |p: usize, c: usize, adv: f32| Rollout {
            prompt: (0..p).map(|i| (i * 13 % 300 + 1) as u32).collect(),
            completion: (0..c).map(|i| (i * 29 % 300 + 5) as u32).collect(),
            behaviour_logp: (0..c).map(|i| -1.0 - i as f32 * 0.1).collect(),
            advantage: adv,
        };
        let rollouts = [r(5, 7, 1.0), r(3, 2, -0.5), r(9, 4, 0.25)];
        // π_old given (as after a stale batch), so the ratio path is exercised too.
        let old: Vec<Vec<f32>> = rollouts.iter().map(|r| r.behaviour_logp.clone()).collect();
        let den = Denominators { sequences: 3, tokens: 13 };
        let own = 13;
        let mut max = 0.0f32;
        let grads = |width: usize| {
            let (mut g, s) = t.grpo_micro(t.model(), &rollouts, &[0, 1, 2], Some(&old), width, den).unwrap();
            (crate::flat::gather::<B, _>(t.model(), &mut g), s.loss)
        };
        let (a, la) = grads(own);
        for width in [own + 1, own + 40] {
            let (b, lb) = grads(width);
            for (x, y) in a.iter().zip(&b) {
                max = max.max((x - y).abs());
            }
            assert!((la - lb).abs() < 1e-6, "loss {la} vs {lb} at width {width}");
        }
        assert!(a.iter().any(|&g| g != 0.0), "the gradients are not all zero");
        assert!(max <= 1e-6, "padded vs own-width gradients differ by {max}");
    }
}
