-- Records' copy of each person's active care team, for the record summary, kept from
-- identity's care-relationship change feed (ListCareTeamChanges) by the care-team
-- follower (see CareTeamCopy). A summary then reads the care team in the same round
-- trip as the rest of the record instead of calling identity for it.
--
-- Only active relationships are kept: an ended one is deleted when its change arrives.
-- `care_team_feed` holds the last change applied, so a restarted service (or another
-- instance) carries on from there; it is locked while a page of changes is applied, and
-- changes at or before it are skipped, so two followers never undo each other.
CREATE TABLE care_team (
    relationship_id    uuid PRIMARY KEY,
    person_id          uuid NOT NULL,
    professional_id    uuid NOT NULL,
    organisation_id    uuid NOT NULL,
    role               text NOT NULL CHECK (role IN ('care_coordinator', 'care_team_member')),
    professional_name  text NOT NULL
);
CREATE INDEX care_team_person ON care_team (person_id);

CREATE TABLE care_team_feed (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    after_sequence  bigint NOT NULL CHECK (after_sequence >= 0),
    applied_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO care_team_feed (after_sequence) VALUES (0);
