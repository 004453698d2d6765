-- Idempotency-Key: a claim is written in the same transaction as the action its request made
-- (seq), so a retry after a crash finds the key taken and nothing is applied twice; the
-- answer sent is added right after. Rows older than a day are forgotten.
CREATE TABLE idempotency (
    caller       TEXT NOT NULL,                -- "admin" or the tenant, e.g. "tenant-3"
    key          TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,                -- SHA-256 of method, path, query and body
    seq          INTEGER,                      -- the log entry the request made, if any
    at_ms        INTEGER NOT NULL,
    status       INTEGER,                      -- the answer, once sent
    content_type TEXT,
    body         BLOB,
    PRIMARY KEY (caller, key)
) STRICT;
CREATE INDEX idempotency_by_time ON idempotency (at_ms);
