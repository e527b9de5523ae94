//! The `r1.v1.RunService` gRPC service over [`Coordinator`]: Submit, Get, List, Cancel and
//! Watch (a stream of status changes).
//!
//! Errors become `tonic::Status` in one place ([`status_of`]). Every RPC runs in a
//! tracing span named `rpc` with its path (set on the server in [`serve`]). Blocking work
//! (SQLite, dataset reads) runs on tokio's blocking pool. Watch polls the store every
//! `watch_interval` and sends a status only when it changed, so it keeps working across
//! every kind of change (leases, steps, cancel) with no notification plumbing; it ends
//! after sending a finished run's final status, or when the client goes away.
//!
//! Limits: no authentication yet (the bearer token of issue 4 is still to come).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use r1_proto::v1 as pb;
use r1_proto::v1::run_service_server::{RunService, RunServiceServer};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::dataset::DatasetError;
use crate::runs::{Coordinator, RunStatus, RunsError};
use crate::spec::RunSpec;
use crate::store::{RunState, StoreError};

/// Maps every coordinator error to the gRPC code a client can act on.
pub fn status_of(e: RunsError) -> Status {
    let message = e.to_string();
    match e {
        RunsError::Spec(_) => Status::invalid_argument(message),
        RunsError::Dataset(DatasetError::Io { .. }) => Status::failed_precondition(message),
        RunsError::Dataset(_) => Status::invalid_argument(message),
        RunsError::Store(StoreError::RunNotFound(_)) => Status::not_found(message),
        RunsError::Store(StoreError::BadTransition { .. }) => Status::failed_precondition(message),
        RunsError::Store(StoreError::SchemaTooNew { .. }) => Status::failed_precondition(message),
        RunsError::Store(_) => Status::internal(message),
        RunsError::Lease(_) => Status::failed_precondition(message),
        RunsError::NotRunning(_) => Status::failed_precondition(message),
        RunsError::Unsupported(_) => Status::unimplemented(message),
    }
}

/// The RunService implementation.
#[derive(Clone)]
pub struct Runs {
    core: Arc<Coordinator>,
    watch_interval: Duration,
}

impl Runs {
    pub fn new(core: Arc<Coordinator>, watch_interval: Duration) -> Runs {
        Runs {
            core,
            watch_interval,
        }
    }

    pub fn into_server(self) -> RunServiceServer<Self> {
        RunServiceServer::new(self)
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

/// A run id from the wire; 0 (unset) is refused.
fn run_id(id: u64) -> Result<i64, Status> {
    match i64::try_from(id) {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Status::invalid_argument(format!(
            "run id {id} is not valid; use an id from `r1ctl runs`"
        ))),
    }
}

#[tonic::async_trait]
impl RunService for Runs {
    async fn submit(
        &self,
        request: Request<pb::SubmitRunRequest>,
    ) -> Result<Response<pb::RunStatus>, Status> {
        use pb::submit_run_request::Spec;
        let spec = match request.into_inner().spec {
            Some(Spec::Toml(text)) => RunSpec::from_toml(&text),
            Some(Spec::Json(text)) => RunSpec::from_json(&text),
            None => {
                return Err(Status::invalid_argument(
                    "the request has no spec; send the run spec as toml or json",
                ));
            }
        }
        .map_err(|e| status_of(e.into()))?;
        let status = self.blocking(move |core| core.submit(spec)).await?;
        Ok(Response::new(to_wire(status)))
    }

    async fn get(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunStatus>, Status> {
        let id = run_id(request.into_inner().id)?;
        Ok(Response::new(to_wire(
            self.blocking(move |core| core.get(id)).await?,
        )))
    }

    async fn list(
        &self,
        _request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let runs = self.blocking(|core| core.list()).await?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.into_iter().map(to_wire).collect(),
        }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::RunStatus>, Status> {
        let req = request.into_inner();
        let id = run_id(req.id)?;
        Ok(Response::new(to_wire(
            self.blocking(move |core| core.cancel(id, &req.reason))
                .await?,
        )))
    }

    type WatchStream = ReceiverStream<Result<pb::RunStatus, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let id = run_id(request.into_inner().id)?;
        // The first status is read before the stream starts, so an unknown run is an error
        // on the call rather than on the stream.
        let first = to_wire(self.blocking(move |core| core.get(id)).await?);
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
        }),
        queues: Some(pb::QueueDepths {
            generate: q.generate,
            score: q.score,
            train: q.train,
            done: q.done,
            dropped_stale: q.dropped_stale,
            dropped_equal: q.dropped_equal,
        }),
        spec_json: serde_json::to_string(&s.run.spec).unwrap_or_default(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot serve the coordinator on {addr}: {source}; check that the address is free")]
pub struct ServeError {
    addr: String,
    source: tonic::transport::Error,
}

/// Serves the RunService on `listener` until `shutdown` completes, one `rpc` span per call.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runs: Runs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .trace_fn(|req| tracing::info_span!("rpc", path = %req.uri().path()))
        .add_service(runs.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| ServeError { addr, source })
}
