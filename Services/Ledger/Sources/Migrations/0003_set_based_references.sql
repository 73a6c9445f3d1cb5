-- The journal's references are checked once per statement instead of once per row.
--
-- A declared foreign key runs one lookup per inserted row and takes a FOR KEY SHARE lock
-- on the row it finds. Every invoice of a provider references the same provider account,
-- so concurrent postings pile shared (multixact) locks onto that one row, and a batch of
-- 1,000 invoices ran 5,000 separate lookups. Accounts, budgets and transactions are never
-- deleted and their ids never change (enforced below), so a reference found when it is
-- written stays valid without a lock. The checks run as set-based queries in
-- statement-level triggers, inside the inserting statement (a failure aborts it).

ALTER TABLE postings DROP CONSTRAINT postings_transaction_id_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_account_id_fkey;
ALTER TABLE transactions DROP CONSTRAINT transactions_budget_id_fkey;
ALTER TABLE transactions DROP CONSTRAINT transactions_reverses_id_fkey;

-- Postings. Balance: the lines a statement adds to each transaction sum to zero. Lines
-- are never updated or deleted, so by induction every transaction sums to zero; and as no
-- line is zero, a statement's lines for a transaction are never fewer than two.
-- References: each line's transaction and account exist. Every lookup is a LATERAL
-- aggregate, so it stays an index probe per row: the planner knows nothing of a
-- transition table's size and would otherwise hash the whole referenced table.
CREATE OR REPLACE FUNCTION postings_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad uuid;
    unbalanced boolean;
BEGIN
    SELECT n.transaction_id, n.total <> 0 INTO bad, unbalanced
    FROM (SELECT transaction_id, sum(amount) AS total FROM new_postings GROUP BY transaction_id) n
    CROSS JOIN LATERAL (SELECT count(*) AS found FROM transactions t WHERE t.id = n.transaction_id) f
    WHERE n.total <> 0 OR f.found = 0
    LIMIT 1;
    IF bad IS NOT NULL AND unbalanced THEN
        RAISE EXCEPTION 'transaction % is unbalanced', bad USING ERRCODE = 'check_violation';
    ELSIF bad IS NOT NULL THEN
        RAISE EXCEPTION 'postings name a transaction that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT account_id FROM new_postings) n
               CROSS JOIN LATERAL (SELECT count(*) AS found FROM accounts a WHERE a.id = n.account_id) f WHERE f.found = 0) THEN
        RAISE EXCEPTION 'postings name an account that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

-- Transactions: the budget exists, and so does the transaction a reversal reverses.
CREATE FUNCTION transactions_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT budget_id FROM new_transactions) n
               CROSS JOIN LATERAL (SELECT count(*) AS found FROM budgets b WHERE b.id = n.budget_id) f WHERE f.found = 0)
       OR EXISTS (SELECT 1 FROM (SELECT reverses_id FROM new_transactions WHERE reverses_id IS NOT NULL) n
                  CROSS JOIN LATERAL (SELECT count(*) AS found FROM transactions t WHERE t.id = n.reverses_id) f WHERE f.found = 0) THEN
        RAISE EXCEPTION 'a transaction names a budget or transaction that does not exist' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transactions_referenced AFTER INSERT ON transactions REFERENCING NEW TABLE AS new_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_references();

-- What the journal references stays: accounts and budgets are never deleted and never
-- change id (balance updates on budgets do not name the id column, so never fire these).
CREATE FUNCTION ledger_keys_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are referenced by the journal and cannot be deleted or renumbered', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER accounts_fixed BEFORE UPDATE OF id OR DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION ledger_keys_fixed();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION ledger_keys_fixed();
CREATE TRIGGER budgets_fixed BEFORE UPDATE OF id OR DELETE ON budgets FOR EACH ROW EXECUTE FUNCTION ledger_keys_fixed();
CREATE TRIGGER budgets_no_truncate BEFORE TRUNCATE ON budgets FOR EACH STATEMENT EXECUTE FUNCTION ledger_keys_fixed();
