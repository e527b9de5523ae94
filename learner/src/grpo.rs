//! The GRPO loss, as DeepSeekMath §4.1 and DeepSeek-R1 write it, with the options later
//! work added. One function, [`grpo_loss`], computes it from per-token log-probs.
//!
//! # The objective
//! For each prompt q, G outputs o_1..o_G are sampled from π_old and scored r_1..r_G.
//! GRPO maximises
//!
//! ```text
//! J(θ) = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ_it Â_i, clip(ρ_it, 1−ε, 1+ε) Â_i) − β KL_k3(π_θ ‖ π_ref)_it ]
//!
//! ρ_it   = π_θ(o_it | q, o_i,<t) / π_old(o_it | q, o_i,<t) = exp(logp − old_logp)
//! Â_i    = (r_i − mean(r)) / std(r)                  the same for every token of o_i
//! KL_k3  = π_ref/π_θ − log(π_ref/π_θ) − 1 = exp(ref − logp) − (ref − logp) − 1
//! ```
//!
//! [`grpo_loss`] returns the loss to *minimise*, −J, aggregated over the batch.
//!
//! # Options and deviations (all in [`GrpoConfig`])
//! - **Clip bounds**: `clip_eps_low`/`clip_eps_high` give clip(ρ, 1−ε_low, 1+ε_high);
//!   equal values are the paper's symmetric ε, a larger ε_high is DAPO's clip-higher.
//!   A run spec starts from R1's ε = 10 (large on-policy batches, so clipping hardly ever
//!   binds; [`GrpoConfig::r1`]); a spec with `max_policy_lag` > 0 must set bounds below 1
//!   (PPO's 0.2), since on stale samples the clip is what keeps an update
//!   trust-region-like. ε_low ≥ 1 means no lower clip (ρ is always positive). The clip
//!   fraction is reported split: `clip_frac_low` (Â < 0 and ρ < 1 − ε_low) and
//!   `clip_frac_high` (Â > 0 and ρ > 1 + ε_high), DAPO's two diagnostics.
//! - **KL penalty**: β·KL_k3 against a frozen reference policy's log-probs, R1's
//!   β = 0.001 by default. β = 0 skips the term and `ref_logp` may be absent.
//! - **Advantage std-normalisation**: on by default (paper); off is Dr. GRPO, which
//!   argues the division over-weights groups with small reward spread. The std is the
//!   unbiased (n−1) sample std, with `adv_eps` added to the denominator.
//! - **All-equal groups**: a group whose rewards are all equal has no learning signal;
//!   its advantages are exactly 0 (never 0/0 = NaN) and its index is reported by
//!   [`group_advantages`] so DAPO-style dynamic sampling can drop or refill it.
//! - **Aggregation** ([`Aggregation`]): how per-token terms become one number.
//!   `seq-mean-token-mean` is the paper's 1/G Σ_i 1/|o_i| Σ_t; `token-mean` (DAPO) is
//!   Σ_i Σ_t / Σ_i |o_i|, so long outputs weigh in per token; `seq-mean-token-sum-norm`
//!   (Dr. GRPO) is 1/G Σ_i Σ_t / L with a constant L (`token_sum_norm`, e.g. the maximum
//!   response length; a run spec fills in `algorithm.sampling.max_new_tokens`), removing
//!   the length bias of 1/|o_i|. L is required: a normaliser that followed the batch's
//!   padded width would change from batch to batch. A row without completion tokens
//!   still counts as a sequence and adds 0.
//! - **Off-policy samples: π_old and truncated importance sampling** (`tis_cap` = C,
//!   `tis_level`). r1 takes π_old to be the *learner's* policy at the start of the rollout
//!   batch, computed by the learner (a forward pass without gradient) whenever it differs
//!   from π_θ: when the batch holds a group sampled by older weights (`max_policy_lag` > 0)
//!   or when one batch takes several optimizer steps (`minibatches_per_batch`,
//!   `epochs_per_batch`). The gap between π_old and the policy that really sampled the
//!   tokens (older weights, or an inference engine whose numerics differ) is corrected by a
//!   separate, detached importance weight against the actors' behaviour log-probs:
//!   `token`: w_it = min(π_old/π_behaviour, C) per token; `sequence`: one weight per
//!   sequence, min(Π_t π_old/π_behaviour, C). This is what veRL (`old_log_prob` recomputed
//!   by the actor, rollout importance weights against `rollout_log_probs`) and TRL
//!   (`old_per_token_logps` from the trained model, `vllm_importance_sampling_correction`)
//!   do. We chose it over using the behaviour log-probs as π_old because then the clip
//!   would act on the staleness itself: a stale token whose ratio already lies outside
//!   [1 − ε, 1 + ε] before any update gets no gradient at all, and the trust region would
//!   be measured from a policy the learner no longer holds. With π_old the learner's, the
//!   clip bounds this update, and the IS weight (truncated, so variance stays bounded)
//!   reweights stale samples toward the learner's distribution. Fresh samples have
//!   π_old ≈ π_behaviour and a weight ≈ 1.
//!   As in veRL the weight multiplies the policy-gradient term only, never the KL penalty:
//!   the KL term is an expectation under π_θ estimated on the samples, and reweighting it
//!   by the sampler's staleness would change what it penalises. Without `behaviour_logp`
//!   (or with `tis_cap` unset) the weight is 1.
//! - **Log-ratio clamp** (`log_ratio_clamp`): log ρ and log(π_old/π_behaviour) are clamped
//!   to ±`log_ratio_clamp` before `exp` (veRL uses 20), so one token far off-policy cannot
//!   overflow the loss to inf; a clamped token's ratio carries no gradient.
//! - **Micro-batches**: the denominators of the aggregation (number of sequences, number
//!   of tokens) can be fixed to those of the whole optimizer batch ([`Denominators`]), so
//!   the sum of the micro-batch losses and gradients equals the full-batch ones.
//! - **Padding**: positions where `mask` is 0 contribute nothing, not even NaN: their log
//!   differences are zeroed before any `exp`.
//!
//! Single-update on-policy GRPO (π_old = π_θ, as in nanochat) is `old_logp = None`: ρ is 1
//! in value but still carries the gradient of logp.

use burn::tensor::{Bool, Tensor, backend::Backend};
use serde::Serialize;

use crate::LearnerError;

pub use r1_spec::learner::{Aggregation, GrpoConfig, TisLevel};

/// [`GrpoConfig::validate`] as a learner error.
pub(crate) fn check_config(cfg: &GrpoConfig) -> Result<(), LearnerError> {
    cfg.validate("algorithm.learner").map_err(|e| LearnerError::Config(e.to_string()))?;
    if cfg.aggregation == Aggregation::SeqMeanTokenSumNorm && cfg.token_sum_norm.is_none() {
        return Err(LearnerError::Config(
            "token_sum_norm is unset for seq-mean-token-sum-norm; set the constant L (the maximum response length)"
                .into(),
        ));
    }
    Ok(())
}

/// Advantages for a batch of whole groups, and which groups carried no signal.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupAdvantages {
    /// One advantage per sample, in the order of the rewards.
    pub advantages: Vec<f32>,
    /// Indices of groups whose rewards were all equal (advantages set to exactly 0).
    pub degenerate_groups: Vec<usize>,
}

/// Group-relative advantages: Â_i = (r_i − mean(r)) / (std(r) + adv_eps) within each
/// consecutive group of `group_size` rewards (no division when `std_normalize` is off).
pub fn group_advantages(rewards: &[f64], group_size: usize, cfg: &GrpoConfig) -> Result<GroupAdvantages, LearnerError> {
    if group_size == 0 || !rewards.len().is_multiple_of(group_size) {
        return Err(LearnerError::RaggedGroups { rewards: rewards.len(), group_size });
    }
    if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, r)| !r.is_finite()) {
        return Err(LearnerError::NonFiniteReward { index, value });
    }
    let mut out = GroupAdvantages { advantages: Vec::with_capacity(rewards.len()), degenerate_groups: vec![] };
    for (g, group) in rewards.chunks(group_size).enumerate() {
        if group.iter().all(|&r| r == group[0]) {
            out.degenerate_groups.push(g);
            out.advantages.extend(std::iter::repeat_n(0.0, group.len()));
            continue;
        }
        let n = group.len() as f64;
        let mean = group.iter().sum::<f64>() / n;
        let std = (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let scale = if cfg.std_normalize { 1.0 / (std + cfg.adv_eps) } else { 1.0 };
        out.advantages.extend(group.iter().map(|r| ((r - mean) * scale) as f32));
    }
    Ok(out)
}

/// The denominators of the aggregation. Fix them to the whole optimizer batch's counts
/// when the batch is split into micro-batches, so that micro-batch losses add up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Denominators {
    /// Number of sequences (the G·prompts of the batch).
    pub sequences: usize,
    /// Number of completion tokens (ones in the mask).
    pub tokens: usize,
}

impl Denominators {
    /// Counts of a host-side mask of `rows` rows, as the trainer holds it before splitting.
    pub fn from_mask(mask: &[f32], rows: usize) -> Self {
        Self { sequences: rows, tokens: mask.iter().filter(|&&m| m > 0.0).count() }
    }
}

/// Inputs of [`grpo_loss`]; every [B, T] tensor is aligned with `logp`.
#[derive(Clone, Debug)]
pub struct GrpoBatch<B: Backend> {
    /// log π_θ of each sampled token, with gradient.
    pub logp: Tensor<B, 2>,
    /// log π_old of each token; `None` means on-policy (π_old = π_θ, detached).
    pub old_logp: Option<Tensor<B, 2>>,
    /// log π_ref of each token; needed when β > 0.
    pub ref_logp: Option<Tensor<B, 2>>,
    /// log-probs of the policy that actually sampled the tokens, for TIS.
    pub behaviour_logp: Option<Tensor<B, 2>>,
    /// Â per sequence, `[B]`.
    pub advantages: Tensor<B, 1>,
    /// 1 on completion tokens, 0 on prompt and padding, `[B, T]`.
    pub mask: Tensor<B, 2>,
}

impl<B: Backend> GrpoBatch<B> {
    /// An on-policy batch (π_old = π_θ detached) without reference or behaviour log-probs.
    pub fn on_policy(logp: Tensor<B, 2>, advantages: Tensor<B, 1>, mask: Tensor<B, 2>) -> Self {
        Self { logp, old_logp: None, ref_logp: None, behaviour_logp: None, advantages, mask }
    }
}

/// Diagnostics of one loss evaluation, over the masked tokens of this batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GrpoStats {
    /// Fraction of tokens whose surrogate took the clipped branch (no gradient).
    pub clip_frac: f64,
    /// Of which: Â < 0 and ρ < 1 − ε_low.
    pub clip_frac_low: f64,
    /// Of which: Â > 0 and ρ > 1 + ε_high.
    pub clip_frac_high: f64,
    /// Mean k3 estimate of KL(π_θ ‖ π_ref); `None` without reference log-probs.
    pub kl_ref_mean: Option<f64>,
    /// Mean k3 estimate of KL(π_old ‖ π_θ): how far this update has moved.
    pub approx_kl_old: f64,
    /// Mean and max of ρ.
    pub ratio_mean: f64,
    pub ratio_max: f64,
    /// Mean importance weight min(π_old/π_behaviour, C) over tokens (1 without TIS).
    pub tis_weight_mean: f64,
    /// Fraction of tokens whose TIS weight hit the cap.
    pub tis_capped_frac: f64,
    /// Masked tokens and sequences in this batch.
    pub tokens: f64,
    pub sequences: f64,
}

/// A scalar loss to minimise (shape `[1]`) and its diagnostics.
#[derive(Clone, Debug)]
pub struct GrpoOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    pub stats: GrpoStats,
}

/// The GRPO loss (−J, see the module doc). `denominators` = `None` uses this batch's own
/// counts; pass the full batch's counts when accumulating over micro-batches.
pub fn grpo_loss<B: Backend>(
    batch: GrpoBatch<B>,
    cfg: &GrpoConfig,
    denominators: Option<Denominators>,
) -> Result<GrpoOutput<B>, LearnerError> {
    check_config(cfg)?;
    let GrpoBatch { logp, old_logp, ref_logp, behaviour_logp, advantages, mask } = batch;
    let [b, t] = logp.dims();
    let expect = |name, got: Vec<usize>, expected: Vec<usize>| {
        if got == expected { Ok(()) } else { Err(LearnerError::Shape { name, got, expected }) }
    };
    expect("mask", mask.dims().to_vec(), vec![b, t])?;
    expect("advantages", advantages.dims().to_vec(), vec![b])?;
    for (name, x) in [("old_logp", &old_logp), ("ref_logp", &ref_logp), ("behaviour_logp", &behaviour_logp)] {
        if let Some(x) = x {
            expect(name, x.dims().to_vec(), vec![b, t])?;
        }
    }
    if cfg.beta > 0.0 && ref_logp.is_none() {
        return Err(LearnerError::MissingReference { beta: cfg.beta });
    }

    let pad: Tensor<B, 2, Bool> = mask.clone().lower_equal_elem(0.0);
    let old_logp = old_logp.unwrap_or_else(|| logp.clone()).detach();
    let adv_row = advantages.detach();
    let adv = adv_row.unsqueeze_dim::<2>(1).repeat_dim(1, t);
    let c = cfg.log_ratio_clamp;

    // Policy-gradient term: −min(ρÂ, clip(ρ)Â), computed where ρ is finite even on padding.
    let log_ratio = (logp.clone() - old_logp.clone()).mask_fill(pad.clone(), 0.0).clamp(-c, c);
    let ratio = log_ratio.clone().exp();
    let unclipped = ratio.clone() * adv.clone();
    let clipped = ratio.clone().clamp(1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high) * adv.clone();
    let mut pg = unclipped.clone().min_pair(clipped.clone()).neg();

    // Truncated importance sampling on the policy-gradient term only: the detached weight
    // min(π_old/π_behaviour, C), per token or per sequence.
    let mut tis = None;
    if let (Some(cap), Some(beh)) = (cfg.tis_cap, behaviour_logp) {
        let d = (old_logp - beh.detach()).mask_fill(pad.clone(), 0.0).clamp(-c, c);
        let w = match cfg.tis_level {
            TisLevel::Token => d.exp(),
            TisLevel::Sequence => (d * mask.clone()).sum_dim(1).clamp(-c, c).exp().repeat_dim(1, t),
        };
        let capped = w.clone().greater_equal_elem(cap).float();
        let w = w.clamp_max(cap).detach();
        pg = pg * w.clone();
        tis = Some((w, capped));
    }

    // KL_k3(π_θ ‖ π_ref) = exp(ref − logp) − (ref − logp) − 1.
    let kl_ref = ref_logp.map(|r| {
        let d = (r.detach() - logp.clone()).mask_fill(pad.clone(), 0.0);
        d.clone().exp() - d - 1.0
    });
    let per_token = if cfg.beta > 0.0 { pg + kl_ref.clone().expect("checked above").mul_scalar(cfg.beta) } else { pg };

    let per_token = per_token * mask.clone();
    let den = denominators
        .unwrap_or(Denominators { sequences: b, tokens: mask.clone().sum().into_scalar_f64().round() as usize });
    let loss = match cfg.aggregation {
        Aggregation::TokenMean => per_token.sum().div_scalar(den.tokens.max(1) as f64),
        Aggregation::SeqMeanTokenMean => {
            // 1 / len computed forward (exactly) and multiplied: differentiating `x / len`
            // would go through Burn's approximate reciprocal (see `r1_model::ops`).
            let len = mask.clone().sum_dim(1).clamp_min(1.0).detach();
            let inv_len = len.ones_like() / len;
            (per_token.sum_dim(1) * inv_len).sum().div_scalar(den.sequences.max(1) as f64)
        }
        Aggregation::SeqMeanTokenSumNorm => {
            let norm = cfg.token_sum_norm.expect("checked by check_config") as f64;
            per_token.sum().div_scalar(norm * den.sequences.max(1) as f64)
        }
    };

    // Diagnostics, all over this batch's masked tokens.
    let n = mask.clone().sum().into_scalar_f64();
    let masked_mean = |x: Tensor<B, 2>| {
        if n > 0.0 { (x.detach() * mask.clone()).sum().into_scalar_f64() / n } else { 0.0 }
    };
    let clip_low = ratio.clone().lower_elem(1.0 - cfg.clip_eps_low).float() * adv.clone().lower_elem(0.0).float();
    let clip_high = ratio.clone().greater_elem(1.0 + cfg.clip_eps_high).float() * adv.greater_elem(0.0).float();
    let stats = GrpoStats {
        clip_frac: masked_mean(clipped.lower(unclipped).float()),
        clip_frac_low: masked_mean(clip_low),
        clip_frac_high: masked_mean(clip_high),
        kl_ref_mean: kl_ref.map(&masked_mean),
        approx_kl_old: masked_mean(ratio.clone() - 1.0 - log_ratio),
        ratio_mean: masked_mean(ratio.clone()),
        ratio_max: if n > 0.0 { (ratio.detach() * mask.clone()).max().into_scalar_f64() } else { 0.0 },
        tis_weight_mean: tis.as_ref().map_or(1.0, |(w, _)| masked_mean(w.clone())),
        tis_capped_frac: tis.map_or(0.0, |(_, capped)| masked_mean(capped)),
        tokens: n,
        sequences: b as f64,
    };
    Ok(GrpoOutput { loss, stats })
}

/// Reading a one-element tensor back as f64, whatever the backend's float type.
pub(crate) trait ScalarExt {
    fn into_scalar_f64(self) -> f64;
}

impl<B: Backend> ScalarExt for Tensor<B, 1> {
    fn into_scalar_f64(self) -> f64 {
        self.into_data().convert::<f64>().to_vec::<f64>().expect("a float tensor")[0]
    }
}
