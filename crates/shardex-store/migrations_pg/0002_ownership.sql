-- Periodic work (a host's plan tick, repricing, expiry) is owned through the database: a
-- broker holds a lease on each host it works for, renews it, and a lease left to expire (its
-- broker dead or cut off) is taken over by another broker.
CREATE TABLE host_owners (
    host       BIGINT PRIMARY KEY,
    broker     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,     -- the database's clock, in ms since the epoch
    epoch      BIGINT NOT NULL      -- +1 at each change of owner: a fencing token
);
