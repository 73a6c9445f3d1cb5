-- A row of the access log may stand for several refusals of the same caller (acting for
-- the same organisation), for the same person, action and part, counted within a minute
-- after the first few had rows of their own (see RefusalLog): so a caller retrying in a
-- loop cannot flood a person's log, and the person still sees how many times. Such a row
-- has `at` = the last refusal's time and `first_at` = the first one's. Accesses that were
-- allowed always have a row each (repeats 1, first_at NULL).
--
-- Adding columns with a constant default (or none) rewrites and scans nothing, and the
-- CHECK is added NOT VALID so no scan runs under this statement's exclusive lock: every
-- existing row has the default 1, and new rows are checked.
ALTER TABLE access_log ADD COLUMN repeats integer NOT NULL DEFAULT 1, ADD COLUMN first_at timestamptz;
ALTER TABLE access_log ADD CONSTRAINT access_log_repeats_positive CHECK (repeats >= 1 AND (repeats = 1 OR first_at IS NOT NULL)) NOT VALID;
