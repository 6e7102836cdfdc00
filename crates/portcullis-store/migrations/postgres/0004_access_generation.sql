-- A counter every change to access data bumps in the same transaction, so each replica can
-- compare it on every request (in the query that checks lockouts, no extra round trip) and
-- drop its cache before serving anything that changed: "revoked on one replica, refused by
-- the others on their next request", strictly, whatever the NOTIFY delivery delay.
CREATE TABLE access_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO access_generation (id, generation) VALUES (1, 0);
GRANT SELECT, UPDATE ON access_generation TO portcullis_app;

CREATE OR REPLACE FUNCTION portcullis_notify_access() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_generation SET generation = generation + 1 WHERE id = 1;
    PERFORM pg_notify('portcullis_access', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
