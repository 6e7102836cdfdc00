//! The operator's program catalog: the only programs a stdio connection may launch.
//!
//! INVARIANT: only the operator chooses what runs on the host. The catalog lives in the
//! server's configuration file (`[programs.NAME]`): each entry fixes the executable (an
//! absolute path), its leading arguments and environment, names the tenants it is offered to,
//! and says which extra arguments and which environment variables a tenant may set, each with
//! a pattern its value must match as a whole (`{tenant}` in a pattern stands for the calling
//! tenant's name, so `/srv/tenants/{tenant}` admits each tenant's own folder only). A tenant
//! admin picks an entry offered to its tenant and fills in only those; nothing a tenant sends
//! can name an executable, an interpreter flag, or a value outside an entry's patterns. Every
//! tenant value is also refused when it holds control characters or a `..` path segment,
//! whatever the patterns say. What the launched program may do once running (confinement) is
//! a separate matter, see ARCHITECTURE.md.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One catalog entry as the operator writes it in the configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// The executable: an absolute path, or `@self` for this `portcullis` binary.
    pub command: String,
    /// Arguments always passed first, in this order.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment the operator sets (may hold credentials: never shown to tenants).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra arguments a tenant may append: each must match one of these patterns (regular
    /// expressions, matched against the whole argument).
    #[serde(default)]
    pub tenant_args: Vec<String>,
    /// Environment variables a tenant may set, by name, with the pattern the whole value must
    /// match.
    #[serde(default)]
    pub tenant_env: BTreeMap<String, String>,
    /// What the program is, for tenant admins listing the catalog.
    #[serde(default)]
    pub description: String,
    /// The tenants (by name) this entry is offered to; `["*"]` offers it to every tenant.
    /// Empty: to none.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// What happens to the program's standard error: `discard` (the default) or `log` (each
    /// line to the gateway's log at info — the program's own output, outside the guarantee
    /// that tool arguments and results never reach the log).
    #[serde(default)]
    pub stderr: StderrMode,
    /// How the program is confined: what else it may read or write, its limits, and which
    /// protections it may start without on a host that cannot give them.
    #[serde(default)]
    pub sandbox: SandboxEntry,
}

/// The `[programs.NAME.sandbox]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxEntry {
    /// Folders (absolute) the program may read and execute besides the system's and its own
    /// command's folder.
    pub read: Vec<PathBuf>,
    /// Folders (absolute) it may read and write, never execute, besides its connection's own
    /// folder. Shared by every connection of the entry: grant with care.
    pub write: Vec<PathBuf>,
    /// Protections (by name) it may start without where the host cannot give them. Empty:
    /// every protection must be active or the program does not start.
    pub allow_missing: Vec<String>,
    /// Resource limits.
    pub limits: portcullis_sandbox::Limits,
    /// The most its connection's own folder may hold, in MiB (then it is killed).
    pub folder_mb: u64,
    /// `none` (the default): no network at all. `egress`: a network namespace holding only
    /// the gateway's egress proxy (`HTTPS_PROXY`), through which it reaches what the egress
    /// policy and its tenant's host list allow.
    pub network: NetworkGrant,
    /// With `egress`: the destination ports its tunnels may reach (empty: any the egress
    /// policy allows). Default: 443 only.
    pub egress_ports: Vec<u16>,
}

/// What network a program gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkGrant {
    #[default]
    None,
    Egress,
}

impl Default for SandboxEntry {
    fn default() -> Self {
        Self {
            read: Vec::new(),
            write: Vec::new(),
            allow_missing: Vec::new(),
            limits: portcullis_sandbox::Limits::default(),
            folder_mb: 64,
            network: NetworkGrant::None,
            egress_ports: vec![443],
        }
    }
}

/// A checked `[programs.NAME.sandbox]` table.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub allow_missing: std::collections::BTreeSet<portcullis_sandbox::Protection>,
    pub limits: portcullis_sandbox::Limits,
    pub folder_bytes: u64,
    /// Its network namespace holds the egress proxy.
    pub egress: bool,
    pub egress_ports: Vec<u16>,
}

impl Confinement {
    fn build(what: &str, entry: &SandboxEntry) -> Result<Self, String> {
        for path in entry.read.iter().chain(&entry.write) {
            if !path.is_absolute() || path.components().any(|c| c.as_os_str() == "..") {
                return Err(format!(
                    "{what}.sandbox: `{}` must be an absolute path without `..`",
                    path.display()
                ));
            }
        }
        let allow_missing = entry
            .allow_missing
            .iter()
            .map(|name| {
                portcullis_sandbox::Protection::parse(name).ok_or_else(|| {
                    format!(
                        "{what}.sandbox.allow_missing: `{name}` is not a protection (one of {})",
                        portcullis_sandbox::Protection::ALL
                            .map(|p| p.name())
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let l = &entry.limits;
        if [
            l.processes,
            l.open_files,
            l.memory_mb,
            l.file_size_mb,
            l.cpu_seconds,
        ]
        .contains(&0)
            || entry.folder_mb == 0
        {
            return Err(format!("{what}.sandbox: every limit must be above 0"));
        }
        Ok(Self {
            read: entry.read.clone(),
            write: entry.write.clone(),
            allow_missing,
            limits: entry.limits,
            folder_bytes: entry.folder_mb.saturating_mul(1024 * 1024),
            egress: entry.network == NetworkGrant::Egress,
            egress_ports: entry.egress_ports.clone(),
        })
    }
}

/// Where a launched program's standard error goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StderrMode {
    #[default]
    Discard,
    Log,
}

/// The command-line value that stands for this binary in `command`.
pub const SELF_COMMAND: &str = "@self";

/// Most extra arguments and environment variables a tenant may set per connection.
pub const MAX_TENANT_VALUES: usize = 64;
/// Longest tenant argument or environment value, in bytes.
pub const MAX_TENANT_VALUE_BYTES: usize = 4096;

/// Environment variables that change how a program loads code; a catalog entry may not let a
/// tenant set them, whatever its patterns.
const LOADER_VARIABLES: &[&str] = &[
    "PATH",
    "HOME",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_EXTRA_CA_CERTS",
    "PERL5OPT",
    "PERL5LIB",
    "PERL5DB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "CLASSPATH",
    "DOTNET_STARTUP_HOOKS",
    "TMPDIR",
];
const LOADER_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "PYTHON",
    "GCONV_",
    "MALLOC_",
    "LUA_",
    "GIT_",
    "BASH_FUNC_",
    "NPM_CONFIG_",
    "CORECLR_",
    "COMPlus_",
    "DOTNET_",
];

/// A validated entry.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Patterns as written (`{tenant}` not yet filled in), checked to compile.
    tenant_args: Vec<String>,
    tenant_env: BTreeMap<String, String>,
    tenants: Vec<String>,
    pub description: String,
    pub stderr: StderrMode,
    pub confinement: Confinement,
}

/// What a launch needs: the entry's fixed parts plus the tenant's checked values.
#[derive(Debug, Clone)]
pub struct Launch {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub stderr: StderrMode,
    /// The entry's name (for messages) and how it is confined.
    pub program: String,
    pub confinement: Confinement,
}

/// The catalog, validated once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    programs: BTreeMap<String, Program>,
}

/// Why a tenant's choice was refused. The messages name the offending argument position or
/// variable name, never a value (values may hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "program `{0}` is not in this server's catalog for this tenant (`portcullis programs` lists what is)"
    )]
    UnknownProgram(String),
    #[error("program `{program}` takes no extra argument like argument {position}")]
    ArgumentNotAllowed { program: String, position: usize },
    #[error("program `{program}` does not let tenants set `{name}`")]
    EnvNotAllowed { program: String, name: String },
    #[error("the value of `{name}` does not match what program `{program}` allows")]
    EnvValueNotAllowed { program: String, name: String },
    #[error("{what} holds a control character or a `..` path segment")]
    Unsafe { what: String },
    #[error(
        "at most {MAX_TENANT_VALUES} extra arguments and {MAX_TENANT_VALUES} variables, each at most {MAX_TENANT_VALUE_BYTES} bytes"
    )]
    TooMuch,
}

impl Catalog {
    /// Validate the configured entries. `self_exe` is what `@self` means.
    pub fn build(
        entries: &BTreeMap<String, ProgramConfig>,
        self_exe: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let mut programs = BTreeMap::new();
        for (name, entry) in entries {
            let program = Program::build(name, entry, self_exe)?;
            programs.insert(name.clone(), program);
        }
        Ok(Self { programs })
    }

    pub fn get(&self, name: &str) -> Option<&Program> {
        self.programs.get(name)
    }

    /// The entries offered to `tenant` (every entry when `None`, for the operator).
    pub fn programs<'a>(&'a self, tenant: Option<&'a str>) -> impl Iterator<Item = &'a Program> {
        self.programs
            .values()
            .filter(move |p| tenant.is_none_or(|t| p.offered_to(t)))
    }

    /// Check a tenant's choice and produce what to launch. An entry not offered to the tenant
    /// is refused exactly like one that does not exist.
    pub fn resolve(
        &self,
        tenant: &str,
        program: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<Launch, Refusal> {
        let entry = self
            .programs
            .get(program)
            .filter(|p| p.offered_to(tenant))
            .ok_or_else(|| Refusal::UnknownProgram(program.chars().take(64).collect()))?;
        entry.resolve(tenant, args, env)
    }
}

fn valid_program_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 128
}

fn loader_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    LOADER_VARIABLES.contains(&upper.as_str())
        || LOADER_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// The placeholder a pattern may use for the calling tenant's name.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// A pattern that must match a whole value, with `{tenant}` standing for the (escaped)
/// tenant name.
fn whole(pattern: &str, tenant: &str, what: &str) -> Result<Regex, String> {
    let filled = pattern.replace(TENANT_PLACEHOLDER, &regex::escape(tenant));
    Regex::new(&format!("^(?:{filled})$"))
        .map_err(|e| format!("{what}: pattern `{pattern}` is not a valid regular expression: {e}"))
}

/// Control characters and `..` segments are refused in every tenant value.
fn unsafe_value(value: &str) -> bool {
    value.chars().any(char::is_control)
        || value
            .split(['/', '\\', '=', ','])
            .any(|segment| segment == "..")
}

impl Program {
    fn build(
        name: &str,
        entry: &ProgramConfig,
        self_exe: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let what = format!("programs.{name}");
        if !valid_program_name(name) {
            return Err(format!("{what}: a program name is 1-32 of a-z, 0-9 and -"));
        }
        let command = if entry.command == SELF_COMMAND {
            self_exe
                .map(std::path::Path::to_path_buf)
                .ok_or_else(|| format!("{what}: `@self` is not known in this process"))?
        } else {
            PathBuf::from(&entry.command)
        };
        if !command.is_absolute() {
            return Err(format!(
                "{what}: command must be an absolute path (or `@self`), not `{}`",
                entry.command
            ));
        }
        for key in entry.env.keys() {
            if !valid_env_name(key) {
                return Err(format!("{what}: `{key}` is not a valid variable name"));
            }
        }
        // Every pattern must compile, whatever tenant fills it in.
        for pattern in &entry.tenant_args {
            whole(pattern, "tenant", &format!("{what}.tenant_args"))?;
        }
        for (key, pattern) in &entry.tenant_env {
            if !valid_env_name(key) {
                return Err(format!("{what}: `{key}` is not a valid variable name"));
            }
            if loader_variable(key) {
                return Err(format!(
                    "{what}: tenants may not set `{key}`: it changes how programs load code"
                ));
            }
            whole(pattern, "tenant", &format!("{what}.tenant_env.{key}"))?;
        }
        Ok(Self {
            name: name.to_owned(),
            command,
            args: entry.args.clone(),
            env: entry.env.clone(),
            tenant_args: entry.tenant_args.clone(),
            tenant_env: entry.tenant_env.clone(),
            tenants: entry.tenants.clone(),
            description: entry.description.clone(),
            stderr: entry.stderr,
            confinement: Confinement::build(&what, &entry.sandbox)?,
        })
    }

    /// Whether the entry is offered to this tenant.
    pub fn offered_to(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }

    /// The tenants the entry is offered to (`*`: all).
    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    /// Names of the variables a tenant may set.
    pub fn tenant_env_names(&self) -> impl Iterator<Item = &str> {
        self.tenant_env.keys().map(String::as_str)
    }

    /// The patterns a tenant's extra arguments must match, as written.
    pub fn tenant_arg_patterns(&self) -> impl Iterator<Item = &str> {
        self.tenant_args.iter().map(String::as_str)
    }

    fn resolve(
        &self,
        tenant: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<Launch, Refusal> {
        // Compiled for this tenant; every pattern compiled when the catalog was built.
        let compile = |pattern: &str| whole(pattern, tenant, "").ok();
        let arg_patterns: Vec<Regex> = self.tenant_args.iter().filter_map(|p| compile(p)).collect();
        if args.len() > MAX_TENANT_VALUES
            || env.len() > MAX_TENANT_VALUES
            || args.iter().any(|a| a.len() > MAX_TENANT_VALUE_BYTES)
            || env.values().any(|v| v.len() > MAX_TENANT_VALUE_BYTES)
        {
            return Err(Refusal::TooMuch);
        }
        for (i, arg) in args.iter().enumerate() {
            if unsafe_value(arg) {
                return Err(Refusal::Unsafe {
                    what: format!("argument {}", i + 1),
                });
            }
            if !arg_patterns.iter().any(|p| p.is_match(arg)) {
                return Err(Refusal::ArgumentNotAllowed {
                    program: self.name.clone(),
                    position: i + 1,
                });
            }
        }
        let mut full_env = self.env.clone();
        for (name, value) in env {
            let Some(pattern) = self.tenant_env.get(name).and_then(|p| compile(p)) else {
                return Err(Refusal::EnvNotAllowed {
                    program: self.name.clone(),
                    name: name.chars().take(128).collect(),
                });
            };
            if unsafe_value(value) {
                return Err(Refusal::Unsafe {
                    what: format!("the value of `{name}`"),
                });
            }
            if !pattern.is_match(value) {
                return Err(Refusal::EnvValueNotAllowed {
                    program: self.name.clone(),
                    name: name.clone(),
                });
            }
            full_env.insert(name.clone(), value.clone());
        }
        let mut full_args = self.args.clone();
        full_args.extend(args.iter().cloned());
        Ok(Launch {
            command: self.command.clone(),
            args: full_args,
            env: full_env,
            stderr: self.stderr,
            program: self.name.clone(),
            confinement: self.confinement.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut entries = BTreeMap::new();
        entries.insert(
            "files".to_owned(),
            ProgramConfig {
                command: "/usr/bin/files-server".into(),
                args: vec!["--stdio".into()],
                env: [("API_KEY".to_owned(), "operator-secret".to_owned())].into(),
                tenant_args: vec!["--root=/srv/tenants/{tenant}".into(), "--verbose".into()],
                tenant_env: [("FILES_MODE".to_owned(), "ro|rw".to_owned())].into(),
                description: "files".into(),
                tenants: vec!["acme".into(), "globex".into()],
                stderr: StderrMode::Discard,
                sandbox: SandboxEntry::default(),
            },
        );
        Catalog::build(&entries, None).expect("valid catalog")
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_tenant_fills_in_only_what_the_entry_allows() {
        let c = catalog();
        let launch = c
            .resolve(
                "acme",
                "files",
                &["--root=/srv/tenants/acme".into(), "--verbose".into()],
                &env(&[("FILES_MODE", "ro")]),
            )
            .unwrap();
        assert_eq!(launch.command, PathBuf::from("/usr/bin/files-server"));
        assert_eq!(
            launch.args,
            ["--stdio", "--root=/srv/tenants/acme", "--verbose"]
        );
        assert_eq!(launch.env["API_KEY"], "operator-secret");
        assert_eq!(launch.env["FILES_MODE"], "ro");
    }

    #[test]
    fn everything_else_is_refused() {
        let c = catalog();
        let none = BTreeMap::new();
        assert!(matches!(
            c.resolve("acme", "sh", &[], &none),
            Err(Refusal::UnknownProgram(_))
        ));
        // Another tenant's folder, or an entry not offered to the tenant.
        assert!(
            c.resolve(
                "acme",
                "files",
                &["--root=/srv/tenants/globex".into()],
                &none
            )
            .is_err()
        );
        assert!(matches!(
            c.resolve("initech", "files", &[], &none),
            Err(Refusal::UnknownProgram(_))
        ));
        assert_eq!(c.programs(Some("initech")).count(), 0);
        assert_eq!(c.programs(Some("globex")).count(), 1);
        for bad in [
            "-c",
            "--root=/etc",
            "--root=/srv/tenants/acme/../../etc",
            "--root=/srv/tenants/acme --verbose",
            "--verbose\n--root=/etc",
            "x--verbose",
        ] {
            assert!(
                c.resolve("acme", "files", &[bad.to_owned()], &none)
                    .is_err(),
                "{bad:?} must be refused"
            );
        }
        assert!(matches!(
            c.resolve("acme", "files", &[], &env(&[("LD_PRELOAD", "/tmp/x.so")])),
            Err(Refusal::EnvNotAllowed { .. })
        ));
        assert!(matches!(
            c.resolve("acme", "files", &[], &env(&[("API_KEY", "mine")])),
            Err(Refusal::EnvNotAllowed { .. })
        ));
        assert!(matches!(
            c.resolve("acme", "files", &[], &env(&[("FILES_MODE", "rwx")])),
            Err(Refusal::EnvValueNotAllowed { .. })
        ));
        let many: Vec<String> = (0..65).map(|_| "--verbose".to_owned()).collect();
        assert_eq!(
            c.resolve("acme", "files", &many, &none).unwrap_err(),
            Refusal::TooMuch
        );
    }

    #[test]
    fn refusals_never_echo_values() {
        let c = catalog();
        let secret = "sk_live_do_not_echo";
        for refusal in [
            c.resolve("acme", "files", &[secret.to_owned()], &BTreeMap::new()),
            c.resolve("acme", "files", &[], &env(&[("FILES_MODE", secret)])),
            c.resolve("acme", "files", &[], &env(&[("OTHER", secret)])),
        ] {
            assert!(!refusal.unwrap_err().to_string().contains(secret));
        }
    }

    #[test]
    fn the_operator_cannot_hand_tenants_the_loader() {
        for (name, command) in [
            ("LD_PRELOAD", "/bin/x"),
            ("PATH", "/bin/x"),
            ("PYTHONPATH", "/bin/x"),
        ] {
            let entry = ProgramConfig {
                command: command.into(),
                tenant_env: [(name.to_owned(), ".*".to_owned())].into(),
                ..Default::default()
            };
            let entries = [("p".to_owned(), entry)].into();
            assert!(Catalog::build(&entries, None).is_err(), "{name}");
        }
        let relative = ProgramConfig {
            command: "sh".into(),
            ..Default::default()
        };
        let entries = [("p".to_owned(), relative)].into();
        assert!(Catalog::build(&entries, None).is_err());
    }

    #[test]
    fn a_sandbox_table_with_an_unknown_protection_a_relative_path_or_a_zero_limit_is_refused() {
        let bad = [
            SandboxEntry {
                allow_missing: vec!["firewall".into()],
                ..Default::default()
            },
            SandboxEntry {
                read: vec!["srv/tools".into()],
                ..Default::default()
            },
            SandboxEntry {
                write: vec!["/srv/../etc".into()],
                ..Default::default()
            },
            SandboxEntry {
                folder_mb: 0,
                ..Default::default()
            },
            SandboxEntry {
                limits: portcullis_sandbox::Limits {
                    processes: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for sandbox in bad {
            let mut entries = BTreeMap::new();
            entries.insert(
                "files".to_owned(),
                ProgramConfig {
                    command: "/usr/bin/files-server".into(),
                    sandbox: sandbox.clone(),
                    ..Default::default()
                },
            );
            assert!(Catalog::build(&entries, None).is_err(), "{sandbox:?}");
        }
        let mut entries = BTreeMap::new();
        entries.insert(
            "files".to_owned(),
            ProgramConfig {
                command: "/usr/bin/files-server".into(),
                sandbox: SandboxEntry {
                    allow_missing: vec!["network".into(), "user".into()],
                    read: vec!["/srv/tools".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let catalog = Catalog::build(&entries, None).expect("valid");
        let entry = catalog.get("files").expect("entry");
        assert!(
            entry
                .confinement
                .allow_missing
                .contains(&portcullis_sandbox::Protection::Network)
        );
    }
}
