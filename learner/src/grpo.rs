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
//!   Default ε = 0.2, the PPO/DeepSeekMath value. The R1 paper used ε = 10 for R1 (large,
//!   on-policy batches, so clipping hardly ever binds); we default to the tighter bound
//!   because r1 also trains on stale samples (`max_policy_lag` > 0), where the clip is
//!   what keeps an update trust-region-like. [`GrpoConfig::r1`] sets 10 to reproduce R1;
//!   ε_low ≥ 1 means no lower clip (ρ is always positive).
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
//!   response length), removing the length bias of 1/|o_i|. A row without completion
//!   tokens still counts as a sequence and adds 0.
//! - **Truncated importance sampling** (`tis_cap` = C): when the samples came from a
//!   behaviour policy older than π_old (asynchronous actors, or an inference engine whose
//!   numerics differ), each token's loss is multiplied by the detached weight
//!   min(exp(old_logp − behaviour_logp), C). Without `behaviour_logp` the weight is 1.
//! - **Micro-batches**: the denominators of the aggregation (number of sequences, number
//!   of tokens) can be fixed to those of the whole optimizer batch ([`Denominators`]), so
//!   the sum of the micro-batch losses and gradients equals the full-batch ones.
//! - **Padding**: positions where `mask` is 0 contribute nothing, not even NaN: their log
//!   differences are zeroed before any `exp`.
//!
//! Single-update on-policy GRPO (π_old = π_θ, as in nanochat) is `old_logp = None`: ρ is 1
//! in value but still carries the gradient of logp.

use burn::tensor::{Bool, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::LearnerError;

/// How per-token loss terms are reduced to one scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// Mean over the tokens of each sequence, then over sequences (DeepSeekMath, R1).
    SeqMeanTokenMean,
    /// Sum over all tokens divided by the number of tokens (DAPO).
    TokenMean,
    /// Sum over each sequence's tokens divided by a constant, then mean over sequences (Dr. GRPO).
    SeqMeanTokenSumNorm,
}

/// GRPO options; see the module doc for what each one means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Lower clip bound: ρ is clipped below at 1 − ε_low (ε_low ≥ 1: no lower clip).
    pub clip_eps_low: f64,
    /// Upper clip bound: ρ is clipped above at 1 + ε_high (DAPO uses 0.28).
    pub clip_eps_high: f64,
    /// KL penalty coefficient against the reference policy; 0 disables it.
    pub beta: f64,
    /// Reduction of per-token terms.
    pub aggregation: Aggregation,
    /// Constant L of `seq-mean-token-sum-norm`; `None` uses the batch's time dimension T.
    pub token_sum_norm: Option<usize>,
    /// Divide advantages by the group's reward std (off = Dr. GRPO).
    pub std_normalize: bool,
    /// Added to the std before dividing.
    pub adv_eps: f64,
    /// Truncated importance-sampling cap C; `None` disables the correction.
    pub tis_cap: Option<f64>,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            clip_eps_low: 0.2,
            clip_eps_high: 0.2,
            beta: 0.001,
            aggregation: Aggregation::SeqMeanTokenMean,
            token_sum_norm: None,
            std_normalize: true,
            adv_eps: 1e-6,
            tis_cap: None,
        }
    }
}

impl GrpoConfig {
    /// DeepSeek-R1's settings: ε = 10 (clipping practically off), β = 0.001.
    pub fn r1() -> Self {
        Self {
            clip_eps_low: 10.0,
            clip_eps_high: 10.0,
            ..Self::default()
        }
    }

    /// DAPO: clip-higher (ε_low 0.2, ε_high 0.28), token-mean, no KL term. Pair it with
    /// dynamic sampling (drop [`GroupAdvantages::degenerate_groups`]) and overlong shaping.
    pub fn dapo() -> Self {
        Self {
            clip_eps_high: 0.28,
            beta: 0.0,
            aggregation: Aggregation::TokenMean,
            ..Self::default()
        }
    }

    /// Dr. GRPO: no std division, per-sequence token sums over a constant `max_len`, no KL.
    pub fn dr_grpo(max_len: usize) -> Self {
        Self {
            beta: 0.0,
            aggregation: Aggregation::SeqMeanTokenSumNorm,
            token_sum_norm: Some(max_len),
            std_normalize: false,
            ..Self::default()
        }
    }

    /// Rejects settings that would silently produce a meaningless loss.
    pub fn validate(&self) -> Result<(), LearnerError> {
        // Each check is written so that NaN fails it.
        let checks = [
            (
                self.clip_eps_low >= 0.0,
                format!("clip_eps_low is {}; use a value >= 0", self.clip_eps_low),
            ),
            (
                self.clip_eps_high >= 0.0,
                format!("clip_eps_high is {}; use a value >= 0", self.clip_eps_high),
            ),
            (
                self.beta >= 0.0,
                format!("beta is {}; use a value >= 0", self.beta),
            ),
            (
                self.token_sum_norm != Some(0),
                "token_sum_norm is 0; use the maximum response length".into(),
            ),
            (
                self.adv_eps >= 0.0,
                format!(
                    "adv_eps is {}; use a small value >= 0 such as 1e-6",
                    self.adv_eps
                ),
            ),
            (
                self.tis_cap.is_none_or(|c| c >= 1.0),
                format!(
                    "tis_cap is {:?}; use a cap >= 1 (2 is common) or omit it",
                    self.tis_cap
                ),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(LearnerError::Config(msg)),
            None => Ok(()),
        }
    }
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
pub fn group_advantages(
    rewards: &[f64],
    group_size: usize,
    cfg: &GrpoConfig,
) -> Result<GroupAdvantages, LearnerError> {
    if group_size == 0 || !rewards.len().is_multiple_of(group_size) {
        return Err(LearnerError::RaggedGroups {
            rewards: rewards.len(),
            group_size,
        });
    }
    if let Some((index, &value)) = rewards.iter().enumerate().find(|(_, r)| !r.is_finite()) {
        return Err(LearnerError::NonFiniteReward { index, value });
    }
    let mut out = GroupAdvantages {
        advantages: Vec::with_capacity(rewards.len()),
        degenerate_groups: vec![],
    };
    for (g, group) in rewards.chunks(group_size).enumerate() {
        if group.iter().all(|&r| r == group[0]) {
            out.degenerate_groups.push(g);
            out.advantages.extend(std::iter::repeat_n(0.0, group.len()));
            continue;
        }
        let n = group.len() as f64;
        let mean = group.iter().sum::<f64>() / n;
        let std = (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let scale = if cfg.std_normalize {
            1.0 / (std + cfg.adv_eps)
        } else {
            1.0
        };
        out.advantages
            .extend(group.iter().map(|r| ((r - mean) * scale) as f32));
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
        Self {
            sequences: rows,
            tokens: mask.iter().filter(|&&m| m > 0.0).count(),
        }
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
    /// Mean k3 estimate of KL(π_θ ‖ π_ref); `None` without reference log-probs.
    pub kl_ref_mean: Option<f64>,
    /// Mean k3 estimate of KL(π_old ‖ π_θ): how far this update has moved.
    pub approx_kl_old: f64,
    /// Mean and max of ρ.
    pub ratio_mean: f64,
    pub ratio_max: f64,
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
    cfg.validate()?;
    let GrpoBatch {
        logp,
        old_logp,
        ref_logp,
        behaviour_logp,
        advantages,
        mask,
    } = batch;
    let [b, t] = logp.dims();
    let expect = |name, got: Vec<usize>, expected: Vec<usize>| {
        if got == expected {
            Ok(())
        } else {
            Err(LearnerError::Shape {
                name,
                got,
                expected,
            })
        }
    };
    expect("mask", mask.dims().to_vec(), vec![b, t])?;
    expect("advantages", advantages.dims().to_vec(), vec![b])?;
    for (name, x) in [
        ("old_logp", &old_logp),
        ("ref_logp", &ref_logp),
        ("behaviour_logp", &behaviour_logp),
    ] {
        if let Some(x) = x {
            expect(name, x.dims().to_vec(), vec![b, t])?;
        }
    }
    if cfg.beta > 0.0 && ref_logp.is_none() {
        return Err(LearnerError::MissingReference { beta: cfg.beta });
    }

    let pad: Tensor<B, 2, Bool> = mask.clone().lower_equal_elem(0.0);
    let old_logp = old_logp.unwrap_or_else(|| logp.clone()).detach();
    let adv = advantages.detach().unsqueeze_dim::<2>(1).repeat_dim(1, t);

    // Policy-gradient term: −min(ρÂ, clip(ρ)Â), computed where ρ is finite even on padding.
    let log_ratio = (logp.clone() - old_logp.clone()).mask_fill(pad.clone(), 0.0);
    let ratio = log_ratio.clone().exp();
    let unclipped = ratio.clone() * adv.clone();
    let clipped = ratio
        .clone()
        .clamp(1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high)
        * adv;
    let mut per_token = unclipped.clone().min_pair(clipped.clone()).neg();

    // KL_k3(π_θ ‖ π_ref) = exp(ref − logp) − (ref − logp) − 1.
    let kl_ref = ref_logp.map(|r| {
        let d = (r.detach() - logp.clone()).mask_fill(pad.clone(), 0.0);
        d.clone().exp() - d - 1.0
    });
    if cfg.beta > 0.0 {
        per_token = per_token + kl_ref.clone().expect("checked above").mul_scalar(cfg.beta);
    }

    // Truncated importance sampling: detached weight min(π_old/π_behaviour, C).
    let mut tis_capped = None;
    if let (Some(cap), Some(beh)) = (cfg.tis_cap, behaviour_logp) {
        let w = (old_logp - beh.detach()).mask_fill(pad.clone(), 0.0).exp();
        tis_capped = Some(w.clone().greater_equal_elem(cap).float());
        per_token = per_token * w.clamp_max(cap).detach();
    }

    let per_token = per_token * mask.clone();
    let den = denominators.unwrap_or(Denominators {
        sequences: b,
        tokens: mask.clone().sum().into_scalar_f64().round() as usize,
    });
    let loss = match cfg.aggregation {
        Aggregation::TokenMean => per_token.sum().div_scalar(den.tokens.max(1) as f64),
        Aggregation::SeqMeanTokenMean => {
            // 1 / len computed forward (exactly) and multiplied: differentiating `x / len`
            // would go through Burn's approximate reciprocal (see `r1_model::ops`).
            let len = mask.clone().sum_dim(1).clamp_min(1.0).detach();
            let inv_len = len.ones_like() / len;
            (per_token.sum_dim(1) * inv_len)
                .sum()
                .div_scalar(den.sequences.max(1) as f64)
        }
        Aggregation::SeqMeanTokenSumNorm => {
            let norm = cfg.token_sum_norm.unwrap_or(t) as f64;
            per_token
                .sum()
                .div_scalar(norm * den.sequences.max(1) as f64)
        }
    };

    // Diagnostics, all over this batch's masked tokens.
    let n = mask.clone().sum().into_scalar_f64();
    let masked_mean = |x: Tensor<B, 2>| {
        if n > 0.0 {
            (x.detach() * mask.clone()).sum().into_scalar_f64() / n
        } else {
            0.0
        }
    };
    let stats = GrpoStats {
        clip_frac: masked_mean(clipped.lower(unclipped).float()),
        kl_ref_mean: kl_ref.map(&masked_mean),
        approx_kl_old: masked_mean(ratio.clone() - 1.0 - log_ratio),
        ratio_mean: masked_mean(ratio.clone()),
        ratio_max: if n > 0.0 {
            (ratio.detach() * mask.clone()).max().into_scalar_f64()
        } else {
            0.0
        },
        tis_capped_frac: tis_capped.map(&masked_mean).unwrap_or(0.0),
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
        self.into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("a float tensor")[0]
    }
}
