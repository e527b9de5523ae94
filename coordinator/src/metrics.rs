//! `GET /metrics` on the gRPC port ([`crate::dashboard`] serves it): Prometheus text with,
//! per run, its step and policy version, its exact event counters, its queue depths (groups
//! waiting for or held by actors, reward workers and learners: the autoscaling signal) and
//! its latest eval accuracy.
//!
//! Limits: the page is rendered from the store on each request (a few small queries per
//! run), and it is not behind the bearer token; it shows run names and counts, never data.

use r1_telemetry::prometheus::{Kind, Page};

use crate::runs::RunStatus;

/// Renders every run's status in the Prometheus text format (version 0.0.4).
pub fn render(runs: &[RunStatus]) -> String {
    let mut page = Page::new();
    let id = |s: &RunStatus| s.run.id.to_string();
    let mut family =
        |name: &str, kind: Kind, help: &str, rows: &mut dyn Iterator<Item = (Vec<(&'static str, String)>, u64)>| {
            page.family(name, kind, help);
            for (labels, value) in rows {
                let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                page.sample(name, &labels, value);
            }
        };
    let run = |s: &RunStatus| vec![("run", id(s)), ("name", s.run.spec.name.clone())];
    let with = |s: &RunStatus, k: &'static str, v: String| {
        let mut l = run(s);
        l.push((k, v));
        l
    };
    family(
        "r1_run_info",
        Kind::Gauge,
        "A run and its state (always 1).",
        &mut runs.iter().map(|s| (with(s, "state", s.run.state.to_string()), 1)),
    );
    family("r1_run_step", Kind::Gauge, "Learner steps completed.", &mut runs.iter().map(|s| (run(s), s.progress.step)));
    family(
        "r1_run_policy_version",
        Kind::Gauge,
        "The policy version the learner holds.",
        &mut runs.iter().map(|s| (run(s), s.progress.policy_version)),
    );
    family(
        "r1_run_queue_depth",
        Kind::Gauge,
        "Prompt groups waiting for or held by each role.",
        &mut runs.iter().flat_map(|s| {
            let q = s.stages;
            [("generate", q.generate), ("score", q.score), ("train", q.train)]
                .map(|(stage, n)| (with(s, "stage", stage.into()), n))
        }),
    );
    family(
        "r1_run_events_total",
        Kind::Counter,
        "Exact event counts of a run (prompts drawn, groups generated, dropped, failed, ...).",
        &mut runs.iter().flat_map(|s| {
            let c = s.progress.counters;
            [
                ("prompts_drawn", c.prompts_drawn),
                ("groups_generated", c.groups_generated),
                ("groups_scored", c.groups_scored),
                ("groups_trained", c.groups_trained),
                ("dropped_stale", c.dropped_stale),
                ("dropped_equal", c.dropped_equal),
                ("groups_failed", c.groups_failed),
                ("leases_expired", c.leases_expired),
                ("replays", c.replays),
                ("late_submissions", c.late_submissions),
                ("rollbacks", c.rollbacks),
            ]
            .map(|(event, n)| (with(s, "event", event.into()), n))
        }),
    );
    page.family("r1_run_eval_accuracy", Kind::Gauge, "pass@1 of the latest finished evaluation.");
    for s in runs {
        if let Some((version, acc)) = s.last_eval {
            let labels = with(s, "step", version.to_string());
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            page.sample("r1_run_eval_accuracy", &labels, acc);
        }
    }
    page.finish()
}
