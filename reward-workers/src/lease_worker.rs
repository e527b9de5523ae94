//! Reward workers as pull clients of the coordinator.
//!
//! A worker leases scoring jobs for one run (`WorkService.LeaseScoring`), scores every sample
//! of each leased group with the run's reward spec — the `rewards` table of the resolved run
//! spec, through [`crate::compose::Reward`] — and submits the group's rewards and components
//! with an idempotency key made of the lease and the group, so a retried submission counts
//! once. A worker holds no state: killed mid-job it loses nothing, because its lease expires
//! and the coordinator hands the group to another worker.
//!
//! A group whose every sample was judged is submitted. A sample whose score
//! has an error status (a component could not judge it: a malformed job, a verifier that
//! failed or panicked, see [`crate::job::guarded`]) is never turned into a reward: the
//! worker reports the group with `FailGroup` and the reason, logs it at `warn`, and goes
//! on with its next group. The coordinator hands such a group out again, and moves it to
//! the `failed` stage after `leases.max_attempts` failures; no single group ends a worker.
//!
//! Talking to the coordinator goes through [`r1_proto::client`]: the bearer token is sent on
//! every call, and every call is retried on transient failures (`UNAVAILABLE`, a reset
//! connection, a deadline) with exponential backoff for up to the worker's
//! [`RetryPolicy::max_elapsed`] (10 minutes by default). A coordinator that restarts or
//! crashes mid-run therefore does not stop the worker: its calls fail, are retried, and
//! succeed once the coordinator is back, on a fresh connection. Repeating any of its calls is
//! safe: reads change nothing, a submission carries its idempotency key (a retry of one that
//! was applied before the crash gets the first answer again and counts once), and a lease
//! granted to a call whose answer was lost expires and is handed out again. A worker whose
//! coordinator stays away longer than that stops with an error naming the call; a worker
//! whose run ends between two leases stops without error.

use std::sync::Arc;
use std::time::Duration;

use r1_proto::client::{self, AuthChannel, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use tracing::Instrument;

use crate::compose::{Reward, RewardSpec};
use crate::job::{IoCase, ScoreJob, ScoreResult};

/// Scores one sample's job given its generated length: [`Reward::score`] in production.
pub type SampleScorer = Arc<dyn Fn(&ScoreJob, Option<usize>) -> ScoreResult + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum LeaseWorkerError {
    #[error(transparent)]
    Connect(#[from] client::ClientError),
    #[error("coordinator call {call} failed: {} ({:?})", status.message(), status.code())]
    Rpc { call: &'static str, status: Box<tonic::Status> },
    #[error("run {run}: {message}")]
    Spec { run: u64, message: String },
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> LeaseWorkerError {
    move |status| LeaseWorkerError::Rpc { call, status: Box::new(status) }
}

/// How long a worker keeps retrying a call before it gives up: long enough for a coordinator
/// to be restarted by hand.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy { max_elapsed: Duration::from_secs(600), ..RetryPolicy::idempotent() }
}

/// One reward worker attached to one run.
pub struct LeaseWorker {
    runs: RunServiceClient<AuthChannel>,
    work: WorkServiceClient<AuthChannel>,
    retry: RetryPolicy,
    run_id: u64,
    worker: String,
    max_groups: u32,
    scorer: SampleScorer,
}

impl LeaseWorker {
    /// Connects to the coordinator (retrying until `cfg.connect_timeout`) and reads the run's
    /// reward spec.
    pub async fn connect(
        cfg: &ClientConfig,
        run_id: u64,
        worker: &str,
        max_groups: u32,
    ) -> Result<Self, LeaseWorkerError> {
        let channel = client::connect(cfg).await?;
        Self::from_channel(channel, cfg.max_message_bytes, run_id, worker, max_groups).await
    }

    /// A worker on an existing channel, with [`default_retry`].
    pub async fn from_channel(
        channel: AuthChannel,
        max_message_bytes: usize,
        run_id: u64,
        worker: &str,
        max_groups: u32,
    ) -> Result<Self, LeaseWorkerError> {
        let runs = client::run_client(channel.clone(), max_message_bytes);
        let work = client::work_client(channel, max_message_bytes);
        let retry = default_retry();
        let status = get_run(&runs, &retry, run_id).await?;
        let spec: serde_json::Value = serde_json::from_str(&status.spec_json)
            .map_err(|e| LeaseWorkerError::Spec { run: run_id, message: format!("spec is not JSON: {e}") })?;
        let rewards = spec.get("rewards").cloned().unwrap_or(serde_json::Value::Array(vec![]));
        let spec: RewardSpec = serde_json::from_value(rewards)
            .map_err(|e| LeaseWorkerError::Spec { run: run_id, message: format!("bad `rewards`: {e}") })?;
        let reward = Reward::new(&spec).map_err(|e| LeaseWorkerError::Spec { run: run_id, message: e.to_string() })?;
        let scorer: SampleScorer = Arc::new(move |job: &ScoreJob, tokens: Option<usize>| reward.score(job, tokens));
        Ok(Self { runs, work, retry, run_id, worker: worker.into(), max_groups: max_groups.max(1), scorer })
    }

    /// The same worker scoring with `scorer` instead of the run's reward spec (tests).
    pub fn with_scorer(mut self, scorer: SampleScorer) -> Self {
        self.scorer = scorer;
        self
    }

    /// The same worker retrying its calls under `policy` instead of [`default_retry`].
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Leases once, scores every leased group and submits it; returns how many groups were
    /// scored (0: nothing to score right now).
    pub async fn step(&mut self) -> Result<usize, LeaseWorkerError> {
        let request =
            pb::LeaseScoringRequest { run_id: self.run_id, worker: self.worker.clone(), max_groups: self.max_groups };
        let lease = client::retry("LeaseScoring", &self.retry, || {
            let mut work = self.work.clone();
            let request = request.clone();
            async move { work.lease_scoring(request).await }
        })
        .instrument(tracing::info_span!("lease_scoring", run = self.run_id, worker = %self.worker))
        .await
        .map_err(rpc("LeaseScoring"))?
        .into_inner();
        let n = lease.groups.len();
        for group in lease.groups {
            let span = tracing::info_span!(
                "score_group",
                run = self.run_id,
                group = group.group_id,
                lease = lease.lease_id,
                samples = group.samples.len()
            );
            let scorer = self.scorer.clone();
            let example = group.example.clone().unwrap_or_default();
            let samples = group.samples.clone();
            // Scoring can run sandboxed programs: keep it off the async threads.
            let in_span = span.clone();
            let scored = tokio::task::spawn_blocking(move || {
                let _entered = in_span.enter();
                samples
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let job = job_for(&example, s, i);
                        crate::job::guarded(&job, "reward", || scorer(&job, Some(s.token_ids.len())))
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let failure = match &scored {
                Err(e) => Some(format!("scoring crashed: {e}")),
                Ok(results) => results
                    .iter()
                    .find(|r| r.status.is_error())
                    .map(|r| format!("sample {} could not be judged ({:?}): {}", r.id, r.status, r.detail)),
            };
            if let Some(reason) = failure {
                tracing::warn!(parent: &span, group = group.group_id, %reason, "reporting the group as failed");
                self.fail_group(lease.lease_id, group.group_id, reason).instrument(span.clone()).await?;
                continue;
            }
            let results = scored.expect("checked above");
            let request = pb::SubmitScoresRequest {
                run_id: self.run_id,
                idempotency_key: format!("score-{}-{}", lease.lease_id, group.group_id),
                group_id: group.group_id,
                rewards: results.iter().map(|r| r.reward).collect(),
                components: results
                    .iter()
                    .map(|r| pb::ComponentScores {
                        components: r.components.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    })
                    .collect(),
            };
            let outcome = client::retry("SubmitScores", &self.retry, || {
                let mut work = self.work.clone();
                let request = request.clone();
                async move { work.submit_scores(request).await }
            })
            .instrument(span.clone())
            .await
            .map_err(rpc("SubmitScores"))?
            .into_inner()
            .outcome;
            tracing::debug!(parent: &span, outcome = ?pb::SubmitOutcome::try_from(outcome), "scores submitted");
        }
        Ok(n)
    }

    /// Reports that the group could not be scored (see the module doc).
    async fn fail_group(&self, lease_id: u64, group_id: u64, reason: String) -> Result<(), LeaseWorkerError> {
        let request = pb::FailGroupRequest {
            run_id: self.run_id,
            idempotency_key: format!("fail-score-{lease_id}-{group_id}"),
            lease_id,
            group_id,
            reason,
        };
        let outcome = client::retry("FailGroup", &self.retry, || {
            let mut work = self.work.clone();
            let request = request.clone();
            async move { work.fail_group(request).await }
        })
        .await
        .map_err(rpc("FailGroup"))?
        .into_inner()
        .outcome;
        tracing::debug!(outcome = ?pb::SubmitOutcome::try_from(outcome), "failure reported");
        Ok(())
    }

    /// Scores until the run has ended, waiting `idle` between empty leases. Returns the number
    /// of groups scored.
    pub async fn run(&mut self, idle: Duration) -> Result<usize, LeaseWorkerError> {
        let mut scored = 0;
        let live = [pb::RunState::Pending as i32, pb::RunState::Running as i32];
        loop {
            let n = match self.step().await {
                Ok(n) => n,
                // The run ended between two leases: the coordinator refuses work for it.
                Err(LeaseWorkerError::Rpc { status, .. }) if status.code() == tonic::Code::FailedPrecondition => {
                    let state = get_run(&self.runs, &self.retry, self.run_id).await?.state;
                    if live.contains(&state) {
                        return Err(LeaseWorkerError::Rpc { call: "LeaseScoring", status });
                    }
                    return Ok(scored);
                }
                Err(e) => return Err(e),
            };
            scored += n;
            if n == 0 {
                let state = get_run(&self.runs, &self.retry, self.run_id).await?.state;
                if !live.contains(&state) {
                    return Ok(scored);
                }
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// The run's status, retried under `retry`.
async fn get_run(
    runs: &RunServiceClient<AuthChannel>,
    retry: &RetryPolicy,
    id: u64,
) -> Result<pb::RunStatus, LeaseWorkerError> {
    client::get_run(runs, retry, id).await.map_err(rpc("Get"))
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
