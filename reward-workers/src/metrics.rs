//! Counters of a reward worker, rendered in the Prometheus text format.
//!
//! Queue depth (`r1_reward_queue_depth`: jobs accepted and waiting for a slot) is the
//! autoscaling signal; jobs/s, latency and results by status say how the pool is doing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use r1_telemetry::prometheus::{Kind, Page};

use crate::job::Status;

/// Upper bounds of the latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The window of the jobs/s gauge.
const RATE_WINDOW_S: u64 = 60;

/// Every status, in the order they are rendered.
/// Every status, in the order metrics report them.
pub const STATUSES: [Status; 10] = [
    Status::Ok,
    Status::InvalidInput,
    Status::NoAnswer,
    Status::Failed,
    Status::Timeout,
    Status::MemoryLimit,
    Status::ResourceLimit,
    Status::SandboxViolation,
    Status::ExitedEarly,
    Status::InternalError,
];

/// The wire and label name of a status (as in the JSONL output).
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::InvalidInput => "invalid_input",
        Status::NoAnswer => "no_answer",
        Status::Failed => "failed",
        Status::Timeout => "timeout",
        Status::MemoryLimit => "memory_limit",
        Status::ResourceLimit => "resource_limit",
        Status::SandboxViolation => "sandbox_violation",
        Status::ExitedEarly => "exited_early",
        Status::InternalError => "internal_error",
    }
}

/// Counters shared by the service's tasks; cheap to update from any thread.
pub struct Metrics {
    started: Instant,
    by_status: [AtomicU64; STATUSES.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_micros: AtomicU64,
    queued: AtomicI64,
    in_flight: AtomicI64,
    rejected_batches: AtomicU64,
    /// Jobs finished per second of uptime, for the last `RATE_WINDOW_S` seconds: (second, count).
    recent: Mutex<[(u64, u64); RATE_WINDOW_S as usize]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            by_status: Default::default(),
            latency_buckets: Default::default(),
            latency_micros: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            rejected_batches: AtomicU64::new(0),
            recent: Mutex::new([(u64::MAX, 0); RATE_WINDOW_S as usize]),
        }
    }
}

impl Metrics {
    /// A job was accepted and waits for a slot.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued job got a slot and started.
    pub fn started(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued job was dropped before it started (its caller went away).
    pub fn abandoned(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// A running job finished with `status` after `latency`.
    pub fn finished(&self, status: Status, latency: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.record(status, latency);
    }

    /// Counts one scored job (also used by offline scoring, which has no queue).
    pub fn record(&self, status: Status, latency: Duration) {
        let index = STATUSES.iter().position(|s| *s == status).expect("every status is listed");
        self.by_status[index].fetch_add(1, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_micros.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        let now = self.started.elapsed().as_secs();
        let mut recent = self.recent.lock().expect("metrics lock");
        let slot = &mut recent[(now % RATE_WINDOW_S) as usize];
        if slot.0 != now {
            *slot = (now, 0);
        }
        slot.1 += 1;
    }

    /// A whole batch was refused because the queue was full.
    pub fn rejected(&self) {
        self.rejected_batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_depth(&self) -> i64 {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Jobs scored so far with `status`.
    pub fn count(&self, status: Status) -> u64 {
        let index = STATUSES.iter().position(|s| *s == status).expect("every status is listed");
        self.by_status[index].load(Ordering::Relaxed)
    }

    /// Jobs finished per second over the last minute (or the uptime, if shorter).
    pub fn jobs_per_second(&self) -> f64 {
        let elapsed = self.started.elapsed();
        let now = elapsed.as_secs();
        let recent = self.recent.lock().expect("metrics lock");
        let done: u64 = recent.iter().filter(|(s, _)| *s != u64::MAX && now - s < RATE_WINDOW_S).map(|(_, c)| c).sum();
        done as f64 / elapsed.as_secs_f64().clamp(1.0, RATE_WINDOW_S as f64)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut p = Page::new();
        p.family("r1_reward_jobs_total", Kind::Counter, "Jobs scored, by status.");
        for (status, count) in STATUSES.iter().zip(&self.by_status) {
            p.sample("r1_reward_jobs_total", &[("status", status_name(*status))], count.load(Ordering::Relaxed));
        }
        p.family("r1_reward_job_seconds", Kind::Histogram, "Time to score one job.");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            p.sample("r1_reward_job_seconds_bucket", &[("le", &bound.to_string())], count.load(Ordering::Relaxed));
        }
        let total: u64 = self.by_status.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let sum = self.latency_micros.load(Ordering::Relaxed) as f64 / 1e6;
        p.sample("r1_reward_job_seconds_bucket", &[("le", "+Inf")], total);
        p.sample("r1_reward_job_seconds_sum", &[], sum);
        p.sample("r1_reward_job_seconds_count", &[], total);
        let gauges = [
            (
                "r1_reward_queue_depth",
                "Jobs accepted and waiting for a slot (the autoscaling signal).",
                self.queue_depth() as f64,
            ),
            ("r1_reward_in_flight", "Jobs being scored now.", self.in_flight() as f64),
            ("r1_reward_jobs_per_second", "Jobs finished per second over the last minute.", self.jobs_per_second()),
        ];
        for (name, help, value) in gauges {
            p.family(name, Kind::Gauge, help).sample(name, &[], value);
        }
        let name = "r1_reward_rejected_batches_total";
        p.family(name, Kind::Counter, "Batches refused because the queue was full.");
        p.sample(name, &[], self.rejected_batches.load(Ordering::Relaxed));
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        for (status, ms) in [(Status::Ok, 2), (Status::Ok, 40), (Status::Timeout, 3000), (Status::Failed, 1)] {
            m.queued();
            m.started();
            m.finished(status, Duration::from_millis(ms));
        }
        m.queued();
        m.rejected();
        let text = m.render();
        let expected = [
            "# TYPE r1_reward_jobs_total counter",
            "r1_reward_jobs_total{status=\"ok\"} 2",
            "r1_reward_jobs_total{status=\"timeout\"} 1",
            "r1_reward_jobs_total{status=\"failed\"} 1",
            "r1_reward_jobs_total{status=\"sandbox_violation\"} 0",
            "# TYPE r1_reward_job_seconds histogram",
            "r1_reward_job_seconds_bucket{le=\"0.001\"} 1",
            "r1_reward_job_seconds_bucket{le=\"0.0025\"} 2",
            "r1_reward_job_seconds_bucket{le=\"0.05\"} 3",
            "r1_reward_job_seconds_bucket{le=\"2.5\"} 3",
            "r1_reward_job_seconds_bucket{le=\"10\"} 4",
            "r1_reward_job_seconds_bucket{le=\"+Inf\"} 4",
            "r1_reward_job_seconds_sum 3.043",
            "r1_reward_job_seconds_count 4",
            "r1_reward_queue_depth 1",
            "r1_reward_in_flight 0",
            "r1_reward_jobs_per_second 4",
            "r1_reward_rejected_batches_total 1",
        ];
        for line in expected {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        // Every sample line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "`{line}` has no TYPE line");
        }
    }

    #[test]
    fn every_status_has_a_distinct_name() {
        let mut names: Vec<_> = STATUSES.iter().map(|s| status_name(*s)).collect();
        for (status, name) in STATUSES.iter().zip(&names) {
            assert_eq!(serde_json::to_value(status).unwrap(), *name, "label matches the JSON name");
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), STATUSES.len());
    }
}
