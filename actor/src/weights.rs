//! Pulling a policy version from the learner's `WeightService` (see
//! `r1_learner::publish`): the manifest, then the chunks, each checked against its offset
//! and CRC-32, then the whole file against its SHA-256, which is computed chunk by chunk as
//! the chunks arrive (so it overlaps the transfer instead of following it).
//!
//! A transfer that breaks off resumes from the last good byte; a chunk that fails its check
//! is fetched again; a file that fails its SHA-256 is fetched again from the start. Nothing
//! is returned, and so nothing is loaded, until every check has passed. After
//! [`FetchPolicy::attempts`] failed attempts the error says what went wrong last.

use std::time::{Duration, Instant};

use r1_proto::client::{AuthChannel, BearerToken};
use r1_proto::v1 as pb;
use r1_proto::v1::weight_service_client::WeightServiceClient;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

/// A client of a learner's weight service, carrying the cluster's bearer token when there is
/// one (the learner checks the coordinator's token).
pub type WeightClient = WeightServiceClient<AuthChannel>;

/// A lazy client of the weight service at `url` (`http://host:port`): it connects on first
/// use, so the learner may come up after the actor. Call inside a Tokio runtime.
pub fn client(url: &str, token: Option<&str>) -> Result<WeightClient, String> {
    let channel = Channel::from_shared(url.to_string())
        .map_err(|e| format!("bad URL `{url}`: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    let token = BearerToken::new(token).map_err(|e| e.to_string())?;
    Ok(WeightServiceClient::new(tonic::service::interceptor::InterceptedService::new(channel, token))
        .max_decoding_message_size(64 << 20))
}

/// Why weights could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("weights for version {version} are not available: {message}")]
    Unavailable { version: u64, message: String },
    #[error("fetching version {version} failed {attempts} times; last: {last}")]
    GaveUp { version: u64, attempts: u32, last: String },
}

/// How hard to try.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Transfers started before giving up (a resumed transfer counts as a new attempt).
    pub attempts: u32,
    /// How long to wait for a version the learner has not published yet.
    pub wait: Duration,
    /// Pause between attempts.
    pub backoff: Duration,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self { attempts: 8, wait: Duration::from_secs(120), backoff: Duration::from_millis(200) }
    }
}

/// A verified copy of one version.
#[derive(Debug)]
pub struct Fetched {
    pub version: u64,
    pub bytes: Vec<u8>,
    /// The file's SHA-256 (lower-case hex), as the manifest gave it.
    pub sha256: String,
    pub seconds: f64,
    /// Attempts it took (1 when nothing went wrong).
    pub attempts: u32,
}

/// Fetches `version` of run `run_id` and verifies it.
pub async fn fetch(
    client: &mut WeightClient,
    run_id: u64,
    version: u64,
    policy: &FetchPolicy,
) -> Result<Fetched, WeightError> {
    let started = Instant::now();
    let manifest = manifest(client, run_id, version, policy).await?;
    let total = manifest.total_bytes as usize;
    let mut bytes: Vec<u8> = Vec::with_capacity(total);
    let mut last = String::new();
    // SHA-256 of `bytes` so far: a resumed transfer continues it.
    let mut hasher = Sha256::new();
    for attempt in 1..=policy.attempts {
        if attempt > 1 {
            tracing::warn!(run = run_id, version, attempt, offset = bytes.len(), "retrying weight transfer: {last}");
            tokio::time::sleep(policy.backoff).await;
        }
        match pull(client, run_id, version, total, &mut bytes, &mut hasher).await {
            Ok(()) => {}
            Err(e) => {
                last = e;
                continue;
            }
        }
        let digest = hex::encode(std::mem::take(&mut hasher).finalize());
        if digest == manifest.sha256 {
            return Ok(Fetched {
                version,
                bytes,
                sha256: digest,
                seconds: started.elapsed().as_secs_f64(),
                attempts: attempt,
            });
        }
        last = format!("SHA-256 {digest} does not match the manifest's {}; starting over", manifest.sha256);
        bytes.clear();
    }
    Err(WeightError::GaveUp { version, attempts: policy.attempts, last })
}

/// The SHA-256 the publisher holds for `version` now, without waiting; `None` when it
/// cannot say (not published, dropped, or unreachable).
pub async fn published_sha256(client: &mut WeightClient, run_id: u64, version: u64) -> Option<String> {
    let m = client.manifest(pb::ManifestRequest { run_id, version, wait_ms: 0 }).await.ok()?.into_inner();
    (m.version == version).then_some(m.sha256)
}

async fn manifest(
    client: &mut WeightClient,
    run_id: u64,
    version: u64,
    policy: &FetchPolicy,
) -> Result<pb::WeightManifest, WeightError> {
    let deadline = Instant::now() + policy.wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_ms = left.min(Duration::from_secs(10)).as_millis() as u32;
        match client.manifest(pb::ManifestRequest { run_id, version, wait_ms }).await {
            Ok(m) => return Ok(m.into_inner()),
            // Not published yet (UNAVAILABLE), or the learner is down or restarting (a
            // refused or reset connection): the same classification as every other call.
            Err(s) if r1_proto::client::is_transient(&s, true) && !left.is_zero() => {
                tracing::debug!(version, "weights not available yet: {}", s.message());
                tokio::time::sleep(policy.backoff.min(left)).await;
            }
            Err(s) => return Err(WeightError::Unavailable { version, message: s.message().to_string() }),
        }
    }
}

/// Appends chunks from `bytes.len()` on until `total`; on any failure keeps what verified.
async fn pull(
    client: &mut WeightClient,
    run_id: u64,
    version: u64,
    total: usize,
    bytes: &mut Vec<u8>,
    hasher: &mut Sha256,
) -> Result<(), String> {
    let request = pb::FetchWeightsRequest { run_id, version, offset: bytes.len() as u64 };
    let mut stream = client.fetch(request).await.map_err(|s| format!("Fetch: {}", s.message()))?.into_inner();
    while bytes.len() < total {
        let chunk = match stream.message().await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(format!("the stream ended at byte {} of {total}", bytes.len())),
            Err(s) => return Err(format!("the stream broke at byte {}: {}", bytes.len(), s.message())),
        };
        if chunk.version != version || chunk.offset != bytes.len() as u64 {
            return Err(format!(
                "got version {} offset {} where version {version} offset {} was due",
                chunk.version,
                chunk.offset,
                bytes.len()
            ));
        }
        if bytes.len() + chunk.data.len() > total {
            return Err(format!("chunk at {} runs past the end ({total} bytes)", chunk.offset));
        }
        if crc32fast::hash(&chunk.data) != chunk.crc32 {
            return Err(format!("chunk at {} fails its CRC-32", chunk.offset));
        }
        hasher.update(&chunk.data);
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(())
}
