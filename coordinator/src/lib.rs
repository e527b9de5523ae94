//! r1-coordinator: the control plane of a training run.
//!
//! A run goes through these modules:
//! - [`spec`]: the run spec a user submits (TOML), parsed and validated before anything runs;
//!   it is the `r1-spec` crate, re-exported here.
//! - [`dataset`]: JSONL and Parquet prompts with field mapping, an eval split, seeded
//!   per-epoch shuffles and a resumable cursor; every row is checked when the run is submitted.
//! - [`store`]: SQLite (WAL) holding runs, their state, dataset cursor, counters, policy
//!   versions, checkpoint records and leases; each change is one transaction.
//! - [`lease`]: the pull protocol over the store. Actors lease prompt groups, reward workers
//!   lease scoring jobs, learners lease batches; leases expire and are handed out again,
//!   submissions are idempotent, stale and all-equal groups are dropped and counted.
//! - [`rollback`]: resetting a running run to a recorded checkpoint (progress, counters,
//!   groups) for a learner that lost the steps after it.
//! - [`runs`]: the core the services share: submit (spec and every dataset row checked
//!   first), get, list, cancel, and resuming running runs when the coordinator restarts.
//! - [`service`]: the gRPC services over [`runs::Coordinator`]: `r1.v1.RunService` for
//!   people and `r1ctl`, `r1.v1.WorkService` for actors, reward workers and learners.
//! - [`workers`]: the fleet as the coordinator sees it, fed by the workers' own calls.
//! - [`samples`]: a few scored groups per step kept in the run folder for people to read.
//! - [`dashboard`]: on the gRPC port over HTTP/1, the JSON API (`/api/`), the pages that use
//!   it (runs, a run's live curves and samples, the fleet) and [`metrics`], the Prometheus
//!   page (`GET /metrics`).
//! - [`config`]: the coordinator service's own config, and [`config::run`] to serve with it.
//!
//! Time is always passed in (`now`, Unix milliseconds) so that tests control it.
//!
//! Every RPC runs in a span carrying its run and group ids ([`service::rpc_span`]); binaries
//! export them over OTLP with `r1-telemetry` (config `otlp_endpoint`). Not built yet: TLS.

pub mod config;
pub mod dashboard;
pub mod dataset;
pub mod lease;
pub mod metrics;
pub mod pools;
pub mod rollback;
pub mod runs;
pub mod samples;
pub mod service;
pub use r1_spec as spec;
pub mod store;
pub mod workers;
