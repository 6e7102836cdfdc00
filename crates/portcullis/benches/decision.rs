//! From a human's decision in the console to the agent's MCP task completing. The agent (rmcp,
//! 2026-07-28, declaring the tasks extension) calls a held tool (the demo upstream's
//! `issue_refund`, classified `spend`) and gets a task whose id is the approval id; an
//! approver signed in to the console approves it with the inbox's form; the agent's next
//! `tasks/get` runs the refund on the upstream, exactly once, and returns its result. All of
//! it real processes on loopback, the gateway on its embedded defaults (SQLite WAL,
//! synchronous=FULL: every decision and execution is a durable audit entry).
//!
//! Measured per decision: (a) the approve form's POST until its 303 (the decision has landed),
//! (b) the agent's next `tasks/get` until it returns `completed`, (c) both: decision sent →
//! completed task received. For context: the hold itself (`tools/call` → task) and the same
//! form refused after its checks (`decision=maybe`: the session's last-use write, CSRF, tenant
//! and approval reads; no decision).
//!
//! Run: `cargo bench -p portcullis --bench decision` (options: `-- --decisions N --warmup W
//! --settle-ms MS`; the last, 100 by default, 0 for none, adds a pass whose agent asks MS after
//! the decision: (b) "cold", as a polling agent's request finds the gateway idle).
//! Prints a Markdown table for BENCHMARKS.md.

mod common;

use common::{Proc, arg, client_with, gateway_env, seed_tenant, stats, upstream_leg};
use portcullis_core::account::{STEP_SECS, TotpSecret};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig, GetTaskParams,
    Implementation, TaskPayload, TaskStatus,
};
use rmcp::service::RunningService;
use rmcp::{ClientHandler, RoleClient};
use serde_json::json;
use std::time::{Duration, Instant};

/// The console's session cookie.
const COOKIE: &str = "__Host-portcullis_session";
const TENANT: &str = "bench";
const APPROVER: &str = "bench-approver";
const PASSWORD: &str = "bench-approver correct horse battery";

/// An agent that declares the tasks extension: a held call is answered with a task.
#[derive(Clone)]
struct TaskClient;

impl ClientHandler for TaskClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        let mut extensions = rmcp::model::ExtensionCapabilities::new();
        extensions.insert(
            rmcp::model::TASKS_EXTENSION_ID.to_owned(),
            Default::default(),
        );
        capabilities.extensions = Some(extensions);
        ClientConfig::new(capabilities, Implementation::new("bench-task-client", "1"))
    }
}

type Agent = RunningService<RoleClient, TaskClient>;

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form_body(fields: &[(&str, &str)]) -> String {
    // The URL library's own `application/x-www-form-urlencoded` serialiser.
    reqwest::Url::parse_with_params("http://form.invalid/", fields)
        .expect("a constant base URL")
        .query()
        .unwrap_or_default()
        .to_owned()
}

/// The console as a browser without script uses it: no cookie store, no redirects followed.
struct Console {
    http: reqwest::Client,
    base: String,
    /// `name=value` for the `Cookie` header.
    cookie: String,
    csrf: String,
}

impl Console {
    /// Sign in with the password and the current step's code; read the CSRF token from the
    /// inbox's forms.
    async fn sign_in(base: &str, secret: &TotpSecret) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        let code = secret.code_at_step(now.div_euclid(STEP_SECS));
        let answer = http
            .post(format!("{base}/console/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("name", APPROVER),
                ("password", PASSWORD),
                ("code", &code),
            ]))
            .send()
            .await
            .expect("console reachable");
        assert_eq!(
            answer.status(),
            reqwest::StatusCode::SEE_OTHER,
            "sign-in refused"
        );
        let set = answer
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie");
        let cookie = set.split(';').next().unwrap_or_default().trim().to_owned();
        assert!(cookie.starts_with(&format!("{COOKIE}=")), "{set}");
        let inbox = http
            .get(format!("{base}/console/t/{TENANT}/approvals"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("inbox");
        assert_eq!(inbox.status(), reqwest::StatusCode::OK);
        let page = inbox.text().await.expect("inbox page");
        let csrf = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#)
            .expect("regex")
            .captures(&page)
            .expect("a CSRF token in the inbox")[1]
            .to_owned();
        let token = cookie.split_once('=').map(|(_, v)| v).unwrap_or_default();
        assert_eq!(csrf, portcullis_server::console::csrf_of(token));
        Self {
            http,
            base: base.to_owned(),
            cookie,
            csrf,
        }
    }

    /// Post the inbox's decision form for `approval`; the status and how long until it came.
    async fn decide(&self, approval: &str, decision: &str) -> (reqwest::StatusCode, Duration) {
        let request = self
            .http
            .post(format!(
                "{}/console/t/{TENANT}/approvals/{approval}",
                self.base
            ))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("csrf", &self.csrf),
                ("decision", decision),
                ("reason", "bench"),
                ("code", ""),
            ]));
        let started = Instant::now();
        let answer = request.send().await.expect("console reachable");
        let elapsed = started.elapsed();
        let status = answer.status();
        if status == reqwest::StatusCode::SEE_OTHER {
            assert_eq!(
                answer
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok()),
                Some(format!("/console/t/{TENANT}/approvals").as_str())
            );
        }
        let _ = answer.bytes().await;
        (status, elapsed)
    }
}

fn refund(amount_cents: i64) -> CallToolRequestParams {
    CallToolRequestParams::new("crm__issue_refund").with_arguments(
        json!({ "customer_id": "c_1", "amount_cents": amount_cents, "reason": "damaged" })
            .as_object()
            .cloned()
            .expect("object"),
    )
}

/// The held call: its task id and the poll interval the task advertises.
async fn hold(agent: &Agent, amount_cents: i64) -> (String, Option<u64>) {
    match agent
        .call_tool_once(refund(amount_cents))
        .await
        .expect("tools/call")
    {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            assert!(
                created.task.task_id.starts_with("apr_"),
                "the task is the approval request: {}",
                created.task.task_id
            );
            (created.task.task_id, created.task.poll_interval_ms)
        }
        other => panic!("a held call from a tasks client is a task, got {other:?}"),
    }
}

/// One decision; (a), (b), (c), the hold and the refused form.
struct Sample {
    decision: Duration,
    completion: Duration,
    total: Duration,
    hold: Duration,
    refused: Duration,
}

/// `settle`: a pause between the decision's 303 and the agent's `tasks/get`, as a polling
/// agent leaves (that pass reports only (b); (c) would include the pause).
async fn one(
    agent: &Agent,
    console: &Console,
    amount_cents: i64,
    settle: Option<Duration>,
) -> (Sample, Option<u64>) {
    let started = Instant::now();
    let (task_id, poll) = hold(agent, amount_cents).await;
    let hold = started.elapsed();

    // The same form refused after its checks (nothing is written but the session's last use).
    let (status, refused) = console.decide(&task_id, "maybe").await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);

    let sent = Instant::now();
    let (status, decision) = console.decide(&task_id, "approve").await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "approve {task_id}");
    if let Some(settle) = settle {
        tokio::time::sleep(settle).await;
    }
    let asked = Instant::now();
    let done = agent
        .get_task(GetTaskParams::new(task_id.clone()))
        .await
        .expect("tasks/get");
    let received = Instant::now();
    let TaskPayload::Completed { result } = &done.task.payload else {
        panic!("{task_id} completed after approval: {done:?}")
    };
    assert_eq!(
        result["structuredContent"]["amount_cents"], amount_cents,
        "the refund's own result: {result:?}"
    );
    assert_eq!(
        result["structuredContent"]["status"], "issued",
        "{result:?}"
    );
    assert_ne!(result.get("isError"), Some(&json!(true)), "{result:?}");
    (
        Sample {
            decision,
            completion: received - asked,
            total: received - sent,
            hold,
            refused,
        },
        poll,
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let decisions = arg("--decisions", 200).max(1);
    let warmup = arg("--warmup", 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let effect_log = dir.path().join("effects.jsonl");

    let mut upstream = Proc::spawn(
        &["demo-upstream", "--http", "127.0.0.1:0"],
        &[(
            "PORTCULLIS_DEMO_EFFECT_LOG",
            effect_log.display().to_string(),
        )],
    )
    .await;
    let upstream_port = upstream.line_after("PORT=").await;
    let upstream_url = format!("http://127.0.0.1:{upstream_port}/mcp");

    let mut env = gateway_env(&dir.path().join("data"));
    // No decision here needs a fresh authenticator code (a code is good once per 30 s step).
    env.push((
        "PORTCULLIS_CONSOLE__FRESH_FACTOR_ABOVE_CENTS",
        "1000000000000".into(),
    ));
    let mut gateway = Proc::spawn(&["serve"], &env).await;
    let admin_token = gateway.line_after("export PORTCULLIS_ADMIN_TOKEN=").await;
    let base = gateway.line_after("portcullis listening on").await;

    let http = reqwest::Client::new();
    let agent_token = seed_tenant(
        &http,
        &base,
        &admin_token,
        TENANT,
        &upstream_url,
        json!({ "issue_refund": "spend" }),
    )
    .await;

    // The approver: a tenant-scoped human with a password and an authenticator.
    let approver = common::admin(
        &http,
        &base,
        &admin_token,
        "/admins",
        json!({ "name": APPROVER, "role": "approver", "tenant": TENANT }),
    )
    .await;
    let approver_token = approver["token"].as_str().expect("token");
    common::admin_request(
        &http,
        reqwest::Method::PUT,
        &base,
        approver_token,
        "/admins/me/password",
        json!({ "password": PASSWORD }),
    )
    .await;
    let enrolled = common::admin(&http, &base, approver_token, "/admins/me/totp", json!({})).await;
    let secret =
        TotpSecret::from_base32(enrolled["secret"].as_str().expect("secret")).expect("base32");
    let console = Console::sign_in(&base, &secret).await;

    let agent = client_with(
        TaskClient,
        &format!("{base}/t/{TENANT}/mcp"),
        Some(&agent_token),
    )
    .await;
    common::wait_for_tool(&agent, "crm__issue_refund", "the gateway").await;

    let mut amount = 100;
    for _ in 0..warmup {
        amount += 1;
        one(&agent, &console, amount, None).await;
    }

    let leg_before = upstream_leg(&http, &base).await;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(decisions);
    let mut poll_interval = None;
    for _ in 0..decisions {
        amount += 1;
        let (sample, poll) = one(&agent, &console, amount, None).await;
        poll_interval = poll_interval.or(poll);
        samples.push(sample);
    }
    let wall = started.elapsed();
    let leg_after = upstream_leg(&http, &base).await;
    let executions = leg_after.1 - leg_before.1;
    assert_eq!(
        executions as usize, decisions,
        "one upstream call per approved task, none more"
    );
    let upstream_mean_ms = (leg_after.0 - leg_before.0) / executions * 1e3;

    // (b) cold: the same decisions again, the agent asking `--settle-ms` after the decision
    // (0: no such pass), as a polling agent does. By then the gateway, the upstream and the
    // disk are idle and the approval's background checkpoint is written; on a VM, waking idle
    // threads and processes costs far more than in the back-to-back loop above.
    let settle_ms = arg("--settle-ms", 100);
    let settled = if settle_ms > 0 {
        let settle = Duration::from_millis(settle_ms as u64);
        let before = upstream_leg(&http, &base).await;
        let started = Instant::now();
        let mut completions = Vec::with_capacity(decisions);
        for _ in 0..decisions {
            amount += 1;
            completions.push(
                one(&agent, &console, amount, Some(settle))
                    .await
                    .0
                    .completion,
            );
        }
        let wall = started.elapsed();
        let after = upstream_leg(&http, &base).await;
        let leg_ms = (after.0 - before.0) / (after.1 - before.1) * 1e3;
        Some((stats(completions, wall), leg_ms))
    } else {
        None
    };
    let passes = if settled.is_some() { 2 } else { 1 };

    // Exactly once: the upstream ran one refund per decision, warm-up included.
    let refunds = std::fs::read_to_string(&effect_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"issue_refund\""))
        .count();
    assert_eq!(
        refunds,
        warmup + passes * decisions,
        "each approved refund ran once"
    );

    let verify = std::process::Command::new(common::BIN)
        .args(["audit", "verify", "--tenant", TENANT])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("audit verify");
    let verify_out = String::from_utf8_lossy(&verify.stdout);

    let pick = |f: fn(&Sample) -> Duration| stats(samples.iter().map(f).collect(), wall);
    let a = pick(|s| s.decision);
    let b = pick(|s| s.completion);
    let c = pick(|s| s.total);
    let held = pick(|s| s.hold);
    let refused = pick(|s| s.refused);
    let poll = poll_interval.expect("the task advertises a poll interval");

    println!(
        "store: SQLite; decisions: {decisions} (after {warmup} warm-up), one agent, one approver, sequential"
    );
    println!();
    println!("| leg | p50 | p99 | mean |");
    println!("|---|---|---|---|");
    let cold_name = format!(
        "(b) cold: the agent's `tasks/get` {settle_ms} ms after the decision (separate pass)"
    );
    let mut rows = vec![
        (
            "(a) console decision: approve POST → 303 (decision landed)",
            &a,
        ),
        (
            "(b) agent's next `tasks/get` → `completed` (runs the refund)",
            &b,
        ),
        ("(c) total: decision sent → completed task received", &c),
    ];
    if let Some((cold, _)) = &settled {
        rows.push((cold_name.as_str(), cold));
    }
    rows.push(("hold: agent's `tools/call` → task (before (c))", &held));
    rows.push((
        "refused form (`decision=maybe`): same checks, no decision written",
        &refused,
    ));
    for (name, s) in rows {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.3} ms |",
            s.p50, s.p99, s.mean
        );
    }
    println!();
    println!(
        "advertised task poll interval: {poll} ms. A client polling at that interval sees \
         completion within one interval plus (c): at most {:.0} ms after the decision at p99 \
         ({poll} + {:.1}).",
        poll as f64 + c.p99,
        c.p99
    );
    println!(
        "gateway -> upstream leg of (b) (mean, as the gateway measured it): {upstream_mean_ms:.3} ms; \
         (b) without it: {:.3} ms",
        b.mean - upstream_mean_ms
    );
    println!(
        "decision write (mean (a) minus mean refused form): {:.3} ms",
        a.mean - refused.mean
    );
    if let Some((_, leg_ms)) = &settled {
        println!("gateway -> upstream leg of cold (b) (mean): {leg_ms:.3} ms");
    }
    println!(
        "peak RSS: gateway {} KiB, upstream {} KiB",
        gateway.peak_rss_kib(),
        upstream.peak_rss_kib()
    );
    println!("audit: {}", verify_out.trim());
    assert!(
        verify.status.success(),
        "audit trail must verify after the run"
    );
}
