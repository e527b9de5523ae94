//! The coordinator core: submissions refused before anything is recorded, cancel, and a
//! restarted coordinator resuming its running runs (or failing one whose dataset changed).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use r1_coordinator::lease::{LeaseTtl, Sample, SamplesSubmission};
use r1_coordinator::runs::{Coordinator, RunsError};
use r1_coordinator::spec::RunSpec;
use r1_coordinator::store::{Clock, Millis, RunState, Store, StoreError};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

fn spec(data: &Path, extra: &str) -> RunSpec {
    RunSpec::from_toml(&format!(
        "name = 'r'\nbase_model = 'm'\n{extra}\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n[[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 2\n[schedule]\ntotal_steps = 2",
        data.display()
    ))
    .unwrap()
}

fn write(path: &Path, rows: &[&str]) {
    std::fs::write(path, rows.join("\n")).unwrap();
}

fn open(db: &Path) -> Coordinator {
    Coordinator::open(
        db,
        Arc::new(TestClock(AtomicI64::new(1000))),
        LeaseTtl::default(),
    )
    .unwrap()
}

#[test]
fn bad_submissions_are_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    write(
        &good,
        &[r#"{"q": "1+1", "a": "2"}"#, r#"{"q": "2+2", "a": "4"}"#],
    );
    let bad = dir.path().join("bad.jsonl");
    write(&bad, &[r#"{"q": "1+1", "a": "2"}"#, r#"{"q": "2+2"}"#]);
    let core = open(&dir.path().join("r1.db"));
    let mut sft = spec(&good, "");
    sft.algorithm = RunSpec::from_toml(&format!(
        "name='s'\nbase_model='m'\n[dataset]\npath='{}'\nfields={{prompt='q', answer='a'}}\n[algorithm]\nkind='sft'\n[schedule]\ntotal_steps=1",
        good.display()
    ))
    .unwrap()
    .algorithm;
    let mut zero_steps = spec(&good, "");
    zero_steps.schedule.total_steps = 0;
    // (spec, expected error text)
    let cases: Vec<(RunSpec, &str)> = vec![
        (spec(&bad, ""), "row 2 field `answer` is missing"),
        (
            spec(&dir.path().join("missing.jsonl"), ""),
            "cannot read dataset",
        ),
        (zero_steps, "schedule.total_steps"),
    ];
    for (spec, want) in cases {
        let err = core.submit(spec).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    assert!(core.list().unwrap().is_empty(), "nothing recorded");
    assert_eq!(
        core.submit(sft).unwrap().run.state,
        RunState::Running,
        "SFT runs are scheduled"
    );
    assert_eq!(core.list().unwrap().len(), 1);
    let ok = core.submit(spec(&good, "")).unwrap();
    assert_eq!(
        (ok.run.state, ok.progress.step, ok.run.created_ms),
        (RunState::Running, 0, 1000)
    );
    assert_eq!(core.list().unwrap().len(), 2);
}

#[test]
fn cancel_stops_the_handing_out_of_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    write(
        &data,
        &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#],
    );
    let core = open(&dir.path().join("r1.db"));
    let id = core.submit(spec(&data, "")).unwrap().run.id;
    let sched = core.scheduler(id).unwrap();
    core.with_store_locked(|s| sched.lease_prompts(s, "a", 1, 1000))
        .unwrap();
    let cancelled = core.cancel(id, "").unwrap();
    assert_eq!(
        (cancelled.run.state, cancelled.run.message.as_str()),
        (RunState::Cancelled, "cancelled by request")
    );
    assert!(matches!(core.scheduler(id), Err(RunsError::NotRunning(_))));
    let err = core
        .with_store_locked(|s| sched.lease_prompts(s, "a", 1, 1000))
        .unwrap_err();
    assert!(err.to_string().contains("is cancelled"), "{err}");
    assert!(matches!(
        core.cancel(id, "again"),
        Err(RunsError::Store(StoreError::BadTransition { .. }))
    ));
    assert!(matches!(
        core.cancel(42, ""),
        Err(RunsError::Store(StoreError::RunNotFound(42)))
    ));
    assert!(matches!(
        core.scheduler(42),
        Err(RunsError::Store(StoreError::RunNotFound(42)))
    ));
}

#[test]
fn a_restart_resumes_running_runs_and_fails_those_whose_dataset_changed() {
    // kept: resumed at once; changed: failed; moved: unreadable at restart, so still running
    // and resumed on the first lease after the file is back.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r1.db");
    let (kept, changed, moved) = (
        dir.path().join("kept.jsonl"),
        dir.path().join("changed.jsonl"),
        dir.path().join("moved.jsonl"),
    );
    for p in [&kept, &changed, &moved] {
        write(
            p,
            &[
                r#"{"q": "x", "a": "1"}"#,
                r#"{"q": "y", "a": "2"}"#,
                r#"{"q": "z", "a": "3"}"#,
            ],
        );
    }
    let (a, b, group) = {
        let core = open(&db);
        let a = core.submit(spec(&kept, "")).unwrap().run.id;
        let b = core.submit(spec(&changed, "")).unwrap().run.id;
        core.submit(spec(&moved, "")).unwrap();
        let sched = core.scheduler(a).unwrap();
        let lease = core
            .with_store_locked(|s| sched.lease_prompts(s, "a", 2, 1000))
            .unwrap();
        (a, b, lease.groups[0].0)
    };
    write(&changed, &[r#"{"q": "x", "a": "1"}"#]);
    let aside = dir.path().join("aside");
    std::fs::rename(&moved, &aside).unwrap();
    let core = open(&db);
    let m = b + 1;
    assert_eq!(core.get(m).unwrap().run.state, RunState::Running);
    let err = core
        .scheduler(m)
        .expect_err("no dataset, no scheduler")
        .to_string();
    assert!(err.contains("cannot read dataset"), "{err}");
    std::fs::rename(&aside, &moved).unwrap();
    assert!(core.scheduler(m).is_ok(), "resumed once the file is back");
    let failed = core.get(b).unwrap();
    assert_eq!(failed.run.state, RunState::Failed);
    assert!(
        failed
            .run
            .message
            .contains("changed since the run was submitted"),
        "{}",
        failed.run.message
    );
    // The resumed run takes the samples for the group leased before the restart.
    let sched = core.scheduler(a).unwrap();
    let samples = (0..2)
        .map(|_| Sample {
            text: "4".into(),
            token_ids: vec![1],
            logprobs: vec![-0.1],
            truncated: false,
            generation_seconds: 0.0,
        })
        .collect();
    let sub = SamplesSubmission {
        group_id: group,
        policy_version: 0,
        samples,
    };
    let outcome = core
        .with_store_locked(|s| sched.submit_samples(s, "k", &sub, 1001))
        .unwrap();
    assert_eq!(outcome, r1_coordinator::lease::Outcome::Accepted);
    let status = core.get(a).unwrap();
    assert_eq!(
        (
            status.progress.counters.prompts_drawn,
            status.progress.counters.groups_generated
        ),
        (2, 1)
    );
    assert_eq!((status.stages.generate, status.stages.score), (1, 1));
    drop(core);
    assert_eq!(
        Store::open(&db).unwrap().run(a).unwrap().state,
        RunState::Running
    );
}

#[test]
fn metrics_jsonl_has_a_line_per_step_with_eval_accuracy_from_step_0() {
    use r1_coordinator::lease::{Outcome, ScoresSubmission, StepSubmission};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    write(
        &data,
        &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#],
    );
    let core = open(&dir.path().join("r1.db")).with_run_folders(dir.path().join("runs"));
    let mut spec = spec(&data, "");
    spec.dataset.eval_fraction = 0.5;
    spec.schedule.eval_every = 1;
    spec.schedule.total_steps = 1;
    if let r1_coordinator::spec::Algorithm::Grpo(g) = &mut spec.algorithm {
        g.prompts_per_step = 1;
    }
    let id = core.submit(spec).unwrap().run.id;
    let sched = core.scheduler(id).unwrap();
    let samples = |group_id, v| SamplesSubmission {
        group_id,
        policy_version: v,
        samples: (0..2)
            .map(|_| Sample {
                text: "1".into(),
                token_ids: vec![1],
                logprobs: vec![-0.1],
                truncated: false,
                generation_seconds: 0.0,
            })
            .collect(),
    };
    let scores = |group_id, rewards| ScoresSubmission {
        group_id,
        rewards,
        components: vec![],
    };
    // Each round: generate and score every group leased at version `v`, then train if a batch is ready.
    for v in 0..2u64 {
        core.with_store_locked(|st| {
            let lease = sched.lease_prompts(st, "a", 8, 1000).unwrap();
            for (g, _) in &lease.groups {
                sched
                    .submit_samples(st, &format!("s{g}"), &samples(*g, v), 1000)
                    .unwrap();
            }
            for job in sched.lease_scoring(st, "r", 8, 1000).unwrap().jobs {
                let rewards = if v == 0 {
                    vec![1.0, 0.0]
                } else {
                    vec![1.0, 1.0]
                };
                sched
                    .submit_scores(
                        st,
                        &format!("r{}", job.group_id),
                        &scores(job.group_id, rewards),
                        1000,
                    )
                    .unwrap();
            }
            if st.run(id).unwrap().state != RunState::Running {
                return; // the last evaluation completed the run
            }
            if let Some(b) = sched.lease_batch(st, "l", 1000).unwrap() {
                let sub = StepSubmission {
                    lease_id: b.lease_id,
                    step: b.step,
                    metrics: serde_json::json!({"kl": 0.01}),
                    unpublished: false,
                };
                assert_eq!(
                    sched.submit_step(st, "t", &sub, 1000).unwrap(),
                    Outcome::Accepted
                );
            }
        });
    }
    core.write_metrics(id).unwrap();
    let status = core.get(id).unwrap();
    assert_eq!(
        (status.run.state, status.last_eval),
        (RunState::Completed, Some((1, 1.0)))
    );
    let page = r1_coordinator::metrics::render(&[status]);
    assert!(
        page.contains("r1_run_eval_accuracy{run=\"1\",name=\"r\",step=\"1\"} 1\n"),
        "{page}"
    );
    let text = std::fs::read_to_string(
        dir.path()
            .join("runs")
            .join(id.to_string())
            .join("metrics.jsonl"),
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"step": 0, "eval_accuracy": 0.5}),
            serde_json::json!({"step": 1, "kl": 0.01, "queue_generate": 0, "queue_score": 0, "queue_train": 0, "eval_accuracy": 1.0}),
        ]
    );
}
