-- Every transaction has at least two lines. The postings trigger (0003) already makes the
-- lines a statement adds to a transaction sum to zero, and no line is zero; this makes a
-- transaction without lines impossible too: every statement that adds transactions must
-- add their lines as well (the service writes both in one statement). Checked after the
-- statement, as a set: one index probe per new transaction. (Triggers fire in name order,
-- so the references are checked first.)
CREATE FUNCTION transactions_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_transactions n
               CROSS JOIN LATERAL (SELECT count(*) AS lines FROM postings p WHERE p.transaction_id = n.id) f WHERE f.lines < 2) THEN
        RAISE EXCEPTION 'a transaction needs at least two postings, written by the same statement' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transactions_with_lines AFTER INSERT ON transactions REFERENCING NEW TABLE AS new_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_lines();
