//! Finding the final answer in a completion, from the sources a configuration lists in order:
//! the last `\boxed{…}` (or `\fbox{…}`, or the brace-less `\boxed 5`), the last
//! `<answer>…</answer>`, the last `#### x` line (GSM8K's own format), the last "answer is x" /
//! "Answer: x" phrase (the line the MATH and GPQA benchmark prompts ask for), or the last
//! number in the text (what lighteval falls back to for GSM8K and AIME).
//!
//! A phrase or `####` answer that is a number followed by words keeps the number
//! (`The answer is 18 dollars.` → `18`), and commas that group thousands are removed
//! (`1,000` → `1000`). Linear in the completion's length. Only the last [`MAX_BOX_TRIES`]
//! boxes are tried, so a completion full of unclosed `\boxed{` costs no more than a few
//! scans; [`last_boxed`] is `r1_spec::answer`'s, the rule the gold side uses too.

use serde::{Deserialize, Serialize};

/// Where to look for the final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// The last closed `\boxed{…}` / `\fbox{…}` / `\boxed x`.
    Boxed,
    /// The content of the last `<answer>…</answer>` (a box inside it wins).
    AnswerTag,
    /// The rest of the last line that starts with `####`.
    Hashes,
    /// The rest of the line after the last "answer is" / "answer:" (any case), e.g.
    /// `Therefore, the final answer is 5.` or `Answer: C`.
    AnswerIs,
    /// The last number in the text (`-1,234.5` → `-1234.5`).
    LastNumber,
}

impl AnswerSource {
    /// How the source is described in a "no answer" detail.
    pub fn describe(self) -> &'static str {
        match self {
            AnswerSource::Boxed => "\\boxed{…}",
            AnswerSource::AnswerTag => "<answer>…</answer>",
            AnswerSource::Hashes => "#### …",
            AnswerSource::AnswerIs => "\"answer is …\"",
            AnswerSource::LastNumber => "a number",
        }
    }
}

pub use r1_spec::answer::{MAX_BOX_TRIES, last_boxed};

/// The first answer found by trying `order` in turn.
pub fn answer<'a>(text: &'a str, order: &[AnswerSource]) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    order.iter().find_map(|src| match src {
        AnswerSource::Boxed => last_boxed(text).map(Cow::Borrowed),
        AnswerSource::AnswerTag => last_answer_tag(text).map(Cow::Borrowed),
        AnswerSource::Hashes => last_hashes(text).map(|a| Cow::Owned(number_of(a))),
        AnswerSource::AnswerIs => last_answer_is(text).map(|a| Cow::Owned(number_of(a))),
        AnswerSource::LastNumber => last_number(text).map(|n| Cow::Owned(r1_spec::answer::strip_thousands(n))),
    })
}

/// The rest of the last line that starts with `####`, trimmed.
pub fn last_hashes(text: &str) -> Option<&str> {
    let line = text.lines().rev().find(|l| l.trim_start().starts_with("####"))?;
    let rest = line.trim_start()[4..].trim();
    (!rest.is_empty()).then_some(rest)
}

/// The rest of the line after the last "answer is" or "answer:" (any case), up to the end of
/// its sentence, without a final period and without `$` around it.
pub fn last_answer_is(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let at = ["answer is", "answer:"].iter().filter_map(|p| lower.rfind(p).map(|i| i + p.len())).max()?;
    let rest = &text[at..];
    let line = rest.lines().next().unwrap_or("");
    // The sentence ends at a period followed by a space ("5. I hope it is correct").
    let line = line.split(". ").next().unwrap_or(line);
    let line = line.trim_start_matches([':', ' ', '\t']).trim();
    let line = line.trim_end_matches(['.', ' ']).trim();
    let line = line.strip_prefix('$').and_then(|l| l.strip_suffix('$')).unwrap_or(line).trim();
    (!line.is_empty()).then_some(line)
}

/// The last number in `text`: digits with optional thousands commas, decimals and sign.
pub fn last_number(text: &str) -> Option<&str> {
    number_re().find_iter(text).last().map(|m| m.as_str())
}

fn number_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?").expect("a valid pattern"))
}

/// A number followed by unit words (`18 dollars`, `$1,000`, `5 km/h`) becomes the number;
/// anything else is kept as it is.
fn number_of(answer: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^\\?\$?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s*(?:[A-Za-z][A-Za-z/]*\.?\s*)*$")
            .expect("a valid pattern")
    });
    match re.captures(answer.trim()) {
        Some(c) => r1_spec::answer::strip_thousands(&c[1]),
        None => answer.to_string(),
    }
}

/// The content of the last `<answer>…</answer>`: its box if it has one, else its last `$…$`
/// span (`<answer>So $x = 5$.</answer>`), else all of it.
pub fn last_answer_tag(text: &str) -> Option<&str> {
    let end = text.rfind("</answer>")?;
    let start = text[..end].rfind("<answer>")? + "<answer>".len();
    let content = text[start..end].trim();
    last_boxed(content).or_else(|| last_dollar_span(content)).or((!content.is_empty()).then_some(content))
}

/// The last non-empty `$…$` in `text`, when the dollars pair up.
fn last_dollar_span(text: &str) -> Option<&str> {
    let close = text.rfind('$')?;
    let open = text[..close].rfind('$')?;
    let inner = text[open + 1..close].trim();
    (text.matches('$').count().is_multiple_of(2) && !inner.is_empty()).then_some(inner)
}
