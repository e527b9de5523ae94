//! A scripted fleet for the dashboard's tests: one actor, one reward worker and one learner
//! that drive a run through the real WorkService over gRPC, one learner step at a time, so
//! a test decides exactly when the next step lands. Completions, rewards and step metrics
//! are made up but shaped like the real workers' (`<think>`/`<answer>` texts, accuracy and
//! format components, the learner's metric keys). Used by `tests/dashboard.rs` and by
//! `examples/dashboard_fixture.rs` (the browser test's coordinator).

#![allow(dead_code)]

use std::path::Path;

use r1_proto::v1 as pb;
use r1_proto::v1::work_service_client::WorkServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <token>` to every call when it has a token.
#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(request)
    }
}

/// A WorkService client that sends the token.
pub type Work = WorkServiceClient<InterceptedService<Channel, Bearer>>;

pub const GROUP_SIZE: u32 = 4;
pub const PROMPTS_PER_STEP: u32 = 2;
pub const ACTOR: &str = "actor-0";
pub const REWARD: &str = "reward-0";
pub const LEARNER: &str = "learner-0";

/// A dataset of `n` arithmetic prompts (JSONL, `q`/`a`), with `extra` prepended to each prompt.
pub fn write_dataset(path: &Path, n: usize, extra: &str) {
    let rows: String = (1..=n)
        .map(|i| {
            let row = serde_json::json!({"q": format!("{extra}What is {i} + {i}?"), "a": (2 * i).to_string()});
            format!("{row}\n")
        })
        .collect();
    std::fs::write(path, rows).unwrap();
}

/// A GRPO run spec (TOML) over `data` named `name` (any text: it is quoted).
pub fn spec(name: &str, data: &Path, total_steps: u64, eval_every: u64) -> String {
    format!(
        "name = {}\nbase_model = 'm'\n[dataset]\npath = {}\nfields = {{prompt = 'q', answer = 'a'}}\neval_fraction = 0.2\n\
         [[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n[[rewards]]\nname = 'format'\nverifier = 'format'\nweight = 0.2\n\
         [algorithm]\nkind = 'grpo'\ngroup_size = {GROUP_SIZE}\nprompts_per_step = {PROMPTS_PER_STEP}\nmax_policy_lag = 0\ndynamic_sampling = false\n\
         [schedule]\ntotal_steps = {total_steps}\neval_every = {eval_every}\ncheckpoint_every = 2",
        serde_json::to_string(name).unwrap(),
        serde_json::to_string(&data.display().to_string()).unwrap(),
    )
}

/// What completion `i` of a group says: a `<think>` part and an `<answer>` part, with
/// `extra` (HTML, say) in front.
pub fn completion(extra: &str, step: u64, group: u64, i: usize) -> String {
    let answer = if i.is_multiple_of(2) { "right" } else { "wrong" };
    format!(
        "{extra}<think>Step {step}, group {group}: sample {i} works it out{}.</think> <answer>{answer}</answer>",
        ", carefully".repeat(i)
    )
}

pub struct Fleet {
    pub work: Work,
    pub run: u64,
    /// Put in front of every completion.
    pub extra: String,
    keys: u64,
}

fn key(n: &mut u64, what: &str) -> String {
    *n += 1;
    format!("{what}-{n}")
}

impl Fleet {
    pub fn new(work: Work, run: u64, extra: &str) -> Fleet {
        Fleet { work, run, extra: extra.into(), keys: 0 }
    }

    /// Generates, scores and trains until the learner finishes one step; returns the run's
    /// step after it (1 after the first).
    pub async fn step(&mut self) -> u64 {
        let run = self.run;
        for _ in 0..50 {
            let lease = self
                .work
                .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: ACTOR.into(), max_groups: 16 })
                .await
                .unwrap()
                .into_inner();
            for g in &lease.groups {
                let samples = (0..lease.group_size as usize)
                    .map(|i| {
                        let n = 3 + 2 * i;
                        pb::Sample {
                            text: completion(&self.extra, lease.policy_version + 1, g.group_id, i),
                            token_ids: (0..n as u32).collect(),
                            logprobs: vec![-0.5; n],
                            truncated: i == 3,
                            generation_seconds: 0.01 * n as f32,
                        }
                    })
                    .collect();
                self.work
                    .submit_samples(pb::SubmitSamplesRequest {
                        run_id: run,
                        idempotency_key: key(&mut self.keys, "samples"),
                        group_id: g.group_id,
                        policy_version: lease.policy_version,
                        samples,
                    })
                    .await
                    .unwrap();
            }
            let scoring = self
                .work
                .lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: REWARD.into(), max_groups: 16 })
                .await
                .unwrap()
                .into_inner();
            for g in &scoring.groups {
                let comps: Vec<(f64, f64)> = (0..g.samples.len())
                    .map(|i| (if i.is_multiple_of(2) { 1.0 } else { 0.0 }, if i == 3 { 0.0 } else { 1.0 }))
                    .collect();
                self.work
                    .submit_scores(pb::SubmitScoresRequest {
                        run_id: run,
                        idempotency_key: key(&mut self.keys, "scores"),
                        group_id: g.group_id,
                        rewards: comps.iter().map(|(a, f)| a + 0.2 * f).collect(),
                        components: comps
                            .iter()
                            .map(|(a, f)| pb::ComponentScores {
                                components: [("accuracy".to_string(), *a), ("format".to_string(), *f)]
                                    .into_iter()
                                    .collect(),
                            })
                            .collect(),
                    })
                    .await
                    .unwrap();
            }
            let batch = self
                .work
                .lease_batch(pb::LeaseBatchRequest { run_id: run, worker: LEARNER.into() })
                .await
                .unwrap()
                .into_inner();
            if batch.lease_id == 0 {
                continue;
            }
            let metrics = step_metrics(&batch);
            self.work
                .submit_step(pb::SubmitStepRequest {
                    run_id: run,
                    idempotency_key: key(&mut self.keys, "step"),
                    lease_id: batch.lease_id,
                    step: batch.step,
                    metrics_json: metrics.to_string(),
                    unpublished: false,
                })
                .await
                .unwrap();
            let step = batch.step + 1;
            if step % 2 == 0 {
                self.work
                    .record_checkpoint(pb::RecordCheckpointRequest {
                        run_id: run,
                        step,
                        path: format!("/data/checkpoints/run-{run}/step-{step}"),
                    })
                    .await
                    .unwrap();
            }
            return step;
        }
        panic!("run {run}: the learner got no batch in 50 rounds");
    }
}

/// The learner's metric keys for `batch`: the reward statistics from its rewards, the rest
/// made up as smooth functions of the step.
fn step_metrics(batch: &pb::BatchLease) -> serde_json::Value {
    let rewards: Vec<f64> = batch.groups.iter().flat_map(|g| g.rewards.clone()).collect();
    let n = rewards.len().max(1) as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    let lens: Vec<usize> = batch.groups.iter().flat_map(|g| g.samples.iter().map(|s| s.token_ids.len())).collect();
    let s = batch.step as f64 + 1.0;
    serde_json::json!({
        "reward_mean": mean + 0.02 * s,
        "reward_std": std,
        "reward/accuracy": 0.5 + 0.01 * s,
        "reward/format": 0.75,
        "accuracy": 0.5 + 0.01 * s,
        "format_rate": 0.75,
        "response_len_mean": lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64 + s,
        "response_len_max": lens.iter().max().copied().unwrap_or(0) as f64 + s,
        "truncated_frac": 0.25,
        "kl": 0.001 * s,
        "entropy": 1.5 - 0.02 * s,
        "clip_frac": 0.01,
        "loss": 0.1 / s,
        "grad_norm": 1.0,
        "lr": 3e-6,
        "tokens": lens.iter().sum::<usize>(),
        "groups": batch.groups.len(),
        "tokens_per_s": 900.0 + 10.0 * s,
        "learner_tokens_per_s": 1800.0,
        "actor_tokens_per_s": 1200.0 + 5.0 * s,
        "staleness_mean": 0.0,
        "weight_sync_seconds": 0.05,
        "step_seconds": 0.4,
    })
}
