//! How a dataset prompt becomes the text a model continues.
//!
//! The text part lives here so that every crate renders a prompt the same way; the chat
//! template belongs to a checkpoint's tokenizer, so [`Template::render`] takes it as a
//! function (`r1_model::TextTokenizer` passes its own). Turning the text into tokens is the
//! tokenizer's job (`r1_model::TextTokenizer::prompt_tokens`).

use serde::{Deserialize, Serialize};

/// DeepSeek-R1-Zero's template (Table 1 of the R1 paper); `{prompt}` is the question.
pub const R1_TEMPLATE: &str = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:";

/// How a dataset prompt becomes model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// The prompt as given.
    Raw,
    /// DeepSeek-R1-Zero's template (`<think>`/`<answer>` instructions around the question).
    #[default]
    R1,
    /// The base model's chat template, with the prompt as one user message.
    Chat,
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A dataset prompt: plain text, or chat turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Chat(Vec<Message>),
}

/// Why a prompt could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "the prompt is a list of chat messages but the template is `{0:?}`; use template = \"chat\" for chat prompts"
    )]
    ChatNeedsChatTemplate(Template),
    #[error("{0}")]
    Chat(String),
}

impl Template {
    /// The name written in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Template::Raw => "raw",
            Template::R1 => "r1",
            Template::Chat => "chat",
        }
    }

    /// The text the model continues. `chat` applies the checkpoint's chat template to the
    /// messages (with the generation prompt appended); it is called for [`Template::Chat`]
    /// only.
    pub fn render(
        self,
        prompt: &Prompt,
        chat: impl FnOnce(&[Message]) -> Result<String, String>,
    ) -> Result<String, RenderError> {
        match (prompt, self) {
            (Prompt::Text(text), Template::Raw) => Ok(text.clone()),
            (Prompt::Text(text), Template::R1) => Ok(R1_TEMPLATE.replace("{prompt}", text)),
            (Prompt::Text(text), Template::Chat) => {
                chat(&[Message { role: "user".into(), content: text.clone() }]).map_err(RenderError::Chat)
            }
            (Prompt::Chat(messages), Template::Chat) => chat(messages).map_err(RenderError::Chat),
            (Prompt::Chat(_), t) => Err(RenderError::ChatNeedsChatTemplate(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_table() {
        let chat = |m: &[Message]| -> Result<String, String> {
            Ok(m.iter().map(|m| format!("[{}]{}", m.role, m.content)).collect())
        };
        let text = Prompt::Text("2+2?".into());
        let turns = Prompt::Chat(vec![
            Message { role: "system".into(), content: "be brief".into() },
            Message { role: "user".into(), content: "2+2?".into() },
        ]);
        let cases: &[(Template, &Prompt, Result<String, &str>)] = &[
            (Template::Raw, &text, Ok("2+2?".into())),
            (Template::R1, &text, Ok(R1_TEMPLATE.replace("{prompt}", "2+2?"))),
            (Template::Chat, &text, Ok("[user]2+2?".into())),
            (Template::Chat, &turns, Ok("[system]be brief[user]2+2?".into())),
            (Template::R1, &turns, Err("use template = \"chat\"")),
            (Template::Raw, &turns, Err("use template = \"chat\"")),
        ];
        for (t, p, want) in cases {
            match (t.render(p, chat), want) {
                (Ok(got), Ok(w)) => assert_eq!(&got, w, "{t:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{t:?}: {e}"),
                (got, want) => panic!("{t:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(R1_TEMPLATE.ends_with("User: {prompt}. Assistant:"));
    }
}
