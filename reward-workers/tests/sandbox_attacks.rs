//! The attack suite: programs that try to escape or exhaust the sandbox. Each must score 0
//! with the status that says why, inside its time bound, leave no process behind and write
//! nothing outside its own folder; the test process itself must survive.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use r1_reward::code::score_with;
use r1_reward::job::{ScoreJob, Status};
use r1_reward::sandbox::{Layers, Sandbox, SandboxConfig};

struct Attack {
    name: &'static str,
    /// The completion; `{outside}` is a folder outside the sandbox, `{port}` a loopback listener.
    program: &'static str,
    /// Test code that passes only if the attack worked (or, for early exits, that must not run).
    test: &'static str,
    expect: &'static [Status],
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "fork bomb",
        program: "import os\nwhile True:\n    os.fork()\n",
        test: "pass",
        expect: &[Status::ResourceLimit],
    },
    Attack {
        name: "memory bomb",
        program: "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n",
        test: "pass",
        expect: &[Status::MemoryLimit],
    },
    Attack { name: "infinite loop", program: "while True:\n    pass\n", test: "pass", expect: &[Status::Timeout] },
    Attack { name: "sleep", program: "import time\ntime.sleep(600)\n", test: "pass", expect: &[Status::Timeout] },
    Attack {
        name: "setsid daemon outlives the sample",
        // The daemon is killed with its PID namespace; without one, seccomp kills `setsid`.
        program: "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
                  time.sleep(3)\n        open('{outside}/daemon.txt', 'w').write('alive')\n    os._exit(0)\n\
                  time.sleep(0.3)\nos._exit(0)\n",
        test: "pass",
        expect: &[Status::ExitedEarly],
    },
    Attack {
        name: "output flood",
        program: "while True:\n    print('x' * 10000)\n",
        test: "pass",
        expect: &[Status::ResourceLimit],
    },
    Attack {
        name: "disk flood, one file",
        program: "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n",
        test: "pass",
        expect: &[Status::ResourceLimit],
    },
    Attack {
        name: "disk flood, many files",
        program: "i = 0\nwhile True:\n    with open(f'f{i}', 'wb') as f:\n        f.write(b'x' * (8 << 20))\n    i += 1\n",
        test: "pass",
        // With a tmpfs the flood fills it; without one only the wall time stops it.
        expect: &[Status::ResourceLimit, Status::Timeout],
    },
    Attack {
        name: "network connection to a loopback listener",
        program: "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\ns.sendall(b'hi')\n",
        test: "pass",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "read a file outside",
        program: "secret = open('{outside}/secret.txt').read()\n",
        test: "assert secret == 'the secret'",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "write a file outside",
        program: "open('{outside}/pwned.txt', 'w').write('pwned')\n",
        test: "pass",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "write into /tmp",
        program: "open('/tmp/r1-sandbox-pwned-{port}.txt', 'w').write('pwned')\n",
        test: "pass",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "read the scorer's environment through /proc",
        program: "import os\nenv = open('/proc/%d/environ' % os.getppid() if os.getppid() > 1 else '/proc/1/environ', 'rb').read()\n",
        test: "assert env",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "ptrace another process",
        program: "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nrc = libc.ptrace(16, os.getppid() or 1, 0, 0)\n",
        test: "assert rc == 0",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "read a secret from the environment",
        program: "import os\nfound = [k for k, v in os.environ.items() if v == '{secret}']\n",
        test: "assert found, sorted(os.environ)",
        expect: &[Status::Failed],
    },
    Attack {
        name: "sys.exit(0) before the tests",
        program: "import sys\nsys.exit(0)\n",
        test: "assert False",
        expect: &[Status::ExitedEarly],
    },
    Attack {
        name: "os._exit(0) before the tests",
        program: "import os\nos._exit(0)\n",
        test: "assert False",
        expect: &[Status::ExitedEarly],
    },
    Attack {
        name: "kill its parent",
        program: "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        test: "pass",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "kill the sandbox's supervisor",
        // The code verifier's harness is the program's parent; its parent is the sandbox's.
        program: "import os, signal\nppid = os.getppid()\nstat = open(f'/proc/{ppid}/stat').read()\n\
                  os.kill(int(stat.rsplit(')', 1)[1].split()[1]), signal.SIGKILL)\n",
        test: "pass",
        expect: &[Status::SandboxViolation],
    },
    Attack {
        name: "kill every process it can",
        program: "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
        test: "pass",
        expect: &[Status::SandboxViolation],
    },
];

/// Processes whose cwd lies under `root` (what a sample leaves behind).
fn leftovers(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(root)
        {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!("{pid}: {}", String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

#[test]
fn every_attack_scores_zero_with_all_layers_the_host_allows() {
    check_attacks(true);
}

#[test]
fn every_attack_scores_zero_with_the_unprivileged_layers_only() {
    check_attacks(false);
}

fn check_attacks(namespaces: bool) {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "the secret").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let secret = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let sandbox = Sandbox::new(SandboxConfig { tmp_root: root.path().to_path_buf(), namespaces }).unwrap();
    eprintln!("sandbox layers: {}", sandbox.layers());
    report_missing_layers(sandbox.layers(), namespaces);

    // Room for two interpreters per sample (the code verifier's harness and the program's
    // process) while the other suites of this binary run at the same time: at 2 s a memory
    // bomb on a loaded 2-core CI machine was cut by the wall time before it hit its limit.
    let timeout_s = 4.0;
    let mut failures = Vec::new();
    for attack in ATTACKS {
        let program = attack
            .program
            .replace("{outside}", &outside.path().display().to_string())
            .replace("{port}", &port)
            .replace("{secret}", &secret);
        let job = ScoreJob {
            id: attack.name.into(),
            verifier: "code".into(),
            completion: program,
            ground_truth: None,
            language: None,
            test: Some(attack.test.into()),
            tests: None,
            timeout_s: Some(timeout_s),
            memory_mb: Some(512),
        };
        let start = Instant::now();
        let result = score_with(&sandbox, &job);
        let took = start.elapsed();
        eprintln!("{:45} {:?} in {:.2?}: {}", attack.name, result.status, took, result.detail);
        if result.reward != 0.0 || !attack.expect.contains(&result.status) {
            failures.push(format!(
                "{}: expected {:?}, got {:?} ({})",
                attack.name, attack.expect, result.status, result.detail
            ));
        }
        if took > Duration::from_secs_f64(timeout_s + 3.0) {
            failures.push(format!("{}: took {took:?}, over its bound", attack.name));
        }
        let left = leftovers(root.path());
        if !left.is_empty() {
            failures.push(format!("{}: processes outlived the sample: {left:?}", attack.name));
        }
    }
    // A daemon that escaped would write this a few seconds after its sample ended.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(listing(outside.path()), ["secret.txt"], "something was written outside");
    let pwned = format!("/tmp/r1-sandbox-pwned-{port}.txt");
    assert!(!Path::new(&pwned).exists(), "something was written into /tmp");
    assert_eq!(listing(root.path()), Vec::<String>::new(), "per-run folders were left behind");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => failures.push(format!("the loopback listener saw a connection: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same suite from an unprivileged uid, as on a host (or pod) without root: no dedicated
/// uid, no namespaces, the process limit shared with the caller's uid. Runs this test binary
/// again as `nobody`.
#[test]
fn every_attack_scores_zero_when_the_scorer_is_not_root() {
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: the two tests above are this check.
        skipped("the root-to-nobody rerun", "this test runs unprivileged already; the two suites above are the check");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("attacks");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = || {
        std::process::Command::new(&exe)
            .args(["--exact", "every_attack_scores_zero_with_all_layers_the_host_allows", "--test-threads", "1"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TMPDIR", "/tmp")
            .env("CARGO_MANIFEST_DIR", std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .current_dir(dir.path())
            .uid(65534)
            .gid(65534)
            .output()
    };
    // The other tests in this binary spawn processes concurrently; a child forked while the
    // copy above still had its file open for writing holds that descriptor until it execs,
    // and exec of the copy fails with ETXTBSY until then. Retry for a while, as Go's
    // os/exec does.
    let mut attempt = 0;
    let out = loop {
        match run() {
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && attempt < 100 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => break other.unwrap(),
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Says loudly which layers this host lacks: the attacks still ran and scored 0, but without
/// those layers, so a green run here proves less than on a host that has them.
fn report_missing_layers(layers: &Layers, asked_namespaces: bool) {
    let root = unsafe { libc::geteuid() } == 0;
    let missing = [
        (
            asked_namespaces && !layers.namespaces,
            "namespaces(pid,net,mount,ipc,uts)",
            "the host refuses unshare (user namespaces off, or a container without CAP_SYS_ADMIN)",
        ),
        (asked_namespaces && !layers.tmpfs, "tmpfs", "no mount namespace to mount it in"),
        (root && !layers.dedicated_uid, "dedicated-uid", "the sandbox could not switch to its own uid"),
        (layers.landlock_abi == 0, "landlock", "the kernel has no Landlock (or it is disabled)"),
        (!layers.seccomp, "seccomp", "the kernel refused the seccomp filter"),
    ];
    for (absent, layer, why) in missing {
        if absent {
            skipped(layer, why);
        }
    }
}

/// Writes past the test harness's output capture, so the line shows in a passing run's log.
fn skipped(what: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED sandbox check: {what}: {why}");
}
