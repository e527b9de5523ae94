//! Finding the final answer in a completion: the last `\boxed{…}` (or `\fbox{…}`, or the
//! brace-less `\boxed 5`), or the last `<answer>…</answer>`, in a configurable order.
//!
//! Linear in the completion's length. Only the last [`MAX_BOX_TRIES`] boxes are tried, so a
//! completion full of unclosed `\boxed{` costs no more than a few scans.

use serde::{Deserialize, Serialize};

/// Where to look for the final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// The last closed `\boxed{…}` / `\fbox{…}` / `\boxed x`.
    Boxed,
    /// The content of the last `<answer>…</answer>` (a box inside it wins).
    AnswerTag,
}

/// How many boxes, from the end, are tried before giving up on unclosed ones.
pub const MAX_BOX_TRIES: usize = 8;

/// The first answer found by trying `order` in turn.
pub fn answer<'a>(text: &'a str, order: &[AnswerSource]) -> Option<&'a str> {
    order.iter().find_map(|src| match src {
        AnswerSource::Boxed => last_boxed(text),
        AnswerSource::AnswerTag => last_answer_tag(text),
    })
}

/// The content of the last complete box, trimmed; `None` if there is none or it is empty.
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
