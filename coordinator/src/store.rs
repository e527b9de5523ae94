//! The coordinator's state in SQLite: runs, their progress (dataset cursor, step, policy
//! version, exact counters), policy versions, checkpoint records (with what a rollback to
//! them needs), prompt groups, leases, evaluations, the idempotency log of submissions and
//! the log of rollbacks.
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a committed change survives
//! a crash of the process or the machine. The schema is versioned with `PRAGMA
//! user_version` and migrated forward on open, each migration in its own transaction; a
//! database newer than this binary is refused. Every state change is one transaction, so a
//! coordinator killed at any point reopens to a state some sequence of complete calls made.
//!
//! Limits: one process owns a database (the coordinator); SQLite serialises writers, which
//! bounds the control plane at some thousands of state changes per second — plenty for
//! leases of whole prompt groups. Samples are stored as JSON text with their group.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::dataset::Cursor;
use crate::spec::RunSpec;

pub type RunId = i64;

/// Unix time in milliseconds; every call that changes state takes it explicitly.
pub type Millis = i64;

/// A source of `now`, so that services read the wall clock and tests set it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        d.as_millis() as Millis
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunState {
    pub const ALL: [RunState; 5] =
        [RunState::Pending, RunState::Running, RunState::Completed, RunState::Failed, RunState::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RunState::Completed | RunState::Failed | RunState::Cancelled)
    }

    /// pending → running → completed, and any live state → failed or cancelled.
    pub fn can_become(self, to: RunState) -> bool {
        use RunState::*;
        matches!((self, to), (Pending, Running) | (Running, Completed) | (Pending | Running, Failed | Cancelled))
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: RunId,
    pub spec: RunSpec,
    /// The dataset's fingerprint when the run was submitted.
    pub dataset_fingerprint: String,
    pub state: RunState,
    /// Why the run failed or was cancelled; empty otherwise.
    pub message: String,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

/// Exact event counts of a run; each is changed only inside the transaction of its event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Prompts taken from the dataset cursor (one group each).
    pub prompts_drawn: u64,
    /// Groups whose samples were accepted from an actor.
    pub groups_generated: u64,
    /// Groups whose rewards were accepted from a reward worker.
    pub groups_scored: u64,
    /// Groups consumed by a completed learner step.
    pub groups_trained: u64,
    /// Groups dropped for lagging the learner by more than `max_policy_lag`.
    pub dropped_stale: u64,
    /// Groups dropped by dynamic sampling because all their rewards were equal.
    pub dropped_equal: u64,
    /// Times a lease expired and its work was handed out again (per group).
    pub leases_expired: u64,
    /// Submissions repeated with an idempotency key already seen (answered, not counted).
    pub replays: u64,
    /// Submissions for work another worker had already finished, or that a rollback undid
    /// (answered, not counted).
    pub late_submissions: u64,
    /// Rollbacks to a checkpoint. A rollback restores every other counter to its checkpoint's
    /// snapshot and adds one here. Absent from snapshots older than the counter: 0.
    #[serde(default)]
    pub rollbacks: u64,
    /// Groups moved to the `failed` stage: their work failed `leases.max_attempts` times
    /// (expired leases and reported failures), or a learner could not train them. Absent
    /// from snapshots older than the counter: 0.
    #[serde(default)]
    pub groups_failed: u64,
}

const COUNTERS: [&str; 11] = [
    "prompts_drawn",
    "groups_generated",
    "groups_scored",
    "groups_trained",
    "dropped_stale",
    "dropped_equal",
    "leases_expired",
    "replays",
    "late_submissions",
    "rollbacks",
    "groups_failed",
];

/// Where a run stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The next example to draw.
    pub cursor: Cursor,
    /// Learner steps completed.
    pub step: u64,
    /// The policy version the learner holds: the number of completed steps.
    pub policy_version: u64,
    pub counters: Counters,
}

/// Training groups of a run by stage (evaluation groups are not counted here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Waiting for or held by an actor.
    pub generate: u64,
    /// Waiting for or held by a reward worker.
    pub score: u64,
    /// Scored, waiting for or held by a learner.
    pub train: u64,
    pub done: u64,
    pub dropped_stale: u64,
    pub dropped_equal: u64,
    /// Failed for good (see [`Counters::groups_failed`]).
    pub failed: u64,
}

impl StageCounts {
    /// Groups drawn but neither trained nor dropped.
    pub fn in_flight(&self) -> u64 {
        self.generate + self.score + self.train
    }
}

/// A checkpoint the learner wrote, with the run's progress at that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub step: u64,
    pub path: String,
    pub progress: Progress,
    pub created_ms: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}; check the data folder's disk and permissions")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema v{found} is newer than this coordinator knows (v{known}); run a newer r1")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("run {0} does not exist; list runs with `r1ctl runs`")]
    RunNotFound(RunId),
    #[error("run {id} is {from}; it cannot become {to}")]
    BadTransition { id: RunId, from: RunState, to: RunState },
    #[error(
        "checkpoint of step {step} cannot be recorded: run {id} is at step {current}; record a checkpoint right after its step"
    )]
    CheckpointStep { id: RunId, step: u64, current: u64 },
    #[error(
        "run {id} has no checkpoint of step {step} to roll back to; roll back to a recorded step (`ListCheckpoints`) or to 0, the base model"
    )]
    NoCheckpoint { id: RunId, step: u64 },
    #[error(
        "run {id} is at step {current}; it cannot roll back forward to step {step}; roll back to a recorded step at most {current}"
    )]
    RollbackForward { id: RunId, step: u64, current: u64 },
    #[error(
        "the checkpoint of step {step} of run {id} was recorded by a coordinator without rollback support and has no snapshot of the run's groups; roll back to a checkpoint recorded since the upgrade, or to step 0"
    )]
    NoSnapshot { id: RunId, step: u64 },
    #[error("run {id} is {state}; only a running run can be rolled back")]
    RollbackNotRunning { id: RunId, state: RunState },
    #[error("idempotency key `{key}` was already used for a rollback to another step; use a fresh key per rollback")]
    RollbackKeyReused { key: String },
    #[error("stored record is corrupt ({0}); restore the database from a backup")]
    Corrupt(String),
}

/// The forward migrations; entry i takes the schema from version i to i + 1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    spec TEXT NOT NULL,
    dataset_fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE progress (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    epoch INTEGER NOT NULL DEFAULT 0,
    idx INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    policy_version INTEGER NOT NULL DEFAULT 0,
    prompts_drawn INTEGER NOT NULL DEFAULT 0,
    groups_generated INTEGER NOT NULL DEFAULT 0,
    groups_scored INTEGER NOT NULL DEFAULT 0,
    groups_trained INTEGER NOT NULL DEFAULT 0,
    dropped_stale INTEGER NOT NULL DEFAULT 0,
    dropped_equal INTEGER NOT NULL DEFAULT 0,
    leases_expired INTEGER NOT NULL DEFAULT 0,
    replays INTEGER NOT NULL DEFAULT 0,
    late_submissions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE policy_versions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    version INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, version)
);
CREATE TABLE checkpoints (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    progress TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    role TEXT NOT NULL,
    holder TEXT NOT NULL,
    size INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    example INTEGER NOT NULL,
    stage TEXT NOT NULL,
    lease_id INTEGER REFERENCES leases(id),
    policy_version INTEGER,
    samples TEXT,
    rewards TEXT,
    drop_reason TEXT,
    step INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX groups_by_stage ON groups(run_id, stage, id);
CREATE TABLE submissions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE step_metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
"#,
    // v2: evaluation. An eval group names an example of the eval split and the policy
    // version it evaluates; `evals` holds one row per evaluation and, once every group
    // is scored, its pass@1.
    r#"
ALTER TABLE groups ADD COLUMN eval_version INTEGER;
CREATE TABLE evals (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    version INTEGER NOT NULL,
    size INTEGER NOT NULL,
    accuracy REAL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, version)
);
"#,
    // v3: rollback. A checkpoint's `snapshot` holds what its progress JSON lacks to restore
    // the run at that step (see `rollback::Snapshot`); rows recorded before v3 have none and
    // cannot be rolled back to. `rollbacks` logs each rollback: its idempotency key, the
    // steps it went from and to, and the group ids it deleted, so that late work for them is
    // answered as lost.
    r#"
ALTER TABLE checkpoints ADD COLUMN snapshot TEXT;
ALTER TABLE progress ADD COLUMN rollbacks INTEGER NOT NULL DEFAULT 0;
CREATE TABLE rollbacks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    to_step INTEGER NOT NULL,
    from_step INTEGER NOT NULL,
    first_removed_group INTEGER NOT NULL,
    last_removed_group INTEGER NOT NULL,
    answer TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);
"#,
    // v4: poison groups. `attempts` counts a group's failed attempts (leases that expired,
    // failures a worker reported); at `leases.max_attempts` the group moves to the `failed`
    // stage with `fail_reason`, counted in `groups_failed`.
    r#"
ALTER TABLE groups ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN fail_reason TEXT;
ALTER TABLE progress ADD COLUMN groups_failed INTEGER NOT NULL DEFAULT 0;
"#,
    // v5: run-agnostic learner fleets. A fleet's rank 0 claims one running run at a time
    // (`pools`); the claim has a deadline it renews while it trains.
    r#"
CREATE TABLE run_claims (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id),
    holder TEXT NOT NULL,
    deadline_ms INTEGER NOT NULL,
    claimed_ms INTEGER NOT NULL
);
"#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The coordinator's database.
pub struct Store {
    pub(crate) conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database file and migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::init(Connection::open(path)?)
    }

    /// A private in-memory database, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found, known: SCHEMA_VERSION });
        }
        for (v, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", v as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Store { conn })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Records a new run in state `pending` with its progress at the start.
    pub fn create_run(&mut self, spec: &RunSpec, dataset_fingerprint: &str, now: Millis) -> Result<RunId, StoreError> {
        let spec = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO runs (spec, dataset_fingerprint, state, created_ms, updated_ms) VALUES (?1, ?2, 'pending', ?3, ?3)",
            params![spec, dataset_fingerprint, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute("INSERT INTO progress (run_id) VALUES (?1)", [id])?;
        tx.execute("INSERT INTO policy_versions (run_id, version, created_ms) VALUES (?1, 0, ?2)", params![id, now])?;
        tx.commit()?;
        Ok(id)
    }

    pub fn run(&self, id: RunId) -> Result<Run, StoreError> {
        read_run(&self.conn, id)
    }

    /// Gives a run the paths of a data folder it was copied or moved to: `spec` (the same spec
    /// with the new paths) replaces the stored one, and checkpoint paths under `from` are
    /// rewritten under `to`, in one transaction.
    pub fn relocate(&mut self, id: RunId, spec: &RunSpec, from: &Path, to: &Path) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        read_run(&tx, id)?;
        let text = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute("UPDATE runs SET spec = ?2 WHERE id = ?1", params![id, text])?;
        let mut moved = Vec::new();
        {
            let mut stmt = tx.prepare("SELECT step, path FROM checkpoints WHERE run_id = ?1")?;
            let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (step, path) = row?;
                if let Ok(tail) = Path::new(&path).strip_prefix(from) {
                    moved.push((step, to.join(tail).display().to_string()));
                }
            }
        }
        for (step, path) in moved {
            tx.execute("UPDATE checkpoints SET path = ?3 WHERE run_id = ?1 AND step = ?2", params![id, step, path])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<Run>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("{RUN_SELECT} ORDER BY id DESC"))?;
        let rows = stmt.query_map([], run_row)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(finish_run).collect()
    }

    /// Moves a run to `to` if [`RunState::can_become`] allows it.
    pub fn set_state(&mut self, id: RunId, to: RunState, message: &str, now: Millis) -> Result<Run, StoreError> {
        let tx = self.conn.transaction()?;
        set_state(&tx, id, to, message, now)?;
        let run = read_run(&tx, id)?;
        tx.commit()?;
        Ok(run)
    }

    pub fn progress(&self, id: RunId) -> Result<Progress, StoreError> {
        read_progress(&self.conn, id)
    }

    /// Every policy version of a run with the time it appeared, oldest first.
    pub fn policy_versions(&self, id: RunId) -> Result<Vec<(u64, Millis)>, StoreError> {
        read_run(&self.conn, id)?;
        let mut stmt =
            self.conn.prepare("SELECT version, created_ms FROM policy_versions WHERE run_id = ?1 ORDER BY version")?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a checkpoint of `step` (the current step) with the progress as it stands and
    /// a [`Snapshot`](crate::rollback::Snapshot) of the groups, so that the run can be
    /// rolled back to it; recording the same step again replaces the record.
    pub fn record_checkpoint(
        &mut self,
        id: RunId,
        step: u64,
        path: &str,
        now: Millis,
    ) -> Result<CheckpointRecord, StoreError> {
        let tx = self.conn.transaction()?;
        let mut progress = read_progress(&tx, id)?;
        if step != progress.step {
            return Err(StoreError::CheckpointStep { id, step, current: progress.step });
        }
        // A learner serves the weights of a checkpoint it writes or resumes from, so a
        // checkpointed step is a published version even when the step itself went unpublished
        // (a checkpoint on SIGTERM between publishes).
        if progress.policy_version < step {
            tx.execute("UPDATE progress SET policy_version = ?2 WHERE run_id = ?1", params![id, step as i64])?;
            tx.execute(
                "INSERT OR IGNORE INTO policy_versions (run_id, version, created_ms) VALUES (?1, ?2, ?3)",
                params![id, step as i64, now],
            )?;
            progress.policy_version = step;
        }
        let json = serde_json::to_string(&progress).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let snapshot = serde_json::to_string(&crate::rollback::Snapshot::take(&tx, id)?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT OR REPLACE INTO checkpoints (run_id, step, path, progress, created_ms, snapshot) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, step as i64, path, json, now, snapshot],
        )?;
        tx.commit()?;
        Ok(CheckpointRecord { step, path: path.into(), progress, created_ms: now })
    }

    /// Checkpoint records of a run, oldest first.
    pub fn checkpoints(&self, id: RunId) -> Result<Vec<CheckpointRecord>, StoreError> {
        read_run(&self.conn, id)?;
        let mut stmt = self
            .conn
            .prepare("SELECT step, path, progress, created_ms FROM checkpoints WHERE run_id = ?1 ORDER BY step")?;
        let rows = stmt.query_map([id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })?;
        rows.map(|row| {
            let (step, path, progress, created_ms) = row?;
            let progress = serde_json::from_str(&progress).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(CheckpointRecord { step: step as u64, path, progress, created_ms })
        })
        .collect()
    }

    /// How many groups of a run sit in each stage: the queue depths that size the fleet,
    /// and an independent tally of what the counters say.
    pub fn stage_counts(&self, id: RunId) -> Result<StageCounts, StoreError> {
        read_run(&self.conn, id)?;
        read_stage_counts(&self.conn, id)
    }

    /// Evaluations of a run by policy version: (version, eval groups, pass@1 once every
    /// group is scored).
    pub fn evals(&self, id: RunId) -> Result<Vec<(u64, u64, Option<f64>)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT version, size, accuracy FROM evals WHERE run_id = ?1 ORDER BY version")?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The metrics the learner reported for each step, in step order.
    pub fn step_metrics(&self, id: RunId) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT step, metrics FROM step_metrics WHERE run_id = ?1 ORDER BY step")?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (step, m) = row?;
            Ok((step as u64, serde_json::from_str(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?))
        })
        .collect()
    }
}

const RUN_SELECT: &str = "SELECT id, spec, dataset_fingerprint, state, message, created_ms, updated_ms FROM runs";

type RunRow = (RunId, String, String, String, String, Millis, Millis);

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn finish_run(
    (id, spec, dataset_fingerprint, state, message, created_ms, updated_ms): RunRow,
) -> Result<Run, StoreError> {
    let spec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(format!("run {id} spec: {e}")))?;
    let state = RunState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("run {id} state `{state}`")))?;
    Ok(Run { id, spec, dataset_fingerprint, state, message, created_ms, updated_ms })
}

pub(crate) fn read_run(conn: &Connection, id: RunId) -> Result<Run, StoreError> {
    let row = conn.query_row(&format!("{RUN_SELECT} WHERE id = ?1"), [id], run_row).optional()?;
    finish_run(row.ok_or(StoreError::RunNotFound(id))?)
}

pub(crate) fn set_state(
    tx: &Transaction<'_>,
    id: RunId,
    to: RunState,
    message: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let from = read_run(tx, id)?.state;
    if !from.can_become(to) {
        return Err(StoreError::BadTransition { id, from, to });
    }
    tx.execute(
        "UPDATE runs SET state = ?2, message = ?3, updated_ms = ?4 WHERE id = ?1",
        params![id, to.as_str(), message, now],
    )?;
    Ok(())
}

/// [`Store::stage_counts`] inside a transaction (or on any connection).
pub(crate) fn read_stage_counts(conn: &Connection, id: RunId) -> Result<StageCounts, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT stage || COALESCE('/' || drop_reason, ''), COUNT(*) FROM groups
         WHERE run_id = ?1 AND eval_version IS NULL GROUP BY 1",
    )?;
    let mut c = StageCounts::default();
    for row in stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))? {
        let (stage, n) = row?;
        match stage.as_str() {
            "generate" => c.generate = n,
            "score" => c.score = n,
            "train" => c.train = n,
            "done" => c.done = n,
            "dropped/stale" => c.dropped_stale = n,
            "dropped/equal" => c.dropped_equal = n,
            "failed" => c.failed = n,
            other => return Err(StoreError::Corrupt(format!("group stage `{other}`"))),
        }
    }
    Ok(c)
}

pub(crate) fn read_progress(conn: &Connection, id: RunId) -> Result<Progress, StoreError> {
    let sql =
        format!("SELECT epoch, idx, step, policy_version, {} FROM progress WHERE run_id = ?1", COUNTERS.join(", "));
    let row = conn
        .query_row(&sql, [id], |r| {
            let u = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
            let counters = Counters {
                prompts_drawn: u(4)?,
                groups_generated: u(5)?,
                groups_scored: u(6)?,
                groups_trained: u(7)?,
                dropped_stale: u(8)?,
                dropped_equal: u(9)?,
                leases_expired: u(10)?,
                replays: u(11)?,
                late_submissions: u(12)?,
                rollbacks: u(13)?,
                groups_failed: u(14)?,
            };
            Ok(Progress {
                cursor: Cursor { epoch: u(0)? as u32, index: u(1)? },
                step: u(2)?,
                policy_version: u(3)?,
                counters,
            })
        })
        .optional()?;
    row.ok_or(StoreError::RunNotFound(id))
}

/// Adds `by` to one counter; `name` must be one of [`COUNTERS`].
pub(crate) fn bump(tx: &Transaction<'_>, id: RunId, name: &str, by: u64) -> Result<(), StoreError> {
    debug_assert!(COUNTERS.contains(&name), "unknown counter {name}");
    if by > 0 {
        tx.execute(&format!("UPDATE progress SET {name} = {name} + ?2 WHERE run_id = ?1"), params![id, by as i64])?;
    }
    Ok(())
}
