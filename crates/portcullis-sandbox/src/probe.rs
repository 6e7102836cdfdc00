//! Escape attempts a program can make from inside its sandbox, each reported as blocked or
//! not. The escape-probe upstream (`portcullis demo-upstream --probe`) runs them on request,
//! so tests (and operators checking a host) see what a confined program can really do.

use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The attempt failed (the sandbox, or anything else, stopped it).
    pub blocked: bool,
    /// What happened: an OS error, a count, the output read. Never file contents.
    pub detail: String,
}

fn outcome<T>(result: std::io::Result<T>, ok: impl FnOnce(T) -> String) -> Outcome {
    match result {
        Ok(value) => Outcome {
            blocked: false,
            detail: ok(value),
        },
        Err(e) => Outcome {
            blocked: true,
            detail: e.to_string(),
        },
    }
}

/// Create (and remove again) a file at `path`.
pub fn write_file(path: &Path) -> Outcome {
    outcome(std::fs::write(path, b"escaped"), |()| {
        let _ = std::fs::remove_file(path);
        "written".into()
    })
}

/// Read the file at `path` (only its length is reported).
pub fn read_file(path: &Path) -> Outcome {
    outcome(std::fs::read(path), |bytes| {
        format!("read {} bytes", bytes.len())
    })
}

/// List the folder at `path` (only the number of entries is reported).
pub fn list_folder(path: &Path) -> Outcome {
    outcome(std::fs::read_dir(path), |entries| {
        format!("listed {} entries", entries.count())
    })
}

/// Open a TCP connection to `address` (`host:port`).
pub fn connect_tcp(address: &str) -> Outcome {
    let target = match address.parse() {
        Ok(target) => target,
        Err(_) => {
            return Outcome {
                blocked: true,
                detail: "not an address".into(),
            };
        }
    };
    outcome(
        std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)),
        |_| "connected".into(),
    )
}

/// Connect to the unix socket at `path` (a database's, say).
pub fn connect_unix(path: &Path) -> Outcome {
    outcome(std::os::unix::net::UnixStream::connect(path), |_| {
        "connected".into()
    })
}

/// Reserve (not touch) `mb` MiB of memory.
pub fn allocate(mb: usize) -> Outcome {
    let mut memory: Vec<u8> = Vec::new();
    match memory.try_reserve_exact(mb.saturating_mul(1024 * 1024)) {
        Ok(()) => Outcome {
            blocked: false,
            detail: format!("reserved {mb} MiB"),
        },
        Err(e) => Outcome {
            blocked: true,
            detail: e.to_string(),
        },
    }
}

/// Run `program` with `args` and report its standard output (a setuid binary printing the
/// user id it runs as, say).
pub fn run(program: &Path, args: &[String]) -> Outcome {
    outcome(
        std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output(),
        |output| String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

/// Start `count` processes that wait (then kill them all): blocked when fewer start.
pub fn fork_many(count: usize) -> Outcome {
    let started = crate::sys::fork_waiting(count);
    Outcome {
        blocked: started < count,
        detail: format!("started {started} of {count}"),
    }
}

/// Attach to process `pid` with ptrace (and detach at once).
pub fn ptrace(pid: i32) -> Outcome {
    crate::sys::ptrace_attach(pid)
}

/// Check whether a signal could be sent to process `pid` (signal 0: nothing is delivered).
pub fn signal(pid: i32) -> Outcome {
    crate::sys::signal_zero(pid)
}

/// Try to load a kernel module: blocked when refused for lack of permission (anything else
/// means the permission check was passed).
pub fn load_module() -> Outcome {
    crate::sys::finit_module()
}

/// Make a system call under its x32 number (`getpid | 0x4000_0000`), which a filter keyed by
/// the ordinary numbers would not see. ENOSYS: this kernel has no x32 calls at all.
pub fn x32_call() -> Outcome {
    crate::sys::x32_getpid()
}

/// Try to mount a file system on the program's own folder.
pub fn mount(target: &Path) -> Outcome {
    crate::sys::mount_tmpfs(target)
}

/// Facts about the calling process, from `/proc/self/status`: user ids, capability sets,
/// `no_new_privs`, seccomp mode.
pub fn whoami() -> Outcome {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let wanted = [
        "Uid:",
        "Gid:",
        "CapEff:",
        "CapBnd:",
        "NoNewPrivs:",
        "Seccomp:",
    ];
    let facts: Vec<String> = status
        .lines()
        .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    Outcome {
        blocked: false,
        detail: facts.join("; "),
    }
}

/// Burn CPU for up to `seconds` of wall time (a CPU-time limit ends it first).
pub fn spin(seconds: u64) -> Outcome {
    let started = std::time::Instant::now();
    let mut x = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    Outcome {
        blocked: false,
        detail: format!("spun {seconds} s"),
    }
}

/// Write `mb` MiB into one file at `path`, a MiB at a time (a file-size limit ends it first).
pub fn fill(path: &Path, mb: usize) -> Outcome {
    use std::io::Write as _;
    let chunk = vec![0x5a_u8; 1024 * 1024];
    let result = std::fs::File::create(path).and_then(|mut file| {
        for _ in 0..mb {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    });
    outcome(result, |()| format!("wrote {mb} MiB"))
}

/// Stop this process (SIGSTOP to itself): it answers nothing until killed.
pub fn freeze() -> Outcome {
    crate::sys::stop_self();
    Outcome {
        blocked: true,
        detail: "still running".into(),
    }
}

/// Ask the egress proxy named in `HTTPS_PROXY` for a tunnel to `target` (`host:port`); when
/// it agrees, send a line and report what comes back.
pub fn through_proxy(target: &str) -> Outcome {
    use std::io::{Read as _, Write as _};
    let Some(proxy) = std::env::var("HTTPS_PROXY").ok().and_then(|p| {
        p.strip_prefix("http://")
            .map(|p| p.trim_end_matches('/').to_owned())
    }) else {
        return Outcome {
            blocked: true,
            detail: "no HTTPS_PROXY".into(),
        };
    };
    let attempt = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(&proxy)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
            if stream.read(&mut byte)? == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let status = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if !status.contains(" 200") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                status,
            ));
        }
        stream.write_all(b"ping\n")?;
        let mut echo = [0u8; 64];
        let n = stream.read(&mut echo)?;
        Ok(format!(
            "{status} | echo: {}",
            String::from_utf8_lossy(&echo[..n]).trim()
        ))
    };
    outcome(attempt(), |detail| detail)
}
