//! The recipe's stages that go through the coordinator, and the run spec each one submits:
//! the GRPO runs (R1-Zero, the RL of R1, the student's RL), the SFT runs (cold start, the
//! student's distillation) and the rejection-sampling stage. `r1ctl up` layers them from
//! `--recipe FILE` and runs the specs they make.

use std::path::Path;

use r1_spec::{
    Algorithm, DatasetSpec, FieldMap, FleetSpec, GrpoSpec, LearnerOptions, OptimOptions, RewardComponent, RunSpec,
    SamplingSpec, Schedule, SftSpec, Template,
};
use serde::{Deserialize, Serialize};

use crate::ModelShape;

/// The GRPO runs (R1-Zero, the RL of R1, the student's RL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlStage {
    pub steps: u64,
    pub group_size: u32,
    pub prompts_per_step: u32,
    /// R1-Zero evaluates on the eval split at step 0 and every `eval_every` steps (0: never).
    pub eval_every: u64,
    /// Evaluate the R1 and student RL runs the same way while they train.
    pub eval_all_runs: bool,
    pub max_new_tokens: u32,
    pub temperature: f32,
    pub lr: f64,
    /// The learning rate of the GRPO after the cold start (R1's RL); `None`: `lr`. Half of
    /// `lr` by default. A
    /// cold-started model is sharp, and the rate that moves a base model quickly knocks it
    /// off its mode: on the long_chain + solve mix, lr 2e-4 took a 51% cold start to 41% in
    /// 10 steps, 5e-5 to 55% in 30 (recipe/ablations/README.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_after_cold_start: Option<f64>,
    /// The steps of R1's RL; `None`: `steps`. R1's RL is on the recipe's critical path (the
    /// distillation waits for it) while R1-Zero and the student's RL run beside it, so they
    /// take more steps within the same wall time: 60 here, 80 for them by default (at lr
    /// 2e-4, 100 R1-Zero steps did worse than 60 once; at 1.5e-4, 80 did better than 60:
    /// docs/reproduction.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_after_cold_start: Option<u64>,
    pub beta: f64,
    pub micro_batch: usize,
    pub actors: u32,
}

/// An SFT run through the coordinator (cold start; the student's distillation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftStage {
    pub steps: u64,
    pub batch_size: u32,
    pub lr: f64,
}

/// Rejection sampling from the R1 model and the student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillStage {
    pub enabled: bool,
    /// Train prompts sampled from the teacher.
    pub prompts: usize,
    /// Samples per prompt.
    pub k: usize,
    /// The student's shape (smaller than the base model).
    pub student: ModelShape,
    /// Pretraining steps of the student's base (the rest of its pretraining is the
    /// teacher's `[prepare.pretrain]`).
    pub pretrain_steps: u64,
    pub sft: SftStage,
}

impl Default for RlStage {
    fn default() -> Self {
        Self {
            // R1-Zero and the student's RL: 80 steps at 1.5e-4. R1-Zero's eval pass@1 after
            // 60 steps averaged 23% at 2e-4 (sampling seeds 0–1), 28% at 1.5e-4 and 26% at 1e-4
            // (seeds 0–2), 10–13% at 3e-4; 80 steps added 4–5 points (docs/reproduction.md).
            steps: 80,
            group_size: 8,
            prompts_per_step: 8,
            eval_every: 80,
            eval_all_runs: false,
            max_new_tokens: 64,
            temperature: 1.0,
            lr: 1.5e-4,
            lr_after_cold_start: Some(1e-4),
            steps_after_cold_start: Some(60),
            beta: 0.0,
            micro_batch: 16,
            actors: 1,
        }
    }
}

impl Default for SftStage {
    /// The cold start: 8 steps, a short one, so that GRPO after it has somewhere to go (30
    /// steps saturate the easy cells and GRPO then adds 2–4 points; docs/reproduction.md).
    fn default() -> Self {
        Self { steps: 8, batch_size: 16, lr: 3e-4 }
    }
}

impl Default for DistillStage {
    fn default() -> Self {
        let base = ModelShape::default();
        Self {
            enabled: true,
            // 3000 × 2 samples keep about 1900 verified traces: the student needs that many
            // examples (and 1200 steps over them) to pass 25% (docs/reproduction.md).
            prompts: 3000,
            k: 2,
            // Half as wide, a quarter of the weights; two layers are kept, the fewest that
            // can copy a number from the question into a step.
            student: ModelShape {
                hidden_size: base.hidden_size / 2,
                intermediate_size: base.intermediate_size / 2,
                ..base
            },
            pretrain_steps: 500,
            sft: SftStage { steps: 1200, batch_size: 16, lr: 1e-3 },
        }
    }
}

impl RlStage {
    /// This stage as R1's RL after the cold start runs it: `lr_after_cold_start` and
    /// `steps_after_cold_start` where set (its evaluations, when on, at the end).
    pub fn after_cold_start(&self) -> RlStage {
        let steps = self.steps_after_cold_start.unwrap_or(self.steps);
        RlStage {
            lr: self.lr_after_cold_start.unwrap_or(self.lr),
            steps,
            eval_every: if self.eval_every == 0 { 0 } else { self.eval_every.min(steps) },
            ..self.clone()
        }
    }

    /// The run spec of this GRPO stage from `base`, training on `train` and (when
    /// `evaluate`) evaluating on `eval` every `eval_every` steps.
    pub fn run_spec(&self, name: &str, base: &Path, train: &Path, eval: &Path, evaluate: bool) -> RunSpec {
        let mut learner = LearnerOptions::default();
        learner.optim.lr = self.lr;
        learner.optim.micro_batch = self.micro_batch;
        learner.grpo.beta = self.beta;
        RunSpec {
            name: name.into(),
            base_model: base.into(),
            dataset: task_dataset(train, Some(eval)),
            rewards: vec![
                RewardComponent {
                    name: "accuracy".into(),
                    verifier: "math".into(),
                    weight: 1.0,
                    options: Default::default(),
                },
                RewardComponent {
                    name: "format".into(),
                    verifier: "format".into(),
                    weight: 0.5,
                    options: Default::default(),
                },
            ],
            algorithm: Algorithm::Grpo(GrpoSpec {
                group_size: self.group_size,
                prompts_per_step: self.prompts_per_step,
                max_policy_lag: 0,
                dynamic_sampling: false,
                sampling: SamplingSpec {
                    template: Template::R1,
                    temperature: self.temperature,
                    max_new_tokens: self.max_new_tokens,
                    stop: vec!["</answer>".into()],
                    ..SamplingSpec::default()
                },
                learner,
            }),
            fleet: FleetSpec { actors: self.actors, reward_workers: 1, learner_ranks: 1 },
            schedule: Schedule {
                total_steps: self.steps,
                checkpoint_every: self.steps,
                eval_every: if evaluate { self.eval_every } else { 0 },
            },
        }
    }
}

impl SftStage {
    /// The run spec of this SFT stage on the `{prompt, completion}` rows of `data`.
    pub fn run_spec(&self, name: &str, base: &Path, data: &Path) -> RunSpec {
        let learner = OptimOptions { lr: self.lr, micro_batch: self.batch_size as usize, ..OptimOptions::default() };
        RunSpec {
            name: name.into(),
            base_model: base.into(),
            dataset: DatasetSpec {
                fields: FieldMap { prompt: "prompt".into(), answer: Some("completion".into()), ..FieldMap::default() },
                epochs: 100,
                ..task_dataset(data, None)
            },
            rewards: vec![],
            algorithm: Algorithm::Sft(SftSpec { batch_size: self.batch_size, template: Template::R1, learner }),
            fleet: FleetSpec::default(),
            schedule: Schedule { total_steps: self.steps, checkpoint_every: self.steps, eval_every: 0 },
        }
    }
}

fn task_dataset(path: &Path, eval: Option<&Path>) -> DatasetSpec {
    DatasetSpec {
        path: path.into(),
        format: None,
        fields: FieldMap { prompt: "prompt".into(), answer: Some("answer".into()), ..FieldMap::default() },
        eval_fraction: 0.0,
        eval_path: eval.map(Path::to_path_buf),
        answer_kind: None,
        system_prompt: None,
        seed: 0,
        shuffle: true,
        epochs: 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specs the stages make are valid run specs, with their knobs where they belong.
    #[test]
    fn stage_specs_validate() {
        let p = Path::new("/x.jsonl");
        let rl = RlStage::default();
        for (evaluate, every) in [(true, rl.eval_every), (false, 0)] {
            let spec = rl.run_spec("a", p, p, p, evaluate);
            spec.validate().unwrap();
            assert_eq!(spec.schedule.eval_every, every, "evaluate = {evaluate}");
            let Algorithm::Grpo(g) = &spec.algorithm else { panic!("a GRPO spec") };
            assert_eq!(
                (g.learner.optim.lr, g.learner.grpo.beta, g.learner.optim.micro_batch),
                (rl.lr, rl.beta, rl.micro_batch)
            );
        }
        // R1's RL takes its own rate when one is set, and only that changes.
        let lr_of = |stage: &RlStage| match stage.run_spec("r1", p, p, p, false).algorithm {
            Algorithm::Grpo(g) => g.learner.optim.lr,
            Algorithm::Sft(_) => panic!("a GRPO spec"),
        };
        assert_eq!(lr_of(&rl.after_cold_start()), 1e-4, "the default: below R1-Zero's rate");
        assert_eq!(rl.after_cold_start().steps, 60, "the default: fewer steps than R1-Zero's");
        assert_eq!(rl.after_cold_start().eval_every, 60, "its evaluations, when on, at its end");
        let unset = RlStage { lr_after_cold_start: None, steps_after_cold_start: None, ..rl.clone() };
        assert_eq!(lr_of(&unset.after_cold_start()), rl.lr, "unset: the same rate as R1-Zero");
        assert_eq!(unset.after_cold_start(), unset, "unset: the same stage");
        let own = RlStage { lr_after_cold_start: Some(5e-5), steps_after_cold_start: Some(40), ..rl.clone() };
        assert_eq!(lr_of(&own.after_cold_start()), 5e-5);
        assert_eq!(
            RlStage { lr: 5e-5, steps: 40, eval_every: 40, ..own.clone() },
            own.after_cold_start(),
            "nothing else changes"
        );
        let sft = SftStage::default();
        let spec = sft.run_spec("b", p, p);
        spec.validate().unwrap();
        let Algorithm::Sft(s) = &spec.algorithm else { panic!("an SFT spec") };
        assert_eq!((s.learner.lr, s.learner.micro_batch), (sft.lr, sft.batch_size as usize));
    }
}
