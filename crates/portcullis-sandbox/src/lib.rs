//! Confinement of the tool servers the gateway launches, applied between fork and exec.
//!
//! A launched program is code neither the tenant nor the gateway wrote. Before it runs, its
//! process gets (as far as the host allows, and each piece reported): its own unprivileged
//! user, no capabilities, `no_new_privs`, resource limits, a Landlock view of the file system
//! (read-only system folders, one writable folder, nothing of the gateway's), Landlock
//! scoping of signals and abstract sockets, a fresh network namespace, a seccomp filter, and
//! its own session and process group.
//!
//! Everything that allocates (the Landlock ruleset, the BPF program, the map lines) is built
//! in the parent by [`confine`]; the closure that runs in the child makes system calls only.
//! This crate holds the workspace's only `unsafe` code: the hook itself and the raw calls.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

pub mod probe;
mod seccomp;

/// One protection a confined program may have. The report of a connection lists which are
/// active and which the host could not give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// Runs as its own unprivileged user (one per connection), never the gateway's.
    User,
    /// Holds no capability, and its bounding and ambient sets are empty.
    Capabilities,
    /// `no_new_privs`: a setuid or file-capability binary gains nothing.
    NoNewPrivs,
    /// Limits on open files, address space, file size and CPU time; no core dumps.
    Limits,
    /// A limit on processes. Linux counts it per user, so it needs [`Protection::User`].
    Processes,
    /// Landlock: only the allowed folders are visible; the one writable folder is the
    /// connection's own; nothing is executable there.
    Filesystem,
    /// Landlock scoping: no signal to, and no abstract unix socket of, anything outside.
    Signals,
    /// A fresh network namespace: no interface but a loopback that is down.
    Network,
    /// A seccomp filter refusing what no tool server needs (ptrace, mount, modules, keyring,
    /// bpf, namespaces, io_uring, unix sockets, …).
    Seccomp,
    /// Its environment is only the declared variables (and injected credentials).
    Environment,
    /// Its own session and process group, killed as a whole with its connection.
    ProcessGroup,
}

impl Protection {
    pub const ALL: [Protection; 11] = [
        Protection::User,
        Protection::Capabilities,
        Protection::NoNewPrivs,
        Protection::Limits,
        Protection::Processes,
        Protection::Filesystem,
        Protection::Signals,
        Protection::Network,
        Protection::Seccomp,
        Protection::Environment,
        Protection::ProcessGroup,
    ];

    /// The name used in configuration, reports and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Protection::User => "user",
            Protection::Capabilities => "capabilities",
            Protection::NoNewPrivs => "no-new-privs",
            Protection::Limits => "limits",
            Protection::Processes => "processes",
            Protection::Filesystem => "filesystem",
            Protection::Signals => "signals",
            Protection::Network => "network",
            Protection::Seccomp => "seccomp",
            Protection::Environment => "environment",
            Protection::ProcessGroup => "process-group",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What this host and the gateway's privileges can give, read once at start-up.
#[derive(Debug, Clone)]
pub struct Host {
    root: bool,
    /// The gateway itself holds no capability (so its children hold none either).
    no_capabilities: bool,
    landlock: i32,
    user_namespaces: bool,
    seccomp: bool,
    last_capability: u32,
    /// Mechanisms the operator switched off (a kernel bug, a test of degraded modes).
    off: BTreeSet<Protection>,
}

impl Host {
    /// Probe the kernel and this process. `off` names protections the operator switched off.
    pub fn detect(off: BTreeSet<Protection>) -> Self {
        let root = sys::euid() == 0;
        Self {
            root,
            no_capabilities: !root && sys::holds_no_capability(),
            landlock: sys::landlock_abi(),
            user_namespaces: !root && sys::user_namespaces_work(),
            seccomp: sys::seccomp_available(),
            last_capability: sys::last_capability(),
            off,
        }
    }

    /// Whether the gateway runs as root (and so gives each program its own user).
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The Landlock ABI version (0: none).
    pub fn landlock_abi(&self) -> i32 {
        self.landlock
    }

    /// Every protection this host can give a program launched with `network_isolated`.
    pub fn offers(&self) -> BTreeSet<Protection> {
        let mut offers = BTreeSet::from([
            Protection::NoNewPrivs,
            Protection::Limits,
            Protection::Environment,
            Protection::ProcessGroup,
        ]);
        if self.root {
            offers.extend([
                Protection::User,
                Protection::Processes,
                Protection::Capabilities,
            ]);
        } else if self.no_capabilities {
            offers.insert(Protection::Capabilities);
        }
        if self.landlock >= 1 {
            offers.insert(Protection::Filesystem);
        }
        if self.landlock >= 6 {
            offers.insert(Protection::Signals);
        }
        if self.root || self.user_namespaces {
            offers.insert(Protection::Network);
        }
        if self.seccomp {
            offers.insert(Protection::Seccomp);
        }
        offers.retain(|p| !self.off.contains(p));
        // The process limit is per user: without its own user it would count the gateway's.
        if !offers.contains(&Protection::User) {
            offers.remove(&Protection::Processes);
        }
        // Its group holds everything it starts only if leaving it is refused (seccomp) or
        // what leaves is killed by its user.
        if !offers.contains(&Protection::User) && !offers.contains(&Protection::Seccomp) {
            offers.remove(&Protection::ProcessGroup);
        }
        offers
    }

    /// What a launch under `plan` gets here, and what it would lack.
    pub fn report(&self, plan: &Plan) -> Report {
        let mut active = self.offers();
        if plan.user.is_none() {
            active.remove(&Protection::User);
            active.remove(&Protection::Processes);
        }
        if !plan.isolate_network {
            active.remove(&Protection::Network);
        }
        let missing = Protection::ALL
            .into_iter()
            .filter(|p| !active.contains(p))
            .filter(|p| plan.isolate_network || *p != Protection::Network)
            .collect();
        Report {
            active,
            missing,
            egress: false,
        }
    }
}

/// Which protections a launched program has, and which it lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub active: BTreeSet<Protection>,
    pub missing: BTreeSet<Protection>,
    /// Its network namespace holds the gateway's egress proxy (its catalog entry grants
    /// network): it reaches what the egress policy allows, through the proxy only.
    #[serde(default)]
    pub egress: bool,
}

/// A user and group id for a launched program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// Resource limits (soft and hard alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Processes (and threads) of the program's user.
    pub processes: u64,
    pub open_files: u64,
    /// Address space, in MiB.
    pub memory_mb: u64,
    /// Largest file it may write, in MiB.
    pub file_size_mb: u64,
    /// CPU time over the process's life, in seconds (then SIGXCPU, then SIGKILL).
    pub cpu_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            processes: 64,
            open_files: 256,
            memory_mb: 4096,
            file_size_mb: 64,
            cpu_seconds: 3600,
        }
    }
}

/// How one program is confined: who it runs as, its limits, what it sees.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its own user (only when the gateway is root).
    pub user: Option<Ids>,
    pub limits: Limits,
    /// Folders (or files) it may read and execute.
    pub read: Vec<PathBuf>,
    /// Folders (or files) it may read and write, never execute: its own folder first.
    pub write: Vec<PathBuf>,
    /// A fresh network namespace with nothing in it.
    pub isolate_network: bool,
    /// A descriptor the program is run through (`/proc/self/fd/N`): kept close-on-exec in
    /// the gateway, made inheritable in this child only.
    pub inherit_fd: Option<std::os::fd::RawFd>,
    /// Instead of a fresh one, join this network namespace (made by [`egress_namespace`]:
    /// a loopback holding only the gateway's egress proxy). Only when the gateway is root.
    pub join_network: Option<std::os::fd::RawFd>,
}

/// The folders every program may read: the system's programs and libraries, and the few
/// files of `/etc` a runtime reads (never `/etc` whole: the gateway's configuration may be
/// there). `/proc` is readable; Landlock and the separate user keep other processes' entries
/// closed.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/proc",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
];

/// Device files every program may read and write.
pub const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the Landlock ruleset could not be built: {0}")]
    Landlock(String),
    #[error("the seccomp filter could not be built: {0}")]
    Seccomp(String),
    #[error("path {0} holds a NUL byte")]
    Path(PathBuf),
}

/// Make `command` start confined: everything `report` lists as active is applied before the
/// program's first instruction, or the spawn fails (nothing runs unconfined by mistake).
pub fn confine(
    command: &mut std::process::Command,
    host: &Host,
    plan: &Plan,
    report: &Report,
) -> Result<(), SandboxError> {
    let on = |p: Protection| report.active.contains(&p);
    let (filesystem, signals) = (on(Protection::Filesystem), on(Protection::Signals));
    let landlock = if filesystem || signals {
        Some(ruleset(host, plan, filesystem, signals)?)
    } else {
        None
    };
    let filters = if on(Protection::Seccomp) {
        // Without its own user, nothing could kill what leaves the process group: leaving
        // it (setsid, setpgid) is refused too.
        seccomp::filters(!on(Protection::User))?
    } else {
        Vec::new()
    };
    let ids = plan.user.filter(|_| on(Protection::User));
    let network = if on(Protection::Network) {
        if let (true, Some(fd)) = (host.root, plan.join_network) {
            Net::Join(fd)
        } else if host.root {
            Net::Unshare
        } else {
            let uid = sys::euid();
            let gid = sys::egid();
            Net::UserNamespace {
                uid_map: format!("{uid} {uid} 1\n").into_bytes(),
                gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            }
        }
    } else {
        Net::Shared
    };
    let mib = 1024 * 1024;
    let same = |resource, value| (resource, value, value);
    let mut limits = vec![same(libc::RLIMIT_CORE, 0)];
    if on(Protection::Limits) {
        let cpu = plan.limits.cpu_seconds;
        limits.extend([
            same(libc::RLIMIT_NOFILE, plan.limits.open_files),
            same(libc::RLIMIT_AS, plan.limits.memory_mb.saturating_mul(mib)),
            same(
                libc::RLIMIT_FSIZE,
                plan.limits.file_size_mb.saturating_mul(mib),
            ),
            // SIGXCPU at the limit (so its end names the limit); SIGKILL 5 s later if it
            // ignores that.
            (libc::RLIMIT_CPU, cpu, cpu.saturating_add(5)),
        ]);
    }
    if on(Protection::Processes) {
        limits.push(same(libc::RLIMIT_NPROC, plan.limits.processes));
    }
    let child = sys::Child {
        inherit_fd: plan.inherit_fd,
        network,
        limits,
        ids,
        drop_bounding: host.root && on(Protection::Capabilities),
        last_capability: host.last_capability,
        landlock,
        filters,
    };
    sys::install(command, child);
    Ok(())
}

/// The Landlock ruleset, built (and its folders opened) in the parent.
fn ruleset(
    host: &Host,
    plan: &Plan,
    filesystem: bool,
    signals: bool,
) -> Result<landlock::RulesetCreated, SandboxError> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreatedAttr, Scope,
    };
    let fail = |e: &dyn std::fmt::Display| SandboxError::Landlock(e.to_string());
    let abi = ABI::from(host.landlock);
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file = AccessFs::from_file(abi);
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if filesystem {
        ruleset = ruleset.handle_access(all).map_err(|e| fail(&e))?;
    }
    if signals {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| fail(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| fail(&e))?;
    if !filesystem {
        return Ok(created);
    }
    let mut rules: BTreeMap<PathBuf, landlock::BitFlags<AccessFs>> = BTreeMap::new();
    for path in SYSTEM_READ
        .iter()
        .map(PathBuf::from)
        .chain(plan.read.clone())
    {
        *rules.entry(path).or_default() |= read;
    }
    for path in &plan.write {
        *rules.entry(path.clone()).or_default() |= all & !AccessFs::Execute;
    }
    for device in DEVICES {
        *rules.entry(PathBuf::from(device)).or_default() |=
            file & !AccessFs::Execute & !AccessFs::IoctlDev;
    }
    for (path, mut access) in rules {
        let Ok(fd) = PathFd::new(&path) else {
            // A folder this host does not have (`/lib32`, say) grants nothing.
            continue;
        };
        if !path.is_dir() {
            access &= file;
        }
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&e))?;
    }
    Ok(created)
}

/// A path as a C string (for the calls made in the child).
pub fn c_path(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SandboxError::Path(path.to_owned()))
}

/// This process's effective user id.
pub fn euid() -> u32 {
    sys::euid()
}

/// Send SIGKILL to a whole process group (a confined program and everything it started).
pub fn kill_group(pgid: u32) {
    sys::kill_group(pgid);
}

/// Send SIGKILL to every process of `uid` (a connection's own user: whatever its program
/// started, even in another session). Needs root; a no-op for uid 0.
pub fn kill_user(uid: u32) {
    sys::kill_user(uid);
}

/// A new network namespace whose only interface is an up loopback, with a TCP listener on
/// `127.0.0.1` inside it: a program launched into it (see [`Plan::join_network`]) reaches
/// that listener and nothing else. Made on a throwaway thread (a network namespace belongs
/// to a thread); needs root.
pub fn egress_namespace() -> std::io::Result<(std::os::fd::OwnedFd, std::net::TcpListener)> {
    std::thread::spawn(|| -> std::io::Result<_> {
        sys::unshare_network()?;
        sys::loopback_up()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let namespace = std::fs::File::open("/proc/thread-self/ns/net")?;
        Ok((std::os::fd::OwnedFd::from(namespace), listener))
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Hand a folder and everything in it to `uid`/`gid` without ever following a symbolic
/// link: each entry is opened from its folder's descriptor with `O_PATH | O_NOFOLLOW`,
/// checked through that descriptor, and changed through it (`AT_EMPTY_PATH`), so a program
/// renaming things meanwhile cannot turn the walk onto a file outside. A file with more
/// than one name (a hard link to something elsewhere) is left as it is.
pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use rustix::fs::{CWD, Mode, OFlags, fchown, openat};
    let ids = (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    );
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = openat(CWD, root, flags, Mode::empty())?;
    fchown(&dir, ids.0, ids.1)?;
    let mut budget = MAX_ENTRIES;
    chown_below(dir, ids, 0, &mut budget)
}

/// Most entries one hand-over walks (then it fails: the folder is not a scratch folder any
/// more).
const MAX_ENTRIES: usize = 200_000;

fn chown_below(
    dir: std::os::fd::OwnedFd,
    ids: (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>),
    depth: usize,
    budget: &mut usize,
) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, chownat, fstat, openat};
    use rustix::io::Errno;
    if depth > 256 {
        return Err(std::io::Error::other("the folder is nested too deeply"));
    }
    let mut entries = Dir::read_from(&dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| std::io::Error::other("the folder holds too many entries"))?;
        let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let handle = match openat(&dir, name, path_flags, Mode::empty()) {
            Ok(handle) => handle,
            // Removed since it was listed.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let stat = fstat(&handle)?;
        let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        if !is_dir && stat.st_nlink > 1 {
            continue;
        }
        chownat(&handle, c"", ids.0, ids.1, AtFlags::EMPTY_PATH)?;
        if is_dir {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match openat(&dir, name, flags, Mode::empty()) {
                Ok(sub) => chown_below(sub, ids, depth + 1, budget)?,
                // Replaced by a link or a file, or removed, since it was opened.
                Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Take an exclusive lock on `path` (created if missing) without waiting: `Err` with
/// `WouldBlock` when another process holds it. Held until the descriptor is dropped.
pub fn lock_exclusive(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    Ok(std::os::fd::OwnedFd::from(file))
}

/// How the child's network is set up.
enum Net {
    Shared,
    /// Join a prepared network namespace (the egress proxy's loopback).
    Join(std::os::fd::RawFd),
    /// The gateway is root: a new network namespace.
    Unshare,
    /// Not root: a new user namespace (mapping only the gateway's own ids) holding a new
    /// network namespace.
    UserNamespace {
        uid_map: Vec<u8>,
        gid_map: Vec<u8>,
    },
}

/// The raw calls. Every function here is a thin wrapper whose safety argument is local.
#[allow(unsafe_code)]
mod sys {
    use super::Net;
    use std::io::Error;
    use std::os::unix::process::CommandExt as _;

    pub fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    pub fn egid() -> u32 {
        // SAFETY: getegid has no preconditions and cannot fail.
        unsafe { libc::getegid() }
    }

    /// The Landlock ABI version, 0 when the kernel has none (or it is disabled).
    pub fn landlock_abi() -> i32 {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the call only
        // returns a number; it reads and writes no memory.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        i32::try_from(abi).unwrap_or(0).max(0)
    }

    pub fn seccomp_available() -> bool {
        // SAFETY: PR_GET_SECCOMP takes no pointer and only reports this thread's mode.
        unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
    }

    pub fn last_capability() -> u32 {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    }

    /// The gateway's permitted and effective capability sets are both empty.
    pub fn holds_no_capability() -> bool {
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return false;
        };
        ["CapPrm:", "CapEff:", "CapAmb:"].iter().all(|field| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                == Some(0)
        })
    }

    /// Whether an unprivileged process may create a user namespace holding a network
    /// namespace here: tried in a throwaway child.
    pub fn user_namespaces_work() -> bool {
        // SAFETY: the child only calls unshare and _exit (both async-signal-safe) and never
        // returns into Rust; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            if pid < 0 {
                return false;
            }
            if pid == 0 {
                let ok = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) == 0;
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut status = 0;
            if libc::waitpid(pid, &mut status, 0) != pid {
                return false;
            }
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }

    pub fn kill_group(pgid: u32) {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return;
        };
        if pgid <= 1 {
            return;
        }
        // SAFETY: kill takes no pointer; a negative pid names the process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }

    pub fn kill_user(uid: u32) {
        if uid == 0 || euid() != 0 {
            return;
        }
        // SAFETY: the child only calls setresuid, kill and _exit (async-signal-safe) and
        // never returns into Rust; the parent waits for it.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                if libc::setresuid(uid, uid, uid) == 0 {
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

    /// Fork up to `count` children that wait for a signal; kill and reap them; say how many
    /// started.
    pub fn fork_waiting(count: usize) -> usize {
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            // SAFETY: the child only calls pause and _exit (async-signal-safe) and never
            // returns into Rust.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                break;
            }
            if pid == 0 {
                // SAFETY: see above.
                unsafe {
                    libc::pause();
                    libc::_exit(0);
                }
            }
            children.push(pid);
        }
        let started = children.len();
        for pid in children {
            // SAFETY: our own children: signal, then reap (status written to a local).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
        }
        started
    }

    fn outcome(rc: libc::c_long, ok: &str) -> super::probe::Outcome {
        if rc < 0 {
            super::probe::Outcome {
                blocked: true,
                detail: Error::last_os_error().to_string(),
            }
        } else {
            super::probe::Outcome {
                blocked: false,
                detail: ok.to_owned(),
            }
        }
    }

    pub fn ptrace_attach(pid: i32) -> super::probe::Outcome {
        // SAFETY: PTRACE_ATTACH takes a pid only; on success we detach at once.
        let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
        let result = outcome(rc, "attached");
        if rc >= 0 {
            // SAFETY: as above.
            unsafe {
                libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
            }
        }
        result
    }

    pub fn signal_zero(pid: i32) -> super::probe::Outcome {
        // SAFETY: signal 0 delivers nothing; only the permission check runs.
        let rc = unsafe { libc::kill(pid, 0) };
        outcome(rc as libc::c_long, "may signal it")
    }

    pub fn finit_module() -> super::probe::Outcome {
        // SAFETY: an invalid descriptor and an empty parameter string; the kernel checks
        // permission before it looks at either.
        let rc = unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) };
        let errno = Error::last_os_error().raw_os_error();
        if rc < 0 && errno == Some(libc::EPERM) {
            outcome(rc, "")
        } else {
            super::probe::Outcome {
                blocked: false,
                detail: format!("permission check passed ({})", Error::last_os_error()),
            }
        }
    }

    pub fn mount_tmpfs(target: &std::path::Path) -> super::probe::Outcome {
        let Ok(target) = super::c_path(target) else {
            return outcome(-1, "");
        };
        // SAFETY: NUL-terminated strings that outlive the call; no data argument.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        let result = outcome(rc as libc::c_long, "mounted");
        if rc == 0 {
            // SAFETY: as above.
            unsafe {
                libc::umount(target.as_ptr());
            }
        }
        result
    }

    pub fn unshare_network() -> std::io::Result<()> {
        // SAFETY: unshare takes flags only; it changes the calling thread's namespace.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) } as libc::c_long)
    }

    /// Bring `lo` up in the calling thread's network namespace.
    pub fn loopback_up() -> std::io::Result<()> {
        // SAFETY: the socket is ours and closed before returning; `request` is a zeroed
        // ifreq holding a NUL-terminated name, valid for both ioctls.
        unsafe {
            let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if socket < 0 {
                return Err(Error::last_os_error());
            }
            let mut request: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo\0".iter().enumerate() {
                request.ifr_name[i] = *b as libc::c_char;
            }
            let mut rc = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request);
            if rc == 0 {
                request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                rc = libc::ioctl(socket, libc::SIOCSIFFLAGS, &request);
            }
            let error = Error::last_os_error();
            libc::close(socket);
            if rc < 0 {
                return Err(error);
            }
        }
        Ok(())
    }

    pub fn x32_getpid() -> super::probe::Outcome {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: getpid takes no argument, whatever its number.
            let rc = unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) };
            outcome(rc, "answered")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            super::probe::Outcome {
                blocked: true,
                detail: Error::from_raw_os_error(libc::ENOSYS).to_string(),
            }
        }
    }

    pub fn stop_self() {
        // SAFETY: raise takes a signal number only.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }

    /// What the child does between fork and exec, all prepared in the parent.
    pub struct Child {
        pub inherit_fd: Option<std::os::fd::RawFd>,
        pub network: Net,
        /// Resource, soft and hard limit.
        pub limits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
        pub ids: Option<super::Ids>,
        pub drop_bounding: bool,
        pub last_capability: u32,
        pub landlock: Option<landlock::RulesetCreated>,
        pub filters: Vec<seccompiler::BpfProgram>,
    }

    fn check(rc: libc::c_long) -> std::io::Result<()> {
        if rc < 0 {
            Err(Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Write `bytes` to the file at `path` (a `/proc/self` map): open, write, close only.
    fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
        // SAFETY: `path` is NUL-terminated and `bytes` valid for its length; the fd is ours
        // and closed before returning.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(Error::last_os_error());
            }
            let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::close(fd);
            if written != bytes.len() as isize {
                return Err(Error::last_os_error());
            }
        }
        Ok(())
    }

    impl Child {
        /// Runs in the forked child: system calls only, no allocation, no lock.
        fn enter(&mut self) -> std::io::Result<()> {
            // SAFETY (whole block): each call takes plain integers or pointers to data this
            // struct owns, prepared before the fork; none allocates or takes a lock.
            unsafe {
                // Its own session: its own process group, no controlling terminal.
                check(libc::setsid() as libc::c_long)?;
                if let Some(fd) = self.inherit_fd {
                    check(libc::fcntl(fd, libc::F_SETFD, 0) as libc::c_long)?;
                }
                match &self.network {
                    Net::Shared => {}
                    Net::Unshare => check(libc::unshare(libc::CLONE_NEWNET) as libc::c_long)?,
                    Net::Join(fd) => check(libc::setns(*fd, libc::CLONE_NEWNET) as libc::c_long)?,
                    Net::UserNamespace { uid_map, gid_map } => {
                        check(
                            libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) as libc::c_long
                        )?;
                        write_proc(c"/proc/self/setgroups", b"deny")?;
                        write_proc(c"/proc/self/uid_map", uid_map)?;
                        write_proc(c"/proc/self/gid_map", gid_map)?;
                    }
                }
                for (resource, soft, hard) in &self.limits {
                    let limit = libc::rlimit {
                        rlim_cur: *soft,
                        rlim_max: *hard,
                    };
                    check(libc::setrlimit(*resource, &limit) as libc::c_long)?;
                }
                if self.drop_bounding {
                    for cap in 0..=self.last_capability {
                        let rc = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                        // A capability this kernel does not know is no capability.
                        if rc < 0 && Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                            return Err(Error::last_os_error());
                        }
                    }
                }
                if let Some(ids) = self.ids {
                    check(libc::setgroups(0, std::ptr::null()) as libc::c_long)?;
                    check(libc::setresgid(ids.gid, ids.gid, ids.gid) as libc::c_long)?;
                    check(libc::setresuid(ids.uid, ids.uid, ids.uid) as libc::c_long)?;
                    // Dropping root must have dropped every capability; refuse to go on if not.
                    if libc::setuid(0) == 0 {
                        return Err(Error::from_raw_os_error(libc::EPERM));
                    }
                }
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) as libc::c_long)?;
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long)?;
            }
            if let Some(ruleset) = self.landlock.take() {
                let status = ruleset
                    .restrict_self()
                    .map_err(|_| Error::from_raw_os_error(libc::EPERM))?;
                if status.ruleset != landlock::RulesetStatus::FullyEnforced {
                    return Err(Error::from_raw_os_error(libc::EPERM));
                }
            }
            for filter in &self.filters {
                seccompiler::apply_filter(filter)
                    .map_err(|_| Error::from_raw_os_error(libc::EPERM))?;
            }
            Ok(())
        }
    }

    pub fn install(command: &mut std::process::Command, mut child: Child) {
        // SAFETY: `enter` only makes system calls on data prepared before the fork (see
        // there); it does not allocate, lock or touch the parent's threads.
        unsafe {
            command.pre_exec(move || child.enter());
        }
    }
}

/// The signals a program gets when it runs into its CPU-time or file-size limit.
pub use libc::{SIGXCPU, SIGXFSZ};
