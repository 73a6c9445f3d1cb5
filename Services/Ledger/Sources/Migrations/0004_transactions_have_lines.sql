-- Every transaction has at least two lines. The postings trigger (0003) already makes the
-- lines a statement adds to a transaction sum to zero, and no line is zero; this makes a
-- transaction without lines impossible too: every statement that adds transactions must
-- add their lines as well (the service writes both in one statement). Checked after the
-- statement, as a set: one index probe per new transaction.
CREATE OR REPLACE FUNCTION transactions_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT budget_id FROM new_transactions) n
               CROSS JOIN LATERAL (SELECT count(*) AS found FROM budgets b WHERE b.id = n.budget_id) f WHERE f.found = 0)
       OR EXISTS (SELECT 1 FROM (SELECT reverses_id FROM new_transactions WHERE reverses_id IS NOT NULL) n
                  CROSS JOIN LATERAL (SELECT count(*) AS found FROM transactions t WHERE t.id = n.reverses_id) f WHERE f.found = 0) THEN
        RAISE EXCEPTION 'a transaction names a budget or transaction that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM new_transactions n
               CROSS JOIN LATERAL (SELECT count(*) AS lines FROM postings p WHERE p.transaction_id = n.id) f WHERE f.lines < 2) THEN
        RAISE EXCEPTION 'a transaction needs at least two postings, written by the same statement' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
