-- Records: entries (never deleted; amended or marked entered-in-error), goal progress,
-- versioned personal details, and an append-only access log.
-- Clinical free text and personal details are sealed with AES-256-GCM by the service
-- (sealed bytea + the id of the key that sealed it); fields needed for queries stay clear.

CREATE TABLE entries (
    id                      uuid PRIMARY KEY,
    lineage_id              uuid NOT NULL,
    version                 integer NOT NULL CHECK (version >= 1),
    person_id               uuid NOT NULL,
    kind                    text NOT NULL CHECK (kind IN ('condition', 'medication', 'allergy', 'encounter', 'observation',
                                                          'care_plan', 'goal', 'note', 'document_reference')),
    status                  text NOT NULL CHECK (status IN ('active', 'resolved', 'inactive', 'completed', 'superseded', 'entered_in_error')),
    source_kind             text NOT NULL CHECK (source_kind IN ('professional', 'organisation', 'self')),
    source_organisation_id  uuid,
    author_id               uuid NOT NULL,
    author_display          text NOT NULL,
    effective_start         text,
    effective_end           text,
    effective_date          date NOT NULL,
    code_system             text,
    code                    text,
    code_display            text,
    text_sealed             bytea,
    details                 jsonb NOT NULL DEFAULT '{}',
    next_refill_on          date,
    supersedes_id           uuid REFERENCES entries (id),
    superseded_by_id        uuid REFERENCES entries (id),
    error_reason_sealed     bytea,
    key_id                  text,
    recorded_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (lineage_id, version)
);
CREATE INDEX entries_person_current ON entries (person_id, effective_date DESC, recorded_at DESC) WHERE status <> 'superseded';
CREATE INDEX entries_person_kind ON entries (person_id, kind) WHERE status NOT IN ('superseded', 'entered_in_error');
CREATE INDEX entries_refills ON entries (next_refill_on) WHERE kind = 'medication' AND status = 'active';

-- An entry's content never changes: only its status (to superseded or entered-in-error)
-- and the pointer to its successor, and never back. Rows are never deleted.
CREATE FUNCTION entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'record entries are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.lineage_id, NEW.version, NEW.person_id, NEW.kind, NEW.source_kind, NEW.source_organisation_id,
        NEW.author_id, NEW.author_display, NEW.effective_start, NEW.effective_end, NEW.code_system, NEW.code,
        NEW.code_display, NEW.text_sealed, NEW.details, NEW.supersedes_id, NEW.recorded_at)
       IS DISTINCT FROM
       (OLD.id, OLD.lineage_id, OLD.version, OLD.person_id, OLD.kind, OLD.source_kind, OLD.source_organisation_id,
        OLD.author_id, OLD.author_display, OLD.effective_start, OLD.effective_end, OLD.code_system, OLD.code,
        OLD.code_display, OLD.text_sealed, OLD.details, OLD.supersedes_id, OLD.recorded_at) THEN
        RAISE EXCEPTION 'record entries are immutable; amend instead' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status IN ('superseded', 'entered_in_error') AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'a superseded or entered-in-error entry cannot change status' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER entries_guard BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION entries_guard();

CREATE TABLE goal_progress (
    id               uuid PRIMARY KEY,
    goal_lineage_id  uuid NOT NULL,
    person_id        uuid NOT NULL,
    percent          integer NOT NULL CHECK (percent BETWEEN 0 AND 100),
    note_sealed      bytea,
    key_id           text,
    source_kind      text NOT NULL,
    author_id        uuid NOT NULL,
    author_display   text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX goal_progress_goal ON goal_progress (goal_lineage_id, recorded_at DESC);

CREATE TABLE person_details (
    person_id            uuid NOT NULL,
    version              integer NOT NULL CHECK (version >= 1),
    sealed               bytea NOT NULL,
    key_id               text NOT NULL,
    source_kind          text NOT NULL,
    updated_by_id        uuid NOT NULL,
    updated_by_display   text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, version)
);

-- Who read or changed a person's record, and who was refused. Append-only: the service's
-- own database role cannot change or remove a row (the trigger below refuses it).
CREATE TABLE access_log (
    id               bigserial PRIMARY KEY,
    person_id        uuid NOT NULL,
    accessor_id      text NOT NULL,
    accessor_kind    text NOT NULL,
    organisation_id  uuid,
    action           text NOT NULL CHECK (action IN ('read', 'write')),
    part             text NOT NULL,
    basis            text NOT NULL,
    purpose          text NOT NULL DEFAULT '',
    allowed          boolean NOT NULL,
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_log_person ON access_log (person_id, id DESC);

CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the access log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER access_log_no_update BEFORE UPDATE OR DELETE ON access_log FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();
