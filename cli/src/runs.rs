//! `r1ctl submit-run`, `status`, `runs`, `cancel`, `logs` against a coordinator, and
//! `r1ctl serve coordinator` to run one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use r1_coordinator::config::CoordinatorConfig;
use r1_coordinator::spec::RunSpec;
use r1_proto::client::{self, AuthChannel, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use serde_json::json;

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// The coordinator's address
    #[arg(long, env = "R1_COORDINATOR", default_value = "http://127.0.0.1:7070")]
    coordinator: String,
    /// Bearer token, when the coordinator requires one
    #[arg(long, env = "R1_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Run spec (TOML; see coordinator/examples/run.toml). `R1_*` variables override it
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run id
    run: u64,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Run id
    run: u64,
    /// Recorded as the run's message
    #[arg(long, default_value = "cancelled with r1ctl")]
    reason: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Run id
    run: u64,
    /// Keep printing changes until the run ends
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Subcommand, Debug)]
pub enum ServeCommand {
    /// The coordinator: runs, datasets, leases, /metrics and the dashboard, until Ctrl-C
    Coordinator(ServeCoordinatorArgs),
    /// An actor: leases prompts of one run, samples G completions each, pulls new weights
    Actor(crate::serve::ServeActorArgs),
    /// A learner rank: trains one run's batches (rank 0 also serves weights and checkpoints)
    Learner(crate::serve::ServeLearnerArgs),
}

#[derive(Args, Debug)]
pub struct ServeCoordinatorArgs {
    /// Check the config (file, `R1_COORDINATOR_*` variables, flags) and exit: 0 and a summary
    /// when the coordinator would start, an error naming the key otherwise. Opens no port and
    /// no database
    #[arg(long)]
    check: bool,
    /// Config file (TOML); `R1_COORDINATOR_*` variables override it, flags override both
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on
    #[arg(long)]
    listen: Option<String>,
    /// Folder of the database and run folders
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

type Client = RunServiceClient<AuthChannel>;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

impl Remote {
    /// How to reach the coordinator: the shared connector's defaults with this token.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.coordinator.clone()).with_token(self.token.clone())
    }
}

async fn client(r: &Remote) -> Result<Client> {
    let cfg = r.client_config();
    let channel = client::connect(&cfg)
        .await
        .context("is `r1ctl serve coordinator` running, and is --coordinator/R1_COORDINATOR its address?")?;
    Ok(client::run_client(channel, cfg.max_message_bytes))
}

/// Reads are retried for a short while (a coordinator restarting); changes are sent once.
fn read_retry() -> RetryPolicy {
    RetryPolicy { max_elapsed: std::time::Duration::from_secs(15), ..RetryPolicy::idempotent() }
}

fn state_name(s: i32) -> &'static str {
    match pb::RunState::try_from(s).unwrap_or(pb::RunState::Unspecified) {
        pb::RunState::Pending => "pending",
        pb::RunState::Running => "running",
        pb::RunState::Completed => "completed",
        pb::RunState::Failed => "failed",
        pb::RunState::Cancelled => "cancelled",
        pb::RunState::Unspecified => "unknown",
    }
}

fn status_json(s: &pb::RunStatus) -> serde_json::Value {
    let c = s.counters.unwrap_or_default();
    let q = s.queues.unwrap_or_default();
    json!({
        "id": s.id, "name": s.name, "state": state_name(s.state), "message": s.message,
        "step": s.step, "total_steps": s.total_steps, "policy_version": s.policy_version,
        "epoch": s.epoch, "index": s.index, "eval_step": s.eval_step, "eval_accuracy": s.eval_accuracy,
        "counters": {"prompts_drawn": c.prompts_drawn, "groups_generated": c.groups_generated,
            "groups_scored": c.groups_scored, "groups_trained": c.groups_trained, "dropped_stale": c.dropped_stale,
            "dropped_equal": c.dropped_equal, "leases_expired": c.leases_expired,
            "replays": c.replays, "late_submissions": c.late_submissions, "rollbacks": c.rollbacks,
            "groups_failed": c.groups_failed},
        "queues": {"generate": q.generate, "score": q.score, "train": q.train, "failed": q.failed},
    })
}

fn status_line(s: &pb::RunStatus) -> String {
    let eval = s.eval_accuracy.map(|a| format!(", eval accuracy {a:.3}")).unwrap_or_default();
    let msg = if s.message.is_empty() { String::new() } else { format!(" — {}", s.message) };
    let failed = s.counters.as_ref().map_or(0, |c| c.groups_failed);
    let failed = if failed > 0 { format!(", {failed} groups failed") } else { String::new() };
    format!(
        "run {} `{}`: {} at step {}/{}{eval}{failed}{msg}",
        s.id,
        s.name,
        state_name(s.state),
        s.step,
        s.total_steps
    )
}

fn print(remote: &Remote, s: &pb::RunStatus) {
    if remote.json {
        println!("{}", status_json(s));
    } else {
        println!("{}", status_line(s));
    }
}

pub fn submit(a: SubmitArgs) -> Result<()> {
    let mut spec = RunSpec::load(&a.file).with_context(|| format!("{} is not a valid run spec", a.file.display()))?;
    // `s.toml` has the parent `` (empty), which std::path::absolute refuses.
    let parent = a.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base =
        std::path::absolute(parent).with_context(|| format!("cannot resolve the folder of {}", a.file.display()))?;
    spec.resolve_paths(&base);
    let json = serde_json::to_string(&spec)?;
    runtime()?.block_on(async {
        let status = client(&a.remote)
            .await?
            .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Json(json)) })
            .await
            .map_err(|s| anyhow::anyhow!("the coordinator refused the run: {}", s.message()))?
            .into_inner();
        print(&a.remote, &status);
        Ok(())
    })
}

pub fn status(a: RunArgs) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.remote).await?;
        let s = get(&c, a.run).await?;
        print(&a.remote, &s);
        Ok(())
    })
}

async fn get(c: &Client, id: u64) -> Result<pb::RunStatus> {
    client::get_run(c, &read_retry(), id).await.map_err(|s| anyhow::anyhow!("{}", s.message()))
}

pub fn list(r: Remote) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&r).await?;
        let runs = client::retry("List", &read_retry(), || {
            let mut c = c.clone();
            async move { c.list(pb::ListRunsRequest {}).await }
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner()
        .runs;
        if r.json {
            println!("{}", serde_json::Value::Array(runs.iter().map(status_json).collect()));
        } else if runs.is_empty() {
            println!("no runs; submit one with `r1ctl submit-run FILE`");
        } else {
            runs.iter().for_each(|s| println!("{}", status_line(s)));
        }
        Ok(())
    })
}

pub fn cancel(a: CancelArgs) -> Result<()> {
    runtime()?.block_on(async {
        let s = client(&a.remote)
            .await?
            .cancel(pb::CancelRunRequest { id: a.run, reason: a.reason.clone() })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        print(&a.remote, &s.into_inner());
        Ok(())
    })
}

pub fn logs(a: LogsArgs) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.remote).await?;
        if !a.follow {
            print(&a.remote, &get(&c, a.run).await?);
            return Ok(());
        }
        // A coordinator restart breaks the stream: watch again, printing only what changed.
        let mut last: Option<pb::RunStatus> = None;
        loop {
            let mut stream = client::retry("Watch", &read_retry(), || {
                let mut c = c.clone();
                async move { c.watch(pb::WatchRunRequest { id: a.run }).await }
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(s)) => {
                        if last.as_ref() != Some(&s) {
                            print(&a.remote, &s);
                            last = Some(s);
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(s) if client::is_transient(&s, true) => {
                        tracing::warn!(error = %s.message(), "the watch stream broke; watching again");
                        break;
                    }
                    Err(s) => bail!("watch ended: {}", s.message()),
                }
            }
        }
    })
}

pub fn serve(cmd: ServeCommand) -> Result<()> {
    let a = match cmd {
        ServeCommand::Coordinator(a) => a,
        ServeCommand::Actor(a) => return crate::serve::actor(a),
        ServeCommand::Learner(a) => return crate::serve::learner(a),
    };
    let mut config = CoordinatorConfig::load(a.config.as_deref())?;
    if let Some(l) = a.listen {
        config.listen = l;
    }
    if let Some(d) = a.data_dir {
        config.data_dir = d;
    }
    if let Some(endpoint) = &config.otlp_endpoint
        && !a.check
    {
        r1_telemetry::enable_otlp(endpoint).context("cannot export spans to the coordinator config's otlp_endpoint")?;
    }
    // The flags are checked like the file (a port out of range first), then the token.
    config.validate()?;
    if config.token.is_none() && !r1_coordinator::config::is_loopback(&config.listen) {
        bail!(
            "listening on {} without a token would let anyone on the network control runs; set R1_COORDINATOR_TOKEN",
            config.listen
        );
    }
    if a.check {
        crate::check::ok(
            "serve coordinator",
            &format!(
                "listening on {} with data in {}; token {}; leases generate {} ms, score {} ms, train {} ms; run claims {} ms",
                config.listen,
                config.data_dir.display(),
                if config.token.is_some() { "set" } else { "none (loopback only)" },
                config.leases.generate_ms,
                config.leases.score_ms,
                config.leases.train_ms,
                config.run_claim_ms
            ),
        );
        return Ok(());
    }
    eprintln!("coordinator on {} (data in {})", config.listen, config.data_dir.display());
    runtime()?.block_on(async {
        r1_coordinator::config::run(config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}

fn role_name(r: i32) -> &'static str {
    match pb::WorkerRole::try_from(r).unwrap_or(pb::WorkerRole::Unspecified) {
        pb::WorkerRole::Actor => "actor",
        pb::WorkerRole::Reward => "reward",
        pb::WorkerRole::Learner => "learner",
        pb::WorkerRole::Unspecified => "unknown",
    }
}

/// `r1ctl workers`: which worker serves which run, as the coordinator sees the fleet.
pub fn workers(r: Remote) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&r).await?;
        let reply = client::retry("ListWorkers", &read_retry(), || {
            let mut c = c.clone();
            async move { c.list_workers(pb::ListWorkersRequest {}).await }
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
        let now = reply.now_ms;
        if r.json {
            let workers: Vec<serde_json::Value> = reply
                .workers
                .iter()
                .map(|w| {
                    json!({
                        "name": w.name, "role": role_name(w.role), "run": w.run_id, "lease": w.lease_id,
                        "lease_deadline_ms": w.lease_deadline_ms, "first_seen_ms": w.first_seen_ms,
                        "last_seen_ms": w.last_seen_ms, "last_seen_s_ago": (now - w.last_seen_ms) as f64 / 1000.0,
                        "policy_version": w.policy_version, "throughput": w.throughput, "unit": w.unit,
                        "done": w.done, "gone": w.gone,
                    })
                })
                .collect();
            let claims: Vec<serde_json::Value> = reply
                .claims
                .iter()
                .map(|c| json!({"run": c.run_id, "fleet": c.worker, "deadline_ms": c.deadline_ms, "live": c.deadline_ms >= now}))
                .collect();
            println!("{}", json!({"workers": workers, "claims": claims, "now_ms": now, "gone_after_ms": reply.gone_after_ms}));
            return Ok(());
        }
        if reply.workers.is_empty() {
            println!("no worker has called the coordinator yet");
        } else {
            println!("{:<8} {:<32} {:>5} {:>8} {:>10} {:>14}  state", "role", "name", "run", "lease", "last seen", "throughput");
            for w in &reply.workers {
                let run = if w.run_id == 0 { "-".to_string() } else { w.run_id.to_string() };
                let lease = w.lease_id.map_or("-".to_string(), |l| l.to_string());
                let seen = format!("{:.1}s ago", (now - w.last_seen_ms) as f64 / 1000.0);
                let rate = format!("{:.1} {}", w.throughput, w.unit);
                let state = if w.gone { "gone" } else if w.run_id == 0 { "idle" } else { "working" };
                println!("{:<8} {:<32} {:>5} {:>8} {:>10} {:>14}  {state}", role_name(w.role), w.name, run, lease, seen, rate);
            }
        }
        for c in &reply.claims {
            let live = if c.deadline_ms >= now { "live" } else { "lapsed" };
            println!("run {} is claimed by learner fleet {} ({live}, until {:.1}s from now)", c.run_id, c.worker, (c.deadline_ms - now) as f64 / 1000.0);
        }
        Ok(())
    })
}
