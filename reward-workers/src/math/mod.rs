//! The math verifier: is the completion's final answer equal to the ground truth?
//!
//! Pipeline: [`extract`] finds the answer (last `\boxed{}`, else `<answer>…</answer>`, order set
//! by [`MathConfig::sources`]); [`parse::clean`] strips the LaTeX that carries no value;
//! [`parse::parse`] builds a tree with exact rationals; [`equiv`] compares the trees with the
//! gold answer deciding what counts (its doc lists the rules). Multiple-choice golds (`B`, `(B)`,
//! `\text{(B)}`) are matched by letter (`(B) 12`, `B.` and `\textbf{B}` all pick B).
//!
//! Limits, by design: answers longer than [`MAX_ANSWER_CHARS`] and answers the grammar does not
//! cover are compared as normalised text only, and so are lists and sets of more than
//! [`equiv::MAX_ITEMS`] items; exact arithmetic is bounded (see [`eval`]), so hostile input
//! costs microseconds and never panics or hangs. Symbolic equality is numeric at
//! random points, so it can be fooled by expressions that differ only far from (0.5, 3.5);
//! `i` is an ordinary variable (no complex arithmetic) while a lone `e` is Euler's number.

pub mod equiv;
pub mod eval;
pub mod extract;
pub mod parse;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use extract::AnswerSource;
use parse::Node;

use crate::job::{ScoreJob, ScoreResult, Status};

/// Longest answer (in chars) that is parsed; longer ones are compared as text.
pub const MAX_ANSWER_CHARS: usize = 1_000;

/// Options of the math verifier, as they appear in a reward spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MathConfig {
    /// Where to look for the answer, first match wins.
    pub sources: Vec<AnswerSource>,
}

impl Default for MathConfig {
    fn default() -> Self {
        Self { sources: vec![AnswerSource::Boxed, AnswerSource::AnswerTag] }
    }
}

/// One side of a comparison, parsed once.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The cleaned text, used for the fast equal-text path and the text fallback.
    pub text: String,
    /// The parsed tree, if the answer is within the grammar and the length bound.
    pub node: Option<Node>,
    /// The letter, if the answer is a bare multiple-choice letter.
    pub choice: Option<char>,
}

impl Answer {
    pub fn parse(raw: &str) -> Self {
        let text = parse::clean(raw);
        let choice = choice_letter(&text, false);
        let node = (text.chars().count() <= MAX_ANSWER_CHARS).then(|| parse::parse(&text).ok()).flatten();
        Self { text, node, choice }
    }
}

/// The letter of a choice answer: `B`, `(B)`, `\text{(B)}`, `\textbf{B.}`. With `leading`, also
/// a letter that opens a longer answer (`(B) 12`, `B. 12`, `B) 12`) as long as no other choice
/// letter follows (`B or C` names none).
fn choice_letter(text: &str, leading: bool) -> Option<char> {
    let mut s = text.trim();
    for wrap in ["\\text{", "\\textbf{", "\\mathrm{", "\\mathbf{"] {
        if let Some(inner) = s.strip_prefix(wrap).and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
    }
    let is_letter = |c: char| ('A'..='J').contains(&c);
    let chars: Vec<char> = s.chars().collect();
    let (letter, rest) = match chars.as_slice() {
        ['(', c, ')', rest @ ..] if is_letter(*c) => (*c, rest),
        [c, '.' | ')' | ':', rest @ ..] if is_letter(*c) => (*c, rest),
        [c, rest @ ..] if is_letter(*c) && (rest.is_empty() || leading && rest[0].is_whitespace()) => (*c, rest),
        _ => return None,
    };
    let rest: String = rest.iter().collect();
    let another = rest.split(|c: char| !c.is_alphanumeric()).any(|w| w.len() == 1 && w.chars().all(is_letter));
    let rest_ok = rest.trim_matches(|c: char| c.is_whitespace() || c == '.').is_empty()
        || (leading && rest.starts_with(char::is_whitespace) && !another);
    rest_ok.then_some(letter)
}

/// Whether `pred` is an acceptable answer for `gold` (both already extracted).
pub fn answers_match(gold: &Answer, pred: &Answer) -> bool {
    if gold.text == pred.text {
        return true;
    }
    if let Some(letter) = gold.choice {
        return choice_letter(&pred.text, true) == Some(letter);
    }
    match (&gold.node, &pred.node) {
        // A word answer ("No") may parse differently on the other side (`no` = n·o).
        (Some(g @ Node::Text(_)), _) => {
            pred.node.as_ref().is_some_and(|p| equiv::equivalent(g, p))
                || loose_text(&gold.text).to_lowercase() == loose_text(&pred.text).to_lowercase()
        }
        (Some(g), Some(p)) => equiv::equivalent(g, p),
        _ => loose_text(&gold.text) == loose_text(&pred.text),
    }
}

/// Convenience: compares two answer strings (no extraction).
pub fn is_equivalent(gold: &str, pred: &str) -> bool {
    answers_match(&Answer::parse(gold), &Answer::parse(pred))
}

fn loose_text(s: &str) -> String {
    let s = s.replace("\\text", "").replace("\\mathrm", "");
    s.chars().filter(|c| !c.is_whitespace() && !matches!(c, '{' | '}')).collect()
}

/// Scores a math job with the default configuration.
pub fn score(job: &ScoreJob) -> ScoreResult {
    score_with(job, &MathConfig::default())
}

/// Scores a math job: reward 1 for an equal answer, 0 otherwise.
pub fn score_with(job: &ScoreJob, cfg: &MathConfig) -> ScoreResult {
    let fail = |status, detail: String| ScoreResult::new(&job.id, 0.0, status, detail);
    let Some(gold_raw) = job.ground_truth.as_deref() else {
        return fail(Status::InvalidInput, "math job has no `ground_truth`; add the reference answer".into());
    };
    let gold = extract::last_boxed(gold_raw).unwrap_or(gold_raw);
    if gold.trim().is_empty() {
        return fail(Status::InvalidInput, "math job has an empty `ground_truth`; add the reference answer".into());
    }
    let Some(pred) = extract::answer(&job.completion, &cfg.sources) else {
        let looked: Vec<&str> = cfg.sources.iter().map(|s| s.describe()).collect();
        return fail(Status::NoAnswer, format!("no final answer in the completion; looked for {}", looked.join(", ")));
    };
    let pred = pred.as_ref();
    let ok = answers_match(&Answer::parse(gold), &Answer::parse(pred));
    let reward = if ok { 1.0 } else { 0.0 };
    let verdict = if ok { "equals" } else { "does not equal" };
    let mut result = ScoreResult::new(
        &job.id,
        reward,
        Status::Ok,
        format!("answer `{}` {verdict} ground truth `{}`", short(pred), short(gold)),
    );
    result.components = BTreeMap::from([("math".to_string(), reward)]);
    result
}

/// At most 80 chars of `s`, for details.
fn short(s: &str) -> String {
    if s.chars().count() <= 80 { s.to_string() } else { s.chars().take(77).chain("...".chars()).collect() }
}
