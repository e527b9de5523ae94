//! The learner service's config (`r1ctl serve learner`), layered like every r1 config: these
//! defaults < a TOML file < `R1_LEARNER_*` environment variables (`R1_LEARNER_RANK=1`) <
//! command-line flags. Unknown keys are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use r1_proto::client::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::collective::tcp::RingConfig;
use crate::service::LearnerSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerConfig {
    /// The coordinator's address (rank 0 talks to it).
    pub coordinator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The run to train; none: a pool that claims the coordinator's runs one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    pub rank: usize,
    pub world_size: usize,
    /// Where the other ranks reach rank 0 to join the ring (`host:port`).
    pub master_addr: String,
    /// Where rank 0 listens for them, when not at `master_addr` itself (on a cluster,
    /// `0.0.0.0:29500` while `master_addr` is rank 0's DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_listen: Option<String>,
    /// This rank's ring listener (`host:0` picks a port); reachable by the other ranks.
    pub ring_bind: String,
    /// Where rank 0 serves weights to actors.
    pub weights_listen: String,
    /// Versions rank 0 keeps for actors (at least max_policy_lag + 1).
    pub weights_keep: usize,
    /// Checkpoint root; run N's checkpoints go to `<checkpoints>/run-N/step-S`. Every rank
    /// reads them, so several machines need shared storage here.
    pub checkpoints: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub poll_ms: u64,
    /// How long ranks wait for each other to join.
    pub join_timeout_s: u64,
    /// Where this rank serves `grpc.health.v1` for probes (`0.0.0.0:8081`); none: nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<String>,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            coordinator: "http://127.0.0.1:7070".into(),
            token: None,
            run: None,
            rank: 0,
            world_size: 1,
            master_addr: "127.0.0.1:29500".into(),
            master_listen: None,
            ring_bind: "127.0.0.1:0".into(),
            weights_listen: "127.0.0.1:7071".into(),
            weights_keep: 2,
            checkpoints: "r1-data/checkpoints".into(),
            worker: None,
            poll_ms: 100,
            join_timeout_s: 300,
            health_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LearnerConfigError {
    #[error("learner config: {0}; fix or remove that key")]
    Parse(Box<figment::Error>),
    #[error("learner config `{0}`")]
    Invalid(String),
}

impl LearnerConfig {
    /// Defaults < `file` (must exist when given) < `R1_LEARNER_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, LearnerConfigError> {
        let mut f = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        f.merge(Env::prefixed("R1_LEARNER_").split("__")).extract().map_err(|e| LearnerConfigError::Parse(Box::new(e)))
    }

    pub fn run_id(&self) -> Result<u64, LearnerConfigError> {
        self.run.ok_or_else(|| {
            LearnerConfigError::Invalid("run is not set; pass --run N (the id `r1ctl submit-run` printed)".into())
        })
    }

    /// Checks the config and turns it into the service's settings for its `run`.
    pub fn settings(&self) -> Result<LearnerSettings, LearnerConfigError> {
        self.settings_for(self.run_id()?)
    }

    /// Checks the config and turns it into the service's settings for `run` (a pool's
    /// current run).
    pub fn settings_for(&self, run: u64) -> Result<LearnerSettings, LearnerConfigError> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(LearnerConfigError::Invalid(format!(
                "rank {} (--rank/R1_LEARNER_RANK) is outside a world of {} (--world-size/R1_LEARNER_WORLD_SIZE); ranks are 0..world_size",
                self.rank, self.world_size
            )));
        }
        let mut s = LearnerSettings::new(
            ClientConfig::new(&self.coordinator).with_token(self.token.clone()),
            run,
            self.checkpoints.join(format!("run-{run}")),
        );
        if let Some(w) = &self.worker {
            s.worker = w.clone();
        }
        s.poll = Duration::from_millis(self.poll_ms.max(1));
        Ok(s)
    }

    /// How this rank joins the ring: rank 0 listens at `master_listen` (or `master_addr`),
    /// the others connect to `master_addr`.
    pub fn ring(&self) -> RingConfig {
        let master = match (&self.master_listen, self.rank) {
            (Some(listen), 0) => listen.clone(),
            _ => self.master_addr.clone(),
        };
        RingConfig {
            rank: self.rank,
            world_size: self.world_size,
            master_addr: master,
            bind_addr: self.ring_bind.clone(),
            timeout: Duration::from_secs(self.join_timeout_s.max(1)),
        }
    }
}
