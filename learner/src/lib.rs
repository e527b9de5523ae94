//! r1-learner: the math of a training step, on tensors and on any Burn `Module`.
//!
//! This crate knows nothing about the policy model's internals: it takes per-token
//! log-probabilities (or logits) that a model computed, turns them into a scalar loss,
//! and updates whatever parameters a Burn module holds.
//!
//! Layout:
//! - [`grpo`]: the GRPO objective (DeepSeekMath §4.1 / DeepSeek-R1) with the DAPO and
//!   Dr. GRPO options, truncated importance sampling, and group advantages.
//! - [`sft`]: masked next-token cross-entropy for cold start and distillation.
//! - [`schedule`]: learning-rate schedules (linear warmup, then cosine or constant).
//! - [`clip`]: global-norm gradient clipping and gradient accumulation over micro-batches.
//! - [`optim`]: AdamW (Burn's, PyTorch semantics) + schedule + clipping in one [`optim::Optim`],
//!   with optimizer state keyed by parameter path so it survives a reload from safetensors.
//! - [`checkpoint`]: atomic checkpoint folders (`<dir>/step-N`) and the `latest` finder.
//!
//! Every numeric piece is checked against PyTorch by golden files made by
//! `learner/reference/*.py` (CI only reads the goldens; it needs no torch).

pub mod checkpoint;
pub mod clip;
pub mod collective;
pub mod config;
pub mod flat;
pub mod grpo;
pub mod optim;
pub mod options;
pub mod publish;
pub mod schedule;
pub mod service;
pub mod sft;
pub mod trainer;

/// Errors from the learner's math and checkpoint code.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error("`{name}` has shape {got:?} but {expected:?} was expected; pass tensors shaped like `logp` [batch, time]")]
    Shape { name: &'static str, got: Vec<usize>, expected: Vec<usize> },
    #[error("beta is {beta} but no reference log-probs were given; pass `ref_logp` or set `beta = 0`")]
    MissingReference { beta: f64 },
    #[error("invalid GRPO config: {0}")]
    Config(String),
    #[error("{rewards} rewards do not split into groups of {group_size}; send whole groups")]
    RaggedGroups { rewards: usize, group_size: usize },
    #[error("reward {index} is {value}; a reward must be finite (check the reward worker)")]
    NonFiniteReward { index: usize, value: f64 },
}
