//! Run-agnostic pools: what `serve actor`, `reward work` and `serve learner` do when started
//! without `--run`. Actors and reward workers ask the coordinator which run to serve
//! (`WorkService.NextRun`: the oldest running run that needs their role), serve it with the
//! same code as a pinned worker until it ends, and ask again. A learner fleet's rank 0 claims
//! a run (`ClaimRun`), tells the other ranks which run over the ring, trains it with its
//! claim renewed in the background, releases the claim when the run ends, and claims the
//! next; the other ranks follow. See `r1_coordinator::pools` for the coordinator's side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use r1_learner::collective::Collective;
use r1_proto::client::{self, AuthChannel, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;
use r1_proto::v1::work_service_client::WorkServiceClient;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// How often an idle pool asks for a run.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// The pool calls to the coordinator, retried while it restarts.
#[derive(Clone)]
pub struct PoolClient {
    work: WorkServiceClient<AuthChannel>,
    retry: RetryPolicy,
}

impl PoolClient {
    pub async fn connect(cfg: &ClientConfig) -> Result<PoolClient> {
        let channel = client::connect(cfg)
            .await
            .context("is `r1ctl serve coordinator` running, and is --coordinator its address?")?;
        Ok(PoolClient { work: client::work_client(channel, cfg.max_message_bytes), retry: RetryPolicy::idempotent() })
    }

    /// The run a worker of `role` should serve now (0: none).
    pub async fn next_run(&self, role: pb::WorkerRole, worker: &str) -> Result<u64> {
        let reply = client::retry("NextRun", &self.retry, || {
            let mut c = self.work.clone();
            let req = pb::NextRunRequest { role: role as i32, worker: worker.to_string() };
            async move { c.next_run(req).await }
        })
        .await
        .map_err(|s| anyhow::anyhow!("cannot ask the coordinator for a run: {}", s.message()))?;
        Ok(reply.into_inner().run_id)
    }

    /// Claims (or renews, with `run` > 0) a run for the learner fleet `worker`.
    pub async fn claim(&self, worker: &str, run: u64) -> Result<pb::RunClaim, tonic::Status> {
        client::retry("ClaimRun", &self.retry, || {
            let mut c = self.work.clone();
            let req = pb::ClaimRunRequest { worker: worker.to_string(), run_id: run };
            async move { c.claim_run(req).await }
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn release(&self, worker: &str, run: u64) -> Result<bool> {
        let reply = client::retry("ReleaseClaim", &self.retry, || {
            let mut c = self.work.clone();
            let req = pb::ReleaseClaimRequest { worker: worker.to_string(), run_id: run };
            async move { c.release_claim(req).await }
        })
        .await
        .map_err(|s| anyhow::anyhow!("cannot release the claim on run {run}: {}", s.message()))?;
        Ok(reply.into_inner().released)
    }
}

/// Sleeps `d`, waking early when `stop` is set; false when stopped.
pub fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

/// Waits until a run needs `role`; `None` when `stop` was set first.
pub fn wait_for_run(
    rt: &Handle,
    pool: &PoolClient,
    role: pb::WorkerRole,
    worker: &str,
    stop: &AtomicBool,
) -> Result<Option<u64>> {
    let mut said = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let run = rt.block_on(pool.next_run(role, worker))?;
        if run > 0 {
            return Ok(Some(run));
        }
        if !said {
            eprintln!("{worker}: no running run needs this worker; waiting for one");
            said = true;
        }
        if !nap(IDLE_POLL, stop) {
            return Ok(None);
        }
    }
}

/// What a learner fleet's rank 0 tells the other ranks between runs, one `broadcast_bytes`
/// each (the run's own messages follow `Run`, see `r1_learner::service`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum FleetMsg {
    /// Train this run (its own Start message comes next).
    Run(u64),
    /// No run to train yet; keeps the ring's sockets inside their read timeout.
    Idle,
    /// The fleet is stopping.
    Stop,
}

pub fn send(c: &mut dyn Collective, msg: &FleetMsg) -> Result<()> {
    let mut bytes = serde_json::to_vec(msg).expect("fleet messages serialise");
    c.broadcast_bytes(&mut bytes, 0).context("cannot tell the other learner ranks")?;
    Ok(())
}

pub fn recv(c: &mut dyn Collective) -> Result<FleetMsg> {
    let mut bytes = Vec::new();
    c.broadcast_bytes(&mut bytes, 0).context("lost learner rank 0")?;
    serde_json::from_slice(&bytes).with_context(|| format!("rank {} got a bad fleet message from rank 0", c.rank()))
}

/// Renews `worker`'s claim on `run` in the background until dropped; sets `run_stop` when
/// the claim is lost to another fleet (then this fleet must stop training the run) and when
/// `stop` is set (SIGTERM).
pub struct Renewal {
    done: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Renewal {
    pub fn start(
        rt: &Handle,
        pool: PoolClient,
        worker: String,
        claim: &pb::RunClaim,
        stop: Arc<AtomicBool>,
        run_stop: Arc<AtomicBool>,
    ) -> Renewal {
        let done = Arc::new(AtomicBool::new(false));
        let (run, first_deadline) = (claim.run_id, claim.deadline_ms);
        let flag = done.clone();
        let task = rt.spawn(async move {
            let mut deadline = first_deadline;
            let mut next = Instant::now() + renew_every(deadline);
            while !flag.load(Ordering::Relaxed) {
                if stop.load(Ordering::Relaxed) {
                    run_stop.store(true, Ordering::Relaxed);
                }
                if Instant::now() >= next {
                    match pool.claim(&worker, run).await {
                        Ok(c) if c.run_id == run => deadline = c.deadline_ms,
                        // The run is no longer running: the learner sees that itself.
                        Ok(_) => {}
                        Err(s) => {
                            tracing::error!(run, error = %s.message(), "lost the claim on the run; stopping its training");
                            eprintln!("{worker}: lost the claim on run {run}: {}", s.message());
                            run_stop.store(true, Ordering::Relaxed);
                        }
                    }
                    next = Instant::now() + renew_every(deadline);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Renewal { done, task: Some(task) }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A third of the time left on a claim, between 1 s and 20 s.
fn renew_every(deadline_ms: i64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(((deadline_ms - now) / 3).clamp(1_000, 20_000) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_come_every_third_of_the_time_left_within_bounds() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let secs = |left: i64| renew_every(now + left).as_secs_f64();
        assert!((secs(30_000) - 10.0).abs() < 0.1, "{}", secs(30_000));
        assert_eq!(secs(600_000), 20.0, "at most 20 s");
        assert_eq!(secs(-5_000), 1.0, "at least 1 s, even past the deadline");
    }
}
