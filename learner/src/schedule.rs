//! Learning-rate schedules: linear warmup, then constant or cosine decay.
//!
//! The learning rate of optimizer step k (0-based) is `lr · factor(k)` with
//!
//! ```text
//! warmup   k < W:  factor = (k + 1) / W
//! constant k ≥ W:  factor = 1
//! cosine   k ≥ W:  p = min(1, (k − W) / max(1, S − W)),
//!                  factor = m + (1 − m) · ½ (1 + cos(π p))
//! ```
//!
//! W = `warmup_steps`, S = `total_steps`, m = `min_lr_ratio`. Warmup starts at lr/W rather
//! than 0 so that the first step does something. This is the same factor PyTorch's
//! `LambdaLR` applies, which the golden test checks.

use serde::{Deserialize, Serialize};

pub use r1_spec::learner::Decay;

/// A warmup-then-decay schedule, as a multiplier of the base learning rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub warmup_steps: u64,
    pub decay: Decay,
    /// Step at which cosine decay reaches `min_lr_ratio` (ignored by `constant`).
    pub total_steps: u64,
    /// Floor of the cosine decay, as a fraction of the base learning rate.
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self { warmup_steps: 0, decay: Decay::Constant, total_steps: 0, min_lr_ratio: 0.0 }
    }
}

impl ScheduleConfig {
    /// Multiplier of the base learning rate at optimizer step `step` (0-based).
    pub fn factor(&self, step: u64) -> f64 {
        let w = self.warmup_steps;
        if step < w {
            return (step + 1) as f64 / w as f64;
        }
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine => {
                let span = self.total_steps.saturating_sub(w).max(1) as f64;
                let p = ((step - w) as f64 / span).min(1.0);
                let m = self.min_lr_ratio;
                m + (1.0 - m) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}
