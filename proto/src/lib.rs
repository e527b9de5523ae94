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

/// The connections `listener` accepts, ready for `tonic`'s `serve_with_incoming`, with
/// `TCP_NODELAY` set on each.
///
/// tonic leaves Nagle's algorithm on for a listener it is handed, and a response that spans
/// several segments (a batch lease, a block of weights) then waits for the peer's delayed
/// ACK before its last one goes out: measured, every lease of an SFT run took 44 ms on
/// loopback instead of 1 (docs/benchmarks.md). Every r1 server accepts through this.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

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

#[cfg(test)]
mod tests {
    use tonic::codegen::tokio_stream::StreamExt;

    /// A connection the servers accept has Nagle's algorithm off (what tonic does not do for
    /// a listener it is handed).
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = super::incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.expect("a connection").unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is set on the accepted socket");
    }
}
