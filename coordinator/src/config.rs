//! The coordinator service's own config (not a run spec): where it listens, where it keeps
//! its database, how long leases last, and [`run`], which serves with it.
//!
//! Layered like every r1 config: the defaults here < a TOML file < `R1_COORDINATOR_*`
//! environment variables (`R1_COORDINATOR_LISTEN=0.0.0.0:7070`,
//! `R1_COORDINATOR_LEASES__GENERATE_MS=900000`) < whatever the caller sets afterwards
//! (command-line flags). Unknown keys are refused.
//!
//! `limits` bounds message sizes and concurrent requests ([`Limits`]; `R1_COORDINATOR_LIMITS__MAX_CONCURRENT_REQUESTS=64`).
//! `samples_per_step` (default 2) bounds the scored groups kept per step for the dashboard
//! ([`crate::samples`]); `worker_gone_after_ms` (default 180000) is how long a silent worker
//! is still shown as live ([`crate::workers`]); `run_claim_ms` (default 60000) is how long a
//! learner fleet's claim on a run lasts without a renewal ([`crate::pools`]).
//! `otlp_endpoint` (`R1_COORDINATOR_OTLP_ENDPOINT`) names an OpenTelemetry collector for the
//! binary to export spans to; this crate only carries it (the binary sets tracing up).
//!
//! `listen` is checked before anything else (a port past 65535 says so). The HTTP pages (`/`,
//! `/metrics`, anything under `/api/`) are readable without a token by default
//! (`public_read = true`): Prometheus scrapers on the cluster network usually carry none, and
//! the pages show progress, never specs' secrets or a way to change anything. With
//! `public_read = false` the paths with data (`/metrics`, `/api/...`) need `authorization:
//! Bearer` with `token` or `read_token` (a token that reads the pages and nothing else); the
//! dashboard's page shell and assets hold no data and stay public.
//!
//! One data folder has one coordinator: [`start`] takes an exclusive lock on
//! `<data_dir>/coordinator.lock` (holding the PID, host and address) before it opens the
//! database, and a second coordinator on the folder is refused with the holder's details. The
//! lock is the kernel's (`flock`), so it ends with its process, even one killed by SIGKILL.
//!
//! Limits: no TLS; set `token` (`R1_COORDINATOR_TOKEN`) whenever `listen` is not loopback.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::lease::LeaseTtl;
use crate::runs::{Coordinator, RunsError};
use crate::service::{Auth, Limits, Runs, ServeError, serve};
use crate::store::SystemClock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to serve RunService and WorkService on.
    pub listen: String,
    /// Folder of the database (`coordinator.db`) and the run folders (`runs/<id>/`).
    pub data_dir: PathBuf,
    pub leases: LeaseTtl,
    /// How often a Watch stream looks for changes.
    pub watch_interval_ms: u64,
    /// Bearer token every call must carry; none lets every call in (loopback only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Message size and concurrency limits of both services.
    #[serde(default)]
    pub limits: Limits,
    /// OTLP/gRPC collector to export spans to (`http://collector:4317`); none exports nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Scored groups kept per learner step in the run folder for the dashboard; 0 keeps none.
    #[serde(default = "default_samples_per_step")]
    pub samples_per_step: u32,
    /// A worker that made no call for this long is shown as gone on the dashboard.
    #[serde(default = "default_worker_gone_after_ms")]
    pub worker_gone_after_ms: i64,
    /// A learner fleet's claim on a run lapses after this long without a renewal (rank 0
    /// renews it every third of it), so another fleet can take a dead fleet's run over.
    #[serde(default = "default_run_claim_ms")]
    pub run_claim_ms: i64,
    /// Whether `/`, `/metrics` and `/api/...` are readable without a token (default true:
    /// scrapers on the cluster network carry none); false requires `token` or `read_token`.
    #[serde(default = "public_read")]
    pub public_read: bool,
    /// A token that reads the HTTP pages only (with `public_read = false`), for scrapers and
    /// dashboards that must not control runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<String>,
}

fn default_samples_per_step() -> u32 {
    crate::runs::DEFAULT_SAMPLES_PER_STEP
}

fn default_worker_gone_after_ms() -> i64 {
    crate::runs::DEFAULT_WORKER_GONE_AFTER_MS
}

fn default_run_claim_ms() -> i64 {
    crate::pools::DEFAULT_CLAIM_MS
}

fn public_read() -> bool {
    true
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: "127.0.0.1:7070".into(),
            data_dir: "r1-data".into(),
            leases: LeaseTtl::default(),
            watch_interval_ms: 500,
            token: None,
            limits: Limits::default(),
            otlp_endpoint: None,
            samples_per_step: default_samples_per_step(),
            worker_gone_after_ms: default_worker_gone_after_ms(),
            run_claim_ms: default_run_claim_ms(),
            public_read: true,
            read_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("coordinator config: {0}; fix or remove that key")]
    Parse(Box<figment::Error>),
    #[error("coordinator config `listen` is `{addr}`: {why}")]
    Listen { addr: String, why: String },
    #[error("coordinator config `read_token` is empty; set a secret or remove the key")]
    EmptyReadToken,
    #[error(
        "coordinator config `public_read` is false but there is no `token` or `read_token` to read with; set one, or set public_read = true"
    )]
    NoReadToken,
    #[error(
        "coordinator config `read_token` is set but `public_read` is true, so the pages need no token; set public_read = false or remove read_token"
    )]
    ReadTokenUnused,
    #[error(
        "data folder {dir} is in use by another coordinator ({holder}); stop that one (it holds {lock}), or give this one another data folder"
    )]
    Locked { dir: PathBuf, lock: PathBuf, holder: String },
    #[error("cannot lock the data folder with {path}: {source}; check the folder's permissions")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("coordinator config `{field}` is {value}; use a positive number")]
    NotPositive { field: &'static str, value: i64 },
    #[error("coordinator config `token` is empty; set a secret or remove the key")]
    EmptyToken,
    #[error("coordinator config `limits.max_message_bytes` is {0}; use at least 65536 (a run spec must fit)")]
    MessageLimit(usize),
    #[error("coordinator config `otlp_endpoint` is `{0}`; use http://host:4317 or remove the key")]
    OtlpEndpoint(String),
    #[error("cannot create the data folder {path}: {source}; pick a writable data_dir")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}; pick a free address for `listen`")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Open(#[from] RunsError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl CoordinatorConfig {
    /// Defaults < `file` (if given; it must exist) < `R1_COORDINATOR_*` variables.
    pub fn load(file: Option<&Path>) -> Result<CoordinatorConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(CoordinatorConfig::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: CoordinatorConfig = figment
            .merge(Env::prefixed("R1_COORDINATOR_").split("__"))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_listen(&self.listen)?;
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::EmptyToken);
        }
        match (&self.read_token, self.public_read) {
            (Some(t), _) if t.trim().is_empty() => return Err(ConfigError::EmptyReadToken),
            (Some(_), true) => return Err(ConfigError::ReadTokenUnused),
            (None, false) if self.token.is_none() => return Err(ConfigError::NoReadToken),
            _ => {}
        }
        if self.limits.max_message_bytes < 1 << 16 {
            return Err(ConfigError::MessageLimit(self.limits.max_message_bytes));
        }
        if let Some(e) = &self.otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ConfigError::OtlpEndpoint(e.clone()));
        }
        let l = &self.leases;
        for (field, value) in [
            ("leases.generate_ms", l.generate_ms),
            ("leases.score_ms", l.score_ms),
            ("leases.train_ms", l.train_ms),
            ("watch_interval_ms", self.watch_interval_ms as i64),
            ("worker_gone_after_ms", self.worker_gone_after_ms),
            ("leases.max_attempts", i64::from(l.max_attempts)),
            ("run_claim_ms", self.run_claim_ms),
        ] {
            if value <= 0 {
                return Err(ConfigError::NotPositive { field, value });
            }
        }
        Ok(())
    }

    /// The database file under `data_dir`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("coordinator.db")
    }
}

/// `host:port` with a port in range; what an address given to `listen` must be, checked
/// before anything else looks at it.
pub fn check_listen(listen: &str) -> Result<(), ConfigError> {
    let bad = |why: String| ConfigError::Listen { addr: listen.into(), why };
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(bad("it has no port; use host:port, e.g. 127.0.0.1:7070".into()));
    };
    if host.is_empty() {
        return Err(bad("it has no host; use host:port, e.g. 0.0.0.0:7070".into()));
    }
    match port.parse::<u64>() {
        Ok(p) if p > u16::MAX as u64 => Err(bad(format!("port {p} is out of range; use a port from 1 to 65535"))),
        Ok(_) => Ok(()),
        Err(_) => Err(bad(format!("port `{port}` is not a number; use host:port, e.g. 127.0.0.1:7070"))),
    }
}

/// Whether `listen` is a loopback address (`127.x`, `[::1]`, `localhost`): reachable from this
/// machine only.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The exclusive lock on a data folder, held as long as this value lives (and released by the
/// kernel when the process ends, however it ends).
#[derive(Debug)]
pub struct DataLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DataLock {
    /// Locks `<dir>/coordinator.lock` and writes who holds it (PID, host, address, since);
    /// refused with the holder's details when another process holds it.
    pub fn acquire(dir: &Path, listen: &str) -> Result<DataLock, ConfigError> {
        let path = dir.join("coordinator.lock");
        let err = |source| ConfigError::Lock { path: path.clone(), source };
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that has not written its details yet".to_string(),
                    h => h.to_string(),
                };
                return Err(ConfigError::Locked { dir: dir.into(), lock: path, holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let who = format!(
            "pid {} on host {}, listening on {listen}, since unix time {since}",
            std::process::id(),
            hostname()
        );
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(who.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(err)?;
        Ok(DataLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// This machine's name, for the lock's holder line.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A coordinator that holds its data folder and its address, ready to serve.
pub struct Started {
    config: CoordinatorConfig,
    lock: DataLock,
    listener: tokio::net::TcpListener,
    core: Arc<Coordinator>,
}

/// Checks the config, locks the data folder, opens (or creates) the database (resuming its
/// running runs) and binds `listen`. Every failure here is immediate and says what to do.
pub async fn start(config: CoordinatorConfig) -> Result<Started, ConfigError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| ConfigError::DataDir { path: config.data_dir.clone(), source })?;
    let lock = DataLock::acquire(&config.data_dir, &config.listen)?;
    let db = config.db_path();
    let (ttl, runs) = (config.leases, config.data_dir.join("runs"));
    let (keep, gone_after, claim) = (config.samples_per_step, config.worker_gone_after_ms, config.run_claim_ms);
    let core = tokio::task::spawn_blocking(move || {
        Ok::<_, RunsError>(
            Coordinator::open(&db, Arc::new(SystemClock), ttl)?
                .with_run_folders(runs)
                .with_samples_per_step(keep)
                .with_worker_gone_after(gone_after)
                .with_claim_ms(claim),
        )
    })
    .await
    .map_err(|e| ConfigError::DataDir { path: config.db_path(), source: std::io::Error::other(e) })??;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ConfigError::Bind { addr: config.listen.clone(), source })?;
    Ok(Started { config, lock, listener, core: Arc::new(core) })
}

impl Started {
    /// The coordinator this will serve.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.core
    }

    /// Serves until `shutdown` completes; the data folder stays locked until then.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), ConfigError> {
        let Started { config, lock, listener, core } = self;
        tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), lock = %lock.path().display(), "coordinator serving");
        let runs = Runs::with_limits(core, Duration::from_millis(config.watch_interval_ms), config.limits.clone());
        let auth = match config.token.as_deref() {
            Some(token) => Auth::bearer(token),
            None => Auth::open(),
        };
        let auth = match config.public_read {
            true => auth,
            false => auth.private_reads(config.read_token.as_deref()),
        };
        serve(listener, runs, auth, shutdown).await?;
        drop(lock);
        Ok(())
    }
}

/// Opens (or creates) the data folder and database ([`start`]), resumes running runs, and
/// serves until `shutdown` completes.
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ConfigError> {
    start(config).await?.serve(shutdown).await
}
