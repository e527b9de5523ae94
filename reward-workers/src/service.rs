//! The reward worker as a gRPC service (`r1.v1.RewardService`).
//!
//! - **Bounded concurrency with a bounded queue.** At most `max_concurrent` jobs are scored
//!   at once; jobs past that wait in a queue. A batch is accepted only if all its jobs fit
//!   under `max_pending` (running + queued), otherwise the whole batch is refused at once
//!   with `RESOURCE_EXHAUSTED` and nothing is scored: the caller retries or goes to another
//!   worker, and the queue depth (see [`crate::metrics`]) tells the autoscaler to add workers.
//! - **A deadline per job.** Each job runs on a blocking thread under `job_deadline`; the
//!   code sandbox kills its own children at the job's limits. A job past the deadline, or a
//!   verifier that panics, gets a `timeout`/`internal_error` result for that job alone; the
//!   worker keeps serving. A hung verifier keeps its slot until it returns, so the
//!   concurrency bound stays true. (A verifier that aborts the whole process cannot be
//!   contained in-process: the lease on the job expires and it is scored again.)
//! - **Errors map to `tonic::Status` in one place**: [`ServiceError`]'s `From` impl.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use r1_proto::v1 as pb;
use r1_proto::v1::reward_service_server::{RewardService, RewardServiceServer};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::job::{IoCase, ScoreJob, ScoreResult, Status};
use crate::metrics::Metrics;

/// A verifier entry point: [`crate::job::score`] in production, anything in tests.
pub type Scorer = Arc<dyn Fn(&ScoreJob) -> ScoreResult + Send + Sync>;

/// Limits of one worker. Defaults in one place: [`ServiceConfig::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Jobs scored at once (default: the number of cores).
    pub max_concurrent: usize,
    /// Jobs accepted (running + queued) before batches are refused.
    pub max_pending: usize,
    /// Largest request and response message, in bytes.
    pub max_message_bytes: usize,
    /// Time after which a job is answered with `timeout` whatever its verifier is doing.
    pub job_deadline: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            max_concurrent: cores,
            max_pending: 64 * cores,
            max_message_bytes: 16 << 20,
            job_deadline: Duration::from_secs(300),
        }
    }
}

/// Why a whole request failed (a single job's failure is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "the worker's queue is full ({pending} jobs pending, batch of {batch}, limit {limit}); retry later or send smaller batches"
    )]
    Overloaded { pending: usize, batch: usize, limit: usize },
    #[error("the worker is shutting down; send the batch to another worker")]
    ShuttingDown,
    #[error("cannot serve on {addr}: {source}")]
    Transport { addr: String, source: tonic::transport::Error },
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::Overloaded { .. } => tonic::Status::resource_exhausted(message),
            ServiceError::ShuttingDown => tonic::Status::unavailable(message),
            ServiceError::Transport { .. } => tonic::Status::internal(message),
        }
    }
}

/// One reward worker: the scorer, its limits and its counters.
#[derive(Clone)]
pub struct RewardWorker {
    config: ServiceConfig,
    scorer: Scorer,
    slots: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl RewardWorker {
    /// A worker scoring with [`crate::job::score`].
    pub fn new(config: ServiceConfig) -> Self {
        Self::with_scorer(config, Arc::new(crate::job::score))
    }

    pub fn with_scorer(config: ServiceConfig, scorer: Scorer) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        Self { config, scorer, slots, pending: Arc::default(), metrics: Arc::default() }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Scores a batch; results come back in the order of `jobs`.
    pub async fn score_batch(&self, jobs: Vec<ScoreJob>) -> Result<Vec<ScoreResult>, ServiceError> {
        let batch = jobs.len();
        let before = self.pending.fetch_add(batch, Ordering::SeqCst);
        if before + batch > self.config.max_pending {
            self.pending.fetch_sub(batch, Ordering::SeqCst);
            self.metrics.rejected();
            return Err(ServiceError::Overloaded { pending: before, batch, limit: self.config.max_pending });
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, job) in jobs.into_iter().enumerate() {
            let guard = Pending { count: self.pending.clone(), metrics: self.metrics.clone(), started: false };
            self.metrics.queued();
            let worker = self.clone();
            tasks.spawn(async move { (index, worker.score_one(job, guard).await) });
        }
        let mut results: Vec<Option<ScoreResult>> = vec![None; batch];
        while let Some(joined) = tasks.join_next().await {
            let (index, result) = joined.map_err(|_| ServiceError::ShuttingDown)?;
            results[index] = Some(result);
        }
        Ok(results.into_iter().map(|r| r.expect("every job answered")).collect())
    }

    async fn score_one(&self, job: ScoreJob, mut guard: Pending) -> ScoreResult {
        let permit = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        guard.started = true;
        self.metrics.started();
        let start = Instant::now();
        let (id, verifier) = (job.id.clone(), job.verifier.clone());
        let scorer = self.scorer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = scorer(&job);
            drop(permit);
            result
        });
        let deadline = self.config.job_deadline;
        let result = match tokio::time::timeout(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                let why = if e.is_panic() { crate::job::panic_message(e.into_panic().as_ref()) } else { e.to_string() };
                ScoreResult::new(&id, 0.0, Status::InternalError, format!("the {verifier} verifier crashed: {why}"))
            }
            Err(_) => ScoreResult::new(
                &id,
                0.0,
                Status::Timeout,
                format!("the {verifier} verifier ran past the worker's job deadline of {deadline:?}"),
            ),
        };
        self.metrics.finished(result.status, start.elapsed());
        tracing::debug!(verifier, status = ?result.status, elapsed = ?start.elapsed(), "job scored");
        result
    }

    /// The tonic service with this worker's message limits.
    pub fn into_server(self) -> RewardServiceServer<Self> {
        let limit = self.config.max_message_bytes;
        RewardServiceServer::new(self).max_decoding_message_size(limit).max_encoding_message_size(limit)
    }
}

/// Releases a job's place in the pending count however its task ends.
struct Pending {
    count: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    started: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        if !self.started {
            self.metrics.abandoned();
        }
    }
}

#[tonic::async_trait]
impl RewardService for RewardWorker {
    async fn score(
        &self,
        request: tonic::Request<pb::ScoreRequest>,
    ) -> Result<tonic::Response<pb::ScoreResponse>, tonic::Status> {
        let jobs: Vec<ScoreJob> = request.into_inner().jobs.into_iter().map(job_from_wire).collect();
        let span = tracing::info_span!("score", jobs = jobs.len());
        let results = self.score_batch(jobs).instrument(span).await?;
        Ok(tonic::Response::new(pb::ScoreResponse { results: results.into_iter().map(result_to_wire).collect() }))
    }

    async fn info(
        &self,
        _request: tonic::Request<pb::InfoRequest>,
    ) -> Result<tonic::Response<pb::InfoResponse>, tonic::Status> {
        let layers = match crate::sandbox::shared() {
            Ok(s) => s.layers().to_string(),
            Err(e) => format!("unavailable: {e}"),
        };
        Ok(tonic::Response::new(pb::InfoResponse {
            max_concurrent: self.config.max_concurrent as u32,
            max_pending: self.config.max_pending as u32,
            max_message_bytes: self.config.max_message_bytes as u64,
            sandbox_layers: layers,
        }))
    }
}

/// Serves `worker` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    worker: RewardWorker,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServiceError> {
    let addr = listener.local_addr().map(|a: SocketAddr| a.to_string()).unwrap_or_default();
    let incoming = r1_proto::incoming(listener);
    // `GET /metrics` (Prometheus text) on the same port as the gRPC service: the queue depth
    // there is what an autoscaler watches.
    let metrics = worker.metrics();
    // grpc.health.v1 for Kubernetes' probes.
    let health = r1_proto::health::Health::new();
    health.serving(&["r1.v1.RewardService"]);
    let mut routes = tonic::service::Routes::new(worker.into_server()).add_service(health.service());
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.render() }
        }),
    );
    tonic::transport::Server::builder()
        .accept_http1(true)
        .trace_fn(rpc_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| ServiceError::Transport { addr, source })
}

/// The span every RPC runs in, named for OpenTelemetry after its method
/// (`r1.v1.RewardService/Score`).
fn rpc_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let name = path.trim_start_matches('/');
    let (service, method) = name.split_once('/').unwrap_or(("", name));
    tracing::info_span!(
        "rpc",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        path = path
    )
}

/// A wire job as a [`ScoreJob`]; the id is carried as a JSON string.
pub fn job_from_wire(job: pb::ScoreJob) -> ScoreJob {
    ScoreJob {
        id: serde_json::Value::String(job.id),
        verifier: job.verifier,
        completion: job.completion,
        ground_truth: job.ground_truth,
        language: job.language,
        test: job.test,
        tests: (!job.tests.is_empty())
            .then(|| job.tests.into_iter().map(|c| IoCase { stdin: c.stdin, stdout: c.stdout }).collect()),
        timeout_s: job.timeout_s,
        memory_mb: job.memory_mb,
    }
}

/// A [`ScoreResult`] on the wire; a non-string id is sent as its JSON text.
pub fn result_to_wire(result: ScoreResult) -> pb::ScoreResult {
    let id = match result.id {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    pb::ScoreResult {
        id,
        reward: result.reward,
        status: status_to_wire(result.status) as i32,
        components: result.components.into_iter().collect(),
        detail: result.detail,
    }
}

pub fn status_to_wire(status: Status) -> pb::ScoreStatus {
    use pb::ScoreStatus as W;
    match status {
        Status::Ok => W::Ok,
        Status::InvalidInput => W::InvalidInput,
        Status::NoAnswer => W::NoAnswer,
        Status::Failed => W::Failed,
        Status::Timeout => W::Timeout,
        Status::MemoryLimit => W::MemoryLimit,
        Status::ResourceLimit => W::ResourceLimit,
        Status::SandboxViolation => W::SandboxViolation,
        Status::ExitedEarly => W::ExitedEarly,
        Status::InternalError => W::InternalError,
    }
}
