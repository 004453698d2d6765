-- The engine's decisions in fleet mode, from whichever broker planned the host: any broker
-- answers a workload's decisions from here.
CREATE TABLE decisions (
    id        BIGSERIAL PRIMARY KEY,
    host      BIGINT NOT NULL,
    workload  BIGINT,
    at_ms     BIGINT NOT NULL,
    seq       BIGINT NOT NULL,       -- the ledger entry after the plan's commit
    mode      TEXT NOT NULL,         -- "act" or "recommend"
    decision  TEXT NOT NULL          -- JSON, as shardex run records it
);
CREATE INDEX decisions_by_workload ON decisions (workload, id);
