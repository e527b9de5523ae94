//! What the real-process tests share (`system.rs`, `failures.rs`, `pools.rs`, `chart.rs`):
//! `r1ctl` as a child process killed when dropped, free loopback ports, the tiny model
//! fixture, a dataset of digit sums, the run's status, and failing with the logs.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `r1ctl` with none of the caller's r1 variables.
pub fn r1ctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_r1ctl"));
    cmd.env_remove("R1_TOKEN").env_remove("R1_COORDINATOR").env_remove("R1_COORDINATOR_TOKEN").env("R1_LOG", "warn");
    cmd
}

/// A child process killed when dropped; its stderr goes to `<dir>/<name>.log`.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut cmd = r1ctl();
        cmd.args(args).env("R1_LOG", "info,h2=warn,tower=warn,hyper=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        Proc { name: name.into(), child }
    }

    /// SIGKILL: no handler runs, nothing is flushed.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, what Kubernetes sends a pod it stops.
    pub fn term(&self) {
        // SAFETY: kill(2) on a child we spawned and still own.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `secs` for the process to exit by itself.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(code) = self.exited() {
                return Some(code);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_addr() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// The tiny random-weight Qwen2 checkpoint every model test uses.
pub fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
        .canonicalize()
        .unwrap()
}

/// `rows` sums of two digits as `{"question", "answer"}` lines.
pub fn digit_sums(rows: usize) -> String {
    let mut text = String::new();
    for i in 0..rows {
        let (a, b) = (i % 9 + 1, (i * 7) % 9 + 1);
        text.push_str(&format!("{{\"question\": \"{a}+{b}=\", \"answer\": \"{}\"}}\n", a + b));
    }
    text
}

/// Waits until the TCP port at `addr` accepts connections.
pub fn wait_listening(addr: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr} after {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `r1ctl <cmd> --json` against the coordinator at `url`, parsed; None when it failed.
pub fn json(url: &str, token: Option<&str>, args: &[&str]) -> Option<serde_json::Value> {
    let mut cmd = r1ctl();
    cmd.args(args).args(["--coordinator", url, "--json"]);
    if let Some(t) = token {
        cmd.env("R1_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Panics with `msg` and, for every `*.log` in `dir`, its errors and last lines.
pub fn fail_with_logs(dir: &Path, msg: &str) -> ! {
    let mut logs = String::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_some_and(|x| x == "log") {
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

/// A coordinator as the tests watch it: its address, token, and the folder of the logs.
pub struct Watch<'a> {
    pub dir: &'a Path,
    pub url: &'a str,
    pub token: Option<&'a str>,
}

impl Watch<'_> {
    /// Waits until `cond` holds for run `run`'s status, failing with the logs after `secs` or
    /// as soon as one of `procs` exits with an error.
    pub fn wait_run(
        &self,
        run: u64,
        procs: &mut [Proc],
        what: &str,
        secs: u64,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let run_s = run.to_string();
        loop {
            let status = json(self.url, self.token, &["status", &run_s]);
            if let Some(s) = &status
                && cond(s)
            {
                return s.clone();
            }
            if let Some(dead) = procs
                .iter_mut()
                .find_map(|p| p.exited().filter(|c| !c.success()).map(|c| format!("{} exited with {c}", p.name)))
            {
                fail_with_logs(self.dir, &format!("{dead} while waiting for {what}"));
            }
            if Instant::now() > deadline {
                fail_with_logs(self.dir, &format!("timed out waiting for {what}; last status {status:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The counters every completed run must show: each trained group counted once, and every
/// drawn prompt trained, dropped, failed, or still queued.
pub fn check_counters(status: &serde_json::Value, steps: u64, prompts_per_step: u64) {
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["step"].as_u64(), Some(steps), "{status}");
    let c = &status["counters"];
    assert_eq!(c["groups_trained"].as_u64(), Some(steps * prompts_per_step), "every trained group counted once: {c}");
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let q = &status["queues"];
    let ended = n(c, "groups_trained") + n(c, "dropped_stale") + n(c, "dropped_equal") + n(c, "groups_failed");
    let open = n(q, "generate") + n(q, "score") + n(q, "train");
    assert_eq!(n(c, "prompts_drawn"), ended + open, "no group lost: {c} {q}");
}
