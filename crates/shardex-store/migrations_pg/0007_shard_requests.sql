-- The engine's shard requests in fleet mode, as the broker planning each host last saw them
-- (replaced at each of its ticks): any broker answers GET /v1/shard-requests from here.
CREATE TABLE shard_requests (
    host       BIGINT NOT NULL,
    id         BIGINT NOT NULL,      -- the planning engine's id (per host)
    raised_ms  BIGINT NOT NULL,
    request    TEXT NOT NULL,        -- JSON of shardex_core::engine::ShardRequest
    PRIMARY KEY (host, id)
);
CREATE INDEX shard_requests_by_time ON shard_requests (raised_ms);
