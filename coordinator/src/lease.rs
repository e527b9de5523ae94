//! The pull protocol: actors, reward workers and learners lease work from the store and
//! submit results, for one GRPO run at a time ([`Scheduler`]).
//!
//! A prompt group moves through stages, each taken under a lease with a deadline:
//! `generate` (an actor samples G completions) → `score` (a reward worker scores them) →
//! `train` (a learner takes `prompts_per_step` groups as one batch) → `done`, or `dropped`,
//! or `failed`.
//!
//! - **Expiry.** Work whose lease deadline has passed is available again; handing it out
//!   counts `leases_expired` once per group. For `generate` and `score`, the first valid
//!   submission for a group wins whoever holds the lease now; later ones are answered
//!   [`Outcome::AlreadyDone`] and counted as `late_submissions`. A learner step is accepted
//!   only while its batch is still its own: once any group was handed to another learner the
//!   answer is [`Outcome::LeaseLost`] and the learner must discard that step.
//! - **Renewal.** [`Scheduler::renew`] extends a lease (a heartbeat for long generations);
//!   an expired lease revives while its work was not handed to anyone else. A learner that
//!   asks for a batch while its own is live gets that batch again (a restart under the same
//!   name resumes at once instead of waiting for the deadline).
//! - **Idempotency.** Every submission carries a key. The first outcome is stored with a
//!   digest of the submission in the same transaction as its effects; the same key and
//!   submission again returns that outcome and changes nothing but `replays`; the same key
//!   with a different submission is an error.
//! - **Window.** New prompts are drawn from the dataset cursor only while fewer than
//!   `prompts_per_step × (max_policy_lag + 1)` groups are in flight (and no more than the
//!   remaining steps can train), so with `max_policy_lag = 0` actors sample exactly one
//!   batch per policy version.
//! - **Staleness.** A group made by policy v while the learner holds version c is dropped
//!   (`dropped_stale`) when c − v > `max_policy_lag`, on submission or when a batch is formed.
//! - **Dynamic sampling** (DAPO): a scored group whose rewards are all equal is dropped
//!   (`dropped_equal`); its slot in the window frees, so more prompts are drawn to fill the
//!   batch.
//! - **End.** The run completes after `total_steps` steps, or when the dataset is exhausted
//!   and nothing is in flight (the last batch may then be smaller).
//!
//! - **Poison groups.** A group whose work keeps failing must not take down every worker
//!   that leases it in turn. Each failed attempt counts in the group's `attempts`: a
//!   generation or scoring lease that expired (counted when the work is handed out again),
//!   or a worker's [`Scheduler::fail_group`] report (the group is handed out again at once,
//!   answered [`Outcome::Retry`]). At `leases.max_attempts` the group moves to the `failed`
//!   stage with its reason (`groups_failed`), and its slot in the window frees. A learner's
//!   report fails the group at once (a batch is deterministic: another try fails the same
//!   way) and takes it out of the batch, which the learner then trains without it. A failed
//!   evaluation group counts as wrong (0 of G) in its evaluation. Learner batch leases that
//!   expire are not counted against their groups: a learner dies for reasons of its own.
//! - **Rollback** ([`crate::rollback`]): work a rollback undid is lost work: samples or
//!   scores for a group it deleted, or samples of a policy version it discarded, are
//!   answered [`Outcome::AlreadyDone`], a step of a batch it took back [`Outcome::LeaseLost`]
//!   (even when the step is past the run's), each counted as a late submission.
//!
//! Every call is one transaction, so `prompts_drawn = groups_trained + dropped_stale +
//! dropped_equal + groups_failed + groups in flight` holds at every commit.
//!
//! **Evaluation.** At every policy version that is a multiple of `schedule.eval_every`
//! (version 0 included, the last step's too) each example of the eval split becomes an eval
//! group with its own `eval_version`. Actors get eval groups before training prompts; their
//! samples must come from exactly that version (others are answered `DroppedStale` and the
//! group is handed out again); the learner does not step past a version until its eval
//! groups are sampled; scored eval groups are done at once and, when all are in, the
//! evaluation's pass@1 is stored ([`Outcome::Evaluated`]). Eval groups touch no training
//! counter and the run completes only after its last evaluation.
//!
//! **SFT** runs skip generation and scoring: a learner's batch lease draws `batch_size`
//! examples straight from the cursor (groups with no samples), with the same expiry,
//! idempotency and end-of-run rules.
//!
//! Limits: one learner batch is leased at a time (the learner fleet's rank 0 takes it and
//! shards it); evaluation samples G per example with the training sampler settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::{Cursor, Dataset, Example};
use crate::rollback;
use crate::spec::Algorithm;
use crate::store::{self, Millis, Run, RunId, RunState, Store, StoreError, bump};

/// How long each kind of lease lasts before its work is handed out again, and how many
/// times a group's work may fail before the group fails for good. Leases are short, because
/// this is how long the work of a worker that died waits: actors and learners renew theirs
/// every third of it while they work (`r1_proto::client::keep_alive`), and a scoring job is
/// bounded by the sandbox's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseTtl {
    pub generate_ms: Millis,
    pub score_ms: Millis,
    pub train_ms: Millis,
    /// Failed attempts (a generation or scoring lease that expired, a `FailGroup` from an
    /// actor or reward worker) after which a group moves to the `failed` stage.
    pub max_attempts: u32,
}

impl Default for LeaseTtl {
    fn default() -> Self {
        LeaseTtl { generate_ms: 2 * 60_000, score_ms: 2 * 60_000, train_ms: 5 * 60_000, max_attempts: 3 }
    }
}

/// One completion an actor sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Log-probability of each token under the policy that sampled it (π_old).
    pub logprobs: Vec<f32>,
    /// Stopped by the length limit rather than an end-of-sequence token.
    pub truncated: bool,
    /// The sample's share of its actor's generation time (0 when the actor did not say).
    #[serde(default)]
    pub generation_seconds: f32,
}

/// Prompt groups leased to an actor.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptLease {
    pub lease_id: i64,
    pub deadline_ms: Millis,
    /// The learner's current version: the weights the actor should sample with.
    pub policy_version: u64,
    /// Samples to draw per prompt (G).
    pub group_size: u32,
    pub groups: Vec<(i64, Example)>,
}

/// An actor's samples for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplesSubmission {
    pub group_id: i64,
    /// The policy version that sampled every completion of the group.
    pub policy_version: u64,
    pub samples: Vec<Sample>,
}

/// A group to score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringJob {
    pub group_id: i64,
    pub example: Example,
    pub samples: Vec<Sample>,
}

/// Groups leased to a reward worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringLease {
    pub lease_id: i64,
    pub deadline_ms: Millis,
    pub jobs: Vec<ScoringJob>,
}

/// A reward worker's scores for one group, one per sample in sample order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresSubmission {
    pub group_id: i64,
    pub rewards: Vec<f64>,
    /// Each sample's reward components by name; empty, or one map per sample.
    #[serde(default)]
    pub components: Vec<BTreeMap<String, f64>>,
}

/// A scored group in a learner batch.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainGroup {
    pub group_id: i64,
    pub example: Example,
    pub policy_version: u64,
    pub samples: Vec<Sample>,
    pub rewards: Vec<f64>,
    /// Each sample's reward components by name, as the reward worker sent them (may be empty).
    pub components: Vec<BTreeMap<String, f64>>,
}

/// One learner step's batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLease {
    pub lease_id: i64,
    pub deadline_ms: Millis,
    /// The step this batch makes: steps completed so far.
    pub step: u64,
    /// The newest published policy version: `step`, unless the learner left recent steps
    /// unpublished (`publish_every` > 1). A group sampled at `step` is on-policy.
    pub policy_version: u64,
    pub groups: Vec<TrainGroup>,
}

/// A learner's report that it trained a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSubmission {
    pub lease_id: i64,
    pub step: u64,
    /// Step metrics (reward mean, KL, ...), stored as given.
    pub metrics: serde_json::Value,
    /// The learner does not publish this step's weights: the policy version actors sample
    /// with stays where it is.
    #[serde(default)]
    pub unpublished: bool,
}

/// What became of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Accepted,
    /// The group lagged the learner by more than `max_policy_lag`; a new prompt replaces it.
    DroppedStale,
    /// Dynamic sampling: all rewards of the group were equal; a new prompt replaces it.
    DroppedEqual,
    /// Another worker already finished this work; nothing was counted.
    AlreadyDone,
    /// The batch was handed to another learner after this lease expired; discard the step.
    LeaseLost,
    /// The scores of an evaluation group were recorded.
    Evaluated,
    /// A reported failure was counted; the group will be handed out again.
    Retry,
    /// The group failed for good (stage `failed`); a new prompt replaces it.
    Failed,
}

/// A worker's report that it could not do the work of one group it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureReport {
    pub lease_id: i64,
    pub group_id: i64,
    /// Why (kept with the group, at most [`MAX_REASON`] bytes).
    pub reason: String,
}

/// Longest failure reason kept with a group.
pub const MAX_REASON: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {id} is {state}; work is handed out only for running runs")]
    NotRunning { id: RunId, state: RunState },
    #[error("run {id} is an SFT run: it has no {role} work, only learner batches")]
    WrongRole { id: RunId, role: &'static str },
    #[error("group {group} is not part of run {id}; submit only groups you leased")]
    UnknownGroup { id: RunId, group: i64 },
    #[error("lease {lease} is not a lease of run {id} of the right kind; use the lease id you were given")]
    UnknownLease { id: RunId, lease: i64 },
    #[error("submission for group {group} {problem}")]
    BadSubmission { group: i64, problem: String },
    #[error("step {step} submitted while run {id} is at step {current}; submit the step of the batch you leased")]
    FutureStep { id: RunId, step: u64, current: u64 },
    #[error("idempotency key `{key}` was already used for a different submission; use a fresh key per submission")]
    KeyReused { key: String },
}

impl From<rusqlite::Error> for LeaseError {
    fn from(e: rusqlite::Error) -> Self {
        LeaseError::Store(e.into())
    }
}

/// The settings of one run and its dataset: hands out and takes back its work.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub run: RunId,
    /// SFT: learners lease batches of examples straight from the cursor, nothing else.
    pub sft: bool,
    pub group_size: u32,
    pub prompts_per_step: u32,
    pub max_policy_lag: u64,
    pub dynamic_sampling: bool,
    pub total_steps: u64,
    /// Evaluate the policy at every version that is a multiple of this (0: never).
    pub eval_every: u64,
    pub ttl: LeaseTtl,
    dataset: Arc<Dataset>,
}

const GENERATE: &str = "generate";
const SCORE: &str = "score";
const TRAIN: &str = "train";

impl Scheduler {
    pub fn new(run: &Run, dataset: Arc<Dataset>, ttl: LeaseTtl) -> Result<Scheduler, LeaseError> {
        let (sft, group_size, prompts_per_step, max_policy_lag, dynamic_sampling) = match &run.spec.algorithm {
            Algorithm::Grpo(g) => (false, g.group_size, g.prompts_per_step, g.max_policy_lag, g.dynamic_sampling),
            // Examples never go stale: they carry no samples from an older policy.
            Algorithm::Sft(s) => (true, 1, s.batch_size, u64::MAX, false),
        };
        Ok(Scheduler {
            run: run.id,
            sft,
            group_size,
            prompts_per_step,
            max_policy_lag,
            dynamic_sampling,
            total_steps: run.spec.schedule.total_steps,
            eval_every: if sft { 0 } else { run.spec.schedule.eval_every },
            ttl,
            dataset,
        })
    }

    /// The run's dataset, as loaded when the run was submitted or resumed.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    fn grpo_only(&self, role: &'static str) -> Result<(), LeaseError> {
        match self.sft {
            true => Err(LeaseError::WrongRole { id: self.run, role }),
            false => Ok(()),
        }
    }

    /// Draws up to `n` new groups from the cursor into `stage`, saving the cursor and
    /// counting them; stops early when the dataset is exhausted.
    fn draw(
        &self,
        tx: &Transaction<'_>,
        progress: &mut store::Progress,
        n: u64,
        stage: &str,
        now: Millis,
    ) -> Result<Vec<i64>, LeaseError> {
        let mut ids = Vec::new();
        while (ids.len() as u64) < n {
            let Some((example, after)) = self.dataset.next(progress.cursor) else {
                break;
            };
            // An SFT example is "made" by the current policy, so it is never stale.
            let version = (stage == TRAIN).then_some(progress.policy_version as i64);
            tx.execute(
                "INSERT INTO groups (run_id, example, stage, policy_version, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![self.run, example as i64, stage, version, now],
            )?;
            ids.push(tx.last_insert_rowid());
            progress.cursor = after;
        }
        let Cursor { epoch, index } = progress.cursor;
        tx.execute(
            "UPDATE progress SET epoch = ?2, idx = ?3 WHERE run_id = ?1",
            params![self.run, epoch, index as i64],
        )?;
        bump(tx, self.run, "prompts_drawn", ids.len() as u64)?;
        Ok(ids)
    }

    /// Leases up to `max` prompt groups to actor `worker`: expired ones first, then new
    /// prompts from the cursor while the window allows. Empty when there is nothing to do.
    pub fn lease_prompts(
        &self,
        store: &mut Store,
        worker: &str,
        max: usize,
        now: Millis,
    ) -> Result<PromptLease, LeaseError> {
        self.grpo_only("generation")?;
        let tx = store.conn.transaction()?;
        self.check_running(&tx)?;
        let mut progress = store::read_progress(&tx, self.run)?;
        self.ensure_eval(&tx, progress.policy_version, now)?;
        let mut ids = self.available(&tx, GENERATE, max, now)?;
        let inflight = self.count(&tx, &[GENERATE, SCORE, TRAIN])? as u64;
        let pps = self.prompts_per_step as u64;
        let window = (pps * (self.max_policy_lag + 1)).min(self.total_steps.saturating_sub(progress.step) * pps);
        let room = window.saturating_sub(inflight).min((max - ids.len()) as u64);
        ids.extend(self.draw(&tx, &mut progress, room, GENERATE, now)?);
        let (lease_id, deadline_ms) = self.grant(&tx, GENERATE, worker, &ids, now + self.ttl.generate_ms, now)?;
        let groups = ids.iter().map(|&id| Ok((id, self.example(&tx, id)?))).collect::<Result<_, LeaseError>>()?;
        self.maybe_complete(&tx, now)?;
        tx.commit()?;
        Ok(PromptLease {
            lease_id,
            deadline_ms,
            policy_version: progress.policy_version,
            group_size: self.group_size,
            groups,
        })
    }

    /// Takes an actor's samples for one group.
    pub fn submit_samples(
        &self,
        store: &mut Store,
        key: &str,
        sub: &SamplesSubmission,
        now: Millis,
    ) -> Result<Outcome, LeaseError> {
        self.grpo_only("generation")?;
        self.idempotent(store, key, ("samples", sub), now, |tx| {
            let Some(stage) = self.stage_or_undone(tx, sub.group_id)? else {
                return Ok(Outcome::AlreadyDone);
            };
            let bad = |problem: String| LeaseError::BadSubmission { group: sub.group_id, problem };
            if sub.samples.len() != self.group_size as usize {
                return Err(bad(format!("has {} samples; send exactly G = {}", sub.samples.len(), self.group_size)));
            }
            if let Some((i, s)) = sub.samples.iter().enumerate().find(|(_, s)| s.token_ids.len() != s.logprobs.len()) {
                return Err(bad(format!(
                    "sample {i} has {} tokens but {} log-probs; send one log-prob per token",
                    s.token_ids.len(),
                    s.logprobs.len()
                )));
            }
            let current = store::read_progress(tx, self.run)?.policy_version;
            if sub.policy_version > current
                && rollback::version_undone(tx, self.run, sub.policy_version)?
            {
                // Sampled by weights a rollback discarded.
                bump(tx, self.run, "late_submissions", 1)?;
                return Ok(Outcome::AlreadyDone);
            }
            if sub.policy_version > current {
                return Err(bad(format!(
                    "claims policy version {} but the learner is at {current}; report the version that sampled",
                    sub.policy_version
                )));
            }
            if stage != GENERATE {
                bump(tx, self.run, "late_submissions", 1)?;
                return Ok(Outcome::AlreadyDone);
            }
            let eval = self.eval_version(tx, sub.group_id)?;
            if eval.is_some_and(|v| v != sub.policy_version) {
                // An evaluation needs samples of exactly its version: hand the group out again.
                tx.execute("UPDATE groups SET lease_id = NULL WHERE id = ?1", [sub.group_id])?;
                return Ok(Outcome::DroppedStale);
            }
            if eval.is_none() && current - sub.policy_version > self.max_policy_lag {
                self.drop_group(tx, sub.group_id, "stale", now)?;
                return Ok(Outcome::DroppedStale);
            }
            let samples = serde_json::to_string(&sub.samples).map_err(|e| bad(e.to_string()))?;
            tx.execute(
                "UPDATE groups SET stage = 'score', lease_id = NULL, policy_version = ?2, samples = ?3, updated_ms = ?4 WHERE id = ?1",
                params![sub.group_id, sub.policy_version as i64, samples, now],
            )?;
            if eval.is_none() {
                bump(tx, self.run, "groups_generated", 1)?;
            }
            Ok(Outcome::Accepted)
        })
    }

    /// Leases up to `max` generated groups to reward worker `worker`.
    pub fn lease_scoring(
        &self,
        store: &mut Store,
        worker: &str,
        max: usize,
        now: Millis,
    ) -> Result<ScoringLease, LeaseError> {
        self.grpo_only("scoring")?;
        let tx = store.conn.transaction()?;
        self.check_running(&tx)?;
        let ids = self.available(&tx, SCORE, max, now)?;
        let (lease_id, deadline_ms) = self.grant(&tx, SCORE, worker, &ids, now + self.ttl.score_ms, now)?;
        let jobs = ids
            .iter()
            .map(|&group_id| {
                let (_, samples, _) = self.payload(&tx, group_id)?;
                Ok(ScoringJob { group_id, example: self.example(&tx, group_id)?, samples })
            })
            .collect::<Result<_, LeaseError>>()?;
        tx.commit()?;
        Ok(ScoringLease { lease_id, deadline_ms, jobs })
    }

    /// Takes a reward worker's scores for one group.
    pub fn submit_scores(
        &self,
        store: &mut Store,
        key: &str,
        sub: &ScoresSubmission,
        now: Millis,
    ) -> Result<Outcome, LeaseError> {
        self.grpo_only("scoring")?;
        self.idempotent(store, key, ("scores", sub), now, |tx| {
            let Some(stage) = self.stage_or_undone(tx, sub.group_id)? else {
                return Ok(Outcome::AlreadyDone);
            };
            let bad = |problem: String| LeaseError::BadSubmission { group: sub.group_id, problem };
            let g = self.group_size as usize;
            if sub.rewards.len() != g {
                return Err(bad(format!("has {} rewards; send one per sample (G = {g})", sub.rewards.len())));
            }
            if let Some(r) = sub.rewards.iter().find(|r| !r.is_finite()) {
                return Err(bad(format!(
                    "has reward {r}; a reward that cannot be computed is an error status, not a number"
                )));
            }
            if !sub.components.is_empty() && sub.components.len() != g {
                return Err(bad(format!("has {} component maps; send none or one per sample", sub.components.len())));
            }
            if stage != SCORE {
                bump(tx, self.run, "late_submissions", 1)?;
                return Ok(Outcome::AlreadyDone);
            }
            if let Some(version) = self.eval_version(tx, sub.group_id)? {
                self.record_eval(tx, sub, version, now)?;
                return Ok(Outcome::Evaluated);
            }
            bump(tx, self.run, "groups_scored", 1)?;
            let all_equal = sub.rewards.iter().all(|&r| r == sub.rewards[0]);
            if self.dynamic_sampling && all_equal {
                self.drop_group(tx, sub.group_id, "equal", now)?;
                return Ok(Outcome::DroppedEqual);
            }
            let rewards = serde_json::to_string(&sub).map_err(|e| bad(e.to_string()))?;
            tx.execute(
                "UPDATE groups SET stage = 'train', lease_id = NULL, rewards = ?2, updated_ms = ?3 WHERE id = ?1",
                params![sub.group_id, rewards, now],
            )?;
            Ok(Outcome::Accepted)
        })
    }

    /// Leases the next batch to learner `worker`, dropping stale groups first. `None` while
    /// another learner holds a live batch, or fewer than `prompts_per_step` groups are scored
    /// (unless the dataset is exhausted and nothing else is in flight), or the run is over.
    /// The learner holding the live batch gets that same batch again.
    pub fn lease_batch(&self, store: &mut Store, worker: &str, now: Millis) -> Result<Option<BatchLease>, LeaseError> {
        let tx = store.conn.transaction()?;
        self.check_running(&tx)?;
        let progress = store::read_progress(&tx, self.run)?;
        let live: Option<(i64, String, Millis)> = tx
            .query_row(
                "SELECT l.id, l.holder, l.deadline_ms FROM groups g JOIN leases l ON l.id = g.lease_id
                 WHERE g.run_id = ?1 AND g.stage = 'train' AND l.deadline_ms > ?2 LIMIT 1",
                params![self.run, now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((lease_id, holder, deadline_ms)) = live {
            // A learner that restarted under the same name gets its batch back at once.
            if holder != worker {
                return Ok(None);
            }
            let mut stmt = tx.prepare("SELECT id FROM groups WHERE lease_id = ?1 ORDER BY id")?;
            let ids: Vec<i64> = stmt.query_map([lease_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
            return Ok(Some(self.batch(&tx, lease_id, deadline_ms, &progress, &ids)?));
        }
        if progress.step >= self.total_steps {
            return Ok(None);
        }
        // The learner waits until the evaluation of its version has been sampled.
        let unsampled: i64 = tx.query_row(
            "SELECT COUNT(*) FROM groups WHERE run_id = ?1 AND eval_version = ?2 AND stage = 'generate'",
            params![self.run, progress.policy_version as i64],
            |r| r.get(0),
        )?;
        if unsampled > 0 {
            return Ok(None);
        }
        let stale: Vec<i64> = {
            let oldest_ok = progress.policy_version.saturating_sub(self.max_policy_lag) as i64;
            let mut stmt =
                tx.prepare("SELECT id FROM groups WHERE run_id = ?1 AND stage = 'train' AND policy_version < ?2")?;
            stmt.query_map(params![self.run, oldest_ok], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for &id in &stale {
            self.drop_group(&tx, id, "stale", now)?;
        }
        let mut progress = progress;
        if self.sft {
            let waiting = self.count(&tx, &[TRAIN])? as u64;
            let room = (self.prompts_per_step as u64).saturating_sub(waiting);
            self.draw(&tx, &mut progress, room, TRAIN, now)?;
        }
        let ids = self.available(&tx, TRAIN, self.prompts_per_step as usize, now)?;
        let full = ids.len() == self.prompts_per_step as usize;
        let last = self.dataset.is_exhausted(progress.cursor) && self.count(&tx, &[GENERATE, SCORE])? == 0;
        if ids.is_empty() || !(full || last) {
            self.maybe_complete(&tx, now)?;
            tx.commit()?;
            return Ok(None);
        }
        let (lease_id, deadline_ms) = self.grant(&tx, TRAIN, worker, &ids, now + self.ttl.train_ms, now)?;
        let batch = self.batch(&tx, lease_id, deadline_ms, &progress, &ids)?;
        tx.commit()?;
        Ok(Some(batch))
    }

    fn batch(
        &self,
        tx: &Transaction<'_>,
        lease_id: i64,
        deadline_ms: Millis,
        progress: &store::Progress,
        ids: &[i64],
    ) -> Result<BatchLease, LeaseError> {
        let groups = ids
            .iter()
            .map(|&group_id| {
                let (policy_version, samples, scores) = self.payload(tx, group_id)?;
                let example = self.example(tx, group_id)?;
                Ok(TrainGroup {
                    group_id,
                    example,
                    policy_version,
                    samples,
                    rewards: scores.rewards,
                    components: scores.components,
                })
            })
            .collect::<Result<_, LeaseError>>()?;
        Ok(BatchLease { lease_id, deadline_ms, step: progress.step, policy_version: progress.policy_version, groups })
    }

    /// Extends a lease by its role's TTL from `now` (a heartbeat for long generations and
    /// steps). An expired lease is revived while none of its work was handed to another
    /// worker; `None` when nothing it held is still its own (finished or handed out again).
    pub fn renew(&self, store: &mut Store, lease_id: i64, now: Millis) -> Result<Option<Millis>, LeaseError> {
        let tx = store.conn.transaction()?;
        self.check_running(&tx)?;
        let lease: Option<(String, i64)> = tx
            .query_row(
                "SELECT role, size FROM leases WHERE id = ?1 AND run_id = ?2",
                params![lease_id, self.run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (role, size) = lease.ok_or(LeaseError::UnknownLease { id: self.run, lease: lease_id })?;
        let held: i64 = tx.query_row(
            "SELECT COUNT(*) FROM groups WHERE lease_id = ?1 AND stage = ?2",
            params![lease_id, role],
            |r| r.get(0),
        )?;
        // A batch is trained whole: once part of it went to another learner it is lost.
        if held == 0 || (role == TRAIN && held != size) {
            return Ok(None);
        }
        let ttl = match role.as_str() {
            GENERATE => self.ttl.generate_ms,
            SCORE => self.ttl.score_ms,
            _ => self.ttl.train_ms,
        };
        tx.execute("UPDATE leases SET deadline_ms = ?2 WHERE id = ?1", params![lease_id, now + ttl])?;
        tx.commit()?;
        Ok(Some(now + ttl))
    }

    /// Takes a learner's report that it trained the batch of `sub.lease_id`: the groups are
    /// done, the step and policy version advance, and the run completes after its last step.
    pub fn submit_step(
        &self,
        store: &mut Store,
        key: &str,
        sub: &StepSubmission,
        now: Millis,
    ) -> Result<Outcome, LeaseError> {
        self.idempotent(store, key, ("step", sub), now, |tx| {
            let size: Option<i64> = tx
                .query_row(
                    "SELECT size FROM leases WHERE id = ?1 AND run_id = ?2 AND role = 'train'",
                    params![sub.lease_id, self.run],
                    |r| r.get(0),
                )
                .optional()?;
            let size = size.ok_or(LeaseError::UnknownLease { id: self.run, lease: sub.lease_id })?;
            let progress = store::read_progress(tx, self.run)?;
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM groups WHERE lease_id = ?1 AND stage = 'train'",
                [sub.lease_id],
                |r| r.get(0),
            )?;
            // A step past the run's is lost work when a rollback took its batch back.
            if sub.step > progress.step && held == size {
                return Err(LeaseError::FutureStep { id: self.run, step: sub.step, current: progress.step });
            }
            if sub.step != progress.step || held != size {
                bump(tx, self.run, "late_submissions", 1)?;
                let trained_by_us: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM groups WHERE lease_id = ?1 AND stage = 'done'",
                    [sub.lease_id],
                    |r| r.get(0),
                )?;
                return Ok(if trained_by_us == size { Outcome::AlreadyDone } else { Outcome::LeaseLost });
            }
            tx.execute(
                "UPDATE groups SET stage = 'done', step = ?2, updated_ms = ?3 WHERE lease_id = ?1",
                params![sub.lease_id, sub.step as i64, now],
            )?;
            bump(tx, self.run, "groups_trained", size as u64)?;
            let next = progress.step + 1;
            if sub.unpublished {
                tx.execute("UPDATE progress SET step = ?2 WHERE run_id = ?1", params![self.run, next as i64])?;
            } else {
                tx.execute(
                    "UPDATE progress SET step = ?2, policy_version = ?2 WHERE run_id = ?1",
                    params![self.run, next as i64],
                )?;
                tx.execute(
                    "INSERT INTO policy_versions (run_id, version, created_ms) VALUES (?1, ?2, ?3)",
                    params![self.run, next as i64, now],
                )?;
                // Evaluations sample with the step's own weights, so only published steps get one.
                self.ensure_eval(tx, next, now)?;
            }
            // The queues as this step ends: where the pipeline was waiting (actors, reward
            // workers or the learner), next to the learner's own numbers.
            let mut metrics = sub.metrics.clone();
            if let Some(m) = metrics.as_object_mut() {
                let q = store::read_stage_counts(tx, self.run)?;
                m.insert("queue_generate".into(), q.generate.into());
                m.insert("queue_score".into(), q.score.into());
                m.insert("queue_train".into(), q.train.into());
            }
            tx.execute(
                "INSERT INTO step_metrics (run_id, step, metrics) VALUES (?1, ?2, ?3)",
                params![self.run, sub.step as i64, metrics.to_string()],
            )?;
            self.maybe_complete(tx, now)?;
            Ok(Outcome::Accepted)
        })
    }

    /// Runs `apply` once per idempotency key: a repeat of the same submission returns the
    /// stored outcome and counts a replay.
    fn idempotent<T: Serialize>(
        &self,
        store: &mut Store,
        key: &str,
        submission: T,
        now: Millis,
        apply: impl FnOnce(&Transaction<'_>) -> Result<Outcome, LeaseError>,
    ) -> Result<Outcome, LeaseError> {
        let body = serde_json::to_vec(&submission).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(&body));
        let tx = store.conn.transaction()?;
        let seen: Option<(String, String)> = tx
            .query_row(
                "SELECT digest, outcome FROM submissions WHERE run_id = ?1 AND key = ?2",
                params![self.run, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((seen_digest, outcome)) = seen {
            if seen_digest != digest {
                return Err(LeaseError::KeyReused { key: key.into() });
            }
            bump(&tx, self.run, "replays", 1)?;
            tx.commit()?;
            return serde_json::from_str(&outcome)
                .map_err(|e| StoreError::Corrupt(format!("outcome of `{key}`: {e}")).into());
        }
        self.check_running(&tx)?;
        let outcome = apply(&tx)?;
        let stored = serde_json::to_string(&outcome).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO submissions (run_id, key, digest, outcome, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![self.run, key, digest, stored, now],
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    fn check_running(&self, tx: &Transaction<'_>) -> Result<(), LeaseError> {
        let run = store::read_run(tx, self.run)?;
        match run.state {
            RunState::Running => Ok(()),
            state => Err(LeaseError::NotRunning { id: self.run, state }),
        }
    }

    /// Groups in `stage` with no lease or an expired one, evaluation groups first, then
    /// oldest first.
    fn available(&self, tx: &Transaction<'_>, stage: &str, max: usize, now: Millis) -> Result<Vec<i64>, LeaseError> {
        let mut stmt = tx.prepare(
            "SELECT g.id, g.lease_id IS NOT NULL FROM groups g LEFT JOIN leases l ON l.id = g.lease_id
             WHERE g.run_id = ?1 AND g.stage = ?2 AND (g.lease_id IS NULL OR l.deadline_ms <= ?3)
             ORDER BY g.eval_version IS NULL, g.id LIMIT ?4",
        )?;
        let rows: Vec<(i64, bool)> = stmt
            .query_map(params![self.run, stage, now, max as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        bump(tx, self.run, "leases_expired", rows.iter().filter(|(_, expired)| *expired).count() as u64)?;
        let mut ids = Vec::with_capacity(rows.len());
        for (id, expired) in rows {
            let why = format!("its {stage} lease expired");
            if expired && stage != TRAIN && self.count_failure(tx, id, &why, false, now)? {
                continue;
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// Counts a failed attempt at `group`; at `max_attempts`, or at once when `at_once`,
    /// the group fails for good (an evaluation group is recorded as all wrong). Returns
    /// whether it failed.
    fn count_failure(
        &self,
        tx: &Transaction<'_>,
        group: i64,
        reason: &str,
        at_once: bool,
        now: Millis,
    ) -> Result<bool, LeaseError> {
        tx.execute("UPDATE groups SET attempts = attempts + 1 WHERE id = ?1", [group])?;
        let (attempts, stage): (i64, String) =
            tx.query_row("SELECT attempts, stage FROM groups WHERE id = ?1", [group], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if !at_once && attempts < i64::from(self.ttl.max_attempts) {
            return Ok(false);
        }
        let mut why = format!("{stage}, attempt {attempts}: {reason}");
        if why.len() > MAX_REASON {
            let cut = (0..=MAX_REASON).rev().find(|&i| why.is_char_boundary(i)).unwrap_or(0);
            why.truncate(cut);
        }
        tracing::warn!(run = self.run, group, attempts, reason = %why, "group failed for good");
        tx.execute("UPDATE groups SET fail_reason = ?2, updated_ms = ?3 WHERE id = ?1", params![group, why, now])?;
        if let Some(version) = self.eval_version(tx, group)? {
            let zeros = ScoresSubmission {
                group_id: group,
                rewards: vec![0.0; self.group_size as usize],
                components: Vec::new(),
            };
            self.record_eval(tx, &zeros, version, now)?;
            return Ok(true);
        }
        tx.execute(
            "UPDATE groups SET stage = 'failed', lease_id = NULL, updated_ms = ?2 WHERE id = ?1",
            params![group, now],
        )?;
        bump(tx, self.run, "groups_failed", 1)?;
        Ok(true)
    }

    /// Takes a worker's report that it could not do the work of a group it holds (see the
    /// module doc, "Poison groups").
    pub fn fail_group(
        &self,
        store: &mut Store,
        key: &str,
        sub: &FailureReport,
        now: Millis,
    ) -> Result<Outcome, LeaseError> {
        self.idempotent(store, key, ("fail", sub), now, |tx| {
            let Some(stage) = self.stage_or_undone(tx, sub.group_id)? else {
                return Ok(Outcome::AlreadyDone);
            };
            let held: Option<i64> =
                tx.query_row("SELECT lease_id FROM groups WHERE id = ?1", [sub.group_id], |r| r.get(0))?;
            if held != Some(sub.lease_id) || ![GENERATE, SCORE, TRAIN].contains(&stage.as_str()) {
                // Finished or handed to someone else meanwhile: this report is late.
                bump(tx, self.run, "late_submissions", 1)?;
                return Ok(Outcome::AlreadyDone);
            }
            let reason = if sub.reason.trim().is_empty() { "no reason given" } else { sub.reason.as_str() };
            if stage == TRAIN {
                // The learner trains the rest of its batch: the lease holds one group less.
                tx.execute("UPDATE leases SET size = size - 1 WHERE id = ?1", [sub.lease_id])?;
                self.count_failure(tx, sub.group_id, reason, true, now)?;
                return Ok(Outcome::Failed);
            }
            if self.count_failure(tx, sub.group_id, reason, false, now)? {
                return Ok(Outcome::Failed);
            }
            tx.execute("UPDATE groups SET lease_id = NULL, updated_ms = ?2 WHERE id = ?1", params![sub.group_id, now])?;
            Ok(Outcome::Retry)
        })
    }

    /// Records a lease on `ids` (none when `ids` is empty: id 0).
    fn grant(
        &self,
        tx: &Transaction<'_>,
        role: &str,
        holder: &str,
        ids: &[i64],
        deadline: Millis,
        now: Millis,
    ) -> Result<(i64, Millis), LeaseError> {
        if ids.is_empty() {
            return Ok((0, deadline));
        }
        tx.execute(
            "INSERT INTO leases (run_id, role, holder, size, deadline_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![self.run, role, holder, ids.len() as i64, deadline, now],
        )?;
        let lease = tx.last_insert_rowid();
        let mut stmt = tx.prepare("UPDATE groups SET lease_id = ?2, updated_ms = ?3 WHERE id = ?1")?;
        for &id in ids {
            stmt.execute(params![id, lease, now])?;
        }
        Ok((lease, deadline))
    }

    fn count(&self, tx: &Transaction<'_>, stages: &[&str]) -> Result<i64, LeaseError> {
        let list = stages.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
        let sql =
            format!("SELECT COUNT(*) FROM groups WHERE run_id = ?1 AND eval_version IS NULL AND stage IN ({list})");
        Ok(tx.query_row(&sql, [self.run], |r| r.get(0))?)
    }

    /// The group's stage; `None` (counted as a late submission) when a rollback deleted it.
    fn stage_or_undone(&self, tx: &Transaction<'_>, group: i64) -> Result<Option<String>, LeaseError> {
        let stage: Option<String> = tx
            .query_row("SELECT stage FROM groups WHERE id = ?1 AND run_id = ?2", params![group, self.run], |r| r.get(0))
            .optional()?;
        if stage.is_some() {
            return Ok(stage);
        }
        if rollback::group_undone(tx, self.run, group)? {
            bump(tx, self.run, "late_submissions", 1)?;
            return Ok(None);
        }
        Err(LeaseError::UnknownGroup { id: self.run, group })
    }

    fn example(&self, tx: &Transaction<'_>, group: i64) -> Result<Example, LeaseError> {
        let (idx, eval): (i64, Option<i64>) =
            tx.query_row("SELECT example, eval_version FROM groups WHERE id = ?1", [group], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let rows = if eval.is_some() { self.dataset.eval() } else { self.dataset.train() };
        rows.get(idx as usize)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("group {group} names example {idx} beyond the dataset")).into())
    }

    /// A group's policy version, samples and scores (empty before scoring).
    fn payload(&self, tx: &Transaction<'_>, group: i64) -> Result<(u64, Vec<Sample>, ScoresSubmission), LeaseError> {
        let (version, samples, rewards): (Option<i64>, Option<String>, Option<String>) =
            tx.query_row("SELECT policy_version, samples, rewards FROM groups WHERE id = ?1", [group], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("group {group}: {e}"));
        let samples = serde_json::from_str(samples.as_deref().unwrap_or("[]")).map_err(corrupt)?;
        let scores = match rewards {
            Some(r) => serde_json::from_str::<ScoresSubmission>(&r).map_err(corrupt)?,
            None => ScoresSubmission { group_id: group, rewards: Vec::new(), components: Vec::new() },
        };
        Ok((version.unwrap_or(0) as u64, samples, scores))
    }

    fn drop_group(&self, tx: &Transaction<'_>, group: i64, reason: &str, now: Millis) -> Result<(), LeaseError> {
        tx.execute(
            "UPDATE groups SET stage = 'dropped', drop_reason = ?2, lease_id = NULL, updated_ms = ?3 WHERE id = ?1",
            params![group, reason, now],
        )?;
        bump(tx, self.run, if reason == "stale" { "dropped_stale" } else { "dropped_equal" }, 1)?;
        Ok(())
    }

    /// Completes the run after its last step, or when the dataset is exhausted with
    /// nothing in flight.
    fn maybe_complete(&self, tx: &Transaction<'_>, now: Millis) -> Result<(), LeaseError> {
        let progress = store::read_progress(tx, self.run)?;
        let message = if progress.step >= self.total_steps {
            String::new()
        } else if self.dataset.is_exhausted(progress.cursor) && self.count(tx, &[GENERATE, SCORE, TRAIN])? == 0 {
            format!("dataset exhausted after {} of {} steps", progress.step, self.total_steps)
        } else {
            return Ok(());
        };
        let evaluating: i64 = tx.query_row(
            "SELECT COUNT(*) FROM groups WHERE run_id = ?1 AND eval_version IS NOT NULL AND stage != 'done'",
            [self.run],
            |r| r.get(0),
        )?;
        if evaluating == 0 {
            store::set_state(tx, self.run, RunState::Completed, &message, now)?;
        }
        Ok(())
    }

    /// Creates the evaluation of `version` (one group per eval example) when it is due and
    /// does not exist yet.
    fn ensure_eval(&self, tx: &Transaction<'_>, version: u64, now: Millis) -> Result<(), LeaseError> {
        let n = self.dataset.eval().len();
        if self.eval_every == 0 || !version.is_multiple_of(self.eval_every) || version > self.total_steps || n == 0 {
            return Ok(());
        }
        let created = tx.execute(
            "INSERT OR IGNORE INTO evals (run_id, version, size, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![self.run, version as i64, n as i64, now],
        )?;
        if created == 0 {
            return Ok(());
        }
        let mut stmt = tx.prepare(
            "INSERT INTO groups (run_id, example, stage, eval_version, created_ms, updated_ms)
             VALUES (?1, ?2, 'generate', ?3, ?4, ?4)",
        )?;
        for i in 0..n {
            stmt.execute(params![self.run, i as i64, version as i64, now])?;
        }
        Ok(())
    }

    fn eval_version(&self, tx: &Transaction<'_>, group: i64) -> Result<Option<u64>, LeaseError> {
        let v: Option<i64> = tx.query_row("SELECT eval_version FROM groups WHERE id = ?1", [group], |r| r.get(0))?;
        Ok(v.map(|v| v as u64))
    }

    /// Records an eval group's scores; once the whole evaluation is scored, its pass@1:
    /// the fraction of samples judged correct, a sample being correct when its `accuracy`
    /// component (or, without one, its reward) is positive.
    fn record_eval(
        &self,
        tx: &Transaction<'_>,
        sub: &ScoresSubmission,
        version: u64,
        now: Millis,
    ) -> Result<(), LeaseError> {
        let json = serde_json::to_string(sub).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "UPDATE groups SET stage = 'done', lease_id = NULL, rewards = ?2, updated_ms = ?3 WHERE id = ?1",
            params![sub.group_id, json, now],
        )?;
        let scored: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT COALESCE(rewards, '') FROM groups WHERE run_id = ?1 AND eval_version = ?2")?;
            stmt.query_map(params![self.run, version as i64], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        if scored.iter().any(|r| r.is_empty()) {
            return Ok(());
        }
        let (mut correct, mut total) = (0u64, 0u64);
        for r in &scored {
            let s: ScoresSubmission =
                serde_json::from_str(r).map_err(|e| StoreError::Corrupt(format!("eval scores: {e}")))?;
            for (i, reward) in s.rewards.iter().enumerate() {
                let judged = s.components.get(i).and_then(|c| c.get("accuracy")).unwrap_or(reward);
                correct += (*judged > 0.0) as u64;
                total += 1;
            }
        }
        tx.execute(
            "UPDATE evals SET accuracy = ?3 WHERE run_id = ?1 AND version = ?2",
            params![self.run, version as i64, correct as f64 / total.max(1) as f64],
        )?;
        self.maybe_complete(tx, now)
    }
}
