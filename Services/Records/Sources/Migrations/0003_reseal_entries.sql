-- Field-key rotation: `wholecare reseal-fields` re-seals stored values with the current
-- field key so an old key can be retired. An entry's content stays immutable; only its
-- sealed text may be replaced, and only when both hold:
--   * the session has set wholecare.reseal = 'on' (the tool does, per transaction), and
--   * the statement runs as the table's owner (the migration role), never the service's
--     own role, which can set the same setting but is not the owner.
-- The tool re-seals the same plaintext under the same associated data (the entry's id),
-- which the database cannot check; it is an operator's tool, run with the owner's
-- credentials. Everything else the guard checked before, it still checks; two columns it
-- did not check now are: the effective date never changes, and the sealed reason for an
-- entry marked entered-in-error is set only together with that status (or re-sealed as
-- above), never changed afterwards. The function's search path is fixed and catalog
-- names are qualified, so no role can stand its own pg_class in for the catalog's.
CREATE OR REPLACE FUNCTION entries_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    resealing boolean := false;
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.text_sealed IS DISTINCT FROM OLD.text_sealed
                             OR NEW.error_reason_sealed IS DISTINCT FROM OLD.error_reason_sealed) THEN
        -- coalesce: an unset setting reads as NULL, and NULL here would let the change through.
        resealing := coalesce(pg_catalog.current_setting('wholecare.reseal', true) = 'on'
            AND current_user = (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID), false);
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'record entries are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.lineage_id, NEW.version, NEW.person_id, NEW.kind, NEW.source_kind, NEW.source_organisation_id,
        NEW.author_id, NEW.author_display, NEW.effective_start, NEW.effective_end, NEW.effective_date, NEW.code_system,
        NEW.code, NEW.code_display, NEW.details, NEW.supersedes_id, NEW.recorded_at)
       IS DISTINCT FROM
       (OLD.id, OLD.lineage_id, OLD.version, OLD.person_id, OLD.kind, OLD.source_kind, OLD.source_organisation_id,
        OLD.author_id, OLD.author_display, OLD.effective_start, OLD.effective_end, OLD.effective_date, OLD.code_system,
        OLD.code, OLD.code_display, OLD.details, OLD.supersedes_id, OLD.recorded_at)
       OR (NEW.text_sealed IS DISTINCT FROM OLD.text_sealed
           AND NOT (resealing AND NEW.text_sealed IS NOT NULL AND OLD.text_sealed IS NOT NULL))
       OR (NEW.error_reason_sealed IS DISTINCT FROM OLD.error_reason_sealed
           AND NOT (resealing AND NEW.error_reason_sealed IS NOT NULL AND OLD.error_reason_sealed IS NOT NULL)
           AND NOT (OLD.error_reason_sealed IS NULL AND NEW.status = 'entered_in_error' AND OLD.status <> 'entered_in_error')) THEN
        RAISE EXCEPTION 'record entries are immutable; amend instead' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status IN ('superseded', 'entered_in_error') AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'a superseded or entered-in-error entry cannot change status' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
