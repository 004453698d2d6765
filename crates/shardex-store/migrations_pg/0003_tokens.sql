-- Tenants' API tokens, shared by every broker: only a SHA-256 hash of each secret is kept.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    tenant      BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    revoked_ms  BIGINT
);
CREATE INDEX tokens_by_tenant ON tokens (tenant);
