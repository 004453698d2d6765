//! Fleet mode's host agents in the shared database: each host's agent token (a hash of its
//! secret only), when each agent was last heard from and what it read back in force, and the
//! samples of each host's workloads, read by whichever broker plans that host (so a broker
//! that takes a host over forecasts from the same history).

use shardex_core::ports::Reading;
use shardex_core::{Timestamp, WorkloadId};
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::StoreError;

/// A host agent's token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostToken {
    /// The public part.
    pub id: String,
    /// The host it speaks for.
    pub host_name: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// When issued.
    pub created: Timestamp,
    /// When revoked, if it was.
    pub revoked: Option<Timestamp>,
}

/// What the brokers know of one host's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSeen {
    /// The host.
    pub host: u64,
    /// Its name.
    pub name: String,
    /// When its last report came in.
    pub seen: Timestamp,
    /// The ledger entry its reported limits come from.
    pub seq: u64,
    /// What it read back in force (JSON, as it reported).
    pub in_force: String,
}

/// One stored sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSample {
    /// Its row, increasing: a reader continues after the last it read.
    pub id: i64,
    /// The workload.
    pub workload: WorkloadId,
    /// When it was taken.
    pub at: Timestamp,
    /// What it read.
    pub reading: Reading,
}

/// The agents' tables.
#[derive(Debug, Clone)]
pub struct Agents {
    pool: PgPool,
}

fn at(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).map_err(|e| StoreError::Corrupt {
        seq: 0,
        reason: format!("time {ms}: {e}"),
    })
}

/// A `samples` row.
fn stored(r: &sqlx::postgres::PgRow) -> Result<StoredSample, StoreError> {
    let id: i64 = r.try_get("id")?;
    let text: String = r.try_get("reading")?;
    Ok(StoredSample {
        id,
        workload: WorkloadId(u(r.try_get("workload")?)),
        at: at(r.try_get("at_ms")?)?,
        reading: serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            seq: 0,
            reason: format!("sample {id}: {e}"),
        })?,
    })
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl crate::PgStore {
    /// The agents' tables, shared with every clone.
    pub fn agents(&self) -> Agents {
        Agents {
            pool: self.pool().clone(),
        }
    }
}

impl Agents {
    /// Keeps a new host token.
    pub async fn add_token(&self, t: &HostToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO host_tokens (id, host_name, hash, created_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.id)
        .bind(&t.host_name)
        .bind(&t.hash)
        .bind(t.created.millis())
        .bind(t.revoked.map(Timestamp::millis))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The host token with public id `id`.
    pub async fn token(&self, id: &str) -> Result<Option<HostToken>, StoreError> {
        let row = sqlx::query(
            "SELECT id, host_name, hash, created_ms, revoked_ms FROM host_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(HostToken {
                id: r.try_get("id")?,
                host_name: r.try_get("host_name")?,
                hash: r.try_get("hash")?,
                created: at(r.try_get("created_ms")?)?,
                revoked: r
                    .try_get::<Option<i64>, _>("revoked_ms")?
                    .map(at)
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Revokes every token of `host_name`; how many were valid.
    pub async fn revoke_tokens(&self, host_name: &str, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE host_tokens SET revoked_ms = $1 WHERE host_name = $2 AND revoked_ms IS NULL",
        )
        .bind(now.millis())
        .bind(host_name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records one report of `host`'s agent in one transaction: when it came, what it read
    /// back in force, and its samples.
    pub async fn report(
        &self,
        seen: &AgentSeen,
        samples: &[(WorkloadId, Timestamp, Reading)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agents (host, name, seen_ms, seq, in_force) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (host) DO UPDATE SET name = EXCLUDED.name, seen_ms = EXCLUDED.seen_ms,
                 seq = EXCLUDED.seq, in_force = EXCLUDED.in_force",
        )
        .bind(i(seen.host))
        .bind(&seen.name)
        .bind(seen.seen.millis())
        .bind(i(seen.seq))
        .bind(&seen.in_force)
        .execute(&mut *tx)
        .await?;
        if !samples.is_empty() {
            let mut workloads = Vec::with_capacity(samples.len());
            let mut times = Vec::with_capacity(samples.len());
            let mut readings = Vec::with_capacity(samples.len());
            for (w, t, r) in samples {
                workloads.push(i(w.0));
                times.push(t.millis());
                readings.push(
                    serde_json::to_string(r).map_err(|source| StoreError::Encode {
                        what: "sample",
                        source,
                    })?,
                );
            }
            sqlx::query(
                "INSERT INTO samples (host, workload, at_ms, reading)
                 SELECT $1, * FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::TEXT[])",
            )
            .bind(i(seen.host))
            .bind(&workloads)
            .bind(&times)
            .bind(&readings)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every agent that ever reported, by host.
    pub async fn agents(&self) -> Result<Vec<AgentSeen>, StoreError> {
        let rows =
            sqlx::query("SELECT host, name, seen_ms, seq, in_force FROM agents ORDER BY host")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AgentSeen {
                    host: u(r.try_get("host")?),
                    name: r.try_get("name")?,
                    seen: at(r.try_get("seen_ms")?)?,
                    seq: u(r.try_get("seq")?),
                    in_force: r.try_get("in_force")?,
                })
            })
            .collect()
    }

    /// `host`'s samples after row `after` taken at or after `since`, oldest first, at most
    /// `limit`.
    pub async fn samples(
        &self,
        host: u64,
        after: i64,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workload, at_ms, reading FROM samples
             WHERE host = $1 AND id > $2 AND at_ms >= $3 ORDER BY id LIMIT $4",
        )
        .bind(i(host))
        .bind(after)
        .bind(since.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Each workload's newest sample taken at or after `since` (any host), by workload.
    pub async fn latest(&self, since: Timestamp) -> Result<Vec<StoredSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (workload) id, workload, at_ms, reading FROM samples
             WHERE at_ms >= $1 ORDER BY workload, id DESC",
        )
        .bind(since.millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Deletes samples taken before `before`; how many.
    pub async fn prune(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM samples WHERE at_ms < $1")
            .bind(before.millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
