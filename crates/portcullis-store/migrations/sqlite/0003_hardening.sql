-- Hardening: one live approval request per action and one live revert per original, enforced
-- by the database; execution outcomes (so a crash between redeeming and calling is visible);
-- the lifecycle of human credentials; and the index that finds an agent's reads across
-- sessions.

-- A pending or approved request that a newer one replaced (it expired first, or it was a
-- duplicate found when this migration ran). It can no longer be decided or executed; its
-- effective status is `expired`.
ALTER TABLE approvals ADD COLUMN superseded_at INTEGER;
-- The executed approval a revert undoes.
ALTER TABLE approvals ADD COLUMN revert_of TEXT REFERENCES approvals(id);
-- When the receipt was redeemed, and what the upstream call produced. `unknown`: redeemed,
-- but no result was ever recorded (the process died in between); never re-run.
ALTER TABLE approvals ADD COLUMN executed_at INTEGER;
ALTER TABLE approvals ADD COLUMN outcome TEXT
    CHECK (outcome IN ('ok', 'tool_error', 'upstream_error', 'unknown'));

UPDATE approvals SET revert_of = json_extract(evidence, '$.revert_of')
    WHERE json_extract(evidence, '$.revert_of') IS NOT NULL;

-- Duplicates made before the rule existed: keep one live request per (tenant, agent, action)
-- (an approved one over a pending one, then the newest) and supersede the rest.
UPDATE approvals SET superseded_at = created_at
WHERE status IN ('pending', 'approved') AND EXISTS (
    SELECT 1 FROM approvals b
    WHERE b.tenant_id = approvals.tenant_id AND b.agent_id = approvals.agent_id
      AND b.action_hash = approvals.action_hash AND b.status IN ('pending', 'approved')
      AND b.id <> approvals.id
      AND ((b.status = 'approved' AND approvals.status = 'pending')
           OR (b.status = approvals.status
               AND (b.created_at > approvals.created_at
                    OR (b.created_at = approvals.created_at AND b.id > approvals.id)))));

-- INVARIANT: at most one pending-or-approved request per (tenant, agent, action hash).
CREATE UNIQUE INDEX approvals_one_live ON approvals (tenant_id, agent_id, action_hash)
    WHERE status IN ('pending', 'approved') AND superseded_at IS NULL;

UPDATE approvals SET superseded_at = created_at
WHERE revert_of IS NOT NULL AND superseded_at IS NULL
  AND status IN ('pending', 'approved', 'executed') AND EXISTS (
    SELECT 1 FROM approvals b
    WHERE b.tenant_id = approvals.tenant_id AND b.revert_of = approvals.revert_of
      AND b.id <> approvals.id AND b.superseded_at IS NULL
      AND b.status IN ('pending', 'approved', 'executed')
      AND (b.status = 'executed' AND approvals.status <> 'executed'
           OR (b.created_at > approvals.created_at
               OR (b.created_at = approvals.created_at AND b.id > approvals.id))));

-- INVARIANT: at most one live or executed revert per original.
CREATE UNIQUE INDEX approvals_one_revert ON approvals (tenant_id, revert_of)
    WHERE revert_of IS NOT NULL AND superseded_at IS NULL
      AND status IN ('pending', 'approved', 'executed');

CREATE INDEX approvals_unfinished ON approvals (status, executed_at)
    WHERE status = 'executed' AND outcome IS NULL;

-- Who created each human identity (an admin's name, or `system`), when their credential
-- expires (never, when NULL), and when and by whom its token was last replaced (whoever
-- replaced it has held the new token).
ALTER TABLE admins ADD COLUMN created_by TEXT;
ALTER TABLE admins ADD COLUMN expires_at INTEGER;
ALTER TABLE admins ADD COLUMN rotated_at INTEGER;
ALTER TABLE admins ADD COLUMN rotated_by TEXT;

-- An agent's calls in every session (flow escalation follows the agent).
CREATE INDEX audit_events_actor ON audit_events (tenant_id, actor, time);
