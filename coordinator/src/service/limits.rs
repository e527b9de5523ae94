//! What both services enforce: message size, concurrency and deadlines.
//!
//! Limits ([`Limits`], the coordinator config's `limits` table), each tested at its boundary in
//! `tests/limits.rs`:
//! - **message size**: both services accept and send messages up to `max_message_bytes`
//!   (default [`MAX_MESSAGE_BYTES`]: a GRPO batch of 32 prompts × 16 samples × 8k tokens with
//!   log-probs is about 40 MiB); a larger request is refused by tonic with `OUT_OF_RANGE`
//!   before any handler runs.
//! - **concurrency**: at most `max_concurrent_requests` RPCs are handled at once across all
//!   connections; past that a request waits for a slot (`when_busy = "wait"`, until its
//!   deadline) or is refused at once with `RESOURCE_EXHAUSTED` (`"reject"`).
//! - **deadlines**: a request's `grpc-timeout` is honoured. A request whose deadline passes
//!   before its store transaction starts (waiting for a slot or for the store) is answered
//!   `DEADLINE_EXCEEDED` and changes nothing; a transaction that has started runs to its end,
//!   since each is atomic, so the store never holds half a request: a retry with the same
//!   idempotency key then gets the first answer again and changes nothing. The handler
//!   answers a little before the deadline so that its `DEADLINE_EXCEEDED` arrives ahead of
//!   tonic's own timer, which would answer `CANCELLED` "Timeout expired" (as does a tonic
//!   client's own timer: `r1_proto::client::retry` treats both alike).

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Status};

/// The limits both services enforce; the coordinator config's `limits` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request or response, in bytes, on both services.
    pub max_message_bytes: usize,
    /// RPCs handled at once across all connections (a Watch stream counts while it reads its
    /// first status); 0 means no limit.
    pub max_concurrent_requests: usize,
    /// What a request past `max_concurrent_requests` does.
    pub when_busy: WhenBusy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: MAX_MESSAGE_BYTES, max_concurrent_requests: 256, when_busy: WhenBusy::Wait }
    }
}

/// What a request does when every concurrency slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenBusy {
    /// Wait for a slot, until the request's deadline (`DEADLINE_EXCEEDED` then).
    Wait,
    /// Answer `RESOURCE_EXHAUSTED` at once; clients retry with backoff.
    Reject,
}

/// The concurrency slots shared by both services.
#[derive(Clone)]
pub(super) struct Gate {
    slots: Option<Arc<tokio::sync::Semaphore>>,
    limit: usize,
    when_busy: WhenBusy,
}

impl Gate {
    pub(super) fn new(limits: &Limits) -> Gate {
        let limit = limits.max_concurrent_requests;
        Gate {
            slots: (limit > 0).then(|| Arc::new(tokio::sync::Semaphore::new(limit))),
            limit,
            when_busy: limits.when_busy,
        }
    }

    /// A slot for one request, held until the returned permit is dropped.
    pub(super) async fn enter(
        &self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Status> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        let busy = || format!("the coordinator is handling its limit of {} requests at once", self.limit);
        match (self.when_busy, deadline) {
            (WhenBusy::Reject, _) => slots.clone().try_acquire_owned().map(Some).map_err(|_| {
                Status::resource_exhausted(format!(
                    "{}; retry with backoff or raise limits.max_concurrent_requests",
                    busy()
                ))
            }),
            (WhenBusy::Wait, None) => Ok(slots.clone().acquire_owned().await.ok()),
            (WhenBusy::Wait, Some(deadline)) => {
                match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
                    Ok(permit) => Ok(permit.ok()),
                    Err(_) => Err(Status::deadline_exceeded(format!(
                        "{}, and the request's deadline passed while it waited; nothing was applied",
                        busy()
                    ))),
                }
            }
        }
    }
}

/// When the handler answers a request: a little before its `grpc-timeout` (5 %, at most
/// 50 ms), so that its own `DEADLINE_EXCEEDED` leaves ahead of tonic's timer.
pub fn deadline_of<T>(request: &Request<T>) -> Option<tokio::time::Instant> {
    let timeout = parse_grpc_timeout(request.metadata().get("grpc-timeout")?.to_str().ok()?)?;
    let margin = (timeout / 20).min(Duration::from_millis(50));
    Some(tokio::time::Instant::now() + timeout - margin)
}

/// A `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The largest request or response either service accepts or sends.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
