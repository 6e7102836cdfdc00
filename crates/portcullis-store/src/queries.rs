//! SQL that both backends run as written: sqlx's SQLite driver accepts PostgreSQL's `$N`
//! placeholders, so a statement whose syntax both databases share is written once, here.

/// Supersede the expired live requests a new hold would collide with: the same (tenant,
/// agent, action hash), and for a revert, an expired live revert of the same original.
/// `$1` tenant, `$2` agent, `$3` action hash, `$4` revert_of (or NULL), `$5` now.
pub(crate) const SUPERSEDE_EXPIRED_LIVE: &str = "UPDATE approvals SET superseded_at = $5 \
     WHERE tenant_id = $1 AND superseded_at IS NULL AND expires_at <= $5 \
     AND status IN ('pending', 'approved') \
     AND ((agent_id = $2 AND action_hash = $3) OR ($4 IS NOT NULL AND revert_of = $4))";

/// A new pending request, unless a live one (or for a revert, a live or executed revert of
/// the same original) already exists: the unique indexes `approvals_one_live` and
/// `approvals_one_revert` make the insert do nothing then.
pub(crate) const INSERT_APPROVAL: &str = "INSERT INTO approvals (id, tenant_id, agent_id, session, connection_id, tool, effect, action, action_hash, summary, \
     reasons, status, created_at, expires_at, point_rules, evidence, cost_cents, before_state, revert_of) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13, $14, $15, $16, $17, $18) \
     ON CONFLICT DO NOTHING";

/// The request a refused insert collided with (appended to `APPROVAL_SELECT`): the live
/// request for the same action first, then the revert of the same original.
/// `$1` tenant, `$2` agent, `$3` action hash, `$4` revert_of (or NULL).
pub(crate) const LIVE_CONFLICT: &str = " WHERE a.tenant_id = $1 AND a.superseded_at IS NULL \
     AND ((a.agent_id = $2 AND a.action_hash = $3 AND a.status IN ('pending', 'approved')) \
          OR ($4 IS NOT NULL AND a.revert_of = $4 AND a.status IN ('pending', 'approved', 'executed'))) \
     ORDER BY CASE WHEN a.agent_id = $2 AND a.action_hash = $3 THEN 0 ELSE 1 END LIMIT 1";

/// The newest request that decides an identical call now (appended to `APPROVAL_SELECT`): an
/// approved one first (a retry executes it), then a pending one, then a standing denial.
/// `$1` tenant, `$2` agent, `$3` action hash, `$4` now.
pub(crate) const LIVE_FOR_ACTION: &str = " WHERE a.tenant_id = $1 AND a.agent_id = $2 AND a.action_hash = $3 \
     AND a.status IN ('pending', 'approved', 'denied') AND a.expires_at > $4 AND a.superseded_at IS NULL \
     ORDER BY CASE a.status WHEN 'approved' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, a.created_at DESC LIMIT 1";

/// Spend an approval: `approved` → `executed`, only while it is live and its connection is.
/// `$1` tenant, `$2` approval, `$3` now.
pub(crate) const MARK_EXECUTED: &str = "UPDATE approvals SET status = 'executed', executed_at = $3 \
     WHERE tenant_id = $1 AND id = $2 AND status = 'approved' AND superseded_at IS NULL \
     AND connection_id IN (SELECT id FROM connections WHERE revoked_at IS NULL)";

/// Record what an executed approval's call produced; a real outcome replaces `unknown`, and
/// nothing replaces a real outcome. `$1` tenant, `$2` approval, `$3` outcome.
pub(crate) const RECORD_OUTCOME: &str = "UPDATE approvals SET outcome = $3 \
     WHERE tenant_id = $1 AND id = $2 AND status = 'executed' \
     AND (outcome IS NULL OR (outcome = 'unknown' AND $3 <> 'unknown'))";

/// Executed approvals with no recorded outcome, redeemed before `$1`, oldest first, at most
/// `$2` (appended to `APPROVAL_SELECT`).
pub(crate) const UNFINISHED_EXECUTIONS: &str = " WHERE a.status = 'executed' AND a.outcome IS NULL \
     AND a.executed_at IS NOT NULL AND a.executed_at < $1 ORDER BY a.executed_at LIMIT $2";

/// Humans, of one tenant (`$1`) or all of them (`$1` NULL), oldest first.
pub(crate) const LIST_ADMINS: &str =
    "SELECT * FROM admins WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY created_at, name";

pub(crate) const INSERT_ADMIN: &str = "INSERT INTO admins (id, name, role, tenant_id, token_hash, created_at, created_by, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// `$1` id, `$2` now.
pub(crate) const REVOKE_ADMIN: &str =
    "UPDATE admins SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

/// `$1` id, `$2` new token hash, `$3` now, `$4` new expiry (NULL: none).
pub(crate) const ROTATE_ADMIN: &str = "UPDATE admins SET token_hash = $2, rotated_at = $3, expires_at = $4 \
     WHERE id = $1 AND revoked_at IS NULL";

/// `$1` id, `$2` expiry (NULL: none).
pub(crate) const SET_ADMIN_EXPIRY: &str =
    "UPDATE admins SET expires_at = $2 WHERE id = $1 AND revoked_at IS NULL";

/// Unscoped admins still able to act at `$1`, other than `$2`.
pub(crate) const OTHER_ACTIVE_ROOT_ADMINS: &str = "SELECT COUNT(*) FROM admins \
     WHERE tenant_id IS NULL AND role = 'admin' AND revoked_at IS NULL \
     AND (expires_at IS NULL OR expires_at > $1) AND id <> $2";
