//! Reward workers as pull clients of the coordinator.
//!
//! A worker leases scoring jobs for one run (`WorkService.LeaseScoring`), scores every sample
//! of each leased group with the run's reward spec — the `rewards` table of the resolved run
//! spec, through [`crate::compose::Reward`] — and submits the group's rewards and components
//! with an idempotency key made of the lease and the group, so a retried submission counts
//! once. A worker holds no state: killed mid-job it loses nothing, because its lease expires
//! and the coordinator hands the group to another worker.
//!
//! A sample whose score has an error status (a component could not judge it) is submitted
//! with the reward the composition gives it and logged at `warn` with the reason; the
//! coordinator's protocol carries rewards, not statuses.
//!
//! Not covered yet: bearer-token authentication towards the coordinator and reconnecting
//! with backoff; a worker whose coordinator goes away stops with an error.

use std::time::Duration;

use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use tonic::transport::Channel;

use crate::compose::{Reward, RewardSpec};
use crate::job::{IoCase, ScoreJob};

#[derive(Debug, thiserror::Error)]
pub enum LeaseWorkerError {
    #[error("cannot reach the coordinator at {url}: {source}; check the address and that it is running")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("coordinator call {call} failed: {} ({:?})", status.message(), status.code())]
    Rpc { call: &'static str, status: Box<tonic::Status> },
    #[error("run {run}: {message}")]
    Spec { run: u64, message: String },
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> LeaseWorkerError {
    move |status| LeaseWorkerError::Rpc { call, status: Box::new(status) }
}

/// One reward worker attached to one run.
pub struct LeaseWorker {
    runs: RunServiceClient<Channel>,
    work: WorkServiceClient<Channel>,
    run_id: u64,
    worker: String,
    max_groups: u32,
    reward: Reward,
}

impl LeaseWorker {
    /// Connects to the coordinator at `url` (`http://host:port`) and reads the run's reward spec.
    pub async fn connect(url: &str, run_id: u64, worker: &str, max_groups: u32) -> Result<Self, LeaseWorkerError> {
        let channel = Channel::from_shared(url.to_string())
            .map_err(|e| LeaseWorkerError::Spec { run: run_id, message: format!("bad coordinator URL `{url}`: {e}") })?
            .connect()
            .await
            .map_err(|source| LeaseWorkerError::Connect { url: url.into(), source })?;
        Self::from_channel(channel, run_id, worker, max_groups).await
    }

    pub async fn from_channel(channel: Channel, run_id: u64, worker: &str, max_groups: u32) -> Result<Self, LeaseWorkerError> {
        let mut runs = RunServiceClient::new(channel.clone());
        let status = runs.get(pb::GetRunRequest { id: run_id }).await.map_err(rpc("Get"))?.into_inner();
        let spec: serde_json::Value = serde_json::from_str(&status.spec_json)
            .map_err(|e| LeaseWorkerError::Spec { run: run_id, message: format!("spec is not JSON: {e}") })?;
        let rewards = spec.get("rewards").cloned().unwrap_or(serde_json::Value::Array(vec![]));
        let spec: RewardSpec = serde_json::from_value(rewards)
            .map_err(|e| LeaseWorkerError::Spec { run: run_id, message: format!("bad `rewards`: {e}") })?;
        let reward = Reward::new(&spec).map_err(|e| LeaseWorkerError::Spec { run: run_id, message: e.to_string() })?;
        Ok(Self { runs, work: WorkServiceClient::new(channel), run_id, worker: worker.into(), max_groups: max_groups.max(1), reward })
    }

    /// Leases once, scores every leased group and submits it; returns how many groups were
    /// scored (0: nothing to score right now).
    pub async fn step(&mut self) -> Result<usize, LeaseWorkerError> {
        let lease = self
            .work
            .lease_scoring(pb::LeaseScoringRequest { run_id: self.run_id, worker: self.worker.clone(), max_groups: self.max_groups })
            .await
            .map_err(rpc("LeaseScoring"))?
            .into_inner();
        let n = lease.groups.len();
        for group in lease.groups {
            let _span = tracing::info_span!("score_group", run = self.run_id, group = group.group_id).entered();
            let reward = self.reward.clone();
            let example = group.example.clone().unwrap_or_default();
            let samples = group.samples.clone();
            // Scoring can run sandboxed programs: keep it off the async threads.
            let results = tokio::task::spawn_blocking(move || {
                samples.iter().enumerate().map(|(i, s)| reward.score(&job_for(&example, s, i), Some(s.token_ids.len()))).collect::<Vec<_>>()
            })
            .await
            .expect("scoring task panicked");
            for r in results.iter().filter(|r| r.status.is_error()) {
                tracing::warn!(group = group.group_id, sample = %r.id, status = ?r.status, detail = %r.detail, "sample could not be judged normally");
            }
            let request = pb::SubmitScoresRequest {
                run_id: self.run_id,
                idempotency_key: format!("score-{}-{}", lease.lease_id, group.group_id),
                group_id: group.group_id,
                rewards: results.iter().map(|r| r.reward).collect(),
                components: results
                    .iter()
                    .map(|r| pb::ComponentScores { components: r.components.iter().map(|(k, v)| (k.clone(), *v)).collect() })
                    .collect(),
            };
            self.work.submit_scores(request).await.map_err(rpc("SubmitScores"))?;
        }
        Ok(n)
    }

    /// Scores until the run has ended, waiting `idle` between empty leases. Returns the number
    /// of groups scored.
    pub async fn run(&mut self, idle: Duration) -> Result<usize, LeaseWorkerError> {
        let mut scored = 0;
        loop {
            let n = self.step().await?;
            scored += n;
            if n == 0 {
                let state = self.runs.get(pb::GetRunRequest { id: self.run_id }).await.map_err(rpc("Get"))?.into_inner().state;
                let live = [pb::RunState::Pending as i32, pb::RunState::Running as i32];
                if !live.contains(&state) {
                    return Ok(scored);
                }
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// The scoring job for sample `i` of a group: its text against the example's answer, tests
/// (`tests_json`: a JSON string is assert-style test code, a JSON list is stdin/stdout cases)
/// and language.
fn job_for(example: &pb::Example, sample: &pb::Sample, i: usize) -> ScoreJob {
    let (mut test, mut tests) = (None, None);
    match example.tests_json.as_deref().map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(serde_json::Value::String(code))) => test = Some(code),
        Some(Ok(v @ serde_json::Value::Array(_))) => tests = serde_json::from_value::<Vec<IoCase>>(v).ok(),
        _ => {}
    }
    ScoreJob {
        id: serde_json::json!(i),
        verifier: String::new(),
        completion: sample.text.clone(),
        ground_truth: example.answer.clone(),
        language: example.language.clone(),
        test,
        tests,
        ..Default::default()
    }
}
