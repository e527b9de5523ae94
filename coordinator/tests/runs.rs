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
    Coordinator::open(db, Arc::new(TestClock(AtomicI64::new(1000))), LeaseTtl::default()).unwrap()
}

#[test]
fn bad_submissions_are_refused_before_anything_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    write(&good, &[r#"{"q": "1+1", "a": "2"}"#, r#"{"q": "2+2", "a": "4"}"#]);
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
    // A GRPO spec gets `answer_kind = plain` by default; SFT trains on the answer as written.
    sft.dataset.answer_kind = None;
    let mut zero_steps = spec(&good, "");
    zero_steps.schedule.total_steps = 0;
    // (spec, expected error text)
    let cases: Vec<(RunSpec, &str)> = vec![
        (spec(&bad, ""), "row 2 field `answer` is missing"),
        (spec(&dir.path().join("missing.jsonl"), ""), "cannot read dataset"),
        (zero_steps, "schedule.total_steps"),
    ];
    for (spec, want) in cases {
        let err = core.submit(spec).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    assert!(core.list().unwrap().is_empty(), "nothing recorded");
    assert_eq!(core.submit(sft).unwrap().run.state, RunState::Running, "SFT runs are scheduled");
    assert_eq!(core.list().unwrap().len(), 1);
    let ok = core.submit(spec(&good, "")).unwrap();
    assert_eq!((ok.run.state, ok.progress.step, ok.run.created_ms), (RunState::Running, 0, 1000));
    assert_eq!(core.list().unwrap().len(), 2);
}

#[test]
fn cancel_stops_the_handing_out_of_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    write(&data, &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#]);
    let core = open(&dir.path().join("r1.db"));
    let id = core.submit(spec(&data, "")).unwrap().run.id;
    let sched = core.scheduler(id).unwrap();
    core.with_store_locked(|s| sched.lease_prompts(s, "a", 1, 1000)).unwrap();
    let cancelled = core.cancel(id, "").unwrap();
    assert_eq!((cancelled.run.state, cancelled.run.message.as_str()), (RunState::Cancelled, "cancelled by request"));
    assert!(matches!(core.scheduler(id), Err(RunsError::NotRunning(_))));
    let err = core.with_store_locked(|s| sched.lease_prompts(s, "a", 1, 1000)).unwrap_err();
    assert!(err.to_string().contains("is cancelled"), "{err}");
    assert!(matches!(core.cancel(id, "again"), Err(RunsError::Store(StoreError::BadTransition { .. }))));
    assert!(matches!(core.cancel(42, ""), Err(RunsError::Store(StoreError::RunNotFound(42)))));
    assert!(matches!(core.scheduler(42), Err(RunsError::Store(StoreError::RunNotFound(42)))));
}

#[test]
fn a_restart_resumes_running_runs_and_fails_those_whose_dataset_changed() {
    // kept: resumed at once; changed: failed; moved: unreadable at restart, so still running
    // and resumed on the first lease after the file is back.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r1.db");
    let (kept, changed, moved) =
        (dir.path().join("kept.jsonl"), dir.path().join("changed.jsonl"), dir.path().join("moved.jsonl"));
    for p in [&kept, &changed, &moved] {
        write(p, &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#, r#"{"q": "z", "a": "3"}"#]);
    }
    let (a, b, group) = {
        let core = open(&db);
        let a = core.submit(spec(&kept, "")).unwrap().run.id;
        let b = core.submit(spec(&changed, "")).unwrap().run.id;
        core.submit(spec(&moved, "")).unwrap();
        let sched = core.scheduler(a).unwrap();
        let lease = core.with_store_locked(|s| sched.lease_prompts(s, "a", 2, 1000)).unwrap();
        (a, b, lease.groups[0].0)
    };
    write(&changed, &[r#"{"q": "x", "a": "1"}"#]);
    let aside = dir.path().join("aside");
    std::fs::rename(&moved, &aside).unwrap();
    let core = open(&db);
    let m = b + 1;
    assert_eq!(core.get(m).unwrap().run.state, RunState::Running);
    let err = core.scheduler(m).expect_err("no dataset, no scheduler").to_string();
    assert!(err.contains("cannot read dataset"), "{err}");
    std::fs::rename(&aside, &moved).unwrap();
    assert!(core.scheduler(m).is_ok(), "resumed once the file is back");
    let failed = core.get(b).unwrap();
    assert_eq!(failed.run.state, RunState::Failed);
    assert!(failed.run.message.contains("changed since the run was submitted"), "{}", failed.run.message);
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
    let sub = SamplesSubmission { group_id: group, policy_version: 0, samples };
    let outcome = core.with_store_locked(|s| sched.submit_samples(s, "k", &sub, 1001)).unwrap();
    assert_eq!(outcome, r1_coordinator::lease::Outcome::Accepted);
    let status = core.get(a).unwrap();
    assert_eq!((status.progress.counters.prompts_drawn, status.progress.counters.groups_generated), (2, 1));
    assert_eq!((status.stages.generate, status.stages.score), (1, 1));
    drop(core);
    assert_eq!(Store::open(&db).unwrap().run(a).unwrap().state, RunState::Running);
}

#[test]
fn metrics_jsonl_has_a_line_per_step_with_eval_accuracy_from_step_0() {
    use r1_coordinator::lease::{Outcome, ScoresSubmission, StepSubmission};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    write(&data, &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#]);
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
    let scores = |group_id, rewards| ScoresSubmission { group_id, rewards, components: vec![] };
    // Each round: generate and score every group leased at version `v`, then train if a batch is ready.
    for v in 0..2u64 {
        core.with_store_locked(|st| {
            let lease = sched.lease_prompts(st, "a", 8, 1000).unwrap();
            for (g, _) in &lease.groups {
                sched.submit_samples(st, &format!("s{g}"), &samples(*g, v), 1000).unwrap();
            }
            for job in sched.lease_scoring(st, "r", 8, 1000).unwrap().jobs {
                let rewards = if v == 0 { vec![1.0, 0.0] } else { vec![1.0, 1.0] };
                sched.submit_scores(st, &format!("r{}", job.group_id), &scores(job.group_id, rewards), 1000).unwrap();
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
                assert_eq!(sched.submit_step(st, "t", &sub, 1000).unwrap(), Outcome::Accepted);
            }
        });
    }
    core.write_metrics(id).unwrap();
    let status = core.get(id).unwrap();
    assert_eq!((status.run.state, status.last_eval), (RunState::Completed, Some((1, 1.0))));
    let page = r1_coordinator::metrics::render(&[status]);
    assert!(page.contains("r1_run_eval_accuracy{run=\"1\",name=\"r\",step=\"1\"} 1\n"), "{page}");
    let text = std::fs::read_to_string(dir.path().join("runs").join(id.to_string()).join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"step": 0, "eval_accuracy": 0.5}),
            serde_json::json!({"step": 1, "kl": 0.01, "queue_generate": 0, "queue_score": 0, "queue_train": 0, "eval_accuracy": 1.0}),
        ]
    );
}

/// `r1ctl up` at start ends the live leases of its dead incarnations (holders with its prefix
/// but not its own), so their work is handed out at once instead of after the lease time.
#[test]
fn release_leases_frees_only_the_dead_incarnations_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    write(
        &data,
        &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#, r#"{"q": "z", "a": "3"}"#, r#"{"q": "w", "a": "4"}"#],
    );
    let core = open(&dir.path().join("r1.db"));
    let id = core.submit(spec(&data, "")).unwrap().run.id;
    let sched = core.scheduler(id).unwrap();
    // The window is 2 prompts (one step): one group each for a dead `up` and a foreign worker.
    for holder in ["up-1-100/actor-0", "actor-elsewhere"] {
        let lease = core.with_store_locked(|s| sched.lease_prompts(s, holder, 1, 1000)).unwrap();
        assert_eq!(lease.groups.len(), 1, "{holder}");
    }
    let none = core.with_store_locked(|s| sched.lease_prompts(s, "up-2-200/actor-1", 4, 1000)).unwrap();
    assert!(none.groups.is_empty(), "the window is full until a lease ends");
    // Incarnation 2 takes back incarnation 1's lease, not the foreign worker's.
    assert_eq!(core.release_leases("up-", "up-2-200/").unwrap(), 1);
    let again = core.with_store_locked(|s| sched.lease_prompts(s, "up-2-200/actor-1", 4, 1000)).unwrap();
    assert_eq!(again.groups.len(), 1, "only the dead incarnation's group comes back");
    // Its own live lease and the foreign one are kept.
    assert_eq!(core.release_leases("up-", "up-2-200/").unwrap(), 0);
    assert_eq!(core.get(id).unwrap().progress.counters.leases_expired, 1);
}

/// A copied data folder: the run of the same spec with paths under the old folder is
/// adopted (its paths moved here) instead of orphaned; anything else is not.
#[test]
fn adopt_moved_takes_the_run_of_a_copied_folder_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    for d in [&old, &new] {
        std::fs::create_dir_all(d.join("data")).unwrap();
        write(&d.join("data/d.jsonl"), &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#]);
    }
    std::fs::write(new.join("data/other.jsonl"), r#"{"q": "x", "a": "1"}"#).unwrap();
    let in_old = |extra: &str| spec(&old.join("data/d.jsonl"), extra);
    let mut base_moved = spec(&new.join("data/d.jsonl"), "");
    base_moved.base_model = new.join("model");
    let mut base_old = in_old("");
    base_old.base_model = old.join("model");
    let mut lr = spec(&new.join("data/d.jsonl"), "");
    lr.schedule.total_steps = 3;
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(elsewhere.path().join("data")).unwrap();
    std::fs::copy(new.join("data/d.jsonl"), elsewhere.path().join("data/d.jsonl")).unwrap();
    // (the run made in the old folder, the spec `up` runs in the new one, adopted?)
    let cases: Vec<(&str, RunSpec, RunSpec, bool)> = vec![
        ("dataset under the folder", in_old(""), spec(&new.join("data/d.jsonl"), ""), true),
        ("base model and dataset", base_old.clone(), base_moved.clone(), true),
        (
            "only the base model moved",
            {
                let mut s = base_old.clone();
                s.dataset.path = new.join("data/d.jsonl");
                s
            },
            base_moved.clone(),
            true,
        ),
        ("another setting differs", in_old(""), lr, false),
        ("another file", in_old(""), spec(&new.join("data/other.jsonl"), ""), false),
        ("a path outside the new folder", in_old(""), spec(&dir.path().join("loose.jsonl"), ""), false),
        (
            "paths under two old folders",
            {
                let mut s = base_old.clone();
                s.base_model = elsewhere.path().join("model");
                s
            },
            base_moved,
            false,
        ),
    ];
    for (what, made, wanted, adopted) in cases {
        let db = tempfile::tempdir().unwrap();
        let core = open(&db.path().join("r1.db"));
        let id = core.submit(made.clone()).unwrap().run.id;
        let ckpt = old.join("checkpoints/run-1/step-0");
        core.record_checkpoint(id, 0, ckpt.to_str().unwrap()).unwrap();
        let got = core.adopt_moved(&wanted, &new).unwrap();
        let ckpt_now = core.checkpoints(id).unwrap()[0].path.clone();
        match adopted {
            true => {
                assert_eq!(got, Some(id), "{what}");
                let want = new.join("checkpoints/run-1/step-0");
                assert_eq!(ckpt_now, want.to_str().unwrap(), "{what}: checkpoints move too");
                assert_eq!(core.get(id).unwrap().run.spec, wanted, "{what}: the stored spec has the new paths");
                assert_eq!(core.adopt_moved(&wanted, &new).unwrap(), None, "{what}: once");
            }
            false => {
                assert_eq!(got, None, "{what}");
                assert_eq!(core.get(id).unwrap().run.spec, made, "{what}: untouched");
                assert_eq!(ckpt_now, ckpt.to_str().unwrap(), "{what}: untouched");
            }
        }
    }
}

/// Names and specs are bounded: at the limit is accepted, one byte past is refused naming
/// the limit; a name with a control character is refused.
#[test]
fn names_and_specs_are_refused_past_their_limits() {
    use r1_coordinator::runs::{MAX_NAME_BYTES, MAX_SPEC_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    write(&data, &[r#"{"q": "x", "a": "1"}"#, r#"{"q": "y", "a": "2"}"#]);
    let core = open(&dir.path().join("r1.db"));
    let named = |name: String| {
        let mut s = spec(&data, "");
        s.name = name;
        s
    };
    let padded = |bytes: usize| {
        let mut s = spec(&data, "");
        let len = serde_json::to_string(&s).unwrap().len();
        s.rewards[0].name = "a".repeat(bytes - len + s.rewards[0].name.len());
        assert_eq!(serde_json::to_string(&s).unwrap().len(), bytes);
        s
    };
    // (what, spec, Ok or Err(text))
    let cases: Vec<(&str, RunSpec, Result<(), String>)> = vec![
        ("name at the limit", named("n".repeat(MAX_NAME_BYTES)), Ok(())),
        (
            "name past the limit",
            named("n".repeat(MAX_NAME_BYTES + 1)),
            Err(format!("`name` is {} bytes; the limit is {MAX_NAME_BYTES} bytes", MAX_NAME_BYTES + 1)),
        ),
        ("ten megabyte name", named("n".repeat(10 << 20)), Err(format!("the limit is {MAX_NAME_BYTES} bytes"))),
        ("newline in the name", named("a\nb".into()), Err("control character at byte 1".into())),
        ("spec at the limit", padded(MAX_SPEC_BYTES), Ok(())),
        (
            "spec past the limit",
            padded(MAX_SPEC_BYTES + 1),
            Err(format!("is {} bytes; the limit is {MAX_SPEC_BYTES} bytes", MAX_SPEC_BYTES + 1)),
        ),
    ];
    for (what, spec, want) in cases {
        match (core.submit(spec), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(text)) => assert!(e.to_string().contains(&text), "{what}: {e}"),
            (got, want) => panic!("{what}: expected {want:?}, got {:?}", got.map(|s| s.run.id)),
        }
    }
}
