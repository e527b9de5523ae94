//! `r1ctl serve actor` and `r1ctl serve learner`: one worker of a run, as its own process
//! (for a cluster, or the multi-process tests). `r1ctl up` wires the same pieces together
//! in one process; the functions here are shared with it.

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

/// What every worker service takes: where its config and its coordinator are, which run.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Config file (TOML); `R1_ACTOR_*` / `R1_LEARNER_*` variables override it, flags override both
    #[arg(long)]
    config: Option<PathBuf>,
    /// The coordinator's address [default: http://127.0.0.1:7070]
    #[arg(long)]
    coordinator: Option<String>,
    /// Bearer token for the coordinator
    #[arg(long, env = "R1_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The run to work for
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
    /// Where rank 0 waits for the others to join (host:port) [default: 127.0.0.1:29500]
    #[arg(long)]
    master_addr: Option<String>,
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
    set!(cfg, coordinator = w.coordinator, token = w.token.map(Some), run = w.run.map(Some), learner = a.learner.map(Some), worker = a.name.map(Some), max_groups = a.max_groups);
    let settings = cfg.settings()?;
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(rt.handle(), stop.clone());
    let report = with_backend!(w.device, |B, device| run_actor::<B>(settings, rt.handle().clone(), device, stop)?);
    eprintln!(
        "actor done: {} groups, {} samples, {} tokens, {} weight swaps, {} not counted, {} leases abandoned",
        report.groups, report.samples, report.tokens, report.weight_swaps, report.not_counted, report.abandoned
    );
    Ok(())
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
        weights_listen = a.weights_listen,
        checkpoints = a.checkpoints
    );
    let settings = cfg.settings()?;
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(rt.handle(), stop.clone());
    let mut collective: Box<dyn Collective> = if cfg.world_size > 1 {
        eprintln!("rank {} of {}: joining the ring at {}", cfg.rank, cfg.world_size, cfg.master_addr);
        Box::new(TcpRing::join(&cfg.ring())?)
    } else {
        Box::new(SingleRank)
    };
    let publisher = if cfg.rank == 0 {
        let p = Publisher::new(settings.run_id, cfg.weights_keep, DEFAULT_CHUNK_BYTES);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(&cfg.weights_listen))
            .with_context(|| format!("cannot listen on {} for the weight service; pick a free --weights-listen", cfg.weights_listen))?;
        serve_weights(rt.handle(), &p, listener, settings.coordinator.token.as_deref());
        eprintln!("serving weights on {}", cfg.weights_listen);
        Some(p)
    } else {
        None
    };
    let report = with_backend!(w.device, |B, device| run_learner::<Autodiff<B>>(
        &settings,
        collective.as_mut(),
        publisher.as_ref(),
        rt.handle(),
        device,
        stop
    )?);
    eprintln!(
        "learner rank {} done: {} steps this session, run at step {} (resumed from {}), {} checkpoints",
        cfg.rank, report.steps, report.step, report.resumed_from, report.checkpoints
    );
    Ok(())
}

/// Serves `publisher`'s weight stream on `listener` in the background, requiring `token` on
/// every call when there is one.
pub fn serve_weights(rt: &Handle, publisher: &Publisher, listener: tokio::net::TcpListener, token: Option<&str>) {
    let auth = token.map_or_else(r1_coordinator::service::Auth::open, r1_coordinator::service::Auth::bearer);
    let service = publisher.authenticated(auth);
    rt.spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await {
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
