//! The learner's options as a run spec carries them (`[algorithm.learner]`), and the GRPO
//! loss configuration they contain.
//!
//! One table, one type: [`GrpoConfig`] is flattened into [`LearnerOptions`], so every loss
//! field (`clip_eps_low`, `token_sum_norm`, `tis_cap`, ...) is a key of
//! `[algorithm.learner]` beside the optimizer's (`lr`, `weight_decay`, ...). The table is
//! parsed and checked with the rest of the spec, before a run exists: an unknown key is
//! refused by name.
//!
//! # Presets
//! `preset = "r1" | "dapo" | "dr_grpo"` starts the table from a published recipe's loss
//! settings; keys given next to it override the preset's value. Each preset writes out
//! every field it sets ([`GrpoConfig::r1`], [`GrpoConfig::dapo`], [`GrpoConfig::dr_grpo`]),
//! and the resolved table, not the preset name alone, is what the stored spec records.
//! Without a preset the table starts from R1's settings.
//!
//! `clip_eps` is shorthand for `clip_eps_low` and `clip_eps_high` together; an explicit
//! `clip_eps_low`/`clip_eps_high` beside it wins for its side.
//!
//! # Values filled from the rest of the spec
//! Dr. GRPO's normaliser `token_sum_norm` defaults to the run's
//! `algorithm.sampling.max_new_tokens`: a constant, as the paper
//! prescribes, never the batch's padded width.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::run::{SpecError, invalid};

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

/// At what granularity the truncated importance weight against the behaviour policy is
/// taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TisLevel {
    /// One weight per token: min(π_old/π_behaviour, C) of that token (veRL's `token`).
    #[default]
    Token,
    /// One weight per sequence: min(Π_t π_old/π_behaviour, C), the product over its
    /// completion tokens (veRL's `sequence`).
    Sequence,
}

/// Shape of the learning-rate schedule after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    Constant,
    Cosine,
}

/// A published recipe's loss settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    R1,
    Dapo,
    DrGrpo,
}

impl Preset {
    /// The loss settings of the preset.
    pub fn grpo(self) -> GrpoConfig {
        match self {
            Preset::R1 => GrpoConfig::r1(),
            Preset::Dapo => GrpoConfig::dapo(),
            Preset::DrGrpo => GrpoConfig::dr_grpo(),
        }
    }
}

/// The GRPO loss options; `r1_learner::grpo` documents what each one does to the loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpoConfig {
    /// Lower clip bound: ρ is clipped below at 1 − ε_low (ε_low ≥ 1: no lower clip).
    pub clip_eps_low: f64,
    /// Upper clip bound: ρ is clipped above at 1 + ε_high (DAPO uses 0.28).
    pub clip_eps_high: f64,
    /// KL penalty coefficient against the reference policy; 0 skips the reference model.
    pub beta: f64,
    /// Reduction of per-token terms.
    pub aggregation: Aggregation,
    /// Constant L of `seq-mean-token-sum-norm`; a run spec fills it with
    /// `algorithm.sampling.max_new_tokens` when unset.
    pub token_sum_norm: Option<usize>,
    /// Divide advantages by the group's reward std (off = Dr. GRPO).
    pub std_normalize: bool,
    /// Added to the std before dividing.
    pub adv_eps: f64,
    /// Truncated importance-sampling cap C against the behaviour policy; `None` disables it.
    pub tis_cap: Option<f64>,
    /// Token- or sequence-level importance weight.
    pub tis_level: TisLevel,
    /// |log ρ| and |log π_old/π_behaviour| are clamped to this before `exp`, so one token
    /// far off-policy cannot overflow the loss (veRL clamps at 20).
    pub log_ratio_clamp: f64,
}

impl Default for GrpoConfig {
    /// PPO's and DeepSeekMath's ε = 0.2 with R1's β and aggregation: the base that a
    /// [`GrpoConfig`] read on its own fills missing keys from. A run spec's table starts
    /// from [`GrpoConfig::r1`] or its preset instead ([`LearnerOptions::from_map`]).
    fn default() -> Self {
        Self { clip_eps_low: 0.2, clip_eps_high: 0.2, ..Self::r1() }
    }
}

impl GrpoConfig {
    /// DeepSeek-R1: ε = 10 (clipping practically off: large on-policy batches), β = 0.001,
    /// the paper's per-sequence token mean, std-normalised advantages.
    pub fn r1() -> Self {
        Self {
            clip_eps_low: 10.0,
            clip_eps_high: 10.0,
            beta: 0.001,
            aggregation: Aggregation::SeqMeanTokenMean,
            token_sum_norm: None,
            std_normalize: true,
            adv_eps: 1e-6,
            tis_cap: None,
            tis_level: TisLevel::Token,
            log_ratio_clamp: 20.0,
        }
    }

    /// DAPO: clip-higher (ε_low 0.2, ε_high 0.28), token-mean, no KL term. Pair it with
    /// `algorithm.dynamic_sampling = true`.
    pub fn dapo() -> Self {
        Self {
            clip_eps_low: 0.2,
            clip_eps_high: 0.28,
            beta: 0.0,
            aggregation: Aggregation::TokenMean,
            token_sum_norm: None,
            std_normalize: true,
            adv_eps: 1e-6,
            tis_cap: None,
            tis_level: TisLevel::Token,
            log_ratio_clamp: 20.0,
        }
    }

    /// Dr. GRPO: no std division, per-sequence token sums over a constant (the run's
    /// `max_new_tokens` unless `token_sum_norm` is given), PPO's ε = 0.2, no KL term.
    pub fn dr_grpo() -> Self {
        Self {
            clip_eps_low: 0.2,
            clip_eps_high: 0.2,
            beta: 0.0,
            aggregation: Aggregation::SeqMeanTokenSumNorm,
            token_sum_norm: None,
            std_normalize: false,
            adv_eps: 1e-6,
            tis_cap: None,
            tis_level: TisLevel::Token,
            log_ratio_clamp: 20.0,
        }
    }

    /// Rejects settings that would silently produce a meaningless loss; `prefix` is where
    /// the table sits in the spec (`algorithm.learner`).
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let field = |f: &str| format!("{prefix}.{f}");
        // Each check is written so that NaN fails it.
        let checks = [
            (self.clip_eps_low >= 0.0, "clip_eps_low", format!("is {}; use a value >= 0", self.clip_eps_low)),
            (self.clip_eps_high >= 0.0, "clip_eps_high", format!("is {}; use a value >= 0", self.clip_eps_high)),
            (self.beta >= 0.0, "beta", format!("is {}; use a value >= 0", self.beta)),
            (self.token_sum_norm != Some(0), "token_sum_norm", "is 0; use the maximum response length".into()),
            (
                self.token_sum_norm.is_none() || self.aggregation == Aggregation::SeqMeanTokenSumNorm,
                "token_sum_norm",
                format!(
                    "is set but aggregation is {:?}, which does not use it; remove it or use aggregation = \"seq-mean-token-sum-norm\"",
                    self.aggregation
                ),
            ),
            (
                self.adv_eps >= 0.0 && self.adv_eps.is_finite(),
                "adv_eps",
                format!("is {}; use a small value >= 0 such as 1e-6", self.adv_eps),
            ),
            (
                self.tis_cap.is_none_or(|c| c >= 1.0 && c.is_finite()),
                "tis_cap",
                format!("is {:?}; use a finite cap >= 1 (2 is common) or omit it", self.tis_cap),
            ),
            (
                self.log_ratio_clamp > 0.0 && self.log_ratio_clamp <= 80.0,
                "log_ratio_clamp",
                format!(
                    "is {}; use a value in (0, 80] (20 is veRL's; exp(80) is near f32's limit)",
                    self.log_ratio_clamp
                ),
            ),
        ];
        match checks.into_iter().find(|(ok, _, _)| !ok) {
            Some((_, f, msg)) => Err(invalid(field(f), msg)),
            None => Ok(()),
        }
    }

    /// Whether the clip bounds make a trust region: both sides below 1, so the ratio of an
    /// update is bounded on both sides.
    pub fn has_trust_region(&self) -> bool {
        self.clip_eps_low < 1.0 && self.clip_eps_high < 1.0
    }
}

/// The optimizer and its schedule, shared by GRPO and SFT tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimOptions {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    pub weight_decay: f64,
    /// Global-norm clipping; 0 disables it.
    pub max_grad_norm: f64,
    pub warmup_steps: u64,
    /// `constant` or `cosine` (cosine decays over the run's `schedule.total_steps`).
    pub decay: Decay,
    pub min_lr_ratio: f64,
    /// Sequences per forward/backward pass; an optimizer step's gradient is the sum over them.
    pub micro_batch: usize,
    /// Publish weights to actors every n learner steps (the last step always publishes).
    pub publish_every: u64,
}

impl Default for OptimOptions {
    /// DeepSeek-R1's: lr 3e-6, betas 0.9/0.95, weight decay 0.01, clip at norm 1.
    fn default() -> Self {
        Self {
            lr: 3e-6,
            beta1: 0.9,
            beta2: 0.95,
            adam_eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            decay: Decay::Constant,
            min_lr_ratio: 0.0,
            micro_batch: 8,
            publish_every: 1,
        }
    }
}

impl OptimOptions {
    /// Checks every value; `prefix` is where the table sits in the spec.
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let field = |f: &str| format!("{prefix}.{f}");
        let checks = [
            (self.lr > 0.0 && self.lr.is_finite(), "lr", format!("is {}; use a finite value > 0", self.lr)),
            ((0.0..1.0).contains(&self.beta1), "beta1", format!("is {}; use a value in [0, 1)", self.beta1)),
            ((0.0..1.0).contains(&self.beta2), "beta2", format!("is {}; use a value in [0, 1)", self.beta2)),
            (
                self.adam_eps > 0.0 && self.adam_eps.is_finite(),
                "adam_eps",
                format!("is {}; use a small value > 0 such as 1e-8", self.adam_eps),
            ),
            (
                self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
                "weight_decay",
                format!("is {}; use a value >= 0", self.weight_decay),
            ),
            (
                self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite(),
                "max_grad_norm",
                format!("is {}; use a value >= 0 (0 disables clipping)", self.max_grad_norm),
            ),
            (
                (0.0..=1.0).contains(&self.min_lr_ratio),
                "min_lr_ratio",
                format!("is {}; use a fraction in [0, 1]", self.min_lr_ratio),
            ),
            (self.micro_batch > 0, "micro_batch", "is 0; use 1 or more".into()),
            (self.publish_every > 0, "publish_every", "is 0; use 1 or more".into()),
        ];
        match checks.into_iter().find(|(ok, _, _)| !ok) {
            Some((_, f, msg)) => Err(invalid(field(f), msg)),
            None => Ok(()),
        }
    }
}

/// Every key `[algorithm.learner]` of a GRPO run accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LearnerOptions {
    /// The preset the loss settings started from, recorded; `None` started from R1's.
    pub preset: Option<Preset>,
    #[serde(flatten)]
    pub grpo: GrpoConfig,
    #[serde(flatten)]
    pub optim: OptimOptions,
    /// Optimizer steps per rollout batch in each epoch: the batch is split into this many
    /// minibatches of whole groups (veRL's `ppo_mini_batch_size` as a count). π_old is
    /// fixed at the batch's start.
    pub minibatches_per_batch: u32,
    /// Passes over the rollout batch (TRL `num_iterations`, veRL `ppo_epochs`).
    pub epochs_per_batch: u32,
}

impl Default for LearnerOptions {
    fn default() -> Self {
        Self {
            preset: None,
            grpo: GrpoConfig::r1(),
            optim: OptimOptions::default(),
            minibatches_per_batch: 1,
            epochs_per_batch: 1,
        }
    }
}

/// Most optimizer steps one rollout batch may take; more is a typo more often than a wish.
const MAX_STEPS_PER_BATCH: u32 = 64;

impl LearnerOptions {
    /// Optimizer steps per rollout batch.
    pub fn steps_per_batch(&self) -> u32 {
        self.minibatches_per_batch * self.epochs_per_batch
    }

    /// Checks every value; `prefix` is where the table sits in the spec.
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        self.grpo.validate(prefix)?;
        self.optim.validate(prefix)?;
        for (f, n) in
            [("minibatches_per_batch", self.minibatches_per_batch), ("epochs_per_batch", self.epochs_per_batch)]
        {
            if n == 0 || n > MAX_STEPS_PER_BATCH {
                return Err(invalid(format!("{prefix}.{f}"), format!("is {n}; use 1..={MAX_STEPS_PER_BATCH}")));
            }
        }
        if self.steps_per_batch() > MAX_STEPS_PER_BATCH {
            return Err(invalid(
                format!("{prefix}.epochs_per_batch"),
                format!(
                    "times minibatches_per_batch is {}; keep the optimizer steps per batch at {MAX_STEPS_PER_BATCH} or fewer",
                    self.steps_per_batch()
                ),
            ));
        }
        Ok(())
    }

    /// Reads a table from its key/value map: the preset first, `clip_eps` expanded, then
    /// every other key over it; an unknown key is an error naming it and the known ones.
    pub fn from_map(mut map: BTreeMap<String, serde_json::Value>) -> Result<Self, String> {
        let preset: Option<Preset> = match map.remove("preset") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v)
                    .map_err(|e| format!("key `preset`: {e}; use \"r1\", \"dapo\" or \"dr_grpo\""))?,
            ),
        };
        let base = LearnerOptions {
            preset,
            grpo: preset.map(Preset::grpo).unwrap_or_else(GrpoConfig::r1),
            ..LearnerOptions::default()
        };
        if let Some(eps) = map.remove("clip_eps") {
            for side in ["clip_eps_low", "clip_eps_high"] {
                map.entry(side.into()).or_insert_with(|| eps.clone());
            }
        }
        layer(&base, map)
    }

    /// Serde entry point of the layered reading above, for `#[serde(deserialize_with)]`.
    pub fn deserialize_layered<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        Self::from_map(map).map_err(serde::de::Error::custom)
    }
}

impl OptimOptions {
    /// Serde entry point for the `[algorithm.learner]` table of an SFT run: the optimizer's
    /// keys only, since SFT has no GRPO loss (a GRPO key there is refused, not ignored).
    pub fn deserialize_layered<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        layer(&OptimOptions::default(), map).map_err(serde::de::Error::custom)
    }
}

/// `map` over the serialized `base`: every key of `map` must be a key of `base`.
fn layer<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    map: BTreeMap<String, serde_json::Value>,
) -> Result<T, String> {
    let serde_json::Value::Object(mut table) = serde_json::to_value(base).map_err(|e| e.to_string())? else {
        unreachable!("a struct serializes to an object")
    };
    let base = table.clone();
    for (key, value) in &map {
        if !table.contains_key(key) {
            let known: Vec<&str> = table.keys().map(String::as_str).collect();
            return Err(format!("unknown key `{key}`; the keys are {}", known.join(", ")));
        }
        table.insert(key.clone(), value.clone());
    }
    serde_json::from_value(serde_json::Value::Object(table)).map_err(|e| {
        // Name the key whose value is wrong: the first that fails on its own.
        let culprit = map.iter().find_map(|(key, value)| {
            let mut one = base.clone();
            one.insert(key.clone(), value.clone());
            serde_json::from_value::<T>(serde_json::Value::Object(one)).err().map(|e| format!("key `{key}`: {e}"))
        });
        culprit.unwrap_or_else(|| e.to_string())
    })
}
