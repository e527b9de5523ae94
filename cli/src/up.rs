//! `r1ctl up`: the whole system in one process on loopback — the coordinator (SQLite and
//! run folders under `--data-dir`), the learner ranks (rank 0 serves weights), the actors
//! and the reward workers, each the same code `r1ctl serve ...` runs on its own — driving
//! one run from a spec file to the end, with a progress bar and live metrics.
//!
//! Running `up` again on the same data folder with the same spec resumes the unfinished
//! run of that name from its last checkpoint instead of starting another.

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
}

pub fn run(args: UpArgs) -> Result<()> {
    let Some(config) = args.config.clone() else {
        bail!(
            "`r1ctl up` without --config runs the laptop recipe, which is not wired in yet; \
             pass a run spec: `r1ctl up --config coordinator/examples/run.toml`"
        );
    };
    let mut spec = RunSpec::load(&config)?;
    // Relative paths in the spec are relative to its folder, as for `r1ctl submit-run`.
    let parent = config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    spec.resolve_paths(&std::path::absolute(parent)?);
    let report = up(&args, spec)?;
    println!("{report}");
    Ok(())
}

/// Runs `spec` to its end in this process; returns a summary.
pub fn up(args: &UpArgs, spec: RunSpec) -> Result<String> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    check_paths(&spec)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(rt.handle(), stop.clone());

    // The coordinator. Its address must be free: a client would otherwise reach whatever
    // already listens there.
    std::net::TcpListener::bind(&args.listen).with_context(|| {
        format!("cannot listen on {}; is another `r1ctl up` running? pick another address with --listen", args.listen)
    })?;
    let coordinator = CoordinatorConfig {
        listen: args.listen.clone(),
        data_dir: data_dir.clone(),
        ..CoordinatorConfig::default()
    };
    let (down_tx, down_rx) = tokio::sync::oneshot::channel::<()>();
    let served = rt.spawn(r1_coordinator::config::run(coordinator, async {
        let _ = down_rx.await;
    }));
    let url = format!("http://{}", args.listen);
    let client_cfg = ClientConfig::new(&url);
    let channel = rt.block_on(client::connect(&client_cfg)).with_context(|| {
        format!("the coordinator did not come up on {}; is another `r1ctl up` using that port? pick one with --listen", args.listen)
    })?;
    if served.is_finished() {
        let err = rt.block_on(served)?.err().map(|e| e.to_string()).unwrap_or_default();
        bail!("the coordinator stopped at once: {err}");
    }
    let runs = client::run_client(channel, client_cfg.max_message_bytes);
    let run_id = rt.block_on(submit_or_resume(runs.clone(), &spec))?;
    eprintln!("run {run_id} `{}`: dashboard at http://{}/, data in {}", spec.name, args.listen, data_dir.display());

    // The learner fleet (rank 0 serves weights on a free loopback port).
    let ranks = spec.fleet.learner_ranks as usize;
    let publisher = Publisher::new(run_id, max_lag(&spec) as usize + 2, DEFAULT_CHUNK_BYTES);
    let weights = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let weights_url = format!("http://{}", weights.local_addr()?);
    serve_weights(rt.handle(), &publisher, weights);
    let learner_settings = LearnerSettings::new(client_cfg.clone(), run_id, data_dir.join("checkpoints").join(format!("run-{run_id}")));
    let master = free_addr()?;
    let mut threads = Vec::new();
    for rank in 0..ranks {
        let (settings, rt_h, stop) = (learner_settings.clone(), rt.handle().clone(), stop.clone());
        let publisher = (rank == 0).then(|| publisher.clone());
        let master = master.clone();
        threads.push(std::thread::Builder::new().name(format!("learner-{rank}")).spawn(move || -> Result<String> {
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
        })?);
    }
    // Actors.
    for a in 0..spec.fleet.actors {
        let mut settings = r1_actor::ActorSettings::new(client_cfg.clone(), run_id);
        settings.learner = Some(weights_url.clone());
        settings.worker = format!("actor-{a}");
        if let r1_coordinator::spec::Algorithm::Grpo(_) = spec.algorithm {
            let (rt_h, stop) = (rt.handle().clone(), stop.clone());
            threads.push(std::thread::Builder::new().name(format!("actor-{a}")).spawn(move || -> Result<String> {
                let r = run_actor::<r1_model::CpuBackend>(settings, rt_h, Default::default(), stop)?;
                Ok(format!("actor {a}: {} groups, {} tokens, {} weight swaps", r.groups, r.tokens, r.weight_swaps))
            })?);
        }
    }
    // Reward workers.
    let mut scorers = Vec::new();
    if let r1_coordinator::spec::Algorithm::Grpo(_) = spec.algorithm {
        for w in 0..spec.fleet.reward_workers {
            let cfg = client_cfg.clone();
            scorers.push(rt.spawn(async move {
                let mut worker = r1_reward::lease_worker::LeaseWorker::connect(&cfg, run_id, &format!("reward-{w}"), 4).await?;
                worker.run(Duration::from_millis(100)).await
            }));
        }
    }

    let outcome = watch(&rt, runs.clone(), run_id, &data_dir, spec.schedule.total_steps, &stop, args.json, &threads);
    // Everyone stops when the run ends or on Ctrl-C (the learner checkpoints first).
    stop.store(true, Ordering::Relaxed);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(line)) => lines.push(line),
            Ok(Err(e)) => failed.push(format!("{e:#}")),
            Err(_) => failed.push("a worker thread panicked".into()),
        }
    }
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
    let _ = down_tx.send(());
    let _ = rt.block_on(served);
    let status = outcome?;
    if !failed.is_empty() {
        bail!("run {run_id} stopped with errors:\n  {}", failed.join("\n  "));
    }
    let state = pb::RunState::try_from(status.state).map(|s| s.as_str_name()).unwrap_or("?");
    Ok(format!(
        "run {run_id} {state} at step {}/{}\n  metrics: {}\n  checkpoints: {}\n  {}",
        status.step,
        status.total_steps,
        data_dir.join("runs").join(run_id.to_string()).join("metrics.jsonl").display(),
        learner_settings.checkpoints.display(),
        lines.join("\n  ")
    ))
}

/// Polls the run until it ends (or `stop` is set, or a worker thread dies), drawing progress.
#[allow(clippy::too_many_arguments)]
fn watch(
    rt: &tokio::runtime::Runtime,
    runs: pb::run_service_client::RunServiceClient<client::AuthChannel>,
    run_id: u64,
    data_dir: &Path,
    total: u64,
    stop: &AtomicBool,
    json: bool,
    threads: &[std::thread::JoinHandle<Result<String>>],
) -> Result<pb::RunStatus> {
    let bar = crate::progress::bar(total, "steps");
    let metrics = data_dir.join("runs").join(run_id.to_string()).join("metrics.jsonl");
    let mut printed = 0usize;
    loop {
        let status = rt
            .block_on(client::retry("Get", &RetryPolicy::idempotent(), || {
                let mut runs = runs.clone();
                async move { runs.get(pb::GetRunRequest { id: run_id }).await }
            }))?
            .into_inner();
        bar.set_position(status.step);
        let lines: Vec<String> = std::fs::read_to_string(&metrics).unwrap_or_default().lines().map(str::to_string).collect();
        for line in lines.iter().skip(printed) {
            if json {
                bar.println(line);
            } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                bar.println(summary(&v));
            }
        }
        printed = printed.max(lines.len());
        let live = matches!(pb::RunState::try_from(status.state), Ok(pb::RunState::Running | pb::RunState::Pending));
        if !live || stop.load(Ordering::Relaxed) || threads.iter().any(|t| t.is_finished()) {
            bar.finish_and_clear();
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(500));
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

/// The unfinished run of this spec's name in the data folder, or a new one.
async fn submit_or_resume(
    mut runs: pb::run_service_client::RunServiceClient<client::AuthChannel>,
    spec: &RunSpec,
) -> Result<u64> {
    let all = runs.list(pb::ListRunsRequest {}).await?.into_inner().runs;
    let want = serde_json::to_value(spec)?;
    for r in all {
        let live = matches!(pb::RunState::try_from(r.state), Ok(pb::RunState::Running | pb::RunState::Pending));
        let same = serde_json::from_str::<serde_json::Value>(&r.spec_json).is_ok_and(|s| s == want);
        if live && same {
            eprintln!("resuming run {} `{}` at step {}", r.id, r.name, r.step);
            return Ok(r.id);
        }
    }
    let status = runs
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Json(serde_json::to_string(spec)?)) })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    Ok(status.id)
}

/// Says which file of the spec is missing before anything starts.
fn check_paths(spec: &RunSpec) -> Result<()> {
    let files = [("base_model", Some(&spec.base_model)), ("dataset.path", Some(&spec.dataset.path)), ("dataset.eval_path", spec.dataset.eval_path.as_ref())];
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
fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}
