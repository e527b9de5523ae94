//! r1-actor: the generation service.
//!
//! An actor attaches to one run of the coordinator. In a loop it leases prompt groups
//! (`WorkService.LeasePrompts`), makes sure it holds the policy version the lease names —
//! pulling it from the learner's weight stream ([`weights`]) between batches, never inside
//! one — samples G completions per prompt with the `r1-model` sampler, and submits tokens,
//! log-probs and the version that made them (`SubmitSamples`). While it generates it renews
//! its lease, so a long batch is not handed to another actor; if it dies, the lease expires
//! and the coordinator hands the groups out again, so nothing is lost.
//!
//! Sampling is reproducible: each group's samples are seeded by the run's sampling seed and
//! the group id, so a group re-leased after a crash samples the same completions.
//!
//! [`prompt`] decides how an example becomes tokens; the learner uses the same function.

pub mod config;
pub mod prompt;
pub mod weights;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use r1_model::{CausalLm, ModelConfig, SamplingParams, TextTokenizer};
use r1_proto::client::{self, AuthChannel, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;
use r1_proto::v1::work_service_client::WorkServiceClient;
use r1_spec::{Algorithm, GrpoSpec, RunSpec};
use tokio::runtime::Handle;

pub use weights::FetchPolicy;

/// Why an actor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("cannot reach {what}: {message}")]
    Connect { what: &'static str, message: String },
    #[error("coordinator call {call} failed: {} ({:?})", status.message(), status.code())]
    Rpc { call: &'static str, status: Box<tonic::Status> },
    #[error("run {run}: {message}")]
    Run { run: u64, message: String },
    #[error("base model {path}: {message}")]
    Model { path: String, message: String },
    #[error(transparent)]
    Weights(#[from] weights::WeightError),
    #[error("group {group}: {message}")]
    Group { group: u64, message: String },
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> ActorError {
    move |status| ActorError::Rpc { call, status: Box::new(status) }
}

/// What an actor needs to know.
#[derive(Clone, Debug)]
pub struct ActorSettings {
    pub coordinator: ClientConfig,
    /// The learner's weight service (`http://host:port`); without it only version 0 (the
    /// base model) can be sampled.
    pub learner: Option<String>,
    pub run_id: u64,
    /// This actor's name in leases and logs.
    pub worker: String,
    /// Prompt groups leased at once (all are generated in one batch).
    pub max_groups: u32,
    /// Most rows decoded together.
    pub max_batch: usize,
    /// Pause when there is no work.
    pub poll: Duration,
    pub fetch: FetchPolicy,
}

impl ActorSettings {
    pub fn new(coordinator: ClientConfig, run_id: u64) -> Self {
        Self {
            coordinator,
            learner: None,
            run_id,
            worker: format!("actor-{}", std::process::id()),
            max_groups: 4,
            max_batch: 64,
            poll: Duration::from_millis(200),
            fetch: FetchPolicy::default(),
        }
    }
}

/// Totals of one actor's life.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActorReport {
    pub groups: u64,
    pub samples: u64,
    pub tokens: u64,
    pub weight_swaps: u64,
    /// Submissions the coordinator did not count (stale, already done by another actor).
    pub not_counted: u64,
    /// Leases given up before generating because the coordinator stopped holding them while
    /// the actor waited for their policy version (a rollback, or an expired lease).
    pub abandoned: u64,
    /// Groups the actor could not generate (a prompt that does not render, a generation
    /// that failed or panicked), reported to the coordinator with `FailGroup`.
    pub failed: u64,
}

/// The text a reward worker judges: the completion without its stop token (the format
/// verifier rejects anything after `</answer>`). The token ids keep the stop token, so the
/// model learns to stop.
pub fn completion_text(tok: &TextTokenizer, s: &r1_model::Sample) -> r1_model::Result<String> {
    let shown = match (s.finish, s.tokens.split_last()) {
        (r1_model::FinishReason::Stop, Some((_, rest))) => rest,
        _ => s.tokens.as_slice(),
    };
    tok.decode(shown)
}

/// An actor attached to a run, holding one policy version.
pub struct Actor<B: Backend> {
    settings: ActorSettings,
    rt: Handle,
    work: WorkServiceClient<AuthChannel>,
    runs: r1_proto::v1::run_service_client::RunServiceClient<AuthChannel>,
    weights: Option<weights::WeightClient>,
    spec: RunSpec,
    grpo: GrpoSpec,
    tok: TextTokenizer,
    config: ModelConfig,
    model: CausalLm<B>,
    version: u64,
    /// SHA-256 of the weights held, when they came from the learner (not the base folder).
    sha256: Option<String>,
    device: B::Device,
    report: ActorReport,
}

impl<B: Backend> Actor<B> {
    /// Connects, reads the run's spec and loads its base model (version 0). Call from a
    /// thread outside the runtime `rt`.
    pub fn connect(settings: ActorSettings, rt: Handle, device: B::Device) -> Result<Self, ActorError> {
        let channel = rt
            .block_on(client::connect(&settings.coordinator))
            .map_err(|e| ActorError::Connect { what: "the coordinator", message: e.to_string() })?;
        let max = settings.coordinator.max_message_bytes;
        let work = client::work_client(channel.clone(), max);
        let runs = client::run_client(channel, max);
        let run = settings.run_id;
        let status = rt.block_on(client::get_run(&runs, &RetryPolicy::idempotent(), run)).map_err(rpc("Get"))?;
        let spec = RunSpec::from_json(&status.spec_json)
            .map_err(|e| ActorError::Run { run, message: format!("its spec does not parse: {e}") })?;
        let Algorithm::Grpo(grpo) = spec.algorithm.clone() else {
            return Err(ActorError::Run { run, message: "is an SFT run; it has no prompts to sample".into() });
        };
        let base = spec.base_model.clone();
        let model_err = |message: String| ActorError::Model { path: base.display().to_string(), message };
        let tok = TextTokenizer::from_dir(&base).map_err(|e| model_err(e.to_string()))?;
        let config = ModelConfig::from_dir(&base).map_err(|e| model_err(e.to_string()))?;
        let model = r1_model::weights::load_with_config::<B>(&base, config.clone(), &device)
            .map_err(|e| model_err(e.to_string()))?;
        // connect_lazy spawns its connection task on the current runtime.
        let _in_runtime = rt.enter();
        let weights = match &settings.learner {
            // Lazy: the learner may come up after the actor; the first fetch connects.
            Some(url) => Some(
                weights::client(url, settings.coordinator.token.as_deref())
                    .map_err(|message| ActorError::Connect { what: "the learner", message })?,
            ),
            None => None,
        };
        Ok(Self {
            settings,
            rt,
            work,
            runs,
            weights,
            spec,
            grpo,
            tok,
            config,
            model,
            version: 0,
            sha256: None,
            device,
            report: ActorReport::default(),
        })
    }

    /// The policy version the actor holds.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Leases and generates until the run ends or `stop` is set.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> Result<ActorReport, ActorError> {
        while !stop.load(Ordering::Relaxed) {
            if !self.step()? {
                if self.finished()? {
                    break;
                }
                std::thread::sleep(self.settings.poll);
            }
        }
        Ok(self.report)
    }

    /// Whether the run has reached a final state.
    fn finished(&mut self) -> Result<bool, ActorError> {
        let status = self
            .rt
            .block_on(client::get_run(&self.runs, &RetryPolicy::idempotent(), self.settings.run_id))
            .map_err(rpc("Get"))?;
        Ok(!matches!(pb::RunState::try_from(status.state), Ok(pb::RunState::Running | pb::RunState::Pending)))
    }

    /// Leases once and works the lease; false when there was nothing to lease.
    pub fn step(&mut self) -> Result<bool, ActorError> {
        let req = pb::LeasePromptsRequest {
            run_id: self.settings.run_id,
            worker: self.settings.worker.clone(),
            max_groups: self.settings.max_groups.max(1),
        };
        let work = self.work.clone();
        let lease = self.rt.block_on(client::retry("LeasePrompts", &RetryPolicy::default(), || {
            let (mut work, req) = (work.clone(), req.clone());
            async move { work.lease_prompts(req).await }
        }));
        let lease = match lease {
            Ok(l) => l.into_inner(),
            // Not running (finished, cancelled, or not started): nothing to do now.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => return Ok(false),
            Err(s) => return Err(rpc("LeasePrompts")(s)),
        };
        if lease.lease_id == 0 || lease.groups.is_empty() {
            return Ok(false);
        }
        let span = tracing::info_span!(
            "generate",
            run = self.settings.run_id,
            lease = lease.lease_id,
            groups = lease.groups.len(),
            version = lease.policy_version
        );
        let _enter = span.enter();
        let renew =
            client::keep_alive(&self.rt, self.work.clone(), self.settings.run_id, lease.lease_id, lease.deadline_ms);
        let result = self.work_lease(&lease, &renew);
        renew.stop();
        result?;
        Ok(true)
    }

    fn work_lease(&mut self, lease: &pb::PromptLease, renew: &client::KeepAlive) -> Result<(), ActorError> {
        if !self.ensure_version(lease.policy_version, renew)? {
            // A rollback undid the step that made this version (or the lease expired while
            // the actor waited): the coordinator hands the groups out again at the version
            // the run is at now.
            tracing::warn!(
                version = lease.policy_version,
                "lease lost while waiting for its policy version; leaving it"
            );
            self.report.abandoned += 1;
            return Ok(());
        }
        let g = lease.group_size.max(1) as usize;
        let mut prompts = Vec::with_capacity(lease.groups.len());
        let mut keys = Vec::with_capacity(lease.groups.len());
        for group in &lease.groups {
            let ids = match &group.example {
                Some(example) => prompt::prompt_tokens(&self.tok, self.grpo.sampling.template, example),
                None => Err("the coordinator sent a group without its example".into()),
            };
            match ids {
                Ok(ids) => {
                    prompts.push(ids);
                    keys.push(group.group_id);
                }
                Err(message) => self.fail(lease, group.group_id, message)?,
            }
        }
        if prompts.is_empty() {
            return Ok(());
        }
        let s = &self.grpo.sampling;
        let params = SamplingParams {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k as usize,
            max_new_tokens: s.max_new_tokens as usize,
            stop_token_ids: self.tok.eos_token_id().into_iter().collect(),
            stop_strings: s.stop.clone(),
            seed: s.seed,
            max_batch: self.settings.max_batch.max(g),
            kv_budget_mib: None,
        };
        let started = Instant::now();
        // One group must not sink the others, nor the actor: when the batch fails, each
        // group is generated on its own (each is seeded by its id, so it samples the same)
        // and only the ones that fail again are reported.
        let results: Vec<(u64, Result<Vec<r1_model::Sample>, String>)> =
            match self.generate(&prompts, &keys, g, &params) {
                Ok(samples) => keys.iter().copied().zip(samples.into_iter().map(Ok)).collect(),
                Err(message) if keys.len() == 1 => vec![(keys[0], Err(message))],
                Err(message) => {
                    tracing::warn!(%message, "generation of the leased groups failed; generating them one at a time");
                    keys.iter()
                        .zip(&prompts)
                        .map(|(&k, p)| {
                            (k, self.generate(std::slice::from_ref(p), &[k], g, &params).map(|mut v| v.remove(0)))
                        })
                        .collect()
                }
            };
        let tokens: usize = results.iter().filter_map(|(_, r)| r.as_ref().ok()).flatten().map(|s| s.tokens.len()).sum();
        tracing::info!(
            tokens,
            seconds = started.elapsed().as_secs_f64(),
            tokens_per_s = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
            "generated"
        );
        let per_token = started.elapsed().as_secs_f64() / tokens.max(1) as f64;
        for (group_id, result) in results {
            match result {
                Ok(samples) => self.submit(lease, group_id, samples, per_token)?,
                Err(message) => self.fail(lease, group_id, format!("generation failed: {message}"))?,
            }
        }
        Ok(())
    }

    /// G samples for each prompt; an error or a panic of the sampler is an `Err`.
    fn generate(
        &self,
        prompts: &[Vec<u32>],
        keys: &[u64],
        g: usize,
        params: &SamplingParams,
    ) -> Result<Vec<Vec<r1_model::Sample>>, String> {
        let run = || {
            r1_model::sample::generate_keyed(
                &self.model,
                prompts,
                keys,
                g,
                params,
                Some(&self.tok),
                &self.device,
                &mut |_| {},
            )
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(payload) => Err(format!(
                "the sampler panicked: {}",
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into())
            )),
        }
    }

    /// Reports that group `group_id` of `lease` could not be generated; the coordinator
    /// hands it out again or, after `leases.max_attempts` failures, fails it for good.
    fn fail(&mut self, lease: &pb::PromptLease, group_id: u64, reason: String) -> Result<(), ActorError> {
        tracing::warn!(group_id, %reason, "reporting the group as failed");
        let req = pb::FailGroupRequest {
            run_id: self.settings.run_id,
            idempotency_key: format!("fail-generate-{}-{group_id}", lease.lease_id),
            lease_id: lease.lease_id,
            group_id,
            reason,
        };
        let work = self.work.clone();
        let outcome = self
            .rt
            .block_on(client::retry("FailGroup", &RetryPolicy::idempotent(), || {
                let (mut work, req) = (work.clone(), req.clone());
                async move { work.fail_group(req).await }
            }))
            .map_err(rpc("FailGroup"))?
            .into_inner()
            .outcome();
        tracing::debug!(group_id, ?outcome, "failure reported");
        self.report.failed += 1;
        Ok(())
    }

    /// Submits one group; `per_token` is the batch's generation seconds per token.
    fn submit(
        &mut self,
        lease: &pb::PromptLease,
        group_id: u64,
        samples: Vec<r1_model::Sample>,
        per_token: f64,
    ) -> Result<(), ActorError> {
        let mut wire = Vec::with_capacity(samples.len());
        for s in samples {
            let text = match completion_text(&self.tok, &s) {
                Ok(text) => text,
                Err(e) => return self.fail(lease, group_id, format!("cannot decode a completion: {e}")),
            };
            self.report.tokens += s.tokens.len() as u64;
            wire.push(pb::Sample {
                text,
                truncated: s.finish == r1_model::FinishReason::Length,
                generation_seconds: (per_token * s.tokens.len() as f64) as f32,
                token_ids: s.tokens,
                logprobs: s.logprobs,
            });
        }
        let n = wire.len() as u64;
        let req = pb::SubmitSamplesRequest {
            run_id: self.settings.run_id,
            idempotency_key: format!("samples-{}-{group_id}", lease.lease_id),
            group_id,
            policy_version: lease.policy_version,
            samples: wire,
        };
        let work = self.work.clone();
        let outcome = self
            .rt
            .block_on(client::retry("SubmitSamples", &RetryPolicy::idempotent(), || {
                let (mut work, req) = (work.clone(), req.clone());
                async move { work.submit_samples(req).await }
            }))
            .map_err(rpc("SubmitSamples"))?
            .into_inner()
            .outcome();
        match outcome {
            pb::SubmitOutcome::Accepted => {
                self.report.groups += 1;
                self.report.samples += n;
            }
            other => {
                tracing::info!(group_id, ?other, "samples not counted");
                self.report.not_counted += 1;
            }
        }
        Ok(())
    }

    /// Swaps in policy `version` if it is not the one held. A version number alone is not
    /// enough: after a rollback the learner publishes a version number again with other
    /// weights, so a held version is checked against the publisher's SHA-256 too.
    ///
    /// False when `renew` reports the lease lost before the version arrived: after a
    /// rollback the version a lease names may never be published again.
    fn ensure_version(&mut self, version: u64, renew: &client::KeepAlive) -> Result<bool, ActorError> {
        let run = self.settings.run_id;
        if version == self.version {
            let (Some(held), Some(client)) = (&self.sha256, self.weights.as_mut()) else {
                return Ok(true);
            };
            match self.rt.block_on(weights::published_sha256(client, run, version)) {
                Some(now) if &now != held => {
                    tracing::warn!(
                        run,
                        version,
                        "the learner republished this version with other weights (a rollback); fetching it again"
                    );
                }
                _ => return Ok(true),
            }
        }
        let Some(client) = self.weights.as_mut() else {
            return Err(ActorError::Run {
                run,
                message: format!(
                    "the lease asks for policy version {version} but this actor has no learner address to fetch it from; start it with --learner"
                ),
            });
        };
        let policy = &self.settings.fetch;
        let fetched = self.rt.block_on(async {
            tokio::select! {
                fetched = weights::fetch(client, run, version, policy) => Some(fetched),
                () = renew.lost() => None,
            }
        });
        let Some(fetched) = fetched else { return Ok(false) };
        let fetched = fetched?;
        let model = r1_model::weights::from_safetensors_bytes::<B>(
            &fetched.bytes,
            &format!("weights v{version} from the learner"),
            self.config.clone(),
            &self.device,
        )
        .map_err(|e| ActorError::Run { run, message: format!("version {version} does not load: {e}") })?;
        tracing::info!(
            run,
            version,
            bytes = fetched.bytes.len(),
            seconds = fetched.seconds,
            attempts = fetched.attempts,
            "swapped in new weights"
        );
        self.model = model;
        self.version = version;
        self.sha256 = Some(fetched.sha256.clone());
        self.report.weight_swaps += 1;
        Ok(true)
    }

    /// Totals so far.
    pub fn report(&self) -> &ActorReport {
        &self.report
    }

    pub fn spec(&self) -> &RunSpec {
        &self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use r1_model::{FinishReason, Sample};

    #[test]
    fn the_stop_token_is_not_in_the_judged_text() {
        let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../model/tests/fixtures/qwen2-tiny");
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let eos = tok.eos_token_id().expect("the fixture has an EOS token");
        let body = tok.encode("<answer> 7 </answer>").unwrap();
        let with_eos = [body.clone(), vec![eos]].concat();
        let plain = tok.decode(&body).unwrap();
        let cases = [
            (with_eos.clone(), FinishReason::Stop, plain.clone()),
            (body.clone(), FinishReason::StopString, plain.clone()),
            (body.clone(), FinishReason::Length, plain.clone()),
            (vec![eos], FinishReason::Stop, String::new()),
        ];
        for (tokens, finish, want) in cases {
            let s = Sample { logprobs: vec![0.0; tokens.len()], tokens, finish };
            assert_eq!(completion_text(&tok, &s).unwrap(), want, "{finish:?}");
        }
    }
}
