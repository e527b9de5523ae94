//! r1-coordinator: the control plane of a training run.
//!
//! A run goes through these modules:
//! - [`spec`]: the run spec a user submits (TOML), parsed and validated before anything runs.
//! - [`dataset`]: JSONL and Parquet prompts with field mapping, an eval split, seeded
//!   per-epoch shuffles and a resumable cursor; every row is checked when the run is submitted.
//! - [`store`]: SQLite (WAL) holding runs, their state, dataset cursor, counters, policy
//!   versions, checkpoint records and leases; each change is one transaction.
//! - [`lease`]: the pull protocol over the store. Actors lease prompt groups, reward workers
//!   lease scoring jobs, learners lease batches; leases expire and are handed out again,
//!   submissions are idempotent, stale and all-equal groups are dropped and counted.
//!
//! Time is always passed in (`now`, Unix milliseconds) so that tests control it.
//!
//! Not built yet: the gRPC services for actors, reward workers and learners, evaluation
//! scheduling, the dashboard and `/metrics`.

pub mod dataset;
pub mod lease;
pub mod spec;
pub mod store;
