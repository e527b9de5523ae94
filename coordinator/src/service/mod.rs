//! The gRPC services over [`Coordinator`]: `r1.v1.RunService` (Submit, Get, List, Cancel,
//! and Watch, a stream of status changes) for people and `r1ctl`, and `r1.v1.WorkService`
//! (lease, submit, renew, checkpoints and rollback) for actors, reward workers and learners.
//!
//! Errors become `tonic::Status` in one place ([`status_of`]). Every RPC runs in a tracing
//! span named `rpc` ([`rpc_span`]): its OpenTelemetry name is the method
//! (`r1.v1.WorkService/SubmitScores`), and the handler records the `run`, `group`, `lease`,
//! `worker`, `step` and `outcome` it dealt with, so one group can be followed from
//! LeasePrompts through SubmitSamples, LeaseScoring, SubmitScores and LeaseBatch to
//! SubmitStep. Blocking work (SQLite, dataset reads) runs on tokio's blocking pool. Watch
//! polls the store every `watch_interval` and sends a status only when it changed, so it
//! keeps working across every kind of change (leases, steps, cancel) with no notification
//! plumbing; it ends after sending a finished run's final status, or when the client goes
//! away.
//!
//! Laid out as: this module, the two services and their wire conversions; [`auth`], the
//! bearer-token check; [`limits`], message size, concurrency slots and deadlines; [`server`],
//! serving both services and the HTTP pages on one port.

mod auth;
mod limits;
mod server;

pub use auth::{Auth, Refusal};
pub use limits::{Limits, MAX_MESSAGE_BYTES, WhenBusy, deadline_of};
pub use server::{ServeError, serve};

use std::sync::Arc;
use std::time::Duration;

use r1_proto::v1 as pb;
use r1_proto::v1::run_service_server::{RunService, RunServiceServer};
use r1_proto::v1::work_service_server::{WorkService, WorkServiceServer};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::dataset::{DatasetError, Example, Prompt};
use crate::lease::{self, LeaseError, Outcome};
use crate::runs::{Coordinator, RunStatus, RunsError};
use crate::spec::RunSpec;
use crate::store::{RunState, StoreError};
use crate::workers::{self, Held, Role};
use limits::Gate;

/// Maps every coordinator error to the gRPC code a client can act on.
pub fn status_of(e: RunsError) -> Status {
    let message = e.to_string();
    match e {
        RunsError::Spec(_) => Status::invalid_argument(message),
        RunsError::Dataset(DatasetError::Io { .. }) => Status::failed_precondition(message),
        RunsError::Dataset(_) => Status::invalid_argument(message),
        RunsError::Store(StoreError::RunNotFound(_)) => Status::not_found(message),
        RunsError::Store(StoreError::BadTransition { .. }) => Status::failed_precondition(message),
        RunsError::Store(
            StoreError::SchemaTooNew { .. }
            | StoreError::CheckpointStep { .. }
            | StoreError::NoCheckpoint { .. }
            | StoreError::RollbackForward { .. }
            | StoreError::NoSnapshot { .. }
            | StoreError::RollbackNotRunning { .. },
        ) => Status::failed_precondition(message),
        RunsError::Store(StoreError::RollbackKeyReused { .. }) => Status::already_exists(message),
        RunsError::Store(_) => Status::internal(message),
        RunsError::Lease(LeaseError::Store(e)) => status_of(RunsError::Store(e)),
        RunsError::Lease(LeaseError::UnknownGroup { .. } | LeaseError::UnknownLease { .. }) => {
            Status::not_found(message)
        }
        RunsError::Lease(LeaseError::BadSubmission { .. }) => Status::invalid_argument(message),
        RunsError::Lease(LeaseError::KeyReused { .. }) => Status::already_exists(message),
        RunsError::Lease(
            LeaseError::NotRunning { .. } | LeaseError::FutureStep { .. } | LeaseError::WrongRole { .. },
        ) => Status::failed_precondition(message),
        RunsError::NotRunning(_) => Status::failed_precondition(message),
        RunsError::TooLong { .. } | RunsError::NameControl(_) => Status::invalid_argument(message),
        RunsError::ClaimHeld { .. } => Status::failed_precondition(message),
        RunsError::RunFolder { .. } => Status::internal(message),
    }
}

/// The RunService implementation.
#[derive(Clone)]
pub struct Runs {
    core: Arc<Coordinator>,
    watch_interval: Duration,
    limits: Limits,
    gate: Gate,
}

impl Runs {
    /// RunService over `core` with the default [`Limits`].
    pub fn new(core: Arc<Coordinator>, watch_interval: Duration) -> Runs {
        Runs::with_limits(core, watch_interval, Limits::default())
    }

    /// RunService over `core` with `limits`; [`serve`] gives WorkService the same limits and
    /// the same concurrency slots.
    pub fn with_limits(core: Arc<Coordinator>, watch_interval: Duration, limits: Limits) -> Runs {
        let gate = Gate::new(&limits);
        Runs { core, watch_interval, limits, gate }
    }

    pub fn into_server(self) -> RunServiceServer<Self> {
        let limit = self.limits.max_message_bytes;
        RunServiceServer::new(self).max_decoding_message_size(limit).max_encoding_message_size(limit)
    }

    /// Runs `f` on the blocking pool and maps its error.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Coordinator) -> Result<T, RunsError> + Send + 'static,
    ) -> Result<T, Status> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || f(&core))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(status_of)
    }
}

/// The span every RPC runs in: OpenTelemetry's server-span conventions plus the ids the
/// handler records with [`note`].
pub fn rpc_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", path));
    let name = path.trim_start_matches('/');
    tracing::info_span!(
        "rpc",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        path = path,
        run = tracing::field::Empty,
        group = tracing::field::Empty,
        groups = tracing::field::Empty,
        lease = tracing::field::Empty,
        worker = tracing::field::Empty,
        step = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// Records `value` as `field` of the current RPC's span.
fn note(field: &'static str, value: impl tracing::Value) {
    tracing::Span::current().record(field, value);
}

/// Group ids as one attribute: `3,4,5`.
fn id_list(ids: impl Iterator<Item = u64>) -> String {
    ids.map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

/// A run id from the wire; 0 (unset) is refused.
fn run_id(id: u64) -> Result<i64, Status> {
    match i64::try_from(id) {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Status::invalid_argument(format!("run id {id} is not valid; use an id from `r1ctl runs`"))),
    }
}

#[tonic::async_trait]
impl RunService for Runs {
    async fn submit(&self, request: Request<pb::SubmitRunRequest>) -> Result<Response<pb::RunStatus>, Status> {
        use pb::submit_run_request::Spec;
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let spec = match request.into_inner().spec {
            Some(Spec::Toml(text)) => RunSpec::from_toml(&text),
            Some(Spec::Json(text)) => RunSpec::from_json(&text),
            None => {
                return Err(Status::invalid_argument("the request has no spec; send the run spec as toml or json"));
            }
        }
        .map_err(|e| status_of(e.into()))?;
        crate::runs::check_size(&spec).map_err(status_of)?;
        let status = self.blocking(move |core| core.submit(spec)).await?;
        note("run", status.run.id);
        Ok(Response::new(to_wire(status)))
    }

    async fn get(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::RunStatus>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let id = run_id(request.into_inner().id)?;
        note("run", id);
        Ok(Response::new(to_wire(self.blocking(move |core| core.get(id)).await?)))
    }

    async fn list(&self, request: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let runs = self.blocking(|core| core.list()).await?;
        Ok(Response::new(pb::ListRunsResponse { runs: runs.into_iter().map(to_wire).collect() }))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let (workers, claims, now, gone_after) = self
            .blocking(|core| {
                let now = core.now();
                Ok((core.workers().list(now), core.claims()?, now, core.workers().gone_after_ms()))
            })
            .await?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: workers.into_iter().map(worker_to_wire).collect(),
            claims: claims.into_iter().map(claim_to_wire).collect(),
            now_ms: now,
            gone_after_ms: gone_after,
        }))
    }

    async fn cancel(&self, request: Request<pb::CancelRunRequest>) -> Result<Response<pb::RunStatus>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let req = request.into_inner();
        let id = run_id(req.id)?;
        note("run", id);
        Ok(Response::new(to_wire(self.blocking(move |core| core.cancel(id, &req.reason)).await?)))
    }

    type WatchStream = ReceiverStream<Result<pb::RunStatus, Status>>;

    async fn watch(&self, request: Request<pb::WatchRunRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let slot = self.gate.enter(deadline_of(&request)).await?;
        let id = run_id(request.into_inner().id)?;
        note("run", id);
        // The first status is read before the stream starts, so an unknown run is an error
        // on the call rather than on the stream.
        let first = to_wire(self.blocking(move |core| core.get(id)).await?);
        drop(slot);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while !finished(&last) {
                tokio::select! {
                    _ = tokio::time::sleep(this.watch_interval) => {}
                    _ = tx.closed() => return,
                }
                let next = match this.blocking(move |core| core.get(id)).await {
                    Ok(s) => to_wire(s),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if next != last {
                    if tx.send(Ok(next.clone())).await.is_err() {
                        return;
                    }
                    last = next;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn finished(s: &pb::RunStatus) -> bool {
    matches!(
        pb::RunState::try_from(s.state),
        Ok(pb::RunState::Completed | pb::RunState::Failed | pb::RunState::Cancelled)
    )
}

/// A [`RunStatus`] on the wire.
pub fn to_wire(s: RunStatus) -> pb::RunStatus {
    let state = match s.run.state {
        RunState::Pending => pb::RunState::Pending,
        RunState::Running => pb::RunState::Running,
        RunState::Completed => pb::RunState::Completed,
        RunState::Failed => pb::RunState::Failed,
        RunState::Cancelled => pb::RunState::Cancelled,
    };
    let c = s.progress.counters;
    let q = s.stages;
    let (eval_step, eval_accuracy) = s.last_eval.unzip();
    pb::RunStatus {
        id: s.run.id as u64,
        name: s.run.spec.name.clone(),
        state: state as i32,
        message: s.run.message,
        created_ms: s.run.created_ms,
        updated_ms: s.run.updated_ms,
        step: s.progress.step,
        total_steps: s.run.spec.schedule.total_steps,
        policy_version: s.progress.policy_version,
        epoch: s.progress.cursor.epoch,
        index: s.progress.cursor.index,
        counters: Some(pb::RunCounters {
            prompts_drawn: c.prompts_drawn,
            groups_generated: c.groups_generated,
            groups_scored: c.groups_scored,
            groups_trained: c.groups_trained,
            dropped_stale: c.dropped_stale,
            dropped_equal: c.dropped_equal,
            leases_expired: c.leases_expired,
            replays: c.replays,
            late_submissions: c.late_submissions,
            rollbacks: c.rollbacks,
            groups_failed: c.groups_failed,
        }),
        queues: Some(pb::QueueDepths {
            generate: q.generate,
            score: q.score,
            train: q.train,
            done: q.done,
            dropped_stale: q.dropped_stale,
            dropped_equal: q.dropped_equal,
            failed: q.failed,
        }),
        spec_json: serde_json::to_string(&s.run.spec).unwrap_or_default(),
        eval_step,
        eval_accuracy,
    }
}

/// The WorkService implementation: each call is one scheduler call on the blocking pool.
#[derive(Clone)]
pub struct Work {
    core: Arc<Coordinator>,
    limits: Limits,
    gate: Gate,
}

type SchedCall<T> = Box<dyn FnOnce(&lease::Scheduler, &mut crate::store::Store, i64) -> Result<T, LeaseError> + Send>;

impl Work {
    /// WorkService over `core` with the default [`Limits`] and slots of its own; [`serve`]
    /// shares RunService's instead.
    pub fn new(core: Arc<Coordinator>) -> Work {
        let limits = Limits::default();
        let gate = Gate::new(&limits);
        Work { core, limits, gate }
    }

    pub fn into_server(self) -> WorkServiceServer<Self> {
        let limit = self.limits.max_message_bytes;
        WorkServiceServer::new(self).max_decoding_message_size(limit).max_encoding_message_size(limit)
    }

    /// Runs `f` with the run's scheduler, the locked store and the time, on the blocking pool,
    /// in one transaction. Past `deadline` the call is answered `DEADLINE_EXCEEDED`: if the
    /// transaction had not started it never will, and one that started runs to its end.
    async fn with<T: Send + 'static>(
        &self,
        run: u64,
        deadline: Option<tokio::time::Instant>,
        f: SchedCall<T>,
    ) -> Result<T, Status> {
        let run = run_id(run)?;
        note("run", run);
        let core = self.core.clone();
        let task = tokio::task::spawn_blocking(move || {
            let sched = core.scheduler(run)?;
            let now = core.now();
            core.with_store_locked(|store| {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return Ok(Err(Status::deadline_exceeded(
                        "the request's deadline passed before the coordinator could start it; nothing was applied",
                    )));
                }
                f(&sched, store, now).map(Ok)
            })
            .map_err(RunsError::from)
        });
        let joined = match deadline {
            None => task.await,
            Some(d) => match tokio::time::timeout_at(d, task).await {
                Ok(joined) => joined,
                Err(_) => {
                    return Err(Status::deadline_exceeded(
                        "the request's deadline passed while it waited for the store; it is either not applied or applied whole; retry it with the same idempotency key",
                    ));
                }
            },
        };
        joined.map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?.map_err(status_of)?
    }

    /// A lease call of `worker` for the registry ([`crate::workers`]).
    fn seen(&self, role: Role, worker: &str, run: u64, lease: i64, deadline_ms: i64, version: Option<u64>) {
        let now = self.core.now();
        let lease = (lease > 0).then_some((lease, deadline_ms));
        self.core.workers().leased(role, worker, run as i64, lease, version, now);
    }

    /// A submission for the registry: its holder's heartbeat, and `units` of finished work
    /// when it was accepted.
    fn finished(&self, who: Option<(Role, String)>, run: u64, o: Outcome, units: u64) {
        if let Some((role, name)) = who {
            let units = if matches!(o, Outcome::Accepted | Outcome::Evaluated) { units } else { 0 };
            self.core.workers().finished(role, &name, run as i64, units, self.core.now());
        }
    }

    /// Keeps a few groups of `step` in the run folder; a failure is logged, not answered
    /// (the step itself is recorded).
    async fn keep_samples(&self, run: u64, step: u64) {
        let core = self.core.clone();
        let kept = tokio::task::spawn_blocking(move || core.keep_samples(run as i64, step)).await;
        match kept {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(run, step, error = %e, "samples not kept"),
            Err(e) => tracing::warn!(run, step, error = %e, "samples not kept"),
        }
    }

    /// Appends the run's new step metrics to its `metrics.jsonl`, on the blocking pool.
    async fn write_metrics(&self, run: u64) -> Result<(), Status> {
        let run = run_id(run)?;
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || core.write_metrics(run))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(status_of)
    }
}

fn id_of(id: u64, what: &str) -> Result<i64, Status> {
    i64::try_from(id).map_err(|_| Status::invalid_argument(format!("{what} {id} is out of range")))
}

fn example_to_wire(x: Example) -> pb::Example {
    use pb::example::Prompt as P;
    let prompt = match x.prompt {
        Prompt::Text(t) => P::Text(t),
        Prompt::Chat(m) => P::Chat(pb::ChatTurns {
            messages: m.into_iter().map(|m| pb::ChatMessage { role: m.role, content: m.content }).collect(),
        }),
    };
    pb::Example {
        row: x.row,
        prompt: Some(prompt),
        answer: x.answer,
        tests_json: x.tests.map(|t| t.to_string()),
        language: x.language,
    }
}

fn sample_to_wire(s: lease::Sample) -> pb::Sample {
    pb::Sample {
        text: s.text,
        token_ids: s.token_ids,
        logprobs: s.logprobs,
        truncated: s.truncated,
        generation_seconds: s.generation_seconds,
    }
}

fn sample_from_wire(s: pb::Sample) -> lease::Sample {
    lease::Sample {
        text: s.text,
        token_ids: s.token_ids,
        logprobs: s.logprobs,
        truncated: s.truncated,
        generation_seconds: s.generation_seconds,
    }
}

fn outcome_to_wire(o: Outcome) -> Response<pb::SubmitResponse> {
    note("outcome", tracing::field::debug(&o));
    let outcome = match o {
        Outcome::Accepted => pb::SubmitOutcome::Accepted,
        Outcome::DroppedStale => pb::SubmitOutcome::DroppedStale,
        Outcome::DroppedEqual => pb::SubmitOutcome::DroppedEqual,
        Outcome::AlreadyDone => pb::SubmitOutcome::AlreadyDone,
        Outcome::LeaseLost => pb::SubmitOutcome::LeaseLost,
        Outcome::Evaluated => pb::SubmitOutcome::Evaluated,
        Outcome::Retry => pb::SubmitOutcome::Retry,
        Outcome::Failed => pb::SubmitOutcome::Failed,
    };
    Response::new(pb::SubmitResponse { outcome: outcome as i32 })
}

fn key(k: String) -> Result<String, Status> {
    if k.is_empty() {
        return Err(Status::invalid_argument(
            "idempotency_key is empty; send a key unique to this submission and reuse it on retry",
        ));
    }
    Ok(k)
}

fn group_to_wire(group_id: i64, example: Example) -> pb::Group {
    pb::Group { group_id: group_id as u64, example: Some(example_to_wire(example)), ..Default::default() }
}

#[tonic::async_trait]
impl WorkService for Work {
    async fn next_run(&self, request: Request<pb::NextRunRequest>) -> Result<Response<pb::NextRunResponse>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let r = request.into_inner();
        let role = match pb::WorkerRole::try_from(r.role) {
            Ok(pb::WorkerRole::Actor) => Role::Actor,
            Ok(pb::WorkerRole::Reward) => Role::Reward,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "NextRun serves actors and reward workers (role {}); learner fleets claim runs with ClaimRun",
                    r.role
                )));
            }
        };
        note("worker", r.worker.as_str());
        let core = self.core.clone();
        let run = tokio::task::spawn_blocking(move || {
            let run = core.next_run(role)?;
            core.workers().seen(role, &r.worker, run.unwrap_or(0), core.now());
            Ok::<_, RunsError>(run)
        })
        .await
        .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
        .map_err(status_of)?;
        if let Some(run) = run {
            note("run", run);
        }
        Ok(Response::new(pb::NextRunResponse { run_id: run.unwrap_or(0) as u64 }))
    }

    async fn claim_run(&self, request: Request<pb::ClaimRunRequest>) -> Result<Response<pb::RunClaim>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let r = request.into_inner();
        if r.worker.is_empty() {
            return Err(Status::invalid_argument("worker is empty; send the fleet's name (its rank 0's worker name)"));
        }
        let want = if r.run_id == 0 { None } else { Some(run_id(r.run_id)?) };
        note("worker", r.worker.as_str());
        let core = self.core.clone();
        let claim = tokio::task::spawn_blocking(move || {
            let claim = core.claim_run(&r.worker, want)?;
            let run = claim.as_ref().map_or(0, |c| c.run);
            core.workers().seen(Role::Learner, &r.worker, run, core.now());
            Ok::<_, RunsError>(claim.unwrap_or(crate::pools::Claim { run: 0, holder: r.worker, deadline_ms: 0 }))
        })
        .await
        .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
        .map_err(status_of)?;
        note("run", claim.run);
        Ok(Response::new(claim_to_wire(claim)))
    }

    async fn release_claim(
        &self,
        request: Request<pb::ReleaseClaimRequest>,
    ) -> Result<Response<pb::ReleaseClaimResponse>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let r = request.into_inner();
        let run = run_id(r.run_id)?;
        note("run", run);
        note("worker", r.worker.as_str());
        let core = self.core.clone();
        let released = tokio::task::spawn_blocking(move || core.release_claim(&r.worker, run))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(status_of)?;
        Ok(Response::new(pb::ReleaseClaimResponse { released }))
    }

    async fn lease_prompts(
        &self,
        request: Request<pb::LeasePromptsRequest>,
    ) -> Result<Response<pb::PromptLease>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let max = r.max_groups.max(1) as usize;
        note("worker", r.worker.as_str());
        let (run, worker) = (r.run_id, r.worker.clone());
        let lease =
            self.with(r.run_id, deadline, Box::new(move |s, st, now| s.lease_prompts(st, &r.worker, max, now))).await?;
        self.seen(Role::Actor, &worker, run, lease.lease_id, lease.deadline_ms, Some(lease.policy_version));
        note("lease", lease.lease_id);
        note("groups", id_list(lease.groups.iter().map(|(id, _)| *id as u64)).as_str());
        Ok(Response::new(pb::PromptLease {
            lease_id: lease.lease_id as u64,
            deadline_ms: lease.deadline_ms,
            policy_version: lease.policy_version,
            group_size: lease.group_size,
            groups: lease.groups.into_iter().map(|(id, x)| group_to_wire(id, x)).collect(),
        }))
    }

    async fn submit_samples(
        &self,
        request: Request<pb::SubmitSamplesRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let key = key(r.idempotency_key)?;
        note("group", r.group_id);
        let sub = lease::SamplesSubmission {
            group_id: id_of(r.group_id, "group")?,
            policy_version: r.policy_version,
            samples: r.samples.into_iter().map(sample_from_wire).collect(),
        };
        let tokens: usize = sub.samples.iter().map(|s| s.token_ids.len()).sum();
        let (o, who) = self
            .with(
                r.run_id,
                deadline,
                Box::new(move |s, st, now| {
                    let who = workers::holder(st, s.run, Held::Group(sub.group_id));
                    Ok((s.submit_samples(st, &key, &sub, now)?, who))
                }),
            )
            .await?;
        self.finished(who, r.run_id, o, tokens as u64);
        Ok(outcome_to_wire(o))
    }

    async fn lease_scoring(
        &self,
        request: Request<pb::LeaseScoringRequest>,
    ) -> Result<Response<pb::ScoringLease>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let max = r.max_groups.max(1) as usize;
        note("worker", r.worker.as_str());
        let (run, worker) = (r.run_id, r.worker.clone());
        let lease =
            self.with(r.run_id, deadline, Box::new(move |s, st, now| s.lease_scoring(st, &r.worker, max, now))).await?;
        self.seen(Role::Reward, &worker, run, lease.lease_id, lease.deadline_ms, None);
        note("lease", lease.lease_id);
        note("groups", id_list(lease.jobs.iter().map(|j| j.group_id as u64)).as_str());
        let groups = lease
            .jobs
            .into_iter()
            .map(|j| pb::Group {
                samples: j.samples.into_iter().map(sample_to_wire).collect(),
                ..group_to_wire(j.group_id, j.example)
            })
            .collect();
        Ok(Response::new(pb::ScoringLease { lease_id: lease.lease_id as u64, deadline_ms: lease.deadline_ms, groups }))
    }

    async fn submit_scores(
        &self,
        request: Request<pb::SubmitScoresRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let key = key(r.idempotency_key)?;
        note("group", r.group_id);
        let sub = lease::ScoresSubmission {
            group_id: id_of(r.group_id, "group")?,
            rewards: r.rewards,
            components: r.components.into_iter().map(|c| c.components.into_iter().collect()).collect(),
        };
        let scored = sub.rewards.len() as u64;
        let (o, who) = self
            .with(
                r.run_id,
                deadline,
                Box::new(move |s, st, now| {
                    let who = workers::holder(st, s.run, Held::Group(sub.group_id));
                    Ok((s.submit_scores(st, &key, &sub, now)?, who))
                }),
            )
            .await?;
        self.finished(who, r.run_id, o, scored);
        if o == Outcome::Evaluated {
            self.write_metrics(r.run_id).await?;
        }
        Ok(outcome_to_wire(o))
    }

    async fn lease_batch(&self, request: Request<pb::LeaseBatchRequest>) -> Result<Response<pb::BatchLease>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        note("worker", r.worker.as_str());
        let (run, worker) = (r.run_id, r.worker.clone());
        let batch =
            self.with(r.run_id, deadline, Box::new(move |s, st, now| s.lease_batch(st, &r.worker, now))).await?;
        let Some(b) = batch else {
            self.seen(Role::Learner, &worker, run, 0, 0, None);
            return Ok(Response::new(pb::BatchLease::default()));
        };
        self.seen(Role::Learner, &worker, run, b.lease_id, b.deadline_ms, Some(b.policy_version));
        note("lease", b.lease_id);
        note("step", b.step);
        note("groups", id_list(b.groups.iter().map(|g| g.group_id as u64)).as_str());
        let groups = b
            .groups
            .into_iter()
            .map(|g| pb::Group {
                policy_version: g.policy_version,
                samples: g.samples.into_iter().map(sample_to_wire).collect(),
                rewards: g.rewards,
                components: g
                    .components
                    .into_iter()
                    .map(|c| pb::ComponentScores { components: c.into_iter().collect() })
                    .collect(),
                ..group_to_wire(g.group_id, g.example)
            })
            .collect();
        Ok(Response::new(pb::BatchLease {
            lease_id: b.lease_id as u64,
            deadline_ms: b.deadline_ms,
            step: b.step,
            policy_version: b.policy_version,
            groups,
        }))
    }

    async fn submit_step(
        &self,
        request: Request<pb::SubmitStepRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let key = key(r.idempotency_key)?;
        let metrics = match r.metrics_json.trim() {
            "" => serde_json::json!({}),
            text => serde_json::from_str(text)
                .map_err(|e| Status::invalid_argument(format!("metrics_json is not JSON ({e}); send a JSON object")))?,
        };
        note("lease", r.lease_id);
        note("step", r.step);
        let tokens = metrics.get("tokens").and_then(|t| t.as_f64()).unwrap_or(0.0) as u64;
        let sub = lease::StepSubmission {
            lease_id: id_of(r.lease_id, "lease")?,
            step: r.step,
            metrics,
            unpublished: r.unpublished,
        };
        let (o, who) = self
            .with(
                r.run_id,
                deadline,
                Box::new(move |s, st, now| {
                    let who = workers::holder(st, s.run, Held::Lease(sub.lease_id));
                    Ok((s.submit_step(st, &key, &sub, now)?, who))
                }),
            )
            .await?;
        self.finished(who, r.run_id, o, tokens);
        if o == Outcome::Accepted {
            self.write_metrics(r.run_id).await?;
            self.keep_samples(r.run_id, r.step + 1).await;
        }
        Ok(outcome_to_wire(o))
    }

    async fn renew(&self, request: Request<pb::RenewRequest>) -> Result<Response<pb::RenewResponse>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let lease = id_of(r.lease_id, "lease")?;
        note("lease", lease);
        let (held, who) = self
            .with(
                r.run_id,
                deadline,
                Box::new(move |s, st, now| {
                    let who = workers::holder(st, s.run, Held::Lease(lease));
                    Ok((s.renew(st, lease, now)?, who))
                }),
            )
            .await?;
        if let Some((role, name)) = who {
            let now = self.core.now();
            self.core.workers().renewed(role, &name, r.run_id as i64, lease, held, now);
        }
        Ok(Response::new(pb::RenewResponse { held: held.is_some(), deadline_ms: held.unwrap_or(0) }))
    }

    async fn fail_group(&self, request: Request<pb::FailGroupRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let key = key(r.idempotency_key)?;
        note("group", r.group_id);
        let sub = lease::FailureReport {
            lease_id: id_of(r.lease_id, "lease")?,
            group_id: id_of(r.group_id, "group")?,
            reason: r.reason,
        };
        let o = self.with(r.run_id, deadline, Box::new(move |s, st, now| s.fail_group(st, &key, &sub, now))).await?;
        Ok(outcome_to_wire(o))
    }

    async fn record_checkpoint(
        &self,
        request: Request<pb::RecordCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let run = run_id(r.run_id)?;
        note("run", run);
        note("step", r.step);
        if r.path.is_empty() {
            return Err(Status::invalid_argument("path is empty; send where the checkpoint was written"));
        }
        let core = self.core.clone();
        let rec = tokio::task::spawn_blocking(move || core.record_checkpoint(run, r.step, &r.path))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(status_of)?;
        Ok(Response::new(checkpoint_to_wire(rec)))
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let _slot = self.gate.enter(deadline_of(&request)).await?;
        let run = run_id(request.into_inner().run_id)?;
        note("run", run);
        let core = self.core.clone();
        let all = tokio::task::spawn_blocking(move || core.checkpoints(run))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(status_of)?;
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: all.into_iter().map(checkpoint_to_wire).collect(),
        }))
    }

    async fn rollback(&self, request: Request<pb::RollbackRequest>) -> Result<Response<pb::RollbackResponse>, Status> {
        let deadline = deadline_of(&request);
        let _slot = self.gate.enter(deadline).await?;
        let r = request.into_inner();
        let run = run_id(r.run_id)?;
        let key = key(r.idempotency_key)?;
        note("run", run);
        note("step", r.step);
        let core = self.core.clone();
        let done = tokio::task::spawn_blocking(move || core.rollback(run, r.step, &key))
            .await
            .map_err(|e| Status::internal(format!("coordinator task failed: {e}")))?
            .map_err(status_of)?;
        note("outcome", format!("rolled back from step {}", done.from_step).as_str());
        Ok(Response::new(pb::RollbackResponse {
            checkpoint: Some(checkpoint_to_wire(done.checkpoint)),
            from_step: done.from_step,
            groups_removed: done.groups_removed,
            groups_restored: done.groups_restored,
        }))
    }
}

fn checkpoint_to_wire(c: crate::store::CheckpointRecord) -> pb::Checkpoint {
    pb::Checkpoint {
        step: c.step,
        path: c.path,
        created_ms: c.created_ms,
        policy_version: c.progress.policy_version,
        epoch: c.progress.cursor.epoch,
        index: c.progress.cursor.index,
    }
}

fn role_to_wire(role: Role) -> pb::WorkerRole {
    match role {
        Role::Actor => pb::WorkerRole::Actor,
        Role::Reward => pb::WorkerRole::Reward,
        Role::Learner => pb::WorkerRole::Learner,
    }
}

fn worker_to_wire(w: crate::workers::WorkerStatus) -> pb::Worker {
    pb::Worker {
        name: w.name,
        role: role_to_wire(w.role) as i32,
        run_id: w.run as u64,
        lease_id: w.lease.map(|l| l as u64),
        lease_deadline_ms: w.lease_deadline_ms,
        first_seen_ms: w.first_seen_ms,
        last_seen_ms: w.last_seen_ms,
        policy_version: w.policy_version,
        throughput: w.throughput,
        unit: w.unit.to_string(),
        done: w.done,
        gone: w.gone,
    }
}

fn claim_to_wire(c: crate::pools::Claim) -> pb::RunClaim {
    pb::RunClaim { run_id: c.run as u64, worker: c.holder, deadline_ms: c.deadline_ms }
}
