-- Refunds and reversals never give a budget back more than it paid.
--
-- A refund names the provider that gives the money back, and may name the purchase it
-- refunds. Nothing stopped the same purchase being refunded again and again, or a refund
-- from a provider that was never paid from the budget: either would put money into the
-- budget that no provider returned, and a purchase refunded twice would take its care-cap
-- share off the care account twice.
--
-- Three rules, checked once per statement after every write to the journal:
--   * what a budget has paid a provider (the provider's lines in the budget's
--     transactions: purchases and settlements less refunds, each reversal undoing its
--     original) may not be taken below zero: so a refund, or the reversal of a purchase
--     already partly refunded, cannot return more than was paid. (Only a statement that
--     lowers it is refused, so a total already below zero can still be corrected.)
--   * the refunds of one purchase (those not reversed) never add up to more than the
--     purchase, and a reversed purchase cannot be refunded;
--   * a purchase with refunds that stand cannot be reversed (reverse the refunds first),
--     even when other payments to the provider would cover it.
-- Every such write also updates the budget's row, which serialises them per budget: a
-- second refund waits for the first to commit, and its check (a new statement in the
-- trigger, so a new snapshot) then sees it. A refund that names no purchase (allowed, and
-- every refund posted before this migration) is covered by the first rule only; it
-- carries no care-cap share, so nothing is counted twice.

ALTER TABLE transactions ADD COLUMN refunds_id uuid;
CREATE INDEX transactions_refunds ON transactions (refunds_id) WHERE refunds_id IS NOT NULL;

-- Statements without refunds or reversals (every invoice) return at once. Every lookup is
-- a LATERAL probe of an index: the planner knows nothing of a transition table's size and
-- would otherwise scan or hash whole tables (see 0003).
CREATE FUNCTION refunds_within_payments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_transactions WHERE kind IN ('refund', 'reversal') OR refunds_id IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1
        FROM (SELECT DISTINCT budget_id, provider_organisation_id FROM new_transactions
              WHERE kind IN ('refund', 'reversal') AND provider_organisation_id IS NOT NULL) r
        CROSS JOIN LATERAL (
            SELECT a.id FROM accounts a WHERE a.kind = 'provider' AND a.organisation_id = r.provider_organisation_id) a
        CROSS JOIN LATERAL (
            SELECT COALESCE(sum(p.amount), 0) AS paid
            FROM transactions t
            CROSS JOIN LATERAL (SELECT q.amount FROM postings q WHERE q.transaction_id = t.id AND q.account_id = a.id) p
            WHERE t.budget_id = r.budget_id) s
        CROSS JOIN LATERAL (
            SELECT COALESCE(sum(p.amount), 0) AS change
            FROM new_transactions t
            CROSS JOIN LATERAL (SELECT q.amount FROM postings q WHERE q.transaction_id = t.id AND q.account_id = a.id) p
            WHERE t.budget_id = r.budget_id) d
        WHERE s.paid < 0 AND d.change < 0
    ) OR EXISTS (
        SELECT 1
        FROM (SELECT DISTINCT refunds_id FROM new_transactions WHERE refunds_id IS NOT NULL) r
        CROSS JOIN LATERAL (SELECT p.id, p.amount FROM transactions p WHERE p.id = r.refunds_id) purchase
        CROSS JOIN LATERAL (
            SELECT COALESCE(sum(x.amount), 0) AS refunded
            FROM transactions x
            WHERE x.refunds_id = r.refunds_id
              AND NOT EXISTS (SELECT 1 FROM transactions undo WHERE undo.reverses_id = x.id)) s
        WHERE s.refunded > purchase.amount
           OR EXISTS (SELECT 1 FROM transactions undo WHERE undo.reverses_id = purchase.id)
    ) THEN
        PERFORM ledger_refuse('refund_exceeds_payments');
    END IF;
    IF EXISTS (
        SELECT 1
        FROM new_transactions v
        CROSS JOIN LATERAL (
            SELECT 1 FROM transactions x
            WHERE x.refunds_id = v.reverses_id
              AND NOT EXISTS (SELECT 1 FROM transactions undo WHERE undo.reverses_id = x.id)
            LIMIT 1) standing
        WHERE v.reverses_id IS NOT NULL
    ) THEN
        PERFORM ledger_refuse('purchase_has_refunds');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER transactions_refunds_within_payments AFTER INSERT ON transactions REFERENCING NEW TABLE AS new_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION refunds_within_payments();
