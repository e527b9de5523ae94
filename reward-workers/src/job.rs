//! The scoring contract: one job in, one result out.
//!
//! The JSON shapes are a public contract (`r1ctl reward score` reads and writes them, and
//! checks outside the repository rely on them): input lines
//! `{"id", "verifier", "completion", "ground_truth"?, "language"?, "test"?, "tests"?,
//! "timeout_s"?, "memory_mb"?}`, output lines `{"id", "reward", "status", "components",
//! "detail"}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One stdin/stdout test case for a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoCase {
    pub stdin: String,
    pub stdout: String,
}

/// One completion to score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreJob {
    pub id: serde_json::Value,
    pub verifier: String,
    pub completion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ground_truth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Vec<IoCase>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

/// Why a score is what it is. `Ok` means the verifier ran to a verdict (reward may be 0 for a
/// wrong answer); every other status means the sample could not be judged normally and says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The verifier reached a verdict.
    Ok,
    /// The job itself is malformed: unknown verifier, missing field, bad value.
    InvalidInput,
    /// The completion has no answer the verifier could find.
    NoAnswer,
    /// The program ran and failed its tests (non-zero exit, wrong output).
    Failed,
    /// The program exceeded its wall or CPU time.
    Timeout,
    /// The program exceeded its memory limit.
    MemoryLimit,
    /// The program exceeded an output, file-size or process limit.
    ResourceLimit,
    /// The program tried something the sandbox forbids (network, files outside, ...).
    SandboxViolation,
    /// The program exited before its tests ran.
    ExitedEarly,
    /// The verifier itself failed: a bug or an environment problem, never the sample's fault.
    InternalError,
}

impl Status {
    /// Whether the sample could not be judged at all (bad job or verifier failure), as opposed
    /// to a verdict about the sample. Composition turns such a component into an error result.
    pub fn is_error(self) -> bool {
        matches!(self, Status::InvalidInput | Status::InternalError)
    }
}

/// The result of scoring one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreResult {
    pub id: serde_json::Value,
    pub reward: f64,
    pub status: Status,
    pub components: BTreeMap<String, f64>,
    pub detail: String,
}

impl ScoreResult {
    pub fn new(id: &serde_json::Value, reward: f64, status: Status, detail: impl Into<String>) -> Self {
        Self { id: id.clone(), reward, status, components: BTreeMap::new(), detail: detail.into() }
    }
}

/// Runs one verifier on `job`; a panic inside it becomes an `internal_error` result naming
/// the verifier and the panic, so one sample never takes down the process that scores it.
pub fn guarded(job: &ScoreJob, verifier: &str, run: impl FnOnce() -> ScoreResult) -> ScoreResult {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(payload) => ScoreResult::new(
            &job.id,
            0.0,
            Status::InternalError,
            format!("the {verifier} verifier panicked: {}", panic_message(payload.as_ref())),
        ),
    }
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Scores one job with the verifier it names (a verifier panic is an `internal_error`).
pub fn score(job: &ScoreJob) -> ScoreResult {
    guarded(job, &job.verifier, || dispatch(job))
}

fn dispatch(job: &ScoreJob) -> ScoreResult {
    match job.verifier.as_str() {
        "math" => crate::math::score(job),
        "format" => crate::format::score(job),
        "language" => crate::language::score(job),
        "code" => crate::code::score(job),
        other => ScoreResult::new(
            &job.id,
            0.0,
            Status::InvalidInput,
            format!("unknown verifier `{other}`; use one of math, format, language, code"),
        ),
    }
}
