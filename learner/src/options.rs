//! The learner's options as a run spec carries them (`[algorithm.learner]`).
//!
//! The coordinator passes that table through unread; [`LearnerOptions::from_spec`] reads
//! it, rejecting unknown keys by name, and turns it into the [`GrpoConfig`] and
//! [`OptimConfig`] of the trainer. Defaults are DeepSeek-R1's (lr 3e-6, β 0.001, ε 10,
//! betas 0.9/0.95, weight decay 0.01, clip at norm 1).

use serde::{Deserialize, Serialize};

use crate::LearnerError;
use crate::grpo::{Aggregation, GrpoConfig};
use crate::optim::OptimConfig;
use crate::schedule::{Decay, ScheduleConfig};

/// Every key `[algorithm.learner]` accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerOptions {
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
    /// Sets both clip bounds (R1 uses 10: clipping practically off).
    pub clip_eps: Option<f64>,
    pub clip_eps_low: Option<f64>,
    pub clip_eps_high: Option<f64>,
    /// KL coefficient against the base model; 0 skips the reference model entirely.
    pub beta: f64,
    pub aggregation: Aggregation,
    pub std_normalize: bool,
    /// Truncated importance sampling against the actors' log-probs; off when unset.
    pub tis_cap: Option<f64>,
    /// Sequences per forward/backward pass; the step's gradient is the sum over them.
    pub micro_batch: usize,
    /// Publish weights to actors every n steps (the last step always publishes).
    pub publish_every: u64,
}

impl Default for LearnerOptions {
    fn default() -> Self {
        let o = OptimConfig::default();
        let g = GrpoConfig::r1();
        Self {
            lr: o.lr,
            beta1: o.beta1,
            beta2: o.beta2,
            adam_eps: o.eps,
            weight_decay: o.weight_decay,
            max_grad_norm: o.max_grad_norm.unwrap_or(0.0),
            warmup_steps: 0,
            decay: Decay::Constant,
            min_lr_ratio: 0.0,
            clip_eps: None,
            clip_eps_low: None,
            clip_eps_high: None,
            beta: g.beta,
            aggregation: g.aggregation,
            std_normalize: g.std_normalize,
            tis_cap: None,
            micro_batch: 8,
            publish_every: 1,
        }
    }
}

impl LearnerOptions {
    /// Reads `[algorithm.learner]` (a JSON object) and checks it.
    pub fn from_spec(table: &serde_json::Value) -> Result<Self, LearnerError> {
        let opts: LearnerOptions = match table {
            serde_json::Value::Null => LearnerOptions::default(),
            v => serde_json::from_value(v.clone())
                .map_err(|e| LearnerError::Config(format!("[algorithm.learner]: {e}")))?,
        };
        opts.grpo().validate()?;
        if opts.micro_batch == 0 {
            return Err(LearnerError::Config("[algorithm.learner] micro_batch is 0; use 1 or more".into()));
        }
        if opts.publish_every == 0 {
            return Err(LearnerError::Config("[algorithm.learner] publish_every is 0; use 1 or more".into()));
        }
        Ok(opts)
    }

    /// The loss settings.
    pub fn grpo(&self) -> GrpoConfig {
        let r1 = GrpoConfig::r1();
        GrpoConfig {
            clip_eps_low: self.clip_eps_low.or(self.clip_eps).unwrap_or(r1.clip_eps_low),
            clip_eps_high: self.clip_eps_high.or(self.clip_eps).unwrap_or(r1.clip_eps_high),
            beta: self.beta,
            aggregation: self.aggregation,
            std_normalize: self.std_normalize,
            tis_cap: self.tis_cap,
            ..r1
        }
    }

    /// The optimizer settings for a run of `total_steps`.
    pub fn optim(&self, total_steps: u64) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.adam_eps,
            weight_decay: self.weight_decay,
            max_grad_norm: (self.max_grad_norm > 0.0).then_some(self.max_grad_norm),
            schedule: ScheduleConfig {
                warmup_steps: self.warmup_steps,
                decay: self.decay,
                total_steps,
                min_lr_ratio: self.min_lr_ratio,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_tables() {
        let cases: &[(&str, Result<(f64, f64, f64), &str>)] = &[
            ("null", Ok((10.0, 10.0, 0.001))),
            (r#"{"lr": 1e-5, "beta": 0.0, "clip_eps": 0.2}"#, Ok((0.2, 0.2, 0.0))),
            (r#"{"clip_eps": 0.2, "clip_eps_high": 0.28}"#, Ok((0.2, 0.28, 0.001))),
            (r#"{"learning_rate": 1e-5}"#, Err("unknown field `learning_rate`")),
            (r#"{"micro_batch": 0}"#, Err("micro_batch is 0")),
            (r#"{"publish_every": 0}"#, Err("publish_every is 0")),
            (r#"{"beta": -1.0}"#, Err("beta")),
        ];
        for (text, want) in cases {
            let got = LearnerOptions::from_spec(&serde_json::from_str(text).unwrap());
            match (got, want) {
                (Ok(o), Ok((lo, hi, beta))) => {
                    let g = o.grpo();
                    assert_eq!((g.clip_eps_low, g.clip_eps_high, g.beta), (*lo, *hi, *beta), "{text}");
                }
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
