-- A row of the access log may stand for several refusals of the same caller, for the same
-- person, action and part, counted within a minute after the first few had rows of their
-- own (see RefusalLog): so a caller retrying in a loop cannot flood a person's log, and
-- the person still sees how many times. Accesses that were allowed always have a row each.
-- Adding a column with a constant default rewrites nothing and keeps the log append-only.
ALTER TABLE access_log ADD COLUMN repeats integer NOT NULL DEFAULT 1 CHECK (repeats >= 1);
