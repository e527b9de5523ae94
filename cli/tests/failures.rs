//! What a user meets when things go wrong, as real processes and real signals (issue 17):
//! every case gives a clear message at once or recovers by itself, nothing waits in silence.
//!
//! - `a_sigkilled_up_resumes_in_a_copied_folder_in_under_a_minute`: `r1ctl up` is SIGKILLed
//!   mid-run with leases held, its data folder is copied, and `up` in the copy adopts the run
//!   (no orphan, no second run), takes back the dead process's leases and finishes in under a
//!   minute.
//! - `a_damaged_checkpoint_falls_back_to_the_one_before`: after a SIGKILL the weights of every
//!   checkpoint past step 1 are truncated; the resumed learner finds each by its checksum,
//!   says so, falls back to step 1 and the run still completes.
//! - `a_second_coordinator_on_a_data_folder_is_refused`: names the PID holding the folder.
//! - `listen_is_checked_before_the_token`: a port out of range says so first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

mod common;
use common::{fixture, free_addr, r1ctl};
use std::time::{Duration, Instant};

const STEPS: u64 = 6;

/// A run spec and its dataset inside `data/spec/` (so that a copy of the data folder carries
/// them), checkpointing every step.
fn write_run(data: &Path) -> PathBuf {
    let dir = data.join("spec");
    std::fs::create_dir_all(&dir).unwrap();
    let rows = common::digit_sums(40);
    std::fs::write(dir.join("train.jsonl"), rows).unwrap();
    let spec = dir.join("run.toml");
    std::fs::write(
        &spec,
        format!(
            "name = 'failures'\nbase_model = '{}'\n\
             [dataset]\npath = 'train.jsonl'\nfields = {{prompt = 'question', answer = 'answer'}}\n\
             [[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n\
             [algorithm]\nkind = 'grpo'\ngroup_size = 4\nprompts_per_step = 2\n\
             [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 12\n\
             [algorithm.learner]\nlr = 1e-3\nmicro_batch = 4\n\
             [fleet]\nactors = 2\nreward_workers = 1\nlearner_ranks = 1\n\
             [schedule]\ntotal_steps = {STEPS}\ncheckpoint_every = 1\neval_every = 0\n",
            fixture().display()
        ),
    )
    .unwrap();
    spec
}

/// `r1ctl up --config` on `data`, its stderr in `<data>/../<name>.log`.
fn spawn_up(data: &Path, spec: &Path, name: &str) -> (Child, PathBuf) {
    let log = data.with_file_name(format!("{name}.log"));
    let child = r1ctl()
        .args([
            "up",
            "--json",
            "--config",
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &free_addr(),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// Waits until run 1 of `data` has at least `steps` metrics lines (so the checkpoint of the
/// step before is recorded: the learner checkpoints a step before it trains the next), then
/// SIGKILLs `up`.
fn kill_after(mut child: Child, log: &Path, data: &Path, steps: usize) {
    let metrics = data.join("runs/1/metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let lines = std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
        if lines >= steps {
            break;
        }
        if let Some(code) = child.try_wait().unwrap() {
            panic!("up exited with {code} before step {steps}:\n{}", std::fs::read_to_string(log).unwrap());
        }
        assert!(Instant::now() < deadline, "no step {steps} in 300s:\n{}", std::fs::read_to_string(log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Runs `up` again to the end, within `limit`; returns its stderr.
fn resume(data: &Path, spec: &Path, name: &str, limit: Duration) -> String {
    let started = Instant::now();
    let (mut child, log) = spawn_up(data, spec, name);
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the resumed up did not finish within {limit:?}:\n{}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(code.success(), "the resumed up failed ({code}):\n{stderr}");
    stderr
}

/// The one run of `data`, completed at the last step, with one metrics line per step.
fn check_completed(data: &Path, stderr: &str) {
    let runs: Vec<String> = std::fs::read_dir(data.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs, ["1"], "one run, resumed, not a second one:\n{stderr}");
    let metrics = std::fs::read_to_string(data.join("runs/1/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count() as u64, STEPS, "{metrics}");
    assert!(stderr.contains("resuming run 1"), "{stderr}");
}

#[test]
fn a_sigkilled_up_resumes_in_a_copied_folder_in_under_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("first");
    let spec = write_run(&data);
    let (child, log) = spawn_up(&data, &spec, "first");
    kill_after(child, &log, &data, 2);
    let copy = dir.path().join("copy");
    let cp = Command::new("cp").arg("-a").arg(&data).arg(&copy).status().unwrap();
    assert!(cp.success());
    // The original is out of reach: the copy must read nothing of it.
    let away = dir.path().join("away");
    std::fs::rename(&data, &away).unwrap();
    let stderr = resume(&copy, &copy.join("spec/run.toml"), "copy", Duration::from_secs(60));
    assert!(stderr.contains("run 1 `failures` was made in another data folder"), "{stderr}");
    check_completed(&copy, &stderr);
    // The original is untouched by the copy's run.
    let original = std::fs::read_to_string(away.join("runs/1/spec.json")).unwrap();
    assert!(original.contains(data.join("spec").to_str().unwrap()), "{original}");
}

#[test]
fn a_damaged_checkpoint_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = write_run(&data);
    let (child, log) = spawn_up(&data, &spec, "first");
    kill_after(child, &log, &data, 3);
    // Every checkpoint past step 1 loses its weights' tail (step 2 at least is recorded).
    let mut damaged = Vec::new();
    for e in std::fs::read_dir(data.join("checkpoints/run-1")).unwrap().flatten() {
        let step = e.file_name().to_str().and_then(|n| n.strip_prefix("step-")?.parse::<u64>().ok());
        if step.is_some_and(|s| s >= 2) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(e.path().join("model.safetensors"))
                .unwrap()
                .set_len(100)
                .unwrap();
            damaged.push(e.path());
        }
    }
    assert!(!damaged.is_empty());
    let stderr = resume(&data, &spec, "resumed", Duration::from_secs(60));
    let said = damaged
        .iter()
        .any(|d| stderr.contains(&format!("checkpoint {} is damaged: model.safetensors has SHA-256", d.display())));
    assert!(said, "no damaged checkpoint of {damaged:?} reported:\n{stderr}");
    assert!(stderr.contains("falling back to the checkpoint before it"), "{stderr}");
    check_completed(&data, &stderr);
}

#[test]
fn a_second_coordinator_on_a_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first_addr = free_addr();
    let mut first = r1ctl()
        .args(["serve", "coordinator", "--listen", &first_addr, "--data-dir", data.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&first_addr).is_err() {
        assert!(Instant::now() < deadline, "the first coordinator did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // (command, what its error must say)
    let second: Output = r1ctl()
        .args(["serve", "coordinator", "--listen", &free_addr(), "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let spec = write_run(&dir.path().join("elsewhere"));
    let up: Output = r1ctl()
        .args([
            "up",
            "--config",
            spec.to_str().unwrap(),
            "--listen",
            &free_addr(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    for (what, out) in [("serve coordinator", second), ("up", up)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: a second coordinator started:\n{stderr}");
        let holder = format!("is in use by another coordinator (pid {} on host", first.id());
        assert!(stderr.contains(&holder) && stderr.contains(&first_addr), "{what}: `{holder}` missing:\n{stderr}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn listen_is_checked_before_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = r1ctl()
        .args(["serve", "coordinator", "--listen", "10.0.0.1:99999", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("`listen` is `10.0.0.1:99999`: port 99999 is out of range"), "{stderr}");
    assert!(!stderr.contains("token"), "the port comes first:\n{stderr}");
}
