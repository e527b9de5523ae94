//! The run spec: the typed configuration a user submits with `r1ctl submit-run FILE`.
//!
//! A spec is TOML (see `coordinator/examples/run.toml`). [`RunSpec::load`] layers it the
//! way every r1 config is layered: serde defaults < the file < `R1_*` environment variables
//! (`R1_ALGORITHM__GROUP_SIZE=8` sets `algorithm.group_size`; only variables whose first
//! segment names a spec section are read, so `R1_LOG` and friends are left alone).
//! [`RunSpec::from_toml`] parses text alone, which is what the coordinator does with a spec
//! it receives over the wire. Unknown keys are rejected everywhere, and [`RunSpec::validate`]
//! checks values and their combinations, naming the field and the fix.
//!
//! Learner options (`algorithm.learner`) are typed ([`crate::learner`]) and checked here with
//! the rest, so a typo there is refused before the run exists.
//!
//! Limits: reward components are kept as data. The spec checks names and weights and that
//! the dataset maps the fields a known verifier needs (`math` → `answer`, `code` →
//! `tests`); whether a verifier exists and its `options` are right is checked by the reward
//! crate when `submit-run` or `up` builds the composite.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::answer::AnswerKind;
use crate::learner::{Aggregation, LearnerOptions, OptimOptions};
use crate::prompt::Template;

/// A whole run, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// A human name, shown by `r1ctl runs`; need not be unique.
    pub name: String,
    /// Folder of the base checkpoint (HF layout: `config.json`, safetensors, `tokenizer.json`).
    pub base_model: PathBuf,
    pub dataset: DatasetSpec,
    /// The weighted reward components, in the order they are reported.
    #[serde(default)]
    pub rewards: Vec<RewardComponent>,
    pub algorithm: Algorithm,
    #[serde(default)]
    pub fleet: FleetSpec,
    pub schedule: Schedule,
}

/// Where the prompts come from and how they are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub path: PathBuf,
    /// Read from the file extension (`.jsonl`, `.parquet`) when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DatasetFormat>,
    #[serde(default)]
    pub fields: FieldMap,
    /// How the answer column holds the gold answer the rewards compare against (`plain`,
    /// `gsm8k`, `boxed`, `choice`; see [`AnswerKind`]). GRPO runs with an answer column
    /// default to `plain`; SFT trains on the column as written and takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_kind: Option<AnswerKind>,
    /// A system message put before every prompt (text prompts become a system and a user
    /// message; conversations that open with their own system message keep it). Needs the
    /// chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Fraction of the rows held out for evaluation, picked by `seed`; 0 holds out none.
    #[serde(default)]
    pub eval_fraction: f64,
    /// A separate evaluation file, in the same format and with the same field mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_path: Option<PathBuf>,
    /// Seeds the eval split and the per-epoch shuffles.
    #[serde(default)]
    pub seed: u64,
    /// Shuffle the training rows each epoch; off keeps file order.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Passes over the training rows before the dataset counts as exhausted.
    #[serde(default = "one")]
    pub epochs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    Jsonl,
    Parquet,
}

/// Which column holds each field r1 uses; `prompt` is required, the rest are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    #[serde(default = "prompt_key")]
    pub prompt: String,
    /// Ground truth for the `math` verifier (a string or a number in the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Test cases for the `code` verifier (any JSON value: a list of `{stdin, stdout}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
    /// Target language for the `language` and `code` verifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap { prompt: prompt_key(), answer: None, tests: None, language: None }
    }
}

/// One weighted reward component; the same shape as `r1_reward::compose::ComponentSpec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardComponent {
    pub name: String,
    pub verifier: String,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// The training algorithm and the settings the coordinator acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Algorithm {
    Grpo(GrpoSpec),
    Sft(SftSpec),
}

/// GRPO as run by the coordinator; defaults are R1-Zero's (G = 16, 32 prompts per step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoSpec {
    /// Samples per prompt (G).
    #[serde(default = "group_size")]
    pub group_size: u32,
    /// Prompt groups in one learner batch.
    #[serde(default = "prompts_per_step")]
    pub prompts_per_step: u32,
    /// How many policy versions a group may lag the learner; 0 is strictly on-policy.
    #[serde(default)]
    pub max_policy_lag: u64,
    /// DAPO dynamic sampling: drop groups whose rewards are all equal, draw more prompts.
    #[serde(default)]
    pub dynamic_sampling: bool,
    /// How actors sample and how prompts are rendered.
    #[serde(default)]
    pub sampling: SamplingSpec,
    /// Loss and optimizer options for the learner (ε, β, lr, ...).
    #[serde(default, deserialize_with = "LearnerOptions::deserialize_layered")]
    pub learner: LearnerOptions,
}

/// Sampling settings the actors use for every group of a GRPO run (and evaluation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingSpec {
    pub template: Template,
    /// Softmax temperature; R1-Zero samples at 1.0.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 keeps every token.
    pub top_k: u32,
    /// Most tokens in one completion; longer ones are cut and marked truncated.
    pub max_new_tokens: u32,
    /// Strings that end a completion (kept in its text), e.g. "</answer>".
    pub stop: Vec<String>,
    /// Seeds each group's samples together with the group id, so a re-leased group
    /// samples the same way.
    pub seed: u64,
}

impl Default for SamplingSpec {
    fn default() -> Self {
        SamplingSpec {
            template: Template::R1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 1024,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

/// Supervised fine-tuning on the dataset's prompt/answer pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftSpec {
    /// Examples in one learner batch.
    #[serde(default = "prompts_per_step")]
    pub batch_size: u32,
    /// How the prompt is rendered before its answer is appended.
    #[serde(default)]
    pub template: Template,
    /// Optimizer options for the learner (no GRPO loss keys: SFT has no such loss).
    #[serde(default, deserialize_with = "OptimOptions::deserialize_layered")]
    pub learner: OptimOptions,
}

/// How many of each worker the run wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default = "one")]
    pub actors: u32,
    #[serde(default = "one")]
    pub reward_workers: u32,
    #[serde(default = "one")]
    pub learner_ranks: u32,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec { actors: 1, reward_workers: 1, learner_ranks: 1 }
    }
}

/// Length of the run and its cadences, in learner steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub total_steps: u64,
    /// Checkpoint every n steps (and at the end); 0 checkpoints only at the end.
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u64,
    /// Evaluate every n steps (and at step 0); 0 never evaluates.
    #[serde(default)]
    pub eval_every: u64,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn prompt_key() -> String {
    "prompt".into()
}
fn group_size() -> u32 {
    16
}
fn prompts_per_step() -> u32 {
    32
}
fn checkpoint_every() -> u64 {
    100
}

/// The top-level sections, the only first segments read from `R1_*` variables.
const SECTIONS: &[&str] = &["name", "base_model", "dataset", "rewards", "algorithm", "fleet", "schedule"];

/// Limits that keep a spec sane; a value over one is a typo more often than a wish.
const MAX_GROUP_SIZE: u32 = 1024;
const MAX_FLEET: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read run spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("run spec {origin}: {source}; fix or remove that key (see coordinator/examples/run.toml)")]
    Parse { origin: String, source: Box<figment::Error> },
    #[error("run spec JSON: {0}; send the JSON form of a run spec")]
    Json(serde_json::Error),
    #[error("run spec field `{field}` {problem}")]
    Invalid { field: String, problem: String },
}

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError::Invalid { field: field.into(), problem: problem.into() }
}

impl RunSpec {
    /// Reads a spec file, applies `R1_*` overrides and validates the result.
    pub fn load(path: &Path) -> Result<RunSpec, SpecError> {
        if let Err(source) = std::fs::metadata(path) {
            return Err(SpecError::Read { path: path.into(), source });
        }
        let env = Env::prefixed("R1_").split("__").filter(|k| {
            let first = k.as_str().split('.').next().unwrap_or("");
            SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(first))
        });
        Self::extract(Figment::new().merge(Toml::file_exact(path)).merge(env), path.display().to_string())
    }

    /// Parses and validates spec text (no environment), e.g. a spec received over the wire.
    pub fn from_toml(text: &str) -> Result<RunSpec, SpecError> {
        Self::extract(Figment::new().merge(Toml::string(text)), "text".into())
    }

    /// Parses and validates the JSON form written by `serde_json::to_string(&spec)`.
    pub fn from_json(text: &str) -> Result<RunSpec, SpecError> {
        let mut spec: RunSpec = serde_json::from_str(text).map_err(SpecError::Json)?;
        spec.fill_defaults();
        spec.validate()?;
        Ok(spec)
    }

    fn extract(figment: Figment, origin: String) -> Result<RunSpec, SpecError> {
        let mut spec: RunSpec = figment
            .extract()
            .map_err(|e| SpecError::Parse { origin, source: Box::new(algorithm_error(&figment, e)) })?;
        spec.fill_defaults();
        spec.validate()?;
        Ok(spec)
    }

    /// Fills the values whose default comes from elsewhere in the spec: Dr. GRPO's
    /// `algorithm.learner.token_sum_norm` is `algorithm.sampling.max_new_tokens` unless given.
    /// The parsers call it; a spec built in code calls it before [`RunSpec::validate`].
    pub fn fill_defaults(&mut self) {
        if matches!(self.algorithm, Algorithm::Grpo(_))
            && self.dataset.fields.answer.is_some()
            && self.dataset.answer_kind.is_none()
        {
            self.dataset.answer_kind = Some(AnswerKind::Plain);
        }
        if let Algorithm::Grpo(g) = &mut self.algorithm {
            let l = &mut g.learner.grpo;
            if l.aggregation == Aggregation::SeqMeanTokenSumNorm && l.token_sum_norm.is_none() {
                l.token_sum_norm = Some(g.sampling.max_new_tokens as usize);
            }
        }
    }

    /// Checks every value and combination; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "is empty; give the run a name"));
        }
        if self.base_model.as_os_str().is_empty() {
            return Err(invalid("base_model", "is empty; set it to the base checkpoint's folder"));
        }
        self.dataset.validate()?;
        self.validate_prompting()?;
        self.validate_rewards()?;
        match &self.algorithm {
            Algorithm::Grpo(g) => {
                if g.group_size < 2 || g.group_size > MAX_GROUP_SIZE {
                    return Err(invalid(
                        "algorithm.group_size",
                        format!("is {}; GRPO compares samples within a group, use 2..={MAX_GROUP_SIZE}", g.group_size),
                    ));
                }
                if g.prompts_per_step == 0 {
                    return Err(invalid("algorithm.prompts_per_step", "is 0; set it to 1 or more"));
                }
                g.sampling.validate()?;
                g.validate_learner()?;
            }
            Algorithm::Sft(s) => {
                if s.batch_size == 0 {
                    return Err(invalid("algorithm.batch_size", "is 0; set it to 1 or more"));
                }
                s.learner.validate("algorithm.learner")?;
                if self.dataset.fields.answer.is_none() {
                    return Err(invalid(
                        "dataset.fields.answer",
                        "is not set; SFT trains on prompt/answer pairs, name the answer column",
                    ));
                }
            }
        }
        for (field, n) in [
            ("fleet.actors", self.fleet.actors),
            ("fleet.reward_workers", self.fleet.reward_workers),
            ("fleet.learner_ranks", self.fleet.learner_ranks),
        ] {
            if n == 0 || n > MAX_FLEET {
                return Err(invalid(field, format!("is {n}; use 1..={MAX_FLEET}")));
            }
        }
        if self.schedule.eval_every > 0 {
            if matches!(self.algorithm, Algorithm::Sft(_)) {
                return Err(invalid(
                    "schedule.eval_every",
                    "is set for an SFT run; evaluation runs for GRPO only, set it to 0",
                ));
            }
            if self.dataset.eval_fraction == 0.0 && self.dataset.eval_path.is_none() {
                return Err(invalid(
                    "schedule.eval_every",
                    "is set but the dataset has no eval split; set dataset.eval_fraction or dataset.eval_path",
                ));
            }
        }
        if self.schedule.total_steps == 0 {
            return Err(invalid("schedule.total_steps", "is 0; set it to the number of learner steps to run"));
        }
        Ok(())
    }

    /// The dataset keys that depend on the algorithm: the answer kind and the system prompt.
    fn validate_prompting(&self) -> Result<(), SpecError> {
        let d = &self.dataset;
        let template = match &self.algorithm {
            Algorithm::Grpo(g) => ("algorithm.sampling.template", g.sampling.template),
            Algorithm::Sft(s) => {
                if let Some(kind) = d.answer_kind {
                    return Err(invalid(
                        "dataset.answer_kind",
                        format!(
                            "is `{}` for an SFT run; SFT trains on the answer column as written, remove the key",
                            kind.name()
                        ),
                    ));
                }
                ("algorithm.template", s.template)
            }
        };
        if d.answer_kind.is_some() && d.fields.answer.is_none() {
            return Err(invalid(
                "dataset.answer_kind",
                "is set but dataset.fields.answer is not; name the answer column",
            ));
        }
        if let Some(system) = &d.system_prompt {
            if system.trim().is_empty() {
                return Err(invalid("dataset.system_prompt", "is empty; write the system message or remove the key"));
            }
            if template.1 != Template::Chat {
                return Err(invalid(
                    "dataset.system_prompt",
                    format!(
                        "needs the chat template but {} is `{}`; set it to \"chat\" or remove the system prompt",
                        template.0,
                        template.1.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_rewards(&self) -> Result<(), SpecError> {
        let grpo = matches!(self.algorithm, Algorithm::Grpo(_));
        if grpo && self.rewards.is_empty() {
            return Err(invalid("rewards", "is empty; GRPO needs at least one [[rewards]] {name, verifier, weight}"));
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.rewards.iter().enumerate() {
            let field = |f: &str| format!("rewards[{i}].{f}");
            if r.name.trim().is_empty() {
                return Err(invalid(field("name"), "is empty; name the component (it is reported under that name)"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("`{}` appears twice; give each component its own name", r.name),
                ));
            }
            if r.verifier.trim().is_empty() {
                return Err(invalid(field("verifier"), "is empty; name a verifier such as math or format"));
            }
            if !r.weight.is_finite() {
                return Err(invalid(field("weight"), format!("is {}; use a finite number", r.weight)));
            }
            let fields = &self.dataset.fields;
            let needs = match r.verifier.as_str() {
                "math" if fields.answer.is_none() => Some("answer"),
                "code" if fields.tests.is_none() => Some("tests"),
                _ => None,
            };
            if let Some(f) = needs {
                return Err(invalid(
                    format!("dataset.fields.{f}"),
                    format!("is not set but reward `{}` uses the {} verifier; name the {f} column", r.name, r.verifier),
                ));
            }
        }
        Ok(())
    }

    /// Makes the spec's relative paths (base model, dataset files) relative to `base`, the
    /// folder of the spec file: the coordinator reads them from wherever it runs.
    pub fn resolve_paths(&mut self, base: &Path) {
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        absolute(&mut self.base_model);
        absolute(&mut self.dataset.path);
        if let Some(p) = self.dataset.eval_path.as_mut() {
            absolute(p);
        }
    }

    /// Samples per prompt: G for GRPO, 1 for SFT.
    pub fn group_size(&self) -> u32 {
        match &self.algorithm {
            Algorithm::Grpo(g) => g.group_size,
            Algorithm::Sft(_) => 1,
        }
    }
}

impl GrpoSpec {
    fn validate_learner(&self) -> Result<(), SpecError> {
        let l = &self.learner;
        l.validate("algorithm.learner")?;
        if l.grpo.aggregation == Aggregation::SeqMeanTokenSumNorm && l.grpo.token_sum_norm.is_none() {
            return Err(invalid(
                "algorithm.learner.token_sum_norm",
                "is unset for seq-mean-token-sum-norm; set it (the maximum response length) or call RunSpec::fill_defaults",
            ));
        }
        if !self.prompts_per_step.is_multiple_of(l.minibatches_per_batch) {
            return Err(invalid(
                "algorithm.learner.minibatches_per_batch",
                format!(
                    "is {} but algorithm.prompts_per_step = {} does not split into that many minibatches of whole groups; use a divisor of prompts_per_step",
                    l.minibatches_per_batch, self.prompts_per_step
                ),
            ));
        }
        if self.max_policy_lag > 0 && !l.grpo.has_trust_region() {
            return Err(invalid(
                "algorithm.learner.clip_eps",
                format!(
                    "gives clip bounds ε_low = {}, ε_high = {}, no trust region, while algorithm.max_policy_lag = {} trains on stale samples; \
                     set clip_eps = 0.2 (PPO's value, both bounds below 1) or max_policy_lag = 0",
                    l.grpo.clip_eps_low, l.grpo.clip_eps_high, self.max_policy_lag
                ),
            ));
        }
        Ok(())
    }
}

impl SamplingSpec {
    fn validate(&self) -> Result<(), SpecError> {
        let field = |f: &str| format!("algorithm.sampling.{f}");
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(invalid(field("temperature"), format!("is {}; use a finite number >= 0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid(field("top_p"), format!("is {}; use a value in (0, 1]", self.top_p)));
        }
        if self.max_new_tokens == 0 {
            return Err(invalid(field("max_new_tokens"), "is 0; set it to 1 or more"));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(invalid(field("stop"), "holds an empty string; remove it"));
        }
        Ok(())
    }
}

impl DatasetSpec {
    /// The format given, or the one the file extension names.
    pub fn resolved_format(&self, path: &Path) -> Result<DatasetFormat, SpecError> {
        if let Some(f) = self.format {
            return Ok(f);
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => Ok(DatasetFormat::Jsonl),
            Some("parquet") => Ok(DatasetFormat::Parquet),
            _ => Err(invalid(
                "dataset.format",
                format!(
                    "is not set and {} has no .jsonl or .parquet extension; set format = \"jsonl\" or \"parquet\"",
                    path.display()
                ),
            )),
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        if self.path.as_os_str().is_empty() {
            return Err(invalid("dataset.path", "is empty; set it to a .jsonl or .parquet file"));
        }
        self.resolved_format(&self.path)?;
        if let Some(eval) = &self.eval_path {
            self.resolved_format(eval)?;
            if self.eval_fraction != 0.0 {
                return Err(invalid(
                    "dataset.eval_fraction",
                    "is set together with dataset.eval_path; keep one of the two",
                ));
            }
        }
        if !(0.0..1.0).contains(&self.eval_fraction) {
            return Err(invalid(
                "dataset.eval_fraction",
                format!("is {}; use a fraction in [0, 1)", self.eval_fraction),
            ));
        }
        if self.epochs == 0 {
            return Err(invalid("dataset.epochs", "is 0; set it to 1 or more"));
        }
        let f = &self.fields;
        for (name, col) in [
            ("prompt", Some(&f.prompt)),
            ("answer", f.answer.as_ref()),
            ("tests", f.tests.as_ref()),
            ("language", f.language.as_ref()),
        ] {
            if col.is_some_and(|c| c.trim().is_empty()) {
                return Err(invalid(format!("dataset.fields.{name}"), "is empty; name a column of the dataset"));
            }
        }
        Ok(())
    }
}

/// serde reads the internally tagged `algorithm` table through a buffer that forgets where
/// a bad value was ("expected u32 for key `default.algorithm`"). For such an error the table
/// is read again as the spec of its `kind`, and that error's key is used:
/// `default.algorithm.group_size`.
fn algorithm_error(figment: &Figment, e: figment::Error) -> figment::Error {
    use figment::providers::Serialized;
    if e.path.len() != 1 || e.path[0] != "algorithm" {
        return e;
    }
    let Ok(figment::value::Value::Dict(_, mut table)) = figment.find_value("algorithm") else {
        return e;
    };
    let kind = table.remove("kind").and_then(|k| k.into_string());
    let inner = Figment::from(Serialized::defaults(table));
    let again = match kind.as_deref() {
        Some("grpo") => inner.extract::<GrpoSpec>().err(),
        Some("sft") => inner.extract::<SftSpec>().err(),
        _ => None,
    };
    match again {
        Some(mut precise) if !precise.path.is_empty() => {
            precise.path.insert(0, "algorithm".into());
            precise.profile = e.profile.clone();
            precise.metadata = e.metadata.clone();
            precise
        }
        _ => e,
    }
}
