//! Reward composition: a weighted sum of verifier components, declared in the run config.
//!
//! A spec is a list of components, e.g. in TOML
//! `reward = [{name = "accuracy", verifier = "math", weight = 1.0},
//! {name = "format", verifier = "format", weight = 0.5}]`, with optional per-verifier
//! `options` (`MathConfig`, `FormatConfig`, `OverlongConfig`). [`Reward::new`] checks the whole
//! spec up front: an unknown verifier, a duplicate name, a bad weight or bad options is a
//! [`SpecError`]. Scoring reports every component's own reward in `components` and the weighted
//! sum as `reward`. A component that cannot judge the sample (status `invalid_input` or
//! `internal_error`, e.g. a math job without `ground_truth`) makes the whole result that error
//! status, never a silent 0. Other statuses (`no_answer`, `failed`, `timeout`, …) are verdicts
//! about the sample and contribute their reward (0).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::format::{FormatConfig, FormatError, FormatVerifier};
use crate::job::{ScoreJob, ScoreResult, Status};
use crate::length::{LengthError, OverlongConfig};
use crate::math::MathConfig;

/// The verifier names a component may use.
pub const VERIFIERS: &[&str] = &["math", "format", "language", "code", "overlong"];

/// One weighted component of a reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// Name reported in `components` (e.g. `accuracy`).
    pub name: String,
    /// One of [`VERIFIERS`].
    pub verifier: String,
    pub weight: f64,
    /// Verifier options; unknown keys are rejected when the spec is checked.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// A reward spec: the components in the order they are scored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RewardSpec(pub Vec<ComponentSpec>);

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reward spec has no components; add at least one {{name, verifier, weight}}")]
    Empty,
    #[error(
        "reward component `{name}` uses unknown verifier `{verifier}`; use one of math, format, language, code, overlong"
    )]
    UnknownVerifier { name: String, verifier: String },
    #[error("reward component name `{0}` appears twice; give each component its own name")]
    DuplicateName(String),
    #[error("reward component `{name}` has weight {weight}; use a finite number")]
    BadWeight { name: String, weight: f64 },
    #[error("reward component `{name}` has invalid options for `{verifier}` ({source}); fix its `options` table")]
    BadOptions { name: String, verifier: String, source: serde_json::Error },
    #[error("reward component `{name}`: {source}")]
    Format { name: String, source: FormatError },
    #[error("reward component `{name}`: {source}")]
    Length { name: String, source: LengthError },
}

#[derive(Debug, Clone)]
enum Verifier {
    Math(MathConfig),
    Format(FormatVerifier),
    Language,
    Code,
    Overlong(OverlongConfig),
}

#[derive(Debug, Clone)]
struct Component {
    name: String,
    weight: f64,
    verifier: Verifier,
}

/// A checked reward spec, ready to score jobs.
#[derive(Debug, Clone)]
pub struct Reward {
    components: Vec<Component>,
}

fn options<T: serde::de::DeserializeOwned>(spec: &ComponentSpec) -> Result<T, SpecError> {
    serde_json::from_value(serde_json::Value::Object(spec.options.clone())).map_err(|source| SpecError::BadOptions {
        name: spec.name.clone(),
        verifier: spec.verifier.clone(),
        source,
    })
}

fn no_options(spec: &ComponentSpec) -> Result<(), SpecError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct None {}
    options::<None>(spec).map(|_| ())
}

impl Reward {
    pub fn new(spec: &RewardSpec) -> Result<Self, SpecError> {
        if spec.0.is_empty() {
            return Err(SpecError::Empty);
        }
        let mut names = BTreeSet::new();
        let mut components = Vec::with_capacity(spec.0.len());
        for c in &spec.0 {
            if !names.insert(c.name.as_str()) {
                return Err(SpecError::DuplicateName(c.name.clone()));
            }
            if !c.weight.is_finite() {
                return Err(SpecError::BadWeight { name: c.name.clone(), weight: c.weight });
            }
            let verifier = match c.verifier.as_str() {
                "math" => Verifier::Math(options(c)?),
                "format" => {
                    let cfg: FormatConfig = options(c)?;
                    let v = FormatVerifier::new(&cfg)
                        .map_err(|source| SpecError::Format { name: c.name.clone(), source })?;
                    Verifier::Format(v)
                }
                "language" => no_options(c).map(|_| Verifier::Language)?,
                "code" => no_options(c).map(|_| Verifier::Code)?,
                "overlong" => {
                    let cfg: OverlongConfig = options(c)?;
                    cfg.validate().map_err(|source| SpecError::Length { name: c.name.clone(), source })?;
                    Verifier::Overlong(cfg)
                }
                other => return Err(SpecError::UnknownVerifier { name: c.name.clone(), verifier: other.to_string() }),
            };
            components.push(Component { name: c.name.clone(), weight: c.weight, verifier });
        }
        Ok(Self { components })
    }

    /// Scores `job` with every component (its `verifier` field is ignored). `completion_tokens`
    /// is the generated length the `overlong` component needs; without it that component is an
    /// `invalid_input` error.
    pub fn score(&self, job: &ScoreJob, completion_tokens: Option<usize>) -> ScoreResult {
        let mut components = BTreeMap::new();
        let mut details = Vec::with_capacity(self.components.len());
        let mut total = 0.0;
        for c in &self.components {
            // A verifier that panics gives an `internal_error` result, like any that fails.
            let r = crate::job::guarded(job, &c.name, || match &c.verifier {
                Verifier::Math(cfg) => crate::math::score_with(job, cfg),
                Verifier::Format(v) => v.score(job),
                Verifier::Language => crate::language::score(job),
                Verifier::Code => crate::code::score(job),
                Verifier::Overlong(cfg) => match completion_tokens {
                    Some(n) => ScoreResult::new(&job.id, cfg.penalty(n), Status::Ok, format!("{n} tokens")),
                    None => ScoreResult::new(
                        &job.id,
                        0.0,
                        Status::InvalidInput,
                        "no completion length given; pass the generated token count when scoring",
                    ),
                },
            });
            let status = if r.reward.is_finite() { r.status } else { Status::InternalError };
            if status.is_error() {
                let mut out = ScoreResult::new(
                    &job.id,
                    0.0,
                    status,
                    format!("reward component `{}` could not score the sample: {}", c.name, r.detail),
                );
                out.components = components;
                return out;
            }
            components.insert(c.name.clone(), r.reward);
            total += c.weight * r.reward;
            details.push(format!("{}: {}", c.name, r.detail));
        }
        let mut out = ScoreResult::new(&job.id, total, Status::Ok, details.join("; "));
        out.components = components;
        out
    }
}
