//! Each launched program in its own locked room: the escape probe (`portcullis demo-upstream
//! --probe`, a real confined upstream) tries every way out, under full confinement and under
//! degraded modes, and what it observes must match the protections the gateway reports; the
//! gateway keeps serving another tenant throughout. Then supervision: a program over a limit,
//! or one that stops answering, is killed, audited and restarted.

use crate::support::*;
use portcullis_sandbox::Protection;
use portcullis_server::admin::connections::{ConnectionIn, ConnectionState};
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::config::Config;
use portcullis_server::programs::{ProgramConfig, SandboxEntry};
use portcullis_server::upstream::{ConnectionSpec, Transport};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use Protection::*;

/// The probe's catalog entry: this binary's `demo-upstream --probe`, allowed to start without
/// whatever this host (or the test's `off`) cannot give.
fn probe_program(off: &BTreeSet<Protection>, read: Vec<PathBuf>) -> ProgramConfig {
    let host = portcullis_sandbox::Host::detect(BTreeSet::new());
    let mut allow: BTreeSet<Protection> = Protection::ALL
        .into_iter()
        .filter(|p| !host.offers().contains(p))
        .collect();
    allow.extend(off.iter().copied());
    if allow.contains(&User) {
        allow.insert(Processes);
    }
    if allow.contains(&Filesystem) {
        allow.insert(Signals);
    }
    ProgramConfig {
        command: BIN.into(),
        args: vec!["demo-upstream".into(), "--probe".into()],
        description: "the sandbox escape probe".into(),
        tenants: vec!["*".into()],
        sandbox: SandboxEntry {
            read,
            allow_missing: allow.iter().map(|p| p.name().to_owned()).collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Switch protections off on the gateway; the demo upstream may start without them.
fn switch_off(config: &mut Config, off: &BTreeSet<Protection>) {
    config.sandbox.off = off.iter().map(|p| p.name().to_owned()).collect();
    let demo = config.programs.get_mut("demo").expect("the demo entry");
    demo.sandbox
        .allow_missing
        .extend(off.iter().map(|p| p.name().to_owned()));
}

/// The probe as a `probe` connection, its one tool a read.
fn probe_connection() -> ConnectionIn {
    ConnectionIn {
        name: "probe".into(),
        spec: ConnectionSpec::new(
            Transport::Stdio {
                program: "probe".into(),
                args: Vec::new(),
                env: Default::default(),
            },
            [(
                "attempt".to_owned(),
                portcullis_core::effect::EffectClass::Read,
            )]
            .into(),
        ),
        redaction: Default::default(),
    }
}

/// Add the probe as a tenant's `probe` connection, granted to its agent; its id.
async fn add_probe(app: &TestApp, tenant: &Tenant) -> String {
    add_connection(app, tenant, &probe_connection()).await
}

/// One escape attempt through the gateway, as the tenant's agent.
async fn attempt(client: &Client, escape: &str, target: &str) -> (bool, String) {
    let result = client
        .try_call(
            "probe__attempt",
            json!({ "escape": escape, "target": target }),
        )
        .await
        .unwrap_or_else(|e| panic!("{escape} {target}: {e}"));
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{escape}: the probe's answer: {result:?}"));
    (
        body["blocked"].as_bool().expect("blocked"),
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The probe connection's protections, as `connections list` reports them.
async fn reported(
    app: &TestApp,
    tenant: &str,
    connection: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let list = app
        .api_as(&app.admin_token)
        .list_connections(tenant)
        .await
        .expect("connections");
    let view = list
        .into_iter()
        .find(|c| c.id.as_str() == connection)
        .expect("the probe connection is listed");
    let report = view.sandbox.expect("a launched program has a report");
    let names = |set: &BTreeSet<Protection>| set.iter().map(|p| p.name().to_owned()).collect();
    (names(&report.active), names(&report.missing))
}

/// Every escape, with the protections any one of which must stop it. When one of them is
/// reported active the attempt must be blocked; when none is, the probe must get through
/// (the report is exact, not merely cautious).
struct Escape {
    name: &'static str,
    escape: &'static str,
    target: String,
    stopped_by: &'static [Protection],
}

/// What the escapes aim at.
struct Targets {
    /// A folder open to everyone (0777), outside the program's own.
    open_dir: PathBuf,
    data_dir: PathBuf,
    key_file: PathBuf,
    gateway: std::net::SocketAddr,
    gateway_pid: u32,
    other_room: PathBuf,
    own_room: PathBuf,
}

fn escapes(t: &Targets) -> Vec<Escape> {
    let (dir, gateway_pid, other_room, own_room) = (
        t.open_dir.as_path(),
        t.gateway_pid,
        t.other_room.as_path(),
        t.own_room.as_path(),
    );
    let mut list = vec![
        Escape {
            name: "write outside its folder (an open test folder)",
            escape: "write_file",
            target: dir.join("escaped").display().to_string(),
            stopped_by: &[Filesystem],
        },
        Escape {
            name: "write to /tmp",
            escape: "write_file",
            target: format!("/tmp/portcullis-escaped-{gateway_pid}"),
            stopped_by: &[Filesystem],
        },
        Escape {
            name: "read another tenant's folder",
            escape: "read_file",
            target: other_room.join("secret.txt").display().to_string(),
            stopped_by: &[Filesystem, User],
        },
        Escape {
            name: "list the gateway's data folder",
            escape: "list_folder",
            target: t.data_dir.display().to_string(),
            stopped_by: &[Filesystem, User],
        },
        Escape {
            name: "read the gateway's key file",
            escape: "read_file",
            target: t.key_file.display().to_string(),
            stopped_by: &[Filesystem, User],
        },
        Escape {
            name: "read the gateway's environment",
            escape: "read_file",
            target: format!("/proc/{gateway_pid}/environ"),
            stopped_by: &[Filesystem, User],
        },
        Escape {
            name: "open a socket to the gateway",
            escape: "connect_tcp",
            target: t.gateway.to_string(),
            stopped_by: &[Network],
        },
        Escape {
            name: "fork without bound",
            escape: "fork_many",
            target: "200".into(),
            stopped_by: &[Processes],
        },
        Escape {
            name: "exceed memory",
            escape: "allocate",
            target: "8192".into(),
            stopped_by: &[Limits],
        },
        Escape {
            name: "ptrace the gateway",
            escape: "ptrace",
            target: gateway_pid.to_string(),
            stopped_by: &[Seccomp, User, Filesystem],
        },
        Escape {
            name: "signal the gateway",
            escape: "signal",
            target: gateway_pid.to_string(),
            stopped_by: &[User, Signals],
        },
        Escape {
            name: "load a kernel module",
            escape: "load_module",
            target: String::new(),
            stopped_by: &[Capabilities, Seccomp],
        },
        Escape {
            name: "a system call under its x32 number",
            escape: "x32",
            target: String::new(),
            stopped_by: &[Seccomp],
        },
        Escape {
            name: "mount a file system",
            escape: "mount",
            target: own_room.display().to_string(),
            stopped_by: &[Capabilities, Seccomp],
        },
    ];
    let postgres = Path::new("/var/run/postgresql/.s.PGSQL.5432");
    if postgres.exists() {
        list.push(Escape {
            name: "reach the database's unix socket",
            escape: "connect_unix",
            target: postgres.display().to_string(),
            stopped_by: &[Seccomp],
        });
    }
    list
}

/// A setuid-root copy of `id` in a folder the probe may read (only when the tests run as
/// root, the one case where it could raise privileges).
fn setuid_id(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if gateway_uid() != "0" {
        return None;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).ok()?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).ok()?;
    let id = bin.join("id");
    std::fs::copy("/usr/bin/id", &id).ok()?;
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).ok()?;
    Some(id)
}

/// Run the whole probe under `off` (protections switched off on the gateway) and check that
/// every attempt matches the report.
async fn probe_under(off: &[Protection]) {
    let off: BTreeSet<Protection> = off.iter().copied().collect();
    let bin = tempfile::tempdir().expect("bin dir");
    open_to_programs(bin.path());
    let setuid = setuid_id(bin.path());
    let read = vec![bin.path().join("bin")];
    let app = TestApp::spawn_with(|config: &mut Config| {
        switch_off(config, &off);
        config
            .programs
            .insert("probe".into(), probe_program(&off, read));
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    let acme_probe = add_probe(&app, &acme).await;
    let globex_probe = add_probe(&app, &globex).await;
    app.wait_ready(&acme_probe).await;
    app.wait_ready(&globex_probe).await;
    let sandbox = app.state.upstreams.sandbox();
    let other_room = sandbox.room(&globex_probe.parse().expect("id"));
    std::fs::write(other_room.join("secret.txt"), "globex's own").expect("globex's file");
    let own_room = sandbox.room(&acme_probe.parse().expect("id"));

    let (active, missing) = reported(&app, "acme", &acme_probe).await;
    let expected_missing: BTreeSet<String> = off.iter().map(|p| p.name().to_owned()).collect();
    assert!(
        expected_missing.is_subset(&missing),
        "switched off {expected_missing:?}, reported missing {missing:?}"
    );
    assert!(active.is_disjoint(&missing));
    for always in ["no-new-privs", "environment", "process-group"] {
        assert!(
            active.contains(always),
            "{always} is always given: {active:?}"
        );
    }

    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let neighbour = app
        .client("globex", &globex.agent_token, Era::Initialize)
        .await;
    let targets = Targets {
        open_dir: app.dir.path().to_path_buf(),
        data_dir: app.data_dir(),
        key_file: app.state.config.key_file(),
        gateway: app.addr,
        gateway_pid: std::process::id(),
        other_room: other_room.clone(),
        own_room: own_room.clone(),
    };
    check_escapes(&client, &targets, &active, &neighbour, "probe__attempt").await;
    let served = neighbour.call("crm__list_contacts", json!({})).await;
    assert_ne!(
        served.is_error,
        Some(true),
        "globex's CRM after the escapes"
    );
    check_whoami(&client, &active, &gateway_uid()).await;
    // A setuid-root binary gives nothing back.
    if let Some(id) = setuid {
        let (_, euid) = attempt_run(&client, &id).await;
        let (_, facts) = attempt(&client, "whoami", "").await;
        if !facts.contains("Uid: 0 ") {
            assert_ne!(euid, "0", "a setuid-root binary ran as root");
        }
    }

    // /healthz reports the same, per connection, to an admin; counts only to anyone.
    let anonymous: Value = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(anonymous["status"], "ok");
    assert!(
        anonymous["sandbox"].get("connections").is_none(),
        "{anonymous}"
    );
    let as_admin: Value = app
        .http
        .get(format!("{}/healthz", app.base))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    let entry = as_admin["sandbox"]["connections"]
        .as_array()
        .expect("connections for an admin")
        .iter()
        .find(|c| c["connection"] == acme_probe.as_str())
        .cloned()
        .expect("the probe is listed");
    let listed: BTreeSet<String> = serde_json::from_value(entry["active"].clone()).expect("names");
    assert_eq!(listed, active);
}

/// Every escape through `client`; blocked exactly when the report says a protection that
/// stops it is active; `neighbour` (another tenant) served after each.
async fn check_escapes(
    client: &Client,
    targets: &Targets,
    active: &BTreeSet<String>,
    neighbour: &Client,
    neighbour_tool: &str,
) {
    let mut mismatches = Vec::new();
    for escape in escapes(targets) {
        let (blocked, detail) = attempt(client, escape.escape, &escape.target).await;
        if escape.escape == "x32" && active.contains("seccomp") {
            // The filter must see it before the kernel says it has no such call.
            assert!(detail.contains("os error 1)"), "x32 call: {detail}");
        }
        if detail.contains("os error 38") {
            // This kernel has no such mechanism at all (no module support): nothing to see.
            continue;
        }
        let guarded = escape.stopped_by.iter().any(|p| active.contains(p.name()));
        if blocked != guarded {
            mismatches.push(format!(
                "{}: blocked={blocked} ({detail}) but the report makes it {} (active {active:?})",
                escape.name,
                if guarded { "blocked" } else { "possible" }
            ));
        }
        // The other tenant is served after every attempt.
        let served = neighbour
            .try_call(neighbour_tool, json!({ "escape": "whoami" }))
            .await
            .unwrap_or_else(|e| panic!("the other tenant after {}: {e}", escape.name));
        assert_ne!(
            served.is_error,
            Some(true),
            "the other tenant after {}",
            escape.name
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// What the process is, from its own /proc entry, matches the report.
async fn check_whoami(client: &Client, active: &BTreeSet<String>, gateway_uid: &str) {
    let (_, facts) = attempt(client, "whoami", "").await;
    let field = |name: &str| {
        facts
            .split("; ")
            .find_map(|f| f.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let own_user = field("Uid: ") != "0" && field("Uid: ") != gateway_uid;
    assert_eq!(own_user, active.contains("user"), "{facts}");
    assert_eq!(field("NoNewPrivs: "), "1", "{facts}");
    assert_eq!(
        field("Seccomp: ") == "2",
        active.contains("seccomp"),
        "{facts}"
    );
    if active.contains("capabilities") {
        assert_eq!(field("CapEff: "), "0000000000000000", "{facts}");
    }
}

fn gateway_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

async fn attempt_run(client: &Client, program: &Path) -> (bool, String) {
    let result = client
        .try_call(
            "probe__attempt",
            json!({ "escape": "run", "target": program.display().to_string(), "args": ["-u"] }),
        )
        .await
        .expect("run");
    let text = result.content[0].as_text().expect("text").text.clone();
    let body: Value = serde_json::from_str(&text).expect("json");
    (
        body["blocked"].as_bool().unwrap_or_default(),
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fully_confined_probe_escapes_nowhere_and_the_report_says_so() {
    probe_under(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_landlock_network_or_seccomp_the_probe_sees_exactly_what_the_report_admits() {
    probe_under(&[Filesystem, Signals, Network, Seccomp]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_its_own_user_the_probe_sees_exactly_what_the_report_admits() {
    probe_under(&[User, Processes]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_protection_the_catalog_entry_does_not_allow_keeps_the_program_from_starting() {
    let app = TestApp::spawn_with(|config: &mut Config| {
        switch_off(config, &BTreeSet::from([Network]));
        let mut entry = probe_program(&BTreeSet::new(), Vec::new());
        entry.sandbox.allow_missing.retain(|p| p != "network");
        config.programs.insert("probe".into(), entry);
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let probe = add_probe(&app, &acme).await;
    let api = app.api_as(&app.admin_token);
    eventually("the probe refused", || async {
        let list = api.list_connections("acme").await.expect("list");
        list.iter().any(|c| {
            c.id.as_str() == probe
                && matches!(&c.status, ConnectionState::Down { reason, .. } if reason.contains("without network"))
        })
    })
    .await;
    let events = app.audit_events("acme").await;
    assert!(
        events.iter().any(|e| e["kind"] == "config_refused"
            && e["detail"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("network"))),
        "{events:?}"
    );
    assert!(
        !app.state
            .upstreams
            .confinements()
            .iter()
            .any(|(_, id, _)| id.as_str() == probe)
    );
}

/// A probe whose limits are tightened by `limit`; returns the app, tenant, connection and
/// an agent client.
async fn limited(
    limit: impl FnOnce(&mut SandboxEntry),
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, Tenant, String, Client) {
    let app = TestApp::spawn_with(|config: &mut Config| {
        let mut entry = probe_program(&BTreeSet::new(), Vec::new());
        limit(&mut entry.sandbox);
        config.programs.insert("probe".into(), entry);
        tweak(config);
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let probe = add_probe(&app, &acme).await;
    app.wait_ready(&probe).await;
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    (app, acme, probe, client)
}

/// Wait for the `upstream_exited` event of `connection`; its detail.
async fn exit_event(app: &TestApp, tenant: &str, connection: &str) -> Value {
    let resource = format!("connection:{connection}");
    let found = std::sync::Mutex::new(Value::Null);
    eventually("an upstream_exited event", || async {
        let events = app.audit_events(tenant).await;
        match events
            .iter()
            .find(|e| e["kind"] == "upstream_exited" && e["resource"] == resource.as_str())
        {
            Some(e) => {
                *found.lock().expect("lock") = e["detail"].clone();
                true
            }
            None => false,
        }
    })
    .await;
    found.into_inner().expect("lock")
}

async fn restarted(app: &TestApp, client: &Client, probe: &str) {
    app.wait_ready(probe).await;
    eventually("the restarted probe answers", || async {
        client
            .try_call("probe__attempt", json!({ "escape": "whoami" }))
            .await
            .is_ok_and(|r| r.is_error != Some(true))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_program_over_its_cpu_time_is_killed_audited_and_restarted() {
    let (app, _acme, probe, client) = limited(|s| s.limits.cpu_seconds = 1, |_| {}).await;
    let _ = client
        .try_call(
            "probe__attempt",
            json!({ "escape": "spin", "target": "20" }),
        )
        .await;
    let detail = exit_event(&app, "acme", &probe).await;
    assert_eq!(detail["limit"], "cpu_seconds", "{detail}");
    restarted(&app, &client, &probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_program_writing_past_its_file_size_is_killed_audited_and_restarted() {
    let (app, _acme, probe, client) = limited(|s| s.limits.file_size_mb = 1, |_| {}).await;
    let _ = client
        .try_call("probe__attempt", json!({ "escape": "fill", "target": "4" }))
        .await;
    let detail = exit_event(&app, "acme", &probe).await;
    assert_eq!(detail["limit"], "file_size_mb", "{detail}");
    restarted(&app, &client, &probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_program_filling_its_folder_past_the_cap_is_killed_audited_and_restarted() {
    let (app, _acme, probe, client) = limited(|s| s.folder_mb = 2, |_| {}).await;
    let (blocked, detail) = attempt(&client, "fill", "6").await;
    assert!(!blocked, "{detail}");
    let detail = exit_event(&app, "acme", &probe).await;
    assert_eq!(detail["limit"], "folder_mb", "{detail}");
    restarted(&app, &client, &probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_program_is_killed_audited_and_restarted() {
    let (app, _acme, probe, client) = limited(
        |_| {},
        |config| {
            config.upstream.call_timeout_secs = 2;
            config.upstream.ping_interval_secs = 1;
            config.upstream.ping_timeout_secs = 1;
        },
    )
    .await;
    let _ = client
        .try_call("probe__attempt", json!({ "escape": "freeze" }))
        .await;
    let detail = exit_event(&app, "acme", &probe).await;
    assert!(
        detail["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not answering")),
        "{detail}"
    );
    assert_eq!(detail["exit"], format!("signal {}", 9), "{detail}");
    restarted(&app, &client, &probe).await;
}

/// A loopback echo server (the destination a program granted egress may reach).
async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_program_granted_egress_reaches_only_what_the_egress_policy_allows_through_the_proxy() {
    let echo = echo_server().await;
    let other_port = echo_server().await;
    let app = TestApp::spawn_with(|config: &mut Config| {
        let mut entry = probe_program(&BTreeSet::new(), Vec::new());
        entry.sandbox.network = portcullis_server::programs::NetworkGrant::Egress;
        // The echo server's port only (the default allows 443 only).
        entry.sandbox.egress_ports = vec![echo.port()];
        config.programs.insert("probe".into(), entry);
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let probe = add_probe(&app, &acme).await;
    app.wait_ready(&probe).await;
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let report = app
        .state
        .upstreams
        .confinement(&probe.parse().expect("id"))
        .expect("report");
    assert!(report.egress, "{report:?}");

    // Allowed (the operator admits loopback in the tests): through the proxy, both ways.
    let (blocked, detail) = attempt(&client, "through_proxy", &echo.to_string()).await;
    assert!(!blocked, "{detail}");
    assert!(
        detail.contains("200") && detail.contains("echo: ping"),
        "{detail}"
    );

    let network = report.active.contains(&Network);
    // Around the proxy: only where the program has the host's network.
    let (blocked, detail) = attempt(&client, "connect_tcp", &echo.to_string()).await;
    assert_eq!(blocked, network, "{detail}");

    // Refused by the egress policy, answered 403 and audited: a port the entry does not
    // allow, a private address the operator did not admit, the gateway's own listener, a
    // name that does not resolve, and a target that is not a host:port.
    for target in [
        other_port.to_string(),
        "10.11.12.13:443".to_owned(),
        app.addr.to_string(),
        "no-such-host.invalid:443".to_owned(),
        "example.com/../x:443".to_owned(),
    ] {
        let (blocked, detail) = attempt(&client, "through_proxy", &target).await;
        assert!(blocked, "{target}: {detail}");
        assert!(detail.contains("403"), "{target}: {detail}");
    }
    let events = app.audit_events("acme").await;
    let refusals = events
        .iter()
        .filter(|e| e["kind"] == "egress_refused" && e["detail"]["via"] == "program egress proxy")
        .count();
    assert_eq!(refusals, 5, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_action_survives_its_upstream_crashing_and_runs_once_on_the_restarted_one() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Initialize).await;
    let send = json!({ "to": "ada@example.com", "subject": "Hi", "body": "Hello" });
    let held = client.call("crm__send_email", send.clone()).await;
    let id = approval_id(&held);

    let connection = acme.connection_id.parse().expect("id");
    let pid = app
        .state
        .upstreams
        .program_pid(&connection)
        .expect("the demo runs");
    // A crash: killed from outside, not asked to stop.
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    let detail = exit_event(&app, "acme", &acme.connection_id).await;
    assert_eq!(detail["exit"], "signal 9", "{detail}");
    eventually("a new demo process", || async {
        app.state
            .upstreams
            .program_pid(&connection)
            .is_some_and(|now| now != pid)
    })
    .await;
    app.wait_ready(&acme.connection_id).await;

    eventually("the restarted demo answers a read", || async {
        client
            .try_call("crm__get_contact", json!({ "id": "c_1" }))
            .await
            .is_ok_and(|r| r.is_error != Some(true))
    })
    .await;

    app.approve(&acme, &id).await;
    let executed = client.call("crm__send_email", send).await;
    assert_eq!(structured(&executed)["status"], "sent", "{executed:?}");
    assert_eq!(
        effect_lines(&acme.effect_log).len(),
        1,
        "executed exactly once"
    );
}

/// A tenant with a probe connection, an agent granted it and the agent's token, made through
/// the admin API of any gateway; (connection id, agent token).
async fn probe_tenant(api: &AdminClient, name: &str) -> (String, String) {
    use portcullis_server::admin::tenants::NameIn;
    use portcullis_server::admin::tokens::TokenIn;
    api.create_tenant(&NameIn { name: name.into() })
        .await
        .expect("tenant");
    let connection = api
        .create_connection(name, &probe_connection())
        .await
        .expect("probe connection");
    let agent = api
        .create_agent(
            name,
            &NameIn {
                name: "agent".into(),
            },
        )
        .await
        .expect("agent");
    api.add_grant(
        name,
        &GrantIn {
            agent: agent.id.to_string(),
            connection: connection.id.to_string(),
            tool: "*".into(),
        },
    )
    .await
    .expect("grant");
    let token = api
        .create_token(name, agent.id.as_str(), &TokenIn::default())
        .await
        .expect("token");
    (connection.id.to_string(), token.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_that_is_not_root_confines_with_what_it_has_and_the_probe_sees_exactly_that() {
    // Root is needed to start the gateway as someone else; a suite run by a user other
    // than root runs every other test in this mode already.
    if gateway_uid() != "0" {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    const USER: u32 = 1_999_100_000;
    let root = tempfile::tempdir().expect("root");
    open_to_programs(root.path());
    // The binary where that user can run it (this one lives under root's home).
    let bin_dir = root.path().join("bin");
    std::fs::create_dir(&bin_dir).expect("bin");
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = bin_dir.join("portcullis");
    // A second name for the same file (a copy would be open for writing while other tests
    // fork, and its exec would then fail with "text file busy"); a copy only across devices.
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).expect("copy the binary");
    }
    let data = root.path().join("data");
    std::fs::create_dir(&data).expect("data");
    std::os::unix::fs::chown(&data, Some(USER), Some(USER)).expect("chown");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let rooms = root.path().join("rooms");
    let mut allow = host_missing();
    allow.extend(["user", "processes", "network"].map(str::to_owned));
    let toml = format!(
        "[programs.probe]\ncommand = {bin:?}\nargs = [\"demo-upstream\", \"--probe\"]\ntenants = [\"*\"]\n[programs.probe.sandbox]\nallow_missing = {allow:?}\n"
    );
    let rooms_env = rooms.display().to_string();
    let gateway = ServeProcess::start_custom(
        root.path(),
        &data,
        None,
        &[("PORTCULLIS_SANDBOX__ROOMS", rooms_env.as_str())],
        Custom {
            bin: &bin,
            toml: &toml,
            uid: Some(USER),
        },
    )
    .await;
    let api = AdminClient::new(&gateway.base, gateway.admin_token.clone().expect("token"));
    let (acme_probe, acme_token) = probe_tenant(&api, "acme").await;
    let (globex_probe, globex_token) = probe_tenant(&api, "globex").await;
    wait_connection_ready(&api, "acme", &acme_probe).await;
    wait_connection_ready(&api, "globex", &globex_probe).await;
    let other_room = rooms.join(&globex_probe);
    std::fs::write(other_room.join("secret.txt"), "globex's own").expect("globex's file");

    let view = api
        .list_connections("acme")
        .await
        .expect("connections")
        .into_iter()
        .find(|c| c.id.as_str() == acme_probe)
        .expect("listed");
    let report = view.sandbox.expect("report");
    assert!(
        report.missing.contains(&User) && report.missing.contains(&Processes),
        "{report:?}"
    );
    let active: BTreeSet<String> = report.active.iter().map(|p| p.name().to_owned()).collect();

    let client = connect(&gateway.mcp_url("acme"), &acme_token, Era::Initialize)
        .await
        .expect("client");
    let neighbour = connect(&gateway.mcp_url("globex"), &globex_token, Era::Initialize)
        .await
        .expect("client");
    let targets = Targets {
        open_dir: root.path().to_path_buf(),
        data_dir: data.clone(),
        key_file: data.join("keys.json"),
        gateway: gateway
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("address"),
        gateway_pid: gateway.pid().expect("pid"),
        other_room,
        own_room: rooms.join(&acme_probe),
    };
    check_escapes(&client, &targets, &active, &neighbour, "probe__attempt").await;
    check_whoami(&client, &active, &USER.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_gateway_on_the_same_program_users_launches_nothing() {
    if gateway_uid() != "0" {
        return; // the users are only handed out by a gateway running as root
    }
    // This process holds the default range once one of its gateways launched a program.
    let app = TestApp::spawn().await;
    app.seed_tenant("acme").await;
    let root = tempfile::tempdir().expect("root");
    let data = root.path().join("data");
    let mut allow = host_missing();
    allow.push("filesystem".into());
    let toml = format!(
        "[programs.probe]\ncommand = {BIN:?}\nargs = [\"demo-upstream\", \"--probe\"]\ntenants = [\"*\"]\n[programs.probe.sandbox]\nallow_missing = {allow:?}\n"
    );
    let gateway = ServeProcess::start_custom(
        root.path(),
        &data,
        None,
        &[("PORTCULLIS_SANDBOX__UID_BASE", "1500000000")],
        Custom {
            bin: Path::new(BIN),
            toml: &toml,
            uid: None,
        },
    )
    .await;
    let api = AdminClient::new(&gateway.base, gateway.admin_token.clone().expect("token"));
    let (probe, _) = probe_tenant(&api, "acme").await;
    eventually("the launch refused for the shared users", || async {
        api.list_connections("acme").await.is_ok_and(|list| {
            list.iter().any(|c| {
                c.id.as_str() == probe
                    && matches!(&c.status, ConnectionState::Down { reason, .. }
                        if reason.contains("another gateway on this host gives its programs the users from 1500000000"))
            })
        })
    })
    .await;
}
