-- The ledger on PostgreSQL, shared by every broker: the same append-only log as the SQLite
-- store's (actions with their events, the charges they metered, the journal's postings,
-- idempotency claims), snapshots, and one `head` row whose lock orders the writers.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The last log entry. A writer locks this row (SELECT ... FOR UPDATE) before it reads what it
-- missed and appends: the log's order is total and no two writers decide on the same state.
CREATE TABLE head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO head (id, seq) VALUES (1, 0);

CREATE TABLE actions (
    seq    BIGINT PRIMARY KEY,            -- 1, 2, 3, ... with no gaps
    at_ms  BIGINT NOT NULL,               -- the `now` it was applied at
    action TEXT NOT NULL,                 -- JSON of shardex_core::Action
    format INTEGER NOT NULL               -- the record's format (1: the core action's JSON)
);

CREATE TABLE events (
    seq   BIGINT NOT NULL REFERENCES actions (seq),
    idx   INTEGER NOT NULL,
    kind  TEXT NOT NULL,
    event TEXT NOT NULL,                  -- JSON of shardex_core::Event (text: exact integers)
    PRIMARY KEY (seq, idx)
);
CREATE INDEX events_by_kind ON events (kind, seq);

CREATE TABLE charges (
    seq     BIGINT NOT NULL REFERENCES actions (seq),
    idx     INTEGER NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms   BIGINT NOT NULL,
    payer   BIGINT NOT NULL,
    lender  BIGINT,
    charge  TEXT NOT NULL,                -- JSON of shardex_core::billing::Charge
    amount  TEXT NOT NULL,                -- exact decimal
    PRIMARY KEY (seq, idx)
);
CREATE INDEX charges_by_end ON charges (to_ms);

CREATE TABLE postings (
    seq     BIGINT NOT NULL REFERENCES actions (seq),
    idx     INTEGER NOT NULL,
    pidx    INTEGER NOT NULL,
    account TEXT NOT NULL,
    amount  TEXT NOT NULL,
    PRIMARY KEY (seq, idx, pidx)
);

CREATE TABLE snapshots (
    seq    BIGINT PRIMARY KEY,            -- the last log entry it includes
    format INTEGER NOT NULL,
    at_ms  BIGINT NOT NULL,
    state  BYTEA NOT NULL
);

CREATE TABLE idempotency (
    caller       TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    seq          BIGINT,
    at_ms        BIGINT NOT NULL,
    status       BIGINT,
    content_type TEXT,
    body         BYTEA,
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_by_time ON idempotency (at_ms);
