-- The budget ledger: accounts, immutable double-entry transactions, budgets with cached
-- balances, commitments, idempotency keys, the care account and its statements.
-- Money is integer pence (bigint). Corrections are reversing transactions, never edits.

CREATE TABLE accounts (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('budget', 'funder', 'provider', 'commitments', 'contribution', 'adjustment')),
    organisation_id  uuid,
    budget_id        uuid,
    name             text NOT NULL,
    currency         text NOT NULL DEFAULT 'GBP',
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_organisation ON accounts (kind, organisation_id) WHERE kind IN ('funder', 'provider');
CREATE UNIQUE INDEX accounts_system ON accounts (kind) WHERE kind IN ('contribution', 'adjustment');

CREATE TABLE budgets (
    id                      uuid PRIMARY KEY REFERENCES accounts (id),
    person_id               uuid NOT NULL,
    funder_organisation_id  uuid NOT NULL,
    funder_account_id       uuid NOT NULL REFERENCES accounts (id),
    commitments_account_id  uuid NOT NULL REFERENCES accounts (id),
    name                    text NOT NULL,
    currency                text NOT NULL DEFAULT 'GBP',
    overdraft_limit         bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    period_start            date,
    period_end              date,
    -- Cached aggregates, updated in the same statement as the postings they summarise;
    -- the service recomputes them from the postings to check.
    available               bigint NOT NULL DEFAULT 0,
    allocated               bigint NOT NULL DEFAULT 0,
    spent                   bigint NOT NULL DEFAULT 0,
    committed               bigint NOT NULL DEFAULT 0,
    transferred_net         bigint NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (available >= -overdraft_limit)
);
CREATE INDEX budgets_person ON budgets (person_id);

CREATE TABLE transactions (
    id                        uuid PRIMARY KEY,
    seq                       bigserial,
    kind                      text NOT NULL CHECK (kind IN ('allocation', 'top_up', 'purchase', 'refund', 'transfer', 'commitment',
                                                           'settlement', 'release', 'reversal')),
    budget_id                 uuid NOT NULL REFERENCES budgets (id),
    person_id                 uuid NOT NULL,
    amount                    bigint NOT NULL CHECK (amount >= 0),
    memo                      text NOT NULL DEFAULT '',
    invoice_reference         text NOT NULL DEFAULT '',
    provider_organisation_id  uuid,
    service_start             date,
    service_end               date,
    eligible                  boolean NOT NULL DEFAULT false,
    council_rate              bigint NOT NULL DEFAULT 0,
    daily_living              bigint NOT NULL DEFAULT 0,
    -- Signed contributions to the care account (negative for refunds and reversals).
    eligible_toward_cap       bigint NOT NULL DEFAULT 0,
    daily_living_excluded     bigint NOT NULL DEFAULT 0,
    above_council_rate        bigint NOT NULL DEFAULT 0,
    reverses_id               uuid REFERENCES transactions (id),
    commitment_id             uuid,
    idempotency_key           text NOT NULL,
    created_by                text NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_budget ON transactions (budget_id, seq DESC);
-- At most one reversal per transaction (partial: most rows reverse nothing).
CREATE UNIQUE INDEX transactions_reverses ON transactions (reverses_id) WHERE reverses_id IS NOT NULL;
CREATE INDEX transactions_person_care ON transactions (person_id, service_start, seq) WHERE eligible_toward_cap <> 0 OR daily_living_excluded <> 0;

CREATE TABLE postings (
    transaction_id  uuid NOT NULL REFERENCES transactions (id),
    line            smallint NOT NULL,
    account_id      uuid NOT NULL REFERENCES accounts (id),
    amount          bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (transaction_id, line)
);
CREATE INDEX postings_account ON postings (account_id);

-- Double entry, enforced by the database: after every statement that adds postings,
-- each transaction they belong to must sum to zero and have at least two postings. (The
-- service writes all of a transaction's postings in one statement.) One check per
-- statement, over the transition table, however many rows it inserted.
CREATE FUNCTION postings_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad uuid;
BEGIN
    -- LATERAL keeps this an index lookup per transaction, however large postings grows.
    SELECT n.transaction_id INTO bad
    FROM (SELECT DISTINCT transaction_id FROM new_postings) n
    CROSS JOIN LATERAL (SELECT sum(p.amount) AS total, count(*) AS lines FROM postings p WHERE p.transaction_id = n.transaction_id) s
    WHERE s.total <> 0 OR s.lines < 2
    LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'transaction % is unbalanced', bad USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_balanced AFTER INSERT ON postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION postings_balance();

-- History is never edited: no updates or deletes of transactions or postings.
CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger history is immutable; post a reversing transaction' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER transactions_immutable BEFORE UPDATE OR DELETE ON transactions FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();

-- Raised from inside a posting statement to abort all of it (no partial writes).
CREATE FUNCTION ledger_refuse(reason text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', reason USING ERRCODE = 'P0001';
END $$;

CREATE TABLE idempotency_keys (
    scope           text NOT NULL,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    transaction_id  uuid NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE TABLE commitments (
    id                        uuid PRIMARY KEY,
    budget_id                 uuid NOT NULL REFERENCES budgets (id),
    provider_organisation_id  uuid NOT NULL,
    amount                    bigint NOT NULL CHECK (amount > 0),
    settled                   bigint NOT NULL DEFAULT 0,
    status                    text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'settled', 'released')),
    memo                      text NOT NULL DEFAULT '',
    transaction_id            uuid NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX commitments_budget ON commitments (budget_id);

CREATE TABLE cap_policies (
    id              uuid PRIMARY KEY,
    effective_from  date NOT NULL UNIQUE,
    cap_pence       bigint NOT NULL CHECK (cap_pence > 0),
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The founding document's cap. Later policies are added with AddCapPolicy.
INSERT INTO cap_policies (id, effective_from, cap_pence, name)
VALUES ('00000000-0000-4000-8000-000000074000', '1900-01-01', 7400000, 'Care cap £74,000 (founding default)');

-- Per-person running totals of the care account, kept in the posting statements; the
-- service recomputes them from the journal and reports whether they agree.
CREATE TABLE care_accounts (
    person_id              uuid PRIMARY KEY,
    eligible_total         bigint NOT NULL DEFAULT 0,
    daily_living_total     bigint NOT NULL DEFAULT 0,
    above_rate_total       bigint NOT NULL DEFAULT 0,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE care_statements (
    id          uuid PRIMARY KEY,
    person_id   uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('annual', 'on_demand')),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    body        jsonb NOT NULL
);
CREATE INDEX care_statements_person ON care_statements (person_id, issued_at DESC);

-- System accounts: people's own contributions (top-ups) and adjustments.
INSERT INTO accounts (id, kind, name) VALUES
    ('00000000-0000-4000-8000-00000000c001', 'contribution', 'Contributions from people'),
    ('00000000-0000-4000-8000-00000000ad01', 'adjustment', 'Adjustments');
