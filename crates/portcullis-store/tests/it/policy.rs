//! The contract of the policy features (tool profiles, suspension, policy versions, approval
//! extras and votes, batches, the spend ledger, guardrails, session evidence): every test
//! here runs on both backends (see `contract_tests!`).

use crate::*;
use portcullis_core::action::ToolDefinition;
use portcullis_core::audit::AuditEvent;
use portcullis_core::guardrail::{Condition, ConditionOp, GuardrailMode, GuardrailSpec};
use portcullis_core::profile::ToolProfile;

contract_tests!(
    tool_profiles_are_set_and_survive_syncs,
    suspension_and_owners_show_on_agents_tenants_and_tokens,
    policies_are_versioned_per_tenant,
    concurrent_policy_puts_take_distinct_versions,
    approvals_carry_their_extras,
    votes_decide_an_approval_once,
    a_refused_vote_writes_nothing,
    concurrent_approve_votes_on_two_of_n_are_exact,
    a_batch_is_approved_all_or_nothing,
    guardrails_are_created_changed_and_revoked,
    charges_fit_their_guardrails_budget,
    concurrent_charges_stop_exactly_at_the_limit,
    session_calls_are_the_allowed_calls_of_one_session,
    flagged_results_mark_the_history_untrusted,
    the_database_refuses_to_rewrite_policies_votes_and_the_ledger,
);

fn draft(tenant: &TenantId, kind: AuditKind) -> AuditDraft {
    AuditDraft::new(tenant.clone(), "admin:x", kind)
}

async fn events(store: &Store, tenant: &TenantId) -> Vec<AuditEvent> {
    verified_chain(store, tenant).await
}

async fn sync_tool(store: &Store, s: &Seeded, description: &str) -> ToolRecord {
    let definition = ToolDefinition {
        name: "issue_refund".into(),
        description: Some(description.into()),
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
    let mut tools = store
        .sync_tools(&s.tenant.id, &s.connection.id, &[tool], NOW)
        .await
        .unwrap();
    tools.pop().unwrap()
}

pub fn spec(max_per_day: u32) -> GuardrailSpec {
    GuardrailSpec {
        connection: "crm".into(),
        tool: "issue_refund".into(),
        agent: Some("agent".into()),
        conditions: vec![Condition {
            argument: "amount_cents".into(),
            op: ConditionOp::Le,
            value: json!(5000),
        }],
        max_per_day,
        max_cost_cents_per_day: 10_000,
        expires_at: NOW + 86_400_000,
    }
}

pub async fn create_guardrail(store: &Store, s: &Seeded, name: &str) -> Guardrail {
    store
        .create_guardrail(
            &s.tenant.id,
            name,
            &spec(5),
            GuardrailMode::Auto,
            "admin:x",
            draft(&s.tenant.id, AuditKind::GuardrailCreated),
            NOW,
        )
        .await
        .unwrap()
        .0
}

pub fn charge(s: &Seeded, guardrail: Option<&Guardrail>, cost_cents: i64) -> Charge {
    Charge {
        tenant: s.tenant.id.clone(),
        agent: s.agent.id.clone(),
        guardrail: guardrail.map(|g| g.id.clone()),
        approval: None,
        connection: s.connection.id.clone(),
        tool: "issue_refund".into(),
        cost_cents,
        action_hash: "act".into(),
    }
}

/// Cast one vote, with the receipt when it is the `needed`-th approval.
async fn vote(
    store: &Store,
    keys: &KeyRing,
    approval: &Approval,
    voter: &str,
    expected: &[&str],
    needed: usize,
) -> StoreResult<Approval> {
    let expected: Vec<String> = expected.iter().map(|v| v.to_string()).collect();
    let receipt = (expected.len() + 1 >= needed).then(|| receipt(keys, approval));
    store
        .cast_vote(
            &approval.tenant,
            &approval.id,
            voter,
            Vote::Approve,
            None,
            &expected,
            receipt,
            draft(&approval.tenant, AuditKind::Vote),
            NOW,
        )
        .await
        .map(|(approval, _)| approval)
}

fn conflict(result: StoreResult<impl std::fmt::Debug>) -> String {
    match result {
        Err(StoreError::Conflict(conflict)) => conflict.to_string(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn not_found(result: StoreResult<impl std::fmt::Debug>) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "expected not found, got {result:?}"
    );
}

async fn tool_profiles_are_set_and_survive_syncs(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let (tenant, connection) = (&s.tenant.id, &s.connection.id);
    assert_eq!(
        sync_tool(&f.store, &s, "Refund").await.profile,
        ToolProfile::default()
    );
    let profile = ToolProfile {
        tags: vec!["billing".into(), "production".into()],
        data_classes: vec!["customer".into()],
        cost_argument: Some("amount_cents".into()),
        ..ToolProfile::default()
    };
    let (tool, event) = f
        .store
        .set_tool_profile(
            tenant,
            connection,
            "issue_refund",
            &profile,
            draft(tenant, AuditKind::ToolProfiled),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(tool.profile, profile);
    assert_eq!(event.draft.kind, AuditKind::ToolProfiled);
    // A sync, unchanged or with a changed definition, keeps what the operator declared.
    assert_eq!(sync_tool(&f.store, &s, "Refund").await.profile, profile);
    let changed = sync_tool(&f.store, &s, "Refund, and more").await;
    assert!(changed.definition_changed());
    assert_eq!(changed.profile, profile);
    assert_eq!(
        f.store
            .tool(tenant, connection, "issue_refund")
            .await
            .unwrap()
            .profile,
        profile
    );
    let before = events(&f.store, tenant).await.len();
    not_found(
        f.store
            .set_tool_profile(
                tenant,
                connection,
                "nope",
                &profile,
                draft(tenant, AuditKind::ToolProfiled),
                NOW,
            )
            .await,
    );
    not_found(
        f.store
            .set_tool_profile(
                &other.tenant.id,
                connection,
                "issue_refund",
                &profile,
                draft(&other.tenant.id, AuditKind::ToolProfiled),
                NOW,
            )
            .await,
    );
    assert_eq!(events(&f.store, tenant).await.len(), before);
    // A profile this binary cannot read is corrupt, not silently empty.
    f.exec_as_owner("UPDATE tools SET profile = '{\"nope\": 1}'")
        .await
        .unwrap();
    assert!(matches!(
        f.store.tool(tenant, connection, "issue_refund").await,
        Err(StoreError::Corrupt(_))
    ));
}

async fn suspension_and_owners_show_on_agents_tenants_and_tokens(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let (tenant, agent) = (&s.tenant.id, &s.agent.id);
    assert_eq!(s.agent.suspended_at, None);
    assert_eq!(s.agent.owner, None);
    assert_eq!(s.tenant.suspended_at, None);
    f.store
        .create_token(
            NewToken {
                tenant,
                agent,
                token_hash: "hash-1",
                scope: &[],
                expires_at: NOW + 1000,
            },
            "x",
            NOW,
        )
        .await
        .unwrap();
    let auth = f.store.agent_token_by_hash("hash-1").await.unwrap();
    assert!(!auth.agent_suspended && !auth.tenant_suspended);

    let suspend = |suspended: bool, at: i64| {
        let kind = if suspended {
            AuditKind::AgentSuspended
        } else {
            AuditKind::AgentResumed
        };
        f.store
            .set_agent_suspended(tenant, agent, suspended, draft(tenant, kind), at)
    };
    let (suspended, event) = suspend(true, NOW + 1).await.unwrap();
    assert_eq!(suspended.suspended_at, Some(NOW + 1));
    assert_eq!(event.draft.kind, AuditKind::AgentSuspended);
    // Suspending again keeps the time it started.
    assert_eq!(
        suspend(true, NOW + 2).await.unwrap().0.suspended_at,
        Some(NOW + 1)
    );
    let auth = f.store.agent_token_by_hash("hash-1").await.unwrap();
    assert!(auth.agent_suspended && !auth.tenant_suspended);
    assert_eq!(
        f.store.list_agents(tenant).await.unwrap()[0].suspended_at,
        Some(NOW + 1)
    );
    assert_eq!(suspend(false, NOW + 3).await.unwrap().0.suspended_at, None);
    assert!(
        !f.store
            .agent_token_by_hash("hash-1")
            .await
            .unwrap()
            .agent_suspended
    );

    let (suspended, _) = f
        .store
        .set_tenant_suspended(
            tenant,
            true,
            draft(tenant, AuditKind::TenantSuspended),
            NOW + 4,
        )
        .await
        .unwrap();
    assert_eq!(suspended.suspended_at, Some(NOW + 4));
    assert_eq!(
        f.store.tenant(tenant).await.unwrap().suspended_at,
        Some(NOW + 4)
    );
    assert_eq!(
        f.store.tenant_by_name("acme").await.unwrap().suspended_at,
        Some(NOW + 4)
    );
    let auth = f.store.agent_token_by_hash("hash-1").await.unwrap();
    assert!(!auth.agent_suspended && auth.tenant_suspended);
    assert_eq!(
        f.store.tenant(&other.tenant.id).await.unwrap().suspended_at,
        None
    );
    let (resumed, _) = f
        .store
        .set_tenant_suspended(
            tenant,
            false,
            draft(tenant, AuditKind::TenantResumed),
            NOW + 5,
        )
        .await
        .unwrap();
    assert_eq!(resumed.suspended_at, None);

    let (owned, _) = f
        .store
        .set_agent_owner(
            tenant,
            agent,
            Some("alice"),
            draft(tenant, AuditKind::ConfigChanged),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(owned.owner.as_deref(), Some("alice"));
    assert_eq!(
        f.store.list_agents(tenant).await.unwrap()[0]
            .owner
            .as_deref(),
        Some("alice")
    );
    let (cleared, _) = f
        .store
        .set_agent_owner(
            tenant,
            agent,
            None,
            draft(tenant, AuditKind::ConfigChanged),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(cleared.owner, None);

    let kinds: Vec<_> = events(&f.store, tenant)
        .await
        .into_iter()
        .skip(4)
        .map(|e| e.draft.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            AuditKind::AgentSuspended,
            AuditKind::AgentSuspended,
            AuditKind::AgentResumed,
            AuditKind::TenantSuspended,
            AuditKind::TenantResumed,
            AuditKind::ConfigChanged,
            AuditKind::ConfigChanged,
        ]
    );

    // Another tenant's agent, or no tenant at all: not found, and nothing recorded.
    let (b, b_draft) = (&other.tenant.id, || {
        draft(&other.tenant.id, AuditKind::AgentSuspended)
    });
    not_found(
        f.store
            .set_agent_suspended(b, agent, true, b_draft(), NOW)
            .await,
    );
    not_found(
        f.store
            .set_agent_owner(b, agent, Some("x"), b_draft(), NOW)
            .await,
    );
    let nobody = TenantId::generate();
    not_found(
        f.store
            .set_tenant_suspended(
                &nobody,
                true,
                draft(&nobody, AuditKind::TenantSuspended),
                NOW,
            )
            .await,
    );
    assert_eq!(events(&f.store, b).await.len(), 3);
    assert!(
        f.store
            .list_agents(b)
            .await
            .unwrap()
            .iter()
            .all(|a| a.suspended_at.is_none())
    );
}

async fn put(store: &Store, tenant: &TenantId, cedar: &str) -> StoreResult<PolicyVersion> {
    store
        .put_policy(
            tenant,
            cedar,
            &json!({ "mode": cedar }),
            &format!("hash-{cedar}"),
            "admin:x",
            draft(tenant, AuditKind::PolicyUpdated),
            NOW,
        )
        .await
        .map(|(version, _)| version)
}

async fn policies_are_versioned_per_tenant(f: &Fixture) {
    let a = seed(&f.store, "a").await;
    let b = seed(&f.store, "b").await;
    let tenant = &a.tenant.id;
    assert_eq!(f.store.current_policy(tenant).await.unwrap(), None);
    assert!(f.store.policy_versions(tenant).await.unwrap().is_empty());
    let first = put(&f.store, tenant, "permit(principal, action, resource);")
        .await
        .unwrap();
    assert_eq!(
        first,
        PolicyVersion {
            tenant: tenant.clone(),
            version: 1,
            cedar: "permit(principal, action, resource);".into(),
            settings: json!({ "mode": "permit(principal, action, resource);" }),
            hash: "hash-permit(principal, action, resource);".into(),
            created_by: "admin:x".into(),
            created_at: NOW,
        }
    );
    let second = put(&f.store, tenant, "forbid").await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(
        f.store.current_policy(tenant).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        f.store.policy_versions(tenant).await.unwrap(),
        [second, first]
    );
    // Each tenant counts its own versions and sees only them.
    assert_eq!(f.store.current_policy(&b.tenant.id).await.unwrap(), None);
    assert_eq!(put(&f.store, &b.tenant.id, "b").await.unwrap().version, 1);
    assert_eq!(f.store.policy_versions(tenant).await.unwrap().len(), 2);
    not_found(put(&f.store, &TenantId::generate(), "x").await);
    let kinds: Vec<_> = events(&f.store, tenant)
        .await
        .into_iter()
        .skip(3)
        .map(|e| e.draft.kind)
        .collect();
    assert_eq!(kinds, [AuditKind::PolicyUpdated, AuditKind::PolicyUpdated]);
}

async fn concurrent_policy_puts_take_distinct_versions(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (store, tenant) = (f.store.clone(), s.tenant.id.clone());
        tasks.push(tokio::spawn(async move {
            put(&store, &tenant, &format!("p{i}"))
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=12).collect::<Vec<_>>());
    assert_eq!(events(&f.store, &s.tenant.id).await.len(), 3 + 12);
}

async fn approvals_carry_their_extras(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let plain = hold(&f.store, &s, 1, NOW + 1000).await;
    assert_eq!(
        (
            &plain.rules,
            &plain.evidence,
            plain.cost_cents,
            &plain.before_state,
            &plain.batch
        ),
        (&json!({}), &json!({}), 0, &None, &None)
    );
    let action = action(&s, 2);
    let new = NewApproval {
        id: ApprovalId::generate(),
        tenant: s.tenant.id.clone(),
        agent: s.agent.id.clone(),
        session: Some("ses-1".into()),
        action_hash: action.hash().unwrap(),
        action,
        effect: EffectClass::Spend,
        summary: "refund".into(),
        reasons: vec!["spend".into()],
        expires_at: NOW + 1000,
        revert_of: None,
    };
    let extras = ApprovalExtras {
        rules: json!({ "approvers": 2, "not": ["owner"] }),
        evidence: json!({ "read": ["customer"] }),
        cost_cents: 1200,
        before_state: Some(json!({ "balance": 5 })),
    };
    let HoldOutcome::Created(created, event) = f
        .store
        .create_approval_with(
            new,
            extras.clone(),
            draft(&s.tenant.id, AuditKind::Hold),
            NOW,
        )
        .await
        .unwrap()
    else {
        panic!("a first hold creates a request")
    };
    assert_eq!(event.draft.kind, AuditKind::Hold);
    let stored = f
        .store
        .find_approval(Some(&s.tenant.id), &created.id, NOW)
        .await
        .unwrap();
    for approval in [&created, &stored] {
        assert_eq!(approval.rules, extras.rules);
        assert_eq!(approval.evidence, extras.evidence);
        assert_eq!(approval.cost_cents, 1200);
        assert_eq!(approval.before_state, extras.before_state);
        assert_eq!(approval.batch, None);
        assert_eq!(approval.status, ApprovalStatus::Pending);
    }
}

async fn votes_decide_an_approval_once(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let keys = KeyRing::generate();
    let approval = hold(&f.store, &s, 1, NOW + 1000).await;
    assert!(
        f.store
            .votes(&s.tenant.id, &approval.id)
            .await
            .unwrap()
            .is_empty()
    );
    // Two of N: the first approve vote is recorded, the approval stays pending.
    let after_one = vote(&f.store, &keys, &approval, "bob", &[], 2)
        .await
        .unwrap();
    assert_eq!(after_one.status, ApprovalStatus::Pending);
    assert_eq!(after_one.receipt, None);
    assert_eq!(
        conflict(vote(&f.store, &keys, &approval, "bob", &["bob"], 2).await),
        "already voted"
    );
    // The second, which saw the first, completes it with the receipt.
    let done = vote(&f.store, &keys, &approval, "carol", &["bob"], 2)
        .await
        .unwrap();
    assert_eq!(done.status, ApprovalStatus::Approved);
    let signed = done.receipt.clone().unwrap();
    assert_eq!(
        done.decided_by.as_deref(),
        Some(signed.body.approver.as_str())
    );
    assert_eq!(done.decided_at, Some(NOW));
    let votes = f.store.votes(&s.tenant.id, &approval.id).await.unwrap();
    assert_eq!(
        votes,
        [
            VoteRecord {
                voter: "bob".into(),
                vote: Vote::Approve,
                reason: None,
                at: NOW
            },
            VoteRecord {
                voter: "carol".into(),
                vote: Vote::Approve,
                reason: None,
                at: NOW
            }
        ]
    );
    // A late vote, approve or deny, changes nothing; and the receipt redeems as usual.
    assert_eq!(
        conflict(vote(&f.store, &keys, &approval, "dave", &["bob", "carol"], 3).await),
        "approval is approved"
    );
    redeem(&f.store, &approval, &signed).await.unwrap();

    // A deny vote denies at once, with the voter and the reason.
    let denied = hold(&f.store, &s, 2, NOW + 1000).await;
    vote(&f.store, &keys, &denied, "bob", &[], 2).await.unwrap();
    let (after, event) = f
        .store
        .cast_vote(
            &s.tenant.id,
            &denied.id,
            "carol",
            Vote::Deny,
            Some("too much".into()),
            &[],
            None,
            draft(&s.tenant.id, AuditKind::Vote),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(event.draft.kind, AuditKind::Vote);
    assert_eq!(after.status, ApprovalStatus::Denied);
    assert_eq!(after.decided_by.as_deref(), Some("carol"));
    assert_eq!(after.decided_at, Some(NOW + 1));
    assert_eq!(after.decision_reason.as_deref(), Some("too much"));
    assert_eq!(
        f.store.votes(&s.tenant.id, &denied.id).await.unwrap()[1],
        VoteRecord {
            voter: "carol".into(),
            vote: Vote::Deny,
            reason: Some("too much".into()),
            at: NOW + 1
        }
    );
    assert_eq!(
        conflict(vote(&f.store, &keys, &denied, "dave", &["bob"], 2).await),
        "approval is denied"
    );

    // An expired approval takes no votes.
    let expired = hold(&f.store, &s, 3, NOW + 10).await;
    let late = f
        .store
        .cast_vote(
            &s.tenant.id,
            &expired.id,
            "bob",
            Vote::Approve,
            None,
            &[],
            Some(receipt(&keys, &expired)),
            draft(&s.tenant.id, AuditKind::Vote),
            NOW + 10,
        )
        .await;
    assert_eq!(conflict(late), "approval is expired");

    // Another tenant's approval: not found, and its votes are not visible.
    let foreign = f
        .store
        .cast_vote(
            &other.tenant.id,
            &approval.id,
            "bob",
            Vote::Deny,
            None,
            &[],
            None,
            draft(&other.tenant.id, AuditKind::Vote),
            NOW,
        )
        .await;
    not_found(foreign);
    assert!(
        f.store
            .votes(&other.tenant.id, &approval.id)
            .await
            .unwrap()
            .is_empty()
    );
    let vote_events = events(&f.store, &s.tenant.id)
        .await
        .iter()
        .filter(|e| e.draft.kind == AuditKind::Vote)
        .count();
    assert_eq!(vote_events, 4, "one event per accepted vote");
}

async fn a_refused_vote_writes_nothing(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    let approval = hold(&f.store, &s, 1, NOW + 1000).await;
    vote(&f.store, &keys, &approval, "bob", &[], 3)
        .await
        .unwrap();
    let before = events(&f.store, &s.tenant.id).await.len();
    // A voter who did not see bob's vote, even with a receipt in hand: refused.
    assert_eq!(
        conflict(vote(&f.store, &keys, &approval, "carol", &[], 1).await),
        "votes changed"
    );
    // One who expects a vote that was never cast: refused too.
    assert_eq!(
        conflict(vote(&f.store, &keys, &approval, "carol", &["bob", "dave"], 3).await),
        "votes changed"
    );
    assert_eq!(
        conflict(vote(&f.store, &keys, &approval, "bob", &["bob"], 3).await),
        "already voted"
    );
    assert_eq!(events(&f.store, &s.tenant.id).await.len(), before);
    assert_eq!(
        f.store
            .votes(&s.tenant.id, &approval.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let unchanged = f
        .store
        .find_approval(Some(&s.tenant.id), &approval.id, NOW)
        .await
        .unwrap();
    assert_eq!(unchanged.status, ApprovalStatus::Pending);
    assert_eq!(unchanged.receipt, None);
    // The order of the expected voters does not matter.
    vote(&f.store, &keys, &approval, "carol", &["bob"], 3)
        .await
        .unwrap();
    let done = vote(&f.store, &keys, &approval, "dave", &["carol", "bob"], 3)
        .await
        .unwrap();
    assert_eq!(done.status, ApprovalStatus::Approved);
}

/// What an approver's client does: read the votes, vote as the next one (with the receipt
/// when that completes the approval), and on "votes changed" read again and retry.
pub async fn vote_until_accepted(
    store: Store,
    keys: std::sync::Arc<KeyRing>,
    approval: Approval,
    voter: String,
    needed: usize,
) -> StoreResult<Approval> {
    loop {
        let prior: Vec<String> = store
            .votes(&approval.tenant, &approval.id)
            .await?
            .into_iter()
            .filter(|v| v.vote == Vote::Approve)
            .map(|v| v.voter)
            .collect();
        let prior: Vec<&str> = prior.iter().map(String::as_str).collect();
        match vote(&store, &keys, &approval, &voter, &prior, needed).await {
            Err(StoreError::Conflict(Conflict::VotesChanged)) => continue,
            outcome => return outcome,
        }
    }
}

async fn concurrent_approve_votes_on_two_of_n_are_exact(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let keys = std::sync::Arc::new(KeyRing::generate());
    for round in 0..6 {
        let approval = hold(&f.store, &s, round, NOW + 1000).await;
        let voters = ["bob", "carol"].map(|voter| {
            tokio::spawn(vote_until_accepted(
                f.store.clone(),
                keys.clone(),
                approval.clone(),
                voter.into(),
                2,
            ))
        });
        let mut finals = 0;
        for voter in voters {
            let approval = voter.await.unwrap().unwrap();
            finals += usize::from(approval.status == ApprovalStatus::Approved);
        }
        assert_eq!(finals, 1, "exactly one vote completes the approval");
        let votes = f.store.votes(&s.tenant.id, &approval.id).await.unwrap();
        assert_eq!(votes.len(), 2);
        let stored = f
            .store
            .find_approval(Some(&s.tenant.id), &approval.id, NOW)
            .await
            .unwrap();
        assert_eq!(stored.status, ApprovalStatus::Approved);
        assert!(stored.receipt.is_some());
    }
    let vote_events = events(&f.store, &s.tenant.id)
        .await
        .iter()
        .filter(|e| e.draft.kind == AuditKind::Vote)
        .count();
    assert_eq!(vote_events, 12);
}

async fn approve_batch(
    store: &Store,
    keys: &KeyRing,
    tenant: &TenantId,
    items: &[&Approval],
) -> StoreResult<(Vec<Approval>, AuditEvent)> {
    let ids: Vec<ApprovalId> = items.iter().map(|a| a.id.clone()).collect();
    store
        .approve_batch(
            tenant,
            &ids,
            "alice",
            &json!({ "size": ids.len() }),
            receipt(keys, items[0]),
            draft(tenant, AuditKind::Approve),
            NOW,
        )
        .await
}

async fn a_batch_is_approved_all_or_nothing(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let keys = KeyRing::generate();
    let (tenant, store) = (&s.tenant.id, &f.store);
    let [a, b, c] = [
        hold(store, &s, 1, NOW + 1000).await,
        hold(store, &s, 2, NOW + 1000).await,
        hold(store, &s, 3, NOW + 1000).await,
    ];
    let expired = hold(store, &s, 4, NOW).await;
    let foreign = hold(store, &other, 5, NOW + 1000).await;
    vote(store, &keys, &c, "bob", &[], 2).await.unwrap();
    let before = events(store, tenant).await.len();
    let refusals = [
        (
            vec![&a, &b, &c],
            format!("approval `{}` already has votes", c.id),
        ),
        (
            vec![&a, &expired],
            format!("approval `{}` is expired", expired.id),
        ),
        (
            vec![&foreign, &a],
            format!("approval `{}` is not found", foreign.id),
        ),
        (
            vec![&a, &b, &a],
            format!("approval `{}` is in the batch twice", a.id),
        ),
    ];
    for (items, expected) in refusals {
        assert_eq!(
            conflict(approve_batch(store, &keys, tenant, &items).await),
            expected
        );
    }
    assert_eq!(
        events(store, tenant).await.len(),
        before,
        "nothing recorded"
    );
    for approval in [&a, &b] {
        let unchanged = store
            .find_approval(Some(tenant), &approval.id, NOW)
            .await
            .unwrap();
        assert_eq!(unchanged.status, ApprovalStatus::Pending);
        assert!(store.votes(tenant, &approval.id).await.unwrap().is_empty());
    }

    let (approved, event) = approve_batch(store, &keys, tenant, &[&b, &a])
        .await
        .unwrap();
    assert_eq!(event.draft.kind, AuditKind::Approve);
    assert_eq!(
        approved.iter().map(|x| &x.id).collect::<Vec<_>>(),
        [&b.id, &a.id],
        "in the order asked"
    );
    let receipt = approved[0].receipt.clone().unwrap();
    for approval in &approved {
        assert_eq!(approval.status, ApprovalStatus::Approved);
        assert_eq!(approval.receipt.as_ref(), Some(&receipt));
        assert_eq!(approval.batch, Some(json!({ "size": 2 })));
        assert_eq!(approval.decided_by.as_deref(), Some("alice"));
        let votes = store.votes(tenant, &approval.id).await.unwrap();
        assert_eq!(
            votes
                .iter()
                .map(|v| (v.voter.as_str(), v.vote))
                .collect::<Vec<_>>(),
            [("alice", Vote::Approve)]
        );
    }
    assert_eq!(events(store, tenant).await.len(), before + 1, "one event");
    assert_eq!(
        conflict(approve_batch(store, &keys, tenant, &[&a]).await),
        format!("approval `{}` is approved", a.id)
    );
}

async fn guardrails_are_created_changed_and_revoked(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let (tenant, store) = (&s.tenant.id, &f.store);
    assert!(store.guardrails(tenant).await.unwrap().is_empty());
    let created = create_guardrail(store, &s, "small refunds").await;
    assert_eq!(
        (created.name.as_str(), &created.spec, created.mode),
        ("small refunds", &spec(5), GuardrailMode::Auto)
    );
    assert_eq!(
        (
            created.created_by.as_str(),
            created.created_at,
            created.updated_at
        ),
        ("admin:x", NOW, NOW)
    );
    assert_eq!(created.revoked_at, None);
    assert_eq!(store.guardrail(tenant, &created.id).await.unwrap(), created);
    let duplicate = store
        .create_guardrail(
            tenant,
            "small refunds",
            &spec(1),
            GuardrailMode::ApproveEach,
            "admin:y",
            draft(tenant, AuditKind::GuardrailCreated),
            NOW,
        )
        .await;
    conflict(duplicate);
    // Names are per tenant.
    create_guardrail(store, &other, "small refunds").await;

    let changed_draft = || draft(tenant, AuditKind::GuardrailChanged);
    let (moved, _) = store
        .set_guardrail_mode(
            tenant,
            &created.id,
            GuardrailMode::AutoWithNotice,
            changed_draft(),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        (moved.mode, moved.updated_at),
        (GuardrailMode::AutoWithNotice, NOW + 1)
    );
    let (respecified, _) = store
        .set_guardrail_spec(tenant, &created.id, &spec(9), changed_draft(), NOW + 2)
        .await
        .unwrap();
    assert_eq!(respecified.spec, spec(9));
    assert_eq!(respecified.mode, GuardrailMode::AutoWithNotice);
    assert_eq!(
        store.guardrails(tenant).await.unwrap(),
        std::slice::from_ref(&respecified)
    );

    // Another tenant's guardrail is not found, whatever is asked of it.
    let b = &other.tenant.id;
    let b_draft = || draft(b, AuditKind::GuardrailChanged);
    not_found(store.guardrail(b, &created.id).await);
    not_found(
        store
            .set_guardrail_mode(b, &created.id, GuardrailMode::Auto, b_draft(), NOW)
            .await,
    );
    not_found(
        store
            .set_guardrail_spec(b, &created.id, &spec(1), b_draft(), NOW)
            .await,
    );
    not_found(store.revoke_guardrail(b, &created.id, b_draft(), NOW).await);
    assert_eq!(store.guardrails(b).await.unwrap().len(), 1);

    let (revoked, event) = store
        .revoke_guardrail(
            tenant,
            &created.id,
            draft(tenant, AuditKind::GuardrailRevoked),
            NOW + 3,
        )
        .await
        .unwrap();
    assert_eq!(event.draft.kind, AuditKind::GuardrailRevoked);
    assert_eq!(revoked.revoked_at, Some(NOW + 3));
    assert!(store.guardrails(tenant).await.unwrap().is_empty());
    assert_eq!(store.guardrail(tenant, &created.id).await.unwrap(), revoked);
    not_found(
        store
            .set_guardrail_mode(
                tenant,
                &created.id,
                GuardrailMode::Auto,
                changed_draft(),
                NOW,
            )
            .await,
    );
    not_found(
        store
            .revoke_guardrail(tenant, &created.id, changed_draft(), NOW)
            .await,
    );
    // A revoked guardrail frees its name.
    let again = create_guardrail(store, &s, "small refunds").await;
    assert_ne!(again.id, created.id);
    not_found(
        store
            .create_guardrail(
                &TenantId::generate(),
                "x",
                &spec(1),
                GuardrailMode::Auto,
                "admin:x",
                draft(tenant, AuditKind::GuardrailCreated),
                NOW,
            )
            .await,
    );
    let kinds: Vec<_> = events(store, tenant)
        .await
        .into_iter()
        .skip(3)
        .map(|e| e.draft.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            AuditKind::GuardrailCreated,
            AuditKind::GuardrailChanged,
            AuditKind::GuardrailChanged,
            AuditKind::GuardrailRevoked,
            AuditKind::GuardrailCreated,
        ]
    );
}

async fn charges_fit_their_guardrails_budget(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let (tenant, store) = (&s.tenant.id, &f.store);
    let guardrail = create_guardrail(store, &s, "refunds").await;
    let by_count = ChargeLimit {
        since: NOW,
        max_count: Some(2),
        max_cents: None,
    };
    let guarded = charge(&s, Some(&guardrail), 100);
    assert!(store.charge(&guarded, Some(&by_count), NOW).await.unwrap());
    assert!(
        store
            .charge(&guarded, Some(&by_count), NOW + 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .charge(&guarded, Some(&by_count), NOW + 2)
            .await
            .unwrap()
    );
    // Entries before `since` do not count.
    let later = ChargeLimit {
        since: NOW + 1,
        ..by_count
    };
    assert!(store.charge(&guarded, Some(&later), NOW + 3).await.unwrap());
    let by_cents = ChargeLimit {
        since: NOW,
        max_count: None,
        max_cents: Some(450),
    };
    assert!(
        !store
            .charge(&charge(&s, Some(&guardrail), 200), Some(&by_cents), NOW + 4)
            .await
            .unwrap()
    );
    assert!(
        store
            .charge(&charge(&s, Some(&guardrail), 150), Some(&by_cents), NOW + 5)
            .await
            .unwrap()
    );
    // Without a guardrail (or without a limit) nothing is counted against: recorded.
    let approval = hold(store, &s, 1, NOW + 1000).await;
    let approved = Charge {
        approval: Some(approval.id.clone()),
        ..charge(&s, None, 700)
    };
    assert!(
        store
            .charge(&approved, Some(&by_count), NOW + 6)
            .await
            .unwrap()
    );
    assert!(store.charge(&guarded, None, NOW + 7).await.unwrap());

    assert_eq!(
        store.spend_since(tenant, NOW, None, None).await.unwrap(),
        (6, 1250)
    );
    assert_eq!(
        store
            .spend_since(tenant, NOW, None, Some(&guardrail.id))
            .await
            .unwrap(),
        (5, 550)
    );
    assert_eq!(
        store
            .spend_since(tenant, NOW + 4, Some(&s.agent.id), None)
            .await
            .unwrap(),
        (3, 950)
    );
    assert_eq!(
        store
            .spend_since(tenant, NOW, Some(&other.agent.id), None)
            .await
            .unwrap(),
        (0, 0)
    );
    // The one query a decision makes agrees with the narrow ones, for every slice.
    for (since, agent) in [
        (NOW, &s.agent.id),
        (NOW + 4, &s.agent.id),
        (NOW, &other.agent.id),
    ] {
        let spend = store.spend_today(tenant, agent, since).await.unwrap();
        let total = store.spend_since(tenant, since, None, None).await.unwrap();
        let mine = store
            .spend_since(tenant, since, Some(agent), None)
            .await
            .unwrap();
        let guarded = store
            .spend_since(tenant, since, None, Some(&guardrail.id))
            .await
            .unwrap();
        assert_eq!(spend.tenant_cents, total.1);
        assert_eq!(spend.agent_cents, mine.1);
        let today = spend
            .guardrails
            .get(&guardrail.id)
            .copied()
            .unwrap_or_default();
        assert_eq!((today.runs, today.cents), guarded);
        assert!(spend.guardrails.keys().all(|g| g == &guardrail.id));
    }
    let entries = store
        .ledger_entries(tenant, NOW + 1, NOW + 7)
        .await
        .unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.time, e.cost_cents))
            .collect::<Vec<_>>(),
        [
            (NOW + 1, 100),
            (NOW + 3, 100),
            (NOW + 5, 150),
            (NOW + 6, 700)
        ]
    );
    assert!(entries.windows(2).all(|w| w[0].id < w[1].id));
    let last = &entries[3];
    assert_eq!(
        (&last.tenant, &last.agent, &last.guardrail, &last.approval),
        (tenant, &s.agent.id, &None, &Some(approval.id.clone()))
    );
    assert_eq!(
        (
            &last.connection,
            last.tool.as_str(),
            last.action_hash.as_str()
        ),
        (&s.connection.id, "issue_refund", "act")
    );
    assert!(
        store
            .ledger_entries(&other.tenant.id, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .spend_since(&other.tenant.id, 0, None, None)
            .await
            .unwrap(),
        (0, 0)
    );

    // Everything a charge names must be the tenant's own, and the guardrail active.
    let foreign = [
        Charge {
            agent: other.agent.id.clone(),
            ..charge(&s, None, 1)
        },
        Charge {
            connection: other.connection.id.clone(),
            ..charge(&s, None, 1)
        },
        Charge {
            approval: Some(hold(store, &other, 1, NOW + 1000).await.id),
            ..charge(&s, None, 1)
        },
        Charge {
            tenant: other.tenant.id.clone(),
            ..charge(&s, Some(&guardrail), 1)
        },
    ];
    for bad in &foreign {
        not_found(store.charge(bad, None, NOW).await);
    }
    store
        .revoke_guardrail(
            tenant,
            &guardrail.id,
            draft(tenant, AuditKind::GuardrailRevoked),
            NOW,
        )
        .await
        .unwrap();
    not_found(store.charge(&guarded, Some(&by_count), NOW).await);
    assert_eq!(store.spend_since(tenant, 0, None, None).await.unwrap().0, 6);
}

async fn concurrent_charges_stop_exactly_at_the_limit(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let guardrail = create_guardrail(&f.store, &s, "refunds").await;
    let limit = ChargeLimit {
        since: NOW,
        max_count: Some(5),
        max_cents: None,
    };
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, charge) = (f.store.clone(), charge(&s, Some(&guardrail), 10));
        tasks.push(tokio::spawn(async move {
            store.charge(&charge, Some(&limit), NOW + i).await.unwrap()
        }));
    }
    let mut charged = 0;
    for task in tasks {
        charged += usize::from(task.await.unwrap());
    }
    assert_eq!(charged, 5);
    assert_eq!(
        f.store
            .spend_since(&s.tenant.id, NOW, None, Some(&guardrail.id))
            .await
            .unwrap(),
        (5, 50)
    );
}

async fn session_calls_are_the_allowed_calls_of_one_session(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let other = seed(&f.store, "other").await;
    let call =
        |tenant: &TenantId, actor: &str, session: &str, kind: AuditKind, decision: &str, n: i64| {
            let mut draft =
                AuditDraft::new(tenant.clone(), actor, kind).resource(format!("tool:crm/{n}"));
            draft.session = Some(session.into());
            draft.decision = Some(decision.into());
            draft
        };
    let drafts = [
        call(
            &s.tenant.id,
            "agent:x",
            "ses-1",
            AuditKind::ToolCall,
            "allow",
            1,
        ),
        call(
            &s.tenant.id,
            "agent:x",
            "ses-1",
            AuditKind::ToolCall,
            "deny",
            2,
        ),
        call(
            &s.tenant.id,
            "agent:x",
            "ses-1",
            AuditKind::Hold,
            "allow",
            3,
        ),
        call(
            &s.tenant.id,
            "agent:x",
            "ses-2",
            AuditKind::ToolCall,
            "allow",
            4,
        ),
        call(
            &other.tenant.id,
            "agent:x",
            "ses-1",
            AuditKind::ToolCall,
            "allow",
            5,
        ),
        call(
            &s.tenant.id,
            "agent:x",
            "ses-1",
            AuditKind::ToolCall,
            "allow",
            6,
        ),
        call(
            &s.tenant.id,
            "agent:x",
            "ses-1",
            AuditKind::ToolCall,
            "allow",
            1,
        ),
        call(
            &s.tenant.id,
            "agent:y",
            "ses-9",
            AuditKind::ToolCall,
            "allow",
            8,
        ),
    ];
    for (i, draft) in drafts.into_iter().enumerate() {
        f.store.append_audit(draft, NOW + i as i64).await.unwrap();
    }
    let touched = |reads: Vec<SessionRead>| -> Vec<(String, i64)> {
        reads.into_iter().map(|r| (r.resource, r.calls)).collect()
    };
    let tool = |n: i64, calls: i64| (format!("tool:crm/{n}"), calls);
    // Only the session (the actor's window starts after everything): each tool once, most
    // recent first, with how often it was called.
    let later = NOW + 1_000;
    let session = f
        .store
        .session_reads(&s.tenant.id, Some("ses-1"), "agent:x", later)
        .await
        .unwrap();
    assert_eq!(touched(session), [tool(1, 2), tool(6, 1)]);
    // The session plus the actor's calls in other sessions inside the window.
    let with_agent = f
        .store
        .session_reads(&s.tenant.id, Some("ses-1"), "agent:x", NOW + 3)
        .await
        .unwrap();
    assert_eq!(touched(with_agent), [tool(1, 2), tool(6, 1), tool(4, 1)]);
    // A fresh (or no) session of the same agent sees the agent's recent reads.
    let fresh = f
        .store
        .session_reads(&s.tenant.id, None, "agent:x", NOW)
        .await
        .unwrap();
    assert_eq!(touched(fresh), [tool(1, 2), tool(6, 1), tool(4, 1)]);
    let theirs = f
        .store
        .session_reads(&other.tenant.id, Some("ses-1"), "agent:x", NOW)
        .await
        .unwrap();
    assert_eq!(touched(theirs), [tool(5, 1)]);
    assert!(
        f.store
            .session_reads(&s.tenant.id, Some("ses-3"), "agent:z", NOW)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn flagged_results_mark_the_history_untrusted(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let event = |actor: &str, session: &str, kind: AuditKind, n: i64| {
        let mut draft =
            AuditDraft::new(s.tenant.id.clone(), actor, kind).resource(format!("tool:crm/{n}"));
        draft.session = Some(session.into());
        if kind == AuditKind::ToolCall {
            draft.decision = Some("allow".into());
        }
        draft
    };
    for (i, draft) in [
        event("agent:x", "ses-1", AuditKind::ToolCall, 1),
        event("agent:x", "ses-1", AuditKind::UntrustedContent, 1),
        event("agent:x", "ses-1", AuditKind::ToolCall, 2),
        // Another agent's flagged result in another session is not this history.
        event("agent:y", "ses-9", AuditKind::UntrustedContent, 3),
        // Only the two kinds count: a redaction event is no read.
        event("agent:x", "ses-1", AuditKind::Redaction, 4),
    ]
    .into_iter()
    .enumerate()
    {
        f.store.append_audit(draft, NOW + i as i64).await.unwrap();
    }
    let reads = f
        .store
        .session_reads(&s.tenant.id, Some("ses-1"), "agent:x", NOW + 1_000)
        .await
        .unwrap();
    let seen: Vec<(String, i64, bool)> = reads
        .into_iter()
        .map(|r| (r.resource, r.calls, r.untrusted))
        .collect();
    assert_eq!(
        seen,
        [
            ("tool:crm/2".to_owned(), 1, false),
            ("tool:crm/1".to_owned(), 1, true),
        ]
    );
    // A fresh session of the same agent inside the window sees the flag too.
    let fresh = f
        .store
        .session_reads(&s.tenant.id, None, "agent:x", NOW)
        .await
        .unwrap();
    assert!(
        fresh
            .iter()
            .any(|r| r.resource == "tool:crm/1" && r.untrusted)
    );
}

async fn the_database_refuses_to_rewrite_policies_votes_and_the_ledger(f: &Fixture) {
    let s = seed(&f.store, "acme").await;
    let keys = KeyRing::generate();
    put(&f.store, &s.tenant.id, "permit").await.unwrap();
    let approval = hold(&f.store, &s, 1, NOW + 1000).await;
    vote(&f.store, &keys, &approval, "bob", &[], 2)
        .await
        .unwrap();
    assert!(
        f.store
            .charge(&charge(&s, None, 5), None, NOW)
            .await
            .unwrap()
    );
    let mut statements = vec![
        "UPDATE policy_versions SET cedar = 'forbid'",
        "DELETE FROM policy_versions",
        "UPDATE approval_votes SET vote = 'deny'",
        "DELETE FROM approval_votes",
        "UPDATE ledger SET cost_cents = 0",
        "DELETE FROM ledger",
    ];
    if f.is_postgres() {
        statements.extend([
            "TRUNCATE policy_versions",
            "TRUNCATE approval_votes",
            "TRUNCATE ledger",
        ]);
    }
    for sql in statements {
        let err = f.exec_as_owner(sql).await.expect_err(sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(
        f.store.policy_versions(&s.tenant.id).await.unwrap()[0].cedar,
        "permit"
    );
    assert_eq!(
        f.store
            .votes(&s.tenant.id, &approval.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        f.store
            .spend_since(&s.tenant.id, 0, None, None)
            .await
            .unwrap(),
        (1, 5)
    );
}
