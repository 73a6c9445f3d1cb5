-- Indexes that match how entries are read, so a request reads the rows it returns and not
-- the person's whole history.
--
-- Every list of entries (ListEntries' pages, the summary's latest entries) is newest
-- first: effective date, then recorded time, then id. With all three in the index, a page
-- or the summary's latest ten is read in order and stops after the rows it needs, with no
-- sort step; the index it replaces lacked the id that breaks ties.
CREATE INDEX entries_person_newest ON entries (person_id, effective_date DESC, recorded_at DESC, id DESC)
    WHERE status <> 'superseded';
DROP INDEX entries_person_current;

-- Active entries by kind: the summary's conditions, medications, allergies and goals, and
-- the medication list, without reading the resolved conditions, finished courses and met
-- goals that build up over years.
CREATE INDEX entries_person_active ON entries (person_id, kind) WHERE status = 'active';
