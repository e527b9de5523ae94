//! `r1ctl serve actor` and `r1ctl serve learner`: a worker as its own process (for a
//! cluster, or the multi-process tests), pinned to one run with `--run N` or, without it, a
//! pool that serves the coordinator's runs one after another ([`crate::pool`]). `r1ctl up`
//! wires the same pieces together in one process; the functions here are shared with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use r1_actor::config::ActorConfig;
use r1_actor::{Actor, ActorReport, ActorSettings};
use r1_learner::collective::tcp::TcpRing;
use r1_learner::collective::{Collective, SingleRank};
use r1_learner::config::LearnerConfig;
use r1_learner::publish::{DEFAULT_CHUNK_BYTES, Publisher};
use r1_learner::service::{LearnerReport, LearnerSettings};
use tokio::runtime::Handle;

use crate::backend::{DeviceKind, with_backend};
use crate::check;
use crate::pool::{self, PoolClient};
use r1_proto::v1 as pb;

/// What every worker service takes: where its config and its coordinator are, which run.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Check the config (file, `R1_*` variables, flags) and exit: 0 and a summary when the
    /// service would start, an error naming the flag otherwise. Opens no port and loads no model
    #[arg(long)]
    check: bool,
    /// Serve the standard gRPC health protocol (grpc.health.v1) on this address for probes,
    /// e.g. 0.0.0.0:8081: SERVING while the worker works or waits for a run, NOT_SERVING once
    /// it is stopping
    #[arg(long)]
    health_listen: Option<String>,
    /// Config file (TOML); `R1_ACTOR_*` / `R1_LEARNER_*` variables override it, flags override both
    #[arg(long)]
    config: Option<PathBuf>,
    /// The coordinator's address [default: http://127.0.0.1:7070]
    #[arg(long)]
    coordinator: Option<String>,
    /// Bearer token for the coordinator
    #[arg(long, env = "R1_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The run to work for. Without it the worker is a pool: it serves the coordinator's
    /// running runs one after another (actors: the oldest running GRPO run; learners: a run
    /// this fleet claims), and waits while none needs it
    #[arg(long)]
    run: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
}

#[derive(Args, Debug)]
pub struct ServeActorArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Learner rank 0's weight service, e.g. http://127.0.0.1:7071
    #[arg(long)]
    learner: Option<String>,
    /// Name in leases and logs
    #[arg(long)]
    name: Option<String>,
    /// Prompt groups per lease [default: 4]
    #[arg(long)]
    max_groups: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ServeLearnerArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    /// This rank (0 leads: it talks to the coordinator and serves weights)
    #[arg(long)]
    rank: Option<usize>,
    /// Number of learner ranks
    #[arg(long)]
    world_size: Option<usize>,
    /// Where the other ranks reach rank 0 to join the ring (host:port) [default: 127.0.0.1:29500]
    #[arg(long)]
    master_addr: Option<String>,
    /// Where rank 0 listens for the other ranks, when not at --master-addr itself (on a
    /// cluster: 0.0.0.0:29500 while --master-addr is rank 0's DNS name)
    #[arg(long)]
    master_listen: Option<String>,
    /// Where rank 0 serves weights to actors [default: 127.0.0.1:7071]
    #[arg(long)]
    weights_listen: Option<String>,
    /// Checkpoint root (run N writes run-N/step-S inside) [default: r1-data/checkpoints]
    #[arg(long)]
    checkpoints: Option<PathBuf>,
}

/// Flags override the config: `set!(cfg, field = Option<value>, ...)` sets the fields given.
macro_rules! set {
    ($cfg:ident, $($field:ident = $value:expr),*) => { $(if let Some(v) = $value { $cfg.$field = v.into(); })* };
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

/// Sets `stop` on Ctrl-C or SIGTERM (what Kubernetes sends before it kills a pod).
pub fn stop_on_signals(rt: &Handle, stop: Arc<AtomicBool>) {
    rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        eprintln!("stopping: finishing the current step and writing a checkpoint");
        stop.store(true, Ordering::Relaxed);
    });
}

pub fn actor(a: ServeActorArgs) -> Result<()> {
    let w = a.worker;
    let mut cfg = ActorConfig::load(w.config.as_deref())?;
    set!(
        cfg,
        coordinator = w.coordinator,
        token = w.token.map(Some),
        run = w.run.map(Some),
        learner = a.learner.map(Some),
        worker = a.name.map(Some),
        max_groups = a.max_groups,
        health_listen = w.health_listen.map(Some)
    );
    // The same checks for a pool (run 0 stands for "each run in turn").
    let settings = cfg.settings_for(cfg.run.unwrap_or(0))?;
    check::url("--coordinator/R1_ACTOR_COORDINATOR", &cfg.coordinator)?;
    if let Some(l) = &cfg.learner {
        check::url("--learner/R1_ACTOR_LEARNER", l)?;
    }
    if let Some(h) = &cfg.health_listen {
        check::addr("--health-listen/R1_ACTOR_HEALTH_LISTEN", h)?;
    }
    check::token(cfg.token.as_deref())?;
    if w.check {
        let serves = cfg
            .run
            .map_or("a pool (the oldest running GRPO run, one after another)".to_string(), |r| format!("run {r}"));
        let learner = cfg.learner.as_deref().unwrap_or("none (version 0 only)");
        check::ok(
            "serve actor",
            &format!(
                "{} serving {serves}; coordinator {}; weights from {learner}; {} groups per lease; health on {}; {}",
                settings.worker,
                cfg.coordinator,
                cfg.max_groups,
                cfg.health_listen.as_deref().unwrap_or("none"),
                check::device(w.device)
            ),
        );
        return Ok(());
    }
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(rt.handle(), stop.clone());
    let health = health(rt.handle(), cfg.health_listen.as_deref())?;
    let worker = settings.worker.clone();
    let runs: Box<dyn FnMut() -> Result<Option<u64>>> = match cfg.run {
        Some(run) => {
            let mut once = Some(run);
            Box::new(move || Ok(once.take()))
        }
        None => {
            let pool = rt.block_on(PoolClient::connect(&settings.coordinator))?;
            let (h, stop) = (rt.handle().clone(), stop.clone());
            eprintln!("{worker}: a pool serving the coordinator's running runs");
            Box::new(move || pool::wait_for_run(&h, &pool, pb::WorkerRole::Actor, &worker, &stop))
        }
    };
    let result = serve_runs(runs, &stop, |run| {
        let settings = cfg.settings_for(run)?;
        let report =
            with_backend!(w.device, |B, device| run_actor::<B>(settings, rt.handle().clone(), device, stop.clone())?);
        eprintln!(
            "actor done with run {run}: {} groups, {} samples, {} tokens, {} weight swaps, {} not counted, {} leases abandoned",
            report.groups, report.samples, report.tokens, report.weight_swaps, report.not_counted, report.abandoned
        );
        Ok(())
    });
    health.stopping();
    result
}

/// Serves each run `next` hands out (None: stop) with `serve`, until `stop` is set.
pub fn serve_runs(
    mut next: Box<dyn FnMut() -> Result<Option<u64>> + '_>,
    stop: &AtomicBool,
    mut serve: impl FnMut(u64) -> Result<()>,
) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let Some(run) = next()? else { break };
        serve(run)?;
    }
    Ok(())
}

/// The process's health status, served on `listen` when given; SERVING from now on.
pub fn health(rt: &Handle, listen: Option<&str>) -> Result<r1_proto::health::Health> {
    let h = r1_proto::health::Health::new();
    if let Some(addr) = listen {
        let local = h.serve(rt, addr)?;
        eprintln!("gRPC health on {local}");
    }
    h.serving(&[]);
    Ok(h)
}

/// Runs one actor until its run ends or `stop` is set (call outside the runtime).
pub fn run_actor<B: Backend>(
    settings: ActorSettings,
    rt: Handle,
    device: B::Device,
    stop: Arc<AtomicBool>,
) -> Result<ActorReport> {
    let actor = Actor::<B>::connect(settings, rt, device)?;
    Ok(actor.run(stop)?)
}

pub fn learner(a: ServeLearnerArgs) -> Result<()> {
    let w = a.worker;
    let mut cfg = LearnerConfig::load(w.config.as_deref())?;
    set!(
        cfg,
        coordinator = w.coordinator,
        token = w.token.map(Some),
        run = w.run.map(Some),
        rank = a.rank,
        world_size = a.world_size,
        master_addr = a.master_addr,
        master_listen = a.master_listen.map(Some),
        weights_listen = a.weights_listen,
        checkpoints = a.checkpoints,
        health_listen = w.health_listen.map(Some)
    );
    let settings = cfg.settings_for(cfg.run.unwrap_or(0))?;
    check::url("--coordinator/R1_LEARNER_COORDINATOR", &cfg.coordinator)?;
    check::addr("--master-addr/R1_LEARNER_MASTER_ADDR", &cfg.master_addr)?;
    if let Some(m) = &cfg.master_listen {
        check::addr("--master-listen/R1_LEARNER_MASTER_LISTEN", m)?;
    }
    check::addr("R1_LEARNER_RING_BIND", &cfg.ring_bind)?;
    check::addr("--weights-listen/R1_LEARNER_WEIGHTS_LISTEN", &cfg.weights_listen)?;
    if let Some(h) = &cfg.health_listen {
        check::addr("--health-listen/R1_LEARNER_HEALTH_LISTEN", h)?;
    }
    check::token(cfg.token.as_deref())?;
    if w.check {
        let serves = cfg
            .run
            .map_or("a pool (claims the coordinator's runs one after another)".to_string(), |r| format!("run {r}"));
        let weights =
            if cfg.rank == 0 { format!("serves weights on {}", cfg.weights_listen) } else { "follows rank 0".into() };
        check::ok(
            "serve learner",
            &format!(
                "rank {} of {} ({}) training {serves}; coordinator {}; ring at {}; {weights}; checkpoints in {}; health on {}; {}",
                cfg.rank,
                cfg.world_size,
                settings.worker,
                cfg.coordinator,
                cfg.master_addr,
                cfg.checkpoints.display(),
                cfg.health_listen.as_deref().unwrap_or("none"),
                check::device(w.device)
            ),
        );
        return Ok(());
    }
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(rt.handle(), stop.clone());
    let health = health(rt.handle(), cfg.health_listen.as_deref())?;
    let mut collective: Box<dyn Collective> = if cfg.world_size > 1 {
        eprintln!("rank {} of {}: joining the ring at {}", cfg.rank, cfg.world_size, cfg.master_addr);
        Box::new(TcpRing::join(&cfg.ring())?)
    } else {
        Box::new(SingleRank)
    };
    let publisher = if cfg.rank == 0 {
        let p = Publisher::new(cfg.run.unwrap_or(0), cfg.weights_keep, DEFAULT_CHUNK_BYTES);
        let listener = rt.block_on(tokio::net::TcpListener::bind(&cfg.weights_listen)).with_context(|| {
            format!("cannot listen on {} for the weight service; pick a free --weights-listen", cfg.weights_listen)
        })?;
        serve_weights(rt.handle(), &p, listener, settings.coordinator.token.as_deref());
        eprintln!("serving weights on {}", cfg.weights_listen);
        Some(p)
    } else {
        None
    };
    let result = match cfg.run {
        Some(run) => {
            let settings = cfg.settings_for(run)?;
            let report = with_backend!(w.device, |B, device| run_learner::<Autodiff<B>>(
                &settings,
                collective.as_mut(),
                publisher.as_ref(),
                rt.handle(),
                device,
                stop.clone()
            )?);
            print_learner(cfg.rank, run, &report);
            Ok(())
        }
        None => with_backend!(w.device, |B, device| learner_pool::<Autodiff<B>>(
            &cfg,
            collective.as_mut(),
            publisher.as_ref(),
            rt.handle(),
            device,
            &stop
        )),
    };
    health.stopping();
    result
}

fn print_learner(rank: usize, run: u64, report: &LearnerReport) {
    eprintln!(
        "learner rank {rank} done with run {run}: {} steps this session, run at step {} (resumed from {}), {} checkpoints",
        report.steps, report.step, report.resumed_from, report.checkpoints
    );
}

/// A learner fleet without `--run`: rank 0 claims runs one after another and tells the other
/// ranks which; each run is trained exactly as a pinned fleet trains it.
fn learner_pool<B: burn::tensor::backend::AutodiffBackend>(
    cfg: &LearnerConfig,
    collective: &mut dyn Collective,
    publisher: Option<&Publisher>,
    rt: &Handle,
    device: B::Device,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    if collective.rank() != 0 {
        loop {
            match pool::recv(collective)? {
                pool::FleetMsg::Run(run) => {
                    let report = r1_learner::service::follow::<B>(run, collective, device.clone())?;
                    print_learner(collective.rank(), run, &report);
                }
                pool::FleetMsg::Idle => {}
                pool::FleetMsg::Stop => return Ok(()),
            }
        }
    }
    let base = cfg.settings_for(0)?;
    let fleet = base.worker.clone();
    let pool = rt.block_on(PoolClient::connect(&base.coordinator))?;
    eprintln!("{fleet}: a learner fleet of {} claiming the coordinator's runs", collective.world_size());
    let mut said = false;
    while !stop.load(Ordering::Relaxed) {
        let claim =
            rt.block_on(pool.claim(&fleet, 0)).map_err(|s| anyhow::anyhow!("cannot claim a run: {}", s.message()))?;
        if claim.run_id == 0 {
            if !said {
                eprintln!("{fleet}: no unclaimed running run; waiting for one");
                said = true;
            }
            pool::send(collective, &pool::FleetMsg::Idle)?;
            pool::nap(pool::IDLE_POLL, stop);
            continue;
        }
        said = false;
        let run = claim.run_id;
        eprintln!("{fleet}: claimed run {run}");
        pool::send(collective, &pool::FleetMsg::Run(run))?;
        if let Some(p) = publisher {
            p.start_run(run);
        }
        let run_stop = Arc::new(AtomicBool::new(false));
        let renewal = pool::Renewal::start(rt, pool.clone(), fleet.clone(), &claim, stop.clone(), run_stop.clone());
        let settings = cfg.settings_for(run)?;
        let report = run_learner::<B>(&settings, collective, publisher, rt, device.clone(), run_stop)?;
        drop(renewal);
        print_learner(0, run, &report);
        rt.block_on(pool.release(&fleet, run))?;
    }
    pool::send(collective, &pool::FleetMsg::Stop)?;
    Ok(())
}

/// Serves `publisher`'s weight stream on `listener` in the background, requiring `token` on
/// every call when there is one.
pub fn serve_weights(rt: &Handle, publisher: &Publisher, listener: tokio::net::TcpListener, token: Option<&str>) {
    let auth = token.map_or_else(r1_coordinator::service::Auth::open, r1_coordinator::service::Auth::bearer);
    let service = publisher.authenticated(auth);
    // grpc.health.v1 on the weight port too, without the token (probes carry none).
    let health = r1_proto::health::Health::new();
    health.serving(&["r1.v1.WeightService"]);
    rt.spawn(async move {
        let incoming = r1_proto::incoming(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(health.service())
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!("weight service stopped: {e}");
        }
    });
}

/// Runs one learner rank (rank 0 leads) until the run ends or `stop` is set.
pub fn run_learner<B: burn::tensor::backend::AutodiffBackend>(
    settings: &LearnerSettings,
    collective: &mut dyn Collective,
    publisher: Option<&Publisher>,
    rt: &Handle,
    device: B::Device,
    stop: Arc<AtomicBool>,
) -> Result<LearnerReport> {
    if collective.rank() == 0 {
        Ok(r1_learner::service::lead::<B>(settings, collective, publisher, rt, device, stop)?)
    } else {
        Ok(r1_learner::service::follow::<B>(settings.run_id, collective, device)?)
    }
}
