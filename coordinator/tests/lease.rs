//! Leases: scripted sequences (expiry, re-lease, idempotent and late submissions, staleness,
//! dynamic sampling, lost batches, restarts) with the exact counters they must end with,
//! and seeded random interleavings of misbehaving workers checked against the stored groups.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use r1_coordinator::dataset::Dataset;
use r1_coordinator::lease::{
    BatchLease, FailureReport, LeaseError, LeaseTtl, Outcome, PromptLease, Sample, SamplesSubmission, Scheduler,
    ScoresSubmission, ScoringLease, StepSubmission,
};
use r1_coordinator::rollback;
use r1_coordinator::spec::RunSpec;
use r1_coordinator::store::{Counters, Millis, RunId, RunState, Store};

const TTL: Millis = 100;

struct Settings {
    group_size: u32,
    prompts_per_step: u32,
    max_policy_lag: u64,
    dynamic_sampling: bool,
    total_steps: u64,
    rows: usize,
    epochs: u32,
    eval_fraction: f64,
    eval_every: u64,
}

const BASE: Settings = Settings {
    group_size: 2,
    prompts_per_step: 2,
    max_policy_lag: 0,
    dynamic_sampling: false,
    total_steps: 3,
    rows: 50,
    epochs: 1,
    eval_fraction: 0.0,
    eval_every: 0,
};

fn spec(s: &Settings) -> RunSpec {
    RunSpec::from_toml(&format!(
        r#"
        name = "t"
        base_model = "m"
        [dataset]
        path = "d.jsonl"
        epochs = {}
        eval_fraction = {}
        [[rewards]]
        name = "format"
        verifier = "format"
        weight = 1.0
        [algorithm]
        kind = "grpo"
        group_size = {}
        prompts_per_step = {}
        max_policy_lag = {}
        dynamic_sampling = {}
        [algorithm.learner]
        clip_eps = 0.2
        [schedule]
        total_steps = {}
        eval_every = {}
        "#,
        s.epochs,
        s.eval_fraction,
        s.group_size,
        s.prompts_per_step,
        s.max_policy_lag,
        s.dynamic_sampling,
        s.total_steps,
        s.eval_every
    ))
    .unwrap()
}

/// A running run in a database file that a test can close and reopen.
struct Harness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
    sched: Scheduler,
    dataset: Arc<Dataset>,
    run: RunId,
    now: Millis,
}

impl Harness {
    fn new(s: &Settings) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r1.db");
        let spec = spec(s);
        let records = (0..s.rows).map(|i| serde_json::json!({"prompt": format!("p{i}")})).collect();
        let dataset = Arc::new(Dataset::from_records(records, &spec.dataset).unwrap());
        let mut store = Store::open(&path).unwrap();
        let run = store.create_run(&spec, dataset.fingerprint(), 0).unwrap();
        let run_rec = store.set_state(run, RunState::Running, "", 0).unwrap();
        let sched = Scheduler::new(&run_rec, dataset.clone(), ttl()).unwrap();
        Harness { _dir: dir, path, store, sched, dataset, run, now: 0 }
    }

    /// Closes the database and opens it again, rebuilding the scheduler from the stored run.
    fn reopen(&mut self) {
        self.store = Store::open(&self.path).unwrap();
        let run = self.store.run(self.run).unwrap();
        self.sched = Scheduler::new(&run, self.dataset.clone(), ttl()).unwrap();
    }

    fn counters(&self) -> Counters {
        self.store.progress(self.run).unwrap().counters
    }

    /// Checks the counters against the stored groups, which are tallied independently.
    fn check_books(&self, name: &str) {
        let c = self.counters();
        let stages = self.store.stage_counts(self.run).unwrap();
        assert_eq!(
            c.prompts_drawn,
            c.groups_trained + c.dropped_stale + c.dropped_equal + c.groups_failed + stages.in_flight(),
            "{name}"
        );
        assert_eq!(
            (c.groups_trained, c.dropped_stale, c.dropped_equal, c.groups_failed),
            (stages.done, stages.dropped_stale, stages.dropped_equal, stages.failed),
            "{name}"
        );
        let step = self.store.progress(self.run).unwrap().step;
        assert_eq!(self.store.policy_versions(self.run).unwrap().len() as u64, step + 1, "{name}");
    }
}

fn ttl() -> LeaseTtl {
    LeaseTtl {
        generate_ms: TTL,
        score_ms: TTL,
        train_ms: TTL,
        // The scripts below expire work on purpose; poison groups have their own test.
        max_attempts: 1000,
    }
}

fn samples(g: u32) -> Vec<Sample> {
    (0..g)
        .map(|i| Sample {
            text: format!("s{i}"),
            token_ids: vec![i, 1],
            logprobs: vec![-0.5, -1.0],
            truncated: false,
            generation_seconds: 0.0,
        })
        .collect()
}

/// One step of a script. Workers are named; `g` indexes the groups of that worker's last lease.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Actor leases up to `max` groups and must get `got`.
    Prompts {
        w: &'static str,
        max: usize,
        got: usize,
    },
    /// Actor submits samples for its group `g` made by policy `v`.
    Samples {
        w: &'static str,
        g: usize,
        v: u64,
        key: &'static str,
        want: Result<Outcome, &'static str>,
    },
    /// Reward worker leases up to `max` groups and must get `got`.
    Scoring {
        w: &'static str,
        max: usize,
        got: usize,
    },
    /// Reward worker submits rewards for its job `g`: `[0, 1, 0, ...]` or all equal to 1.
    Scores {
        w: &'static str,
        g: usize,
        equal: bool,
        key: &'static str,
        want: Result<Outcome, &'static str>,
    },
    /// Learner leases a batch and must get one of `got` groups (`None`: no batch).
    Batch {
        w: &'static str,
        got: Option<usize>,
    },
    /// Learner submits the step of its last batch.
    Step {
        w: &'static str,
        key: &'static str,
        want: Result<Outcome, &'static str>,
    },
    /// Worker `w` renews its last lease of `role`; `live` is whether it is still its own.
    Renew {
        w: &'static str,
        role: Role,
        live: bool,
    },
    Wait(Millis),
    Reopen,
    /// The learner records a checkpoint at the run's step.
    Checkpoint,
    /// The learner rolls the run back to its checkpoint of step `to`.
    RollbackTo {
        to: u64,
        key: &'static str,
        want: Result<(), &'static str>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Actor,
    Learner,
}

use Op::*;

const OK: Result<Outcome, &str> = Ok(Outcome::Accepted);
const DONE: Result<Outcome, &str> = Ok(Outcome::AlreadyDone);

/// Runs a script, checking each op's expectation, and returns the harness.
fn play(name: &str, settings: &Settings, script: &[Op]) -> Harness {
    let mut h = Harness::new(settings);
    let mut prompts: HashMap<&str, PromptLease> = HashMap::new();
    let mut scoring: HashMap<&str, ScoringLease> = HashMap::new();
    let mut batches: HashMap<&str, BatchLease> = HashMap::new();
    let outcome = |got: Result<Outcome, LeaseError>, want: Result<Outcome, &str>, i: usize| match (got, want) {
        (Ok(o), Ok(w)) => assert_eq!(o, w, "{name}: op {i}"),
        (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{name}: op {i}: `{e}` lacks `{w}`"),
        (got, want) => panic!("{name}: op {i}: expected {want:?}, got {got:?}"),
    };
    for (i, op) in script.iter().enumerate() {
        let now = h.now;
        match *op {
            Prompts { w, max, got } => {
                let lease = h.sched.lease_prompts(&mut h.store, w, max, now).unwrap();
                assert_eq!(lease.groups.len(), got, "{name}: op {i}");
                prompts.insert(w, lease);
            }
            Samples { w, g, v, key, want } => {
                let group_id = prompts[w].groups[g].0;
                let sub = SamplesSubmission { group_id, policy_version: v, samples: samples(settings.group_size) };
                outcome(h.sched.submit_samples(&mut h.store, key, &sub, now), want, i);
            }
            Scoring { w, max, got } => {
                let lease = h.sched.lease_scoring(&mut h.store, w, max, now).unwrap();
                assert_eq!(lease.jobs.len(), got, "{name}: op {i}");
                scoring.insert(w, lease);
            }
            Scores { w, g, equal, key, want } => {
                let group_id = scoring[w].jobs[g].group_id;
                let rewards = (0..settings.group_size).map(|k| if equal { 1.0 } else { (k % 2) as f64 }).collect();
                let sub = ScoresSubmission { group_id, rewards, components: vec![] };
                outcome(h.sched.submit_scores(&mut h.store, key, &sub, now), want, i);
            }
            Batch { w, got } => {
                let batch = h.sched.lease_batch(&mut h.store, w, now).unwrap();
                assert_eq!(batch.as_ref().map(|b| b.groups.len()), got, "{name}: op {i}");
                if let Some(b) = batch {
                    batches.insert(w, b);
                }
            }
            Step { w, key, want } => {
                let b = &batches[w];
                let sub = StepSubmission {
                    lease_id: b.lease_id,
                    step: b.step,
                    metrics: serde_json::json!({"reward_mean": 0.5}),
                    unpublished: false,
                };
                outcome(h.sched.submit_step(&mut h.store, key, &sub, now), want, i);
            }
            Renew { w, role, live } => {
                let lease_id = match role {
                    Role::Actor => prompts[w].lease_id,
                    Role::Learner => batches[w].lease_id,
                };
                let renewed = h.sched.renew(&mut h.store, lease_id, now).unwrap();
                assert_eq!(renewed, live.then_some(now + TTL), "{name}: op {i}");
            }
            Wait(ms) => h.now += ms,
            Reopen => h.reopen(),
            Checkpoint => {
                let step = h.store.progress(h.run).unwrap().step;
                h.store.record_checkpoint(h.run, step, &format!("ckpt/step-{step}"), now).unwrap();
            }
            RollbackTo { to, key, want } => {
                let got = rollback::rollback(&mut h.store, h.run, to, key, now);
                match (got, want) {
                    (Ok(r), Ok(())) => assert_eq!(r.checkpoint.step, to, "{name}: op {i}"),
                    (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{name}: op {i}: `{e}` lacks `{w}`"),
                    (got, want) => panic!("{name}: op {i}: expected {want:?}, got {got:?}"),
                }
            }
        }
        h.check_books(name);
    }
    h
}

/// An actor generating its group `g` at version `v` and a scorer scoring it, keyed by `k`.
macro_rules! one_step {
    ($v:expr, $k:literal) => {
        [
            Prompts { w: "a", max: 8, got: 2 },
            Samples { w: "a", g: 0, v: $v, key: concat!($k, "s0"), want: OK },
            Samples { w: "a", g: 1, v: $v, key: concat!($k, "s1"), want: OK },
            Scoring { w: "r", max: 8, got: 2 },
            Scores { w: "r", g: 0, equal: false, key: concat!($k, "r0"), want: OK },
            Scores { w: "r", g: 1, equal: false, key: concat!($k, "r1"), want: OK },
            Batch { w: "l", got: Some(2) },
            Step { w: "l", key: concat!($k, "t"), want: OK },
        ]
    };
}

/// Counters in declaration order: drawn, generated, scored, trained, stale, equal, expired,
/// replays, late.
fn counters([drawn, generated, scored, trained, stale, equal, expired, replays, late]: [u64; 9]) -> Counters {
    Counters {
        prompts_drawn: drawn,
        groups_generated: generated,
        groups_scored: scored,
        groups_trained: trained,
        dropped_stale: stale,
        dropped_equal: equal,
        leases_expired: expired,
        replays,
        late_submissions: late,
        rollbacks: 0,
        groups_failed: 0,
    }
}

#[test]
fn scripted_sequences_end_with_exact_counters() {
    let lag1 = Settings { max_policy_lag: 1, prompts_per_step: 1, ..BASE };
    let dynamic = Settings { dynamic_sampling: true, ..BASE };
    let one_step_run = Settings { total_steps: 1, ..BASE };
    let small = Settings { rows: 3, total_steps: 5, ..BASE };
    let step1 = one_step!(0, "a");
    // (name, settings, script, final counters, final step, final state)
    type Case<'a> = (&'a str, &'a Settings, Vec<Op>, Counters, u64, RunState);
    let cases: Vec<Case> = vec![
        ("one step", &BASE, step1.to_vec(), counters([2, 2, 2, 2, 0, 0, 0, 0, 0]), 1, RunState::Running),
        (
            "three steps complete the run",
            &BASE,
            [step1, one_step!(1, "b"), one_step!(2, "c")].concat(),
            counters([6, 6, 6, 6, 0, 0, 0, 0, 0]),
            3,
            RunState::Completed,
        ),
        (
            "restart between every stage",
            &BASE,
            step1.iter().flat_map(|op| [*op, Reopen]).collect(),
            counters([2, 2, 2, 2, 0, 0, 0, 0, 0]),
            1,
            RunState::Running,
        ),
        (
            "window: on-policy draws one batch per version",
            &BASE,
            vec![Prompts { w: "a", max: 5, got: 2 }, Prompts { w: "b", max: 5, got: 0 }],
            counters([2, 0, 0, 0, 0, 0, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "window: lag 1 draws two batches",
            &lag1,
            vec![Prompts { w: "a", max: 5, got: 2 }, Prompts { w: "b", max: 5, got: 0 }],
            counters([2, 0, 0, 0, 0, 0, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "lease still live one ms before its deadline",
            &BASE,
            vec![Prompts { w: "a", max: 2, got: 2 }, Wait(TTL - 1), Prompts { w: "b", max: 2, got: 0 }],
            counters([2, 0, 0, 0, 0, 0, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "expired at its deadline, handed out again, first submission wins",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Wait(TTL),
                Prompts { w: "b", max: 2, got: 2 },
                Samples { w: "b", g: 0, v: 0, key: "b0", want: OK },
                Samples { w: "a", g: 0, v: 0, key: "a0", want: DONE },
                Samples { w: "a", g: 1, v: 0, key: "a1", want: OK },
                Samples { w: "b", g: 1, v: 0, key: "b1", want: DONE },
            ],
            counters([2, 2, 0, 0, 0, 0, 2, 0, 2]),
            0,
            RunState::Running,
        ),
        (
            "same key and submission: first outcome, counted once",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "k", want: OK },
                Samples { w: "a", g: 0, v: 0, key: "k", want: OK },
                Reopen,
                Samples { w: "a", g: 0, v: 0, key: "k", want: OK },
            ],
            counters([2, 1, 0, 0, 0, 0, 0, 2, 0]),
            0,
            RunState::Running,
        ),
        (
            "same key, other submission: refused",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "k", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "k", want: Err("idempotency key `k`") },
            ],
            counters([2, 1, 0, 0, 0, 0, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "a version from the future is refused",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 1, key: "k", want: Err("claims policy version 1") },
            ],
            counters([2, 0, 0, 0, 0, 0, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "stale on arrival: dropped, replaced",
            &BASE,
            [
                &step1[..],
                &[
                    Prompts { w: "a", max: 2, got: 2 },
                    Samples { w: "a", g: 0, v: 0, key: "old", want: Ok(Outcome::DroppedStale) },
                    Prompts { w: "b", max: 2, got: 1 },
                ],
            ]
            .concat(),
            counters([5, 2, 2, 2, 1, 0, 0, 0, 0]),
            1,
            RunState::Running,
        ),
        (
            "stale when the batch forms (lag 1)",
            &lag1,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "s0", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "s1", want: OK },
                Scoring { w: "r", max: 1, got: 1 },
                Scores { w: "r", g: 0, equal: false, key: "r0", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t0", want: OK },
                Prompts { w: "a", max: 2, got: 1 },
                Samples { w: "a", g: 0, v: 1, key: "s2", want: OK },
                Scoring { w: "q", max: 1, got: 1 },
                Scoring { w: "r", max: 1, got: 1 },
                Scores { w: "r", g: 0, equal: false, key: "r2", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t1", want: OK },
                Scores { w: "q", g: 0, equal: false, key: "r1", want: OK },
                Batch { w: "l", got: None },
            ],
            counters([3, 3, 3, 2, 1, 0, 0, 0, 0]),
            2,
            RunState::Running,
        ),
        (
            "dynamic sampling drops all-equal groups and draws more",
            &dynamic,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "s0", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "s1", want: OK },
                Scoring { w: "r", max: 2, got: 2 },
                Scores { w: "r", g: 0, equal: true, key: "r0", want: Ok(Outcome::DroppedEqual) },
                Scores { w: "r", g: 1, equal: false, key: "r1", want: OK },
                Batch { w: "l", got: None },
                Prompts { w: "a", max: 2, got: 1 },
                Samples { w: "a", g: 0, v: 0, key: "s2", want: OK },
                Scoring { w: "r", max: 2, got: 1 },
                Scores { w: "r", g: 0, equal: false, key: "r2", want: OK },
                Batch { w: "l", got: Some(2) },
            ],
            counters([3, 3, 3, 0, 0, 1, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "without dynamic sampling all-equal groups train",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "s0", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "s1", want: OK },
                Scoring { w: "r", max: 2, got: 2 },
                Scores { w: "r", g: 0, equal: true, key: "r0", want: OK },
                Scores { w: "r", g: 1, equal: true, key: "r1", want: OK },
                Batch { w: "l", got: Some(2) },
            ],
            counters([2, 2, 2, 0, 0, 0, 0, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "one batch at a time; an expired batch goes to another learner; the first loses its step",
            &BASE,
            [
                &step1[..6],
                &[
                    Batch { w: "l", got: Some(2) },
                    Batch { w: "m", got: None },
                    Wait(TTL),
                    Batch { w: "m", got: Some(2) },
                    Step { w: "l", key: "tl", want: Ok(Outcome::LeaseLost) },
                    Step { w: "m", key: "tm", want: OK },
                    Step { w: "m", key: "tm", want: OK },
                    Step { w: "m", key: "tm2", want: DONE },
                ],
            ]
            .concat(),
            counters([2, 2, 2, 2, 0, 0, 2, 1, 2]),
            1,
            RunState::Running,
        ),
        (
            "renewing keeps a lease from expiring",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Wait(TTL - 1),
                Renew { w: "a", role: Role::Actor, live: true },
                Wait(TTL - 1),
                Prompts { w: "b", max: 2, got: 0 },
                Wait(1),
                Prompts { w: "b", max: 2, got: 2 },
            ],
            counters([2, 0, 0, 0, 0, 0, 2, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "an expired lease revives until its work is handed out, finished work cannot be renewed",
            &BASE,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Wait(TTL),
                Renew { w: "a", role: Role::Actor, live: true },
                Prompts { w: "b", max: 2, got: 0 },
                Wait(TTL),
                Prompts { w: "b", max: 2, got: 2 },
                Renew { w: "a", role: Role::Actor, live: false },
                Samples { w: "b", g: 0, v: 0, key: "s0", want: OK },
                Samples { w: "b", g: 1, v: 0, key: "s1", want: OK },
                Renew { w: "b", role: Role::Actor, live: false },
            ],
            counters([2, 2, 0, 0, 0, 0, 2, 0, 0]),
            0,
            RunState::Running,
        ),
        (
            "a learner asking again gets its own batch back; a lost batch cannot be renewed",
            &BASE,
            [
                &step1[..6],
                &[
                    Batch { w: "l", got: Some(2) },
                    Reopen,
                    Batch { w: "l", got: Some(2) },
                    Renew { w: "l", role: Role::Learner, live: true },
                    Wait(TTL),
                    Batch { w: "m", got: Some(2) },
                    Renew { w: "l", role: Role::Learner, live: false },
                    Step { w: "l", key: "tl", want: Ok(Outcome::LeaseLost) },
                    Renew { w: "m", role: Role::Learner, live: true },
                    Step { w: "m", key: "tm", want: OK },
                ],
            ]
            .concat(),
            counters([2, 2, 2, 2, 0, 0, 2, 0, 1]),
            1,
            RunState::Running,
        ),
        (
            "an expired batch not yet handed out is still accepted",
            &BASE,
            [&step1[..7], &[Wait(TTL * 5), Step { w: "l", key: "t", want: OK }]].concat(),
            counters([2, 2, 2, 2, 0, 0, 0, 0, 0]),
            1,
            RunState::Running,
        ),
        (
            "the last step completes the run; its retry still answers",
            &one_step_run,
            [&step1[..], &[Step { w: "l", key: "at", want: OK }]].concat(),
            counters([2, 2, 2, 2, 0, 0, 0, 1, 0]),
            1,
            RunState::Completed,
        ),
        (
            "an exhausted dataset ends with a smaller batch",
            &small,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "s0", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "s1", want: OK },
                Scoring { w: "r", max: 2, got: 2 },
                Scores { w: "r", g: 0, equal: false, key: "r0", want: OK },
                Scores { w: "r", g: 1, equal: false, key: "r1", want: OK },
                Batch { w: "l", got: Some(2) },
                Step { w: "l", key: "t0", want: OK },
                Prompts { w: "a", max: 2, got: 1 },
                Batch { w: "l", got: None },
                Samples { w: "a", g: 0, v: 1, key: "s2", want: OK },
                Scoring { w: "r", max: 2, got: 1 },
                Scores { w: "r", g: 0, equal: false, key: "r2", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t1", want: OK },
            ],
            counters([3, 3, 3, 3, 0, 0, 0, 0, 0]),
            2,
            RunState::Completed,
        ),
    ];
    for (name, settings, script, want, step, state) in cases {
        let h = play(name, settings, &script);
        assert_eq!(h.counters(), want, "{name}");
        assert_eq!(h.store.progress(h.run).unwrap().step, step, "{name}");
        assert_eq!(h.store.run(h.run).unwrap().state, state, "{name}");
    }
}

/// SplitMix64: the simulation's own seeded choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the workers saw, tallied on their side of the protocol.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    generated: u64,
    scored: u64,
    dropped_equal: u64,
    dropped_stale_on_arrival: u64,
    trained: u64,
    late: u64,
    replays: u64,
}

/// Two actors, two reward workers and two learners that crash (forget their lease), retry
/// with the same key and dawdle past deadlines at random, until the run completes. Every
/// call must succeed; the books are checked after each one.
fn simulate(seed: u64, settings: &Settings, reopen_every: Option<u64>) -> (Harness, Seen) {
    let mut h = Harness::new(settings);
    let mut rng = Rng(seed);
    let mut actors: [Option<PromptLease>; 2] = [None, None];
    let mut scorers: [Option<ScoringLease>; 2] = [None, None];
    let mut learners: [Option<BatchLease>; 2] = [None, None];
    let mut seen = Seen::default();
    // Eval groups count no training event: the workers tell them by their example's row.
    let eval_rows: std::collections::HashSet<u64> = h.dataset.eval().iter().map(|x| x.row).collect();
    let mut keys: HashMap<String, Outcome> = HashMap::new();
    // Records an outcome under its key; returns true when it is the key's first outcome.
    let mut record = |key: String, outcome: Outcome, seen: &mut Seen| match keys.get(&key) {
        Some(first) => {
            assert_eq!(*first, outcome, "a replay returns the first outcome");
            seen.replays += 1;
            false
        }
        None => {
            keys.insert(key, outcome);
            if matches!(outcome, Outcome::AlreadyDone | Outcome::LeaseLost) {
                seen.late += 1;
            }
            true
        }
    };
    for i in 0..20_000u64 {
        if h.store.run(h.run).unwrap().state == RunState::Completed {
            return (h, seen);
        }
        if reopen_every.is_some_and(|k| i % k == k - 1) {
            h.reopen();
        }
        h.now += rng.below(30) as Millis;
        let now = h.now;
        let w = rng.below(2) as usize;
        match rng.below(3) {
            0 => match &mut actors[w] {
                None => {
                    actors[w] = Some(h.sched.lease_prompts(&mut h.store, "a", 1 + rng.below(3) as usize, now).unwrap())
                }
                Some(lease) if lease.groups.is_empty() || rng.chance(5) => actors[w] = None,
                Some(lease) => {
                    let (group_id, example) = lease.groups[0].clone();
                    let is_eval = eval_rows.contains(&example.row);
                    let sub = SamplesSubmission {
                        group_id,
                        policy_version: lease.policy_version,
                        samples: samples(settings.group_size),
                    };
                    let key = format!("s-{}-{group_id}", lease.lease_id);
                    let outcome = h.sched.submit_samples(&mut h.store, &key, &sub, now).unwrap();
                    if !rng.chance(20) {
                        lease.groups.remove(0);
                    }
                    if record(key, outcome, &mut seen) {
                        match outcome {
                            Outcome::Accepted if !is_eval => seen.generated += 1,
                            Outcome::DroppedStale if !is_eval => seen.dropped_stale_on_arrival += 1,
                            _ => {}
                        }
                    }
                }
            },
            1 => match &mut scorers[w] {
                None => {
                    scorers[w] = Some(h.sched.lease_scoring(&mut h.store, "r", 1 + rng.below(3) as usize, now).unwrap())
                }
                Some(lease) if lease.jobs.is_empty() || rng.chance(5) => scorers[w] = None,
                Some(lease) => {
                    let group_id = lease.jobs[0].group_id;
                    let equal = rng.chance(30);
                    let rewards = (0..settings.group_size).map(|k| if equal { 1.0 } else { k as f64 }).collect();
                    let key = format!("r-{}-{group_id}-{equal}", lease.lease_id);
                    let outcome = h
                        .sched
                        .submit_scores(
                            &mut h.store,
                            &key,
                            &ScoresSubmission { group_id, rewards, components: vec![] },
                            now,
                        )
                        .unwrap();
                    if !rng.chance(20) {
                        lease.jobs.remove(0);
                    }
                    if record(key, outcome, &mut seen) {
                        match outcome {
                            Outcome::Accepted => seen.scored += 1,
                            Outcome::DroppedEqual => (seen.scored += 1, seen.dropped_equal += 1).0,
                            _ => {}
                        }
                    }
                }
            },
            _ => match &learners[w] {
                None => learners[w] = h.sched.lease_batch(&mut h.store, "l", now).unwrap(),
                Some(_) if rng.chance(5) => learners[w] = None,
                Some(batch) => {
                    let sub = StepSubmission {
                        lease_id: batch.lease_id,
                        step: batch.step,
                        metrics: serde_json::json!({}),
                        unpublished: false,
                    };
                    let key = format!("t-{}", batch.lease_id);
                    let outcome = h.sched.submit_step(&mut h.store, &key, &sub, now).unwrap();
                    if record(key, outcome, &mut seen) && outcome == Outcome::Accepted {
                        seen.trained += batch.groups.len() as u64;
                    }
                    if !rng.chance(20) {
                        learners[w] = None;
                    }
                }
            },
        }
        h.check_books(&format!("seed {seed} op {i}"));
    }
    panic!("seed {seed}: the run did not complete in 20000 operations");
}

#[test]
fn random_interleavings_keep_exact_books() {
    let variants = [
        Settings { total_steps: 4, rows: 200, ..BASE },
        Settings { total_steps: 4, rows: 200, max_policy_lag: 1, dynamic_sampling: true, ..BASE },
        Settings { total_steps: 4, rows: 60, max_policy_lag: 1, eval_fraction: 0.1, eval_every: 2, ..BASE },
        Settings { total_steps: 50, rows: 12, epochs: 2, group_size: 3, prompts_per_step: 3, ..BASE },
    ];
    for (v, settings) in variants.iter().enumerate() {
        for seed in 0..8 {
            let (h, seen) = simulate(seed * 31 + v as u64, settings, None);
            let c = h.counters();
            let stages = h.store.stage_counts(h.run).unwrap();
            let server = Seen {
                generated: c.groups_generated,
                scored: c.groups_scored,
                dropped_equal: c.dropped_equal,
                dropped_stale_on_arrival: seen.dropped_stale_on_arrival,
                trained: c.groups_trained,
                late: c.late_submissions,
                replays: c.replays,
            };
            assert_eq!(seen, server, "variant {v} seed {seed}: the workers' tally equals the counters");
            assert!(c.dropped_stale >= seen.dropped_stale_on_arrival);
            if settings.eval_every > 0 {
                let evals = h.store.evals(h.run).unwrap();
                let want: Vec<u64> = (0..=settings.total_steps).step_by(settings.eval_every as usize).collect();
                assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), want, "variant {v} seed {seed}");
                assert!(evals.iter().all(|e| e.2.is_some()), "variant {v} seed {seed}: every evaluation finished");
            }
            let progress = h.store.progress(h.run).unwrap();
            if !settings.dynamic_sampling {
                assert_eq!(c.dropped_equal, 0);
            }
            if progress.step == settings.total_steps {
                assert_eq!(
                    c.groups_trained,
                    settings.total_steps * settings.prompts_per_step as u64,
                    "variant {v} seed {seed}"
                );
            } else {
                assert!(
                    h.dataset.is_exhausted(progress.cursor),
                    "variant {v} seed {seed}: ended early only when exhausted"
                );
            }
            assert_eq!(stages.in_flight(), 0, "variant {v} seed {seed}: nothing left in flight");
        }
    }
}

#[test]
fn a_restarted_coordinator_carries_on_where_it_stood() {
    // The same seeded workers against a coordinator that is closed and reopened every few
    // calls end in exactly the same state as against one that never stops.
    let settings = Settings { total_steps: 5, rows: 100, max_policy_lag: 1, dynamic_sampling: true, ..BASE };
    for seed in [3, 4] {
        let (steady, seen_steady) = simulate(seed, &settings, None);
        let (restarted, seen_restarted) = simulate(seed, &settings, Some(3));
        assert_eq!(seen_steady, seen_restarted, "seed {seed}");
        assert_eq!(
            steady.store.progress(steady.run).unwrap(),
            restarted.store.progress(restarted.run).unwrap(),
            "seed {seed}"
        );
        assert_eq!(
            steady.store.stage_counts(steady.run).unwrap(),
            restarted.store.stage_counts(restarted.run).unwrap()
        );
        assert_eq!(steady.store.step_metrics(steady.run).unwrap().len(), 5);
    }
}

#[test]
fn refusals_name_what_to_fix() {
    let mut h = Harness::new(&BASE);
    let lease = h.sched.lease_prompts(&mut h.store, "a", 2, 0).unwrap();
    let gid = lease.groups[0].0;
    let mut bad_tokens = samples(2);
    bad_tokens[1].logprobs.pop();
    let sub = |group_id, samples| SamplesSubmission { group_id, policy_version: 0, samples };
    let cases: Vec<(&str, Result<Outcome, LeaseError>, &str)> = vec![
        (
            "unknown group",
            h.sched.submit_samples(&mut h.store, "k1", &sub(999, samples(2)), 0),
            "group 999 is not part of run",
        ),
        (
            "too few samples",
            h.sched.submit_samples(&mut h.store, "k2", &sub(gid, samples(1)), 0),
            "has 1 samples; send exactly G = 2",
        ),
        (
            "log-probs per token",
            h.sched.submit_samples(&mut h.store, "k3", &sub(gid, bad_tokens), 0),
            "sample 1 has 2 tokens but 1 log-probs",
        ),
        (
            "scores for an unscored stage are late, bad ones refused",
            h.sched.submit_scores(
                &mut h.store,
                "k4",
                &ScoresSubmission { group_id: gid, rewards: vec![f64::NAN, 1.0], components: vec![] },
                0,
            ),
            "has reward NaN",
        ),
        (
            "one reward per sample",
            h.sched.submit_scores(
                &mut h.store,
                "k5",
                &ScoresSubmission { group_id: gid, rewards: vec![1.0], components: vec![] },
                0,
            ),
            "has 1 rewards",
        ),
        (
            "unknown learner lease",
            h.sched.submit_step(
                &mut h.store,
                "k6",
                &StepSubmission {
                    lease_id: lease.lease_id,
                    step: 0,
                    metrics: serde_json::json!({}),
                    unpublished: false,
                },
                0,
            ),
            "is not a lease of run",
        ),
    ];
    for (name, got, want) in cases {
        let err = got.expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.ends_with('.'), "{name}: {err}");
    }
    assert_eq!(h.counters(), counters([2, 0, 0, 0, 0, 0, 0, 0, 0]), "refusals count nothing");
    h.store.set_state(h.run, RunState::Cancelled, "stopped by user", 1).unwrap();
    let err = h.sched.lease_prompts(&mut h.store, "a", 2, 1).unwrap_err().to_string();
    assert!(err.contains("is cancelled"), "{err}");
    let err = h.sched.submit_samples(&mut h.store, "k7", &sub(gid, samples(2)), 1).unwrap_err().to_string();
    assert!(err.contains("is cancelled"), "{err}");
}

#[test]
fn sft_runs_lease_batches_of_examples_straight_from_the_cursor() {
    let spec = RunSpec::from_toml(
        "name='t'\nbase_model='m'\n[dataset]\npath='d.jsonl'\nfields={prompt='q', answer='a'}\n[algorithm]\nkind='sft'\nbatch_size=2\n[schedule]\ntotal_steps=5",
    )
    .unwrap();
    let mut store = Store::open_in_memory().unwrap();
    let id = store.create_run(&spec, "", 0).unwrap();
    let run = store.set_state(id, RunState::Running, "", 0).unwrap();
    let records = (0..3).map(|i| serde_json::json!({"q": format!("q{i}"), "a": format!("a{i}")})).collect();
    let ds = Arc::new(Dataset::from_records(records, &spec.dataset).unwrap());
    let sched = Scheduler::new(&run, ds, ttl()).unwrap();
    let err = sched.lease_prompts(&mut store, "a", 1, 0).unwrap_err().to_string();
    assert!(err.contains("run 1 is an SFT run: it has no generation work"), "{err}");
    let err = sched.lease_scoring(&mut store, "r", 1, 0).unwrap_err().to_string();
    assert!(err.contains("no scoring work"), "{err}");

    // (time, expected batch size or none, submit the step)
    let script: &[(Millis, Option<usize>, bool)] =
        &[(0, Some(2), false), (1, None, false), (TTL, Some(2), true), (TTL, Some(1), true)];
    let mut answers = Vec::new();
    for (i, &(now, size, step)) in script.iter().enumerate() {
        let batch = sched.lease_batch(&mut store, if i == 1 { "other" } else { "l" }, now).unwrap();
        assert_eq!(batch.as_ref().map(|b| b.groups.len()), size, "lease {i}");
        let Some(batch) = batch else { continue };
        assert!(batch.groups.iter().all(|g| g.samples.is_empty() && g.rewards.is_empty()));
        if step {
            answers.extend(batch.groups.iter().map(|g| g.example.answer.clone().unwrap()));
            let sub = StepSubmission {
                lease_id: batch.lease_id,
                step: batch.step,
                metrics: serde_json::json!({}),
                unpublished: false,
            };
            assert_eq!(sched.submit_step(&mut store, &format!("t{i}"), &sub, now).unwrap(), Outcome::Accepted);
        }
    }
    answers.sort();
    assert_eq!(answers, ["a0", "a1", "a2"], "every example trained once");
    let run = store.run(id).unwrap();
    assert_eq!((run.state, run.message.as_str()), (RunState::Completed, "dataset exhausted after 2 of 5 steps"));
    let c = store.progress(id).unwrap().counters;
    assert_eq!((c.prompts_drawn, c.groups_trained, c.leases_expired), (3, 3, 2));
}

#[test]
fn evaluations_come_first_block_the_next_step_and_score_pass_at_1() {
    // 10 rows, 2 held out; evaluate at versions 0 and 2 (the last), G = 2, one prompt per step.
    let settings =
        Settings { prompts_per_step: 1, total_steps: 2, rows: 10, eval_fraction: 0.2, eval_every: 2, ..BASE };
    let mut h = Harness::new(&settings);
    let eval_rows: Vec<u64> = h.dataset.eval().iter().map(|x| x.row).collect();
    let sub = |group_id, v| SamplesSubmission { group_id, policy_version: v, samples: samples(2) };
    let scores = |group_id, rewards: Vec<f64>, components: Vec<std::collections::BTreeMap<String, f64>>| {
        ScoresSubmission { group_id, rewards, components }
    };
    let (s, st) = (&h.sched, &mut h.store);

    // Version 0: the two eval groups come before the training prompt.
    let lease = s.lease_prompts(st, "a", 8, 0).unwrap();
    let rows: Vec<u64> = lease.groups.iter().map(|(_, x)| x.row).collect();
    assert_eq!(&rows[..2], &eval_rows[..], "eval groups first");
    assert!(!eval_rows.contains(&rows[2]), "then a training prompt");
    let (e1, e2, t1) = (lease.groups[0].0, lease.groups[1].0, lease.groups[2].0);
    assert_eq!(s.submit_samples(st, "t1", &sub(t1, 0), 0).unwrap(), Outcome::Accepted);
    s.lease_scoring(st, "r", 1, 0).unwrap();
    assert_eq!(s.submit_scores(st, "rt1", &scores(t1, vec![1.0, 0.0], vec![]), 0).unwrap(), Outcome::Accepted);
    assert!(s.lease_batch(st, "l", 0).unwrap().is_none(), "the learner waits for the evaluation's samples");
    for (k, g) in [("e1", e1), ("e2", e2)] {
        assert_eq!(s.submit_samples(st, k, &sub(g, 0), 0).unwrap(), Outcome::Accepted);
    }
    let batch = s.lease_batch(st, "l", 0).unwrap().expect("a batch once the eval is sampled");
    let step = StepSubmission { lease_id: batch.lease_id, step: 0, metrics: serde_json::json!({}), unpublished: false };
    assert_eq!(s.submit_step(st, "step0", &step, 0).unwrap(), Outcome::Accepted);
    let jobs = s.lease_scoring(st, "r", 8, 0).unwrap();
    assert_eq!(jobs.jobs.iter().map(|j| j.group_id).collect::<Vec<_>>(), vec![e1, e2]);
    // pass@1: the `accuracy` component when present, else the reward, judged > 0.
    let acc = |a: f64| std::collections::BTreeMap::from([("accuracy".to_string(), a)]);
    assert_eq!(s.submit_scores(st, "re1", &scores(e1, vec![1.0, 0.0], vec![]), 0).unwrap(), Outcome::Evaluated);
    assert_eq!(st.evals(h.run).unwrap(), vec![(0, 2, None)], "not complete with one group left");
    let with_components = scores(e2, vec![0.5, 0.5], vec![acc(1.0), acc(0.0)]);
    assert_eq!(s.submit_scores(st, "re2", &with_components, 0).unwrap(), Outcome::Evaluated);
    assert_eq!(st.evals(h.run).unwrap(), vec![(0, 2, Some(0.5))]);

    // Version 1 trains; version 2 is the last and its evaluation must finish the run.
    let lease = s.lease_prompts(st, "a", 8, 1).unwrap();
    assert_eq!(lease.groups.len(), 1, "no evaluation at version 1");
    let t2 = lease.groups[0].0;
    s.submit_samples(st, "t2", &sub(t2, 1), 1).unwrap();
    s.lease_scoring(st, "r", 1, 1).unwrap();
    s.submit_scores(st, "rt2", &scores(t2, vec![0.0, 1.0], vec![]), 1).unwrap();
    let batch = s.lease_batch(st, "l", 1).unwrap().unwrap();
    let step = StepSubmission { lease_id: batch.lease_id, step: 1, metrics: serde_json::json!({}), unpublished: false };
    s.submit_step(st, "step1", &step, 1).unwrap();
    assert_eq!(st.run(h.run).unwrap().state, RunState::Running, "the final evaluation is pending");
    let lease = s.lease_prompts(st, "a", 8, 2).unwrap();
    assert_eq!(lease.groups.len(), 2, "only the evaluation is left");
    let (e3, e4) = (lease.groups[0].0, lease.groups[1].0);
    assert_eq!(s.submit_samples(st, "old", &sub(e3, 1), 2).unwrap(), Outcome::DroppedStale, "wrong version");
    let again = s.lease_prompts(st, "b", 8, 2).unwrap();
    assert_eq!(again.groups.iter().map(|g| g.0).collect::<Vec<_>>(), vec![e3], "handed out again at once");
    for (k, g) in [("e3", e3), ("e4", e4)] {
        assert_eq!(s.submit_samples(st, k, &sub(g, 2), 2).unwrap(), Outcome::Accepted);
    }
    s.lease_scoring(st, "r", 8, 2).unwrap();
    for (k, g) in [("re3", e3), ("re4", e4)] {
        assert_eq!(s.submit_scores(st, k, &scores(g, vec![1.0, 1.0], vec![]), 2).unwrap(), Outcome::Evaluated);
    }
    assert_eq!(st.evals(h.run).unwrap(), vec![(0, 2, Some(0.5)), (2, 2, Some(1.0))]);
    assert_eq!(st.run(h.run).unwrap().state, RunState::Completed);
    assert_eq!(h.counters(), counters([2, 2, 2, 2, 0, 0, 0, 0, 0]), "evaluation counts no training event");
    h.check_books("after evaluations");
}

/// A whole step at version `v` with `pps = 1`: one prompt, its samples, scores and the step.
macro_rules! one_prompt_step {
    ($v:expr, $k:literal) => {
        [
            Prompts { w: "a", max: 1, got: 1 },
            Samples { w: "a", g: 0, v: $v, key: concat!($k, "s"), want: OK },
            Scoring { w: "r", max: 8, got: 1 },
            Scores { w: "r", g: 0, equal: false, key: concat!($k, "r"), want: OK },
            Batch { w: "l", got: Some(1) },
            Step { w: "l", key: concat!($k, "t"), want: OK },
        ]
    };
}

#[test]
fn a_run_rolled_back_to_a_checkpoint_ends_as_if_it_never_went_past_it() {
    let four = Settings { total_steps: 4, ..BASE };
    let lag1 = Settings { max_policy_lag: 1, prompts_per_step: 1, total_steps: 3, ..BASE };
    let dynamic = Settings { dynamic_sampling: true, total_steps: 2, ..BASE };
    // One held-out example evaluated at versions 0 and 2; the learner waits for each.
    let evals = Settings { prompts_per_step: 1, total_steps: 3, rows: 10, eval_fraction: 0.1, eval_every: 2, ..BASE };
    let rb = |to| RollbackTo { to, key: "rb", want: Ok(()) };
    // (name, settings, the run up to its checkpoint, the work after it that the rollback
    // undoes, the work after the rollback). The reference run does the first and the last.
    type Case<'a> = (&'a str, &'a Settings, Vec<Op>, Vec<Op>, Vec<Op>);
    let cases: Vec<Case> = vec![
        (
            "on-policy: steps after the checkpoint are trained again",
            &four,
            [one_step!(0, "a"), one_step!(1, "b")].concat(),
            one_step!(2, "c").to_vec(),
            [one_step!(2, "c2"), one_step!(3, "d")].concat(),
        ),
        (
            "to step 0: the base model, nothing drawn",
            &four,
            vec![],
            [one_step!(0, "a"), one_step!(1, "b")].concat(),
            [one_step!(0, "a2"), one_step!(1, "b2"), one_step!(2, "c"), one_step!(3, "d")].concat(),
        ),
        (
            "lag 1: a group scored at the checkpoint and trained after it is trained again",
            &lag1,
            vec![
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "s0", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "s1", want: OK },
                Scoring { w: "r", max: 2, got: 2 },
                Scores { w: "r", g: 0, equal: false, key: "r0", want: OK },
                Scores { w: "r", g: 1, equal: false, key: "r1", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t0", want: OK },
            ],
            vec![
                Prompts { w: "a", max: 2, got: 1 },
                Samples { w: "a", g: 0, v: 1, key: "s2", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t1", want: OK },
                Scoring { w: "r", max: 2, got: 1 },
            ],
            vec![
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t1b", want: OK },
                Prompts { w: "a", max: 2, got: 1 },
                Samples { w: "a", g: 0, v: 2, key: "s2b", want: OK },
                Scoring { w: "r", max: 2, got: 1 },
                Scores { w: "r", g: 0, equal: false, key: "r2b", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t2b", want: OK },
            ],
        ),
        (
            "dynamic sampling: groups generated at the checkpoint and dropped after it are scored again",
            &dynamic,
            [
                one_step!(0, "a").to_vec(),
                vec![
                    Prompts { w: "a", max: 8, got: 2 },
                    Samples { w: "a", g: 0, v: 1, key: "s0", want: OK },
                    Samples { w: "a", g: 1, v: 1, key: "s1", want: OK },
                ],
            ]
            .concat(),
            vec![
                Scoring { w: "r", max: 8, got: 2 },
                Scores { w: "r", g: 0, equal: true, key: "r0", want: Ok(Outcome::DroppedEqual) },
                Scores { w: "r", g: 1, equal: false, key: "r1", want: OK },
                Prompts { w: "a", max: 8, got: 1 },
            ],
            vec![
                Scoring { w: "r", max: 8, got: 2 },
                Scores { w: "r", g: 0, equal: false, key: "r0b", want: OK },
                Scores { w: "r", g: 1, equal: false, key: "r1b", want: OK },
                Batch { w: "l", got: Some(2) },
                Step { w: "l", key: "t1", want: OK },
            ],
        ),
        (
            "evaluations after the checkpoint are made again and still hold the learner back",
            &evals,
            vec![
                // Version 0: the eval group comes first.
                Prompts { w: "a", max: 2, got: 2 },
                Samples { w: "a", g: 0, v: 0, key: "e0", want: OK },
                Samples { w: "a", g: 1, v: 0, key: "s0", want: OK },
                Scoring { w: "r", max: 2, got: 2 },
                Scores { w: "r", g: 0, equal: false, key: "re0", want: Ok(Outcome::Evaluated) },
                Scores { w: "r", g: 1, equal: false, key: "r0", want: OK },
                Batch { w: "l", got: Some(1) },
                Step { w: "l", key: "t0", want: OK },
            ],
            [
                one_prompt_step!(1, "b").to_vec(),
                vec![
                    // Version 2 is evaluated: its group comes first, and is sampled.
                    Prompts { w: "a", max: 2, got: 2 },
                    Samples { w: "a", g: 0, v: 2, key: "e2", want: OK },
                ],
            ]
            .concat(),
            [
                one_prompt_step!(1, "b2").to_vec(),
                vec![
                    // The evaluation of version 2 is made again and blocks the next step
                    // until it is sampled.
                    Batch { w: "l", got: None },
                    Prompts { w: "a", max: 1, got: 1 },
                    Samples { w: "a", g: 0, v: 2, key: "e2b", want: OK },
                    Prompts { w: "a", max: 1, got: 1 },
                    Samples { w: "a", g: 0, v: 2, key: "s2b", want: OK },
                    Scoring { w: "r", max: 2, got: 2 },
                    Scores { w: "r", g: 0, equal: false, key: "re2b", want: Ok(Outcome::Evaluated) },
                    Scores { w: "r", g: 1, equal: false, key: "r2b", want: OK },
                    Batch { w: "l", got: Some(1) },
                    Step { w: "l", key: "t2b", want: OK },
                ],
            ]
            .concat(),
        ),
    ];
    for (name, settings, before, undone, after) in cases {
        let reference = play(name, settings, &[before.clone(), after.clone()].concat());
        // The rollback goes to the checkpoint recorded after `before`; with nothing before,
        // to step 0 with no record at all.
        let to = before.iter().filter(|op| matches!(op, Step { .. })).count() as u64;
        let recorded = if before.is_empty() { vec![] } else { vec![Checkpoint] };
        let script = [before, recorded.clone(), undone, vec![rb(to)], after].concat();
        let rolled = play(name, settings, &script);
        let want = Counters { rollbacks: 1, ..reference.counters() };
        assert_eq!(rolled.counters(), want, "{name}");
        let (a, b) = (&rolled.store, &reference.store);
        assert_eq!(a.progress(rolled.run).unwrap().cursor, b.progress(reference.run).unwrap().cursor, "{name}");
        assert_eq!(a.stage_counts(rolled.run).unwrap(), b.stage_counts(reference.run).unwrap(), "{name}");
        assert_eq!(a.run(rolled.run).unwrap().state, b.run(reference.run).unwrap().state, "{name}");
        assert_eq!(a.step_metrics(rolled.run).unwrap(), b.step_metrics(reference.run).unwrap(), "{name}");
        assert_eq!(a.evals(rolled.run).unwrap(), b.evals(reference.run).unwrap(), "{name}");
        let checkpoints: Vec<u64> = a.checkpoints(rolled.run).unwrap().iter().map(|c| c.step).collect();
        assert_eq!(checkpoints, recorded.iter().map(|_| to).collect::<Vec<_>>(), "{name}");
    }
}

#[test]
fn late_work_after_a_rollback_is_lost_work_and_its_refusals_say_what_to_do() {
    let settings = Settings { total_steps: 4, ..BASE };
    let script = [
        one_step!(0, "a").to_vec(),
        vec![
            // Two prompts of version 1 are drawn before the checkpoint, generated after it.
            Prompts { w: "b", max: 8, got: 2 },
            Checkpoint,
            Samples { w: "b", g: 0, v: 1, key: "b0", want: OK },
            Samples { w: "b", g: 1, v: 1, key: "b1", want: OK },
            Scoring { w: "r", max: 8, got: 2 },
            Scores { w: "r", g: 0, equal: false, key: "r2", want: OK },
            Scores { w: "r", g: 1, equal: false, key: "r3", want: OK },
            Batch { w: "l", got: Some(2) },
            Step { w: "l", key: "t1", want: OK },
            RollbackTo {
                to: 2,
                key: "x",
                want: Err("has no checkpoint of step 2 to roll back to; roll back to a recorded step"),
            },
            // Version 2: drawn, generated, scored and leased, never stepped.
            Prompts { w: "a", max: 8, got: 2 },
            Samples { w: "a", g: 0, v: 2, key: "a4", want: OK },
            Samples { w: "a", g: 1, v: 2, key: "a5", want: OK },
            Scoring { w: "r", max: 8, got: 2 },
            Scores { w: "r", g: 0, equal: false, key: "r4", want: OK },
            Scores { w: "r", g: 1, equal: false, key: "r5", want: OK },
            Batch { w: "l", got: Some(2) },
            RollbackTo { to: 3, key: "fwd", want: Err("cannot roll back forward to step 3") },
            RollbackTo { to: 1, key: "rb", want: Ok(()) },
            // Deleted groups: samples and scores are answered as done by someone else.
            Samples { w: "a", g: 0, v: 2, key: "late-a", want: DONE },
            Scores { w: "r", g: 0, equal: false, key: "late-r", want: DONE },
            // A group back in `generate`, sampled by a version the rollback discarded.
            Samples { w: "b", g: 0, v: 2, key: "late-b", want: DONE },
            // The batch of step 2, past the run's step 1 now: lost, not an error.
            Step { w: "l", key: "late-t", want: Ok(Outcome::LeaseLost) },
            Renew { w: "l", role: Role::Learner, live: false },
            // The same rollback again is answered again; its key for another step is refused.
            RollbackTo { to: 1, key: "rb", want: Ok(()) },
            RollbackTo {
                to: 0,
                key: "rb",
                want: Err("`rb` was already used for a rollback to another step; use a fresh key"),
            },
            // A key used after the checkpoint is forgotten: its samples (of version 1, which
            // still exists) are judged again and accepted.
            Samples { w: "b", g: 0, v: 1, key: "b0", want: OK },
        ],
    ]
    .concat();
    let h = play("late work", &settings, &script);
    let want = Counters { rollbacks: 1, ..counters([4, 3, 2, 2, 0, 0, 0, 1, 4]) };
    assert_eq!(h.counters(), want);
    assert_eq!(h.store.progress(h.run).unwrap().step, 1);
    assert_eq!(h.store.step_metrics(h.run).unwrap().len(), 1);

    // Only a running run rolls back.
    let mut done = play("complete", &BASE, &[one_step!(0, "a"), one_step!(1, "b"), one_step!(2, "c")].concat());
    assert_eq!(done.store.run(done.run).unwrap().state, RunState::Completed);
    let err = rollback::rollback(&mut done.store, done.run, 0, "k", 0).unwrap_err().to_string();
    assert!(err.contains("is completed; only a running run can be rolled back"), "{err}");
}

fn failure(lease_id: i64, group_id: i64) -> FailureReport {
    FailureReport { lease_id, group_id, reason: "the sampler panicked".into() }
}

/// A group whose work keeps failing (reported failures and expired leases alike) moves to
/// `failed` at `max_attempts`, its slot goes to a new prompt, and late reports count nothing.
#[test]
fn poison_groups_fail_after_max_attempts() {
    let settings = Settings { prompts_per_step: 1, total_steps: 2, ..BASE };
    let mut h = Harness::new(&settings);
    let run = h.store.run(h.run).unwrap();
    h.sched = Scheduler::new(&run, h.dataset.clone(), LeaseTtl { max_attempts: 3, ..ttl() }).unwrap();
    let first = h.sched.lease_prompts(&mut h.store, "a", 1, h.now).unwrap();
    let g = first.groups[0].0;
    // Attempt 1: reported; the group is handed out again at once, and the report replays.
    let report = failure(first.lease_id, g);
    assert_eq!(h.sched.fail_group(&mut h.store, "f1", &report, h.now).unwrap(), Outcome::Retry);
    assert_eq!(h.sched.fail_group(&mut h.store, "f1", &report, h.now).unwrap(), Outcome::Retry);
    assert_eq!(h.counters().replays, 1);
    // Attempt 2: its lease expires (counted when handed out again).
    let second = h.sched.lease_prompts(&mut h.store, "b", 1, h.now).unwrap();
    assert_eq!(second.groups[0].0, g, "retried, not failed, under max_attempts");
    h.now += TTL + 1;
    let third = h.sched.lease_prompts(&mut h.store, "c", 1, h.now).unwrap();
    assert_eq!(third.groups[0].0, g, "two failed attempts of three");
    // A report from a lease that no longer holds the group is late.
    assert_eq!(
        h.sched.fail_group(&mut h.store, "f2", &failure(second.lease_id, g), h.now).unwrap(),
        Outcome::AlreadyDone
    );
    // Attempt 3: fails for good; a new prompt takes its slot.
    assert_eq!(h.sched.fail_group(&mut h.store, "f3", &failure(third.lease_id, g), h.now).unwrap(), Outcome::Failed);
    let next = h.sched.lease_prompts(&mut h.store, "d", 1, h.now).unwrap();
    assert_eq!(next.groups.len(), 1);
    assert_ne!(next.groups[0].0, g);
    let c = h.counters();
    assert_eq!((c.groups_failed, c.leases_expired, c.late_submissions), (1, 1, 1));
    assert_eq!(h.store.stage_counts(h.run).unwrap().failed, 1);
    h.check_books("after the poison group failed");
    // The state survives a restart.
    h.reopen();
    assert_eq!(h.counters().groups_failed, 1);
    h.check_books("reopened");
}

/// A learner that cannot train one group of its batch fails it at once and trains the rest.
#[test]
fn a_learner_fails_a_group_at_once_and_trains_the_rest() {
    let mut h = Harness::new(&Settings { prompts_per_step: 2, total_steps: 1, ..BASE });
    let lease = h.sched.lease_prompts(&mut h.store, "a", 2, h.now).unwrap();
    for (i, (g, _)) in lease.groups.iter().enumerate() {
        let sub = SamplesSubmission { group_id: *g, policy_version: 0, samples: samples(2) };
        assert_eq!(h.sched.submit_samples(&mut h.store, &format!("s{i}"), &sub, h.now).unwrap(), Outcome::Accepted);
    }
    let scoring = h.sched.lease_scoring(&mut h.store, "r", 2, h.now).unwrap();
    for (i, job) in scoring.jobs.iter().enumerate() {
        let sub = ScoresSubmission { group_id: job.group_id, rewards: vec![1.0, 0.0], components: vec![] };
        assert_eq!(h.sched.submit_scores(&mut h.store, &format!("r{i}"), &sub, h.now).unwrap(), Outcome::Accepted);
    }
    let batch = h.sched.lease_batch(&mut h.store, "l", h.now).unwrap().expect("a full batch");
    assert_eq!(batch.groups.len(), 2);
    let bad = batch.groups[0].group_id;
    assert_eq!(h.sched.fail_group(&mut h.store, "t", &failure(batch.lease_id, bad), h.now).unwrap(), Outcome::Failed);
    assert!(
        h.sched.renew(&mut h.store, batch.lease_id, h.now).unwrap().is_some(),
        "the rest of the batch is still held"
    );
    let step = StepSubmission { lease_id: batch.lease_id, step: 0, metrics: serde_json::json!({}), unpublished: false };
    assert_eq!(h.sched.submit_step(&mut h.store, "step", &step, h.now).unwrap(), Outcome::Accepted);
    let c = h.counters();
    assert_eq!((c.groups_trained, c.groups_failed), (1, 1));
    h.check_books("after the step");
}
