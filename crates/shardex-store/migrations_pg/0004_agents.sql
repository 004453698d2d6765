-- Fleet mode's host agents. Each host's agent authenticates with its own token (only a
-- SHA-256 hash of the secret is kept), reports when it was last heard from and what it read
-- back in force, and sends its workloads' samples, which whichever broker plans the host reads.
CREATE TABLE host_tokens (
    id          TEXT PRIMARY KEY,
    host_name   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE INDEX host_tokens_by_host ON host_tokens (host_name);

CREATE TABLE agents (
    host        BIGINT PRIMARY KEY,   -- the ledger's host id
    name        TEXT NOT NULL,
    seen_ms     BIGINT NOT NULL,      -- the broker's clock when its last report came in
    seq         BIGINT NOT NULL,      -- the ledger entry the limits it reported come from
    in_force    TEXT NOT NULL         -- JSON: per workload, the limits wanted and read back
);

CREATE TABLE samples (
    id          BIGSERIAL PRIMARY KEY,
    host        BIGINT NOT NULL,
    workload    BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    reading     TEXT NOT NULL         -- JSON of shardex_core::ports::Reading
);
CREATE INDEX samples_by_host ON samples (host, id);
CREATE INDEX samples_by_time ON samples (at_ms);
