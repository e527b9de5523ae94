//! The format verifier: does the completion follow the R1 template, reasoning in
//! `<think>…</think>` and then the answer in `<answer>…</answer>`?
//!
//! The rule is a regular expression ([`FormatConfig::pattern`], `regex` crate: linear time on
//! any input). The default [`DEFAULT_PATTERN`] also requires each of the four tags exactly once
//! and a non-blank answer, and when it fails the detail names the first thing that is missing or
//! out of place. A custom pattern is the whole rule and its failure detail quotes it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::job::{ScoreJob, ScoreResult, Status};

/// `<think>…</think>` then `<answer>…</answer>`, only whitespace around and between them.
pub const DEFAULT_PATTERN: &str = r"(?s)\A\s*<think>.*?</think>\s*<answer>.*?\S.*?</answer>\s*\z";

static DEFAULT: LazyLock<Regex> = LazyLock::new(|| Regex::new(DEFAULT_PATTERN).expect("the default pattern compiles"));

/// Options of the format verifier, as they appear in a reward spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FormatConfig {
    /// The regex a well-formed completion matches in full (anchor it yourself).
    pub pattern: String,
}

impl Default for FormatConfig {
    fn default() -> Self {
        Self { pattern: DEFAULT_PATTERN.to_string() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("format pattern `{pattern}` is not a valid regex ({source}); fix `pattern` in the reward spec")]
    BadPattern { pattern: String, source: Box<regex::Error> },
}

/// A compiled format rule.
#[derive(Debug, Clone)]
pub struct FormatVerifier {
    re: Regex,
    default: bool,
}

impl FormatVerifier {
    pub fn new(cfg: &FormatConfig) -> Result<Self, FormatError> {
        if cfg.pattern == DEFAULT_PATTERN {
            return Ok(Self { re: DEFAULT.clone(), default: true });
        }
        let re = Regex::new(&cfg.pattern)
            .map_err(|e| FormatError::BadPattern { pattern: cfg.pattern.clone(), source: Box::new(e) })?;
        Ok(Self { re, default: false })
    }

    /// `Ok(())` if the completion is well-formed, else what is wrong with it.
    pub fn check(&self, completion: &str) -> Result<(), String> {
        if !self.default {
            return if self.re.is_match(completion) {
                Ok(())
            } else {
                Err(format!("completion does not match the format pattern `{}`", self.re.as_str()))
            };
        }
        diagnose(completion)?;
        if self.re.is_match(completion) { Ok(()) } else { Err("completion does not follow the R1 template".into()) }
    }

    /// Reward 1 for a well-formed completion, 0 otherwise; the detail says what is missing.
    pub fn score(&self, job: &ScoreJob) -> ScoreResult {
        let (reward, detail) = match self.check(&job.completion) {
            Ok(()) => (1.0, "completion follows the format".to_string()),
            Err(why) => (0.0, why),
        };
        let mut r = ScoreResult::new(&job.id, reward, Status::Ok, detail);
        r.components = BTreeMap::from([("format".to_string(), reward)]);
        r
    }
}

/// The first problem with the R1 template, in reading order.
fn diagnose(text: &str) -> Result<(), String> {
    for tag in ["<think>", "</think>", "<answer>", "</answer>"] {
        match text.matches(tag).count() {
            0 => return Err(format!("no `{tag}` tag")),
            1 => {}
            n => return Err(format!("`{tag}` appears {n} times; the template has it once")),
        }
    }
    let pos = |tag| text.find(tag).unwrap_or(0);
    let (think, think_end, answer, answer_end) = (pos("<think>"), pos("</think>"), pos("<answer>"), pos("</answer>"));
    if think_end < think {
        return Err("`</think>` comes before `<think>`".into());
    }
    if answer < think_end {
        return Err("`<answer>` comes before `</think>`".into());
    }
    if answer_end < answer {
        return Err("`</answer>` comes before `<answer>`".into());
    }
    if !text[..think].trim().is_empty() {
        return Err("text before `<think>`".into());
    }
    if !text[think_end + "</think>".len()..answer].trim().is_empty() {
        return Err("text between `</think>` and `<answer>`".into());
    }
    if text[answer + "<answer>".len()..answer_end].trim().is_empty() {
        return Err("`<answer>` is empty".into());
    }
    if !text[answer_end + "</answer>".len()..].trim().is_empty() {
        return Err("text after `</answer>`".into());
    }
    Ok(())
}

/// Scores a format job with the default template.
pub fn score(job: &ScoreJob) -> ScoreResult {
    FormatVerifier { re: DEFAULT.clone(), default: true }.score(job)
}
