//! The store: schema migration and versioning, WAL mode, run state transitions, listing,
//! checkpoint records and persistence across reopening.

use r1_coordinator::spec::RunSpec;
use r1_coordinator::store::{Clock, RunState, SCHEMA_VERSION, Store, StoreError, SystemClock};

fn spec(name: &str) -> RunSpec {
    RunSpec::from_toml(&format!(
        "name = '{name}'\nbase_model = 'm'\n[dataset]\npath = 'd.jsonl'\n[[rewards]]\nname = 'f'\nverifier = 'format'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\n[schedule]\ntotal_steps = 3"
    ))
    .unwrap()
}

#[test]
fn a_new_database_is_migrated_in_wal_mode_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    // Reopening an up-to-date database migrates nothing and keeps its rows.
    let mut store = Store::open(&path).unwrap();
    let id = store.create_run(&spec("a"), "fp", 5).unwrap();
    drop(store);
    assert_eq!(Store::open(&path).unwrap().run(id).unwrap().dataset_fingerprint, "fp");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(conn);
    let err = Store::open(&path).err().expect("a newer schema is refused");
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("run a newer r1"), "{err}");
}

#[test]
fn run_states_move_only_forward() {
    use RunState::*;
    // (path of states from pending, whether the last move is allowed)
    let cases: &[(&[RunState], bool)] = &[
        (&[Running], true),
        (&[Running, Completed], true),
        (&[Running, Failed], true),
        (&[Running, Cancelled], true),
        (&[Cancelled], true),
        (&[Failed], true),
        (&[Completed], false),
        (&[Pending], false),
        (&[Running, Pending], false),
        (&[Running, Running], false),
        (&[Running, Completed, Cancelled], false),
        (&[Cancelled, Running], false),
        (&[Failed, Completed], false),
    ];
    for (path, allowed) in cases {
        let mut store = Store::open_in_memory().unwrap();
        let id = store.create_run(&spec("r"), "", 0).unwrap();
        let (last, before) = path.split_last().unwrap();
        for (t, s) in before.iter().enumerate() {
            store.set_state(id, *s, "", t as i64 + 1).unwrap();
        }
        let got = store.set_state(id, *last, "why", 100);
        match (got, allowed) {
            (Ok(run), true) => assert_eq!((run.state, run.message.as_str(), run.updated_ms), (*last, "why", 100)),
            (Err(StoreError::BadTransition { to, .. }), false) => assert_eq!(to, *last),
            (got, _) => panic!("{path:?}: got {got:?}"),
        }
    }
}

#[test]
fn runs_are_listed_newest_first_and_unknown_ones_named() {
    let mut store = Store::open_in_memory().unwrap();
    let a = store.create_run(&spec("first"), "", 1).unwrap();
    let b = store.create_run(&spec("second"), "", 2).unwrap();
    let names: Vec<_> = store.runs().unwrap().into_iter().map(|r| (r.id, r.spec.name, r.state)).collect();
    assert_eq!(names, vec![(b, "second".to_string(), RunState::Pending), (a, "first".to_string(), RunState::Pending)]);
    let run = store.run(a).unwrap();
    assert_eq!((run.created_ms, run.spec), (1, spec("first")));
    let err = store.run(99).unwrap_err().to_string();
    assert_eq!(err, "run 99 does not exist; list runs with `r1ctl runs`");
    assert!(matches!(store.set_state(99, RunState::Running, "", 0), Err(StoreError::RunNotFound(99))));
    assert!(matches!(store.progress(99), Err(StoreError::RunNotFound(99))));
    let p = store.progress(a).unwrap();
    assert_eq!((p.step, p.policy_version, p.counters.prompts_drawn), (0, 0, 0));
    assert_eq!(store.policy_versions(a).unwrap(), vec![(0, 1)]);
}

#[test]
fn checkpoints_are_recorded_at_the_current_step_with_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1.db");
    let mut store = Store::open(&path).unwrap();
    let id = store.create_run(&spec("c"), "", 0).unwrap();
    let rec = store.record_checkpoint(id, 0, "ckpt/step-0", 10).unwrap();
    assert_eq!((rec.step, rec.progress.step), (0, 0));
    let err = store.record_checkpoint(id, 3, "ckpt/step-3", 11).unwrap_err().to_string();
    assert!(err.contains("run 1 is at step 0"), "{err}");
    store.record_checkpoint(id, 0, "ckpt/step-0b", 12).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let all = store.checkpoints(id).unwrap();
    assert_eq!(
        all.iter().map(|c| (c.step, c.path.as_str(), c.created_ms)).collect::<Vec<_>>(),
        vec![(0, "ckpt/step-0b", 12)]
    );
}

#[test]
fn the_system_clock_reads_unix_milliseconds() {
    let now = SystemClock.now();
    // 2024-01-01 and 2100-01-01 in Unix milliseconds.
    assert!((1_704_067_200_000..4_102_444_800_000).contains(&now), "{now}");
}

#[test]
fn a_version_1_database_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1.db");
    let id = Store::open(&path).unwrap().create_run(&spec("old"), "fp", 1).unwrap();
    // Take the schema back to v1: no poison counts, no rollbacks, no eval column, no evals table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE groups DROP COLUMN attempts; ALTER TABLE groups DROP COLUMN fail_reason;
         ALTER TABLE progress DROP COLUMN groups_failed; ALTER TABLE checkpoints DROP COLUMN snapshot;
         ALTER TABLE progress DROP COLUMN rollbacks; DROP TABLE rollbacks; ALTER TABLE groups DROP COLUMN eval_version; DROP TABLE evals;
         DROP TABLE run_claims; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.run(id).unwrap().spec.name, "old");
    assert_eq!(store.evals(id).unwrap(), vec![]);
}

#[test]
fn a_checkpoint_recorded_before_rollback_support_cannot_be_rolled_back_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r1.db");
    let mut store = Store::open(&path).unwrap();
    let id = store.create_run(&spec("old"), "fp", 1).unwrap();
    store.set_state(id, RunState::Running, "", 1).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("UPDATE progress SET step = 2, policy_version = 2").unwrap();
    drop(conn);
    let mut store = Store::open(&path).unwrap();
    store.record_checkpoint(id, 2, "ckpt/step-2", 2).unwrap();
    drop(store);
    // Back to v2 (no poison counts, no rollbacks): the checkpoint row loses its snapshot, as
    // rows written by v2 have none.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE groups DROP COLUMN attempts; ALTER TABLE groups DROP COLUMN fail_reason;
         ALTER TABLE progress DROP COLUMN groups_failed; ALTER TABLE checkpoints DROP COLUMN snapshot;
         ALTER TABLE progress DROP COLUMN rollbacks; DROP TABLE rollbacks; DROP TABLE run_claims; PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.checkpoints(id).unwrap().len(), 1, "the old record still lists");
    let err = r1_coordinator::rollback::rollback(&mut store, id, 2, "k", 3).unwrap_err();
    assert!(matches!(err, StoreError::NoSnapshot { step: 2, .. }), "{err}");
    assert!(
        err.to_string()
            .contains("has no snapshot of the run's groups; roll back to a checkpoint recorded since the upgrade"),
        "{err}"
    );
    assert_eq!(store.progress(id).unwrap().counters.rollbacks, 0, "nothing applied");
    // Step 0, the base model, needs no snapshot.
    let back = r1_coordinator::rollback::rollback(&mut store, id, 0, "k0", 4).unwrap();
    assert_eq!((back.from_step, back.checkpoint.step), (2, 0));
    let p = store.progress(id).unwrap();
    assert_eq!((p.step, p.counters.rollbacks), (0, 1));
    assert_eq!(store.checkpoints(id).unwrap(), vec![], "the record past step 0 is deleted");
}
