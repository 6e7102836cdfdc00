//! Store contract tests: what every backend must guarantee. They run on a fresh SQLite file
//! per test (the PostgreSQL backend joins this suite when it lands).

use portcullis_core::action::Action;
use portcullis_core::audit::{AuditDraft, AuditKind, ChainVerifier};
use portcullis_core::effect::EffectClass;
use portcullis_core::id::*;
use portcullis_core::keys::KeyRing;
use portcullis_core::receipt::{ReceiptBody, SignedReceipt};
use portcullis_store::*;
use serde_json::json;

const NOW: i64 = 1_800_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    url: String,
}

async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    Fixture {
        _dir: dir,
        store,
        url,
    }
}

struct Seeded {
    tenant: Tenant,
    agent: Agent,
    connection: Connection,
}

async fn seed(store: &Store, name: &str) -> Seeded {
    let tenant = store.create_tenant(name, "test", NOW).await.unwrap();
    let agent = store
        .create_agent(&tenant.id, "agent", "test", NOW)
        .await
        .unwrap();
    let connection = store
        .create_connection(
            &tenant.id,
            "crm",
            &json!({"kind": "stdio", "command": "x"}),
            "test",
            NOW,
        )
        .await
        .unwrap();
    Seeded {
        tenant,
        agent,
        connection,
    }
}

fn action(s: &Seeded, amount: i64) -> Action {
    Action {
        tenant: s.tenant.id.clone(),
        connection: s.connection.id.clone(),
        tool: "issue_refund".into(),
        tool_definition_hash: "h".into(),
        arguments: json!({ "amount_cents": amount }),
    }
}

async fn hold(store: &Store, s: &Seeded, amount: i64, expires_at: i64) -> Approval {
    let action = action(s, amount);
    let new = NewApproval {
        id: ApprovalId::generate(),
        tenant: s.tenant.id.clone(),
        agent: s.agent.id.clone(),
        session: None,
        action_hash: action.hash().unwrap(),
        action,
        effect: EffectClass::Spend,
        summary: "refund".into(),
        reasons: vec!["spend".into()],
        expires_at,
    };
    let draft = AuditDraft::new(s.tenant.id.clone(), "agent:x", AuditKind::Hold);
    store.create_approval(new, draft, NOW).await.unwrap().0
}

fn receipt(keys: &KeyRing, approval: &Approval) -> SignedReceipt {
    SignedReceipt::sign(
        keys.signing_key(),
        ReceiptBody {
            receipt_id: ReceiptId::generate(),
            approval_id: approval.id.clone(),
            tenant: approval.tenant.clone(),
            action_hash: approval.action_hash.clone(),
            approver: "alice".into(),
            approved_at: NOW,
            expires_at: approval.expires_at,
            nonce: SignedReceipt::new_nonce(),
        },
    )
}

async fn approve(store: &Store, keys: &KeyRing, approval: &Approval) -> SignedReceipt {
    let signed = receipt(keys, approval);
    let draft = AuditDraft::new(approval.tenant.clone(), "admin:alice", AuditKind::Approve);
    store
        .decide_approval(
            &approval.tenant,
            &approval.id,
            Verdict::Approve {
                receipt: signed.clone(),
                reason: None,
            },
            "alice",
            draft,
            NOW,
        )
        .await
        .unwrap();
    signed
}

#[tokio::test]
async fn every_mutation_lands_in_one_gapless_verifiable_chain() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let approval = hold(&f.store, &s, 100, NOW + 1000).await;
    approve(&f.store, &keys, &approval).await;
    let events = f.store.audit_page(&s.tenant.id, 0, 1000).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.draft.kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::TenantCreated,
            AuditKind::AgentCreated,
            AuditKind::ConnectionCreated,
            AuditKind::Hold,
            AuditKind::Approve
        ]
    );
    let mut verifier = ChainVerifier::new(s.tenant.id.clone(), &[], &keys.verifying_key()).unwrap();
    events.iter().for_each(|e| verifier.push(e).unwrap());
    assert_eq!(verifier.finish().unwrap().entries, 5);
}

#[tokio::test]
async fn concurrent_appends_form_one_linear_chain() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = f.store.clone();
        let tenant = s.tenant.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(
                    AuditDraft::new(tenant, format!("agent:{i}"), AuditKind::ToolCall),
                    NOW + i,
                )
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = f.store.audit_page(&s.tenant.id, 0, 1000).await.unwrap();
    assert_eq!(events.len(), 3 + 64);
    let keys = KeyRing::generate();
    let mut verifier = ChainVerifier::new(s.tenant.id.clone(), &[], &keys.verifying_key()).unwrap();
    events.iter().for_each(|e| verifier.push(e).unwrap());
}

#[tokio::test]
async fn a_nonce_redeems_once_even_under_concurrency() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let approval = hold(&f.store, &s, 100, NOW + 1000).await;
    let signed = approve(&f.store, &keys, &approval).await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = f.store.clone();
        let (tenant, approval_id, receipt_id, nonce) = (
            s.tenant.id.clone(),
            approval.id.clone(),
            signed.body.receipt_id.clone(),
            signed.body.nonce.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let draft = AuditDraft::new(tenant.clone(), "agent:x", AuditKind::Execute);
            store
                .redeem_receipt(&tenant, &approval_id, &receipt_id, &nonce, draft, NOW)
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1, "exactly one redemption");
    let executes = f
        .store
        .audit_page(&s.tenant.id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.draft.kind == AuditKind::Execute)
        .count();
    assert_eq!(executes, 1, "a failed redemption leaves no audit event");
    let after = f
        .store
        .find_approval(Some(&s.tenant.id), &approval.id, NOW)
        .await
        .unwrap();
    assert_eq!(after.status, ApprovalStatus::Executed);
}

#[tokio::test]
async fn a_decision_is_final_and_unredeemed_approvals_cannot_execute() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let approval = hold(&f.store, &s, 100, NOW + 1000).await;
    // Not approved yet: redeeming a made-up nonce for it fails and consumes nothing.
    let draft = AuditDraft::new(s.tenant.id.clone(), "agent:x", AuditKind::Execute);
    assert!(matches!(
        f.store
            .redeem_receipt(
                &s.tenant.id,
                &approval.id,
                &ReceiptId::generate(),
                "n1",
                draft,
                NOW
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let deny = AuditDraft::new(s.tenant.id.clone(), "admin:bob", AuditKind::Deny);
    f.store
        .decide_approval(
            &s.tenant.id,
            &approval.id,
            Verdict::Deny {
                reason: "no".into(),
            },
            "bob",
            deny,
            NOW,
        )
        .await
        .unwrap();
    let again = AuditDraft::new(s.tenant.id.clone(), "admin:alice", AuditKind::Approve);
    let signed = receipt(&keys, &approval);
    assert!(matches!(
        f.store
            .decide_approval(
                &s.tenant.id,
                &approval.id,
                Verdict::Approve {
                    receipt: signed,
                    reason: None
                },
                "alice",
                again,
                NOW
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    // An expired request cannot be decided.
    let expired = hold(&f.store, &s, 200, NOW + 10).await;
    let late = AuditDraft::new(s.tenant.id.clone(), "admin:alice", AuditKind::Approve);
    let signed = receipt(&keys, &expired);
    assert!(matches!(
        f.store
            .decide_approval(
                &s.tenant.id,
                &expired.id,
                Verdict::Approve {
                    receipt: signed,
                    reason: None
                },
                "alice",
                late,
                NOW + 10
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn effective_status_filters_page_in_sql() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let pending = hold(&f.store, &s, 1, NOW + 1000).await;
    let approved = hold(&f.store, &s, 2, NOW + 1000).await;
    approve(&f.store, &keys, &approved).await;
    let expired = hold(&f.store, &s, 3, NOW + 5).await;
    let list = |status| {
        let store = f.store.clone();
        let tenant = s.tenant.id.clone();
        async move {
            let filter = ApprovalFilter {
                tenant: Some(tenant),
                status: Some(status),
                now: NOW + 10,
                limit: 10,
            };
            store
                .list_approvals(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(ApprovalStatus::Pending).await,
        vec![pending.id.clone()]
    );
    assert_eq!(
        list(ApprovalStatus::Approved).await,
        vec![approved.id.clone()]
    );
    assert_eq!(
        list(ApprovalStatus::Expired).await,
        vec![expired.id.clone()]
    );
    f.store
        .revoke_connection(&s.tenant.id, &s.connection.id, "admin:x", NOW)
        .await
        .unwrap();
    let mut reconnect = list(ApprovalStatus::NeedsReconnection).await;
    reconnect.sort();
    let mut expected = vec![pending.id, approved.id, expired.id];
    expected.sort();
    assert_eq!(
        reconnect, expected,
        "every open request on a revoked connection needs reconnection"
    );
}

#[tokio::test]
async fn another_tenants_ids_are_not_found() {
    let f = fresh().await;
    let a = seed(&f.store, "a").await;
    let b = seed(&f.store, "b").await;
    let approval = hold(&f.store, &a, 100, NOW + 1000).await;
    assert!(matches!(
        f.store
            .find_approval(Some(&b.tenant.id), &approval.id, NOW)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        f.store.connection(&b.tenant.id, &a.connection.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        f.store
            .revoke_connection(&b.tenant.id, &a.connection.id, "x", NOW)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        f.store
            .grant(&b.tenant.id, &b.agent.id, &a.connection.id, "*", "x", NOW)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        f.store
            .create_agent(&TenantId::generate(), "x", "x", NOW)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        f.store
            .grants_for_agent(&b.tenant.id, &a.agent.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .audit_page(&b.tenant.id, 0, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.draft.tenant == b.tenant.id)
    );
}

#[tokio::test]
async fn the_database_refuses_to_rewrite_audit_history() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let (size, head_hash) = f.store.audit_head(&s.tenant.id).await.unwrap();
    let body = portcullis_core::audit::CheckpointBody {
        tenant: s.tenant.id.clone(),
        size,
        head_hash,
        time: NOW,
    };
    f.store
        .insert_checkpoint(&portcullis_core::audit::Checkpoint::sign(
            keys.signing_key(),
            body,
        ))
        .await
        .unwrap();
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(f.url.trim_start_matches("sqlite://"))
        .connect()
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_events SET actor = 'x'",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET size = 1",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(
        f.store
            .audit_page(&s.tenant.id, 0, 100)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(f.store.checkpoints(&s.tenant.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn tokens_are_found_by_hash_with_their_state() {
    let f = fresh().await;
    let s = seed(&f.store, "acme").await;
    let token = f
        .store
        .create_token(
            NewToken {
                tenant: &s.tenant.id,
                agent: &s.agent.id,
                token_hash: "hash-1",
                scope: &["crm".into()],
                expires_at: NOW + 5,
            },
            "x",
            NOW,
        )
        .await
        .unwrap();
    let auth = f.store.agent_token_by_hash("hash-1").await.unwrap();
    assert_eq!(auth.token.id, token.id);
    assert_eq!(auth.token.scope, vec!["crm".to_owned()]);
    assert!(auth.token.revoked_at.is_none() && !auth.agent_revoked);
    f.store
        .revoke_token(&s.tenant.id, &token.id, "x", NOW)
        .await
        .unwrap();
    assert!(
        f.store
            .agent_token_by_hash("hash-1")
            .await
            .unwrap()
            .token
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        f.store
            .revoke_token(&s.tenant.id, &token.id, "x", NOW)
            .await,
        Err(StoreError::NotFound)
    ));
    f.store
        .revoke_agent(&s.tenant.id, &s.agent.id, "x", NOW)
        .await
        .unwrap();
    assert!(
        f.store
            .agent_token_by_hash("hash-1")
            .await
            .unwrap()
            .agent_revoked
    );
    assert!(matches!(
        f.store.agent_token_by_hash("nope").await,
        Err(StoreError::NotFound)
    ));
}
