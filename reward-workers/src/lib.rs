//! r1-reward: the reward side of r1 — verifiers, the code sandbox and the scoring service.
//!
//! Layout:
//! - [`job`]: the scoring contract shared by every entry point (`r1ctl reward score`, the gRPC
//!   service, the coordinator's scoring jobs): a [`job::ScoreJob`] in, a [`job::ScoreResult`]
//!   out, and [`job::score`], which dispatches on the verifier name.
//! - [`math`], [`format`](mod@format), [`language`], [`length`]: rule-based verifiers.
//! - [`compose`]: a weighted reward from a spec in the run config, each component reported.
//! - [`code`]: runs a completion against tests inside [`sandbox`].
//!
//! An unknown verifier, a missing field or a verifier that fails is an error status, never a
//! silent zero.

pub mod code;
pub mod compose;
pub mod format;
pub mod job;
pub mod language;
pub mod lease_worker;
pub mod length;
pub mod math;
pub mod metrics;
pub mod sandbox;
pub mod service;
