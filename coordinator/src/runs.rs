//! The coordinator's core: submit, get, list and cancel runs, and keep one [`Scheduler`]
//! per running run. The gRPC services are thin layers over [`Coordinator`].
//!
//! Submitting checks the spec and loads the whole dataset (every row is validated) before
//! anything is recorded, so a bad run is refused, never started. A submitted GRPO run
//! starts at once: it is `running` and its work is handed out to whoever leases it.
//! [`Coordinator::open`] resumes every run that was running: its dataset is loaded again
//! and must have the fingerprint recorded at submission, otherwise the run is failed with a
//! message saying why (resuming on a changed file would silently change the prompts). A
//! dataset that cannot be read at that moment (a volume not mounted yet) fails nothing: the
//! run is resumed on its next lease.
//!
//! With run folders ([`Coordinator::with_run_folders`]) each run gets `<id>/spec.json`, its
//! resolved spec, `<id>/metrics.jsonl`, one line per learner step, and `<id>/samples/`, a
//! few scored groups per step ([`crate::samples`]). The coordinator also keeps the
//! [`Registry`] of workers that called in.
//!
//! A run's name is at most [`MAX_NAME_BYTES`] bytes with no control characters, and its
//! spec at most [`MAX_SPEC_BYTES`] as JSON: both are stored, listed and shown on every page.
//!
//! Two things serve `r1ctl up`, the one coordinator that knows it is the only fleet of its
//! runs: [`Coordinator::release_leases`] hands back at once the leases of a dead incarnation
//! (instead of waiting out their deadlines), and [`Coordinator::adopt_moved`] finds the runs
//! of a data folder that was copied or moved: same spec, paths under the old folder.
//!
//! The methods block (SQLite, file reads): call them from `spawn_blocking` in async code.
//!
//! Limits: runs are not queued for capacity (`pending` is only the instant between
//! recording and start).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::dataset::{Dataset, DatasetError};
use crate::lease::{LeaseError, LeaseTtl, Scheduler};
use crate::spec::{RunSpec, SpecError};
use crate::store::{CheckpointRecord, Clock, Millis, Progress, Run, RunId, RunState, StageCounts, Store, StoreError};
use crate::workers::Registry;

/// A run with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStatus {
    pub run: Run,
    pub progress: Progress,
    pub stages: StageCounts,
    /// The latest finished evaluation: (policy version, pass@1).
    pub last_eval: Option<(u64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("cannot write run folder {path}: {source}; check the data folder's disk and permissions")]
    RunFolder { path: PathBuf, source: std::io::Error },
    #[error("run {0} is not running; submit a new run or check `r1ctl status {0}`")]
    NotRunning(RunId),
    #[error("run spec `{field}` is {len} bytes; the limit is {limit} bytes, shorten it")]
    TooLong { field: &'static str, len: usize, limit: usize },
    #[error("run spec `name` has a control character at byte {0}; use printable text")]
    NameControl(usize),
    #[error(
        "run {run} is claimed by the learner fleet `{holder}` until unix ms {deadline_ms}; two fleets never train one run: stop that fleet, or wait for its claim to lapse"
    )]
    ClaimHeld { run: RunId, holder: String, deadline_ms: Millis },
}

/// The longest run name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The largest run spec, in bytes of its JSON form.
pub const MAX_SPEC_BYTES: usize = 256 << 10;

/// Refuses a name or spec past its limit, before anything is stored.
pub fn check_size(spec: &RunSpec) -> Result<(), RunsError> {
    let name = &spec.name;
    if name.len() > MAX_NAME_BYTES {
        return Err(RunsError::TooLong { field: "name", len: name.len(), limit: MAX_NAME_BYTES });
    }
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(RunsError::NameControl(at));
    }
    let len = serde_json::to_string(spec).map_or(0, |s| s.len());
    if len > MAX_SPEC_BYTES {
        return Err(RunsError::TooLong { field: "(the whole spec)", len, limit: MAX_SPEC_BYTES });
    }
    Ok(())
}

/// Runs and their schedulers over one store.
pub struct Coordinator {
    store: Mutex<Store>,
    clock: Arc<dyn Clock>,
    ttl: LeaseTtl,
    schedulers: Mutex<HashMap<RunId, Arc<Scheduler>>>,
    run_folders: Option<PathBuf>,
    /// Held while `metrics.jsonl` is read from the store and written, so that concurrent
    /// writers (a step, an evaluation, a rollback) neither race on the temporary file nor
    /// put an older view in place after a newer one.
    metrics_writer: Mutex<()>,
    /// Groups kept per step for people to read ([`crate::samples`]).
    samples_per_step: u32,
    /// The workers that called in ([`crate::workers`]).
    workers: Registry,
    /// How long a learner fleet's run claim lasts without a renewal ([`crate::pools`]).
    claim_ms: Millis,
}

/// Groups kept per step by default ([`Coordinator::with_samples_per_step`]).
pub const DEFAULT_SAMPLES_PER_STEP: u32 = 2;

/// How long a worker may stay silent before it is shown as gone, by default.
pub const DEFAULT_WORKER_GONE_AFTER_MS: Millis = 180_000;

impl Coordinator {
    /// Opens the database at `path` and resumes its running runs.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, ttl: LeaseTtl) -> Result<Coordinator, RunsError> {
        Coordinator::with_store(Store::open(path)?, clock, ttl)
    }

    /// Takes an open store and resumes its running runs.
    pub fn with_store(store: Store, clock: Arc<dyn Clock>, ttl: LeaseTtl) -> Result<Coordinator, RunsError> {
        let core = Coordinator {
            store: Mutex::new(store),
            clock,
            ttl,
            schedulers: Mutex::new(HashMap::new()),
            run_folders: None,
            metrics_writer: Mutex::new(()),
            samples_per_step: DEFAULT_SAMPLES_PER_STEP,
            workers: Registry::new(DEFAULT_WORKER_GONE_AFTER_MS),
            claim_ms: crate::pools::DEFAULT_CLAIM_MS,
        };
        let running: Vec<RunId> =
            core.store().runs()?.into_iter().filter(|r| r.state == RunState::Running).map(|r| r.id).collect();
        for id in running {
            // A dataset that cannot be read now is retried on the run's next lease.
            if let Err(e) = core.scheduler(id) {
                tracing::warn!(run = id, error = %e, "not resumed yet");
            }
        }
        Ok(core)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedulers(&self) -> MutexGuard<'_, HashMap<RunId, Arc<Scheduler>>> {
        self.schedulers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the spec and the whole dataset, records the run and starts it.
    pub fn submit(&self, spec: RunSpec) -> Result<RunStatus, RunsError> {
        check_size(&spec)?;
        spec.validate()?;
        let dataset = Arc::new(Dataset::load(&spec.dataset)?);
        let now = self.clock.now();
        let mut store = self.store();
        let id = store.create_run(&spec, dataset.fingerprint(), now)?;
        let run = store.set_state(id, RunState::Running, "", now)?;
        self.schedulers().insert(id, Arc::new(Scheduler::new(&run, dataset, self.ttl)?));
        if let Some(dir) = self.run_folder(id)? {
            let spec = serde_json::to_string_pretty(&run.spec).unwrap_or_default();
            write_atomic(&dir.join("spec.json"), spec.as_bytes())?;
        }
        tracing::info!(run = id, name = %run.spec.name, "submitted");
        status(&store, id)
    }

    pub fn get(&self, id: RunId) -> Result<RunStatus, RunsError> {
        status(&self.store(), id)
    }

    /// Every run, newest first.
    pub fn list(&self) -> Result<Vec<RunStatus>, RunsError> {
        let store = self.store();
        store.runs()?.into_iter().map(|r| status(&store, r.id)).collect()
    }

    /// Cancels a pending or running run; its leases are refused from then on.
    pub fn cancel(&self, id: RunId, reason: &str) -> Result<RunStatus, RunsError> {
        let mut store = self.store();
        let reason = if reason.is_empty() { "cancelled by request" } else { reason };
        store.set_state(id, RunState::Cancelled, reason, self.clock.now())?;
        self.schedulers().remove(&id);
        tracing::info!(run = id, reason, "cancelled");
        status(&store, id)
    }

    /// The scheduler of a running run, for the worker-facing services.
    pub fn scheduler(&self, id: RunId) -> Result<Arc<Scheduler>, RunsError> {
        if let Some(s) = self.schedulers().get(&id) {
            return Ok(s.clone());
        }
        let run = self.store().run(id)?;
        if run.state != RunState::Running {
            return Err(RunsError::NotRunning(id));
        }
        // Resuming after a restart: the dataset must be the one the run was submitted with.
        // An unreadable file is an error for this call only; a changed one fails the run.
        let changed = |detail: String| {
            format!(
                "dataset {} changed since the run was submitted{detail}; restore it or submit a new run",
                run.spec.dataset.path.display()
            )
        };
        let checked = match Dataset::load(&run.spec.dataset) {
            Err(e @ DatasetError::Io { .. }) => return Err(e.into()),
            Err(e) => Err(changed(format!(" and no longer loads ({e})"))),
            Ok(ds) if ds.fingerprint() != run.dataset_fingerprint => Err(changed(String::new())),
            Ok(ds) => Ok(ds),
        };
        let dataset = match checked {
            Ok(ds) => ds,
            Err(why) => {
                tracing::warn!(run = id, %why, "failing the run");
                self.store().set_state(id, RunState::Failed, &why, self.clock.now())?;
                return Err(RunsError::NotRunning(id));
            }
        };
        let sched = Arc::new(Scheduler::new(&run, Arc::new(dataset), self.ttl)?);
        tracing::info!(run = id, "resumed");
        Ok(self.schedulers().entry(id).or_insert(sched).clone())
    }

    /// Records a checkpoint the learner wrote after `step` (see [`Store::record_checkpoint`]).
    pub fn record_checkpoint(&self, id: RunId, step: u64, path: &str) -> Result<CheckpointRecord, RunsError> {
        Ok(self.store().record_checkpoint(id, step, path, self.clock.now())?)
    }

    /// Rolls running run `id` back to its checkpoint of `step` (see [`crate::rollback`]) once
    /// per idempotency `key`, and rewrites its `metrics.jsonl` to match.
    pub fn rollback(&self, id: RunId, step: u64, key: &str) -> Result<crate::rollback::Rollback, RunsError> {
        let done = crate::rollback::rollback(&mut self.store(), id, step, key, self.clock.now())?;
        tracing::info!(
            run = id,
            from = done.from_step,
            to = step,
            removed = done.groups_removed,
            restored = done.groups_restored,
            "rolled back"
        );
        self.write_metrics(id)?;
        if let Some(dir) = self.run_folder(id)? {
            crate::samples::remove_after(&dir, step)?;
        }
        Ok(done)
    }

    /// A run's checkpoint records, oldest first.
    pub fn checkpoints(&self, id: RunId) -> Result<Vec<CheckpointRecord>, RunsError> {
        Ok(self.store().checkpoints(id)?)
    }

    /// Keeps a folder per run under `dir`: `<dir>/<id>/spec.json` (the resolved spec,
    /// written on submit) and `metrics.jsonl` (see [`Coordinator::write_metrics`]).
    pub fn with_run_folders(mut self, dir: PathBuf) -> Coordinator {
        self.run_folders = Some(dir);
        self
    }

    /// Keeps `n` groups per step in the run folder ([`crate::samples`]); 0 keeps none.
    pub fn with_samples_per_step(mut self, n: u32) -> Coordinator {
        self.samples_per_step = n;
        self
    }

    pub fn samples_per_step(&self) -> u32 {
        self.samples_per_step
    }

    /// Shows a worker as gone after `ms` without a call ([`crate::workers`]).
    pub fn with_worker_gone_after(mut self, ms: Millis) -> Coordinator {
        self.workers = Registry::new(ms);
        self
    }

    /// A learner fleet's run claim lasts `ms` without a renewal ([`crate::pools`]).
    pub fn with_claim_ms(mut self, ms: Millis) -> Coordinator {
        self.claim_ms = ms.max(1);
        self
    }

    pub fn claim_ms(&self) -> Millis {
        self.claim_ms
    }

    /// The workers that called in.
    pub fn workers(&self) -> &Registry {
        &self.workers
    }

    /// The run's folder if run folders are kept (whether or not it exists yet).
    pub fn run_dir(&self, id: RunId) -> Option<PathBuf> {
        self.run_folders.as_ref().map(|root| root.join(id.to_string()))
    }

    /// The run's folder, created if needed; `None` without run folders.
    pub fn run_folder(&self, id: RunId) -> Result<Option<PathBuf>, RunsError> {
        let Some(root) = &self.run_folders else {
            return Ok(None);
        };
        let dir = root.join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|source| RunsError::RunFolder { path: dir.clone(), source })?;
        Ok(Some(dir))
    }

    /// Rewrites the run's `metrics.jsonl` from the store: one JSON object per step, in
    /// order, holding `step` (the number of updates done: the first update's line is step 1,
    /// step 0 is the state before any update), the learner's metrics of that update, and
    /// `eval_accuracy` (pass@1) on the steps whose evaluation is complete. The store is the source of truth, so replays and restarts never duplicate
    /// or lose a line.
    pub fn write_metrics(&self, id: RunId) -> Result<(), RunsError> {
        let Some(dir) = self.run_folder(id)? else {
            return Ok(());
        };
        let _writer = self.metrics_writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for line in self.metric_lines(id, None)? {
            serde_json::to_writer(&mut out, &line).expect("a JSON map serialises");
            out.push(b'\n');
        }
        write_atomic(&dir.join("metrics.jsonl"), &out)
    }

    /// The lines of `metrics.jsonl` (see [`Coordinator::write_metrics`]) with `step` past
    /// `after` (all with `None`), read from the store, in step order.
    pub fn metric_lines(
        &self,
        id: RunId,
        after: Option<u64>,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, RunsError> {
        let mut lines: std::collections::BTreeMap<u64, serde_json::Map<String, serde_json::Value>> = Default::default();
        let (steps, evals) = {
            let store = self.store();
            (step_metrics_after(&store, id, after)?, store.evals(id)?)
        };
        let evals = evals.into_iter().filter(|(version, _, _)| after.is_none_or(|a| *version > a));
        for (step, metrics) in steps {
            if let serde_json::Value::Object(m) = metrics {
                lines.entry(step + 1).or_default().extend(m.into_iter().filter(|(k, _)| k != "step"));
            }
        }
        for (version, _, accuracy) in evals {
            if let Some(a) = accuracy {
                lines.entry(version).or_default().insert("eval_accuracy".into(), a.into());
            }
        }
        Ok(lines
            .into_iter()
            .map(|(step, mut line)| {
                line.insert("step".into(), step.into());
                line
            })
            .collect())
    }

    /// Ends every live lease whose holder starts with `prefix` but not with `keep` (its work
    /// is handed out again at once, counted in `leases_expired`); returns how many ended.
    /// `r1ctl up` calls it at start with its own holder prefix and this incarnation's: the
    /// leases of the process that died are no one's, and waiting out their deadlines (minutes)
    /// would only stall the run.
    pub fn release_leases(&self, prefix: &str, keep: &str) -> Result<usize, RunsError> {
        let now = self.clock.now();
        let n = self
            .store()
            .conn
            .execute(
                "UPDATE leases SET deadline_ms = ?1 WHERE deadline_ms > ?1
                 AND substr(holder, 1, length(?2)) = ?2 AND substr(holder, 1, length(?3)) != ?3",
                rusqlite::params![now, prefix, keep],
            )
            .map_err(StoreError::from)?;
        if n > 0 {
            tracing::info!(leases = n, prefix, "released the leases of a dead incarnation");
        }
        Ok(n)
    }

    /// The unfinished or completed run of `spec` made in another data folder, if this
    /// folder is a copy (or a move) of it: a run whose spec is `spec` except for paths
    /// under `data_dir`, which it has under another folder with the same tails (`old/x/y`
    /// for `data_dir/x/y`, the same old folder for every path), and whose dataset has the
    /// fingerprint recorded at submission. Its stored spec then takes `spec`'s paths, and its
    /// checkpoint records under the old folder move here too, so every worker reads the
    /// files of this folder. `None` when no run matches.
    pub fn adopt_moved(&self, spec: &RunSpec, data_dir: &Path) -> Result<Option<RunId>, RunsError> {
        let runs = self.store().runs()?;
        for run in runs {
            if !matches!(run.state, RunState::Pending | RunState::Running | RunState::Completed) || &run.spec == spec {
                continue;
            }
            let Some(old_root) = moved(&run.spec, spec, data_dir) else {
                continue;
            };
            let fingerprint = Dataset::load(&spec.dataset)?.fingerprint().to_string();
            if fingerprint != run.dataset_fingerprint {
                continue;
            }
            self.store().relocate(run.id, spec, &old_root, data_dir)?;
            self.schedulers().remove(&run.id);
            if let Some(dir) = self.run_folder(run.id)? {
                let text = serde_json::to_string_pretty(spec).unwrap_or_default();
                write_atomic(&dir.join("spec.json"), text.as_bytes())?;
            }
            tracing::info!(run = run.id, data_dir = %data_dir.display(), "adopted a run of a copied data folder");
            return Ok(Some(run.id));
        }
        Ok(None)
    }

    /// Runs `f` with the store locked, e.g. to lease with a [`Scheduler`].
    pub fn with_store_locked<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self.store())
    }

    pub fn now(&self) -> crate::store::Millis {
        self.clock.now()
    }
}

/// The learner's metrics of the steps whose line comes after `after` (stored steps are
/// 0-based: line N holds stored step N − 1), in order; only those rows are read.
fn step_metrics_after(
    store: &Store,
    id: RunId,
    after: Option<u64>,
) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
    let Some(after) = after else {
        return store.step_metrics(id);
    };
    let mut stmt =
        store.conn.prepare("SELECT step, metrics FROM step_metrics WHERE run_id = ?1 AND step >= ?2 ORDER BY step")?;
    let rows = stmt.query_map(rusqlite::params![id, after.min(i64::MAX as u64) as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (step, m) = row?;
        Ok((step as u64, serde_json::from_str(&m).map_err(|e| StoreError::Corrupt(e.to_string()))?))
    })
    .collect()
}

/// The folder `old` was made in when it is `new` made in another data folder: equal but for
/// the paths of `new` under `data_dir`, which `old` has under that one other folder with the
/// same tails.
fn moved(old: &RunSpec, new: &RunSpec, data_dir: &Path) -> Option<PathBuf> {
    let paths = |s: &RunSpec| [Some(s.base_model.clone()), Some(s.dataset.path.clone()), s.dataset.eval_path.clone()];
    let mut root: Option<PathBuf> = None;
    for (o, n) in paths(old).into_iter().zip(paths(new)) {
        let (o, n) = match (o, n) {
            (None, None) => continue,
            (Some(o), Some(n)) => (o, n),
            _ => return None,
        };
        if o == n {
            continue;
        }
        let Ok(tail) = n.strip_prefix(data_dir) else {
            return None;
        };
        let o_root = o.ancestors().nth(tail.components().count()).filter(|r| r.join(tail) == o)?;
        match &root {
            Some(r) if r != o_root => return None,
            _ => root = Some(o_root.to_path_buf()),
        }
    }
    // Equal once the paths are the same.
    let mut relocated = old.clone();
    relocated.base_model = new.base_model.clone();
    relocated.dataset.path = new.dataset.path.clone();
    relocated.dataset.eval_path = new.dataset.eval_path.clone();
    root.filter(|_| &relocated == new)
}

fn status(store: &Store, id: RunId) -> Result<RunStatus, RunsError> {
    Ok(RunStatus {
        run: store.run(id)?,
        progress: store.progress(id)?,
        stages: store.stage_counts(id)?,
        last_eval: store.evals(id)?.into_iter().filter_map(|(v, _, a)| Some((v, a?))).next_back(),
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunsError> {
    let tmp = path.with_extension("tmp");
    let err = |source| RunsError::RunFolder { path: path.into(), source };
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
