//! The learner service: N ranks that lease batches from the coordinator, train, and
//! publish weights.
//!
//! Rank 0 is the leader. It reads the run, decides where to resume, leases each batch
//! (`WorkService.LeaseBatch`, renewing the lease while it trains), hands it to every rank
//! over the [`Collective`] (one `broadcast_bytes` of the encoded lease), trains its own
//! shard, submits the step with its metrics (`SubmitStep`), publishes the new weights to
//! actors ([`Publisher`]), and writes a checkpoint every `schedule.checkpoint_every` steps,
//! at the end, and when asked to stop (SIGTERM), recording each with `RecordCheckpoint`.
//! The other ranks talk only to rank 0: they receive the run spec, the resume point and
//! each batch, and train their shard in lock step.
//!
//! Resume: a learner (re)starting on a run at step S loads the checkpoint recorded for step
//! S (weights and optimizer state; the coordinator holds the dataset cursor and counters of
//! that step). When the coordinator is past its newest checkpoint C (the last learner died
//! after submitting steps it never checkpointed, so their weights are gone), rank 0 rolls
//! the run back to C with `WorkService.Rollback` (to step 0, the base model, when nothing
//! was recorded): the coordinator restores the cursor, counters and groups of step C and
//! undoes everything after it, and the learner resumes from C.
//!
//! Checkpoints are written by rank 0 into `<checkpoints>/step-N` and read by every rank,
//! so ranks on several machines need that folder on shared storage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;
use prost::Message;
use r1_model::{CausalLm, TextTokenizer};
use r1_proto::client::{self, AuthChannel, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use r1_spec::{Algorithm, RunSpec, Template};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::runtime::Handle;

use crate::checkpoint::{self, Checkpoint, TrainerState};
use crate::collective::{Collective, CollectiveError};
use crate::grpo::group_advantages;
use crate::options::{LearnerOptions, optim_config};
use crate::publish::Publisher;
use crate::trainer::{Rollout, StepReport, TrainError, Trainer};

/// Why the learner stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot reach the coordinator: {0}")]
    Connect(String),
    #[error("coordinator call {call} failed: {} ({:?})", status.message(), status.code())]
    Rpc { call: &'static str, status: Box<tonic::Status> },
    #[error("run {run}: {message}")]
    Run { run: u64, message: String },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("model: {0}")]
    Model(#[from] r1_model::ModelError),
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> ServiceError {
    move |status| ServiceError::Rpc { call, status: Box::new(status) }
}

/// What a learner rank needs to know.
#[derive(Clone, Debug)]
pub struct LearnerSettings {
    /// Used by rank 0 only.
    pub coordinator: ClientConfig,
    pub run_id: u64,
    pub worker: String,
    /// This run's checkpoint folder (`step-N` folders go inside).
    pub checkpoints: PathBuf,
    /// Pause when no batch is ready.
    pub poll: Duration,
}

impl LearnerSettings {
    pub fn new(coordinator: ClientConfig, run_id: u64, checkpoints: PathBuf) -> Self {
        Self {
            coordinator,
            run_id,
            worker: format!("learner-{}", std::process::id()),
            checkpoints,
            poll: Duration::from_millis(100),
        }
    }
}

/// Totals of one learner's life.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LearnerReport {
    /// Steps this process trained.
    pub steps: u64,
    /// The run's step when it stopped.
    pub step: u64,
    /// The step it resumed from (0: the base model).
    pub resumed_from: u64,
    pub checkpoints: u64,
    /// Groups left out of their batch because they could not be trained.
    pub failed_groups: u64,
}

/// What rank 0 tells the others, one `broadcast_bytes` each.
#[derive(Serialize, Deserialize)]
enum Msg {
    Start { spec_json: String, resume: Option<(u64, PathBuf)> },
    Idle,
    Batch(Vec<u8>),
    Stop,
}

fn send(c: &mut dyn Collective, msg: &Msg) -> Result<(), CollectiveError> {
    let mut bytes = serde_json::to_vec(msg).expect("messages serialise");
    c.broadcast_bytes(&mut bytes, 0)
}

fn recv(c: &mut dyn Collective) -> Result<Msg, ServiceError> {
    let mut bytes = Vec::new();
    c.broadcast_bytes(&mut bytes, 0)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ServiceError::Collective(CollectiveError::Protocol {
            rank: c.rank(),
            message: format!("bad message from rank 0: {e}"),
        })
    })
}

/// The parts of a run every rank derives from its spec.
struct RunSetup<B: AutodiffBackend> {
    spec: RunSpec,
    opts: LearnerOptions,
    template: Template,
    tok: TextTokenizer,
    trainer: Trainer<B>,
}

fn setup<B: AutodiffBackend>(
    run: u64,
    spec_json: &str,
    resume: Option<&(u64, PathBuf)>,
    device: &B::Device,
) -> Result<RunSetup<B>, ServiceError> {
    let bad = |message: String| ServiceError::Run { run, message };
    let spec = RunSpec::from_json(spec_json).map_err(|e| bad(format!("its spec does not parse: {e}")))?;
    // The spec was checked whole (learner options included) when it was parsed. SFT has no
    // GRPO loss: its table holds the optimizer's keys only, and no KL term, so no reference.
    // GRPO scores its rollouts at the temperature the actors sampled them with.
    let temperature = match &spec.algorithm {
        Algorithm::Grpo(g) => g.sampling.temperature,
        Algorithm::Sft(_) => 1.0,
    };
    let (opts, template) = match &spec.algorithm {
        Algorithm::Grpo(g) => (g.learner.clone(), g.sampling.template),
        Algorithm::Sft(s) => (
            LearnerOptions {
                optim: s.learner.clone(),
                grpo: crate::grpo::GrpoConfig { beta: 0.0, ..Default::default() },
                ..LearnerOptions::default()
            },
            s.template,
        ),
    };
    let base = &spec.base_model;
    let tok = TextTokenizer::from_dir(base)?;
    let config = r1_model::ModelConfig::from_dir(base)?;
    let from = resume.map_or(base.as_path(), |(_, p)| p.as_path());
    let model: CausalLm<B> = match (r1_model::weights::load_with_config(from, config.clone(), device), resume) {
        (Ok(m), _) => m,
        // Checkpoints carry checksums and are verified first; this is one written before.
        (Err(e), Some((step, path))) => {
            return Err(bad(format!(
                "cannot load the checkpoint of step {step} at {}: {e}; it is damaged: remove that folder and start again, the learner then resumes from the checkpoint before it",
                path.display()
            )));
        }
        (Err(e), None) => return Err(e.into()),
    };
    let sft = matches!(spec.algorithm, Algorithm::Sft(_));
    let grpo = opts.grpo.clone();
    let reference = if !sft && grpo.beta > 0.0 {
        Some(r1_model::weights::load_with_config::<B::InnerBackend>(base, config, device)?)
    } else {
        None
    };
    // The schedule counts optimizer steps: `steps_per_batch` of them per learner step.
    let optimizer_steps = spec.schedule.total_steps * u64::from(opts.steps_per_batch());
    let trainer = Trainer::new(
        model,
        reference,
        grpo,
        optim_config(&opts.optim, optimizer_steps),
        opts.optim.micro_batch,
        device.clone(),
    )
    .map_err(|e| bad(e.to_string()))?
    .with_steps_per_batch(opts.minibatches_per_batch as usize, opts.epochs_per_batch as usize)
    .with_sampling_temperature(temperature);
    let mut s = RunSetup { spec, opts, template, tok, trainer };
    if let Some((step, path)) = resume {
        s.trainer.load_optimizer(&Checkpoint { step: *step, path: path.clone() })?;
    }
    Ok(s)
}

/// What a rank did with one leased batch.
struct Trained {
    /// `None` when no group of the batch could be trained.
    report: Option<StepReport>,
    /// Groups left out of the batch, and why; rank 0 reports them to the coordinator.
    failed: Vec<(u64, String)>,
}

/// Trains one leased batch on this rank's shard; every rank calls it with the same lease.
/// A group that cannot be trained (no example, a prompt that does not render, samples and
/// rewards that do not match, a token outside the vocabulary, ...) is left out and
/// returned in `failed`, never the end of the learner: every rank leaves out the same
/// groups, since the checks are deterministic.
fn train<B: AutodiffBackend>(
    s: &mut RunSetup<B>,
    lease: &pb::BatchLease,
    collective: &mut dyn Collective,
) -> Result<Trained, ServiceError> {
    let mut failed = Vec::new();
    match &s.spec.algorithm {
        Algorithm::Grpo(_) => {
            let grpo = s.opts.grpo.clone();
            let mut rollouts = Vec::new();
            let mut off_policy = false;
            for g in &lease.groups {
                match grpo_group(s, &grpo, g) {
                    Ok(group) => {
                        rollouts.extend(group);
                        // The learner holds the weights of `lease.step`; versions are named by
                        // the step that made them, so a group sampled at any other version is
                        // off-policy.
                        off_policy |= g.policy_version != lease.step;
                    }
                    Err(message) => failed.push((g.group_id, message)),
                }
            }
            let report =
                if rollouts.is_empty() { None } else { Some(s.trainer.grpo_step(&rollouts, off_policy, collective)?) };
            Ok(Trained { report, failed })
        }
        Algorithm::Sft(_) => {
            let mut pairs = Vec::with_capacity(lease.groups.len());
            for g in &lease.groups {
                match sft_pair(s, g) {
                    Ok(pair) => pairs.push(pair),
                    Err(message) => failed.push((g.group_id, message)),
                }
            }
            let report = if pairs.is_empty() { None } else { Some(s.trainer.sft_step(&pairs, collective)?) };
            Ok(Trained { report, failed })
        }
    }
}

/// The rollouts of one scored group, or why it cannot be trained.
fn grpo_group<B: AutodiffBackend>(
    s: &RunSetup<B>,
    grpo: &crate::grpo::GrpoConfig,
    g: &pb::Group,
) -> Result<Vec<Rollout>, String> {
    let example = g.example.as_ref().ok_or("the group has no example")?;
    let prompt = prompt_tokens(&s.tok, s.template, example)?;
    if g.rewards.len() != g.samples.len() || g.samples.is_empty() {
        return Err(format!(
            "has {} samples and {} rewards; a scored group has one reward per sample",
            g.samples.len(),
            g.rewards.len()
        ));
    }
    let adv = group_advantages(&g.rewards, g.rewards.len(), grpo).map_err(|e| e.to_string())?;
    let rollouts: Vec<Rollout> = g
        .samples
        .iter()
        .zip(adv.advantages)
        .map(|(sample, a)| Rollout {
            prompt: prompt.clone(),
            completion: sample.token_ids.clone(),
            behaviour_logp: sample.logprobs.clone(),
            advantage: a,
        })
        .collect();
    for (i, r) in rollouts.iter().enumerate() {
        s.trainer.check_rollout(r).map_err(|problem| format!("sample {i} {problem}"))?;
    }
    Ok(rollouts)
}

/// The (prompt, answer) tokens of one SFT example, or why it cannot be trained.
fn sft_pair<B: AutodiffBackend>(s: &RunSetup<B>, g: &pb::Group) -> Result<(Vec<u32>, Vec<u32>), String> {
    let example = g.example.as_ref().ok_or("the group has no example")?;
    let prompt = prompt_tokens(&s.tok, s.template, example)?;
    let answer = example.answer.as_deref().ok_or_else(|| format!("row {} has no answer to train on", example.row))?;
    let mut ids = s.tok.encode(answer).map_err(|e| format!("row {}: {e}", example.row))?;
    ids.extend(s.tok.eos_token_id());
    s.trainer.check_pair(&prompt, &ids)?;
    Ok((prompt, ids))
}

/// The tokens the actor sampled after for `example`: the same rendering, the same tokenizer.
fn prompt_tokens(tok: &TextTokenizer, template: Template, example: &pb::Example) -> Result<Vec<u32>, String> {
    let prompt = r1_proto::example_prompt(example)?;
    tok.prompt_tokens(template, &prompt).map_err(|e| format!("row {}: {e}", example.row))
}

/// Runs a follower rank (rank > 0) until rank 0 says stop.
pub fn follow<B: AutodiffBackend>(
    run: u64,
    collective: &mut dyn Collective,
    device: B::Device,
) -> Result<LearnerReport, ServiceError> {
    let mut state: Option<RunSetup<B>> = None;
    let mut report = LearnerReport::default();
    loop {
        match recv(collective)? {
            Msg::Start { spec_json, resume } => {
                report.resumed_from = resume.as_ref().map_or(0, |r| r.0);
                report.step = report.resumed_from;
                state = Some(setup(run, &spec_json, resume.as_ref(), &device)?);
            }
            Msg::Idle => {}
            Msg::Batch(bytes) => {
                let s = state
                    .as_mut()
                    .ok_or_else(|| ServiceError::Run { run, message: "rank 0 sent a batch before the run".into() })?;
                let lease = pb::BatchLease::decode(bytes.as_slice())
                    .map_err(|e| ServiceError::Run { run, message: format!("bad batch from rank 0: {e}") })?;
                if train(s, &lease, collective)?.report.is_some() {
                    report.steps += 1;
                    report.step = lease.step + 1;
                }
            }
            Msg::Stop => return Ok(report),
        }
    }
}

/// Rank 0: leases, trains, submits, publishes and checkpoints until the run ends or `stop`
/// is set (then it checkpoints first). Call from a thread outside the runtime `rt`.
pub fn lead<B: AutodiffBackend>(
    settings: &LearnerSettings,
    collective: &mut dyn Collective,
    publisher: Option<&Publisher>,
    rt: &Handle,
    device: B::Device,
    stop: Arc<AtomicBool>,
) -> Result<LearnerReport, ServiceError> {
    let run = settings.run_id;
    let channel =
        rt.block_on(client::connect(&settings.coordinator)).map_err(|e| ServiceError::Connect(e.to_string()))?;
    let max = settings.coordinator.max_message_bytes;
    let leader = Leader {
        settings,
        rt,
        work: client::work_client(channel.clone(), max),
        runs: client::run_client(channel, max),
    };
    let status = leader.status()?;
    let resume = leader.resume_point(status.step)?;
    // After a rollback the run's step is the checkpoint's.
    let at = resume.as_ref().map_or(0, |r| r.0);
    let start = Msg::Start { spec_json: status.spec_json.clone(), resume: resume.clone() };
    send(collective, &start)?;
    let mut s: RunSetup<B> = setup(run, &status.spec_json, resume.as_ref(), &device)?;
    let mut report = LearnerReport { resumed_from: at, step: at, ..Default::default() };
    let total = s.spec.schedule.total_steps;
    let every = s.spec.schedule.checkpoint_every;
    let mut last_checkpoint = resume.as_ref().map(|r| r.0);
    if let Some(p) = publisher {
        publish(p, s.trainer.model(), at)?;
    }
    let mut last_submit = Instant::now();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            tracing::info!(run, step = report.step, "stopping: writing a checkpoint first");
            break Ok(());
        }
        let lease = match leader.lease()? {
            Some(l) if !l.groups.is_empty() => l,
            Some(_) => {
                send(collective, &Msg::Idle)?;
                std::thread::sleep(settings.poll);
                continue;
            }
            None => {
                // The run is not running: finished, cancelled or failed.
                break Ok(());
            }
        };
        send(collective, &Msg::Batch(lease.encode_to_vec()))?;
        let span =
            tracing::info_span!("train", run, step = lease.step, lease = lease.lease_id, groups = lease.groups.len());
        let _enter = span.enter();
        let renew = client::keep_alive(rt, leader.work.clone(), run, lease.lease_id, lease.deadline_ms);
        let started = Instant::now();
        let trained = train(&mut s, &lease, collective);
        renew.stop();
        let Trained { report: step_report, failed } = trained?;
        for (group, reason) in &failed {
            tracing::warn!(run, group, %reason, "leaving the group out of the batch");
            leader.fail_group(&lease, *group, reason)?;
        }
        report.failed_groups += failed.len() as u64;
        let Some(step_report) = step_report else {
            // Nothing in the batch could be trained: its groups failed, and the next lease
            // brings a new batch for the same step.
            continue;
        };
        let mut lease = lease;
        lease.groups.retain(|g| !failed.iter().any(|(id, _)| *id == g.group_id));
        let compute = started.elapsed().as_secs_f64();
        let step = lease.step + 1;
        let publish_due = publish_due(step, &s.opts, &s.spec.schedule);
        let mut metrics = step_metrics(&lease, &step_report, compute, last_submit.elapsed().as_secs_f64());
        // Submit first: a step the coordinator refuses must not reach actors.
        let outcome = leader.submit(&lease, &metrics, !publish_due)?;
        if outcome != pb::SubmitOutcome::Accepted {
            break Err(ServiceError::Run {
                run,
                message: format!(
                    "step {step} was not accepted ({outcome:?}): the batch lease expired and went to another learner; restart the learner to resume from its last checkpoint"
                ),
            });
        }
        last_submit = Instant::now();
        report.steps += 1;
        report.step = step;
        if let Some(p) = publisher.filter(|_| publish_due) {
            let t = Instant::now();
            publish(p, s.trainer.model(), step)?;
            metrics.insert("weight_sync_seconds".into(), json!(t.elapsed().as_secs_f64()));
        }
        tracing::info!(run, step, metrics = %serde_json::Value::Object(metrics), "step done");
        if (every > 0 && step % every == 0) || step >= total {
            leader.checkpoint(&s, step)?;
            last_checkpoint = Some(step);
            report.checkpoints += 1;
        }
    };
    // Stop the followers whatever happened; a broken ring cannot be told anything.
    let _ = send(collective, &Msg::Stop);
    result?;
    if last_checkpoint != Some(report.step) && report.step > 0 {
        leader.checkpoint(&s, report.step)?;
        report.checkpoints += 1;
    }
    Ok(report)
}

fn publish<B: AutodiffBackend>(p: &Publisher, model: &CausalLm<B>, version: u64) -> Result<(), ServiceError> {
    use burn::module::AutodiffModule;
    let bytes = r1_model::weights::to_safetensors_bytes(&model.valid(), r1_model::weights::SaveDtype::F32)?;
    p.publish(version, bytes, "float32");
    Ok(())
}

/// The metrics of one step, as `metrics.jsonl` shows them.
/// Whether the weights after `step` go to the actors: every `publish_every` steps, and always
/// at the last step, at checkpoints (a learner that resumes serves its checkpoint's weights
/// under that step's version) and at evaluations (they sample with that step's weights).
pub fn publish_due(step: u64, opts: &LearnerOptions, schedule: &r1_spec::Schedule) -> bool {
    let every = |n: u64| n > 0 && step.is_multiple_of(n);
    every(opts.optim.publish_every)
        || step >= schedule.total_steps
        || every(schedule.checkpoint_every)
        || every(schedule.eval_every)
}

fn step_metrics(
    lease: &pb::BatchLease,
    r: &StepReport,
    compute_s: f64,
    wall_s: f64,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let samples: Vec<&pb::Sample> = lease.groups.iter().flat_map(|g| &g.samples).collect();
    let rewards: Vec<f64> = lease.groups.iter().flat_map(|g| g.rewards.iter().copied()).collect();
    let n = rewards.len().max(1) as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let null = serde_json::Value::Null;
    if rewards.is_empty() {
        // SFT: no samples, no rewards; the keys stay so every line has the same shape.
        for k in ["reward_mean", "reward_std", "accuracy", "response_len_mean"] {
            m.insert(k.into(), null.clone());
        }
    } else {
        let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        m.insert("reward_mean".into(), json!(mean));
        m.insert("reward_std".into(), json!(std));
        // Per component, and accuracy/format rate as the share of samples a component passed.
        let mut comps: std::collections::BTreeMap<String, (f64, f64, usize)> = Default::default();
        for g in &lease.groups {
            for c in &g.components {
                for (name, v) in &c.components {
                    let e = comps.entry(name.clone()).or_default();
                    e.0 += v;
                    e.1 += (*v > 0.0) as u8 as f64;
                    e.2 += 1;
                }
            }
        }
        for (name, (sum, _, count)) in &comps {
            m.insert(format!("reward/{name}"), json!(sum / *count as f64));
        }
        let rate = |name: &str| comps.get(name).map(|(_, pass, count)| pass / *count as f64);
        let accuracy = rate("accuracy").unwrap_or_else(|| rewards.iter().filter(|&&r| r > 0.0).count() as f64 / n);
        m.insert("accuracy".into(), json!(accuracy));
        if let Some(f) = rate("format") {
            m.insert("format_rate".into(), json!(f));
        }
        let lens: Vec<usize> = samples.iter().map(|s| s.token_ids.len()).collect();
        m.insert("response_len_mean".into(), json!(lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64));
        m.insert("response_len_max".into(), json!(lens.iter().max().copied().unwrap_or(0)));
        m.insert(
            "truncated_frac".into(),
            json!(samples.iter().filter(|s| s.truncated).count() as f64 / samples.len().max(1) as f64),
        );
        // The actors' generation speed: their sampled tokens over the time they took.
        let gen_s: f64 = samples.iter().map(|s| s.generation_seconds as f64).sum();
        if gen_s > 0.0 {
            m.insert("actor_tokens_per_s".into(), json!(lens.iter().sum::<usize>() as f64 / gen_s));
        }
        let lag: u64 = lease.groups.iter().map(|g| lease.step.saturating_sub(g.policy_version)).sum();
        m.insert("staleness_mean".into(), json!(lag as f64 / lease.groups.len().max(1) as f64));
    }
    m.insert("kl".into(), json!(r.kl));
    m.insert("entropy".into(), json!(r.entropy));
    m.insert("clip_frac".into(), json!(r.clip_frac));
    m.insert("loss".into(), json!(r.loss));
    m.insert("grad_norm".into(), json!(r.grad_norm));
    m.insert("lr".into(), json!(r.lr));
    m.insert("tokens".into(), json!(r.tokens));
    m.insert("groups".into(), json!(lease.groups.len()));
    // Trained tokens per second of the whole loop since the previous step (sampling,
    // scoring and training together), and of the learner's compute alone.
    m.insert("tokens_per_s".into(), json!(r.tokens as f64 / wall_s.max(1e-9)));
    m.insert("learner_tokens_per_s".into(), json!(r.tokens as f64 / compute_s.max(1e-9)));
    m.insert("step_seconds".into(), json!(compute_s));
    m
}

struct Leader<'a> {
    settings: &'a LearnerSettings,
    rt: &'a Handle,
    work: WorkServiceClient<AuthChannel>,
    runs: RunServiceClient<AuthChannel>,
}

impl Leader<'_> {
    fn status(&self) -> Result<pb::RunStatus, ServiceError> {
        self.rt
            .block_on(client::get_run(&self.runs, &RetryPolicy::idempotent(), self.settings.run_id))
            .map_err(rpc("Get"))
    }

    /// The checkpoint recorded for step `step`, or none at step 0. Past the newest recorded
    /// checkpoint, rolls the run back to it (or to step 0) first.
    fn resume_point(&self, step: u64) -> Result<Option<(u64, PathBuf)>, ServiceError> {
        let run = self.settings.run_id;
        let work = self.work.clone();
        let list = self
            .rt
            .block_on(client::retry("ListCheckpoints", &RetryPolicy::idempotent(), || {
                let mut work = work.clone();
                async move { work.list_checkpoints(pb::ListCheckpointsRequest { run_id: run }).await }
            }))
            .map_err(rpc("ListCheckpoints"))?
            .into_inner()
            .checkpoints;
        // The newest intact checkpoint at or before the coordinator's step; past it, the
        // weights of the steps in between are lost, so the run goes back to it. A damaged one
        // (a file whose SHA-256 is not the one it was saved with) is skipped for the one
        // before it, and removed below with every folder past the resume step.
        let mut candidates: Vec<&pb::Checkpoint> = list.iter().filter(|c| c.step <= step && c.step > 0).collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.step));
        let mut chosen = None;
        for c in candidates {
            let path = PathBuf::from(&c.path);
            // Check the weights exist before undoing anything for them.
            if !path.join("config.json").exists() {
                return Err(ServiceError::Run {
                    run,
                    message: format!(
                        "checkpoint of step {} is recorded at {} but that folder has no model; is the checkpoint storage mounted?",
                        c.step,
                        path.display()
                    ),
                });
            }
            match (Checkpoint { step: c.step, path: path.clone() }).verify() {
                Ok(_) => {
                    chosen = Some((c.step, path));
                    break;
                }
                Err(e) => {
                    tracing::warn!(run, step = c.step, "{e}");
                    eprintln!("learner: {e}; falling back to the checkpoint before it");
                }
            }
        }
        let to = chosen.as_ref().map_or(0, |c| c.0);
        let path = chosen.map(|c| c.1);
        if to < step {
            self.rollback(step, to)?;
        }
        let step = to;
        // Folders past the resume step were written by a learner that died before the
        // coordinator counted them; they would collide with this run's next saves.
        remove_unrecorded(&self.settings.checkpoints, step)?;
        let Some(path) = path else {
            return Ok(None);
        };
        tracing::info!(run, step, path = %path.display(), "resuming from checkpoint");
        Ok(Some((step, path)))
    }

    /// Rolls the run back from step `from` to its checkpoint of step `to`, with one
    /// idempotency key for every retry of this call.
    fn rollback(&self, from: u64, to: u64) -> Result<(), ServiceError> {
        let run = self.settings.run_id;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let req = pb::RollbackRequest {
            run_id: run,
            step: to,
            idempotency_key: format!("rollback-{}-{from}-to-{to}-{nanos}", self.settings.worker),
        };
        tracing::warn!(run, from, to, "the coordinator is past the newest checkpoint: rolling the run back to it");
        let work = self.work.clone();
        let done = self
            .rt
            .block_on(client::retry("Rollback", &RetryPolicy::idempotent(), || {
                let (mut work, req) = (work.clone(), req.clone());
                async move { work.rollback(req).await }
            }))
            .map_err(rpc("Rollback"))?
            .into_inner();
        tracing::info!(
            run,
            from = done.from_step,
            step = to,
            removed = done.groups_removed,
            restored = done.groups_restored,
            "rolled back to checkpoint"
        );
        Ok(())
    }

    /// The next batch; `Some` with no groups when none is ready, `None` when the run is over.
    fn lease(&self) -> Result<Option<pb::BatchLease>, ServiceError> {
        let req = pb::LeaseBatchRequest { run_id: self.settings.run_id, worker: self.settings.worker.clone() };
        let work = self.work.clone();
        let got = self.rt.block_on(client::retry("LeaseBatch", &RetryPolicy::default(), || {
            let (mut work, req) = (work.clone(), req.clone());
            async move { work.lease_batch(req).await }
        }));
        match got {
            Ok(l) => Ok(Some(l.into_inner())),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                let state = pb::RunState::try_from(self.status()?.state).unwrap_or(pb::RunState::Unspecified);
                if matches!(state, pb::RunState::Running | pb::RunState::Pending) {
                    Ok(Some(pb::BatchLease::default()))
                } else {
                    Ok(None)
                }
            }
            Err(s) => Err(rpc("LeaseBatch")(s)),
        }
    }

    /// Reports a group of `lease` that cannot be trained: the coordinator fails it and takes
    /// it out of the batch.
    fn fail_group(&self, lease: &pb::BatchLease, group: u64, reason: &str) -> Result<(), ServiceError> {
        let req = pb::FailGroupRequest {
            run_id: self.settings.run_id,
            idempotency_key: format!("fail-train-{}-{group}", lease.lease_id),
            lease_id: lease.lease_id,
            group_id: group,
            reason: reason.into(),
        };
        let work = self.work.clone();
        self.rt
            .block_on(client::retry("FailGroup", &RetryPolicy::idempotent(), || {
                let (mut work, req) = (work.clone(), req.clone());
                async move { work.fail_group(req).await }
            }))
            .map_err(rpc("FailGroup"))?;
        Ok(())
    }

    /// Submits the step; `unpublished` when its weights will not be published.
    fn submit(
        &self,
        lease: &pb::BatchLease,
        metrics: &serde_json::Map<String, serde_json::Value>,
        unpublished: bool,
    ) -> Result<pb::SubmitOutcome, ServiceError> {
        let req = pb::SubmitStepRequest {
            run_id: self.settings.run_id,
            idempotency_key: format!("step-{}-lease-{}", lease.step, lease.lease_id),
            lease_id: lease.lease_id,
            step: lease.step,
            metrics_json: serde_json::Value::Object(metrics.clone()).to_string(),
            unpublished,
        };
        let work = self.work.clone();
        Ok(self
            .rt
            .block_on(client::retry("SubmitStep", &RetryPolicy::idempotent(), || {
                let (mut work, req) = (work.clone(), req.clone());
                async move { work.submit_step(req).await }
            }))
            .map_err(rpc("SubmitStep"))?
            .into_inner()
            .outcome())
    }

    /// Writes `step-N` (an HF model folder plus optimizer and trainer state) and records it.
    fn checkpoint<B: AutodiffBackend>(&self, s: &RunSetup<B>, step: u64) -> Result<(), ServiceError> {
        use burn::module::AutodiffModule;
        let dir = &self.settings.checkpoints;
        std::fs::create_dir_all(dir).map_err(|source| checkpoint::CheckpointError::Io { path: dir.clone(), source })?;
        let started = Instant::now();
        let model = s.trainer.model();
        let base = s.spec.base_model.clone();
        let path = checkpoint::save(
            dir,
            step,
            |d: &Path| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                r1_model::weights::save(&model.valid(), d, &Default::default())?;
                copy_tokenizer(&base, d)?;
                Ok(())
            },
            s.trainer.optim(),
            model,
            &TrainerState { step, ..Default::default() },
            &s.spec,
        )?;
        let req = pb::RecordCheckpointRequest {
            run_id: self.settings.run_id,
            step,
            path: path.canonicalize().unwrap_or(path.clone()).display().to_string(),
        };
        let work = self.work.clone();
        self.rt
            .block_on(client::retry("RecordCheckpoint", &RetryPolicy::idempotent(), || {
                let (mut work, req) = (work.clone(), req.clone());
                async move { work.record_checkpoint(req).await }
            }))
            .map_err(rpc("RecordCheckpoint"))?;
        tracing::info!(step, path = %path.display(), seconds = started.elapsed().as_secs_f64(), "checkpoint written");
        Ok(())
    }
}

/// The tokenizer files of the base model, so a checkpoint is a complete model folder.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
];

fn copy_tokenizer(base: &Path, dir: &Path) -> std::io::Result<()> {
    for f in TOKENIZER_FILES {
        let src = base.join(f);
        if src.exists() {
            std::fs::copy(&src, dir.join(f))?;
        }
    }
    Ok(())
}

/// Removes `step-N` folders with N > `step`.
fn remove_unrecorded(dir: &Path, step: u64) -> Result<(), ServiceError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name();
        let n = name.to_str().and_then(|n| n.strip_prefix("step-")).and_then(|n| n.parse::<u64>().ok());
        if n.is_some_and(|n| n > step) {
            tracing::warn!(path = %e.path().display(), "removing a checkpoint the coordinator never recorded");
            std::fs::remove_dir_all(e.path())
                .map_err(|source| checkpoint::CheckpointError::Io { path: e.path(), source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use r1_spec::Schedule;

    #[test]
    fn publishes_on_its_cadence_and_wherever_a_version_is_needed() {
        let schedule = Schedule { total_steps: 10, checkpoint_every: 4, eval_every: 3 };
        let cases: [(u64, &[u64]); 4] = [
            (1, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
            // Own cadence 5, checkpoints at 4 and 8, evals at 3, 6 and 9, the end at 10.
            (5, &[3, 4, 5, 6, 8, 9, 10]),
            (100, &[3, 4, 6, 8, 9, 10]),
            (2, &[2, 3, 4, 6, 8, 9, 10]),
        ];
        for (publish_every, want) in cases {
            let mut opts = LearnerOptions::default();
            opts.optim.publish_every = publish_every;
            let got: Vec<u64> = (1..=10).filter(|&s| publish_due(s, &opts, &schedule)).collect();
            assert_eq!(got, want, "publish_every {publish_every}");
        }
        let none = Schedule { total_steps: 4, checkpoint_every: 0, eval_every: 0 };
        let mut opts = LearnerOptions::default();
        opts.optim.publish_every = 3;
        let got: Vec<u64> = (1..=4).filter(|&s| publish_due(s, &opts, &none)).collect();
        assert_eq!(got, [3, 4], "no checkpoint or eval cadence");
    }
}
