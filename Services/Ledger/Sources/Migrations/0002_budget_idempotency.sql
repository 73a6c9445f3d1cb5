-- Creating a budget honours its idempotency key: a repeat by the same caller with the
-- same key and request returns the budget already made; the same key with a different
-- request is refused. Budgets made without a key keep NULLs here.
ALTER TABLE budgets
    ADD COLUMN created_by text,
    ADD COLUMN idempotency_key text,
    ADD COLUMN request_hash bytea;

CREATE UNIQUE INDEX budgets_idempotency ON budgets (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
