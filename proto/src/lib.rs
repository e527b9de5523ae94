//! r1's wire types: the `r1.v1` protobuf package and its tonic services.
//!
//! The `.proto` files live in `proto/r1/v1/`; `build.rs` compiles them with protox, so no
//! system `protoc` is needed. Besides the generated code it holds [`client`], the one
//! connector every process uses to reach the coordinator (token, timeouts, reconnects,
//! retries), [`auth`], the bearer-token check every server applies, [`health`], the
//! `grpc.health.v1` service every process answers, and [`example_prompt`],
//! a wire example's prompt as the run spec's type. It is the only crate that sees wire types
//! directly.

pub mod auth;
pub mod client;
pub mod health;

pub use auth::Auth;

/// The `r1.v1` package.
pub mod v1 {
    tonic::include_proto!("r1.v1");
}

/// The prompt of a wire example, as `r1_spec` renders it.
pub fn example_prompt(example: &v1::Example) -> Result<r1_spec::prompt::Prompt, String> {
    use r1_spec::prompt::{Message, Prompt};
    match &example.prompt {
        Some(v1::example::Prompt::Text(t)) => Ok(Prompt::Text(t.clone())),
        Some(v1::example::Prompt::Chat(c)) => Ok(Prompt::Chat(
            c.messages.iter().map(|m| Message { role: m.role.clone(), content: m.content.clone() }).collect(),
        )),
        None => Err(format!("example from row {} has no prompt", example.row)),
    }
}
