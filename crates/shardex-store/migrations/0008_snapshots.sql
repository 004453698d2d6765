-- Snapshots: the ledger and the meter as of a log entry, so that opening replays only the log
-- after the newest one. Derived data: deleting them only makes the next open slower.
CREATE TABLE snapshots (
    seq     INTEGER PRIMARY KEY,               -- the last log entry it includes
    format  INTEGER NOT NULL,                  -- how `state` is encoded (1: CBOR of ledger and meter)
    at_ms   INTEGER NOT NULL,
    state   BLOB NOT NULL
) STRICT;
-- Each log entry's record format (1: the core action's JSON as of this schema). A reader that
-- meets a format it does not know refuses the log instead of misreading it.
ALTER TABLE actions ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
