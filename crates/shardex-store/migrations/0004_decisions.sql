-- The engine's decisions with their reasons, one row each, recommend-only or acted on.
CREATE TABLE decisions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,               -- the ledger's last action when it was made
    mode       TEXT NOT NULL,                  -- "recommend" or "act"
    decision   TEXT NOT NULL                   -- JSON
) STRICT;
