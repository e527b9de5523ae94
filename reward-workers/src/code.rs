//! The code verifier: runs a completion against tests inside the [`crate::sandbox`].
//!
//! **What code is run.** The last fenced block tagged with the language (```` ```python ````,
//! ```` ```py ````, ...) if there is one, else the last untagged fenced block, else the whole
//! completion as it is.
//!
//! **Tests.** A job carries assert-style tests (`test`), stdin/stdout cases (`tests`), or both;
//! reward is 1 only if all of them pass (stopping at the first failure), else 0:
//! - `test`: the test code must run to the end against the program. The program and the
//!   tests run in **separate processes**: a child interpreter runs the program (its stdin is
//!   `/dev/null`; stdout and stderr are the harness's, so the sandbox's output cap and error
//!   classification apply) and serves its top-level names; the trusted harness,
//!   the parent, runs the test code with those names as proxies. Only plain data crosses
//!   between them (numbers, strings, bytes, lists, tuples, dicts, sets; any other object stays
//!   in the child and is reached through a handle), so a value the program makes cannot fake
//!   an assertion (an object whose `__eq__` always says yes compares as a foreign handle).
//!   The pass signal is a fresh random sentinel that the harness reads from its stdin and
//!   prints only after the tests returned; it never reaches the child's memory, arguments,
//!   environment or files, and the harness is non-dumpable, so a program that exits early
//!   (`sys.exit(0)`, `os._exit(0)`) scores 0 with `exited_early` and one that looks for the
//!   sentinel (in its stack frames, environment, files or stdin) finds nothing to forge.
//!   The child puts itself in a Landlock domain of its own scoped against signals (Landlock
//!   ABI 6, Linux 6.12), so it cannot kill the harness either (killing it would only score 0).
//!   The harness stops waiting when the child exits, even if a daemon it forked holds the
//!   pipes open.
//!   Limits: tests see the program through copies, so a test that checks an argument the
//!   program mutated in place, or passes the program a callback, fails; tests that call the
//!   program's functions, classes and methods with plain data work.
//! - `tests`: each case runs the program with `stdin` and compares its stdout with `stdout`
//!   token by token, so whitespace and line breaks do not matter.
//!
//! **Fields.** For `code` jobs, `language` names the programming language (default
//! `python`), `timeout_s` bounds each program run in wall and CPU time (default 10, at most
//! 60) and `memory_mb` its address space (default 1024, 32 to 16384).
//!
//! Languages plug in through [`Runner`]; Python (`python3`) is the first.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::job::{ScoreJob, ScoreResult, Status};
use crate::sandbox::{self, Limits, RunSpec, Sandbox};

/// Default and largest wall time per run, in seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 10.0;
pub const MAX_TIMEOUT_S: f64 = 60.0;
/// Default, smallest and largest memory per run, in MiB.
pub const DEFAULT_MEMORY_MB: u64 = 1024;
pub const MEMORY_MB_RANGE: std::ops::RangeInclusive<u64> = 32..=16384;

/// How to run programs of one language.
pub trait Runner: Send + Sync {
    /// The language as jobs name it in `language`.
    fn name(&self) -> &'static str;
    /// Tags of fenced blocks that hold code in this language.
    fn fence_tags(&self) -> &'static [&'static str];
    /// A run of `test` against `code` that prints `sentinel` on a line of its own, as the
    /// last output, only after the tests returned; the program must not be able to reach the
    /// sentinel.
    fn assert_run(&self, code: &str, test: &str, sentinel: &str) -> RunSpec;
    /// A run of `code` as a program reading `stdin`.
    fn io_run(&self, code: &str, stdin: &str) -> RunSpec;
    /// The line of stderr that says why the program failed (default: the last non-empty one).
    fn error_line<'a>(&self, stderr: &'a str) -> &'a str {
        stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
    }
    /// What a non-zero exit means, judged from the program's stderr; `None` for a plain failure.
    fn classify(&self, stderr: &str) -> Option<Status>;
}

/// Python 3, run with `-I` (isolated: no user site, no `PYTHON*` variables) and `-B`.
pub struct Python {
    interpreter: PathBuf,
    read_paths: Vec<PathBuf>,
}

/// The message encoding shared by the harness and the program's process: plain data as
/// tagged JSON lists, anything else as a handle.
const PYTHON_WIRE: &str = r#"import json, os, sys


def enc(x, keep):
    """Plain data as JSON-ready tagged lists; anything else goes through `keep`."""
    t = type(x)
    if x is None:
        return ["N"]
    if t is bool:
        return ["B", x]
    if t is int:
        return ["i", str(x)]
    if t is float:
        return ["f", x.hex()]
    if t is complex:
        return ["c", x.real.hex(), x.imag.hex()]
    if t is str:
        return ["s", x]
    if t is bytes:
        return ["y", x.hex()]
    if t in (list, tuple, set, frozenset):
        return [{list: "l", tuple: "t", set: "S", frozenset: "z"}[t], [enc(v, keep) for v in x]]
    if t is dict:
        return ["d", [[enc(k, keep), enc(v, keep)] for k, v in x.items()]]
    return ["h", keep(x)]


def dec(m, handle):
    k = m[0]
    if k == "N":
        return None
    if k == "B":
        return bool(m[1])
    if k == "i":
        return int(m[1])
    if k == "f":
        return float.fromhex(m[1])
    if k == "c":
        return complex(float.fromhex(m[1]), float.fromhex(m[2]))
    if k == "s":
        return str(m[1])
    if k == "y":
        return bytes.fromhex(m[1])
    if k in ("l", "t", "S", "z"):
        return {"l": list, "t": tuple, "S": set, "z": frozenset}[k](dec(v, handle) for v in m[1])
    if k == "d":
        return {dec(a, handle): dec(b, handle) for a, b in m[1]}
    if k == "h":
        return handle(int(m[1]))
    raise ValueError(f"bad message tag {k!r}")


def channel(rfd, wfd, alive=None):
    """Length-prefixed JSON messages over two pipes. With `alive`, a read gives up (returns
    None) as soon as `alive()` is false, even while a descendant still holds the pipe open."""
    r = os.fdopen(rfd, "rb", buffering=0)
    w = os.fdopen(wfd, "wb", buffering=0)

    def take(n):
        if alive is not None:
            import select
            while not select.select([r], [], [], 0.05)[0]:
                if not alive():
                    return b""
        return r.read(n)

    def read():
        body = b""
        head = b""
        while len(head) < 4:
            part = take(4 - len(head))
            if not part:
                return None
            head += part
        n = int.from_bytes(head, "big")
        while len(body) < n:
            part = take(n - len(body))
            if not part:
                return None
            body += part
        return json.loads(body.decode())

    def send(msg):
        data = json.dumps(msg).encode()
        w.write(len(data).to_bytes(4, "big") + data)

    return read, send
"#;

/// The trusted parent: holds the sentinel, runs the tests (see the module doc).
const PYTHON_HARNESS: &str = r#"import builtins, importlib, subprocess


def _r1_main():
    # The pass signal is read from stdin and kept in this process only. The program under
    # test runs in a child process that never sees it (its stdin is /dev/null, nothing is
    # shared), and this process is made non-dumpable so that its memory stays closed to the
    # child even where /proc is visible. Only plain data crosses between the tests here and
    # the program there, so a value that "equals everything" cannot pass an assertion.
    sentinel = sys.stdin.readline().strip()
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except Exception:
        pass
    runner, solution, tests = sys.argv[1:4]
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    # The child shares stdout and stderr with the harness, so the sandbox's output cap and
    # the error classification see what the program writes.
    child = subprocess.Popen(
        [sys.executable, "-I", "-B", "-X", "utf8", runner, solution, str(req_r), str(resp_w)],
        stdin=subprocess.DEVNULL, pass_fds=(req_r, resp_w),
    )
    os.close(req_r)
    os.close(resp_w)
    # A daemon the program leaves behind may hold the pipe open: the child's own exit ends
    # the wait.
    read, send = channel(resp_r, req_w, alive=lambda: child.poll() is None)

    def handle_of(x):
        if type(x) is Remote:
            return object.__getattribute__(x, "_h")
        raise TypeError(f"cannot pass a {type(x).__name__} to the program under test; pass plain data")

    class Remote:
        """An object living in the program's process."""
        __slots__ = ("_h",)

        def __init__(self, h):
            object.__setattr__(self, "_h", h)

        def __call__(self, *args, **kwargs):
            return ask(["call", self._h, enc(list(args), handle_of), enc(kwargs, handle_of)])

        def __getattr__(self, name):
            return ask(["attr", self._h, name])

        def __getitem__(self, key):
            return ask(["item", self._h, enc(key, handle_of)])

        def __len__(self):
            return ask(["len", self._h])

        def __iter__(self):
            return iter(ask(["list", self._h]))

        def __repr__(self):
            return ask(["repr", self._h])

    def ask(msg):
        try:
            send(msg)
            reply = read()
        except OSError:
            reply = None
        if reply is None:
            raise RuntimeError("the program under test exited during the tests")
        if reply[0] == "x":
            kind = getattr(builtins, reply[1], None)
            if isinstance(kind, type) and issubclass(kind, Exception):
                raise kind(reply[2])
            raise RuntimeError(f"{reply[1]}: {reply[2]}")
        return dec(reply[1], Remote)

    names = read()
    if names is None:
        # The program ended before the tests could run: end the way it did.
        code = child.wait()
        sys.stderr.flush()
        if code < 0:
            os.kill(os.getpid(), -code)
        os._exit(code)
    scope = {"__name__": "__main__", "__builtins__": builtins}
    for name, value in names[1].items():
        if value[0] == "m":
            # Tests may use modules the program imported (`math.isclose`). Only installed
            # modules: `-I` keeps the script's folder (the program's files) off `sys.path`.
            try:
                scope[name] = importlib.import_module(value[1])
            except Exception:
                pass
            continue
        scope[name] = dec(value, Remote)
    with open(tests, encoding="utf-8") as f:
        source = f.read()
    exec(compile(source, "tests.py", "exec"), scope)
    try:
        send(["bye"])
    except OSError:
        pass
    child.wait()
    sys.stdout.flush()
    os.write(1, ("\n" + sentinel + "\n").encode())


_r1_main()
"#;

/// The child: runs the program and answers the harness's calls on its objects.
const PYTHON_RUNNER: &str = r#"def _r1_scope():
    # A Landlock domain of the program's own, scoped so that it cannot signal processes
    # outside it (the harness) nor reach their abstract unix sockets (Landlock ABI 6, Linux
    # 6.12). Where the kernel lacks it the program could kill the harness, which then never
    # prints the pass signal: the sample still scores 0.
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        create, restrict = 444, 446  # the same numbers on every architecture
        abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        if abi < 6:
            return
        attr = (ctypes.c_uint64 * 3)(0, 0, 3)  # fs, net, scoped = abstract unix | signal
        fd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(24), ctypes.c_uint32(0))
        if fd < 0:
            return
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        libc.syscall(restrict, ctypes.c_int(fd), ctypes.c_uint32(0))
        os.close(fd)
    except Exception:
        pass


def _r1_child():
    _r1_scope()
    solution, rfd, wfd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    read, send = channel(rfd, wfd)
    table = []

    def keep(x):
        table.append(x)
        return len(table) - 1

    with open(solution, encoding="utf-8") as f:
        source = f.read()
    sys.argv = [solution]
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(source, "solution.py", "exec"), scope)
    names = {}
    for name, value in list(scope.items()):
        if name.startswith("__"):
            continue
        if type(value) is type(sys):
            # A module the program imported: the harness imports its own copy by name.
            names[name] = ["m", value.__name__]
            continue
        try:
            names[name] = enc(value, keep)
        except Exception:
            continue
    send(["names", names])
    while True:
        msg = read()
        if msg is None or msg[0] == "bye":
            return
        try:
            kind, obj = msg[0], table[msg[1]]
            if kind == "call":
                value = obj(*dec(msg[2], table.__getitem__), **dec(msg[3], table.__getitem__))
            elif kind == "attr":
                value = getattr(obj, msg[2])
            elif kind == "item":
                value = obj[dec(msg[2], table.__getitem__)]
            elif kind == "len":
                value = len(obj)
            elif kind == "list":
                value = list(obj)
            else:
                value = repr(obj)
            reply = ["ok", enc(value, keep)]
        except BaseException as e:
            try:
                text = str(e)[:2000]
            except BaseException:
                text = "(an exception whose message cannot be shown)"
            reply = ["x", type(e).__name__, text]
        send(reply)


_r1_child()
"#;

impl Python {
    /// Finds an interpreter: `$R1_PYTHON`, then `/usr/bin/python3`, `/usr/local/bin/python3`,
    /// then `python3` on `PATH`. A system interpreter comes first because the sandboxed uid
    /// cannot enter private trees such as `/root`.
    pub fn detect() -> Result<Self, String> {
        let mut candidates: Vec<PathBuf> = std::env::var_os("R1_PYTHON").map(PathBuf::from).into_iter().collect();
        candidates.extend(["/usr/bin/python3", "/usr/local/bin/python3"].map(PathBuf::from));
        candidates.push(PathBuf::from("python3"));
        let query = "import sys; print(sys.executable); print(sys.base_prefix); print(sys.prefix)";
        for candidate in candidates {
            let Ok(out) = Command::new(&candidate).args(["-I", "-c", query]).output() else { continue };
            if !out.status.success() {
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            let [exe, base, prefix] = lines[..] else { continue };
            let interpreter = std::fs::canonicalize(exe).unwrap_or_else(|_| PathBuf::from(exe));
            let read_paths = vec![interpreter.clone(), PathBuf::from(base), PathBuf::from(prefix)];
            return Ok(Self { interpreter, read_paths });
        }
        Err("no python3 interpreter found; install python3 or set R1_PYTHON to one".into())
    }

    fn spec(&self, files: Vec<(String, Vec<u8>)>, args: &[&str], env: Vec<(String, String)>) -> RunSpec {
        let mut argv: Vec<String> = ["-I", "-B", "-X", "utf8"].map(String::from).to_vec();
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut env_all = vec![
            ("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("HOME".to_string(), ".".to_string()),
            ("TMPDIR".to_string(), ".".to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ];
        env_all.extend(env);
        RunSpec {
            program: self.interpreter.clone(),
            args: argv,
            env: env_all,
            files,
            read_paths: self.read_paths.clone(),
            ..RunSpec::default()
        }
    }
}

impl Runner for Python {
    fn name(&self) -> &'static str {
        "python"
    }

    fn fence_tags(&self) -> &'static [&'static str] {
        &["python", "python3", "py"]
    }

    fn assert_run(&self, code: &str, test: &str, sentinel: &str) -> RunSpec {
        let files = vec![
            ("harness.py".to_string(), format!("{PYTHON_WIRE}\n{PYTHON_HARNESS}").into_bytes()),
            ("runner.py".to_string(), format!("{PYTHON_WIRE}\n{PYTHON_RUNNER}").into_bytes()),
            ("solution.py".to_string(), code.as_bytes().to_vec()),
            ("tests.py".to_string(), test.as_bytes().to_vec()),
        ];
        let args = ["../prog/harness.py", "../prog/runner.py", "../prog/solution.py", "../prog/tests.py"];
        RunSpec { stdin: format!("{sentinel}\n").into_bytes(), ..self.spec(files, &args, vec![]) }
    }

    fn io_run(&self, code: &str, stdin: &str) -> RunSpec {
        let files = vec![("solution.py".to_string(), code.as_bytes().to_vec())];
        RunSpec { stdin: stdin.as_bytes().to_vec(), ..self.spec(files, &["../prog/solution.py"], vec![]) }
    }

    /// The last exception line (`NameError: ...`): with several processes writing at once
    /// (a fork bomb), it need not be the last line.
    fn error_line<'a>(&self, stderr: &'a str) -> &'a str {
        let is_exception = |line: &&str| {
            let name = line.split(':').next().unwrap_or("");
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && ["Error", "Exception", "Exit", "Interrupt"].iter().any(|end| name.ends_with(end))
        };
        stderr.lines().rev().find(is_exception).unwrap_or_else(|| stderr.lines().last().unwrap_or(""))
    }

    fn classify(&self, stderr: &str) -> Option<Status> {
        let last = self.error_line(stderr);
        let has = |needles: &[&str]| needles.iter().any(|n| last.contains(n));
        if has(&["MemoryError"]) {
            Some(Status::MemoryLimit)
        } else if has(&["PermissionError", "[Errno 1] ", "[Errno 13] ", "[Errno 101] ", "[Errno 97] "]) {
            Some(Status::SandboxViolation)
        } else if has(&["[Errno 11] ", "[Errno 24] ", "[Errno 27] ", "[Errno 28] ", "[Errno 122] "]) {
            Some(Status::ResourceLimit)
        } else {
            None
        }
    }
}

/// The runner for a language name, or `None` if no runner handles it.
pub fn runner(language: &str) -> Option<Result<&'static dyn Runner, &'static str>> {
    static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();
    match language {
        "python" | "python3" | "py" => Some(match PYTHON.get_or_init(Python::detect) {
            Ok(p) => Ok(p as &dyn Runner),
            Err(e) => Err(e.as_str()),
        }),
        _ => None,
    }
}

/// Scores a `code` job with the shared sandbox.
pub fn score(job: &ScoreJob) -> ScoreResult {
    match sandbox::shared() {
        Ok(sandbox) => score_with(sandbox, job),
        Err(e) => ScoreResult::new(&job.id, 0.0, Status::InternalError, format!("sandbox unavailable: {e}")),
    }
}

/// Scores a `code` job with the given sandbox.
pub fn score_with(sandbox: &Sandbox, job: &ScoreJob) -> ScoreResult {
    let (reward, status, detail) = match judge(sandbox, job) {
        Ok(detail) => (1.0, Status::Ok, detail),
        Err((status, detail)) => (0.0, status, detail),
    };
    let mut result = ScoreResult::new(&job.id, reward, status, detail);
    result.components.insert("code".into(), reward);
    result
}

type Verdict = Result<String, (Status, String)>;

fn judge(sandbox: &Sandbox, job: &ScoreJob) -> Verdict {
    let invalid = |msg: String| (Status::InvalidInput, msg);
    let language = job.language.as_deref().unwrap_or("python");
    let runner = match runner(language) {
        None => return Err(invalid(format!("unknown code language `{language}`; use python"))),
        Some(Err(e)) => return Err((Status::InternalError, e.to_string())),
        Some(Ok(r)) => r,
    };
    let limits = limits(job).map_err(invalid)?;
    let cases = job.tests.as_deref().unwrap_or_default();
    if job.test.is_none() && cases.is_empty() {
        return Err(invalid("a code job needs `test` (assert-style test code) or `tests` (stdin/stdout cases)".into()));
    }
    let code = extract_code(&job.completion, runner.fence_tags());
    let run = |mut spec: RunSpec| {
        spec.limits = limits.clone();
        sandbox.run(&spec).map_err(|e| (Status::InternalError, e.to_string()))
    };
    let mut passed = Vec::new();
    if let Some(test) = &job.test {
        let sentinel = nonce();
        let out = run(runner.assert_run(code, test, &sentinel))?;
        check_exit(runner, &out)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.ends_with(&format!("\n{sentinel}\n")) {
            return Err((Status::ExitedEarly, "the program exited 0 before its tests finished".into()));
        }
        passed.push("assert tests passed".to_string());
    }
    for (i, case) in cases.iter().enumerate() {
        let out = run(runner.io_run(code, &case.stdin))?;
        check_exit(runner, &out).map_err(|(s, d)| (s, format!("case {}: {d}", i + 1)))?;
        let got = String::from_utf8_lossy(&out.stdout);
        if !got.split_whitespace().eq(case.stdout.split_whitespace()) {
            return Err((
                Status::Failed,
                format!("case {} of {}: expected {:?}, got {:?}", i + 1, cases.len(), clip(&case.stdout), clip(&got)),
            ));
        }
    }
    if !cases.is_empty() {
        passed.push(format!("{} of {} stdin/stdout cases passed", cases.len(), cases.len()));
    }
    Ok(passed.join("; "))
}

/// Turns a run's end into an error unless the program exited 0 on its own.
fn check_exit(runner: &dyn Runner, out: &sandbox::Outcome) -> Result<(), (Status, String)> {
    if let Some(forced) = out.forced_verdict() {
        return Err(forced);
    }
    match out.code {
        Some(0) => Ok(()),
        code => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = runner.error_line(&stderr);
            let status = runner.classify(&stderr).unwrap_or(Status::Failed);
            Err((status, format!("exited with status {}: {}", code.unwrap_or(-1), clip(last))))
        }
    }
}

fn limits(job: &ScoreJob) -> Result<Limits, String> {
    let timeout = job.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
    if !(timeout > 0.0 && timeout <= MAX_TIMEOUT_S) {
        return Err(format!("timeout_s is {timeout}; use a value in (0, {MAX_TIMEOUT_S}]"));
    }
    let memory = job.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if !MEMORY_MB_RANGE.contains(&memory) {
        return Err(format!(
            "memory_mb is {memory}; use a value in [{}, {}]",
            MEMORY_MB_RANGE.start(),
            MEMORY_MB_RANGE.end()
        ));
    }
    let wall = Duration::from_secs_f64(timeout);
    Ok(Limits { wall, cpu: wall, memory_bytes: memory << 20, ..Limits::default() })
}

/// The code to run: see the module doc.
pub fn extract_code<'a>(completion: &'a str, tags: &[&str]) -> &'a str {
    let mut tagged = None;
    let mut untagged = None;
    let mut rest = completion;
    let mut offset = 0;
    while let Some(open) = rest.find("```") {
        let after = open + 3;
        let Some(eol) = rest[after..].find('\n') else { break };
        let tag = rest[after..after + eol].trim().to_ascii_lowercase();
        let body_start = after + eol + 1;
        let Some(close) = rest[body_start..].find("```") else { break };
        let body = &completion[offset + body_start..offset + body_start + close];
        if tags.contains(&tag.as_str()) {
            tagged = Some(body);
        } else if tag.is_empty() {
            untagged = Some(body);
        }
        let consumed = body_start + close + 3;
        offset += consumed;
        rest = &rest[consumed..];
    }
    tagged.or(untagged).unwrap_or(completion)
}

fn clip(s: &str) -> String {
    const MAX: usize = 300;
    let s = s.trim();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// 128 random bits as hex, from the kernel.
fn nonce() -> String {
    let mut buf = [0u8; 16];
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, 16, "getrandom failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
