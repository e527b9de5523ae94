//! Weight publishing: learner rank 0 serves each new policy version to actors over the
//! `WeightService` gRPC stream (see `proto/r1/v1/weights.proto`).
//!
//! A version is one safetensors file in memory. The publisher keeps the newest `keep`
//! versions (actors lagging by up to `max_policy_lag` still find theirs) and serves them in
//! chunks of `chunk_bytes`, each with its offset and CRC-32; the manifest carries the whole
//! file's SHA-256. The client side, which verifies all of that and resumes a cut transfer,
//! is `r1_actor::weights`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r1_proto::v1 as pb;
use r1_proto::v1::weight_service_server::{WeightService, WeightServiceServer};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// Chunk size of the stream: small enough for gRPC's default limits, big enough that
/// per-message overhead is noise.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// One published version.
#[derive(Clone)]
struct Version {
    /// The published file; chunks are slices of it (no copy).
    bytes: prost::bytes::Bytes,
    sha256: String,
    dtype: String,
}

#[derive(Default)]
struct Held {
    versions: BTreeMap<u64, Version>,
}

/// The set of versions rank 0 serves; cheap to clone (all clones share it). A learner pool
/// keeps one publisher (and its port) across runs and moves it to each run it claims with
/// [`Publisher::start_run`]; run 0 means none yet.
#[derive(Clone)]
pub struct Publisher {
    run_id: Arc<std::sync::atomic::AtomicU64>,
    keep: usize,
    chunk_bytes: usize,
    held: Arc<Mutex<Held>>,
    newest: watch::Sender<u64>,
}

impl Publisher {
    /// A publisher for run `run_id` holding the newest `keep` versions (at least 1).
    pub fn new(run_id: u64, keep: usize, chunk_bytes: usize) -> Self {
        Self {
            run_id: Arc::new(std::sync::atomic::AtomicU64::new(run_id)),
            keep: keep.max(1),
            chunk_bytes: chunk_bytes.max(1),
            held: Default::default(),
            newest: watch::Sender::new(0),
        }
    }

    /// Publishes `bytes` (a safetensors file whose tensors are `dtype`, e.g. "float32") as
    /// `version`, dropping the oldest versions beyond `keep`.
    pub fn publish(&self, version: u64, bytes: Vec<u8>, dtype: &str) {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let mut held = self.held.lock().expect("publisher lock");
        held.versions.insert(version, Version { bytes: prost::bytes::Bytes::from(bytes), sha256, dtype: dtype.into() });
        while held.versions.len() > self.keep {
            held.versions.pop_first();
        }
        let newest = *held.versions.keys().next_back().expect("just inserted");
        drop(held);
        self.newest.send_replace(newest);
        tracing::info!(run = self.run_id(), version, "published weights");
    }

    /// The run whose weights this publisher serves (0: none yet).
    pub fn run_id(&self) -> u64 {
        self.run_id.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Serves `run_id` from now on, with no version published: the versions of the run before
    /// are dropped, and actors still asking for that run are told it is not served here.
    pub fn start_run(&self, run_id: u64) {
        let mut held = self.held.lock().expect("publisher lock");
        held.versions.clear();
        self.run_id.store(run_id, std::sync::atomic::Ordering::Release);
        drop(held);
        self.newest.send_replace(0);
        tracing::info!(run = run_id, "publishing weights of a new run");
    }

    /// The newest version published (0 before the first).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// The gRPC service, with message limits sized for the chunks.
    pub fn service(&self) -> WeightServiceServer<Publisher> {
        WeightServiceServer::new(self.clone()).max_encoding_message_size(self.chunk_bytes + (64 << 10))
    }

    /// [`Publisher::service`] behind `auth`: with a token set, every call must carry it (the
    /// cluster's token, the one the coordinator checks), so weights do not leak to whoever
    /// reaches the port.
    pub fn authenticated(&self, auth: r1_proto::Auth) -> AuthenticatedService {
        tonic::service::interceptor::InterceptedService::new(self.service(), auth)
    }

    fn get(&self, version: u64) -> Result<(u64, Version, u64), Status> {
        let held = self.held.lock().expect("publisher lock");
        let newest = held.versions.keys().next_back().copied();
        let Some(newest) = newest else {
            return Err(Status::unavailable("no weights are published yet; ask again shortly"));
        };
        let version = if version == 0 { newest } else { version };
        match held.versions.get(&version) {
            Some(v) => Ok((version, v.clone(), newest)),
            None if version > newest => Err(Status::unavailable(format!(
                "version {version} is not published yet (newest is {newest}); ask again shortly"
            ))),
            None => Err(Status::not_found(format!(
                "version {version} was dropped (this publisher keeps the newest {}, up to {newest}); fetch a newer one",
                self.keep
            ))),
        }
    }

    fn check_run(&self, run_id: u64) -> Result<(), Status> {
        let serving = self.run_id();
        if serving == 0 {
            // A pool between runs: the run's fleet has not claimed it yet, or is loading it.
            return Err(Status::unavailable(format!(
                "this learner serves no run yet (run {run_id} is not claimed by its fleet); ask again shortly"
            )));
        }
        if run_id != serving {
            return Err(Status::not_found(format!(
                "this learner publishes run {serving}, not run {run_id}; check the actor's --learner address"
            )));
        }
        Ok(())
    }
}

/// The weight service behind a bearer-token check.
pub type AuthenticatedService =
    tonic::service::interceptor::InterceptedService<WeightServiceServer<Publisher>, r1_proto::Auth>;

type ChunkStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WeightChunk, Status>> + Send>>;

#[tonic::async_trait]
impl WeightService for Publisher {
    #[tracing::instrument(skip_all, fields(run = request.get_ref().run_id, version = request.get_ref().version))]
    async fn manifest(&self, request: Request<pb::ManifestRequest>) -> Result<Response<pb::WeightManifest>, Status> {
        let r = request.into_inner();
        self.check_run(r.run_id)?;
        if r.wait_ms > 0 {
            // Wait until the version (or any, for 0) is published, up to wait_ms.
            let mut rx = self.newest.subscribe();
            let want = r.version.max(1);
            let _ = tokio::time::timeout(Duration::from_millis(r.wait_ms as u64), rx.wait_for(|&n| n >= want)).await;
        }
        let (version, v, newest) = self.get(r.version)?;
        Ok(Response::new(pb::WeightManifest {
            run_id: self.run_id(),
            version,
            total_bytes: v.bytes.len() as u64,
            sha256: v.sha256,
            chunk_bytes: self.chunk_bytes as u32,
            dtype: v.dtype,
            newest,
        }))
    }

    type FetchStream = ChunkStream;

    #[tracing::instrument(skip_all, fields(run = request.get_ref().run_id, version = request.get_ref().version, offset = request.get_ref().offset))]
    async fn fetch(&self, request: Request<pb::FetchWeightsRequest>) -> Result<Response<ChunkStream>, Status> {
        let r = request.into_inner();
        self.check_run(r.run_id)?;
        if r.version == 0 {
            return Err(Status::invalid_argument("version is 0; ask Manifest for the newest version first"));
        }
        let (version, v, _) = self.get(r.version)?;
        let total = v.bytes.len() as u64;
        if r.offset > total {
            return Err(Status::invalid_argument(format!(
                "offset {} is past the end of version {version} ({total} bytes)",
                r.offset
            )));
        }
        let chunk = self.chunk_bytes;
        let bytes = v.bytes;
        let starts = (r.offset as usize..bytes.len()).step_by(chunk);
        let stream = tokio_stream::iter(starts.map(move |start| {
            let data = bytes.slice(start..(start + chunk).min(bytes.len()));
            Ok(pb::WeightChunk { version, offset: start as u64, crc32: crc32fast::hash(&data), data })
        }));
        Ok(Response::new(Box::pin(stream)))
    }
}
