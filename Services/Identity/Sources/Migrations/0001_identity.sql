-- Identity: accounts, organisations, clients, refresh tokens, throttling, relationships,
-- consent, carer grants, and the authentication event log.

CREATE TABLE organisations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('gp_practice', 'pharmacy', 'home_care_agency', 'hospital', 'council', 'care_home', 'other')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX organisations_name ON organisations (lower(name));

CREATE TABLE accounts (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('service_user', 'carer', 'professional', 'administrator')),
    email            text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name     text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    password_hash    text NOT NULL,
    organisation_id  uuid REFERENCES organisations (id),
    roles            text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'professional') = (organisation_id IS NOT NULL))
);
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

-- Provider systems and WholeCare services sign in with client credentials.
CREATE TABLE clients (
    id               uuid PRIMARY KEY,
    client_id        text NOT NULL UNIQUE,
    secret_hash      bytea NOT NULL,           -- SHA-256 of a 256-bit random secret
    kind             text NOT NULL CHECK (kind IN ('provider_system', 'service')),
    name             text NOT NULL,
    organisation_id  uuid REFERENCES organisations (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz,
    CHECK ((kind = 'provider_system') = (organisation_id IS NOT NULL))
);

-- Refresh tokens are stored only as hashes; each sign-in starts a family and every
-- refresh spends one token and issues the next in the same family.
CREATE TABLE refresh_tokens (
    id           uuid PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id),
    family_id    uuid NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    spent_at     timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_account ON refresh_tokens (account_id) WHERE revoked_at IS NULL;

-- Sign-in throttling, keyed by a hash of the normalised e-mail so that unknown and known
-- accounts are throttled alike and attempted addresses are not stored.
CREATE TABLE sign_in_throttle (
    email_hash            bytea PRIMARY KEY,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    window_started_at     timestamptz NOT NULL DEFAULT now(),
    failures_in_window    integer NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_events (
    id           bigserial PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id),
    event        text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_events_account ON auth_events (account_id, occurred_at DESC);

CREATE TABLE care_relationships (
    id               uuid PRIMARY KEY,
    person_id        uuid NOT NULL REFERENCES accounts (id),
    professional_id  uuid NOT NULL REFERENCES accounts (id),
    organisation_id  uuid NOT NULL REFERENCES organisations (id),
    role             text NOT NULL CHECK (role IN ('care_coordinator', 'care_team_member')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    created_by       uuid NOT NULL
);
CREATE UNIQUE INDEX care_relationships_active ON care_relationships (person_id, professional_id, role) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX care_relationships_one_coordinator ON care_relationships (person_id) WHERE ended_at IS NULL AND role = 'care_coordinator';
CREATE INDEX care_relationships_professional ON care_relationships (professional_id) WHERE ended_at IS NULL;

CREATE TABLE consents (
    id                       uuid PRIMARY KEY,
    person_id                uuid NOT NULL REFERENCES accounts (id),
    grantee_professional_id  uuid REFERENCES accounts (id),
    grantee_organisation_id  uuid REFERENCES organisations (id),
    categories               text[] NOT NULL CHECK (cardinality(categories) > 0),
    granted_at               timestamptz NOT NULL DEFAULT now(),
    expires_at               timestamptz,
    revoked_at               timestamptz,
    CHECK ((grantee_professional_id IS NULL) <> (grantee_organisation_id IS NULL))
);
CREATE INDEX consents_person ON consents (person_id);

CREATE TABLE carer_grants (
    id               uuid PRIMARY KEY,
    person_id        uuid NOT NULL REFERENCES accounts (id),
    carer_id         uuid REFERENCES accounts (id),
    invited_email    text NOT NULL,
    code_hash        bytea NOT NULL UNIQUE,
    code_expires_at  timestamptz NOT NULL,
    scopes           text[] NOT NULL,          -- 'record:read', 'appointments:write', …
    created_at       timestamptz NOT NULL DEFAULT now(),
    accepted_at      timestamptz,
    expires_at       timestamptz,
    revoked_at       timestamptz
);
CREATE INDEX carer_grants_person ON carer_grants (person_id);
CREATE INDEX carer_grants_carer ON carer_grants (carer_id);
