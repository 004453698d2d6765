//! What fleet mode's plans leave behind in the shared database: the engine's decisions, by
//! host and workload, recorded by the broker that planned the host and read by any broker
//! (`GET /v1/workloads/{id}/decisions`), in the same shape as the SQLite store's (one
//! function reads a row of either, [`decision_row`]); and each host's shard requests as its
//! planning broker last saw them (`GET /v1/shard-requests`).

use shardex_core::engine::ShardRequest;
use shardex_core::{Timestamp, WorkloadId};
use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::StoreError;

/// The plans' tables.
#[derive(Debug, Clone)]
pub struct Plans {
    pool: PgPool,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl crate::PgStore {
    /// The plans' tables, shared with every clone.
    pub fn plans(&self) -> Plans {
        Plans {
            pool: self.pool().clone(),
        }
    }
}

impl Plans {
    /// Records `host`'s plan's decisions (JSON values with a `workload_id`) made at `at`, as of
    /// ledger entry `seq`, in one transaction.
    pub async fn record_decisions(
        &self,
        host: u64,
        at: Timestamp,
        seq: u64,
        mode: &str,
        decisions: &[serde_json::Value],
    ) -> Result<(), StoreError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let mut workloads = Vec::with_capacity(decisions.len());
        let mut texts = Vec::with_capacity(decisions.len());
        for d in decisions {
            workloads.push(d["workload_id"].as_u64().map(i));
            texts.push(
                serde_json::to_string(d).map_err(|source| StoreError::Encode {
                    what: "decision",
                    source,
                })?,
            );
        }
        sqlx::query(
            "INSERT INTO decisions (host, workload, at_ms, seq, mode, decision)
             SELECT $1, w, $2, $3, $4, d FROM UNNEST($5::BIGINT[], $6::TEXT[]) AS t(w, d)",
        )
        .bind(i(host))
        .bind(at.millis())
        .bind(i(seq))
        .bind(mode)
        .bind(&workloads)
        .bind(&texts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` decisions about `workload`, newest first: `{at_ms, seq, mode,
    /// decision}` each.
    pub async fn decisions_of(
        &self,
        workload: WorkloadId,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, seq, mode, decision FROM decisions WHERE workload = $1
             ORDER BY id DESC LIMIT $2",
        )
        .bind(i(workload.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                decision_row(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    &row.try_get::<String, _>(3)?,
                )
            })
            .collect()
    }

    /// Replaces `host`'s shard requests with `requests` (its planning engine's newest), in one
    /// transaction.
    pub async fn set_requests(
        &self,
        host: u64,
        requests: &[ShardRequest],
    ) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(requests.len());
        let mut raised = Vec::with_capacity(requests.len());
        let mut texts = Vec::with_capacity(requests.len());
        for r in requests {
            ids.push(i(r.id));
            raised.push(r.raised.millis());
            texts.push(
                serde_json::to_string(r).map_err(|source| StoreError::Encode {
                    what: "shard request",
                    source,
                })?,
            );
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM shard_requests WHERE host = $1")
            .bind(i(host))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO shard_requests (host, id, raised_ms, request)
             SELECT $1, * FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::TEXT[])",
        )
        .bind(i(host))
        .bind(&ids)
        .bind(&raised)
        .bind(&texts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every host's shard requests, newest first, at most `limit`.
    pub async fn requests(&self, limit: u32) -> Result<Vec<ShardRequest>, StoreError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, request FROM shard_requests ORDER BY raised_ms DESC, host, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, text)| {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    seq: 0,
                    reason: format!("shard request {id}: {e}"),
                })
            })
            .collect()
    }
}

/// A stored decision (either database's row: time, log entry, mode, JSON text) as the value
/// the API reads: `{at_ms, seq, mode, decision}`.
pub(crate) fn decision_row(
    at_ms: i64,
    seq: i64,
    mode: String,
    text: &str,
) -> Result<serde_json::Value, StoreError> {
    let decision: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
            seq: u64::try_from(seq).unwrap_or(0),
            reason: format!("decision: {e}"),
        })?;
    Ok(serde_json::json!({
        "at_ms": at_ms,
        "seq": seq,
        "mode": mode,
        "decision": decision,
    }))
}
