//! r1-spec: what a user writes to start a run, typed and checked, and nothing else.
//!
//! - [`run`]: [`RunSpec`], the TOML a user submits (`r1ctl submit-run`, `r1ctl up --config`):
//!   dataset, rewards, algorithm, fleet and schedule, layered with `R1_*` variables and
//!   validated as a whole, naming the key and the fix.
//! - [`learner`]: `[algorithm.learner]`, the learner's options with the GRPO loss
//!   configuration ([`GrpoConfig`]) flattened into them, and its presets.
//! - [`prompt`]: the prompt templates and how a prompt becomes text.
//! - [`answer`]: how a dataset's answer column becomes the gold answer (`####` for GSM8K,
//!   `\boxed{}` in MATH solutions, bare answers, choice letters).
//!
//! **Invariant**: a spec that parses and validates here is one every process accepts; no
//! process re-reads part of it by other rules. **API boundary**: serde only; no SQLite,
//! no gRPC, no tensors. The coordinator, actors, learners, the CLI and the recipe all
//! depend on this crate rather than on each other.

pub mod answer;
pub mod learner;
pub mod prompt;
pub mod run;

pub use answer::AnswerKind;
pub use learner::{Aggregation, Decay, GrpoConfig, LearnerOptions, OptimOptions, Preset, TisLevel};
pub use prompt::Template;
pub use run::*;
