-- Rate-limit leases: a replica takes several tokens from a token's shared bucket at once and
-- spends them from memory, so most requests need no round trip to the bucket. `granted` is
-- how many the last take handed out.
ALTER TABLE rate_buckets ADD COLUMN granted DOUBLE PRECISION NOT NULL DEFAULT 0;
