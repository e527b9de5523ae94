//! How a wire example becomes prompt tokens. The actor samples after these tokens and the
//! learner scores the same tokens again: both render with `r1_spec::prompt` through
//! [`TextTokenizer::prompt_tokens`], so the decision is made in one place.

use r1_model::TextTokenizer;
use r1_proto::v1 as pb;
use r1_spec::Template;

/// The tokens the model continues for `example` under `template`.
pub fn prompt_tokens(tok: &TextTokenizer, template: Template, example: &pb::Example) -> Result<Vec<u32>, String> {
    let prompt = r1_proto::example_prompt(example)?;
    tok.prompt_tokens(template, &prompt).map_err(|e| format!("row {}: {e}", example.row))
}
