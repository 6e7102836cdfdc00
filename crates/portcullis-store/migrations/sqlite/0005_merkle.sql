-- Checkpoints in the C2SP signed-note format over a per-tenant RFC 6962 Merkle tree of the
-- audit entries. `note` is the signed checkpoint (origin, tree size, root hash and the
-- signature line); `root_hash` is the Merkle root it states, in hex; `frontier` is the right
-- edge of the tree at that size (the next checkpoint continues from it instead of rereading
-- every entry) — a cache that verification never trusts. Rows written before have none of
-- them and keep their format-1 signature over (tenant, size, head hash, time).
ALTER TABLE audit_checkpoints ADD COLUMN root_hash TEXT;
ALTER TABLE audit_checkpoints ADD COLUMN note TEXT;
ALTER TABLE audit_checkpoints ADD COLUMN frontier TEXT;
