//! `r1ctl up`: the whole system in one process on loopback — the coordinator (SQLite and
//! run folders under `--data-dir`), the learner ranks (rank 0 serves weights), the actors
//! and the reward workers, each the same code `r1ctl serve ...` runs on its own — driving
//! one run from a spec file to the end, with a progress bar and live metrics.
//!
//! Running `up` again on the same data folder with the same spec resumes the unfinished
//! run of that spec from its last checkpoint instead of starting another. A copy of the data
//! folder resumes the same way: a run whose spec differs only by paths under the old folder
//! is adopted, its paths moved to the new one (`Coordinator::adopt_moved`).
//!
//! `up` is the only coordinator of its data folder (the coordinator locks it) and the only
//! fleet of its runs, so the leases a previous `up` held died with it. Every worker of an
//! `up` leases under a holder name that starts with `up-<pid>-<start ms>/`, and at start `up`
//! ends the live leases of every other `up-` holder: a resume after a crash picks up the
//! dead process's work at once instead of waiting for its leases to expire. While a run makes
//! no progress the bar says what it waits for, and a line says so every minute.
//!
//! When a worker of the run fails (a learner that cannot load its checkpoint, say), `up`
//! stops at once with that worker's error: the learners get time to write a checkpoint, the
//! others a few seconds, and one that does not stop is left behind with a line saying so.
//!
//! Without `--config`, `up` runs the laptop recipe (`recipe_up.rs`): several runs one after
//! another on the same coordinator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use clap::Args;
use r1_coordinator::config::CoordinatorConfig;
use r1_coordinator::spec::RunSpec;
use r1_learner::collective::tcp::{RingConfig, TcpRing};
use r1_learner::collective::{Collective, SingleRank};
use r1_learner::publish::{DEFAULT_CHUNK_BYTES, Publisher};
use r1_learner::service::LearnerSettings;
use r1_proto::client::{self, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;

use crate::serve::{run_actor, run_learner, serve_weights, stop_on_signals};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Run spec (TOML; see coordinator/examples/run.toml); `R1_*` variables override it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where SQLite, run folders and checkpoints live
    #[arg(long, default_value = "./r1-data")]
    data_dir: PathBuf,
    /// The coordinator's address (its dashboard is http://<listen>/)
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Print one JSON line per step instead of the progress bar
    #[arg(long)]
    json: bool,
    /// Recipe config (TOML) for the laptop recipe run without --config (see docs/reproduction.md)
    #[arg(long, conflicts_with = "config")]
    recipe: Option<PathBuf>,
    /// The laptop recipe in a few minutes: fewer steps, a smaller model; checks the plumbing
    #[arg(long, conflicts_with = "config")]
    quick: bool,
    /// Internal: run the recipe's side process (R1-Zero and the student) for the recipe in
    /// this folder; `r1ctl up` starts it itself
    #[arg(long, hide = true, conflicts_with = "config")]
    side_of: Option<PathBuf>,
}

pub fn run(args: UpArgs) -> Result<()> {
    let mut local = Local::start(&args.data_dir, &args.listen, args.json)?;
    if let Some(root) = &args.side_of {
        local = local.with_copy_root(root)?;
    }
    let result = match &args.config {
        Some(config) => {
            let mut spec = RunSpec::load(config)?;
            // Relative paths in the spec are relative to its folder, as for `r1ctl submit-run`.
            let parent = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            spec.resolve_paths(&std::path::absolute(parent)?);
            local.run(&spec).map(|f| println!("{}", f.summary))
        }
        None => match &args.side_of {
            Some(root) => crate::recipe_up::run_side(&local, args.recipe.as_deref(), args.quick, root),
            None => crate::recipe_up::run(&local, args.recipe.as_deref(), args.quick),
        },
    };
    local.shutdown();
    result
}

/// A finished (or interrupted) run.
pub struct Finished {
    pub status: pb::RunStatus,
    pub metrics: PathBuf,
    /// The run's checkpoint folder (`step-N` inside).
    pub checkpoints: PathBuf,
    pub summary: String,
}

impl Finished {
    pub fn completed(&self) -> bool {
        pb::RunState::try_from(self.status.state) == Ok(pb::RunState::Completed)
    }

    /// The checkpoint of the run's last step: a Hugging Face model folder.
    pub fn final_checkpoint(&self) -> PathBuf {
        self.checkpoints.join(format!("step-{}", self.status.step))
    }
}

/// The coordinator of `r1ctl up`, serving in this process, and what runs on it.
pub struct Local {
    rt: tokio::runtime::Runtime,
    /// `up-<pid>-<start ms>/`: the start of every lease holder name of this process.
    incarnation: String,
    core: Arc<r1_coordinator::runs::Coordinator>,
    listen: String,
    data_dir: PathBuf,
    /// The folder that is copied as a whole (`data_dir` itself, or a folder above it whose
    /// files the runs' specs name): a copy of it finds its runs again ([`Local::run`]).
    copy_root: PathBuf,
    client_cfg: ClientConfig,
    runs: pb::run_service_client::RunServiceClient<client::AuthChannel>,
    down: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), r1_coordinator::config::ConfigError>>>,
    /// Set by Ctrl-C or SIGTERM.
    pub interrupted: Arc<AtomicBool>,
    json: bool,
}

impl Local {
    /// Starts the coordinator on `listen` with its database and run folders in `data_dir`.
    pub fn start(data_dir: &Path, listen: &str, json: bool) -> Result<Local> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let rt =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
        let interrupted = Arc::new(AtomicBool::new(false));
        stop_on_signals(rt.handle(), interrupted.clone());
        let coordinator =
            CoordinatorConfig { listen: listen.into(), data_dir: data_dir.clone(), ..CoordinatorConfig::default() };
        // Checks the address, locks the data folder, opens the database and binds: a second
        // `up` on this folder or address is refused here, naming what holds it.
        let started = rt
            .block_on(r1_coordinator::config::start(coordinator))
            .with_context(|| format!("r1ctl up --listen {listen} --data-dir {}", data_dir.display()))?;
        let core = started.coordinator().clone();
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let incarnation = format!("{UP_HOLDER}{}-{since}/", std::process::id());
        let released = core.release_leases(UP_HOLDER, &incarnation)?;
        if released > 0 {
            eprintln!(
                "took back {released} leases held by the previous `r1ctl up` on this data folder; their work is handed out again now"
            );
        }
        let (down_tx, down_rx) = tokio::sync::oneshot::channel::<()>();
        let served = rt.spawn(started.serve(async {
            let _ = down_rx.await;
        }));
        let client_cfg = ClientConfig::new(format!("http://{listen}"));
        let channel = rt.block_on(client::connect(&client_cfg)).with_context(|| {
            format!("the coordinator did not come up on {listen}; pick another address with --listen")
        })?;
        if served.is_finished() {
            let err = rt.block_on(served)?.err().map(|e| e.to_string()).unwrap_or_default();
            bail!("the coordinator stopped at once: {err}");
        }
        let runs = client::run_client(channel, client_cfg.max_message_bytes);
        eprintln!("coordinator on {listen}: dashboard at http://{listen}/, data in {}", data_dir.display());
        Ok(Local {
            rt,
            incarnation,
            core,
            listen: listen.into(),
            copy_root: data_dir.clone(),
            data_dir,
            client_cfg,
            runs,
            down: Some(down_tx),
            served: Some(served),
            interrupted,
            json,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Takes `root`, a folder above the data folder, as the one copied as a whole: the side
    /// process of `r1ctl up` keeps its runs in `ROOT/side` and trains on files in `ROOT`, so
    /// a copied recipe folder is recognised only from `ROOT`.
    pub fn with_copy_root(mut self, root: &Path) -> Result<Local> {
        let root = root.canonicalize().with_context(|| format!("cannot read the folder {}", root.display()))?;
        if !self.data_dir.starts_with(&root) {
            bail!("{} is not inside {}", self.data_dir.display(), root.display());
        }
        self.copy_root = root;
        Ok(self)
    }

    /// Stops the coordinator.
    pub fn shutdown(mut self) {
        if let Some(tx) = self.down.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = self.rt.block_on(served);
        }
    }

    /// Runs `spec` to its end with its fleet in this process (resuming the unfinished run of
    /// the same spec if there is one).
    pub fn run(&self, spec: &RunSpec) -> Result<Finished> {
        // The coordinator stores specs with their derived defaults filled in; compare and
        // submit the same form, so a finished run of this spec is found again.
        let mut filled = spec.clone();
        filled.fill_defaults();
        let spec = &filled;
        check_paths(spec)?;
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let rt = &self.rt;
        let client_cfg = &self.client_cfg;
        // A run of this spec made in the folder this one was copied from.
        let core = self.core.clone();
        let (spec_c, dir) = (spec.clone(), self.copy_root.clone());
        if let Some(id) = rt.block_on(rt.spawn_blocking(move || core.adopt_moved(&spec_c, &dir)))?? {
            eprintln!(
                "run {id} `{}` was made in another data folder (this one is a copy); its paths now point here",
                spec.name
            );
        }
        let (run_id, done) = rt.block_on(submit_or_resume(self.runs.clone(), spec))?;
        let checkpoints = self.data_dir.join("checkpoints").join(format!("run-{run_id}"));
        let metrics = self.data_dir.join("runs").join(run_id.to_string()).join("metrics.jsonl");
        if let Some(status) = done {
            let summary = format!("run {run_id} `{}` already completed at step {}; reusing it", spec.name, status.step);
            return Ok(Finished { status, metrics, checkpoints, summary });
        }
        eprintln!("run {run_id} `{}`: curves and samples at http://{}/runs/{run_id}", spec.name, self.listen);
        // Workers of this run stop when it ends, or on Ctrl-C.
        let stop = Arc::new(AtomicBool::new(false));

        // The learner fleet (rank 0 serves weights on a free loopback port).
        let ranks = spec.fleet.learner_ranks as usize;
        let publisher = Publisher::new(run_id, max_lag(spec) as usize + 2, DEFAULT_CHUNK_BYTES);
        let weights = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let weights_url = format!("http://{}", weights.local_addr()?);
        serve_weights(rt.handle(), &publisher, weights, client_cfg.token.as_deref());
        let mut learner_settings = LearnerSettings::new(client_cfg.clone(), run_id, checkpoints.clone());
        learner_settings.worker = format!("{}learner", self.incarnation);
        let master = free_addr()?;
        let mut threads = Vec::new();
        for rank in 0..ranks {
            let (settings, rt_h, stop) = (learner_settings.clone(), rt.handle().clone(), stop.clone());
            let publisher = (rank == 0).then(|| publisher.clone());
            let master = master.clone();
            threads.push(std::thread::Builder::new().name(format!("learner-{rank}")).spawn(
                move || -> Result<String> {
                    let mut collective: Box<dyn Collective> = if ranks > 1 {
                        Box::new(TcpRing::join(&RingConfig {
                            rank,
                            world_size: ranks,
                            master_addr: master,
                            bind_addr: "127.0.0.1:0".into(),
                            timeout: Duration::from_secs(60),
                        })?)
                    } else {
                        Box::new(SingleRank)
                    };
                    let r = run_learner::<Autodiff<r1_model::CpuBackend>>(
                        &settings,
                        collective.as_mut(),
                        publisher.as_ref(),
                        &rt_h,
                        Default::default(),
                        stop,
                    )?;
                    Ok(format!("learner {rank}: {} steps (resumed from {})", r.steps, r.resumed_from))
                },
            )?);
        }
        let grpo = matches!(spec.algorithm, r1_coordinator::spec::Algorithm::Grpo(_));
        // Actors (GRPO only: SFT batches carry no samples).
        for a in (0..spec.fleet.actors).filter(|_| grpo) {
            let mut settings = r1_actor::ActorSettings::new(client_cfg.clone(), run_id);
            settings.learner = Some(weights_url.clone());
            settings.worker = format!("{}actor-{a}", self.incarnation);
            let (rt_h, stop) = (rt.handle().clone(), stop.clone());
            threads.push(std::thread::Builder::new().name(format!("actor-{a}")).spawn(move || -> Result<String> {
                let r = run_actor::<r1_model::CpuBackend>(settings, rt_h, Default::default(), stop)?;
                Ok(format!("actor {a}: {} groups, {} tokens, {} weight swaps", r.groups, r.tokens, r.weight_swaps))
            })?);
        }
        // Reward workers.
        let mut scorers = Vec::new();
        for w in (0..spec.fleet.reward_workers).filter(|_| grpo) {
            let cfg = client_cfg.clone();
            let name = format!("{}reward-{w}", self.incarnation);
            scorers.push(rt.spawn(async move {
                let mut worker = r1_reward::lease_worker::LeaseWorker::connect(&cfg, run_id, &name, 4).await?;
                worker.run(Duration::from_millis(100)).await
            }));
        }

        let outcome = self.watch(run_id, &metrics, spec.schedule.total_steps, &stop, &threads);
        // Everyone stops when the run ends or on Ctrl-C (the learner checkpoints first).
        stop.store(true, Ordering::Relaxed);
        let (mut lines, mut failed) = join_workers(threads, ranks);
        // Reward workers hold nothing: a lease they drop expires and is scored again later.
        for s in scorers {
            if !s.is_finished() {
                s.abort();
            }
            match rt.block_on(s) {
                Ok(Ok(n)) => lines.push(format!("reward worker: {n} groups scored")),
                Ok(Err(e)) => failed.push(e.to_string()),
                Err(e) if e.is_cancelled() => {}
                Err(e) => failed.push(e.to_string()),
            }
        }
        let status = outcome?;
        if !failed.is_empty() {
            bail!("run {run_id} stopped with errors:\n  {}", failed.join("\n  "));
        }
        let state = pb::RunState::try_from(status.state).map(|s| s.as_str_name()).unwrap_or("?");
        let summary = format!(
            "run {run_id} `{}` {state} at step {}/{}\n  metrics: {}\n  checkpoints: {}\n  {}",
            spec.name,
            status.step,
            status.total_steps,
            metrics.display(),
            checkpoints.display(),
            lines.join("\n  ")
        );
        Ok(Finished { status, metrics, checkpoints, summary })
    }

    /// Polls the run until it ends (or Ctrl-C, or a worker thread dies), drawing progress and
    /// saying what the run waits for while it makes none.
    fn watch(
        &self,
        run_id: u64,
        metrics: &Path,
        total: u64,
        stop: &AtomicBool,
        threads: &[std::thread::JoinHandle<Result<String>>],
    ) -> Result<pb::RunStatus> {
        let bar = crate::progress::bar(total, "steps");
        let mut printed = 0usize;
        // An evaluation usually finishes after its step's line was printed: the coordinator
        // then rewrites that line with `eval_accuracy`, shown on its own when it appears.
        let mut evals_shown = std::collections::HashSet::new();
        let mut waiting = Waiting::default();
        loop {
            let status = self.rt.block_on(client::get_run(&self.runs, &RetryPolicy::idempotent(), run_id))?;
            bar.set_position(status.step);
            let what = waiting_for(&status);
            bar.set_message(what.clone());
            if let Some(line) = waiting.update(&status, &what, std::time::Instant::now()) {
                bar.suspend(|| eprintln!("{line}"));
            }
            let live =
                matches!(pb::RunState::try_from(status.state), Ok(pb::RunState::Running | pb::RunState::Pending));
            if !live {
                // The coordinator rewrites `metrics.jsonl` just after the commit that ended
                // the run (with the last evaluation in it): write it from the store now, so the
                // last lines are shown and the file this returns is whole.
                let core = self.core.clone();
                if let Err(e) = self.rt.block_on(self.rt.spawn_blocking(move || core.write_metrics(run_id as i64)))? {
                    tracing::warn!(run_id, "cannot write metrics.jsonl: {e}");
                }
            }
            let lines: Vec<String> =
                std::fs::read_to_string(metrics).unwrap_or_default().lines().map(str::to_string).collect();
            // Lines go to stdout (JSON) or stderr (text) even when the bar is hidden.
            for (i, line) in lines.iter().enumerate() {
                // Printed lines matter again only once they carry an evaluation.
                if i < printed && !line.contains("eval_accuracy") {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let step = v.get("step").and_then(|x| x.as_u64()).unwrap_or(0);
                let eval = v.get("eval_accuracy").and_then(|x| x.as_f64());
                let eval_new = eval.is_some() && evals_shown.insert(step);
                if i >= printed {
                    if self.json {
                        bar.suspend(|| println!("{line}"));
                    } else {
                        bar.suspend(|| eprintln!("{}", summary(&v)));
                    }
                } else if let (true, Some(x)) = (eval_new, eval) {
                    if self.json {
                        bar.suspend(|| println!("{}", serde_json::json!({"step": step, "eval_accuracy": x})));
                    } else {
                        bar.suspend(|| eprintln!("step {step:>4}  EVAL pass@1 {x:.3}"));
                    }
                }
            }
            printed = printed.max(lines.len());
            let interrupted = self.interrupted.load(Ordering::Relaxed);
            if !live || interrupted || stop.load(Ordering::Relaxed) || threads.iter().any(|t| t.is_finished()) {
                bar.finish_and_clear();
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The start of every lease holder name of an `up` fleet.
const UP_HOLDER: &str = "up-";

/// How long the non-learner workers get to stop once the learners have.
const GRACE: Duration = Duration::from_secs(10);

/// Joins the worker threads after `stop` was set: the learners (the first `ranks`) as long
/// as they take (they checkpoint), the others for [`GRACE`] more. Returns their summary
/// lines and their errors; one that does not stop in time is reported and left behind
/// (the process is about to end).
fn join_workers(threads: Vec<std::thread::JoinHandle<Result<String>>>, ranks: usize) -> (Vec<String>, Vec<String>) {
    let (mut lines, mut failed) = (Vec::new(), Vec::new());
    let mut join = |t: std::thread::JoinHandle<Result<String>>| match t.join() {
        Ok(Ok(line)) => lines.push(line),
        Ok(Err(e)) => failed.push(format!("{e:#}")),
        Err(_) => failed.push("a worker thread panicked".into()),
    };
    let mut threads = threads.into_iter();
    let learners: Vec<_> = threads.by_ref().take(ranks).collect();
    let others: Vec<_> = threads.collect();
    // A learner that failed says why at once; the others are joined in turn.
    for t in learners {
        join(t);
    }
    let deadline = std::time::Instant::now() + GRACE;
    let mut stuck = Vec::new();
    for t in others {
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if t.is_finished() {
            join(t);
        } else {
            stuck.push(t.thread().name().unwrap_or("a worker").to_string());
        }
    }
    if !stuck.is_empty() {
        lines.push(format!("{} did not stop within {}s and were left behind", stuck.join(", "), GRACE.as_secs()));
    }
    (lines, failed)
}

/// What a run is doing or waiting for, from its queues: the progress bar's message.
fn waiting_for(s: &pb::RunStatus) -> String {
    let q = s.queues.unwrap_or_default();
    match pb::RunState::try_from(s.state) {
        Ok(pb::RunState::Running) => {}
        Ok(state) => return state.as_str_name().to_lowercase(),
        Err(_) => return String::new(),
    }
    format!("{} generating · {} scoring · {} ready to train", q.generate, q.score, q.train)
}

/// Says, once a minute, what a run that makes no progress is waiting for.
#[derive(Default)]
struct Waiting {
    /// The step and counters last seen to change, and when.
    seen: Option<(u64, u64, u64, std::time::Instant)>,
    said: Option<std::time::Instant>,
}

impl Waiting {
    /// A line to print when the run has not moved for a minute (and a minute after the last).
    fn update(&mut self, s: &pb::RunStatus, what: &str, now: std::time::Instant) -> Option<String> {
        const QUIET: Duration = Duration::from_secs(60);
        let c = s.counters.unwrap_or_default();
        let key = (s.step, c.groups_generated, c.groups_scored);
        match self.seen {
            Some((step, g, sc, _)) if (step, g, sc) == key => {}
            _ => {
                self.seen = Some((key.0, key.1, key.2, now));
                self.said = None;
                return None;
            }
        }
        let since = self.seen.map_or(now, |x| x.3);
        let live = matches!(pb::RunState::try_from(s.state), Ok(pb::RunState::Running));
        if !live || now.duration_since(since) < QUIET || self.said.is_some_and(|t| now.duration_since(t) < QUIET) {
            return None;
        }
        self.said = Some(now);
        Some(format!(
            "run {} has made no progress for {}s at step {}/{}: {what}; workers hold the rest of its work under leases (see the dashboard), which are handed out again when they expire",
            s.id,
            now.duration_since(since).as_secs(),
            s.step,
            s.total_steps
        ))
    }
}

/// One metrics line as text: step, reward, accuracy, format, length, KL, entropy, eval.
fn summary(v: &serde_json::Value) -> String {
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
    let mut s = format!("step {:>4}", v.get("step").and_then(|x| x.as_u64()).unwrap_or(0));
    for (k, label) in [
        ("reward_mean", "reward"),
        ("accuracy", "acc"),
        ("format_rate", "format"),
        ("response_len_mean", "len"),
        ("kl", "kl"),
        ("entropy", "entropy"),
        ("tokens_per_s", "tok/s"),
        ("eval_accuracy", "EVAL pass@1"),
    ] {
        if let Some(x) = f(k) {
            s.push_str(&format!("  {label} {x:.3}"));
        }
    }
    s
}

/// The run of this exact spec already in the data folder — unfinished (resumed) or
/// completed (returned with its status, nothing to do) — or a new one.
async fn submit_or_resume(
    mut runs: pb::run_service_client::RunServiceClient<client::AuthChannel>,
    spec: &RunSpec,
) -> Result<(u64, Option<pb::RunStatus>)> {
    let all = runs.list(pb::ListRunsRequest {}).await?.into_inner().runs;
    let want = serde_json::to_value(spec)?;
    for r in all {
        if serde_json::from_str::<serde_json::Value>(&r.spec_json).map_or(true, |s| s != want) {
            continue;
        }
        match pb::RunState::try_from(r.state) {
            Ok(pb::RunState::Running | pb::RunState::Pending) => {
                eprintln!("resuming run {} `{}` at step {}", r.id, r.name, r.step);
                return Ok((r.id, None));
            }
            Ok(pb::RunState::Completed) => return Ok((r.id, Some(r))),
            _ => {}
        }
    }
    let status = runs
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Json(serde_json::to_string(spec)?)) })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    Ok((status.id, None))
}

/// Says which file of the spec is missing before anything starts.
fn check_paths(spec: &RunSpec) -> Result<()> {
    let files = [
        ("base_model", Some(&spec.base_model)),
        ("dataset.path", Some(&spec.dataset.path)),
        ("dataset.eval_path", spec.dataset.eval_path.as_ref()),
    ];
    for (field, p) in files {
        if let Some(p) = p.filter(|p| !p.exists()) {
            bail!("run spec `{field}`: {} does not exist", p.display());
        }
    }
    Ok(())
}

fn max_lag(spec: &RunSpec) -> u64 {
    match &spec.algorithm {
        r1_coordinator::spec::Algorithm::Grpo(g) => g.max_policy_lag,
        r1_coordinator::spec::Algorithm::Sft(_) => 0,
    }
}

/// A free loopback address for the learner ring's rendezvous.
pub(crate) fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}
