//! The learner's options, as a run spec carries them (`[algorithm.learner]`).
//!
//! The table is typed and checked by `r1_spec` with the rest of the spec, before the run
//! exists ([`LearnerOptions`], with the GRPO loss configuration flattened into it); this
//! module turns it into the trainer's optimizer settings.

pub use r1_spec::learner::{LearnerOptions, OptimOptions};

use crate::optim::OptimConfig;
use crate::schedule::ScheduleConfig;

/// The optimizer settings for a run of `total_steps` learner steps; with several optimizer
/// steps per rollout batch, pass the total of optimizer steps.
pub fn optim_config(o: &OptimOptions, total_steps: u64) -> OptimConfig {
    OptimConfig {
        lr: o.lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.adam_eps,
        weight_decay: o.weight_decay,
        max_grad_norm: (o.max_grad_norm > 0.0).then_some(o.max_grad_norm),
        schedule: ScheduleConfig {
            warmup_steps: o.warmup_steps,
            decay: o.decay,
            total_steps,
            min_lr_ratio: o.min_lr_ratio,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's optimizer defaults are the learner's own (DeepSeek-R1's).
    #[test]
    fn spec_defaults_are_the_optimizer_defaults() {
        let got = optim_config(&OptimOptions::default(), 7);
        let want = OptimConfig::default();
        assert_eq!(
            (got.lr, got.beta1, got.beta2, got.eps, got.weight_decay, got.max_grad_norm),
            (want.lr, want.beta1, want.beta2, want.eps, want.weight_decay, want.max_grad_norm)
        );
        assert_eq!(got.schedule.total_steps, 7);
    }
}
