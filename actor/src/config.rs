//! The actor service's config (`r1ctl serve actor`), layered like every r1 config: these
//! defaults < a TOML file < `R1_ACTOR_*` environment variables (`R1_ACTOR_RUN=3`,
//! `R1_ACTOR_LEARNER=http://learner:7071`) < command-line flags. Unknown keys are refused.

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use r1_proto::client::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::ActorSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorConfig {
    /// The coordinator's address.
    pub coordinator: String,
    /// Bearer token for the coordinator, when it requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The run to work for; none: a pool serving the coordinator's running runs, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u64>,
    /// Learner rank 0's weight service; without it the actor can sample version 0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learner: Option<String>,
    /// Name in leases and logs (default: `actor-<pid>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Prompt groups per lease, generated together.
    pub max_groups: u32,
    /// Most rows decoded at once.
    pub max_batch: usize,
    /// Pause between leases when there is no work.
    pub poll_ms: u64,
    /// Where the actor serves `grpc.health.v1` for probes (`0.0.0.0:8081`); none: nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<String>,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            coordinator: "http://127.0.0.1:7070".into(),
            token: None,
            run: None,
            learner: None,
            worker: None,
            max_groups: 4,
            max_batch: 64,
            poll_ms: 200,
            health_listen: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActorConfigError {
    #[error("actor config: {0}; fix or remove that key")]
    Parse(Box<figment::Error>),
    #[error("actor config `{0}`")]
    Invalid(String),
}

impl ActorConfig {
    /// Defaults < `file` (must exist when given) < `R1_ACTOR_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ActorConfigError> {
        let mut f = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        f.merge(Env::prefixed("R1_ACTOR_").split("__")).extract().map_err(|e| ActorConfigError::Parse(Box::new(e)))
    }

    /// Checks the config and turns it into the actor's settings for its `run`.
    pub fn settings(&self) -> Result<ActorSettings, ActorConfigError> {
        let run = self.run.ok_or_else(|| {
            ActorConfigError::Invalid("run is not set; pass --run N (the id `r1ctl submit-run` printed)".into())
        })?;
        self.settings_for(run)
    }

    /// Checks the config and turns it into the actor's settings for `run` (a pool's current
    /// run).
    pub fn settings_for(&self, run: u64) -> Result<ActorSettings, ActorConfigError> {
        if self.max_groups == 0 || self.max_batch == 0 {
            return Err(ActorConfigError::Invalid("max_groups and max_batch must be at least 1".into()));
        }
        let mut s = ActorSettings::new(ClientConfig::new(&self.coordinator).with_token(self.token.clone()), run);
        s.learner = self.learner.clone();
        if let Some(w) = &self.worker {
            s.worker = w.clone();
        }
        s.max_groups = self.max_groups;
        s.max_batch = self.max_batch;
        s.poll = Duration::from_millis(self.poll_ms.max(1));
        Ok(s)
    }
}
