//! How a dataset's answer column becomes the gold answer a verifier compares against.
//!
//! Datasets publish answers in different shapes, and a reward computed against the wrong
//! shape is a silent 0 on every sample: GSM8K's `answer` is a worked solution ending in
//! `#### 72`, MATH's `solution` ends in `\boxed{…}`, MATH-500 and AIME give the bare answer,
//! multiple-choice sets give a letter. The run spec names the shape (`dataset.answer_kind`),
//! the coordinator extracts every row's gold answer with [`AnswerKind::gold`] before a run
//! starts (a row without one is an error naming its row), and `r1ctl eval` uses the same
//! function, so training rewards and benchmark numbers follow one rule.
//!
//! [`last_boxed`] lives here because both sides need it: the gold side (this module) and the
//! prediction side (`r1_reward::math::extract`).

use serde::{Deserialize, Serialize};

/// How the answer column holds the gold answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// The column is the answer (MATH-500's and AIME's `answer`); a `\boxed{…}` around it is
    /// unwrapped. A GSM8K solution (a `####` line) is refused: it needs `gsm8k`.
    #[default]
    Plain,
    /// GSM8K: a worked solution whose last `####` line holds the answer (`#### 1,000` → `1000`).
    Gsm8k,
    /// A worked solution with the answer in its last `\boxed{…}` (MATH's `solution`).
    Boxed,
    /// A multiple-choice letter, `A` to `Z` (`C`, `(C)`, `C.`, `C)`).
    Choice,
}

impl AnswerKind {
    /// The names users write in specs and on the command line.
    pub const NAMES: &'static str = "plain, gsm8k, boxed, choice";

    pub fn name(self) -> &'static str {
        match self {
            AnswerKind::Plain => "plain",
            AnswerKind::Gsm8k => "gsm8k",
            AnswerKind::Boxed => "boxed",
            AnswerKind::Choice => "choice",
        }
    }

    /// The gold answer in `raw`, or why there is none (a message that ends in what to do).
    pub fn gold(self, raw: &str) -> Result<String, String> {
        let text = raw.trim();
        if text.is_empty() {
            return Err("is empty; every row needs its reference answer".into());
        }
        match self {
            AnswerKind::Plain => {
                if text.contains("####") {
                    return Err(format!(
                        "holds a `####` line (`{}`), a GSM8K solution; set dataset.answer_kind = \"gsm8k\"",
                        short(text)
                    ));
                }
                Ok(last_boxed(text).unwrap_or(text).to_string())
            }
            AnswerKind::Gsm8k => {
                let Some(at) = text.rfind("####") else {
                    return Err(format!(
                        "has no `#### <answer>` line (`{}`); GSM8K solutions end with one, or set dataset.answer_kind to the file's shape ({})",
                        short(text),
                        Self::NAMES
                    ));
                };
                let tail = text[at + 4..].lines().next().unwrap_or("").trim();
                let answer = strip_thousands(tail.trim_end_matches('.').trim());
                if answer.is_empty() {
                    return Err("has an empty `####` line; put the answer after `####`".into());
                }
                Ok(answer)
            }
            AnswerKind::Boxed => last_boxed(text).map(str::to_string).ok_or_else(|| {
                format!(
                    "has no \\boxed{{…}} answer (`{}`); MATH solutions box their answer, or set dataset.answer_kind to the file's shape ({})",
                    short(text),
                    Self::NAMES
                )
            }),
            AnswerKind::Choice => choice_letter(text).map(String::from).ok_or_else(|| {
                format!("is `{}`, not a choice letter; use A, (A), A. or A)", short(text))
            }),
        }
    }
}

impl std::str::FromStr for AnswerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plain" => Ok(AnswerKind::Plain),
            "gsm8k" => Ok(AnswerKind::Gsm8k),
            "boxed" => Ok(AnswerKind::Boxed),
            "choice" => Ok(AnswerKind::Choice),
            other => Err(format!("unknown answer kind `{other}`; use one of {}", Self::NAMES)),
        }
    }
}

/// `A`, `(A)`, `A.`, `A)` → `A`.
fn choice_letter(text: &str) -> Option<char> {
    let t = text.trim();
    let t = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or(t);
    let t = t.strip_suffix(['.', ')']).unwrap_or(t).trim();
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_uppercase() => Some(c),
        _ => None,
    }
}

/// Removes the commas that group thousands (`1,000,000` → `1000000`), and only those: a comma
/// between a digit and exactly three digits that end the number or meet another separator.
/// `1,2` and `(1, 2)` are kept as they are.
pub fn strip_thousands(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ',' && i > 0 && chars[i - 1].is_ascii_digit() {
            let group = chars.get(i + 1..i + 4).is_some_and(|g| g.iter().all(char::is_ascii_digit));
            let ends = chars.get(i + 4).is_none_or(|n| !n.is_ascii_digit());
            if group && ends {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// How many boxes, from the end, are tried before giving up on unclosed ones.
pub const MAX_BOX_TRIES: usize = 8;

/// The content of the last complete `\boxed{…}` (or `\fbox{…}`, or the brace-less `\boxed 5`),
/// trimmed; `None` if there is none or it is empty. Linear in the text's length: only the last
/// [`MAX_BOX_TRIES`] boxes are tried, so text full of unclosed `\boxed{` costs a few scans.
pub fn last_boxed(text: &str) -> Option<&str> {
    let mut starts: Vec<(usize, usize)> = ["\\boxed", "\\fbox"]
        .iter()
        .flat_map(|cmd| text.rmatch_indices(cmd).take(MAX_BOX_TRIES).map(|(i, m)| (i, i + m.len())))
        .collect();
    starts.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    starts.truncate(MAX_BOX_TRIES);
    starts.into_iter().find_map(|(_, after)| box_content(&text[after..]))
}

fn box_content(rest: &str) -> Option<&str> {
    let body = rest.trim_start();
    if let Some(inner) = body.strip_prefix('{') {
        let mut depth = 1usize;
        let mut escaped = false;
        for (i, ch) in inner.char_indices() {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        let content = inner[..i].trim();
                        return (!content.is_empty()).then_some(content);
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    // `\boxed 5`: a space is required, `\boxedfoo` is another command.
    if body.len() == rest.len() {
        return None;
    }
    let end = body.find(|c: char| c.is_whitespace() || c == '$').unwrap_or(body.len());
    let content = body[..end].trim_end_matches(['.', ',']);
    (!content.is_empty()).then_some(content)
}

/// At most 60 chars of `s` on one line, for messages.
fn short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= 60 { one } else { one.chars().take(57).chain("...".chars()).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows as the datasets publish them, with the traps.
    #[test]
    fn gold_answers_as_datasets_publish_them() {
        use AnswerKind::*;
        let cases: &[(AnswerKind, &str, Result<&str, &str>)] = &[
            // GSM8K (openai/gsm8k `answer` column).
            (
                Gsm8k,
                "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
                Ok("72"),
            ),
            (Gsm8k, "He pays 2*500 = $<<2*500=1000>>1000\n#### 1,000", Ok("1000")),
            (Gsm8k, "...\n####   1,234,567  ", Ok("1234567")),
            (Gsm8k, "...\n#### -3", Ok("-3")),
            (Gsm8k, "...\n####5.", Ok("5")),
            (Gsm8k, "... 1,000 apples\n#### 0.5", Ok("0.5")),
            (Gsm8k, "first #### 3 then\n#### 4", Ok("4")),
            (Gsm8k, "She has 72 clips.", Err("has no `#### <answer>` line")),
            (Gsm8k, "...\n####   ", Err("empty `####` line")),
            // MATH (hendrycks `solution`).
            (Boxed, "So $x = \\frac{1}{2}$, and the answer is $\\boxed{\\frac{1}{2}}$.", Ok("\\frac{1}{2}")),
            (Boxed, "First \\boxed{3}, corrected: \\boxed{\\{1, 2\\}}", Ok("\\{1, 2\\}")),
            (Boxed, "The total is $\\boxed{10\\%}$", Ok("10\\%")),
            (Boxed, "no box here, 42", Err("has no \\boxed")),
            // MATH-500 / AIME `answer` column.
            (Plain, "\\left( 3, \\frac{\\pi}{2} \\right)", Ok("\\left( 3, \\frac{\\pi}{2} \\right)")),
            (Plain, "204", Ok("204")),
            (Plain, " 1,000 ", Ok("1,000")),
            (Plain, "\\boxed{5}", Ok("5")),
            (Plain, "48 clips\n#### 72", Err("set dataset.answer_kind = \"gsm8k\"")),
            (Plain, "   ", Err("is empty")),
            // Multiple choice.
            (Choice, "C", Ok("C")),
            (Choice, "(B)", Ok("B")),
            (Choice, "D.", Ok("D")),
            (Choice, "A)", Ok("A")),
            (Choice, "c", Err("not a choice letter")),
            (Choice, "AB", Err("not a choice letter")),
            (Choice, "42", Err("not a choice letter")),
        ];
        for (kind, raw, want) in cases {
            match (kind.gold(raw), want) {
                (Ok(got), Ok(w)) => assert_eq!(&got, w, "{kind:?} {raw:?}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{kind:?} {raw:?}: {e}"),
                (got, want) => panic!("{kind:?} {raw:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn only_thousands_commas_are_removed() {
        let cases = [
            ("1,000", "1000"),
            ("12,345,678", "12345678"),
            ("1,2", "1,2"),
            ("(1, 2)", "(1, 2)"),
            ("1,0000", "1,0000"),
            ("3,141.5", "3141.5"),
            ("$1,000", "$1000"),
            ("1,000 and 2,000", "1000 and 2000"),
        ];
        for (s, want) in cases {
            assert_eq!(strip_thousands(s), want, "{s}");
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for k in [AnswerKind::Plain, AnswerKind::Gsm8k, AnswerKind::Boxed, AnswerKind::Choice] {
            assert_eq!(k.name().parse::<AnswerKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.name()));
        }
        assert!("gsm-8k".parse::<AnswerKind>().unwrap_err().contains("plain, gsm8k, boxed, choice"));
    }
}
