//! Rolling a run back to a recorded checkpoint, for a learner that lost the weights of the
//! steps it trained after that checkpoint (it died after `SubmitStep` but before its next
//! checkpoint), so that the run goes on from the weights that still exist.
//!
//! Recording a checkpoint stores, next to the run's progress (step, policy version, dataset
//! cursor, counters), a [`Snapshot`] of what the progress does not say: the newest group
//! and idempotency-log row at that moment, and the stage of every training group then in
//! flight. [`rollback`] restores the run to exactly that state in one transaction:
//!
//! - **progress**: step, policy version, cursor and every counter become the checkpoint's;
//!   `rollbacks` is the one counter kept, and counts this rollback.
//! - **groups drawn after the checkpoint** (ids past the snapshot's newest) are deleted.
//!   Groups are drawn from the cursor in id order, so the restored cursor draws the same
//!   prompts again, in the same order, deterministically.
//! - **groups in flight at the checkpoint** go back to the stage they had then, unleased,
//!   keeping only what they had then: back to `generate` drops samples and scores, back to
//!   `score` drops scores, back to `train` keeps both (samples and scores never change once
//!   set, so what a group had then is what it has now). Whatever happened to them since
//!   (scored, trained, dropped) is undone.
//! - groups trained or dropped at the checkpoint stay as they are: both are final.
//! - step metrics, evaluations (and their groups), policy versions and checkpoint records
//!   after the checkpoint's step are deleted; evaluations up to it are kept (they judged
//!   weights that still exist).
//! - the idempotency log of submissions made after the checkpoint is forgotten, so a retry
//!   of undone work is judged against the restored state instead of replaying an outcome
//!   that no longer holds.
//!
//! Late work for what was undone is lost work, answered as such by [`crate::lease`]:
//! samples or scores for a deleted group, or samples of a policy version that was rolled
//! back, get `AlreadyDone`; a step of a batch whose groups were restored gets `LeaseLost`;
//! renewing its lease says it is no longer held. Each such submission counts as a late
//! submission. The log of rollbacks (table `rollbacks`) remembers which group ids and
//! versions were undone for that purpose, and each rollback's idempotency key.
//!
//! Step 0 needs no record: it is the base model with nothing drawn and every counter at 0
//! (a step-0 record with a snapshot is used as recorded).
//! Checkpoint records made before rollback support (schema v2) have no snapshot and cannot
//! be rolled back to.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::store::{self, CheckpointRecord, Millis, Progress, RunId, RunState, Store, StoreError, bump};

/// What a checkpoint record needs besides the run's progress to restore the run at its step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The run's newest group id (training or evaluation) at the checkpoint; 0 when none.
    pub last_group: i64,
    /// The run's newest row of the idempotency log (SQLite rowid) at the checkpoint.
    pub last_submission: i64,
    /// Training groups in flight at the checkpoint and their stage then
    /// (`generate`, `score` or `train`), by id.
    pub in_flight: Vec<(i64, String)>,
}

impl Snapshot {
    /// The snapshot of run `id` as it stands.
    pub(crate) fn take(conn: &Connection, id: RunId) -> Result<Snapshot, StoreError> {
        let last_group =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM groups WHERE run_id = ?1", [id], |r| r.get(0))?;
        let last_submission =
            conn.query_row("SELECT COALESCE(MAX(rowid), 0) FROM submissions WHERE run_id = ?1", [id], |r| r.get(0))?;
        let mut stmt = conn.prepare(
            "SELECT id, stage FROM groups WHERE run_id = ?1 AND eval_version IS NULL
             AND stage IN ('generate', 'score', 'train') ORDER BY id",
        )?;
        let in_flight = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        Ok(Snapshot { last_group, last_submission, in_flight })
    }
}

/// What a rollback did; a repeat with the same key returns it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// The checkpoint rolled back to (step 0 without a record: no path, empty progress,
    /// created when the run was).
    pub checkpoint: CheckpointRecord,
    /// The run's step before the rollback.
    pub from_step: u64,
    /// Groups drawn after the checkpoint, deleted.
    pub groups_removed: u64,
    /// Groups in flight at the checkpoint, put back in the stage they had then.
    pub groups_restored: u64,
}

/// Rolls running run `id` back to its checkpoint of `step` (see the module docs), once per
/// idempotency `key`.
pub fn rollback(store: &mut Store, id: RunId, step: u64, key: &str, now: Millis) -> Result<Rollback, StoreError> {
    let tx = store.conn.transaction()?;
    let seen: Option<(i64, String)> = tx
        .query_row("SELECT to_step, answer FROM rollbacks WHERE run_id = ?1 AND key = ?2", params![id, key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((to_step, answer)) = seen {
        if to_step as u64 != step {
            return Err(StoreError::RollbackKeyReused { key: key.into() });
        }
        bump(&tx, id, "replays", 1)?;
        tx.commit()?;
        return serde_json::from_str(&answer).map_err(|e| StoreError::Corrupt(format!("rollback `{key}`: {e}")));
    }
    let run = store::read_run(&tx, id)?;
    if run.state != RunState::Running {
        return Err(StoreError::RollbackNotRunning { id, state: run.state });
    }
    let current = store::read_progress(&tx, id)?;
    if step > current.step {
        return Err(StoreError::RollbackForward { id, step, current: current.step });
    }
    let (checkpoint, snapshot) = checkpoint_of(&tx, id, step, run.created_ms)?;

    let removed: (i64, Option<i64>) = tx.query_row(
        "SELECT COUNT(*), MAX(id) FROM groups WHERE run_id = ?1
         AND ((id > ?2 AND eval_version IS NULL) OR eval_version > ?3)",
        params![id, snapshot.last_group, step as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(
        "DELETE FROM groups WHERE run_id = ?1
         AND ((id > ?2 AND eval_version IS NULL) OR eval_version > ?3)",
        params![id, snapshot.last_group, step as i64],
    )?;
    let mut restored = 0;
    for (group, stage) in &snapshot.in_flight {
        // What a group had in each stage: samples from `score` on, scores from `train` on.
        let clear = match stage.as_str() {
            "generate" => "policy_version = NULL, samples = NULL, rewards = NULL,",
            "score" => "rewards = NULL,",
            "train" => "",
            other => {
                return Err(StoreError::Corrupt(format!(
                    "checkpoint of step {step} snapshot has group {group} in stage `{other}`"
                )));
            }
        };
        restored += tx.execute(
            &format!(
                "UPDATE groups SET stage = ?3, {clear} lease_id = NULL, drop_reason = NULL,
                 fail_reason = NULL, step = NULL, updated_ms = ?4 WHERE id = ?1 AND run_id = ?2"
            ),
            params![group, id, stage, now],
        )?;
    }
    if restored != snapshot.in_flight.len() {
        return Err(StoreError::Corrupt(format!(
            "checkpoint of step {step} snapshot names {} groups in flight but {restored} exist",
            snapshot.in_flight.len()
        )));
    }
    let step_i = step as i64;
    tx.execute("DELETE FROM step_metrics WHERE run_id = ?1 AND step >= ?2", params![id, step_i])?;
    tx.execute("DELETE FROM evals WHERE run_id = ?1 AND version > ?2", params![id, step_i])?;
    tx.execute("DELETE FROM policy_versions WHERE run_id = ?1 AND version > ?2", params![id, step_i])?;
    tx.execute("DELETE FROM checkpoints WHERE run_id = ?1 AND step > ?2", params![id, step_i])?;
    tx.execute("DELETE FROM submissions WHERE run_id = ?1 AND rowid > ?2", params![id, snapshot.last_submission])?;
    restore_progress(&tx, id, &checkpoint.progress, current.counters.rollbacks + 1)?;
    tx.execute("UPDATE runs SET updated_ms = ?2 WHERE id = ?1", params![id, now])?;
    let done = Rollback {
        checkpoint,
        from_step: current.step,
        groups_removed: removed.0 as u64,
        groups_restored: restored as u64,
    };
    let answer = serde_json::to_string(&done).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO rollbacks (run_id, key, to_step, from_step, first_removed_group, last_removed_group, answer, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            key,
            step_i,
            current.step as i64,
            snapshot.last_group + 1,
            removed.1.unwrap_or(snapshot.last_group),
            answer,
            now
        ],
    )?;
    tx.commit()?;
    Ok(done)
}

/// The record and snapshot of `step`; step 0 without a record is the run's start.
fn checkpoint_of(
    conn: &Connection,
    id: RunId,
    step: u64,
    created_ms: Millis,
) -> Result<(CheckpointRecord, Snapshot), StoreError> {
    let row: Option<(String, String, Millis, Option<String>)> = conn
        .query_row(
            "SELECT path, progress, created_ms, snapshot FROM checkpoints WHERE run_id = ?1 AND step = ?2",
            params![id, step as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((path, progress, created_ms, snapshot)) = row.filter(|r| step > 0 || r.3.is_some()) else {
        // Step 0 is the start, recorded or not (a record from before rollback support
        // would have no snapshot).
        if step == 0 {
            let start = CheckpointRecord { step: 0, path: String::new(), progress: Progress::default(), created_ms };
            return Ok((start, Snapshot::default()));
        }
        return Err(StoreError::NoCheckpoint { id, step });
    };
    let snapshot = snapshot.ok_or(StoreError::NoSnapshot { id, step })?;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("checkpoint of step {step} of run {id}: {e}"));
    Ok((
        CheckpointRecord { step, path, progress: serde_json::from_str(&progress).map_err(corrupt)?, created_ms },
        serde_json::from_str(&snapshot).map_err(corrupt)?,
    ))
}

fn restore_progress(conn: &Connection, id: RunId, p: &Progress, rollbacks: u64) -> Result<(), StoreError> {
    let c = &p.counters;
    let n = |v: u64| v as i64;
    conn.execute(
        "UPDATE progress SET epoch = ?2, idx = ?3, step = ?4, policy_version = ?5,
         prompts_drawn = ?6, groups_generated = ?7, groups_scored = ?8, groups_trained = ?9,
         dropped_stale = ?10, dropped_equal = ?11, leases_expired = ?12, replays = ?13,
         late_submissions = ?14, rollbacks = ?15, groups_failed = ?16 WHERE run_id = ?1",
        params![
            id,
            p.cursor.epoch,
            n(p.cursor.index),
            n(p.step),
            n(p.policy_version),
            n(c.prompts_drawn),
            n(c.groups_generated),
            n(c.groups_scored),
            n(c.groups_trained),
            n(c.dropped_stale),
            n(c.dropped_equal),
            n(c.leases_expired),
            n(c.replays),
            n(c.late_submissions),
            n(rollbacks),
            n(c.groups_failed)
        ],
    )?;
    Ok(())
}

/// Whether `group` of run `id` was deleted by a rollback (late work for it is lost work).
pub(crate) fn group_undone(conn: &Connection, id: RunId, group: i64) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM rollbacks WHERE run_id = ?1
         AND ?2 BETWEEN first_removed_group AND last_removed_group)",
        params![id, group],
        |r| r.get(0),
    )?)
}

/// Whether policy `version` of run `id` was undone by a rollback (samples made by it are
/// lost work).
pub(crate) fn version_undone(conn: &Connection, id: RunId, version: u64) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM rollbacks WHERE run_id = ?1
         AND to_step < ?2 AND from_step >= ?2)",
        params![id, version as i64],
        |r| r.get(0),
    )?)
}
