//! The bearer-token check every call goes through.
//!
//! When a token is configured every call must carry it ([`Auth`]); without one (loopback)
//! every call is allowed. The check itself lives in `r1_proto::auth`, shared with the
//! learner's weight service. Limits: no TLS, so a token on an untrusted network is only as
//! safe as the network.

pub use r1_proto::auth::Auth;
