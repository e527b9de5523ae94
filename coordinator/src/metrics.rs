//! `GET /metrics` on the gRPC port ([`crate::dashboard`] serves it): Prometheus text with,
//! per run, its step and policy version, its exact event counters, its queue depths (groups
//! waiting for or held by actors, reward workers and learners: the autoscaling signal) and
//! its latest eval accuracy.
//!
//! Limits: the page is rendered from the store on each request (a few small queries per
//! run), and it is not behind the bearer token; it shows run names and counts, never data.

use std::fmt::Write;

use crate::runs::RunStatus;

/// Renders every run's status in the Prometheus text format (version 0.0.4).
pub fn render(runs: &[RunStatus]) -> String {
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    let run = |s: &RunStatus| format!("run=\"{}\",name=\"{}\"", s.run.id, escape(&s.run.spec.name));
    family(
        "r1_run_info",
        "gauge",
        "A run and its state (always 1).",
        &mut runs
            .iter()
            .map(|s| (format!("{},state=\"{}\"", run(s), s.run.state), 1)),
    );
    family(
        "r1_run_step",
        "gauge",
        "Learner steps completed.",
        &mut runs.iter().map(|s| (run(s), s.progress.step)),
    );
    family(
        "r1_run_policy_version",
        "gauge",
        "The policy version the learner holds.",
        &mut runs.iter().map(|s| (run(s), s.progress.policy_version)),
    );
    family(
        "r1_run_queue_depth",
        "gauge",
        "Prompt groups waiting for or held by each role.",
        &mut runs.iter().flat_map(|s| {
            let q = s.stages;
            [
                ("generate", q.generate),
                ("score", q.score),
                ("train", q.train),
            ]
            .map(|(stage, n)| (format!("{},stage=\"{stage}\"", run(s)), n))
        }),
    );
    family(
        "r1_run_events_total",
        "counter",
        "Exact event counts of a run (prompts drawn, groups generated, dropped, ...).",
        &mut runs.iter().flat_map(|s| {
            let c = s.progress.counters;
            [
                ("prompts_drawn", c.prompts_drawn),
                ("groups_generated", c.groups_generated),
                ("groups_scored", c.groups_scored),
                ("groups_trained", c.groups_trained),
                ("dropped_stale", c.dropped_stale),
                ("dropped_equal", c.dropped_equal),
                ("leases_expired", c.leases_expired),
                ("replays", c.replays),
                ("late_submissions", c.late_submissions),
                ("rollbacks", c.rollbacks),
            ]
            .map(|(event, n)| (format!("{},event=\"{event}\"", run(s)), n))
        }),
    );
    family(
        "r1_run_eval_accuracy",
        "gauge",
        "pass@1 of the latest finished evaluation.",
        &mut std::iter::empty(),
    );
    for s in runs {
        if let Some((version, acc)) = s.last_eval {
            let _ = writeln!(
                out,
                "r1_run_eval_accuracy{{{},step=\"{version}\"}} {acc}",
                run(s)
            );
        }
    }
    out
}

/// A label value with `\`, `"` and newlines escaped as the text format requires.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
