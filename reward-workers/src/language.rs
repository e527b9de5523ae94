//! Language consistency (DeepSeek-R1 paper, §2.3.2): the proportion of chain-of-thought words that are
//! in the target language.
//!
//! What it measures, honestly: the *script* of each word, not its language. Words are runs of
//! letters of one script; Han, Hiragana and Katakana count one word per character (those
//! languages do not separate words with spaces). A language code (`en`, `zh-CN`, `ja`, …) maps to
//! the scripts it is written in ([`scripts_for`]), so `en` and `fr` are indistinguishable (both
//! Latin) while English drifting into Chinese — the mixing R1 reports — is caught. Neutral, not
//! counted: digits, punctuation, symbols, LaTeX commands (`\frac`) and one-letter Latin words
//! (mostly variables such as `x`). The chain of thought is the first `<think>…</think>` block,
//! or the whole completion when there is none (the detail says which).

use std::collections::BTreeMap;

use crate::job::{ScoreJob, ScoreResult, Status};

/// A writing system, as far as this verifier tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    Latin,
    Greek,
    Cyrillic,
    Armenian,
    Hebrew,
    Arabic,
    Devanagari,
    Bengali,
    Thai,
    Georgian,
    Hangul,
    Hiragana,
    Katakana,
    Han,
    /// A letter of a script not listed above.
    Other,
}

impl Script {
    /// Whether each character is a word of its own.
    fn per_char(self) -> bool {
        matches!(self, Script::Han | Script::Hiragana | Script::Katakana)
    }
}

/// The script of a letter; `None` for non-letters (digits, punctuation, symbols, spaces).
pub fn script_of(c: char) -> Option<Script> {
    use Script::*;
    let s = match c as u32 {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x24F | 0x1E00..=0x1EFF => Latin,
        0x370..=0x3FF | 0x1F00..=0x1FFF => Greek,
        0x400..=0x52F => Cyrillic,
        0x530..=0x58F => Armenian,
        0x590..=0x5FF => Hebrew,
        0x600..=0x6FF | 0x750..=0x77F => Arabic,
        0x900..=0x97F => Devanagari,
        0x980..=0x9FF => Bengali,
        0xE00..=0xE7F => Thai,
        0x10A0..=0x10FF => Georgian,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => Hangul,
        0x3040..=0x309F => Hiragana,
        0x30A0..=0x30FF => Katakana,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F => Han,
        _ if c.is_alphabetic() => Other,
        _ => return None,
    };
    // Outside Indic and Thai (whose viramas are not Alphabetic yet belong to the word), only
    // letters count.
    (c.is_alphabetic() || matches!(s, Devanagari | Bengali | Thai)).then_some(s)
}

/// The scripts a language is written in, by its primary subtag (`zh-CN` → `zh`).
pub fn scripts_for(language: &str) -> Option<&'static [Script]> {
    use Script::*;
    let primary = language.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    Some(match primary.as_str() {
        "en" | "fr" | "de" | "es" | "it" | "pt" | "nl" | "sv" | "da" | "no" | "nb" | "nn" | "fi" | "pl" | "cs"
        | "sk" | "sl" | "hr" | "ro" | "hu" | "tr" | "vi" | "id" | "ms" | "ca" | "et" | "lv" | "lt" | "sw" | "tl"
        | "eu" | "ga" | "is" | "sq" => &[Latin],
        "el" => &[Greek],
        "ru" | "uk" | "bg" | "sr" | "be" | "kk" | "mk" | "mn" => &[Cyrillic],
        "hy" => &[Armenian],
        "he" | "yi" => &[Hebrew],
        "ar" | "fa" | "ur" => &[Arabic],
        "hi" | "mr" | "ne" => &[Devanagari],
        "bn" => &[Bengali],
        "th" => &[Thai],
        "ka" => &[Georgian],
        "ko" => &[Hangul, Han],
        "ja" => &[Hiragana, Katakana, Han],
        "zh" => &[Han],
        _ => return None,
    })
}

/// Counts the words of `text`: `(in one of the target scripts, all)`.
pub fn count_words(text: &str, target: &[Script]) -> (usize, usize) {
    let (mut hits, mut total) = (0, 0);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            while chars.peek().is_some_and(char::is_ascii_alphabetic) {
                chars.next(); // a LaTeX command
            }
            continue;
        }
        let Some(script) = script_of(c) else { continue };
        let mut len = 1;
        if !script.per_char() {
            while chars.peek().and_then(|&n| script_of(n)) == Some(script) {
                chars.next();
                len += 1;
            }
            if script == Script::Latin && len == 1 {
                continue;
            }
        }
        total += 1;
        hits += target.contains(&script) as usize;
    }
    (hits, total)
}

/// The chain of thought: the first `<think>…</think>` (or from `<think>` to the end when it is
/// never closed), else the whole completion. The flag says whether a `<think>` was found.
fn chain_of_thought(completion: &str) -> (&str, bool) {
    match completion.find("<think>") {
        Some(i) => {
            let rest = &completion[i + "<think>".len()..];
            (rest.find("</think>").map_or(rest, |j| &rest[..j]), true)
        }
        None => (completion, false),
    }
}

/// Scores a language-consistency job: reward = target-language words / all words.
pub fn score(job: &ScoreJob) -> ScoreResult {
    let Some(language) = job.language.as_deref() else {
        return ScoreResult::new(
            &job.id,
            0.0,
            Status::InvalidInput,
            "language job has no `language`; set it to the target language code, e.g. `en` or `zh`",
        );
    };
    let Some(target) = scripts_for(language) else {
        return ScoreResult::new(
            &job.id,
            0.0,
            Status::InvalidInput,
            format!("unsupported language `{language}`; use an ISO 639-1 code such as en, zh, ja, ko, ru, ar, hi"),
        );
    };
    let (cot, tagged) = chain_of_thought(&job.completion);
    let scope = if tagged { "in <think>" } else { "in the completion (no <think>)" };
    let (hits, total) = count_words(cot, target);
    if total == 0 {
        return ScoreResult::new(&job.id, 0.0, Status::NoAnswer, format!("no words {scope} to judge"));
    }
    let reward = hits as f64 / total as f64;
    let mut r =
        ScoreResult::new(&job.id, reward, Status::Ok, format!("{hits} of {total} words {scope} are `{language}`"));
    r.components = BTreeMap::from([("language".to_string(), reward)]);
    r
}
