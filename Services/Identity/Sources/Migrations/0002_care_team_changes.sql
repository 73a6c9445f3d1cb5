-- The care-relationship change feed (ListCareTeamChanges): a row per relationship assigned
-- or ended, numbered in commit order, so that a service keeping its own copy of care
-- teams (records, for the record summary) can follow it from the last number it applied
-- and miss nothing.
--
-- Numbers come from a sequence, which hands them out in the order transactions ask, not
-- the order they commit: a reader could see number 8 committed before 7 and move past 7
-- for good. So the trigger first takes a transaction lock that every writer of care
-- relationships queues on; the number is drawn after it, and the next writer draws only
-- after this one has committed or rolled back. Care relationships change a few times a
-- day per organisation; serialising those writes costs nothing anyone would notice.
CREATE TABLE care_relationship_changes (
    sequence         bigserial PRIMARY KEY,
    relationship_id  uuid NOT NULL REFERENCES care_relationships (id),
    changed_at       timestamptz NOT NULL DEFAULT now()
);

-- Relationships are never deleted (they end); the foreign key on relationship_id makes a
-- delete fail rather than vanish from the feed, until deleting is designed with the feed
-- in mind.
--
-- The function resolves its names in this schema whatever the caller's search_path.
CREATE FUNCTION care_relationship_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- The lock key: this table's own oid (unique per schema) under a fixed high word.
    PERFORM pg_advisory_xact_lock((x'57434354'::bigint << 32) | 'care_relationship_changes'::regclass::oid::bigint);
    INSERT INTO care_relationship_changes (relationship_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER care_relationships_feed_insert AFTER INSERT ON care_relationships
    FOR EACH ROW EXECUTE FUNCTION care_relationship_changed();
-- An update that changes nothing (none is made today) adds no change.
CREATE TRIGGER care_relationships_feed_update AFTER UPDATE ON care_relationships
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION care_relationship_changed();

-- Relationships made before the feed existed are its first entries.
INSERT INTO care_relationship_changes (relationship_id)
    SELECT id FROM care_relationships ORDER BY started_at, id;
