//! The store's part of the hardening: one live request per action and one revert per
//! original (enforced by the database, also under concurrency), execution outcomes and the
//! unfinished-execution report, and the lifecycle of human credentials. Both backends.

use crate::*;

contract_tests!(
    concurrent_identical_holds_join_one_request,
    an_expired_request_is_superseded_by_a_new_one,
    one_live_or_executed_revert_per_original,
    outcomes_are_recorded_once_and_unfinished_executions_are_found,
    human_credentials_are_revoked_rotated_and_expire,
);

fn new_approval(
    s: &Seeded,
    amount: i64,
    expires_at: i64,
    revert_of: Option<&ApprovalId>,
) -> NewApproval {
    let action = action(s, amount);
    NewApproval {
        id: ApprovalId::generate(),
        tenant: s.tenant.id.clone(),
        agent: s.agent.id.clone(),
        session: None,
        action_hash: action.hash().unwrap(),
        action,
        effect: EffectClass::Spend,
        summary: "refund".into(),
        reasons: vec![],
        expires_at,
        revert_of: revert_of.cloned(),
    }
}

fn hold_draft(s: &Seeded) -> AuditDraft {
    AuditDraft::new(s.tenant.id.clone(), "agent:x", AuditKind::Hold)
}

async fn concurrent_identical_holds_join_one_request(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (store, new, draft) = (
                f.store.clone(),
                new_approval(&s, 700, NOW + 60_000, None),
                hold_draft(&s),
            );
            tokio::spawn(async move { store.create_approval(new, draft, NOW).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let outcome = task.await.unwrap();
        if matches!(outcome, HoldOutcome::Created(..)) {
            created += 1;
        }
        ids.insert(outcome.approval().id.clone());
    }
    assert_eq!((created, ids.len()), (1, 1));
    // One hold event: joining writes nothing.
    let holds = f
        .store
        .audit_page(&s.tenant.id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.draft.kind == AuditKind::Hold)
        .count();
    assert_eq!(holds, 1);
    // An approved one is joined too, and it is the one a retry finds.
    let keys = KeyRing::generate();
    let id = ids.into_iter().next().unwrap();
    let approval = f.store.find_approval(None, &id, NOW).await.unwrap();
    approve(&f.store, &keys, &approval).await;
    let again = f
        .store
        .create_approval(
            new_approval(&s, 700, NOW + 60_000, None),
            hold_draft(&s),
            NOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(&again, HoldOutcome::Joined(a) if a.id == id && a.status == ApprovalStatus::Approved)
    );
    let live = f
        .store
        .live_approval_for(&s.tenant.id, &s.agent.id, &approval.action_hash, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.id, id);
}

async fn an_expired_request_is_superseded_by_a_new_one(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let old = hold(&f.store, &s, 900, NOW + 1_000).await;
    let later = NOW + 2_000;
    let HoldOutcome::Created(new, _) = f
        .store
        .create_approval(
            new_approval(&s, 900, later + 60_000, None),
            hold_draft(&s),
            later,
        )
        .await
        .unwrap()
    else {
        panic!("an expired request does not block a new one");
    };
    assert_ne!(new.id, old.id);
    // The superseded request stays expired even if its expiry were in the future: it can
    // never be decided or redeemed.
    let stored = f.store.find_approval(None, &old.id, NOW).await.unwrap();
    assert_eq!(stored.status, ApprovalStatus::Expired);
    let keys = KeyRing::generate();
    let draft = AuditDraft::new(s.tenant.id.clone(), "admin:alice", AuditKind::Approve);
    let decided = f
        .store
        .decide_approval(
            &s.tenant.id,
            &old.id,
            Verdict::Approve {
                receipt: receipt(&keys, &old),
                reason: None,
            },
            "alice",
            draft,
            NOW,
        )
        .await;
    assert!(
        matches!(decided, Err(StoreError::Conflict(_))),
        "{decided:?}"
    );
}

async fn one_live_or_executed_revert_per_original(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let original = hold(&f.store, &s, 100, NOW + 60_000).await;
    let signed = approve(&f.store, &keys, &original).await;
    redeem(&f.store, &original, &signed).await.unwrap();
    let revert = |amount| new_approval(&s, amount, NOW + 60_000, Some(&original.id));
    let HoldOutcome::Created(first, _) = f
        .store
        .create_approval(revert(-100), hold_draft(&s), NOW)
        .await
        .unwrap()
    else {
        panic!("the first revert is stored");
    };
    assert_eq!(first.revert_of.as_ref(), Some(&original.id));
    // Another revert of the same original (even a different action) joins the first.
    let second = f
        .store
        .create_approval(revert(-99), hold_draft(&s), NOW)
        .await
        .unwrap();
    assert!(matches!(&second, HoldOutcome::Joined(a) if a.id == first.id));
    // Executed, it still blocks a second revert.
    let signed = approve(&f.store, &keys, &first).await;
    redeem(&f.store, &first, &signed).await.unwrap();
    let third = f
        .store
        .create_approval(revert(-98), hold_draft(&s), NOW)
        .await
        .unwrap();
    assert!(
        matches!(&third, HoldOutcome::Joined(a) if a.id == first.id && a.status == ApprovalStatus::Executed)
    );
}

async fn outcomes_are_recorded_once_and_unfinished_executions_are_found(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let done = hold(&f.store, &s, 1, NOW + 60_000).await;
    let lost = hold(&f.store, &s, 2, NOW + 60_000).await;
    for approval in [&done, &lost] {
        let signed = approve(&f.store, &keys, approval).await;
        redeem(&f.store, approval, &signed).await.unwrap();
    }
    let result = |approval: &Approval| {
        AuditDraft::new(
            approval.tenant.clone(),
            "agent:x",
            AuditKind::ExecutionResult,
        )
    };
    assert!(
        f.store
            .record_outcome(
                &s.tenant.id,
                &done.id,
                ExecutionOutcome::Ok,
                result(&done),
                NOW
            )
            .await
            .unwrap()
            .is_some()
    );
    // Recorded once: a second outcome changes nothing and writes nothing.
    assert!(
        f.store
            .record_outcome(
                &s.tenant.id,
                &done.id,
                ExecutionOutcome::Unknown,
                result(&done),
                NOW
            )
            .await
            .unwrap()
            .is_none()
    );
    let unfinished = f
        .store
        .unfinished_executions(NOW + 1, 100, NOW)
        .await
        .unwrap();
    assert_eq!(
        unfinished.iter().map(|a| &a.id).collect::<Vec<_>>(),
        [&lost.id]
    );
    assert!(
        f.store
            .unfinished_executions(NOW, 100, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    f.store
        .record_outcome(
            &s.tenant.id,
            &lost.id,
            ExecutionOutcome::Unknown,
            result(&lost),
            NOW,
        )
        .await
        .unwrap()
        .expect("marked unknown");
    let lost_now = f.store.find_approval(None, &lost.id, NOW).await.unwrap();
    assert_eq!(lost_now.status, ApprovalStatus::Unknown);
    let filter = ApprovalFilter {
        tenant: Some(s.tenant.id.clone()),
        status: Some(ApprovalStatus::Unknown),
        now: NOW,
        limit: 10,
    };
    assert_eq!(f.store.list_approvals(&filter).await.unwrap().len(), 1);
    // A late real outcome replaces `unknown`.
    f.store
        .record_outcome(
            &s.tenant.id,
            &lost.id,
            ExecutionOutcome::ToolError,
            result(&lost),
            NOW,
        )
        .await
        .unwrap()
        .expect("a real outcome replaces unknown");
    assert!(
        f.store
            .unfinished_executions(NOW + 1, 100, NOW)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn human_credentials_are_revoked_rotated_and_expire(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let root = f
        .store
        .create_admin(
            NewAdmin {
                name: "root",
                role: AdminRole::Admin,
                tenant: None,
                token_hash: "h-root",
                created_by: "system",
                expires_at: None,
            },
            "system",
            NOW,
        )
        .await
        .unwrap();
    let bob = f
        .store
        .create_admin(
            NewAdmin {
                name: "bob",
                role: AdminRole::Approver,
                tenant: Some(&s.tenant.id),
                token_hash: "h-bob",
                created_by: "root",
                expires_at: Some(NOW + 1_000),
            },
            "admin:root",
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(bob.created_by.as_deref(), Some("root"));
    assert!(bob.is_usable(NOW + 999) && !bob.is_usable(NOW + 1_000));
    let draft = || AuditDraft::new(s.tenant.id.clone(), "admin:root", AuditKind::AdminRotated);
    let (rotated, _) = f
        .store
        .rotate_admin(&bob.id, "h-bob-2", None, "root", draft(), NOW)
        .await
        .unwrap();
    assert_eq!(rotated.expires_at, None);
    assert!(matches!(
        f.store.admin_by_token_hash("h-bob").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        f.store.admin_by_token_hash("h-bob-2").await.unwrap().id,
        bob.id
    );
    let (revoked, _) = f.store.revoke_admin(&bob.id, draft(), NOW).await.unwrap();
    assert!(!revoked.is_usable(NOW));
    // Revoked: no more changes.
    assert!(matches!(
        f.store
            .rotate_admin(&bob.id, "h-bob-3", None, "root", draft(), NOW)
            .await,
        Err(StoreError::NotFound)
    ));
    // The last usable unscoped admin cannot be revoked or expired.
    let system = || AuditDraft::new(TenantId::system(), "admin:root", AuditKind::AdminRevoked);
    assert!(matches!(
        f.store.revoke_admin(&root.id, system(), NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        f.store
            .set_admin_expiry(&root.id, Some(NOW), system(), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let listed = f.store.list_admins(Some(&s.tenant.id)).await.unwrap();
    assert_eq!(
        listed.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    assert_eq!(f.store.list_admins(None).await.unwrap().len(), 2);
}

/// The migration files of one backend up to (not including) the hardening migration, in a
/// folder of their own: the schema of the release before.
fn migrations_before_hardening(backend: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    // The release before the hardening migration: every migration numbered below it (later
    // ones may build on it, as the console's rebuild of `admins` does).
    let names: Vec<String> = std::fs::read_dir(&source)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let hardening = names
        .iter()
        .find(|n| n.contains("hardening"))
        .expect("a hardening migration")
        .clone();
    for name in names.into_iter().filter(|n| *n < hardening) {
        std::fs::copy(source.join(&name), dir.path().join(name)).unwrap();
    }
    dir
}

/// Rows an earlier release could hold: two pending duplicates, an approved and a pending
/// duplicate, and two live reverts of one original.
const DUPLICATES: &[&str] = &[
    "INSERT INTO tenants (id, name, created_at) VALUES ('ten_01jz0000000000000000000001', 'acme', 1)",
    "INSERT INTO agents (id, tenant_id, name, created_at) VALUES ('agt_01jz0000000000000000000001', 'ten_01jz0000000000000000000001', 'a', 1)",
    "INSERT INTO connections (id, tenant_id, name, transport, created_at) VALUES ('con_01jz0000000000000000000001', 'ten_01jz0000000000000000000001', 'crm', '{}', 1)",
];

const ACTION: &str = r#"{"tenant":"ten_01jz0000000000000000000001","connection":"con_01jz0000000000000000000001","tool":"t","tool_definition_hash":"h","arguments":{}}"#;

fn approval_row(id: &str, hash: &str, status: &str, created_at: i64, evidence: &str) -> String {
    format!(
        "INSERT INTO approvals (id, tenant_id, agent_id, connection_id, tool, effect, action, action_hash, summary, reasons, status, created_at, expires_at, evidence) \
         VALUES ('{id}', 'ten_01jz0000000000000000000001', 'agt_01jz0000000000000000000001', 'con_01jz0000000000000000000001', 't', 'send', '{ACTION}', '{hash}', 's', '[]', '{status}', {created_at}, 9999999999999, '{evidence}')"
    )
}

fn duplicate_rows() -> Vec<String> {
    let mut rows: Vec<String> = DUPLICATES.iter().map(|s| (*s).to_owned()).collect();
    rows.push(approval_row(
        "apr_01jz0000000000000000000001",
        "h1",
        "pending",
        1,
        "{}",
    ));
    rows.push(approval_row(
        "apr_01jz0000000000000000000002",
        "h1",
        "pending",
        2,
        "{}",
    ));
    rows.push(approval_row(
        "apr_01jz0000000000000000000003",
        "h2",
        "approved",
        1,
        "{}",
    ));
    rows.push(approval_row(
        "apr_01jz0000000000000000000004",
        "h2",
        "pending",
        2,
        "{}",
    ));
    rows.push(approval_row(
        "apr_01jz0000000000000000000005",
        "h3",
        "executed",
        1,
        "{}",
    ));
    let of = r#"{"revert_of":"apr_01jz0000000000000000000005"}"#;
    rows.push(approval_row(
        "apr_01jz0000000000000000000006",
        "h4",
        "pending",
        1,
        of,
    ));
    rows.push(approval_row(
        "apr_01jz0000000000000000000007",
        "h5",
        "pending",
        2,
        of,
    ));
    rows
}

/// After the upgrade: exactly one live request per action, the approved one kept over the
/// pending one, the newest pending one otherwise, and one live revert per original.
async fn assert_duplicates_resolved(store: &Store) {
    let now = 10;
    let tenant: TenantId = "ten_01jz0000000000000000000001".parse().unwrap();
    let status = |n: u8| {
        let id: ApprovalId = format!("apr_01jz000000000000000000000{n}").parse().unwrap();
        let tenant = tenant.clone();
        async move {
            store
                .find_approval(Some(&tenant), &id, now)
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(status(1).await, ApprovalStatus::Expired);
    assert_eq!(status(2).await, ApprovalStatus::Pending);
    assert_eq!(status(3).await, ApprovalStatus::Approved);
    assert_eq!(status(4).await, ApprovalStatus::Expired);
    assert_eq!(status(6).await, ApprovalStatus::Expired);
    assert_eq!(status(7).await, ApprovalStatus::Pending);
}

#[tokio::test]
async fn an_upgrade_resolves_duplicates_an_earlier_release_made_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let before = migrations_before_hardening("sqlite");
    {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("old.db"))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(before.path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        for row in duplicate_rows() {
            sqlx::query(&row).execute(&mut conn).await.unwrap();
        }
    }
    let store = Store::open(&url, &options())
        .await
        .expect("the upgrade runs");
    assert_duplicates_resolved(&store).await;
}

#[tokio::test]
async fn an_upgrade_resolves_duplicates_an_earlier_release_made_postgres() {
    let Some(database) = PgDatabase::create().await else {
        return;
    };
    let before = migrations_before_hardening("postgres");
    {
        let mut conn = database.owner().await;
        sqlx::migrate::Migrator::new(before.path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        for row in duplicate_rows() {
            sqlx::query(&row).execute(&mut conn).await.unwrap();
        }
    }
    migrate(&database.owner_url())
        .await
        .expect("the upgrade runs");
    let store = Store::open(&database.app_url(), &options()).await.unwrap();
    assert_duplicates_resolved(&store).await;
}
