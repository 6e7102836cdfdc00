-- Tell every replica when something an access decision depends on changes, so their caches
-- drop it: NOTIFY is delivered at commit to every listening connection.
CREATE OR REPLACE FUNCTION portcullis_notify_access() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('portcullis_access', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER agents_notify_access AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER agent_tokens_notify_access AFTER INSERT OR UPDATE OR DELETE ON agent_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER connections_notify_access AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER grants_notify_access AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
CREATE TRIGGER tools_notify_access AFTER INSERT OR UPDATE OR DELETE ON tools
    FOR EACH STATEMENT EXECUTE FUNCTION portcullis_notify_access();
