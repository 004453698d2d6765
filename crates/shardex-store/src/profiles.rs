//! Workloads' history and OOM kills in the SQLite store, beside the ledger: what a restarted
//! daemon forecasts from, and what the API shows. Not ledger state: written in their own
//! transactions, never replayed into the ledger.

use shardex_core::ports::Reading;
use shardex_core::{Timestamp, WorkloadId};
use sqlx::Row;

use crate::StoreError;
use crate::sqlite::SqliteStore;

/// An OOM kill as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OomRecord {
    /// The workload.
    pub workload: WorkloadId,
    /// Its name then.
    pub name: String,
    /// When it was seen, ms since the epoch.
    pub at_ms: i64,
    /// Kills since the previous sample.
    pub kills: u64,
    /// The memory limit in force, bytes.
    pub limit_bytes: Option<u64>,
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt { seq: 0, reason }
}

impl SqliteStore {
    /// Keeps readings as the workloads' history, in one transaction.
    pub async fn record_samples(
        &self,
        readings: &[(WorkloadId, Timestamp, Reading)],
    ) -> Result<(), StoreError> {
        if readings.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for (w, at, r) in readings {
            let text = serde_json::to_string(r).map_err(|e| corrupt(format!("reading: {e}")))?;
            sqlx::query(
                "INSERT OR REPLACE INTO samples (workload, at_ms, reading) VALUES (?, ?, ?)",
            )
            .bind(i64::try_from(w.0).unwrap_or(i64::MAX))
            .bind(at.millis())
            .bind(text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every reading since `from`, oldest first.
    pub async fn samples_since(
        &self,
        from: Timestamp,
    ) -> Result<Vec<(WorkloadId, Timestamp, Reading)>, StoreError> {
        let rows = sqlx::query(
            "SELECT workload, at_ms, reading FROM samples WHERE at_ms >= ? ORDER BY at_ms, workload",
        )
        .bind(from.millis())
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let w: i64 = row.try_get(0)?;
            let at: i64 = row.try_get(1)?;
            let text: String = row.try_get(2)?;
            let r: Reading =
                serde_json::from_str(&text).map_err(|e| corrupt(format!("sample: {e}")))?;
            let at =
                Timestamp::from_millis(at).map_err(|e| corrupt(format!("sample time: {e}")))?;
            out.push((WorkloadId(u64::try_from(w).unwrap_or(0)), at, r));
        }
        Ok(out)
    }

    /// Drops history older than `before`; returns how many readings went.
    pub async fn prune_samples(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM samples WHERE at_ms < ?")
            .bind(before.millis())
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Records an OOM kill.
    pub async fn record_oom(&self, oom: &OomRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ooms (workload, name, at_ms, kills, limit_bytes) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(i64::try_from(oom.workload.0).unwrap_or(i64::MAX))
        .bind(&oom.name)
        .bind(oom.at_ms)
        .bind(i64::try_from(oom.kills).unwrap_or(i64::MAX))
        .bind(
            oom.limit_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest `limit` OOM kills, newest first.
    pub async fn ooms(&self, limit: u32) -> Result<Vec<OomRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT workload, name, at_ms, kills, limit_bytes FROM ooms ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(OomRecord {
                workload: WorkloadId(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0)),
                name: row.try_get(1)?,
                at_ms: row.try_get(2)?,
                kills: u64::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0),
                limit_bytes: row
                    .try_get::<Option<i64>, _>(4)?
                    .map(|b| u64::try_from(b).unwrap_or(0)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::ShardSizes;

    #[tokio::test]
    async fn history_and_ooms_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let store = SqliteStore::open(&path, ShardSizes::default())
            .await
            .unwrap();
        let t = |s| Timestamp::from_secs(s).unwrap();
        let r = Reading {
            usage: [Some(250), Some(1 << 20), None, None],
            censored: [true, false, false, false],
            oom_kills: 0,
        };
        store
            .record_samples(&[(WorkloadId(3), t(10), r), (WorkloadId(3), t(20), r)])
            .await
            .unwrap();
        let oom = OomRecord {
            workload: WorkloadId(3),
            name: "job".into(),
            at_ms: 20_000,
            kills: 1,
            limit_bytes: Some(64 << 20),
        };
        store.record_oom(&oom).await.unwrap();
        store.close().await;
        let store = SqliteStore::open(&path, ShardSizes::default())
            .await
            .unwrap();
        let back = store.samples_since(t(0)).await.unwrap();
        assert_eq!(
            back,
            vec![(WorkloadId(3), t(10), r), (WorkloadId(3), t(20), r)]
        );
        assert_eq!(store.samples_since(t(15)).await.unwrap().len(), 1);
        assert_eq!(store.ooms(10).await.unwrap(), vec![oom]);
        assert_eq!(store.prune_samples(t(15)).await.unwrap(), 1);
        store.close().await;
    }
}
