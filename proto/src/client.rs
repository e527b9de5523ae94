//! The one way every r1 process talks to the coordinator: [`connect`] a channel, wrap it in
//! [`work_client`] or [`run_client`], and call through [`retry`].
//!
//! - **Connecting.** [`connect`] dials `url` with exponential backoff and jitter until
//!   [`ClientConfig::connect_timeout`] has passed, so a worker started a little before its
//!   coordinator waits for it instead of failing. The channel it returns reconnects by itself:
//!   once connected, a broken connection (the coordinator restarted or crashed) fails the calls
//!   in flight with `UNAVAILABLE` and the next call dials again. HTTP/2 keep-alive pings find a
//!   connection whose peer vanished without closing it (a lost machine) within about 30 s.
//! - **Auth.** [`BearerToken`] adds `authorization: Bearer <token>` to every call when a token
//!   is set, which is what the coordinator's `token` setting asks for.
//! - **Retrying.** [`retry`] repeats a call on the codes that say "try again" (see
//!   [`is_transient`]) with exponential backoff and jitter, logs each retry at `warn`, and gives
//!   up after [`RetryPolicy::max_elapsed`], naming the attempts in the final status. Every other
//!   code is returned at once: retrying `INVALID_ARGUMENT` or `UNAUTHENTICATED` cannot help.
//!
//! Not covered: TLS (the coordinator has none yet) and load balancing over several
//! coordinators (there is one).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::v1::run_service_client::RunServiceClient;
use crate::v1::work_service_client::WorkServiceClient;

/// A channel to the coordinator that carries the bearer token on every call.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// How to reach the coordinator. Defaults in one place: [`ClientConfig::new`].
#[derive(Clone, PartialEq)]
pub struct ClientConfig {
    /// `http://host:port` of the coordinator.
    pub url: String,
    /// Bearer token the coordinator requires; `None` when it has none (loopback).
    pub token: Option<String>,
    /// How long [`connect`] keeps trying before it gives up; also the limit of each dial,
    /// including the dials that reconnect later.
    pub connect_timeout: Duration,
    /// Client-side limit of each call; a call past it fails with `CANCELLED` "Timeout expired",
    /// which [`retry`] treats as a deadline.
    pub request_timeout: Duration,
    /// Largest message sent or received.
    pub max_message_bytes: usize,
}

impl ClientConfig {
    /// `url` with no token, 5 s to connect, 60 s per call and 256 MiB messages (the
    /// coordinator's own limit: a large GRPO batch is about 40 MiB).
    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_message_bytes: 256 << 20,
        }
    }

    /// The same config with `token` (an empty token counts as none).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }
}

impl std::fmt::Debug for ClientConfig {
    /// Never prints the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{url}` is not a coordinator URL ({reason}); use http://host:port")]
    BadUrl { url: String, reason: String },
    #[error("the token has characters an HTTP header cannot carry; use visible ASCII characters only")]
    BadToken,
    #[error(
        "cannot reach the coordinator at {url} after {attempts} attempts in {waited:?} ({last}); check the address, that the coordinator is running, or raise connect_timeout"
    )]
    Unreachable { url: String, attempts: u32, waited: Duration, last: String },
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// `None` sends no header.
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        match token {
            None => Ok(BearerToken(None)),
            Some(t) => format!("Bearer {t}").parse().map(|v| BearerToken(Some(v))).map_err(|_| ClientError::BadToken),
        }
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BearerToken(<set>)" } else { "BearerToken(None)" })
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// The endpoint [`connect`] dials: its timeouts, keep-alive and reconnect behaviour.
pub fn endpoint(cfg: &ClientConfig) -> Result<Endpoint, ClientError> {
    let bad = |reason: String| ClientError::BadUrl { url: cfg.url.clone(), reason };
    let endpoint = Endpoint::from_shared(cfg.url.clone()).map_err(|e| bad(e.to_string()))?;
    if endpoint.uri().host().is_none() || endpoint.uri().scheme().is_none() {
        return Err(bad("no scheme or host".into()));
    }
    Ok(endpoint
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Connects to the coordinator, retrying with exponential backoff and jitter until
/// `cfg.connect_timeout` has passed. The channel reconnects by itself afterwards.
pub async fn connect(cfg: &ClientConfig) -> Result<AuthChannel, ClientError> {
    let token = BearerToken::new(cfg.token.as_deref())?;
    let endpoint = endpoint(cfg)?;
    let start = Instant::now();
    let mut delays = backoff(Duration::from_millis(50), Duration::from_secs(1));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = cfg.connect_timeout.saturating_sub(start.elapsed());
        let last = match tokio::time::timeout(remaining, endpoint.connect()).await {
            Ok(Ok(channel)) => return Ok(InterceptedService::new(channel, token)),
            Ok(Err(e)) => error_chain(&e),
            Err(_) => "timed out".to_string(),
        };
        let delay = delays.next().unwrap_or(Duration::from_secs(1));
        if start.elapsed() + delay >= cfg.connect_timeout {
            return Err(ClientError::Unreachable { url: cfg.url.clone(), attempts, waited: start.elapsed(), last });
        }
        tracing::debug!(url = %cfg.url, attempt = attempts, ?delay, error = %last, "coordinator not reachable yet; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// A WorkService client (actors, reward workers, learners) with `max_message_bytes` both ways.
pub fn work_client(ch: AuthChannel, max_message_bytes: usize) -> WorkServiceClient<AuthChannel> {
    WorkServiceClient::new(ch).max_decoding_message_size(max_message_bytes).max_encoding_message_size(max_message_bytes)
}

/// A RunService client (`r1ctl`, and workers reading their run) with `max_message_bytes` both
/// ways.
pub fn run_client(ch: AuthChannel, max_message_bytes: usize) -> RunServiceClient<AuthChannel> {
    RunServiceClient::new(ch).max_decoding_message_size(max_message_bytes).max_encoding_message_size(max_message_bytes)
}

/// How [`retry`] waits between attempts and when it gives up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the first retry; each later wait doubles, with jitter.
    pub initial_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
    /// Whether the call may be repeated after a deadline: true when the server applies it at
    /// most once (a submission with an idempotency key, a read) or when an orphaned result
    /// harms nothing (a lease that nobody uses expires and is handed out again).
    pub idempotent: bool,
}

impl Default for RetryPolicy {
    /// 100 ms doubling up to 5 s, for 2 minutes (long enough for a coordinator to restart),
    /// not idempotent.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(120),
            idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// The default policy for a call that is safe to repeat after a deadline.
    pub fn idempotent() -> Self {
        RetryPolicy { idempotent: true, ..RetryPolicy::default() }
    }
}

/// Whether a failed call is worth repeating: `UNAVAILABLE` (coordinator down or restarting),
/// `RESOURCE_EXHAUSTED` (a concurrency limit or a full queue), `ABORTED`, a deadline when the
/// call is idempotent (`DEADLINE_EXCEEDED`, or tonic's client-side `CANCELLED` "Timeout
/// expired"), and `UNKNOWN`/`CANCELLED` made on this side from a transport error (a reset
/// connection), never the same codes sent by the server.
pub fn is_transient(status: &Status, idempotent: bool) -> bool {
    let local = std::error::Error::source(status).is_some();
    let timed_out = local && has_source::<tonic::TimeoutExpired>(status);
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted => true,
        Code::DeadlineExceeded => idempotent,
        Code::Cancelled if timed_out => idempotent,
        Code::Unknown | Code::Cancelled => local,
        _ => false,
    }
}

/// Calls `f` until it succeeds, fails with a code that is not transient ([`is_transient`]), or
/// `policy.max_elapsed` has passed; `what` names the call in logs and in the final status.
pub async fn retry<T, F, Fut>(what: &'static str, policy: &RetryPolicy, mut f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    let mut delays = backoff(policy.initial_delay, policy.max_delay);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let status = match f().await {
            Ok(v) => return Ok(v),
            Err(status) => status,
        };
        if !is_transient(&status, policy.idempotent) {
            return Err(status);
        }
        let delay = delays.next().unwrap_or(policy.max_delay);
        if start.elapsed() + delay > policy.max_elapsed {
            return Err(Status::new(
                status.code(),
                format!(
                    "{what}: {} (gave up after {attempt} attempts in {:?}; the retry limit is {:?})",
                    status.message(),
                    start.elapsed(),
                    policy.max_elapsed
                ),
            ));
        }
        tracing::warn!(call = what, attempt, ?delay, code = ?status.code(), error = %status.message(), "coordinator call failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Exponential delays from `min` doubling to `max`, each with jitter, without end.
fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max.max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

fn has_source<E: std::error::Error + 'static>(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// An error and its causes on one line (tonic's transport errors hide the cause otherwise).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A lease kept alive in the background by [`keep_alive`]. Dropping it (or [`KeepAlive::stop`])
/// stops renewing; [`KeepAlive::lost`] resolves once the coordinator says the lease is no
/// longer held (it expired, or a rollback undid the work it named), so the worker can give
/// up work nobody will take.
pub struct KeepAlive {
    task: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl KeepAlive {
    /// Stops renewing.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Whether the coordinator has said the lease is no longer held.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is known lost; never while it is held.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        if rx.wait_for(|&lost| lost).await.is_err() {
            // The renewing task ended without saying the lease was lost (stopped): wait forever.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps lease `lease_id` of run `run_id` alive with `Renew` every third of its time to live
/// (from `deadline_ms`, Unix milliseconds) until the returned handle is stopped or dropped,
/// so long work is not handed to another worker. Stops by itself once the lease is no longer
/// held, and says so through [`KeepAlive::lost`].
pub fn keep_alive(
    rt: &tokio::runtime::Handle,
    mut work: WorkServiceClient<AuthChannel>,
    run_id: u64,
    lease_id: u64,
    deadline_ms: i64,
) -> KeepAlive {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let every = Duration::from_millis(((deadline_ms - now_ms) / 3).clamp(100, 60_000) as u64);
    let (tx, lost) = tokio::sync::watch::channel(false);
    let task = rt.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match work.renew(crate::v1::RenewRequest { run_id, lease_id }).await {
                Ok(r) if !r.get_ref().held => {
                    tracing::warn!(
                        run_id,
                        lease_id,
                        "lease no longer held: its work went to another worker or was rolled back"
                    );
                    let _ = tx.send(true);
                    return;
                }
                Ok(_) => {}
                Err(s) => tracing::warn!(run_id, lease_id, "renewing the lease failed: {}", s.message()),
            }
        }
    });
    KeepAlive { task, lost }
}

/// Run `id`'s status (`RunService.Get`), retried under `policy`: what every worker asks
/// before it starts and whenever it wonders whether its run has ended.
pub async fn get_run(
    runs: &RunServiceClient<AuthChannel>,
    policy: &RetryPolicy,
    id: u64,
) -> Result<crate::v1::RunStatus, Status> {
    let status = retry("Get", policy, || {
        let mut runs = runs.clone();
        async move { runs.get(crate::v1::GetRunRequest { id }).await }
    })
    .await?;
    Ok(status.into_inner())
}
