//! r1's wire types: the `r1.v1` protobuf package and its tonic services.
//!
//! The `.proto` files live in `proto/r1/v1/`; `build.rs` compiles them with protox, so no
//! system `protoc` is needed. This crate holds no logic: only generated code is exported,
//! and it is the only crate that sees wire types directly.

/// The `r1.v1` package.
pub mod v1 {
    tonic::include_proto!("r1.v1");
}
