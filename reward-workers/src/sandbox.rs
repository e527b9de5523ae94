//! The code sandbox: runs one untrusted program under every isolation layer the host allows,
//! and kills everything it started when the run ends.
//!
//! # Layers
//! Always (no privileges needed, so they also work in an unprivileged Kubernetes pod):
//! - **rlimits**: CPU time, address space, open files, file size, processes, no core dumps.
//! - **Landlock** (when the kernel has it): read and execute only beneath the interpreter's
//!   tree, the system library folders and the run's own `prog/` folder; full access only
//!   beneath the run's `work/` folder (its cwd, `HOME` and `TMPDIR`); no TCP bind/connect
//!   (ABI ≥ 4); no signals to processes outside the sandbox and no abstract unix sockets
//!   (ABI ≥ 6).
//! - **seccomp**: the process is killed (`SIGSYS`, reported as a sandbox violation) if it
//!   opens a socket other than `AF_UNIX`, traces or reads another process (`ptrace`,
//!   `process_vm_*`), makes namespaces (`unshare`, `setns`, `clone` with namespace flags),
//!   mounts, loads BPF or kernel modules, uses io_uring or keyrings, or signals a whole
//!   process group (`kill` with pid ≤ 0). `clone3` answers `ENOSYS` so libc falls back to
//!   `clone`, whose flags the filter can read.
//! - **a session of its own**, killed with `SIGKILL` when the run ends or overruns;
//!   wall time is enforced by the parent, output is capped by the parent's pipe readers.
//! - **a scrubbed environment**: only what the caller passes.
//!
//! Where the host allows them (running as root here):
//! - **namespaces**: new PID, network, mount, IPC and UTS namespaces. The namespace's init
//!   is a small reaper (root, outside the program's Landlock domain, so the program cannot
//!   signal it) that exits when the program does, and the kernel then kills every process
//!   the program started, `setsid` daemons included. The network namespace has no
//!   interfaces up.
//! - **a tmpfs** of bounded size mounted on `work/`, so a disk flood fills RAM-backed
//!   scratch space of a fixed size and never the host disk.
//! - **a dedicated uid** per run (no supplementary groups): file permissions apply, the
//!   process limit counts only this run's processes, and other processes cannot be signalled.
//!   Without a PID namespace, every process of that uid is killed when the run ends, and
//!   seccomp also forbids `setsid`/`setpgid` so the session kill reaches everything.
//!
//! [`Sandbox::layers`] reports which layers are active; the `r1ctl reward` commands log them.
//!
//! # What it does not cover
//! - Kernel bugs: every layer here is enforced by the kernel the host runs.
//! - Side channels and CPU contention between concurrent runs (no CPU or memory-bandwidth
//!   isolation beyond the rlimits; cgroups are not used).
//! - Reading world-readable files beneath the allowed read-only trees (e.g. `/usr`).
//! - Connecting to a pathname unix socket reachable beneath the allowed trees.
//! - Without namespaces (an unprivileged host): no PID namespace (cleanup relies on the
//!   session kill), no tmpfs (disk writes are bounded per file by `RLIMIT_FSIZE` and in
//!   total only by the wall time), and the process limit is the calling user's current
//!   count plus the run's allowance, so concurrent runs share it.
//! - Without root and without Landlock ABI 6 (Linux 6.12), the program runs as the scorer's
//!   uid and could signal the scorer.
//! - 32-bit or x32 syscall entry points are not filtered separately by seccomp.
//!
//! The child-side setup runs between `fork` and `exec` and uses only async-signal-safe
//! calls on data prepared before the fork (no allocation, no locks).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use crate::job::Status;

/// Resource bounds for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock time, enforced by the parent with `SIGKILL`.
    pub wall: Duration,
    /// CPU time (`RLIMIT_CPU`, whole seconds, rounded up).
    pub cpu: Duration,
    /// Address space (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes and threads (`RLIMIT_NPROC`, under the run's dedicated uid).
    pub processes: u64,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file the program may write (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Size of the scratch tmpfs (when a mount namespace is available).
    pub disk_bytes: u64,
    /// Bytes of stdout and of stderr each; the run is killed past it.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(10),
            cpu: Duration::from_secs(10),
            memory_bytes: 1 << 30,
            processes: 16,
            open_files: 64,
            file_size_bytes: 16 << 20,
            disk_bytes: 64 << 20,
            output_bytes: 1 << 20,
        }
    }
}

/// What to run. Files are written read-only into the run's `prog/` folder; the program
/// starts in `work/`, so its arguments name them as `../prog/NAME`.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Absolute path of the executable (e.g. the interpreter).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment of the program (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub files: Vec<(String, Vec<u8>)>,
    pub stdin: Vec<u8>,
    /// Extra trees the program may read and execute (the interpreter's).
    pub read_paths: Vec<PathBuf>,
    pub limits: Limits,
}

/// Why the parent killed a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    WallTime,
    Output,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit code, when the program exited.
    pub code: Option<i32>,
    /// Terminating signal, when a signal ended it.
    pub signal: Option<i32>,
    pub killed: Option<Kill>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub wall: Duration,
}

impl Outcome {
    /// The verdict the run forces regardless of what the program printed: a limit it hit or
    /// a rule it broke. `None` when the program ended on its own terms (any exit code).
    pub fn forced_verdict(&self) -> Option<(Status, String)> {
        let verdict = match (self.killed, self.signal) {
            (Some(Kill::WallTime), _) => (Status::Timeout, "wall time limit exceeded".to_string()),
            (Some(Kill::Output), _) => (Status::ResourceLimit, "output limit exceeded".to_string()),
            (None, Some(libc::SIGXCPU)) => (Status::Timeout, "CPU time limit exceeded".to_string()),
            (None, Some(libc::SIGSYS)) => (
                Status::SandboxViolation,
                "killed by seccomp: forbidden system call (network, ptrace, namespaces, ...)".to_string(),
            ),
            (None, Some(libc::SIGXFSZ)) => (Status::ResourceLimit, "file size limit exceeded".to_string()),
            (None, Some(libc::SIGKILL)) => (
                Status::ResourceLimit,
                "killed by SIGKILL: the CPU hard limit or the kernel's out-of-memory killer".to_string(),
            ),
            (None, Some(sig)) => (Status::Failed, format!("killed by signal {sig}")),
            (None, None) => return None,
        };
        Some(verdict)
    }
}

/// Which isolation layers are active on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// PID, network, mount, IPC and UTS namespaces.
    pub namespaces: bool,
    /// A size-bounded tmpfs on the scratch folder.
    pub tmpfs: bool,
    /// A dedicated uid per run (needs root).
    pub dedicated_uid: bool,
    /// The kernel's Landlock ABI version; 0 when Landlock is unavailable.
    pub landlock_abi: i32,
    pub seccomp: bool,
}

impl std::fmt::Display for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut on = vec!["rlimits", "session-kill", "scrubbed-env"];
        let landlock = format!("landlock-v{}", self.landlock_abi);
        for (active, name) in [
            (self.namespaces, "namespaces(pid,net,mount,ipc,uts)"),
            (self.tmpfs, "tmpfs"),
            (self.dedicated_uid, "dedicated-uid"),
            (self.landlock_abi > 0, landlock.as_str()),
            (self.seccomp, "seccomp"),
        ] {
            if active {
                on.push(name);
            }
        }
        f.write_str(&on.join(" "))
    }
}

/// Errors of the sandbox itself (never the program's fault).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot prepare the sandbox folder under {path}: {source}; check that it exists and is writable")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(#[from] seccompiler::BackendError),
    #[error("cannot compile the seccomp filter: {0}")]
    SeccompCompile(#[from] seccompiler::Error),
    #[error("cannot build the Landlock ruleset for {path}: {message}")]
    Landlock { path: PathBuf, message: String },
    #[error("cannot start {program}: {source}; check that the interpreter exists")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("cannot wait for the sandboxed program: {0}")]
    Wait(std::io::Error),
    #[error("a process of the sample kept its output open after the run was killed; report this sandbox bug")]
    Escaped,
}

/// Where the sandbox puts its per-run folders, and which optional layers it may use.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Parent of the per-run folders.
    pub tmp_root: PathBuf,
    /// Use namespaces and the tmpfs when the host allows them (off: the unprivileged layers
    /// only, as on a host without them).
    pub namespaces: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self { tmp_root: std::env::temp_dir(), namespaces: true }
    }
}

/// Runs programs under the layers probed at construction.
pub struct Sandbox {
    config: SandboxConfig,
    layers: Layers,
    /// Two filters: one killing on forbidden calls, one answering `clone3` with `ENOSYS`.
    seccomp: Arc<[BpfProgram; 2]>,
}

/// Namespaces the sandbox asks for.
const NS_FLAGS: libc::c_int =
    libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

/// Read-only trees every program needs (those that exist are used).
const SYSTEM_READ: &[&str] =
    &["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/zero", "/dev/urandom"];

/// A sandbox with the default configuration, probed once per process.
pub fn shared() -> Result<&'static Sandbox, &'static str> {
    static SHARED: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    match SHARED.get_or_init(|| Sandbox::new(SandboxConfig::default()).map_err(|e| e.to_string())) {
        Ok(s) => Ok(s),
        Err(e) => Err(e.as_str()),
    }
}

impl Sandbox {
    /// Probes the host and prepares the filters.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let root = unsafe { libc::geteuid() } == 0;
        let (namespaces, tmpfs) = if config.namespaces { probe_namespaces(&config.tmp_root) } else { (false, false) };
        let layers = Layers { namespaces, tmpfs, dedicated_uid: root, landlock_abi: landlock_abi(), seccomp: true };
        let seccomp = Arc::new(seccomp_filters(!namespaces)?);
        tracing::debug!(%layers, "sandbox ready");
        Ok(Self { config, layers, seccomp })
    }

    pub fn layers(&self) -> &Layers {
        &self.layers
    }

    /// Runs one program to completion or until a limit ends it. Every process it started is
    /// dead when this returns.
    pub fn run(&self, spec: &RunSpec) -> Result<Outcome, SandboxError> {
        let dir = RunDir::create(&self.config.tmp_root, spec)?;
        let uid = self.layers.dedicated_uid.then(next_uid);
        if let (Some(uid), false) = (uid, self.layers.tmpfs) {
            chown(&dir.work, Some(uid), Some(uid)).map_err(|e| dir.err(e))?;
        }
        let landlock = self.landlock_ruleset(&dir, spec)?;
        let plan = ChildPlan {
            namespaces: self.layers.namespaces,
            tmpfs: self.layers.tmpfs.then(|| {
                let opts = format!(
                    "size={},nr_inodes=4096,mode=0700,uid={u},gid={u}",
                    spec.limits.disk_bytes,
                    u = uid.unwrap_or(0)
                );
                CString::new(opts).expect("no NUL in tmpfs options")
            }),
            work: cstring(&dir.work),
            uid,
            parent: std::process::id() as libc::pid_t,
            rlimits: rlimits(&spec.limits, uid.is_some()),
            landlock: landlock.as_ref().map(|fd| fd.as_raw_fd()),
            seccomp: self.seccomp.clone(),
        };
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&dir.work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `child_setup` only makes async-signal-safe calls on data owned by `plan`.
        unsafe { cmd.pre_exec(move || child_setup(&plan)) };
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn { program: spec.program.clone(), source })?;
        drop(landlock);
        let pgid = child.id() as libc::pid_t;

        let overflow = Arc::new(AtomicBool::new(false));
        let stdout = read_capped(child.stdout.take().expect("piped"), spec.limits.output_bytes, &overflow);
        let stderr = read_capped(child.stderr.take().expect("piped"), spec.limits.output_bytes, &overflow);
        if let Some(mut stdin) = child.stdin.take() {
            let data = spec.stdin.clone();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }

        let deadline = start + spec.limits.wall;
        let mut killed = None;
        let mut nap = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = child.try_wait().map_err(SandboxError::Wait)? {
                break status;
            }
            if overflow.load(Ordering::Relaxed) {
                killed = Some(Kill::Output);
            } else if Instant::now() >= deadline {
                killed = Some(Kill::WallTime);
            }
            if killed.is_some() {
                kill_group(pgid);
                let _ = child.kill();
                break child.wait().map_err(SandboxError::Wait)?;
            }
            std::thread::sleep(nap.min(deadline.saturating_duration_since(Instant::now())));
            nap = (nap * 2).min(Duration::from_millis(10));
        };
        let wall = start.elapsed();
        kill_group(pgid);
        if let (Some(uid), false) = (uid, self.layers.namespaces) {
            kill_uid(uid);
        }
        let grace = Duration::from_secs(2);
        let stdout = stdout.recv_timeout(grace).map_err(|_| SandboxError::Escaped)?;
        let stderr = stderr.recv_timeout(grace).map_err(|_| SandboxError::Escaped)?;
        // Output past the cap is only a limit hit if the program was still running.
        if killed.is_none() && overflow.load(Ordering::Relaxed) {
            killed = Some(Kill::Output);
        }
        Ok(Outcome { code: status.code(), signal: status.signal(), killed, stdout, stderr, wall })
    }

    /// Landlock rules for one run; `None` when the kernel has no Landlock.
    fn landlock_ruleset(&self, dir: &RunDir, spec: &RunSpec) -> Result<Option<OwnedFd>, SandboxError> {
        if self.layers.landlock_abi <= 0 {
            return Ok(None);
        }
        let abi = ABI::V6;
        let fail = |path: &Path, e: &dyn std::fmt::Display| SandboxError::Landlock {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| r.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp))
            .and_then(|r| r.scope(Scope::AbstractUnixSocket | Scope::Signal))
            .and_then(|r| r.create())
            .map_err(|e| fail(&dir.root, &e))?;
        let read_dir = AccessFs::from_read(abi);
        let read_file = AccessFs::ReadFile | AccessFs::Execute;
        let system = SYSTEM_READ.iter().map(PathBuf::from);
        for path in system.chain(spec.read_paths.iter().cloned()).chain([dir.prog.clone()]) {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let mut access = if meta.is_dir() { read_dir } else { read_file };
            if path == Path::new("/dev/null") {
                access |= AccessFs::WriteFile;
            }
            let fd = PathFd::new(&path).map_err(|e| fail(&path, &e))?;
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(|e| fail(&path, &e))?;
        }
        // A rule on `work/` itself would name the folder under the tmpfs, not the tmpfs: with a
        // tmpfs the rule goes one level up, and `prog/` stays read-only by its mode and owner.
        let writable = if self.layers.tmpfs { &dir.root } else { &dir.work };
        let fd = PathFd::new(writable).map_err(|e| fail(writable, &e))?;
        ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::from_all(abi))).map_err(|e| fail(writable, &e))?;
        Ok(ruleset.into())
    }
}

/// The per-run folder: `prog/` (read-only files) and `work/` (scratch, cwd). Removed on drop.
struct RunDir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    prog: PathBuf,
    work: PathBuf,
}

impl RunDir {
    fn create(tmp_root: &Path, spec: &RunSpec) -> Result<Self, SandboxError> {
        let err = |source| SandboxError::Folder { path: tmp_root.to_path_buf(), source };
        let tmp = tempfile::Builder::new().prefix("r1-sbx-").tempdir_in(tmp_root).map_err(err)?;
        let root = tmp.path().to_path_buf();
        let (prog, work) = (root.join("prog"), root.join("work"));
        let setup = || -> std::io::Result<()> {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
            std::fs::create_dir(&prog)?;
            std::fs::create_dir(&work)?;
            std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700))?;
            for (name, data) in &spec.files {
                let path = prog.join(name);
                std::fs::write(&path, data)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))?;
            }
            std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o555))
        };
        setup().map_err(err)?;
        Ok(Self { _tmp: tmp, root, prog, work })
    }

    fn err(&self, source: std::io::Error) -> SandboxError {
        SandboxError::Folder { path: self.root.clone(), source }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Without root, a read-only `prog/` cannot be emptied: make it writable again first.
        let _ = std::fs::set_permissions(&self.prog, std::fs::Permissions::from_mode(0o755));
    }
}

/// Everything the child needs, prepared before the fork.
struct ChildPlan {
    namespaces: bool,
    tmpfs: Option<CString>,
    work: CString,
    uid: Option<u32>,
    parent: libc::pid_t,
    rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    landlock: Option<RawFd>,
    seccomp: Arc<[BpfProgram; 2]>,
}

/// (resource, soft, hard). The CPU hard limit is a second later, so the soft limit's
/// `SIGXCPU` (which says why) comes before the hard limit's `SIGKILL`.
fn rlimits(limits: &Limits, dedicated_uid: bool) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let cpu = limits.cpu.as_secs_f64().ceil().max(1.0) as u64;
    let mut out = vec![
        (libc::RLIMIT_CPU, cpu, cpu + 1),
        (libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (libc::RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (libc::RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (libc::RLIMIT_CORE, 0, 0),
    ];
    // Under the caller's own uid the limit counts all of that uid's processes: allow the
    // ones that exist now on top of the program's own.
    let nproc = if dedicated_uid { limits.processes } else { limits.processes + processes_of_this_uid() };
    out.push((libc::RLIMIT_NPROC, nproc, nproc));
    out
}

/// Processes and threads of the calling uid, from `/proc` (what `RLIMIT_NPROC` counts).
fn processes_of_this_uid() -> u64 {
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut count = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        let owner = field("Uid:").and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<u32>().ok());
        if owner == Some(uid) {
            count += field("Threads:").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
        }
    }
    count
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn check(rc: libc::c_long) -> std::io::Result<()> {
    if rc < 0 { Err(last_err()) } else { Ok(()) }
}

/// Runs in the forked child before `exec`: async-signal-safe calls only.
fn child_setup(plan: &ChildPlan) -> std::io::Result<()> {
    unsafe {
        check(libc::setsid() as _)?;
        check(libc::setrlimit(libc::RLIMIT_CORE, &libc::rlimit { rlim_cur: 0, rlim_max: 0 }) as _)?;
        // Die with the scoring process.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as _)?;
        if libc::getppid() != plan.parent {
            libc::_exit(126);
        }
        if plan.namespaces {
            // Three processes: this one stays outside and reports how the program ended; the
            // namespace's init mounts, reaps orphans and reports the program's wait status
            // through `status`; the program itself is an ordinary process (an init would ignore
            // signals such as the CPU limit's SIGXCPU).
            let mut status = [0; 2];
            check(libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC) as _)?;
            check(libc::unshare(NS_FLAGS) as _)?;
            let init = libc::fork();
            check(init as _)?;
            if init > 0 {
                libc::close(status[1]);
                report_outside(init, status[0]);
            }
            libc::close(status[0]);
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as _)?;
            // Keep mounts from propagating back to the host.
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) as _)?;
            if let Some(opts) = &plan.tmpfs {
                check(libc::mount(
                    c"tmpfs".as_ptr(),
                    plan.work.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    opts.as_ptr().cast(),
                ) as _)?;
            }
            let program = libc::fork();
            check(program as _)?;
            if program > 0 {
                reap_as_init(program, status[1]);
            }
            libc::close(status[1]);
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as _)?;
        }
        check(libc::chdir(plan.work.as_ptr()) as _)?;
        for &(resource, soft, hard) in &plan.rlimits {
            check(libc::setrlimit(resource, &libc::rlimit { rlim_cur: soft, rlim_max: hard }) as _)?;
        }
        if let Some(uid) = plan.uid {
            check(libc::setgroups(0, std::ptr::null()) as _)?;
            check(libc::setgid(uid) as _)?;
            check(libc::setuid(uid) as _)?;
            // A uid change clears the parent-death signal: set it again. In a PID namespace
            // the parent is the reaper above, whose death also ends the namespace.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as _)?;
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as _)?;
        if let Some(fd) = plan.landlock {
            check(libc::syscall(libc::SYS_landlock_restrict_self, fd, 0))?;
            libc::close(fd);
        }
        for filter in plan.seccomp.iter() {
            seccompiler::apply_filter(filter).map_err(|_| last_err())?;
        }
    }
    Ok(())
}

/// Closes every descriptor from 3 up except `keep`, releasing the parent's exec-status pipe
/// so `spawn` returns.
unsafe fn close_all_but(keep: RawFd) {
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

/// Waits for `pid`, retrying on EINTR; `None` if it cannot.
unsafe fn wait_for(pid: libc::pid_t) -> Option<libc::c_int> {
    let mut status = 0;
    loop {
        let got = unsafe { libc::waitpid(pid, &mut status, 0) };
        if got == pid {
            return Some(status);
        }
        if got < 0 && unsafe { *libc::__errno_location() } != libc::EINTR {
            return None;
        }
    }
}

/// The namespace's init: reaps every process until the program ends, then writes the
/// program's wait status to `report`. Its exit ends the namespace and all that is left in it.
unsafe fn reap_as_init(program: libc::pid_t, report: RawFd) -> ! {
    unsafe {
        close_all_but(report);
        let mut status = 0;
        loop {
            let mut st = 0;
            let got = libc::waitpid(-1, &mut st, 0);
            if got == program {
                status = st;
                break;
            }
            if got < 0 && *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        libc::write(report, (&raw const status).cast(), size_of::<libc::c_int>());
        libc::_exit(0)
    }
}

/// Outside the namespace: waits for its init and ends the way the program ended (same exit
/// code or same signal), so the parent sees the program's own status.
unsafe fn report_outside(init: libc::pid_t, report: RawFd) -> ! {
    unsafe {
        close_all_but(report);
        let init_status = wait_for(init).unwrap_or(0);
        let mut status: libc::c_int = 0;
        let n = libc::read(report, (&raw mut status).cast(), size_of::<libc::c_int>());
        // Without a report the init itself was killed (by the parent, or with its parent).
        let status = if n == size_of::<libc::c_int>() as isize { status } else { init_status };
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = if libc::WIFSIGNALED(status) { libc::WTERMSIG(status) } else { libc::SIGKILL };
        libc::signal(sig, libc::SIG_DFL);
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig)
    }
}

fn kill_group(pgid: libc::pid_t) {
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Kills every process of `uid` from a short-lived helper running as that uid.
fn kill_uid(uid: u32) {
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::setuid(uid) == 0 {
                libc::kill(-1, libc::SIGKILL);
            }
            libc::_exit(0);
        }
        if pid > 0 {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
}

/// Reads a pipe on a thread, keeping at most `cap` bytes; raises `overflow` past it.
fn read_capped(
    mut pipe: impl Read + Send + 'static,
    cap: usize,
    overflow: &Arc<AtomicBool>,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let overflow = overflow.clone();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                    if n > room {
                        overflow.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(buf);
    });
    rx
}

/// A uid no account uses, different for every concurrent run of every process on the host.
fn next_uid() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let slot = COUNTER.fetch_add(1, Ordering::Relaxed) % 1000;
    1_000_000_000 + (std::process::id() % 100_000) * 1000 + slot
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("temporary paths have no NUL")
}

/// The kernel's Landlock ABI version (0 when unavailable).
fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v.max(0) as i32
}

/// Whether a child can enter new namespaces, and mount a tmpfs there.
fn probe_namespaces(tmp_root: &Path) -> (bool, bool) {
    let Ok(dir) = tempfile::Builder::new().prefix("r1-probe-").tempdir_in(tmp_root) else {
        return (false, false);
    };
    let target = cstring(dir.path());
    let opts = c"size=4096";
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::unshare(NS_FLAGS) != 0 {
                libc::_exit(1);
            }
            let private = libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            let tmpfs = libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, opts.as_ptr().cast());
            libc::_exit(if private == 0 && tmpfs == 0 { 0 } else { 2 });
        }
        if pid < 0 {
            return (false, false);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => (true, true),
            Some(2) => (false, false),
            _ => (false, false),
        }
    }
}

/// The seccomp filters: forbidden calls kill the process; `clone3` answers `ENOSYS`.
fn seccomp_filters(deny_sessions: bool) -> Result<[BpfProgram; 2], SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let arg = |index, len, op, value| SeccompCondition::new(index, len, op, value);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_acct,
        libc::SYS_open_by_handle_at,
    ] {
        rules.insert(nr, vec![]);
    }
    if deny_sessions {
        rules.insert(libc::SYS_setsid, vec![]);
        rules.insert(libc::SYS_setpgid, vec![]);
    }
    use SeccompCmpArgLen::Dword;
    // Any socket but AF_UNIX.
    let not_unix = arg(0, Dword, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?;
    rules.insert(libc::SYS_socket, vec![SeccompRule::new(vec![not_unix])?]);
    // `clone` with any namespace flag.
    let ns_bits = [NS_FLAGS, libc::CLONE_NEWUSER, libc::CLONE_NEWCGROUP];
    let mut clone_rules = Vec::new();
    for bits in ns_bits {
        for bit in (0..32).map(|i| 1u64 << i).filter(|b| bits as u64 & b != 0) {
            clone_rules.push(SeccompRule::new(vec![arg(0, Dword, SeccompCmpOp::MaskedEq(bit), bit)?])?);
        }
    }
    rules.insert(libc::SYS_clone, clone_rules);
    // `kill(0, _)` and `kill(-pgid, _)`: signals to whole groups.
    rules.insert(
        libc::SYS_kill,
        vec![
            SeccompRule::new(vec![arg(0, Dword, SeccompCmpOp::Eq, 0)?])?,
            SeccompRule::new(vec![arg(0, Dword, SeccompCmpOp::MaskedEq(0x8000_0000), 0x8000_0000)?])?,
        ],
    );
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::KillProcess, arch)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok([deny.try_into()?, clone3.try_into()?])
}
