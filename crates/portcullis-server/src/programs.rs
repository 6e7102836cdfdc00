//! The operator's program catalog: the only programs a stdio connection may launch.
//!
//! INVARIANT: only the operator chooses what runs on the host. The catalog lives in the
//! server's configuration file (`[programs.NAME]`): each entry fixes the executable (an
//! absolute path), its leading arguments and environment, and says which extra arguments and
//! which environment variables a tenant may set, each with a pattern its value must match as
//! a whole. A tenant admin picks an entry by name and fills in only those; nothing a tenant
//! sends can name an executable, an interpreter flag, or a value outside an entry's patterns.
//! Every tenant value is also refused when it holds control characters or a `..` path
//! segment, whatever the patterns say. What the launched program may do once running
//! (confinement) is a separate matter, see ARCHITECTURE.md.

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
    "BASH_ENV",
    "ENV",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "CLASSPATH",
    "IFS",
];
const LOADER_PREFIXES: &[&str] = &["LD_", "DYLD_", "PYTHON", "GCONV_", "MALLOC_"];

/// A validated entry.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    tenant_args: Vec<Regex>,
    tenant_env: BTreeMap<String, Regex>,
    pub description: String,
}

/// What a launch needs: the entry's fixed parts plus the tenant's checked values.
#[derive(Debug, Clone)]
pub struct Launch {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
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
    #[error("program `{0}` is not in this server's catalog (`portcullis programs` lists it)")]
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

    pub fn programs(&self) -> impl Iterator<Item = &Program> {
        self.programs.values()
    }

    /// Check a tenant's choice and produce what to launch.
    pub fn resolve(
        &self,
        program: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<Launch, Refusal> {
        let entry = self
            .programs
            .get(program)
            .ok_or_else(|| Refusal::UnknownProgram(program.chars().take(64).collect()))?;
        entry.resolve(args, env)
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

/// A pattern that must match a whole value.
fn whole(pattern: &str, what: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$"))
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
        let tenant_args = entry
            .tenant_args
            .iter()
            .map(|p| whole(p, &format!("{what}.tenant_args")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tenant_env = BTreeMap::new();
        for (key, pattern) in &entry.tenant_env {
            if !valid_env_name(key) {
                return Err(format!("{what}: `{key}` is not a valid variable name"));
            }
            if loader_variable(key) {
                return Err(format!(
                    "{what}: tenants may not set `{key}`: it changes how programs load code"
                ));
            }
            tenant_env.insert(
                key.clone(),
                whole(pattern, &format!("{what}.tenant_env.{key}"))?,
            );
        }
        Ok(Self {
            name: name.to_owned(),
            command,
            args: entry.args.clone(),
            env: entry.env.clone(),
            tenant_args,
            tenant_env,
            description: entry.description.clone(),
        })
    }

    /// Names of the variables a tenant may set.
    pub fn tenant_env_names(&self) -> impl Iterator<Item = &str> {
        self.tenant_env.keys().map(String::as_str)
    }

    /// The patterns a tenant's extra arguments must match (as written, anchored).
    pub fn tenant_arg_patterns(&self) -> impl Iterator<Item = &str> {
        self.tenant_args.iter().map(Regex::as_str)
    }

    fn resolve(&self, args: &[String], env: &BTreeMap<String, String>) -> Result<Launch, Refusal> {
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
            if !self.tenant_args.iter().any(|p| p.is_match(arg)) {
                return Err(Refusal::ArgumentNotAllowed {
                    program: self.name.clone(),
                    position: i + 1,
                });
            }
        }
        let mut full_env = self.env.clone();
        for (name, value) in env {
            let Some(pattern) = self.tenant_env.get(name) else {
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
                tenant_args: vec!["--root=/srv/tenants/[a-z0-9-]+".into(), "--verbose".into()],
                tenant_env: [("FILES_MODE".to_owned(), "ro|rw".to_owned())].into(),
                description: "files".into(),
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
            c.resolve("sh", &[], &none),
            Err(Refusal::UnknownProgram(_))
        ));
        for bad in [
            "-c",
            "--root=/etc",
            "--root=/srv/tenants/acme/../../etc",
            "--root=/srv/tenants/acme --verbose",
            "--verbose\n--root=/etc",
            "x--verbose",
        ] {
            assert!(
                c.resolve("files", &[bad.to_owned()], &none).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert!(matches!(
            c.resolve("files", &[], &env(&[("LD_PRELOAD", "/tmp/x.so")])),
            Err(Refusal::EnvNotAllowed { .. })
        ));
        assert!(matches!(
            c.resolve("files", &[], &env(&[("API_KEY", "mine")])),
            Err(Refusal::EnvNotAllowed { .. })
        ));
        assert!(matches!(
            c.resolve("files", &[], &env(&[("FILES_MODE", "rwx")])),
            Err(Refusal::EnvValueNotAllowed { .. })
        ));
        let many: Vec<String> = (0..65).map(|_| "--verbose".to_owned()).collect();
        assert_eq!(
            c.resolve("files", &many, &none).unwrap_err(),
            Refusal::TooMuch
        );
    }

    #[test]
    fn refusals_never_echo_values() {
        let c = catalog();
        let secret = "sk_live_do_not_echo";
        for refusal in [
            c.resolve("files", &[secret.to_owned()], &BTreeMap::new()),
            c.resolve("files", &[], &env(&[("FILES_MODE", secret)])),
            c.resolve("files", &[], &env(&[("OTHER", secret)])),
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
}
