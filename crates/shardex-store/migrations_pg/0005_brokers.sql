-- The brokers alive: each renews its row at every round of its hold on hosts, so that the
-- others know how many share the hosts (each holds at most its share).
CREATE TABLE brokers (
    name       TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL    -- the database's clock, in ms since the epoch
);
