//! Several `portcullis serve` replicas on one PostgreSQL database, as in production: a receipt
//! executes once across all of them, their appends form one chain, an approval held on one is
//! approved on another and executed on a third, a revocation on one is honoured by the others
//! on their very next request, and a replica killed under load loses nothing it acknowledged
//! and executes nothing twice.
//!
//! Each replica has its own data folder (the key file copied from the first, as an operator
//! would distribute it) and launches its own stdio upstream; every upstream appends to the
//! same effect log, so its lines count executions across replicas. These tests need
//! PostgreSQL (`PORTCULLIS_TEST_POSTGRES_URL`); without it they say so and return.

use crate::support::*;
use portcullis_server::admin::approvals::VerdictIn;
use portcullis_server::admin::connections::{ConnectionIn, ConnectionState};
use portcullis_server::admin::grants::GrantIn;
use portcullis_server::admin::tokens::TokenIn;
use portcullis_server::upstream::{ConnectionSpec, Transport};
use reqwest::StatusCode;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const REPLICAS: usize = 3;

fn refund(amount_cents: i64) -> Value {
    json!({ "customer_id": "c_1", "amount_cents": amount_cents, "reason": "replicas" })
}

fn read_args() -> Value {
    json!({ "id": "c_1" })
}

/// Three replicas on one fresh PostgreSQL database, one seeded tenant (`acme`).
struct Cluster {
    // Declared first: the processes go before their files and their database.
    replicas: Vec<ServeProcess>,
    http: reqwest::Client,
    /// Each replica's admin API, as the bootstrap admin.
    apis: Vec<AdminClient>,
    acme: Tenant,
    data_dirs: Vec<PathBuf>,
    root: tempfile::TempDir,
    db: TestDatabase,
}

impl Cluster {
    /// Start the cluster; `None` (after saying so) when no PostgreSQL server is configured.
    async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    /// Start the cluster with extra configuration for every replica.
    async fn start_with(extra_env: &[(&str, &str)]) -> Option<Self> {
        let Some(db) = TestDatabase::postgres_if_configured().await else {
            println!("{POSTGRES_URL_VAR} is not set: replica tests need PostgreSQL; skipped");
            return None;
        };
        let root = tempfile::tempdir().expect("temp dir");
        let http = reqwest::Client::new();
        let data_dirs: Vec<PathBuf> = (1..=REPLICAS)
            .map(|i| root.path().join(format!("replica-{i}")))
            .collect();
        let env = db.env();
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra_env);

        let first = ServeProcess::start_with(root.path(), &data_dirs[0], None, &env).await;
        let admin = first
            .admin_token
            .clone()
            .expect("the first start on an empty database prints the bootstrap admin token");
        let first_api = AdminClient::with_http(http.clone(), &first.base, &admin);
        let acme = seed_tenant_at(&first_api, root.path(), "acme").await;

        // The same signing key on every replica: a receipt signed on one verifies on another.
        let key_file = data_dirs[0].join("keys.json");
        for dir in &data_dirs[1..] {
            use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .expect("replica data folder");
            let copy = dir.join("keys.json");
            std::fs::copy(&key_file, &copy).expect("copy the key file");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .expect("key file mode 0600");
        }
        let (second, third) = tokio::join!(
            ServeProcess::start_with(root.path(), &data_dirs[1], None, &env),
            ServeProcess::start_with(root.path(), &data_dirs[2], None, &env),
        );
        for replica in [&second, &third] {
            assert!(
                replica.admin_token.is_none(),
                "only the first start on the database bootstraps an admin"
            );
        }
        let replicas = vec![first, second, third];
        let apis: Vec<AdminClient> = replicas
            .iter()
            .map(|replica| AdminClient::with_http(http.clone(), &replica.base, &admin))
            .collect();
        // Each replica launched its own upstream for the connection (at start-up).
        for api in &apis {
            wait_connection_ready_within(api, "acme", &acme.connection_id, WAIT * 3).await;
        }
        Some(Self {
            replicas,
            http,
            apis,
            acme,
            data_dirs,
            root,
            db,
        })
    }

    fn url(&self, replica: usize) -> String {
        self.replicas[replica].mcp_url("acme")
    }

    /// An MCP client (2026-07-28) of replica `replica` (0-based) with the agent's token.
    async fn client(&self, replica: usize) -> Client {
        self.client_with(replica, &self.acme.agent_token).await
    }

    async fn client_with(&self, replica: usize, token: &str) -> Client {
        connect(&self.url(replica), token, Era::Discover)
            .await
            .unwrap_or_else(|e| panic!("connect to replica {}: {e}", replica + 1))
    }

    /// Replica `replica`'s admin API as the bootstrap admin.
    fn admin(&self, replica: usize) -> &AdminClient {
        &self.apis[replica]
    }

    /// Approve as the tenant's approver through replica `replica`'s admin API.
    async fn approve(&self, replica: usize, id: &str) -> ApprovalView {
        let verdict = VerdictIn {
            reason: Some("test".into()),
        };
        self.apis[replica]
            .as_token(&self.acme.approver_token)
            .approve(id, &verdict)
            .await
            .unwrap_or_else(|e| panic!("approve on replica {}: {e}", replica + 1))
    }

    async fn approval(&self, replica: usize, id: &str) -> ApprovalView {
        self.apis[replica]
            .approval(id)
            .await
            .unwrap_or_else(|e| panic!("approval {id} on replica {}: {e}", replica + 1))
    }

    /// The tenant's whole chain through replica `replica`'s admin API, oldest first.
    async fn events(&self, replica: usize) -> Vec<Value> {
        audit_events_through(&self.apis[replica], "acme").await
    }

    /// `portcullis <args>` reading the database and the key file directly, as an auditor would.
    async fn cli_local(&self, args: &[&str]) -> CliRun {
        let data = self.data_dirs[0].display().to_string();
        let mut env = vec![("PORTCULLIS_DATA__DIR", data)];
        env.extend(self.db.env());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_cli(self.root.path(), args, &env).await
    }

    /// `audit verify` must pass for every chain, with every replica's witness log (each
    /// replica witnesses the checkpoints it writes); returns acme's report.
    async fn verify(&self) -> Value {
        let logs: Vec<String> = self
            .data_dirs
            .iter()
            .map(|d| d.join("audit-witness.log"))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        let mut args = vec!["audit", "verify"];
        for log in &logs {
            args.extend(["--witness", log.as_str()]);
        }
        let all = self.cli_local(&args).await;
        assert!(all.ok(), "audit verify: {all:?}");
        args.extend(["--json", "--tenant", "acme"]);
        let json = self.cli_local(&args).await;
        assert!(json.ok(), "{json:?}");
        let report: Value = serde_json::from_str(&json.stdout).expect("verify --json prints JSON");
        assert_eq!(report["ok"], true, "{report}");
        report["tenants"][0].clone()
    }

    /// Checked in the database itself, as its superuser: one event per seq from 1 up, and no
    /// two events building on the same predecessor (a fork).
    async fn assert_linear_in_database(&self, expected: usize) {
        use sqlx::Connection as _;
        let url = self.db.owner_url().expect("a PostgreSQL database");
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        let (count, distinct_prev, max_seq): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT prev_hash), coalesce(max(seq), 0) FROM audit_events WHERE tenant_id = $1",
        )
        .bind(&self.acme.id)
        .fetch_one(&mut conn)
        .await
        .expect("query the chain");
        let _ = conn.close().await;
        assert_eq!(count as usize, expected, "entries in the database");
        assert_eq!(
            distinct_prev, count,
            "two entries share a predecessor: a fork"
        );
        assert_eq!(max_seq, count, "a gap in the sequence");
    }

    fn effects(&self) -> Vec<Value> {
        effect_lines(&self.acme.effect_log)
    }
}

/// One raw 2026-07-28 read through replica `replica`, so the reply can be inspected whole.
async fn raw_read(cluster: &Cluster, replica: usize, token: &str) -> RawReply {
    post_2026_at(
        &cluster.http,
        &cluster.url(replica),
        token,
        &tools_call_2026(7, "crm__get_contact", read_args()),
        Some("crm__get_contact"),
    )
    .await
}

fn assert_read_ok(reply: &RawReply, replica: usize) {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "replica {}: read refused: {}",
        replica + 1,
        reply.text
    );
    let result = reply
        .result()
        .unwrap_or_else(|| panic!("replica {}: no result: {}", replica + 1, reply.text));
    assert_ne!(result["isError"], true, "replica {}: {result}", replica + 1);
    assert_eq!(
        result["structuredContent"]["name"], "Ada Lovelace",
        "{result}"
    );
}

fn assert_unauthenticated(reply: &RawReply, replica: usize, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "replica {} still serves {what}: {}",
        replica + 1,
        reply.text
    );
    assert_eq!(reply.error_code(), Some(-32001), "{}", reply.text);
}

/// The events after the first `before`.
fn new_events(events: &[Value], before: usize) -> &[Value] {
    &events[before..]
}

fn approval_of_event(event: &Value) -> Option<&str> {
    event["detail"]["approval"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_redeemed_concurrently_on_three_replicas_executes_once() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let first = cluster.client(0).await;
    let id = approval_id(&first.call("crm__issue_refund", refund(4_200)).await);
    cluster.approve(1, &id).await;

    // Four clients per replica, 100 identical retries spread over them, released at once.
    let mut clients = Vec::new();
    for i in 0..4 * REPLICAS {
        clients.push((i % REPLICAS, Arc::new(cluster.client(i % REPLICAS).await)));
    }
    let start = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (replica, client) = clients[i % clients.len()].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            (
                replica,
                client.try_call("crm__issue_refund", refund(4_200)).await,
            )
        }));
    }
    let mut answers: Vec<(usize, CallToolResult)> = Vec::new();
    for task in tasks {
        let (replica, answer) = task.await.expect("task");
        let answer = answer.unwrap_or_else(|e| panic!("replica {} failed: {e}", replica + 1));
        answers.push((replica, answer));
    }

    let executed: Vec<_> = answers
        .iter()
        .filter(|(_, a)| status(a) == "issued")
        .collect();
    assert_eq!(
        executed.len(),
        1,
        "exactly one answer is the executed result: {answers:#?}"
    );
    assert_eq!(executed[0].1.is_error, Some(false));
    for (replica, answer) in answers.iter().filter(|(_, a)| status(a) != "issued") {
        assert!(
            matches!(
                status(answer).as_str(),
                "already_executed" | "pending_approval"
            ),
            "replica {}: {answer:?}",
            replica + 1
        );
        assert_eq!(structured(answer)["executed"], false, "{answer:?}");
    }
    let served_by: HashSet<usize> = answers.iter().map(|(r, _)| *r).collect();
    assert_eq!(served_by.len(), REPLICAS, "every replica took part");

    let effects = cluster.effects();
    assert_eq!(
        effects.len(),
        1,
        "the upstreams saw the refund exactly once"
    );
    assert_eq!(effects[0]["arguments"]["amount_cents"], 4_200);
    assert_eq!(
        cluster.approval(2, &id).await.status,
        ApprovalStatus::Executed
    );
    let events = cluster.events(2).await;
    let executes: Vec<_> = events_of_kind(&events, "execute");
    assert_eq!(executes.len(), 1, "one execute event: {executes:#?}");
    assert_eq!(approval_of_event(executes[0]), Some(id.as_str()));
    cluster.verify().await;
}

/// `n` identical calls released at once, spread over every replica; each answer's status
/// and approval id.
async fn identical_storm(
    cluster: &Cluster,
    n: usize,
    amount: i64,
) -> Vec<(String, Option<String>)> {
    let mut clients = Vec::new();
    for i in 0..2 * REPLICAS {
        clients.push(Arc::new(cluster.client(i % REPLICAS).await));
    }
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, start) = (clients[i % clients.len()].clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let answer = client.call("crm__issue_refund", refund(amount)).await;
                let id = structured(&answer)["approval_id"]
                    .as_str()
                    .map(str::to_owned);
                (status(&answer), id)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_calls_on_three_replicas_join_one_request() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // Fifty identical first calls across the replicas: one request.
    let first = identical_storm(&cluster, 50, 5_100).await;
    let ids: HashSet<String> = first.iter().filter_map(|(_, id)| id.clone()).collect();
    assert!(
        first.iter().all(|(s, _)| s == "pending_approval"),
        "{first:?}"
    );
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().expect("one id");
    cluster.approve(2, &id).await;

    // A hundred identical retries across the replicas: one execution, one new request.
    let retries = identical_storm(&cluster, 100, 5_100).await;
    assert_eq!(
        retries.iter().filter(|(s, _)| s == "issued").count(),
        1,
        "{retries:?}"
    );
    let new: HashSet<String> = retries
        .iter()
        .filter(|(s, _)| s == "pending_approval")
        .filter_map(|(_, id)| id.clone())
        .collect();
    assert!(new.len() <= 1 && !new.contains(&id), "{new:?}");
    let query = portcullis_server::admin::approvals::ApprovalQuery {
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let approvals = cluster
        .admin(0)
        .list_approvals(&query)
        .await
        .expect("approvals");
    assert!(
        approvals.len() <= 2
            && approvals
                .iter()
                .filter(|a| a.status == ApprovalStatus::Pending)
                .count()
                <= 1,
        "{approvals:?}"
    );
    assert_eq!(cluster.effects().len(), 1);
    cluster.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_three_replicas_make_one_linear_chain() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // Two clients per replica, connected before counting.
    let mut clients = Vec::new();
    for i in 0..2 * REPLICAS {
        clients.push((i % REPLICAS, Arc::new(cluster.client(i % REPLICAS).await)));
    }
    let before = cluster.events(0).await.len();
    assert!(before > 0, "seeding was audited");

    // Each client: four reads and four holds (distinct amounts, so each is a new request).
    const ROUNDS: usize = 8;
    let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let mut tasks = Vec::new();
    for (c, (replica, client)) in clients.iter().cloned().enumerate() {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut held = Vec::new();
            for j in 0..ROUNDS {
                if j % 2 == 0 {
                    let read = client
                        .try_call("crm__get_contact", read_args())
                        .await
                        .unwrap_or_else(|e| panic!("replica {}: read: {e}", replica + 1));
                    assert_eq!(status(&read), "ok", "{read:?}");
                } else {
                    let amount = 10_000 + (c * 100 + j) as i64;
                    let hold = client
                        .try_call("crm__issue_refund", refund(amount))
                        .await
                        .unwrap_or_else(|e| panic!("replica {}: hold: {e}", replica + 1));
                    held.push(approval_id(&hold));
                }
            }
            held
        }));
    }
    let mut held = HashSet::new();
    for task in tasks {
        held.extend(task.await.expect("task"));
    }
    let reads = clients.len() * ROUNDS / 2;
    let holds = clients.len() * ROUNDS / 2;
    assert_eq!(held.len(), holds, "every hold is its own request");

    // Exactly what the test caused, in one chain, seen alike through any replica.
    let events = cluster.events(1).await;
    assert_eq!(
        events.len(),
        before + reads + holds,
        "one entry per call, no more, no fewer"
    );
    assert_eq!(
        cluster.events(2).await,
        events,
        "every replica reads one chain"
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as i64 + 1, "gap or reorder at {event}");
        if i > 0 {
            assert_eq!(
                event["prev_hash"],
                events[i - 1]["hash"],
                "entry {} does not follow entry {i}",
                i + 1
            );
        }
    }
    let caused = new_events(&events, before);
    assert_eq!(events_of_kind(caused, "tool_call").len(), reads);
    let hold_events = events_of_kind(caused, "hold");
    assert_eq!(hold_events.len(), holds);
    let audited: HashSet<String> = hold_events
        .iter()
        .filter_map(|e| approval_of_event(e).map(str::to_owned))
        .collect();
    assert_eq!(audited, held, "each hold's event names its request");

    cluster.assert_linear_in_database(events.len()).await;
    let report = cluster.verify().await;
    assert_eq!(report["entries"], events.len() as i64, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_on_one_replica_approved_on_another_executed_on_a_third() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let on_first = cluster.client(0).await;
    let id = approval_id(&on_first.call("crm__issue_refund", refund(7_777)).await);
    assert_eq!(
        cluster.approval(1, &id).await.status,
        ApprovalStatus::Pending
    );

    let approved = cluster.approve(1, &id).await;
    assert_eq!(approved.status, ApprovalStatus::Approved, "{approved:?}");
    assert!(approved.receipt.is_some(), "{approved:?}");
    assert_eq!(
        cluster.approval(2, &id).await.status,
        ApprovalStatus::Approved
    );
    assert!(cluster.effects().is_empty(), "approving executes nothing");

    // The third replica verifies the receipt signed by the second and executes it, once.
    let on_third = cluster.client(2).await;
    let executed = on_third.call("crm__issue_refund", refund(7_777)).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    assert_eq!(structured(&executed)["amount_cents"], 7_777);
    let effects = cluster.effects();
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0]["arguments"]["amount_cents"], 7_777);
    assert_eq!(
        cluster.approval(0, &id).await.status,
        ApprovalStatus::Executed
    );

    // Spent everywhere: the identical call on any replica is a new request.
    for replica in 0..REPLICAS {
        let again = cluster
            .client(replica)
            .await
            .call("crm__issue_refund", refund(7_777))
            .await;
        assert_ne!(approval_id(&again), id, "replica {}", replica + 1);
    }
    assert_eq!(cluster.effects().len(), 1, "executed exactly once");

    let events = cluster.events(0).await;
    let of_id = |kind: &str| {
        events_of_kind(&events, kind)
            .into_iter()
            .filter(|e| approval_of_event(e) == Some(id.as_str()))
            .count()
    };
    assert_eq!(of_id("hold"), 1);
    assert_eq!(of_id("execute"), 1);
    assert!(kinds(&events).contains(&"approve".to_owned()));
    cluster.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_replica_is_refused_by_the_others_on_their_next_request() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let token = cluster
        .admin(0)
        .create_token("acme", &cluster.acme.agent_id, &TokenIn::default())
        .await
        .expect("create token");
    let (secret, token_id) = (token.token, token.id.to_string());
    // Warm every replica with the token: connected clients and successful calls.
    let mut clients = Vec::new();
    for replica in 0..REPLICAS {
        let client = cluster.client_with(replica, &secret).await;
        assert_eq!(client.tool_names().await.len(), 8);
        assert_eq!(
            status(&client.call("crm__get_contact", read_args()).await),
            "ok"
        );
        for _ in 0..2 {
            assert_read_ok(&raw_read(&cluster, replica, &secret).await, replica);
        }
        clients.push(client);
    }

    cluster
        .admin(0)
        .revoke_token("acme", &token_id)
        .await
        .expect("revoke token");

    for replica in [1, 2, 0] {
        assert_unauthenticated(
            &raw_read(&cluster, replica, &secret).await,
            replica,
            "a revoked token",
        );
        clients[replica]
            .try_call("crm__get_contact", read_args())
            .await
            .expect_err("a connected client of a revoked token is still served");
        assert!(
            connect(&cluster.url(replica), &secret, Era::Discover)
                .await
                .is_err(),
            "replica {}: a revoked token connects",
            replica + 1
        );
        // The agent's other token is unaffected.
        assert_read_ok(
            &raw_read(&cluster, replica, &cluster.acme.agent_token).await,
            replica,
        );
    }
    cluster.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_revoked_on_one_replica_disappears_from_the_others() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // An approved effect, ready to execute anywhere, and warm clients on every replica.
    let on_first = cluster.client(0).await;
    let id = approval_id(&on_first.call("crm__issue_refund", refund(3_100)).await);
    cluster.approve(0, &id).await;
    let mut clients = Vec::new();
    for replica in 0..REPLICAS {
        let client = cluster.client(replica).await;
        assert_eq!(client.tool_names().await.len(), 8);
        assert_eq!(
            status(&client.call("crm__get_contact", read_args()).await),
            "ok"
        );
        assert_read_ok(
            &raw_read(&cluster, replica, &cluster.acme.agent_token).await,
            replica,
        );
        clients.push(client);
    }

    let revoked = cluster
        .admin(0)
        .revoke_connection("acme", &cluster.acme.connection_id)
        .await
        .expect("revoke connection");
    assert_eq!(revoked.revoked.as_str(), cluster.acme.connection_id);

    for replica in [1, 2, 0] {
        let client = &clients[replica];
        assert!(
            client.tool_names().await.is_empty(),
            "replica {}: a revoked connection's tools are still listed",
            replica + 1
        );
        let err = client
            .try_call("crm__get_contact", read_args())
            .await
            .expect_err("a revoked connection still serves");
        assert!(
            err.contains("unknown tool"),
            "replica {}: {err}",
            replica + 1
        );
        client
            .try_call("crm__issue_refund", refund(3_100))
            .await
            .expect_err("a revoked connection still executes");
    }
    assert!(cluster.effects().is_empty(), "nothing reached an upstream");
    assert_eq!(
        cluster.approval(1, &id).await.status,
        ApprovalStatus::NeedsReconnection
    );
    cluster.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_revoked_on_one_replica_is_refused_by_the_others() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let mut clients = Vec::new();
    for replica in 0..REPLICAS {
        let client = cluster.client(replica).await;
        assert_eq!(
            status(&client.call("crm__get_contact", read_args()).await),
            "ok"
        );
        assert_read_ok(
            &raw_read(&cluster, replica, &cluster.acme.agent_token).await,
            replica,
        );
        clients.push(client);
    }

    cluster
        .admin(0)
        .revoke_agent("acme", &cluster.acme.agent_id)
        .await
        .expect("revoke agent");

    for replica in [1, 2, 0] {
        assert_unauthenticated(
            &raw_read(&cluster, replica, &cluster.acme.agent_token).await,
            replica,
            "a revoked agent",
        );
        clients[replica]
            .try_call("crm__get_contact", read_args())
            .await
            .expect_err("a connected client of a revoked agent is still served");
    }
    cluster.verify().await;
}

/// The answer one call under load got.
#[derive(Debug)]
struct Answer {
    replica: usize,
    read: bool,
    amount: Option<i64>,
    status: String,
    approval: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_nothing_acknowledged_and_executes_nothing_twice() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    const VICTIM: usize = 2;
    // Nine approved refunds, each redeemable through any replica.
    let setup = cluster.client(0).await;
    let amounts: Vec<i64> = (0..9).map(|i| 20_000 + i).collect();
    let mut approval_of: BTreeMap<i64, String> = BTreeMap::new();
    for &amount in &amounts {
        let id = approval_id(&setup.call("crm__issue_refund", refund(amount)).await);
        cluster.approve(amount as usize % REPLICAS, &id).await;
        approval_of.insert(amount, id);
    }
    let before = cluster.events(0).await.len();

    // Two workers per replica alternate reads and redemptions of the approved refunds (each
    // refund is tried by every worker, in a different order) until told to stop, or until
    // their replica stops answering.
    let acknowledged: Arc<Vec<AtomicUsize>> =
        Arc::new((0..REPLICAS).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..2 * REPLICAS {
        let replica = w % REPLICAS;
        let client = cluster.client(replica).await;
        let (acknowledged, stop, killed, amounts) = (
            acknowledged.clone(),
            stop.clone(),
            killed.clone(),
            amounts.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let amount = amounts[i % amounts.len()];
                let read = i % 2 == 0;
                let outcome = if read {
                    client.try_call("crm__get_contact", read_args()).await
                } else {
                    client.try_call("crm__issue_refund", refund(amount)).await
                };
                match outcome {
                    Ok(result) => {
                        acknowledged[replica].fetch_add(1, Ordering::SeqCst);
                        answers.push(Answer {
                            replica,
                            read,
                            amount: (!read).then_some(amount),
                            status: status(&result),
                            approval: result
                                .structured_content
                                .as_ref()
                                .and_then(|v| v["approval_id"].as_str())
                                .map(str::to_owned),
                        });
                    }
                    Err(error) => {
                        assert!(
                            replica == VICTIM && killed.load(Ordering::SeqCst),
                            "replica {} failed a call: {error}",
                            replica + 1
                        );
                        return (replica, answers, true);
                    }
                }
                i += 1;
            }
            (replica, answers, false)
        }));
    }

    // Kill the victim in the middle of the load (every replica busy), then keep the others
    // busy a while longer.
    let count = |acknowledged: &Arc<Vec<AtomicUsize>>| -> Vec<usize> {
        acknowledged
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect()
    };
    eventually("load on every replica before the kill", || {
        let now = count(&acknowledged);
        async move { now.iter().all(|n| *n >= 6) }
    })
    .await;
    killed.store(true, Ordering::SeqCst);
    cluster.replicas[VICTIM].kill().await;
    let at_kill = count(&acknowledged);
    eventually("load on the survivors after the kill", || {
        let now = count(&acknowledged);
        let at_kill = at_kill.clone();
        async move { (0..REPLICAS).all(|r| r == VICTIM || now[r] >= at_kill[r] + 12) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for worker in workers {
        let (replica, mine, interrupted) = worker.await.expect("worker");
        assert_eq!(
            interrupted,
            replica == VICTIM,
            "only the victim's workers are cut off, and the kill cut them off"
        );
        answers.extend(mine);
    }
    let answered_by: HashSet<usize> = answers.iter().map(|a| a.replica).collect();
    assert_eq!(answered_by.len(), REPLICAS, "every replica served load");
    for answer in &answers {
        let expected: &[&str] = if answer.read {
            &["ok"]
        } else {
            &["issued", "already_executed", "pending_approval"]
        };
        assert!(expected.contains(&answer.status.as_str()), "{answer:?}");
    }
    let events = cluster.events(0).await;
    let caused = new_events(&events, before);

    // Nothing executed twice: one execute event per approval, one upstream effect per execute.
    let executes: Vec<&str> = events_of_kind(caused, "execute")
        .into_iter()
        .map(|e| approval_of_event(e).expect("an execute event names its approval"))
        .collect();
    let distinct: HashSet<&str> = executes.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        executes.len(),
        "an approval was redeemed twice"
    );
    let effects: Vec<i64> = cluster
        .effects()
        .iter()
        .map(|e| e["arguments"]["amount_cents"].as_i64().expect("amount"))
        .collect();
    let effected: HashSet<i64> = effects.iter().copied().collect();
    assert_eq!(
        effected.len(),
        effects.len(),
        "an approved action reached the upstream twice: {effects:?}"
    );
    for amount in &effects {
        let id = &approval_of[amount];
        assert!(
            executes.contains(&id.as_str()),
            "effect {amount} without its execute event"
        );
        assert_eq!(
            cluster.approval(0, id).await.status,
            ApprovalStatus::Executed
        );
    }
    let issued: Vec<i64> = answers
        .iter()
        .filter(|a| a.status == "issued")
        .filter_map(|a| a.amount)
        .collect();
    assert_eq!(
        issued.iter().collect::<HashSet<_>>().len(),
        issued.len(),
        "two callers were told the same refund was issued"
    );
    for amount in &issued {
        assert!(
            effected.contains(amount),
            "issued {amount} never reached the upstream"
        );
    }
    let mut executed_approvals = 0;
    for id in approval_of.values() {
        if cluster.approval(1, id).await.status == ApprovalStatus::Executed {
            executed_approvals += 1;
        }
    }
    assert_eq!(executed_approvals, executes.len());

    // The survivors still serve, and the trail the three wrote verifies.
    assert_read_ok(&raw_read(&cluster, 0, &cluster.acme.agent_token).await, 0);
    cluster.verify().await;

    // Every answered call has its own audit event. (`execution_result` only follows up an
    // `execute`, so it is no call's record of its own.)
    let tally = |items: Vec<String>| {
        items
            .into_iter()
            .fold(BTreeMap::<String, usize>::new(), |mut m, k| {
                *m.entry(k).or_default() += 1;
                m
            })
    };
    let records: Vec<&Value> = caused
        .iter()
        .filter(|e| e["kind"] != "execution_result")
        .collect();
    assert!(
        records.len() >= answers.len(),
        "{} acknowledged calls {:?} but only {} new audit entries {:?}",
        answers.len(),
        tally(answers.iter().map(|a| a.status.clone()).collect()),
        records.len(),
        tally(kinds(caused)),
    );
    let reads = answers.iter().filter(|a| a.read).count();
    let audited_reads = events_of_kind(caused, "tool_call")
        .iter()
        .filter(|e| {
            e["resource"]
                .as_str()
                .is_some_and(|r| r.ends_with("/get_contact"))
        })
        .count();
    assert!(
        audited_reads >= reads,
        "{reads} reads answered, {audited_reads} audited"
    );
    // Per approval: at least as many entries naming it as answers that named it.
    let answered = tally(answers.iter().filter_map(|a| a.approval.clone()).collect());
    let recorded = tally(
        records
            .iter()
            .filter_map(|e| approval_of_event(e).map(str::to_owned))
            .collect(),
    );
    for (id, calls) in &answered {
        let entries = recorded.get(id).copied().unwrap_or_default();
        let statuses = tally(
            answers
                .iter()
                .filter(|a| a.approval.as_ref() == Some(id))
                .map(|a| a.status.clone())
                .collect(),
        );
        assert!(
            entries >= *calls,
            "approval {id}: {calls} answers {statuses:?} but {entries} audit entries name it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_and_rate_limits_hold_across_replicas() {
    let Some(cluster) = Cluster::start_with(&[
        ("PORTCULLIS_AUTH__LOCKOUT_THRESHOLD", "3"),
        ("PORTCULLIS_AUTH__RATE_LIMIT_BURST", "6"),
        ("PORTCULLIS_AUTH__RATE_LIMIT_PER_MINUTE", "1"),
    ])
    .await
    else {
        return;
    };
    let token = cluster.acme.agent_token.clone();

    // A budget of 6 requests is 6 in all, however the client spreads them over replicas.
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(raw_read(&cluster, i % REPLICAS, &token).await.status);
    }
    let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((allowed, limited), (6, 6), "{statuses:?}");

    // Three bad tokens from one address, one per replica, lock that address out everywhere.
    let attacker = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client bound to 127.0.0.2");
    let bad = format!("pca_{}", "0".repeat(64));
    for replica in 0..REPLICAS {
        let reply = post_2026_at(
            &attacker,
            &cluster.url(replica),
            &bad,
            &tools_call_2026(1, "crm__get_contact", read_args()),
            Some("crm__get_contact"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    }
    for replica in 0..REPLICAS {
        let reply = post_2026_at(
            &attacker,
            &cluster.url(replica),
            &token,
            &tools_call_2026(2, "crm__get_contact", read_args()),
            Some("crm__get_contact"),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "replica {} must refuse a locked-out address: {}",
            replica + 1,
            reply.text
        );
        assert!(reply.header("retry-after").is_some());
    }
    let events = cluster.events(0).await;
    let lockouts = events.iter().filter(|e| e["kind"] == "locked_out").count();
    assert_eq!(lockouts, 1, "one lockout, audited once");
    let episodes = events
        .iter()
        .filter(|e| e["kind"] == "rate_limited")
        .count();
    assert_eq!(episodes, 1, "one rate-limit episode, audited once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_created_on_one_replica_is_served_by_the_others_and_revoked_everywhere() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // Replicas 2 and 3 are already running; the connection is created through replica 1.
    let billing = ConnectionIn {
        name: "billing".into(),
        spec: ConnectionSpec::new(
            Transport::Stdio {
                program: "demo".into(),
                args: Vec::new(),
                env: Default::default(),
            },
            demo_classification(),
        ),
        redaction: Default::default(),
    };
    let billing = cluster
        .admin(0)
        .create_connection("acme", &billing)
        .await
        .expect("create connection");
    let billing_id = billing.id.to_string();
    let grant = GrantIn {
        agent: cluster.acme.agent_id.clone(),
        connection: billing_id.clone(),
        tool: "*".into(),
    };
    cluster
        .admin(0)
        .add_grant("acme", &grant)
        .await
        .expect("grant");
    let token = cluster.acme.agent_token.clone();
    let read = |replica: usize| {
        let http = cluster.http.clone();
        let url = cluster.url(replica);
        let token = token.clone();
        async move {
            let reply = post_2026_at(
                &http,
                &url,
                &token,
                &tools_call_2026(3, "billing__get_contact", read_args()),
                Some("billing__get_contact"),
            )
            .await;
            reply
                .result()
                .is_some_and(|r| r["structuredContent"]["name"] == "Ada Lovelace")
        }
    };
    for replica in 0..REPLICAS {
        eventually(
            &format!("replica {} serving the new connection", replica + 1),
            || read(replica),
        )
        .await;
    }

    cluster
        .admin(0)
        .revoke_connection("acme", &billing_id)
        .await
        .expect("revoke connection");
    for replica in 0..REPLICAS {
        assert!(
            !read(replica).await,
            "replica {} still serves a revoked connection",
            replica + 1
        );
        eventually(
            &format!("replica {} stopping the revoked upstream", replica + 1),
            || {
                let cluster = &cluster;
                let billing_id = billing_id.clone();
                async move {
                    cluster
                        .admin(replica)
                        .list_connections("acme")
                        .await
                        .is_ok_and(|list| {
                            list.iter().any(|c| {
                                c.id.as_str() == billing_id && c.status == ConnectionState::Stopped
                            })
                        })
                }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_changed_on_one_replica_is_injected_by_the_others_on_their_next_call() {
    use portcullis_server::admin::secrets::SecretIn;
    use portcullis_server::upstream::Credential;
    let Some(cluster) =
        Cluster::start_with(&[("PORTCULLIS_EGRESS__ALLOW_PRIVATE", "[\"127.0.0.1/32\"]")]).await
    else {
        return;
    };
    let (base_url, seen) = crate::api::fake_api().await;
    let put = |value: &str| SecretIn {
        value: value.to_owned().into(),
        rotate_every_days: None,
    };
    cluster
        .admin(0)
        .put_secret("acme", "key", &put("sk_first"))
        .await
        .expect("put");
    let connection = cluster
        .admin(0)
        .create_connection(
            "acme",
            &ConnectionIn {
                name: "billing".into(),
                spec: ConnectionSpec::new(
                    Transport::Api {
                        base_url,
                        auth: Some(Credential::Bearer {
                            secret: "key".into(),
                        }),
                        routes: Vec::new(),
                    },
                    Default::default(),
                ),
                redaction: Default::default(),
            },
        )
        .await
        .expect("create");
    cluster
        .admin(0)
        .add_grant(
            "acme",
            &GrantIn {
                agent: cluster.acme.agent_id.clone(),
                connection: connection.id.to_string(),
                tool: "*".into(),
            },
        )
        .await
        .expect("grant");
    for replica in 0..REPLICAS {
        wait_connection_ready(cluster.admin(replica), "acme", connection.id.as_str()).await;
    }
    let get = |replica: usize| {
        cluster
            .http
            .get(format!(
                "{}/t/acme/http/billing/v1/x",
                cluster.replicas[replica].base
            ))
            .bearer_auth(&cluster.acme.agent_token)
            .send()
    };
    // Every replica caches the sealed secret.
    for replica in 0..REPLICAS {
        for _ in 0..2 {
            assert_eq!(get(replica).await.unwrap().status(), StatusCode::OK);
        }
    }
    cluster
        .admin(0)
        .put_secret("acme", "key", &put("sk_second"))
        .await
        .expect("put again");
    for replica in 1..REPLICAS {
        assert_eq!(get(replica).await.unwrap().status(), StatusCode::OK);
    }
    let last: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .take(REPLICAS - 1)
        .map(|s| s.authorization.clone())
        .collect();
    assert!(
        last.iter()
            .all(|a| a.as_deref() == Some("Bearer sk_second")),
        "another replica injected a stale version: {last:?}"
    );
    cluster
        .admin(0)
        .delete_secret("acme", "key")
        .await
        .expect("delete");
    let before = seen.lock().unwrap().len();
    for replica in 1..REPLICAS {
        assert_eq!(
            get(replica).await.unwrap().status(),
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "a deleted secret is never sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_from_three_replicas_are_enqueued_and_delivered_once_each() {
    use crate::webhooks::Receiver;
    use portcullis_server::admin::webhooks::EndpointIn;
    let Some(cluster) = Cluster::start_with(&[
        ("PORTCULLIS_EGRESS__ALLOW_PRIVATE", "[\"127.0.0.1/32\"]"),
        ("PORTCULLIS_WEBHOOKS__POLL_INTERVAL_MS", "20"),
    ])
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    cluster
        .admin(1)
        .create_webhook(
            "acme",
            &EndpointIn {
                url: receiver.url("/replicas"),
                events: vec!["action.held".into()],
                description: String::new(),
            },
        )
        .await
        .expect("create an endpoint");
    // Holds on every replica at once: each replica's outbox races the others for the
    // tenant's cursor, and each replica's worker races the others for every delivery.
    let mut tasks = Vec::new();
    for replica in 0..REPLICAS {
        let client = Arc::new(cluster.client(replica).await);
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            for j in 0..4 {
                let amount = 20_000 + (replica * 10 + j) as i64;
                held.push(approval_id(
                    &client.call("crm__issue_refund", refund(amount)).await,
                ));
            }
            held
        }));
    }
    let mut approvals = HashSet::new();
    for task in tasks {
        approvals.extend(task.await.expect("holds"));
    }
    assert_eq!(approvals.len(), 4 * REPLICAS);
    let got = receiver.wait_for("/replicas", approvals.len()).await;
    let ids: HashSet<&str> = got.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), got.len(), "no message delivered twice");
    let named: HashSet<String> = got
        .iter()
        .map(|r| {
            r.json()["data"]["detail"]["approval"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(named, approvals, "one message per held action, none lost");
}
