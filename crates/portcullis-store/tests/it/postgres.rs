//! What only the PostgreSQL backend promises: row-level tenant security, an application role
//! that cannot rewrite history or loosen the rules, one chain and one redemption across
//! replicas, and a schema check at start-up. Each test does nothing without a server.

use crate::*;
use portcullis_core::action::ToolDefinition;
use portcullis_core::audit::{Checkpoint, CheckpointBody};
use portcullis_core::guardrail::GuardrailMode;

/// Every table row-level security guards.
const TENANT_TABLES: [&str; 16] = [
    "tenants",
    "admins",
    "agents",
    "agent_tokens",
    "connections",
    "grants",
    "tools",
    "approvals",
    "receipt_nonces",
    "audit_events",
    "audit_heads",
    "audit_checkpoints",
    "policy_versions",
    "approval_votes",
    "guardrails",
    "ledger",
];

fn pg(f: &Fixture) -> &PgDatabase {
    match &f.database {
        Database::Postgres(database) => database,
        Database::Sqlite { .. } => unreachable!("a PostgreSQL fixture"),
    }
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Put at least one row in every tenant table, for `tenant` (and one admin per tenant).
async fn fill_every_table(store: &Store, s: &Seeded) {
    let keys = KeyRing::generate();
    let approval = hold(store, s, 100, NOW + 1000).await;
    let signed = approve(store, &keys, &approval).await;
    redeem(store, &approval, &signed).await.unwrap();
    let pending = hold(store, s, 200, NOW + 1000).await;
    store
        .cast_vote(
            &s.tenant.id,
            &pending.id,
            "bob",
            Vote::Approve,
            None,
            &[],
            None,
            AuditDraft::new(s.tenant.id.clone(), "admin:bob", AuditKind::Vote),
            NOW,
        )
        .await
        .unwrap();
    store
        .put_policy(
            &s.tenant.id,
            "permit(principal, action, resource);",
            &json!({}),
            "h",
            "test",
            AuditDraft::new(s.tenant.id.clone(), "test", AuditKind::PolicyUpdated),
            NOW,
        )
        .await
        .unwrap();
    let guardrail = crate::policy::create_guardrail(store, s, "refunds").await;
    let charge = crate::policy::charge(s, Some(&guardrail), 10);
    assert!(store.charge(&charge, None, NOW).await.unwrap());
    store
        .create_admin(
            NewAdmin {
                name: &format!("approver-{}", s.tenant.name),
                role: AdminRole::Approver,
                tenant: Some(&s.tenant.id),
                token_hash: &format!("admin-{}", s.tenant.id),
                created_by: "test",
                expires_at: None,
            },
            "test",
            NOW,
        )
        .await
        .unwrap();
    store
        .create_token(
            NewToken {
                tenant: &s.tenant.id,
                agent: &s.agent.id,
                token_hash: &format!("token-{}", s.tenant.id),
                scope: &[],
                expires_at: NOW + 1000,
            },
            "test",
            NOW,
        )
        .await
        .unwrap();
    store
        .grant(
            &s.tenant.id,
            &s.agent.id,
            &s.connection.id,
            "*",
            "test",
            NOW,
        )
        .await
        .unwrap();
    let definition = ToolDefinition {
        name: "issue_refund".into(),
        description: None,
        input_schema: json!({"type": "object"}),
        annotations: None,
        title: None,
        output_schema: None,
        meta: None,
    };
    let tool = DiscoveredTool {
        hash: definition.pin_hash().unwrap(),
        definition,
        seed_effect: EffectClass::Spend,
        seed_source: "annotations",
    };
    store
        .sync_tools(&s.tenant.id, &s.connection.id, &[tool], NOW)
        .await
        .unwrap();
    let (size, head_hash) = store.audit_head(&s.tenant.id).await.unwrap();
    let body = CheckpointBody {
        tenant: s.tenant.id.clone(),
        size,
        head_hash,
        time: NOW,
    };
    store
        .insert_checkpoint(&Checkpoint::sign(keys.signing_key(), body), None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn row_level_security_hides_rows_from_unscoped_queries() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let a = seed(&f.store, "a").await;
    let b = seed(&f.store, "b").await;
    fill_every_table(&f.store, &a).await;
    fill_every_table(&f.store, &b).await;

    // The owner (a superuser here, which row-level security does not bind) sees both tenants.
    let mut owner = pg(&f).owner().await;
    for table in TENANT_TABLES {
        assert!(
            count(&mut owner, table).await >= 2,
            "{table} has rows of both tenants"
        );
    }

    // The application role, with no scope set, sees nothing at all.
    let mut app = pg(&f).app().await;
    for table in TENANT_TABLES {
        assert_eq!(count(&mut app, table).await, 0, "{table} without a tenant");
    }

    // Scoped to tenant b: only b's rows, however the query is written.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('portcullis.tenant', $1, true)")
        .bind(b.tenant.id.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    let tenants: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM approvals")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(tenants, [b.tenant.id.as_str(), b.tenant.id.as_str()]);
    for table in TENANT_TABLES {
        let column = if table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let foreign: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE {column} IS DISTINCT FROM $1"
        ))
        .bind(b.tenant.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(
            foreign, 0,
            "{table} scoped to b shows another tenant's rows"
        );
        assert!(
            count(&mut tx, table).await >= 1,
            "{table} shows b's own rows"
        );
    }
    // Nor can it change another tenant's rows or write into another tenant's chain.
    let changed = sqlx::query("UPDATE approvals SET summary = 'x' WHERE tenant_id = $1")
        .bind(a.tenant.id.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 0);
    let err = sqlx::query(
        "INSERT INTO audit_events (tenant_id, seq, time, actor, kind, detail, prev_hash, hash) \
         VALUES ($1, 999, 0, 'x', 'hold', '{}', 'p', 'h')",
    )
    .bind(a.tenant.id.as_str())
    .execute(&mut *tx)
    .await
    .expect_err("an insert into tenant a while scoped to b");
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // The scope was transaction-local: the same connection sees nothing again.
    assert_eq!(count(&mut app, "approvals").await, 0);
}

#[tokio::test]
async fn the_app_role_can_neither_rewrite_history_nor_loosen_the_rules() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let s = seed(&f.store, "acme").await;
    fill_every_table(&f.store, &s).await;
    let mut app = pg(&f).app().await;
    sqlx::query("SELECT set_config('portcullis.all_tenants', 'on', false)")
        .execute(&mut app)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_events SET actor = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_checkpoints SET size = 1",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
        "DELETE FROM receipt_nonces",
        "UPDATE receipt_nonces SET consumed_at = 0",
        "DELETE FROM audit_heads",
        "TRUNCATE approvals",
        "UPDATE policy_versions SET cedar = 'forbid'",
        "DELETE FROM policy_versions",
        "TRUNCATE policy_versions",
        "UPDATE approval_votes SET vote = 'deny'",
        "DELETE FROM approval_votes",
        "TRUNCATE approval_votes",
        "UPDATE ledger SET cost_cents = 0",
        "DELETE FROM ledger",
        "TRUNCATE ledger",
        "DELETE FROM guardrails",
        "DROP TRIGGER ledger_no_update ON ledger",
        "ALTER TABLE ledger NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON guardrails",
        "DROP TRIGGER audit_events_no_update ON audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "ALTER TABLE audit_events DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE approvals NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON approvals",
        "CREATE POLICY everything ON approvals USING (true)",
        "DROP TABLE audit_events",
        "DELETE FROM _sqlx_migrations",
        "ALTER ROLE portcullis_app BYPASSRLS",
        "SET ROLE postgres",
        "SET session_replication_role = replica",
    ] {
        let err = sqlx::query(sql)
            .execute(&mut app)
            .await
            .expect_err(sql)
            .into_database_error()
            .unwrap_or_else(|| panic!("{sql}: not a database error"));
        assert_eq!(err.code().as_deref(), Some("42501"), "{sql}: {err}");
    }
    // History is intact and still verifies.
    let events = verified_chain(&f.store, &s.tenant.id).await;
    assert!(events.len() > 3);
    assert_eq!(f.store.checkpoints(&s.tenant.id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_two_replicas_form_one_gapless_chain() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let replicas = [
        f.store.clone(),
        Store::open(&pg(&f).app_url(), &options()).await.unwrap(),
    ];
    let s = seed(&replicas[0], "acme").await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = replicas[i % 2].clone();
        let tenant = s.tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            let draft = AuditDraft::new(tenant, format!("replica:{}", i % 2), AuditKind::ToolCall);
            store.append_audit(draft, NOW + i as i64).await.unwrap()
        }));
    }
    let mut seqs: Vec<i64> = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().seq);
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (4..=67).collect::<Vec<_>>(),
        "each append got its own place"
    );
    let events = verified_chain(&replicas[1], &s.tenant.id).await;
    assert_eq!(events.len(), 3 + 64);
    for replica in ["replica:0", "replica:1"] {
        assert_eq!(
            events.iter().filter(|e| e.draft.actor == replica).count(),
            32
        );
    }
    assert_eq!(
        replicas[0].audit_head(&s.tenant.id).await.unwrap(),
        (67, events[66].hash.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_redeems_once_across_two_replicas() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let replicas = [
        f.store.clone(),
        Store::open(&pg(&f).app_url(), &options()).await.unwrap(),
    ];
    let s = seed(&replicas[0], "acme").await;
    let keys = KeyRing::generate();
    let approval = hold(&replicas[0], &s, 100, NOW + 1000).await;
    let signed = approve(&replicas[1], &keys, &approval).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (store, approval, signed) = (replicas[i % 2].clone(), approval.clone(), signed.clone());
        tasks.push(tokio::spawn(async move {
            redeem(&store, &approval, &signed).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one redemption across replicas");
    let executes = verified_chain(&replicas[1], &s.tenant.id)
        .await
        .into_iter()
        .filter(|e| e.draft.kind == AuditKind::Execute)
        .count();
    assert_eq!(executes, 1);
    // And after a "restart" (a new pool), the nonce is still spent.
    let restarted = Store::open(&pg(&f).app_url(), &options()).await.unwrap();
    assert!(matches!(
        redeem(&restarted, &approval, &signed).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn two_approvers_on_two_replicas_decide_once() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let other = Store::open(&pg(&f).app_url(), &options()).await.unwrap();
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    for round in 0..8 {
        let approval = hold(&f.store, &s, round, NOW + 1000).await;
        let decide = |store: Store, verdict: Verdict| {
            let approval = approval.clone();
            async move {
                let draft = AuditDraft::new(approval.tenant.clone(), "admin:x", AuditKind::Deny);
                store
                    .decide_approval(&approval.tenant, &approval.id, verdict, "x", draft, NOW)
                    .await
            }
        };
        let approve = Verdict::Approve {
            receipt: receipt(&keys, &approval),
            reason: None,
        };
        let deny = Verdict::Deny {
            reason: "no".into(),
        };
        let (first, second) = tokio::join!(
            decide(f.store.clone(), approve),
            decide(other.clone(), deny)
        );
        let outcomes = [first.is_ok(), second.is_ok()];
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
        for outcome in [first, second] {
            if let Err(e) = outcome {
                assert!(matches!(e, StoreError::Conflict(_)), "{e}");
            }
        }
    }
    verified_chain(&f.store, &s.tenant.id).await;
}

#[tokio::test]
async fn open_checks_the_schema_and_migrate_runs_concurrently() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };

    // A database that was never migrated is behind this binary.
    let empty = PgDatabase::create().await.unwrap();
    assert!(matches!(
        Store::open(&empty.app_url(), &options()).await,
        Err(StoreError::SchemaBehind)
    ));

    // Migrating one database from several processes at once: all succeed, once.
    let fresh = PgDatabase::create().await.unwrap();
    let url = fresh.owner_url();
    let (one, two, three) = tokio::join!(migrate(&url), migrate(&url), migrate(&url));
    one.unwrap();
    two.unwrap();
    three.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut fresh.owner().await)
        .await
        .unwrap();
    let known = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        applied, known as i64,
        "every migration applied exactly once"
    );
    let store = Store::open(&fresh.app_url(), &options()).await.unwrap();
    seed(&store, "acme").await;

    // The gateway refuses a role that row-level security does not bind.
    match Store::open(&pg(&f).owner_url(), &options()).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("row-level security"), "{message}")
        }
        other => panic!("a superuser store opened: {:?}", other.err()),
    }

    // A migration this binary does not know: the database is newer than the binary, for both
    // the gateway and `migrate`.
    f.exec_as_owner(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000000, 'from the future', TRUE, '\\x00', 0)",
    )
    .await
    .unwrap();
    assert!(matches!(
        Store::open(&pg(&f).app_url(), &options()).await,
        Err(StoreError::SchemaTooNew)
    ));
    assert!(matches!(
        migrate(&pg(&f).owner_url()).await,
        Err(StoreError::SchemaTooNew)
    ));
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_without_leaking_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let url = "postgres://portcullis_app:hunter2-secret@127.0.0.1:1/portcullis";
    for outcome in [
        Store::open(url, &options()).await.err(),
        migrate(url).await.err(),
    ] {
        match outcome {
            Some(StoreError::Unavailable(message)) => {
                assert!(message.contains("127.0.0.1:1"), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    match Store::open("mysql://root:hunter2@db/x", &options()).await {
        Err(e @ StoreError::UnsupportedUrl(_)) => assert!(!e.to_string().contains("hunter2")),
        other => panic!("expected an unsupported url, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_the_other_replicas_feed() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let other = Store::open(&pg(&f).app_url(), &options()).await.unwrap();
    let s = seed(&f.store, "acme").await;
    let token = f
        .store
        .create_token(
            NewToken {
                tenant: &s.tenant.id,
                agent: &s.agent.id,
                token_hash: "feed-hash",
                scope: &[],
                expires_at: NOW + 1000,
            },
            "x",
            NOW,
        )
        .await
        .unwrap();
    let before = other
        .shared_counters()
        .unwrap()
        .request_check("x")
        .await
        .unwrap()
        .access_generation;
    let mut feed = other
        .access_changes()
        .await
        .unwrap()
        .expect("a shared store has a feed");
    f.store
        .revoke_token(&s.tenant.id, &token.id, "x", NOW)
        .await
        .unwrap();
    // The generation moved with the commit itself: another replica sees it at once.
    let after = other
        .shared_counters()
        .unwrap()
        .request_check("x")
        .await
        .unwrap()
        .access_generation;
    assert!(after > before, "the revocation bumps the access generation");
    let changed = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next())
        .await
        .expect("notified in time");
    assert!(changed.unwrap(), "the revocation arrives as a change");
    assert!(f.store.access_changes().await.unwrap().is_some());
}

#[tokio::test]
async fn lockout_and_rate_limits_are_shared_by_replicas() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let other = Store::open(&pg(&f).app_url(), &options()).await.unwrap();
    let replicas = [&f.store, &other];
    let lockout = LockoutRule {
        threshold: 4,
        window_ms: 60_000,
        lockout_ms: 30_000,
    };
    // Four failures spread over two replicas lock the address; exactly one reports the start.
    let mut started = 0;
    for i in 0..4 {
        let counters = replicas[i % 2].shared_counters().unwrap();
        started += usize::from(
            counters
                .record_auth_failure("203.0.113.9", NOW + i as i64, &lockout)
                .await
                .unwrap(),
        );
    }
    assert_eq!(started, 1);
    for store in replicas {
        assert_eq!(
            store
                .shared_counters()
                .unwrap()
                .request_check("203.0.113.9")
                .await
                .unwrap()
                .locked_until,
            NOW + 3 + 30_000
        );
        assert_eq!(
            store
                .shared_counters()
                .unwrap()
                .request_check("198.51.100.1")
                .await
                .unwrap()
                .locked_until,
            0,
            "other addresses unaffected"
        );
    }

    // A burst of 5 is 5 across all replicas, not 5 each, however they take them (one at a
    // time or as leases); the first refusal is flagged once.
    let rate = RateRule {
        per_ms: 1.0 / 60_000.0,
        burst: 5.0,
    };
    for want in [1, 2, 3] {
        let token = TokenId::generate();
        let mut allowed = 0;
        let mut first_refusals = 0;
        for i in 0..10 {
            match replicas[i % 2]
                .shared_counters()
                .unwrap()
                .take_rate_tokens(&token, NOW, &rate, want)
                .await
                .unwrap()
            {
                RateLease::Granted(n) => {
                    assert!((1..=want).contains(&n), "{n} of {want}");
                    allowed += n;
                }
                RateLease::Limited {
                    first_refusal,
                    retry_after_ms,
                } => {
                    assert!(retry_after_ms > 0);
                    first_refusals += usize::from(first_refusal);
                }
            }
        }
        assert_eq!(allowed, 5, "leases of {want}");
        assert_eq!(first_refusals, 1);
        // A minute later one more request fits again.
        let later = other
            .shared_counters()
            .unwrap()
            .take_rate_tokens(&token, NOW + 60_000, &rate, want)
            .await
            .unwrap();
        assert_eq!(later, RateLease::Granted(1));
    }
    assert!(f.store.shared_counters().is_some());
}

/// Run `change` on one replica and check that `other` sees it: the access generation moved
/// with the commit itself, and a listener started before the change is notified.
async fn assert_reaches(other: &Store, what: &str, change: impl std::future::Future<Output = ()>) {
    let generation = || async {
        other
            .shared_counters()
            .unwrap()
            .request_check("x")
            .await
            .unwrap()
            .access_generation
    };
    let mut feed = other.access_changes().await.unwrap().unwrap();
    let before = generation().await;
    change.await;
    assert!(
        generation().await > before,
        "{what} bumps the access generation"
    );
    let notified = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: notified in time"));
    assert!(notified.unwrap(), "{what} arrives as a change");
}

/// Suspension, policies and guardrails decide access: each change reaches the other
/// replicas like a change to the access tables of 0002.
#[tokio::test]
async fn policy_changes_reach_the_other_replicas() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let other = Store::open(&pg(&f).app_url(), &options()).await.unwrap();
    let s = seed(&f.store, "acme").await;
    let tenant = &s.tenant.id;
    let draft = |kind| AuditDraft::new(tenant.clone(), "admin:x", kind);
    assert_reaches(&other, "suspending a tenant", async {
        f.store
            .set_tenant_suspended(tenant, true, draft(AuditKind::TenantSuspended), NOW)
            .await
            .unwrap();
    })
    .await;
    assert_reaches(&other, "suspending an agent", async {
        f.store
            .set_agent_suspended(
                tenant,
                &s.agent.id,
                true,
                draft(AuditKind::AgentSuspended),
                NOW,
            )
            .await
            .unwrap();
    })
    .await;
    assert_reaches(&other, "a policy version", async {
        f.store
            .put_policy(
                tenant,
                "permit",
                &json!({}),
                "h",
                "x",
                draft(AuditKind::PolicyUpdated),
                NOW,
            )
            .await
            .unwrap();
    })
    .await;
    let mut guardrail = None;
    assert_reaches(&other, "a new guardrail", async {
        guardrail = Some(crate::policy::create_guardrail(&f.store, &s, "refunds").await);
    })
    .await;
    let guardrail = guardrail.unwrap();
    assert_reaches(&other, "a guardrail's mode", async {
        f.store
            .set_guardrail_mode(
                tenant,
                &guardrail.id,
                GuardrailMode::ApproveEach,
                draft(AuditKind::GuardrailChanged),
                NOW,
            )
            .await
            .unwrap();
    })
    .await;
    assert_reaches(&other, "a revoked guardrail", async {
        f.store
            .revoke_guardrail(
                tenant,
                &guardrail.id,
                draft(AuditKind::GuardrailRevoked),
                NOW,
            )
            .await
            .unwrap();
    })
    .await;
}

/// Votes and charges from two replicas at once: still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn votes_and_charges_from_two_replicas_are_exact() {
    let Some(f) = Fixture::postgres().await else {
        return;
    };
    let replicas = [
        f.store.clone(),
        Store::open(&pg(&f).app_url(), &options()).await.unwrap(),
    ];
    let s = seed(&replicas[0], "acme").await;
    let guardrail = crate::policy::create_guardrail(&replicas[0], &s, "refunds").await;
    let limit = ChargeLimit {
        since: NOW,
        max_count: None,
        max_cents: Some(70),
    };
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, charge) = (
            replicas[i % 2].clone(),
            crate::policy::charge(&s, Some(&guardrail), 10),
        );
        tasks.push(tokio::spawn(async move {
            store.charge(&charge, Some(&limit), NOW).await.unwrap()
        }));
    }
    let mut charged = 0;
    for task in tasks {
        charged += usize::from(task.await.unwrap());
    }
    assert_eq!(
        charged, 7,
        "70 cents is seven charges of 10, across replicas"
    );

    // Three voters on two replicas, two needed: one completes it, one is too late.
    let keys = std::sync::Arc::new(KeyRing::generate());
    let approval = hold(&replicas[0], &s, 1, NOW + 1000).await;
    let mut voters = Vec::new();
    for (i, voter) in ["bob", "carol", "dave"].into_iter().enumerate() {
        voters.push(tokio::spawn(crate::policy::vote_until_accepted(
            replicas[i % 2].clone(),
            keys.clone(),
            approval.clone(),
            voter.into(),
            2,
        )));
    }
    let mut outcomes = Vec::new();
    for voter in voters {
        outcomes.push(voter.await.unwrap());
    }
    let completed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(a) if a.status == ApprovalStatus::Approved))
        .count();
    let late = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(StoreError::Conflict(Conflict::Status(
                    ApprovalStatus::Approved
                )))
            )
        })
        .count();
    assert_eq!((completed, late), (1, 1), "{outcomes:?}");
    assert_eq!(
        replicas[1]
            .votes(&s.tenant.id, &approval.id)
            .await
            .unwrap()
            .len(),
        2
    );
    verified_chain(&replicas[1], &s.tenant.id).await;
}
