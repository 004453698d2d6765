-- Workloads' history, so that a restarted daemon forecasts from it at once: one row per
-- workload per sample (usage per kind, which kinds were held at a limit, OOM kills).
CREATE TABLE samples (
    workload   INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    reading    TEXT NOT NULL,                  -- JSON of shardex_core::ports::Reading
    PRIMARY KEY (workload, at_ms)
) STRICT, WITHOUT ROWID;

-- OOM kills seen inside workloads.
CREATE TABLE ooms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    workload   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    kills      INTEGER NOT NULL,
    limit_bytes INTEGER                        -- the memory limit in force, NULL when none
) STRICT;
