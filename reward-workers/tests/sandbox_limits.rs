//! Each sandbox limit at its boundary: just under passes, at/over ends the run the way it
//! should. Programs are Python, built with the code verifier's runner.

use std::time::Duration;

use r1_reward::code::runner;
use r1_reward::sandbox::{Limits, Outcome, Sandbox, SandboxConfig};

fn run(sandbox: &Sandbox, code: &str, limits: Limits) -> Outcome {
    let python = runner("python").unwrap().unwrap();
    let mut spec = python.io_run(code, "");
    spec.limits = limits;
    sandbox.run(&spec).unwrap()
}

fn stderr_tail(out: &Outcome) -> String {
    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string()
}

/// How a run ended, compactly: "exit 0", "exit 1: <last stderr line>", "killed Output", "signal 24".
fn ending(out: &Outcome) -> String {
    match (out.killed, out.signal, out.code) {
        (Some(kill), _, _) => format!("killed {kill:?}"),
        (None, Some(sig), _) => format!("signal {sig}"),
        (None, None, Some(0)) => "exit 0".into(),
        (None, None, Some(code)) => format!("exit {code}: {}", stderr_tail(out)),
        _ => "unknown".into(),
    }
}

#[test]
fn limits_at_their_boundaries() {
    let root = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig { tmp_root: root.path().into(), ..Default::default() }).unwrap();
    let base = Limits { wall: Duration::from_secs(5), cpu: Duration::from_secs(5), ..Limits::default() };
    let write = "import sys\nsys.stdout.write('x' * {n})\n";
    let file = "with open('f', 'wb') as f:\n    f.write(b'x' * {n})\n";
    let children = "import subprocess, sys\nps = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1)']) for _ in range({n})]\n\
                    [p.wait() for p in ps]\n";
    let files = "fs = [open('/dev/null') for _ in range({n})]\n";
    let alloc = "b = bytearray({n} * 1024 * 1024)\n";
    let cases: Vec<(&str, &str, usize, Limits, &str)> = vec![
        ("stdout at the cap", write, 1000, Limits { output_bytes: 1000, ..base.clone() }, "exit 0"),
        ("stdout one byte over", write, 1001, Limits { output_bytes: 1000, ..base.clone() }, "killed Output"),
        ("file at the size limit", file, 100_000, Limits { file_size_bytes: 100_000, ..base.clone() }, "exit 0"),
        (
            "file one byte over",
            file,
            100_001,
            Limits { file_size_bytes: 100_000, ..base.clone() },
            "exit 1: OSError: [Errno 27] File too large",
        ),
        (
            "sleep under the wall time",
            "import time\ntime.sleep(0.{n})\n",
            2,
            Limits { wall: Duration::from_millis(800), ..base.clone() },
            "exit 0",
        ),
        (
            "sleep over the wall time",
            "import time\ntime.sleep({n})\n",
            3,
            Limits { wall: Duration::from_millis(800), ..base.clone() },
            "killed WallTime",
        ),
        (
            "busy past the CPU limit",
            "while True:\n    pass  # {n}\n",
            0,
            Limits { cpu: Duration::from_secs(1), ..base.clone() },
            "signal 24",
        ),
        ("allocation under the memory limit", alloc, 64, Limits { memory_bytes: 256 << 20, ..base.clone() }, "exit 0"),
        (
            "allocation over the memory limit",
            alloc,
            300,
            Limits { memory_bytes: 256 << 20, ..base.clone() },
            "exit 1: MemoryError",
        ),
        ("open files under the limit", files, 20, Limits { open_files: 32, ..base.clone() }, "exit 0"),
        (
            "open files over the limit",
            files,
            40,
            Limits { open_files: 32, ..base.clone() },
            "exit 1: OSError: [Errno 24] Too many open files: '/dev/null'",
        ),
    ];
    let mut cases = cases;
    if sandbox.layers().dedicated_uid {
        // RLIMIT_NPROC counts the run's own processes only under a dedicated uid.
        cases.push((
            "children under the process limit",
            children,
            6,
            Limits { processes: 8, ..base.clone() },
            "exit 0",
        ));
        cases.push((
            "children over the process limit",
            children,
            12,
            Limits { processes: 8, ..base.clone() },
            "exit 1: BlockingIOError: [Errno 11] Resource temporarily unavailable",
        ));
    }
    if sandbox.layers().tmpfs {
        let disk = Limits { disk_bytes: 4 << 20, file_size_bytes: 64 << 20, ..base.clone() };
        cases.push(("scratch under the tmpfs size", file, 3 << 20, disk.clone(), "exit 0"));
        cases.push((
            "scratch over the tmpfs size",
            file,
            5 << 20,
            disk,
            "exit 1: OSError: [Errno 28] No space left on device",
        ));
    }
    let mut wrong = Vec::new();
    for (name, program, n, limits, want) in cases {
        let out = run(&sandbox, &program.replace("{n}", &n.to_string()), limits.clone());
        let got = ending(&out);
        if got != want {
            wrong.push(format!("{name}: want `{want}`, got `{got}`"));
        }
        if out.wall > limits.wall + Duration::from_secs(1) {
            wrong.push(format!("{name}: took {:?} with a wall limit of {:?}", out.wall, limits.wall));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_environment_is_only_what_the_caller_passes() {
    let sandbox = r1_reward::sandbox::shared().unwrap();
    let out = run(sandbox, "import os\nprint(sorted(os.environ))", Limits::default());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "['HOME', 'LANG', 'PATH', 'TMPDIR']");
}

#[test]
fn output_is_captured_whole_under_the_cap() {
    let sandbox = r1_reward::sandbox::shared().unwrap();
    let out = run(sandbox, "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)", Limits::default());
    assert_eq!((out.code, out.stdout.as_slice(), out.stderr.as_slice()), (Some(3), &b"out\n"[..], &b"err\n"[..]));
    assert_eq!(out.forced_verdict(), None);
}
