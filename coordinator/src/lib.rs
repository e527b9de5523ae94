//! r1-coordinator: the control plane.
//!
//! Runs, datasets, leases, the sample buffer and policy versions, persisted in SQLite, with
//! the dashboard and `/metrics` served from the same process.
//!
//! Not built yet: this crate is a placeholder for the training-system issue.
