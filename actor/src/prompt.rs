//! How a dataset example becomes prompt tokens. The actor samples after these tokens and
//! the learner scores the same tokens again, so both call [`prompt_tokens`]: the one place
//! that decides it.

use r1_coordinator::spec::Template;
use r1_model::tokenizer::Message;
use r1_model::{Prompt, PromptTemplate, TextTokenizer};
use r1_proto::v1 as pb;

/// The model-side template of a run spec's template.
pub fn template(t: Template) -> PromptTemplate {
    match t {
        Template::Raw => PromptTemplate::Raw,
        Template::R1 => PromptTemplate::R1,
        Template::Chat => PromptTemplate::Chat,
    }
}

/// The prompt of a wire example.
pub fn prompt(example: &pb::Example) -> Result<Prompt, String> {
    match &example.prompt {
        Some(pb::example::Prompt::Text(t)) => Ok(Prompt::Text(t.clone())),
        Some(pb::example::Prompt::Chat(c)) => Ok(Prompt::Chat(
            c.messages.iter().map(|m| Message { role: m.role.clone(), content: m.content.clone() }).collect(),
        )),
        None => Err(format!("example from row {} has no prompt", example.row)),
    }
}

/// The tokens the model continues for `example` under `template`.
pub fn prompt_tokens(tok: &TextTokenizer, template: Template, example: &pb::Example) -> Result<Vec<u32>, String> {
    let p = prompt(example)?;
    let text = tok.render_prompt(self::template(template), &p).map_err(|e| format!("row {}: {e}", example.row))?;
    let ids = tok.encode(&text).map_err(|e| format!("row {}: {e}", example.row))?;
    if ids.is_empty() {
        return Err(format!("row {}: the prompt renders to no tokens", example.row));
    }
    Ok(ids)
}
