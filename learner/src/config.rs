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
    /// The run to train (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    pub rank: usize,
    pub world_size: usize,
    /// Where rank 0 listens for the other ranks to join the ring (`host:port`).
    pub master_addr: String,
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
            ring_bind: "127.0.0.1:0".into(),
            weights_listen: "127.0.0.1:7071".into(),
            weights_keep: 2,
            checkpoints: "r1-data/checkpoints".into(),
            worker: None,
            poll_ms: 100,
            join_timeout_s: 300,
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

    /// Checks the config and turns it into the service's settings.
    pub fn settings(&self) -> Result<LearnerSettings, LearnerConfigError> {
        let run = self.run_id()?;
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(LearnerConfigError::Invalid(format!(
                "rank {} is outside a world of {}; ranks are 0..world_size",
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

    pub fn ring(&self) -> RingConfig {
        RingConfig {
            rank: self.rank,
            world_size: self.world_size,
            master_addr: self.master_addr.clone(),
            bind_addr: self.ring_bind.clone(),
            timeout: Duration::from_secs(self.join_timeout_s.max(1)),
        }
    }
}
