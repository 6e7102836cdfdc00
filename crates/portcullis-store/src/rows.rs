//! Row → record parsing and the few SQL fragments every query shares. Both schemas keep the
//! same column names and encodings (ids and JSON as text, times as Unix milliseconds), so a
//! record is read the same way whichever backend returned the row. A missing column, a value
//! of another type or unreadable JSON is `StoreError::Corrupt`, never a panic.

use crate::sql::Row;
use crate::*;
use portcullis_core::audit::{AuditKind, CheckpointBody};
use portcullis_core::effect::EffectClass;
use portcullis_core::guardrail::GuardrailMode;
use std::str::FromStr;

pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialise")
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    column: &str,
    text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("column `{column}`: {e}")))
}

/// A nullable JSON column.
pub(crate) fn parse_opt_json<T: serde::de::DeserializeOwned>(
    column: &str,
    text: Option<String>,
) -> StoreResult<Option<T>> {
    text.map(|t| parse_json(column, &t)).transpose()
}

pub(crate) fn parse_id<T: FromStr<Err = portcullis_core::id::IdParseError>>(
    text: String,
) -> StoreResult<T> {
    T::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn opt_id<T: FromStr<Err = portcullis_core::id::IdParseError>>(
    text: Option<String>,
) -> StoreResult<Option<T>> {
    text.map(parse_id).transpose()
}

fn parse_effect(text: &str) -> StoreResult<EffectClass> {
    EffectClass::parse(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn tenant(row: &Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: parse_id(row.text("id")?)?,
        name: row.text("name")?,
        created_at: row.int("created_at")?,
        suspended_at: row.opt_int("suspended_at")?,
        egress_hosts: parse_opt_json("egress_hosts", row.opt_text("egress_hosts")?)?
            .unwrap_or_default(),
        console_totp: console_totp(&row.text("console_totp")?)?,
    })
}

pub(crate) fn console_totp(text: &str) -> StoreResult<ConsoleTotp> {
    ConsoleTotp::parse(text).ok_or_else(|| StoreError::Corrupt(format!("console_totp `{text}`")))
}

pub(crate) fn admin(row: &Row) -> StoreResult<Admin> {
    let role = row.text("role")?;
    Ok(Admin {
        id: parse_id(row.text("id")?)?,
        name: row.text("name")?,
        role: AdminRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))?,
        tenant: opt_id(row.opt_text("tenant_id")?)?,
        created_at: row.int("created_at")?,
        created_by: row.opt_text("created_by")?,
        expires_at: row.opt_int("expires_at")?,
        rotated_at: row.opt_int("rotated_at")?,
        rotated_by: row.opt_text("rotated_by")?,
        revoked_at: row.opt_int("revoked_at")?,
    })
}

pub(crate) fn agent(row: &Row) -> StoreResult<Agent> {
    Ok(Agent {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        name: row.text("name")?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        owner: row.opt_text("owner")?,
        suspended_at: row.opt_int("suspended_at")?,
    })
}

/// The token lookup that authenticates an agent: `agent_tokens t` joined with its agent and
/// tenant, by the token's hash (`$1`).
pub(crate) const AGENT_AUTH_SELECT: &str = "SELECT t.*, a.name AS agent_name, a.revoked_at AS agent_revoked_at, n.name AS tenant_name, \
     a.suspended_at AS agent_suspended_at, n.suspended_at AS tenant_suspended_at, a.owner AS agent_owner, \
     p.revoked_at AS parent_revoked_at, p.expires_at AS parent_expires_at \
     FROM agent_tokens t JOIN agents a ON a.id = t.agent_id AND a.tenant_id = t.tenant_id \
     JOIN tenants n ON n.id = t.tenant_id AND n.deleted_at IS NULL \
     LEFT JOIN agent_tokens p ON p.id = t.parent_id AND p.tenant_id = t.tenant_id \
     WHERE t.token_hash = $1";

pub(crate) fn agent_auth(row: &Row) -> StoreResult<AgentAuth> {
    let parent: Option<TokenId> = opt_id(row.opt_text("parent_id")?)?;
    // A session token lives no longer than its parent and dies with it.
    let (mut expires_at, mut revoked_at) = (row.int("expires_at")?, row.opt_int("revoked_at")?);
    if parent.is_some() {
        match row.opt_int("parent_expires_at")? {
            Some(parent_expires) => expires_at = expires_at.min(parent_expires),
            // The parent row is gone: nothing vouches for the session.
            None => revoked_at = revoked_at.or(Some(0)),
        }
        revoked_at = revoked_at.or(row.opt_int("parent_revoked_at")?);
    }
    Ok(AgentAuth {
        token: AgentToken {
            id: parse_id(row.text("id")?)?,
            tenant: parse_id(row.text("tenant_id")?)?,
            agent: parse_id(row.text("agent_id")?)?,
            scope: parse_json("scope", &row.text("scope")?)?,
            expires_at,
            created_at: row.int("created_at")?,
            revoked_at,
            parent,
        },
        agent_name: row.text("agent_name")?,
        agent_revoked: row.opt_int("agent_revoked_at")?.is_some(),
        tenant_name: row.text("tenant_name")?,
        agent_suspended: row.opt_int("agent_suspended_at")?.is_some(),
        tenant_suspended: row.opt_int("tenant_suspended_at")?.is_some(),
        agent_owner: row.opt_text("agent_owner")?,
    })
}

/// An agent token row as stored (its own expiry and revocation, not its parent's).
pub(crate) fn agent_token(row: &Row) -> StoreResult<AgentToken> {
    Ok(AgentToken {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        agent: parse_id(row.text("agent_id")?)?,
        scope: parse_json("scope", &row.text("scope")?)?,
        expires_at: row.int("expires_at")?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        parent: opt_id(row.opt_text("parent_id")?)?,
    })
}

pub(crate) fn connection(row: &Row) -> StoreResult<Connection> {
    Ok(Connection {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        name: row.text("name")?,
        transport: parse_json("transport", &row.text("transport")?)?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        redaction: ResultRedaction {
            pii: {
                let text = row.text("result_pii")?;
                PiiMode::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("result_pii `{text}`")))?
            },
            secrets: {
                let text = row.text("result_secrets")?;
                SecretsMode::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("result_secrets `{text}`")))?
            },
        },
    })
}

pub(crate) fn grant(row: &Row) -> StoreResult<Grant> {
    Ok(Grant {
        agent: parse_id(row.text("agent_id")?)?,
        connection: parse_id(row.text("connection_id")?)?,
        tool: row.text("tool")?,
    })
}

pub(crate) fn tool(row: &Row) -> StoreResult<ToolRecord> {
    Ok(ToolRecord {
        connection: parse_id(row.text("connection_id")?)?,
        name: row.text("name")?,
        definition: parse_json("definition", &row.text("definition")?)?,
        pinned_hash: row.text("pinned_hash")?,
        current_hash: row.text("current_hash")?,
        effect: parse_effect(&row.text("effect")?)?,
        effect_source: row.text("effect_source")?,
        profile: parse_json("profile", &row.text("profile")?)?,
    })
}

/// An approval with what its effective status needs: `approvals a` joined with its connection.
/// A connection that was revoked, or that needs reconnecting (its OAuth grant was refused),
/// cannot run its held actions.
pub(crate) const APPROVAL_SELECT: &str = "SELECT a.*, COALESCE(c.revoked_at, c.needs_reconnection_at) AS connection_revoked_at FROM approvals a JOIN connections c ON c.id = a.connection_id";

/// The SQL condition (over `APPROVAL_SELECT`) for one effective status, with `now` the
/// placeholder for the current time. The same derivation as [`approval`], in SQL so a status
/// filter pages correctly.
pub(crate) fn effective_status_condition(status: Option<ApprovalStatus>, now: &str) -> String {
    let live =
        "a.superseded_at IS NULL AND COALESCE(c.revoked_at, c.needs_reconnection_at) IS NULL";
    match status {
        None => "TRUE".to_owned(),
        Some(ApprovalStatus::Pending) => {
            format!("a.status = 'pending' AND a.expires_at > {now} AND {live}")
        }
        Some(ApprovalStatus::Approved) => {
            format!("a.status = 'approved' AND a.expires_at > {now} AND {live}")
        }
        Some(ApprovalStatus::Expired) => format!(
            "a.status IN ('pending', 'approved') AND COALESCE(c.revoked_at, c.needs_reconnection_at) IS NULL \
             AND (a.expires_at <= {now} OR a.superseded_at IS NOT NULL)"
        ),
        Some(ApprovalStatus::NeedsReconnection) => {
            "a.status IN ('pending', 'approved') AND COALESCE(c.revoked_at, c.needs_reconnection_at) IS NOT NULL".to_owned()
        }
        Some(ApprovalStatus::Denied) => "a.status = 'denied'".to_owned(),
        Some(ApprovalStatus::Executed) => {
            "a.status = 'executed' AND (a.outcome IS NULL OR a.outcome <> 'unknown')".to_owned()
        }
        Some(ApprovalStatus::Unknown) => {
            "a.status = 'executed' AND a.outcome = 'unknown'".to_owned()
        }
    }
}

/// One row of `APPROVAL_SELECT`, with its effective status at `now`.
pub(crate) fn approval(row: &Row, now: UnixMillis) -> StoreResult<Approval> {
    let stored = row.text("status")?;
    let expires_at = row.int("expires_at")?;
    let mut status = ApprovalStatus::parse(&stored)
        .ok_or_else(|| StoreError::Corrupt(format!("status `{stored}`")))?;
    let outcome = row
        .opt_text("outcome")?
        .map(|o| {
            ExecutionOutcome::parse(&o).ok_or_else(|| StoreError::Corrupt(format!("outcome `{o}`")))
        })
        .transpose()?;
    if matches!(status, ApprovalStatus::Pending | ApprovalStatus::Approved) {
        if row.opt_int("connection_revoked_at")?.is_some() {
            status = ApprovalStatus::NeedsReconnection;
        } else if now >= expires_at || row.opt_int("superseded_at")?.is_some() {
            status = ApprovalStatus::Expired;
        }
    }
    if status == ApprovalStatus::Executed && outcome == Some(ExecutionOutcome::Unknown) {
        status = ApprovalStatus::Unknown;
    }
    Ok(Approval {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        agent: parse_id(row.text("agent_id")?)?,
        session: row.opt_text("session")?,
        connection: parse_id(row.text("connection_id")?)?,
        tool: row.text("tool")?,
        effect: parse_effect(&row.text("effect")?)?,
        action: parse_json("action", &row.text("action")?)?,
        action_hash: row.text("action_hash")?,
        summary: row.text("summary")?,
        reasons: parse_json("reasons", &row.text("reasons")?)?,
        status,
        created_at: row.int("created_at")?,
        expires_at,
        decided_by: row.opt_text("decided_by")?,
        decided_at: row.opt_int("decided_at")?,
        decision_reason: row.opt_text("decision_reason")?,
        receipt: parse_opt_json("receipt", row.opt_text("receipt")?)?,
        rules: parse_json("point_rules", &row.text("point_rules")?)?,
        evidence: parse_json("evidence", &row.text("evidence")?)?,
        cost_cents: row.int("cost_cents")?,
        before_state: parse_opt_json("before_state", row.opt_text("before_state")?)?,
        batch: parse_opt_json("batch", row.opt_text("batch")?)?,
        revert_of: opt_id(row.opt_text("revert_of")?)?,
        executed_at: row.opt_int("executed_at")?,
        outcome,
    })
}

pub(crate) fn vote(row: &Row) -> StoreResult<VoteRecord> {
    let vote = row.text("vote")?;
    Ok(VoteRecord {
        voter: row.text("voter")?,
        vote: Vote::parse(&vote).ok_or_else(|| StoreError::Corrupt(format!("vote `{vote}`")))?,
        reason: row.opt_text("reason")?,
        at: row.int("created_at")?,
    })
}

pub(crate) fn policy_version(row: &Row) -> StoreResult<PolicyVersion> {
    Ok(PolicyVersion {
        tenant: parse_id(row.text("tenant_id")?)?,
        version: row.int("version")?,
        cedar: row.text("cedar")?,
        settings: parse_json("settings", &row.text("settings")?)?,
        hash: row.text("hash")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
    })
}

pub(crate) fn ledger_entry(row: &Row) -> StoreResult<LedgerEntry> {
    Ok(LedgerEntry {
        id: row.int("id")?,
        time: row.int("time")?,
        tenant: parse_id(row.text("tenant_id")?)?,
        agent: parse_id(row.text("agent_id")?)?,
        guardrail: opt_id(row.opt_text("guardrail_id")?)?,
        approval: opt_id(row.opt_text("approval_id")?)?,
        connection: parse_id(row.text("connection_id")?)?,
        tool: row.text("tool")?,
        cost_cents: row.int("cost_cents")?,
        action_hash: row.text("action_hash")?,
    })
}

pub(crate) fn guardrail(row: &Row) -> StoreResult<Guardrail> {
    let mode = row.text("mode")?;
    Ok(Guardrail {
        id: parse_id(row.text("id")?)?,
        tenant: parse_id(row.text("tenant_id")?)?,
        name: row.text("name")?,
        spec: parse_json("spec", &row.text("spec")?)?,
        mode: GuardrailMode::parse(&mode)
            .ok_or_else(|| StoreError::Corrupt(format!("guardrail mode `{mode}`")))?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        revoked_at: row.opt_int("revoked_at")?,
    })
}

pub(crate) fn audit_event(row: &Row) -> StoreResult<AuditEvent> {
    let kind = row.text("kind")?;
    Ok(AuditEvent {
        seq: row.int("seq")?,
        time: row.int("time")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
        draft: AuditDraft {
            tenant: parse_id(row.text("tenant_id")?)?,
            actor: row.text("actor")?,
            session: row.opt_text("session")?,
            kind: AuditKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("audit kind `{kind}`")))?,
            resource: row.opt_text("resource")?,
            decision: row.opt_text("decision")?,
            receipt_id: row.opt_text("receipt_id")?,
            args_hash: row.opt_text("args_hash")?,
            detail: parse_json("detail", &row.text("detail")?)?,
        },
    })
}

pub(crate) fn checkpoint(row: &Row) -> StoreResult<Checkpoint> {
    Ok(Checkpoint {
        body: CheckpointBody {
            tenant: parse_id(row.text("tenant_id")?)?,
            size: row.int("size")?,
            head_hash: row.text("head_hash")?,
            time: row.int("time")?,
        },
        signature: row.text("signature")?,
        note: row.opt_text("note")?,
    })
}
