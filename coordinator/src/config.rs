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
//! is still shown as live ([`crate::workers`]).
//! `otlp_endpoint` (`R1_COORDINATOR_OTLP_ENDPOINT`) names an OpenTelemetry collector for the
//! binary to export spans to; this crate only carries it (the binary sets tracing up).
//!
//! Limits: no TLS; set `token` (`R1_COORDINATOR_TOKEN`) whenever `listen` is not loopback.

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
}

fn default_samples_per_step() -> u32 {
    crate::runs::DEFAULT_SAMPLES_PER_STEP
}

fn default_worker_gone_after_ms() -> i64 {
    crate::runs::DEFAULT_WORKER_GONE_AFTER_MS
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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("coordinator config: {0}; fix or remove that key")]
    Parse(Box<figment::Error>),
    #[error("coordinator config `{field}` is {value}; use a positive number")]
    NotPositive { field: &'static str, value: i64 },
    #[error("coordinator config `token` is empty; set a secret or remove the key")]
    EmptyToken,
    #[error(
        "coordinator config `limits.max_message_bytes` is {0}; use at least 65536 (a run spec must fit)"
    )]
    MessageLimit(usize),
    #[error("coordinator config `otlp_endpoint` is `{0}`; use http://host:4317 or remove the key")]
    OtlpEndpoint(String),
    #[error("cannot create the data folder {path}: {source}; pick a writable data_dir")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}; pick a free address for `listen`")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
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
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::EmptyToken);
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

/// Opens (or creates) the data folder and database, resumes running runs, and serves until
/// `shutdown` completes.
pub async fn run(
    config: CoordinatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ConfigError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ConfigError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let db = config.db_path();
    let (ttl, runs) = (config.leases, config.data_dir.join("runs"));
    let (keep, gone_after) = (config.samples_per_step, config.worker_gone_after_ms);
    let core = tokio::task::spawn_blocking(move || {
        Ok::<_, RunsError>(
            Coordinator::open(&db, Arc::new(SystemClock), ttl)?
                .with_run_folders(runs)
                .with_samples_per_step(keep)
                .with_worker_gone_after(gone_after),
        )
    })
    .await
    .map_err(|e| ConfigError::DataDir {
        path: config.db_path(),
        source: std::io::Error::other(e),
    })??;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ConfigError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "coordinator serving");
    let runs = Runs::with_limits(
        Arc::new(core),
        Duration::from_millis(config.watch_interval_ms),
        config.limits.clone(),
    );
    let auth = match config.token.as_deref() {
        Some(token) => Auth::bearer(token),
        None => Auth::open(),
    };
    serve(listener, runs, auth, shutdown).await?;
    Ok(())
}
