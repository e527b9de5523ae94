//! The bearer-token checks: every gRPC call ([`Auth`] as a tonic interceptor) and every HTTP
//! page ([`Auth::check_read`], one function for `/`, `/metrics` and `/api/...`).
//!
//! The checks live in `r1_proto::auth`, shared with the learner's weight service; see there
//! for what they compare and what they do not cover (no TLS).

pub use r1_proto::auth::{Auth, Refusal};
