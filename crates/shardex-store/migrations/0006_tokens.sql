-- Tenants' API tokens: only a SHA-256 hash of each secret is kept; the secret is shown once.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,              -- the public part of the token, e.g. "k3f9a0c1d2"
    tenant      INTEGER NOT NULL,
    hash        TEXT NOT NULL,                 -- hex SHA-256 of the secret part
    label       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,                       -- NULL: never expires
    revoked_ms  INTEGER                        -- NULL: not revoked
) STRICT;
CREATE INDEX tokens_by_tenant ON tokens (tenant);
