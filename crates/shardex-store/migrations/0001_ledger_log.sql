-- The ledger is an append-only log of applied actions; the state is rebuilt by replaying it.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE actions (
    seq    INTEGER PRIMARY KEY NOT NULL,  -- 1, 2, 3, ... with no gaps
    at_ms  INTEGER NOT NULL,              -- the `now` it was applied at
    action TEXT NOT NULL                  -- JSON of shardex_core::Action
) STRICT;

CREATE TABLE events (
    seq   INTEGER NOT NULL REFERENCES actions (seq),
    idx   INTEGER NOT NULL,
    kind  TEXT NOT NULL,                  -- the event's tag, for queries
    event TEXT NOT NULL,                  -- JSON of shardex_core::Event
    PRIMARY KEY (seq, idx)
) STRICT;

CREATE INDEX events_by_kind ON events (kind, seq);
