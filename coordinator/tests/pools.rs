//! Run-agnostic pools (`r1_coordinator::pools`): which run a pooled actor or reward worker
//! serves, and learner fleets' claims, with the clock under the test's control. The same
//! protocol through real processes is `cli/tests/pools.rs`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::{Coordinator, RunsError};
use r1_coordinator::spec::RunSpec;
use r1_coordinator::store::{Clock, Millis, RunId};
use r1_coordinator::workers::Role;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

const CLAIM_MS: Millis = 10_000;

fn grpo(data: &Path) -> RunSpec {
    RunSpec::from_toml(&format!(
        "name = 'g'\nbase_model = 'm'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n[[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 2\n[schedule]\ntotal_steps = 2",
        data.display()
    ))
    .unwrap()
}

fn sft(data: &Path) -> RunSpec {
    RunSpec::from_toml(&format!(
        "name='s'\nbase_model='m'\n[dataset]\npath='{}'\nfields={{prompt='q', answer='a'}}\n[algorithm]\nkind='sft'\n[schedule]\ntotal_steps=1",
        data.display()
    ))
    .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    db: std::path::PathBuf,
    clock: Arc<TestClock>,
    core: Coordinator,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"2+2\", \"a\": \"4\"}\n").unwrap();
    let db = dir.path().join("r1.db");
    let clock = Arc::new(TestClock(AtomicI64::new(1_000)));
    let core = Coordinator::open(&db, clock.clone(), LeaseTtl::default()).unwrap().with_claim_ms(CLAIM_MS);
    Setup { _dir: dir, data, db, clock, core }
}

impl Setup {
    fn submit(&self, spec: RunSpec) -> RunId {
        self.core.submit(spec).unwrap().run.id
    }

    fn advance(&self, ms: Millis) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// The run `fleet` claims (`want`: that one), 0 for none, or the error's text.
    fn claim(&self, fleet: &str, want: Option<RunId>) -> Result<RunId, String> {
        self.core.claim_run(fleet, want).map(|c| c.map_or(0, |c| c.run)).map_err(|e| e.to_string())
    }
}

#[test]
fn pools_serve_the_oldest_running_run_that_needs_their_role() {
    let s = setup();
    let next = |role| s.core.next_run(role).unwrap().unwrap_or(0);
    assert_eq!((next(Role::Actor), next(Role::Reward)), (0, 0), "no run: nothing to serve");
    let sft = s.submit(sft(&s.data));
    assert_eq!((next(Role::Actor), next(Role::Reward)), (0, 0), "an SFT run needs no actor or reward worker");
    let a = s.submit(grpo(&s.data));
    let b = s.submit(grpo(&s.data));
    assert_eq!((next(Role::Actor), next(Role::Reward)), (a, a), "the oldest GRPO run first");
    s.core.cancel(a, "test").unwrap();
    assert_eq!((next(Role::Actor), next(Role::Reward)), (b, b), "a cancelled run is left for the next");
    assert!(sft < a);
}

#[test]
fn two_fleets_never_claim_one_run() {
    let s = setup();
    assert_eq!(s.claim("fleet-a", None), Ok(0), "nothing to claim");
    let one = s.submit(grpo(&s.data));
    let two = s.submit(sft(&s.data));
    // (fleet, wanted run, expected claim or the error's words), in order.
    let cases: Vec<(&str, Option<RunId>, Result<RunId, &str>)> = vec![
        ("fleet-a", None, Ok(one)),
        ("fleet-a", None, Ok(one)),
        ("fleet-b", None, Ok(two)),
        ("fleet-c", None, Ok(0)),
        ("fleet-c", Some(one), Err("claimed by the learner fleet `fleet-a`")),
        ("fleet-a", Some(one), Ok(one)),
    ];
    for (i, (fleet, want, expected)) in cases.into_iter().enumerate() {
        let got = s.claim(fleet, want);
        match expected {
            Ok(run) => assert_eq!(got, Ok(run), "case {i}: {fleet} claims {want:?}"),
            Err(words) => assert!(got.as_ref().is_err_and(|e| e.contains(words)), "case {i}: {got:?}"),
        }
    }
    let claims: Vec<(RunId, String)> = s.core.claims().unwrap().into_iter().map(|c| (c.run, c.holder)).collect();
    assert_eq!(claims, vec![(one, "fleet-a".to_string()), (two, "fleet-b".to_string())]);
}

#[test]
fn a_claim_lapses_at_its_deadline_and_survives_a_restart() {
    let s = setup();
    let one = s.submit(grpo(&s.data));
    assert_eq!(s.claim("fleet-a", None), Ok(one));
    s.advance(CLAIM_MS);
    assert!(s.claim("fleet-b", Some(one)).is_err(), "at its deadline the claim still holds");
    // A coordinator reopened on the same database knows the claim.
    let reopened = Coordinator::open(&s.db, s.clock.clone(), LeaseTtl::default()).unwrap().with_claim_ms(CLAIM_MS);
    assert!(matches!(reopened.claim_run("fleet-b", Some(one)), Err(RunsError::ClaimHeld { .. })));
    assert_eq!(reopened.claim_run("fleet-b", None).unwrap(), None, "and gives the run to no one else");
    s.advance(1);
    let taken = reopened.claim_run("fleet-b", None).unwrap().unwrap();
    assert_eq!((taken.run, taken.holder.as_str()), (one, "fleet-b"), "just past it another fleet takes the run over");
    assert!(
        matches!(reopened.claim_run("fleet-a", Some(one)), Err(RunsError::ClaimHeld { .. })),
        "the lapsed fleet lost it"
    );
}

#[test]
fn released_and_finished_runs_hold_no_claim() {
    let s = setup();
    let one = s.submit(grpo(&s.data));
    let two = s.submit(grpo(&s.data));
    assert_eq!(s.claim("fleet-a", None), Ok(one));
    assert!(!s.core.release_claim("fleet-b", one).unwrap(), "only the holder releases");
    assert!(s.core.release_claim("fleet-a", one).unwrap());
    assert_eq!(s.claim("fleet-b", None), Ok(one), "a released run is claimable at once");
    s.core.cancel(one, "test").unwrap();
    assert_eq!(s.claim("fleet-b", Some(one)), Ok(0), "a finished run cannot be claimed (the answer says none)");
    assert_eq!(s.claim("fleet-b", None), Ok(two), "the fleet moves on to the next run");
    let held: Vec<RunId> = s.core.claims().unwrap().into_iter().map(|c| c.run).collect();
    assert_eq!(held, vec![two], "the finished run's claim is gone");
}
