//! `r1ctl reward ...`: offline scoring and the reward-worker service, thin edges over
//! `r1-reward` (every job goes through `r1_reward::job::score`).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use r1_reward::job::{ScoreJob, ScoreResult, Status, score};
use r1_reward::metrics::{Metrics, status_name};
use r1_reward::service::{RewardWorker, ServiceConfig, serve};

#[derive(Subcommand, Debug)]
pub enum RewardCommand {
    /// Score a JSONL file of completions: one output line per input line, in any order
    Score(ScoreArgs),
    /// Serve the reward workers over gRPC (r1.v1.RewardService) until Ctrl-C
    Serve(ServeArgs),
    /// Lease scoring jobs from the coordinator and score them: of one run until it ends
    /// (--run), or of every running run in turn (a pool)
    Work(WorkArgs),
}

#[derive(Args, Debug)]
pub struct WorkArgs {
    /// The coordinator's address
    #[arg(long, env = "R1_COORDINATOR", default_value = "http://127.0.0.1:7070")]
    coordinator: String,
    /// Bearer token, when the coordinator requires one
    #[arg(long, env = "R1_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep retrying a failed coordinator call (coordinator down or restarting) this long
    /// before giving up, in seconds
    #[arg(long, default_value_t = 600)]
    retry_secs: u64,
    /// The run whose samples to score. Without it the worker is a pool: it scores the oldest
    /// running GRPO run, then the next, and waits while none is running
    #[arg(long)]
    run: Option<u64>,
    /// This worker's name in leases (default: reward-<pid>)
    #[arg(long, env = "R1_REWARD_WORKER")]
    worker: Option<String>,
    /// Serve the standard gRPC health protocol (grpc.health.v1) on this address for probes,
    /// e.g. 0.0.0.0:8081
    #[arg(long, env = "R1_REWARD_HEALTH_LISTEN")]
    health_listen: Option<String>,
    /// Check the flags and exit: 0 and a summary when the worker would start, an error naming
    /// the flag otherwise. Connects to nothing
    #[arg(long)]
    check: bool,
    /// Groups leased at a time
    #[arg(long, default_value_t = 4)]
    max_groups: u32,
    /// Wait between empty leases, in milliseconds
    #[arg(long, default_value_t = 500)]
    idle_ms: u64,
    /// OTLP/gRPC collector to export spans to (http://host:4317)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Input JSONL ("-" for stdin), one job per line: {"id", "verifier", "completion",
    /// "ground_truth"?, "language"?, "test"?, "tests"?: [{"stdin", "stdout"}], "timeout_s"?,
    /// "memory_mb"?}. Blank lines are skipped
    #[arg(long, short)]
    input: PathBuf,
    /// Output JSONL, one {"id", "reward", "status", "components", "detail"} per input line
    /// (a malformed line gets status "invalid_input" with its line number) [default: stdout]
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Jobs scored in parallel [default: number of cores]
    #[arg(long, short)]
    jobs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:50061")]
    listen: SocketAddr,
    /// Jobs scored at once [default: number of cores]
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Jobs accepted (running + queued) before a batch is refused with RESOURCE_EXHAUSTED
    /// [default: 64 per core]
    #[arg(long)]
    max_pending: Option<usize>,
    /// Largest request or response, in MiB
    #[arg(long, default_value_t = 16)]
    max_message_mb: usize,
    /// OTLP/gRPC collector to export spans to (http://host:4317)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Check the flags and exit: 0 and a summary when the service would start, an error
    /// naming the flag otherwise. Opens no port
    #[arg(long)]
    check: bool,
}

pub fn run(cmd: RewardCommand) -> Result<()> {
    match cmd {
        RewardCommand::Score(args) => score_file(args),
        RewardCommand::Serve(args) => serve_workers(args),
        RewardCommand::Work(args) => lease_work(args),
    }
}

/// Starts span export when a collector was named on the command line.
fn otlp(endpoint: Option<&str>) -> Result<()> {
    if let Some(endpoint) = endpoint {
        r1_telemetry::enable_otlp(endpoint).context("cannot export spans to --otlp-endpoint")?;
    }
    Ok(())
}

fn lease_work(args: WorkArgs) -> Result<()> {
    crate::check::url("--coordinator/R1_COORDINATOR", &args.coordinator)?;
    crate::check::token(args.token.as_deref())?;
    crate::check::otlp("--otlp-endpoint/OTEL_EXPORTER_OTLP_ENDPOINT", args.otlp_endpoint.as_deref())?;
    if let Some(h) = &args.health_listen {
        crate::check::addr("--health-listen/R1_REWARD_HEALTH_LISTEN", h)?;
    }
    if args.max_groups == 0 {
        anyhow::bail!("--max-groups is 0; lease at least 1 group at a time");
    }
    if args.idle_ms == 0 {
        anyhow::bail!("--idle-ms is 0; wait at least 1 ms between empty leases");
    }
    let worker = args.worker.clone().unwrap_or_else(|| format!("reward-{}", std::process::id()));
    if args.check {
        let layers = r1_reward::sandbox::shared().map(|s| s.layers().to_string()).unwrap_or_else(|e| e.to_string());
        let serves = args
            .run
            .map_or("a pool (the oldest running GRPO run, one after another)".to_string(), |r| format!("run {r}"));
        crate::check::ok(
            "reward work",
            &format!(
                "{worker} scoring {serves}; coordinator {}; {} groups per lease; health on {}; sandbox: {layers}",
                args.coordinator,
                args.max_groups,
                args.health_listen.as_deref().unwrap_or("none")
            ),
        );
        return Ok(());
    }
    otlp(args.otlp_endpoint.as_deref())?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::serve::stop_on_signals(runtime.handle(), stop.clone());
    let health = crate::serve::health(runtime.handle(), args.health_listen.as_deref())?;
    let cfg = r1_proto::client::ClientConfig::new(args.coordinator.clone()).with_token(args.token.clone());
    let retry = r1_proto::client::RetryPolicy {
        max_elapsed: Duration::from_secs(args.retry_secs),
        ..r1_reward::lease_worker::default_retry()
    };
    let runs: Box<dyn FnMut() -> Result<Option<u64>>> = match args.run {
        Some(run) => {
            let mut once = Some(run);
            Box::new(move || Ok(once.take()))
        }
        None => {
            let pool = runtime.block_on(crate::pool::PoolClient::connect(&cfg))?;
            let (h, stop, worker) = (runtime.handle().clone(), stop.clone(), worker.clone());
            eprintln!("{worker}: a pool scoring the coordinator's running runs");
            Box::new(move || crate::pool::wait_for_run(&h, &pool, r1_proto::v1::WorkerRole::Reward, &worker, &stop))
        }
    };
    let result = crate::serve::serve_runs(runs, &stop, |run| {
        runtime.block_on(async {
            let mut w = r1_reward::lease_worker::LeaseWorker::connect(&cfg, run, &worker, args.max_groups)
                .await?
                .with_retry(retry.clone());
            eprintln!("{worker}: scoring run {run} from {}", args.coordinator);
            // SIGTERM ends the worker between two leases; a group it holds is scored again.
            let scored = tokio::select! {
                r = w.run(Duration::from_millis(args.idle_ms)) => r?,
                _ = wait_for(stop.clone()) => {
                    eprintln!("{worker}: stopping");
                    return Ok(());
                }
            };
            eprintln!("{worker}: run {run} has ended; scored {scored} groups");
            Ok(())
        })
    });
    health.stopping();
    result
}

/// Resolves once `stop` is set.
async fn wait_for(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn score_file(args: ScoreArgs) -> Result<()> {
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let from_stdin = args.input.as_os_str() == "-";
    let reader: Box<dyn BufRead + Send> = if from_stdin {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open {}; pass an existing JSONL file", args.input.display()))?;
        Box::new(BufReader::new(file))
    };
    let total = if from_stdin { None } else { Some(count_lines(&args.input)?) };
    let writer: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    if let Ok(sandbox) = r1_reward::sandbox::shared() {
        tracing::info!(layers = %sandbox.layers(), "code sandbox");
    }

    let bar = progress(total);
    // Bytes, not `lines()`: a line that is not UTF-8 is that line's `invalid_input`, never
    // the end of the whole file.
    let lines = Mutex::new(reader.split(b'\n').enumerate());
    let writer = Mutex::new(writer);
    let metrics = Metrics::default();
    let start = Instant::now();
    let worker = || -> Result<()> {
        loop {
            let next = lines.lock().expect("input lock").next();
            let Some((index, line)) = next else { return Ok(()) };
            let mut line = line.with_context(|| format!("cannot read line {} of the input", index + 1))?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.trim_ascii().is_empty() {
                continue;
            }
            let began = Instant::now();
            let result = score_bytes(index + 1, &line);
            metrics.record(result.status, began.elapsed());
            let mut text = serde_json::to_string(&result).context("cannot encode a result")?;
            text.push('\n');
            writer.lock().expect("output lock").write_all(text.as_bytes()).context("cannot write the output")?;
            bar.inc(1);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs).map(|_| s.spawn(worker)).collect();
        handles.into_iter().try_for_each(|h| h.join().expect("scoring threads do not panic"))
    })?;
    writer.into_inner().expect("output lock").flush().context("cannot write the output")?;
    bar.finish_and_clear();
    eprintln!("{}", summary(&metrics, start.elapsed()));
    Ok(())
}

/// Scores one raw input line; a line that is not UTF-8 is `invalid_input` naming the byte.
fn score_bytes(line_no: usize, bytes: &[u8]) -> ScoreResult {
    match std::str::from_utf8(bytes) {
        Ok(line) => score_line(line_no, line),
        Err(e) => ScoreResult::new(
            &serde_json::Value::Null,
            0.0,
            Status::InvalidInput,
            format!("line {line_no}: not UTF-8 (invalid byte at offset {}); write the file as UTF-8", e.valid_up_to()),
        ),
    }
}

/// Parses and scores one input line; never fails: a bad line becomes an `invalid_input` result
/// whose detail starts with its line number.
fn score_line(line_no: usize, line: &str) -> ScoreResult {
    let invalid = |id: &serde_json::Value, why: String| {
        ScoreResult::new(id, 0.0, Status::InvalidInput, format!("line {line_no}: {why}"))
    };
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return invalid(&serde_json::Value::Null, format!("not JSON ({e}); write one JSON object per line")),
    };
    let id = value.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let job: ScoreJob = match serde_json::from_value(value) {
        Ok(job) => job,
        Err(e) => return invalid(&id, format!("{e}; see `r1ctl reward score --help` for the fields")),
    };
    match std::panic::catch_unwind(|| score(&job)) {
        // The verifier's own refusals (an unknown verifier, a missing test) name the line too.
        Ok(mut result) if result.status == Status::InvalidInput => {
            result.detail = format!("line {line_no}: {}", result.detail);
            result
        }
        Ok(result) => result,
        Err(_) => ScoreResult::new(
            &id,
            0.0,
            Status::InternalError,
            format!("line {line_no}: the {} verifier panicked; report this bug", job.verifier),
        ),
    }
}

fn count_lines(path: &PathBuf) -> Result<u64> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut count = 0;
    for line in BufReader::new(file).split(b'\n') {
        if !line.with_context(|| format!("cannot read {}", path.display()))?.trim_ascii().is_empty() {
            count += 1;
        }
    }
    Ok(count)
}

/// A bar on stderr for inputs of more than a few lines, hidden when stderr is not a terminal.
fn progress(total: Option<u64>) -> ProgressBar {
    if total.is_some_and(|n| n < 20) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{elapsed_precise} {bar:30} {pos}/{len} scored ({per_sec}, eta {eta})"
    } else {
        "{spinner} {elapsed_precise} {pos} scored ({per_sec})"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("static template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn summary(metrics: &Metrics, elapsed: Duration) -> String {
    let statuses = r1_reward::metrics::STATUSES;
    let total: u64 = statuses.iter().map(|s| metrics.count(*s)).sum();
    let counts: Vec<String> = statuses
        .iter()
        .filter(|s| metrics.count(**s) > 0)
        .map(|s| format!("{}={}", status_name(*s), metrics.count(*s)))
        .collect();
    let secs = elapsed.as_secs_f64();
    format!("scored {total} jobs in {secs:.2}s ({:.1} jobs/s): {}", total as f64 / secs.max(1e-9), counts.join(" "))
}

fn serve_workers(args: ServeArgs) -> Result<()> {
    crate::check::otlp("--otlp-endpoint/OTEL_EXPORTER_OTLP_ENDPOINT", args.otlp_endpoint.as_deref())?;
    if args.max_message_mb == 0 || args.max_concurrent == Some(0) || args.max_pending == Some(0) {
        anyhow::bail!("--max-message-mb, --max-concurrent and --max-pending must be at least 1");
    }
    if args.check {
        let layers = r1_reward::sandbox::shared().map(|s| s.layers().to_string()).unwrap_or_else(|e| e.to_string());
        crate::check::ok("reward serve", &format!("listening on {}; sandbox: {layers}", args.listen));
        return Ok(());
    }
    otlp(args.otlp_endpoint.as_deref())?;
    let defaults = ServiceConfig::default();
    let config = ServiceConfig {
        max_concurrent: args.max_concurrent.unwrap_or(defaults.max_concurrent),
        max_pending: args.max_pending.unwrap_or(defaults.max_pending),
        max_message_bytes: args.max_message_mb << 20,
        ..defaults
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}; pick a free address with --listen", args.listen))?;
        let addr = listener.local_addr().context("cannot read the bound address")?;
        let layers = r1_reward::sandbox::shared().map(|s| s.layers().to_string()).unwrap_or_else(|e| e.to_string());
        eprintln!("reward workers on {addr} ({config:?}); sandbox: {layers}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(listener, RewardWorker::new(config), shutdown).await?;
        Ok(())
    })
}
