//! r1's wire types: the `r1.v1` protobuf package and its tonic services.
//!
//! The `.proto` files live in `proto/r1/v1/`; `build.rs` compiles them with protox, so no
//! system `protoc` is needed. Besides the generated code it holds [`client`], the one
//! connector every process uses to reach the coordinator (token, timeouts, reconnects,
//! retries). It is the only crate that sees wire types directly.

pub mod client;

/// The `r1.v1` package.
pub mod v1 {
    tonic::include_proto!("r1.v1");
}
