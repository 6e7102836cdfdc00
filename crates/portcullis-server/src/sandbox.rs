//! Launching a catalog program confined (`portcullis-sandbox`): its own user and folder, the
//! protections this host gives, the report of which are active, and its end (exit status,
//! the limit it ran into, everything it started killed).
//!
//! INVARIANT: a program starts only with every protection the host offers applied, and only
//! if each one the host lacks is allowed by its catalog entry (`allow_missing`); nothing it
//! may read or write contains (or lies inside) the gateway's data folder, key file or witness
//! log.

use crate::programs::{Launch, StderrMode};
use portcullis_core::id::ConnectionId;
use portcullis_sandbox::{Host, Ids, Plan, Protection, Report};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many user ids a gateway draws from (`uid_base` up).
pub const USER_IDS: u32 = 65_536;

/// What this gateway confines launched programs with.
pub struct Sandbox {
    host: Host,
    /// Programs' users are `uid_base .. uid_base + USER_IDS`: stable per connection (a hash
    /// of its id), so its folder keeps its owner across gateway restarts. Replicas on one
    /// host each need their own range (and so their own rooms folder, the default).
    uid_base: u32,
    rooms: PathBuf,
    /// What no program may see: the data folder, the key file, the witness log, the
    /// configuration file.
    hidden: Vec<PathBuf>,
    /// This binary, opened once (close-on-exec): `@self` runs as `/proc/self/fd/N` under a
    /// user that could not reach it by path; only that child inherits it.
    self_exe: Option<(PathBuf, std::os::fd::OwnedFd)>,
}

/// User ids in use by this process's live programs (every gateway in the process).
static USERS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The user id ranges this process holds, by `uid_base`: a lock per range, so two gateway
/// processes on one host never hand out (and kill) the same users.
static RANGES: Mutex<BTreeMap<u32, std::os::fd::OwnedFd>> = Mutex::new(BTreeMap::new());

/// Why a program was not started: a refusal stops retrying; a failure is retried.
pub enum LaunchError {
    Refused(String),
    Failed(String),
}

/// A started program: its pipes, what protects it, and the handle that ends it.
pub struct Launched {
    pub report: Report,
    pub stdin: tokio::process::ChildStdin,
    pub stdout: tokio::process::ChildStdout,
    pub stderr: Option<tokio::process::ChildStderr>,
    pub process: Process,
}

/// A running program. Dropping it kills its process group (and, with its own user, every
/// process of that user).
pub struct Process {
    pid: u32,
    lease: Option<Lease>,
    exit: Option<tokio::sync::oneshot::Receiver<Option<std::process::ExitStatus>>>,
    over_folder: Arc<AtomicBool>,
    /// Ends its egress proxy, if it has one.
    _proxy: Option<tokio_util::sync::DropGuard>,
    /// Set once the program is reaped: its pid may then belong to someone else, so its
    /// group is never signalled again.
    reaped: Arc<AtomicBool>,
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// `code 3`, `signal 24 (SIGXCPU)`, or `unknown`.
    pub exit: String,
    /// The limit it ran into, when known: `cpu_seconds`, `file_size_mb`, `folder_mb`.
    pub limit: Option<&'static str>,
}

struct Lease {
    uid: u32,
}

impl Drop for Lease {
    fn drop(&mut self) {
        portcullis_sandbox::kill_user(self.uid);
        USERS.lock().expect("lock poisoned").remove(&self.uid);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Process {
    /// Kill what is left of it and say how it ended (its own exit when it had already
    /// exited).
    pub async fn end(mut self) -> Ended {
        let exited = self
            .exit
            .as_mut()
            .and_then(|exit| exit.try_recv().ok())
            .flatten();
        self.kill();
        let status = match exited {
            Some(status) => Some(status),
            None => match self.exit.take() {
                Some(exit) => tokio::time::timeout(Duration::from_secs(5), exit)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten(),
                None => None,
            },
        };
        self.lease.take();
        describe(status, self.over_folder.load(Ordering::SeqCst))
    }

    /// Its process id (and process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn kill(&self) {
        if !self.reaped.load(Ordering::SeqCst) {
            portcullis_sandbox::kill_group(self.pid);
        }
    }
}

fn describe(status: Option<std::process::ExitStatus>, over_folder: bool) -> Ended {
    use std::os::unix::process::ExitStatusExt as _;
    let Some(status) = status else {
        return Ended {
            exit: "unknown".into(),
            limit: over_folder.then_some("folder_mb"),
        };
    };
    let (exit, limit) = match (status.code(), status.signal()) {
        (Some(code), _) => (format!("code {code}"), None),
        (None, Some(signal)) => {
            let limit = match signal {
                portcullis_sandbox::SIGXCPU => Some("cpu_seconds"),
                portcullis_sandbox::SIGXFSZ => Some("file_size_mb"),
                _ => None,
            };
            (format!("signal {signal}"), limit)
        }
        (None, None) => ("unknown".into(), None),
    };
    Ended {
        exit,
        limit: if over_folder {
            Some("folder_mb")
        } else {
            limit
        },
    }
}

impl Sandbox {
    /// Probe the host and fix where rooms live and what stays hidden.
    pub fn new(
        config: &crate::config::Config,
        self_exe: Option<&Path>,
        config_file: Option<&Path>,
    ) -> Result<Self, String> {
        let host = Host::detect(config.sandbox.off()?);
        let rooms = if !config.sandbox.rooms.is_empty() {
            PathBuf::from(&config.sandbox.rooms)
        } else if host.is_root() {
            PathBuf::from(format!(
                "/var/lib/portcullis-rooms/{}",
                config.sandbox.uid_base
            ))
        } else {
            let mut name = config.data.dir.clone().into_os_string();
            name.push("-rooms");
            PathBuf::from(name)
        };
        let hidden = [
            config.data.dir.clone(),
            config.key_file(),
            config.witness_file(),
        ]
        .into_iter()
        .chain(config_file.map(Path::to_path_buf))
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
        let self_exe = match self_exe {
            Some(path) => {
                let real = path
                    .canonicalize()
                    .map_err(|e| format!("cannot find this binary {}: {e}", path.display()))?;
                let file = std::fs::File::open(&real)
                    .map_err(|e| format!("cannot open this binary {}: {e}", real.display()))?;
                Some((real, std::os::fd::OwnedFd::from(file)))
            }
            None => None,
        };
        Ok(Self {
            host,
            uid_base: config.sandbox.uid_base,
            rooms,
            hidden,
            self_exe,
        })
    }

    /// What this host gives every program (before catalog entries and grants).
    pub fn host_report(&self) -> Report {
        self.host.report(&Plan {
            user: self.host.is_root().then_some(Ids { uid: 1, gid: 1 }),
            limits: Default::default(),
            read: Vec::new(),
            write: Vec::new(),
            isolate_network: true,
            join_network: None,
            inherit_fd: None,
        })
    }

    /// The Landlock ABI of this kernel (0: none), for the start-up line.
    pub fn landlock_abi(&self) -> i32 {
        self.host.landlock_abi()
    }

    /// A connection's own folder.
    pub fn room(&self, connection: &ConnectionId) -> PathBuf {
        self.rooms.join(connection.as_str())
    }

    /// Remove a revoked connection's folder.
    pub fn remove_room(&self, connection: &ConnectionId) {
        let room = self.room(connection);
        if let Err(e) = std::fs::remove_dir_all(&room)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%connection, error = %e, "cannot remove the connection's folder");
        }
    }

    /// Start `launch` for `connection`, confined.
    pub fn launch(
        &self,
        connection: &ConnectionId,
        launch: &Launch,
        tunnels: Option<crate::tunnel::Tunnels>,
    ) -> Result<Launched, LaunchError> {
        let refused = LaunchError::Refused;
        let failed = LaunchError::Failed;
        let entry = &launch.confinement;
        let lacking: Vec<&str> = self
            .host_report()
            .missing
            .iter()
            .filter(|p| !entry.allow_missing.contains(p))
            .map(|p| p.name())
            .collect();
        if !lacking.is_empty() {
            return Err(refused(format!(
                "program `{}` would start without {} on this host, and its catalog entry does not allow that ([programs.{}.sandbox] allow_missing)",
                launch.program,
                lacking.join(", "),
                launch.program
            )));
        }
        let lease = if self.host.is_root() && !self.host_off(Protection::User) {
            Some(self.lease(connection)?)
        } else {
            None
        };
        let room = self.room(connection);
        if lease.is_some()
            && let Some(closed) = self.closed_ancestor()
        {
            return Err(refused(format!(
                "the programs' users cannot enter {}: every folder above `[sandbox] rooms` must be enterable by others (mode o+x)",
                closed.display()
            )));
        }
        self.prepare_room(&room, lease.as_ref().map(|l| l.uid))
            .map_err(|e| failed(format!("cannot prepare the connection's folder: {e}")))?;
        // `@self` (this binary) is run through the descriptor opened at start-up.
        let real_command = launch
            .command
            .canonicalize()
            .unwrap_or_else(|_| launch.command.clone());
        let (program, inherit_fd): (std::ffi::OsString, _) = match &self.self_exe {
            Some((path, fd)) if *path == real_command => {
                use std::os::fd::AsRawFd as _;
                let fd = fd.as_raw_fd();
                (format!("/proc/self/fd/{fd}").into(), Some(fd))
            }
            _ => (launch.command.clone().into_os_string(), None),
        };
        // The program file itself, not its folder (which may hold anything); what else it
        // needs to read the catalog entry names.
        let mut read: Vec<PathBuf> = vec![real_command.clone()];
        read.extend(entry.read.iter().cloned());
        let mut write = vec![room.clone()];
        write.extend(entry.write.iter().cloned());
        let seen = portcullis_sandbox::SYSTEM_READ
            .iter()
            .map(PathBuf::from)
            .chain(read.iter().cloned())
            .chain(write.iter().cloned());
        for path in seen {
            let real = path.canonicalize().unwrap_or(path.clone());
            if let Some(hidden) = self.hidden.iter().find(|h| overlaps(&real, h)) {
                return Err(refused(format!(
                    "program `{}` may not see {}: it holds or lies inside the gateway's {}",
                    launch.program,
                    path.display(),
                    if hidden.is_dir() {
                        "data folder"
                    } else {
                        "key file or audit log"
                    }
                )));
            }
        }
        // Network granted: a namespace holding only the egress proxy's listener (root), or,
        // where the gateway cannot make one, the proxy on the host's loopback (the program
        // then has the host's network: `network` is reported missing).
        let proxy = match (entry.egress, tunnels) {
            (true, Some(tunnels)) => {
                let namespace = self
                    .network_offered()
                    .then(portcullis_sandbox::egress_namespace);
                let (namespace, listener) = match namespace {
                    Some(made) => {
                        let (namespace, listener) = made.map_err(|e| {
                            failed(format!("cannot make the program's network: {e}"))
                        })?;
                        (Some(namespace), listener)
                    }
                    None => (
                        None,
                        std::net::TcpListener::bind("127.0.0.1:0")
                            .map_err(|e| failed(format!("cannot open the egress proxy: {e}")))?,
                    ),
                };
                Some((namespace, listener, tunnels))
            }
            (true, None) => return Err(failed("no egress proxy for the program".into())),
            (false, _) => None,
        };
        let join_network = proxy.as_ref().and_then(|(namespace, _, _)| {
            use std::os::fd::AsRawFd as _;
            namespace.as_ref().map(|n| n.as_raw_fd())
        });
        let plan = Plan {
            user: lease.as_ref().map(|l| Ids {
                uid: l.uid,
                gid: l.uid,
            }),
            limits: entry.limits,
            read,
            write,
            isolate_network: !entry.egress || join_network.is_some(),
            join_network,
            inherit_fd,
        };
        let mut report = self.host.report(&plan);
        report.egress = proxy.is_some();
        if entry.egress && join_network.is_none() {
            report.active.remove(&Protection::Network);
            report.missing.insert(Protection::Network);
            if !entry.allow_missing.contains(&Protection::Network) {
                return Err(refused(format!(
                    "program `{}` is granted egress, but this gateway cannot give it a network of its own (not root), and its catalog entry does not allow that ([programs.{}.sandbox] allow_missing)",
                    launch.program, launch.program
                )));
            }
        }
        let mut command = tokio::process::Command::new(program);
        // The gateway's own environment (admin tokens, database URLs) never reaches an
        // upstream: start from nothing and add PATH, its folder and the entry's environment.
        command
            .args(&launch.args)
            .env_clear()
            .current_dir(&room)
            .env("HOME", &room)
            .env("TMPDIR", &room)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(match launch.stderr {
                StderrMode::Discard => std::process::Stdio::null(),
                StderrMode::Log => std::process::Stdio::piped(),
            });
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        if let Some((_, listener, _)) = &proxy {
            let address = listener
                .local_addr()
                .map_err(|e| failed(format!("cannot open the egress proxy: {e}")))?;
            let url = format!("http://{address}");
            for name in [
                "HTTPS_PROXY",
                "https_proxy",
                "HTTP_PROXY",
                "http_proxy",
                "ALL_PROXY",
                "all_proxy",
            ] {
                command.env(name, &url);
            }
        }
        command.envs(&launch.env);
        portcullis_sandbox::confine(command.as_std_mut(), &self.host, &plan, &report)
            .map_err(|e| failed(e.to_string()))?;
        let mut child = command
            .spawn()
            .map_err(|e| failed(format!("cannot launch program `{}`: {e}", launch.program)))?;
        let pid = child.id().unwrap_or(0);
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed("no stdout".into()))?;
        let stderr = child.stderr.take();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let proxy_guard = match proxy {
            Some((_namespace, listener, tunnels)) => {
                // The namespace lives on with the program; our handle to it is no longer
                // needed once it has joined.
                listener
                    .set_nonblocking(true)
                    .map_err(|e| failed(format!("cannot open the egress proxy: {e}")))?;
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| failed(format!("cannot open the egress proxy: {e}")))?;
                let stop = tokio_util::sync::CancellationToken::new();
                tokio::spawn(crate::tunnel::serve(listener, tunnels, stop.clone()));
                Some(stop.drop_guard())
            }
            None => None,
        };
        let over_folder = Arc::new(AtomicBool::new(false));
        let reaped = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch(
            child,
            Watched {
                pid,
                room,
                cap: entry.folder_bytes,
                over: over_folder.clone(),
                reaped: reaped.clone(),
            },
            tx,
        ));
        Ok(Launched {
            report,
            stdin,
            stdout,
            stderr,
            process: Process {
                pid,
                lease,
                exit: Some(rx),
                over_folder,
                _proxy: proxy_guard,
                reaped,
            },
        })
    }

    /// Whether this gateway can give a program a network namespace of its own making (root,
    /// and `network` not switched off).
    fn network_offered(&self) -> bool {
        self.host.is_root() && self.host.offers().contains(&Protection::Network)
    }

    fn host_off(&self, protection: Protection) -> bool {
        !self.host.offers().contains(&protection)
    }

    /// A user id for the connection's program: stable for this gateway's life, never one
    /// another live program of this process holds.
    fn lease(&self, connection: &ConnectionId) -> Result<Lease, LaunchError> {
        use sha2::Digest as _;
        // Claimed at the first program (a gateway that launches none, an HTTP-only
        // replica, never needs it).
        claim_range(self.uid_base).map_err(LaunchError::Refused)?;
        let digest = sha2::Sha256::digest(connection.as_str().as_bytes());
        let start = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % USER_IDS;
        let mut users = USERS.lock().expect("lock poisoned");
        for step in 0..USER_IDS {
            // uid_base + USER_IDS fits a u32: the configuration checks it.
            let uid = self.uid_base.saturating_add((start + step) % USER_IDS);
            if users.insert(uid) {
                drop(users);
                // This process holds the range: whatever still runs as this user was left
                // by an earlier gateway that did not end cleanly.
                portcullis_sandbox::kill_user(uid);
                return Ok(Lease { uid });
            }
        }
        Err(LaunchError::Failed(
            "no free user id for the program".into(),
        ))
    }

    /// A folder above the rooms folder that other users cannot enter (a private home, a
    /// 0700 temporary folder): a program running as its own user could not reach its folder.
    fn closed_ancestor(&self) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let rooms = std::path::absolute(&self.rooms).ok()?;
        rooms
            .ancestors()
            .skip(1)
            .filter_map(|dir| Some((dir, std::fs::metadata(dir).ok()?)))
            .find(|(_, meta)| meta.permissions().mode() & 0o001 == 0)
            .map(|(dir, _)| dir.to_path_buf())
    }

    /// Whether `uid` is one of this gateway's program users.
    fn ours(&self, uid: u32) -> bool {
        uid >= self.uid_base && uid - self.uid_base < USER_IDS
    }

    /// Create the folder (the rooms folder only enterable, each room its user's alone) and
    /// hand everything in it to the program's user.
    fn prepare_room(&self, room: &Path, uid: Option<u32>) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        if !self.rooms.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(&self.rooms)?;
        }
        // Nobody else may replace a folder in it (root would then follow their link).
        let rooms = std::fs::symlink_metadata(&self.rooms)?;
        if !rooms.is_dir()
            || rooms.uid() != portcullis_sandbox::euid()
            || rooms.permissions().mode() & 0o022 != 0
        {
            return Err(std::io::Error::other(
                "the rooms folder must be a folder of the gateway's own user that no one else may write",
            ));
        }
        if !room.exists() {
            std::fs::DirBuilder::new().mode(0o700).create(room)?;
        }
        let meta = std::fs::symlink_metadata(room)?;
        if !meta.is_dir() {
            return Err(std::io::Error::other(
                "the connection's folder is not a folder",
            ));
        }
        std::fs::set_permissions(room, std::fs::Permissions::from_mode(0o700))?;
        if let Some(uid) = uid
            && meta.uid() != uid
        {
            // Its earlier owner (another id of ours, when this connection's usual one was
            // taken) may still run something: nothing of it survives the hand-over.
            let before = meta.uid();
            // Held while it is killed and the folder handed over: no launch takes it meanwhile.
            let reserved = self.ours(before) && USERS.lock().expect("lock poisoned").insert(before);
            if reserved {
                portcullis_sandbox::kill_user(before);
            }
            let handed = portcullis_sandbox::chown_tree(room, uid, uid);
            if reserved {
                USERS.lock().expect("lock poisoned").remove(&before);
            }
            handed?;
        }
        Ok(())
    }
}

/// Hold the lock of the user ids from `uid_base` for this process's life (once per process:
/// every gateway in it shares [`USERS`]).
fn claim_range(uid_base: u32) -> Result<(), String> {
    let mut ranges = RANGES.lock().expect("lock poisoned");
    if ranges.contains_key(&uid_base) {
        return Ok(());
    }
    let path = PathBuf::from(format!("/run/portcullis-uids-{uid_base}.lock"));
    match portcullis_sandbox::lock_exclusive(&path) {
        Ok(lock) => {
            ranges.insert(uid_base, lock);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(format!(
            "another gateway on this host gives its programs the users from {uid_base}: give each gateway its own [sandbox] uid_base"
        )),
        Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Whether one path holds the other.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The bytes a folder takes on disk (stops counting past `cap`).
fn folder_bytes(root: &Path, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if total > cap {
            return total;
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}

/// Reap the program, and while it runs check its folder's size every second: over the cap,
/// its process group is killed (the end is then reported as `folder_mb`).
struct Watched {
    pid: u32,
    room: PathBuf,
    cap: u64,
    over: Arc<AtomicBool>,
    reaped: Arc<AtomicBool>,
}

async fn watch(
    mut child: tokio::process::Child,
    watched: Watched,
    exit: tokio::sync::oneshot::Sender<Option<std::process::ExitStatus>>,
) {
    let Watched {
        pid,
        room,
        cap,
        over,
        reaped,
    } = watched;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            _ = tick.tick() => {
                let room = room.clone();
                let size = tokio::task::spawn_blocking(move || folder_bytes(&room, cap))
                    .await
                    .unwrap_or(0);
                if size > cap {
                    over.store(true, Ordering::SeqCst);
                    portcullis_sandbox::kill_group(pid);
                }
            }
        }
    };
    // Whatever it started in its group goes with it (at once: the group id cannot be taken
    // while members remain, and after this it is never used again).
    portcullis_sandbox::kill_group(pid);
    reaped.store(true, Ordering::SeqCst);
    let _ = exit.send(status);
}
