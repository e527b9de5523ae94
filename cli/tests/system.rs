//! The training system as real processes on loopback: `r1ctl serve coordinator`, two
//! learner ranks (`serve learner`), two actors (`serve actor`) and two reward workers
//! (`reward work`), driving a GRPO run of the tiny Qwen2 fixture to its end.
//!
//! `survives_sigkill_of_every_role` kills an actor, a reward worker, the coordinator and a
//! learner rank with SIGKILL while the run goes on, restarts what must be restarted, and
//! checks the run still completes with exact counters: every trained group counted once,
//! none lost, one metrics line per step, and the learner resumed from its checkpoint.
//!
//! `rolls_back_to_the_last_checkpoint_after_the_learner_dies` checkpoints every 3 steps and
//! SIGKILLs learner rank 0 after step 4: the weights of step 4 are lost, so the restarted
//! fleet rolls the coordinator back to step 3 and the run still completes with exact
//! counters.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{Proc, fixture, free_addr};

const STEPS: u64 = 8;
const PROMPTS_PER_STEP: u64 = 2;

/// The run spec and its dataset: sums of two digits, scored by the math verifier.
fn write_run(dir: &Path, checkpoint_every: u64) -> PathBuf {
    let rows = common::digit_sums(30);
    std::fs::write(dir.join("train.jsonl"), rows).unwrap();
    let spec = dir.join("run.toml");
    std::fs::write(
        &spec,
        format!(
            "name = 'system'\nbase_model = '{}'\n\
             [dataset]\npath = 'train.jsonl'\neval_fraction = 0.1\nfields = {{prompt = 'question', answer = 'answer'}}\n\
             [[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n\
             [[rewards]]\nname = 'format'\nverifier = 'format'\nweight = 0.5\n\
             [algorithm]\nkind = 'grpo'\ngroup_size = 4\nprompts_per_step = {PROMPTS_PER_STEP}\n\
             [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 12\n\
             [algorithm.learner]\nlr = 1e-3\nbeta = 0.01\nmicro_batch = 4\npublish_every = 2\n\
             [fleet]\nactors = 2\nreward_workers = 2\nlearner_ranks = 2\n\
             [schedule]\ntotal_steps = {STEPS}\ncheckpoint_every = {checkpoint_every}\neval_every = 3\n",
            fixture().display()
        ),
    )
    .unwrap();
    spec
}

/// Everything a run needs, as separate processes.
struct System {
    dir: PathBuf,
    listen: String,
    url: String,
    run: String,
    master: String,
    weights: String,
    coordinator: Option<Proc>,
    learners: Vec<Proc>,
    actors: Vec<Proc>,
    scorers: Vec<Proc>,
}

impl System {
    fn start(dir: &Path, checkpoint_every: u64) -> System {
        let listen = free_addr();
        let mut s = System {
            dir: dir.into(),
            url: format!("http://{listen}"),
            listen,
            run: String::new(),
            master: free_addr(),
            weights: free_addr(),
            coordinator: None,
            learners: vec![],
            actors: vec![],
            scorers: vec![],
        };
        s.start_coordinator("coordinator");
        let spec = write_run(dir, checkpoint_every);
        let out = Command::new(env!("CARGO_BIN_EXE_r1ctl"))
            .args(["submit-run", spec.to_str().unwrap(), "--coordinator", &s.url, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "submit-run: {}", String::from_utf8_lossy(&out.stderr));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        s.run = status["id"].as_u64().unwrap().to_string();
        s.start_learners("a");
        for i in 0..2 {
            s.actors.push(s.actor(&format!("actor-{i}")));
            s.scorers.push(s.scorer(&format!("reward-{i}")));
        }
        s
    }

    /// The coordinator, with leases short enough that a dead worker's work moves on fast.
    fn start_coordinator(&mut self, name: &str) {
        let data = self.dir.join("data");
        let leases = [
            ("R1_COORDINATOR_LEASES__GENERATE_MS", "4000"),
            ("R1_COORDINATOR_LEASES__SCORE_MS", "4000"),
            ("R1_COORDINATOR_LEASES__TRAIN_MS", "6000"),
        ];
        let p = Proc::spawn(
            &self.dir,
            name,
            &["serve", "coordinator", "--listen", &self.listen, "--data-dir", data.to_str().unwrap()],
            &leases,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.listen).is_err() {
            assert!(Instant::now() < deadline, "the coordinator did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.coordinator = Some(p);
    }

    fn start_learners(&mut self, generation: &str) {
        let ckpt = self.dir.join("checkpoints");
        for rank in 0..2 {
            let rank_s = rank.to_string();
            let args = [
                "serve",
                "learner",
                "--coordinator",
                &self.url,
                "--run",
                &self.run,
                "--rank",
                &rank_s,
                "--world-size",
                "2",
                "--master-addr",
                &self.master,
                "--weights-listen",
                &self.weights,
                "--checkpoints",
                ckpt.to_str().unwrap(),
            ];
            self.learners.push(Proc::spawn(&self.dir, &format!("learner-{rank}-{generation}"), &args, &[]));
        }
    }

    fn actor(&self, name: &str) -> Proc {
        let learner = format!("http://{}", self.weights);
        let args = [
            "serve",
            "actor",
            "--coordinator",
            &self.url,
            "--run",
            &self.run,
            "--learner",
            &learner,
            "--name",
            name,
            "--max-groups",
            "1",
        ];
        Proc::spawn(&self.dir, name, &args, &[])
    }

    fn scorer(&self, name: &str) -> Proc {
        let args = [
            "reward",
            "work",
            "--coordinator",
            &self.url,
            "--run",
            &self.run,
            "--worker",
            name,
            "--max-groups",
            "1",
            "--idle-ms",
            "100",
        ];
        Proc::spawn(&self.dir, name, &args, &[])
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_r1ctl"))
            .args(["status", &self.run, "--coordinator", &self.url, "--json"])
            .output()
            .unwrap();
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Waits until `cond` holds for the run's status, failing with the logs after `secs`.
    fn wait_for(&mut self, what: &str, secs: u64, cond: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.status()
                && cond(&s)
            {
                return s;
            }
            let dead = self
                .learners
                .iter_mut()
                .chain(&mut self.actors)
                .chain(&mut self.scorers)
                .find_map(|p| p.exited().filter(|c| !c.success()).map(|c| format!("{} exited with {c}", p.name)));
            if let Some(dead) = dead {
                self.fail(&format!("{dead} while waiting for {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}; last status {:?}", self.status()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn fail(&self, msg: &str) -> ! {
        let mut logs = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                // Errors and panics, wherever they are, then the last lines.
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let errors =
                    lines.iter().filter(|l| l.contains("panicked") || l.starts_with("Error") || l.contains("ERROR"));
                let tail = lines.iter().skip(lines.len().saturating_sub(8));
                let shown: Vec<&str> = errors.chain(tail).copied().collect();
                logs.push_str(&format!("\n--- {} ---\n{}", p.display(), shown.join("\n")));
            }
        }
        panic!("{msg}{logs}");
    }

    fn step(s: &serde_json::Value) -> u64 {
        s["step"].as_u64().unwrap_or(0)
    }

    /// The checks every finished run must pass.
    fn check_complete(&mut self, status: &serde_json::Value) {
        assert_eq!(status["state"], "completed", "{status}");
        assert_eq!(Self::step(status), STEPS);
        let c = &status["counters"];
        assert_eq!(
            c["groups_trained"].as_u64(),
            Some(STEPS * PROMPTS_PER_STEP),
            "every trained group counted once: {c}"
        );
        // Every drawn prompt ended somewhere: trained, dropped, or still queued (none, since the
        // run is complete but actors may have drawn ahead of the learner).
        let q = &status["queues"];
        let ended = c["groups_trained"].as_u64().unwrap()
            + c["dropped_stale"].as_u64().unwrap()
            + c["dropped_equal"].as_u64().unwrap();
        let open = q["generate"].as_u64().unwrap() + q["score"].as_u64().unwrap() + q["train"].as_u64().unwrap();
        assert_eq!(c["prompts_drawn"].as_u64().unwrap(), ended + open, "no group lost: {c} {q}");
        let metrics = self.dir.join("data/runs").join(&self.run).join("metrics.jsonl");
        let text = std::fs::read_to_string(&metrics).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, (0..=STEPS).collect::<Vec<_>>(), "one metrics line per step");
        for l in &lines[1..] {
            for key in [
                "reward_mean",
                "accuracy",
                "kl",
                "entropy",
                "response_len_mean",
                "tokens_per_s",
                "actor_tokens_per_s",
                "learner_tokens_per_s",
                "queue_generate",
                "queue_score",
                "queue_train",
            ] {
                assert!(l[key].is_number(), "step {} lacks {key}: {l}", l["step"]);
            }
        }
        for step in [0, 3, 6] {
            assert!(lines[step]["eval_accuracy"].is_number(), "eval at step {step}: {}", lines[step]);
        }
        // Every process ends by itself once the run is over.
        let deadline = Instant::now() + Duration::from_secs(30);
        for p in self.learners.iter_mut().chain(&mut self.actors).chain(&mut self.scorers) {
            loop {
                match p.exited() {
                    Some(code) => {
                        assert!(code.success(), "{} exited with {code}", p.name);
                        break;
                    }
                    None if Instant::now() > deadline => panic!("{} did not stop after the run ended", p.name),
                    None => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        // Rank 0 writes the final checkpoint after the step that completes the run, so it is
        // there once the learners have exited, not necessarily when the run shows completed.
        let ckpt = self.dir.join("checkpoints").join(format!("run-{}", self.run)).join(format!("step-{STEPS}"));
        assert!(
            ckpt.join("model.safetensors").exists() && ckpt.join("tokenizer.json").exists(),
            "final checkpoint at {}",
            ckpt.display()
        );
    }
}

#[test]
fn run_completes_with_two_of_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = System::start(dir.path(), 1);
    let status = s.wait_for("the run to complete", 300, |st| st["state"] == "completed");
    s.check_complete(&status);
    let c = &status["counters"];
    assert_eq!(c["leases_expired"].as_u64(), Some(0), "nothing died, nothing expired: {c}");
}

#[test]
fn survives_sigkill_of_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = System::start(dir.path(), 1);

    // Each kill must land while the run is still going.
    let mid_run = |st: &serde_json::Value| {
        assert_eq!(st["state"], "running", "the kill must land mid-run: {st}");
        assert!(System::step(st) < STEPS);
    };
    mid_run(&s.wait_for("step 1", 300, |st| System::step(st) >= 1));
    s.actors.remove(0).kill();

    mid_run(&s.wait_for("step 2", 300, |st| System::step(st) >= 2));
    s.scorers.remove(0).kill();

    mid_run(&s.wait_for("step 3", 300, |st| System::step(st) >= 3));
    s.coordinator.take().unwrap().kill();
    std::thread::sleep(Duration::from_millis(500));
    s.start_coordinator("coordinator-restarted");

    mid_run(&s.wait_for("step 4", 300, |st| System::step(st) >= 4));
    // A learner rank dies: rank 0 loses the ring and stops with an error; the operator (here,
    // the test) restarts the fleet, which resumes from the checkpoint of the coordinator's step.
    s.learners.remove(1).kill();
    let mut rank0 = s.learners.remove(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while rank0.exited().is_none() {
        assert!(Instant::now() < deadline, "rank 0 did not notice its peer died");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.start_learners("b");

    let status = s.wait_for("the run to complete", 300, |st| st["state"] == "completed");
    s.check_complete(&status);
    let log = std::fs::read_to_string(dir.path().join("learner-0-b.log")).unwrap();
    assert!(log.contains("resuming from checkpoint"), "the restarted learner resumed: {log}");
    let resumed = log.lines().find(|l| l.contains("resuming from checkpoint")).unwrap();
    assert!(!resumed.contains(&format!("step={STEPS}")), "it resumed mid-run, not after the end: {resumed}");
}

#[test]
fn rolls_back_to_the_last_checkpoint_after_the_learner_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = System::start(dir.path(), 3);
    let st = s.wait_for("step 4", 300, |st| System::step(st) >= 4);
    // Past the checkpoint of step 3, before the one of step 6.
    assert!((4..6).contains(&System::step(&st)), "the kill must land between checkpoints: {st}");
    s.learners.remove(0).kill();
    let mut rank1 = s.learners.remove(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while rank1.exited().is_none() {
        assert!(Instant::now() < deadline, "rank 1 did not notice rank 0 died");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give the actors time to lease at version 4, which nobody publishes now, so that after
    // the rollback they often must give those leases up (actor/tests/lost_lease.rs tests
    // that case on its own, every time).
    std::thread::sleep(Duration::from_secs(2));
    s.start_learners("b");

    let status = s.wait_for("the run to complete", 300, |st| st["state"] == "completed");
    s.check_complete(&status);
    assert_eq!(status["counters"]["rollbacks"].as_u64(), Some(1), "{status}");
    let log = std::fs::read_to_string(dir.path().join("learner-0-b.log")).unwrap();
    let rolled = log.lines().find(|l| l.contains("rolled back to checkpoint"));
    assert!(rolled.is_some_and(|l| l.contains("step=3")), "the restarted learner rolled back to step 3: {log}");
    let resumed = log.lines().find(|l| l.contains("resuming from checkpoint")).unwrap_or_default();
    assert!(resumed.contains("step=3"), "and resumed from it: {resumed}");
}

#[test]
fn sigterm_makes_the_learner_checkpoint_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    // Checkpoints only at the end, so the one SIGTERM writes is the only one mid-run.
    let mut s = System::start(dir.path(), 100);
    s.wait_for("step 2", 300, |st| System::step(st) >= 2);
    let mut rank0 = s.learners.remove(0);
    let pid = rank0.child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child we spawned and still own.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Some(code) = rank0.exited() {
            break code;
        }
        assert!(Instant::now() < deadline, "rank 0 did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(code.success(), "rank 0 stops cleanly on SIGTERM: {code}");
    let st = s.status().unwrap();
    let step = System::step(&st);
    assert!(step < STEPS, "SIGTERM landed mid-run: {st}");
    let ckpt = dir.path().join("checkpoints").join(format!("run-{}", s.run)).join(format!("step-{step}"));
    assert!(
        ckpt.join("model.safetensors").exists() && ckpt.join("optimizer.mpk").exists(),
        "checkpoint of step {step} written"
    );
    // The rest of the fleet (rank 1) and a restarted one finish the run from that checkpoint.
    let mut rank1 = s.learners.remove(0);
    while rank1.exited().is_none() {
        assert!(Instant::now() < deadline, "rank 1 did not stop with rank 0");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.start_learners("b");
    let status = s.wait_for("the run to complete", 300, |st| st["state"] == "completed");
    s.check_complete(&status);
    assert_eq!(status["counters"]["rollbacks"].as_u64(), Some(0), "nothing was lost, nothing rolled back: {status}");
}
