//! Snapshots: the ledger and the meter as of a log entry, so that opening a store replays
//! only the log after the newest one instead of all of it. A snapshot is derived data: the
//! log stays the truth (`shardex ledger check` replays all of it), and a snapshot that can't
//! be read is skipped for an older one or for the whole log.

use serde::{Deserialize, Serialize};
use shardex_core::billing::Meter;
use shardex_core::{Ledger, ShardSizes, Timestamp};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use crate::StoreError;

/// A snapshot is taken every this many log entries (and when the store closes).
pub const SNAPSHOT_EVERY: u64 = 100_000;

/// Snapshots kept: the newest ones; older ones are deleted when a new one is written.
pub const KEEP: i64 = 2;

/// The encoding written now: CBOR of [`State`]. 2: the ledger's indexes hold what falls due
/// when; 3: and each reservation's modifications; a snapshot of an older format is passed over
/// (the log after the one before it, or all of it, is replayed instead).
pub(crate) const FORMAT: i64 = 3;

/// The log entry format written now (`actions.format`): the core action's JSON.
pub(crate) const LOG_FORMAT: i64 = 1;

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) ledger: Ledger,
    pub(crate) meter: Meter,
}

/// `state` encoded as a snapshot's bytes.
pub(crate) fn encode(state: &State) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    ciborium::into_writer(state, &mut out).map_err(|e| StoreError::Snapshot(e.to_string()))?;
    Ok(out)
}

/// A snapshot's bytes decoded.
pub(crate) fn decode(format: i64, bytes: &[u8]) -> Result<State, StoreError> {
    if format != FORMAT {
        return Err(StoreError::Snapshot(format!(
            "format {format} is not one this version reads ({FORMAT})"
        )));
    }
    ciborium::from_reader(bytes).map_err(|e| StoreError::Snapshot(e.to_string()))
}

/// Writes a snapshot of `state` as of log entry `seq`, and deletes all but the newest
/// [`KEEP`].
pub(crate) async fn write(
    pool: &SqlitePool,
    seq: u64,
    at: Timestamp,
    state: State,
) -> Result<(), StoreError> {
    let bytes = tokio::task::spawn_blocking(move || encode(&state))
        .await
        .map_err(|e| StoreError::Snapshot(e.to_string()))??;
    let seq = i64::try_from(seq).map_err(|_| StoreError::Snapshot("log too long".into()))?;
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT OR REPLACE INTO snapshots (seq, format, at_ms, state) VALUES (?, ?, ?, ?)")
        .bind(seq)
        .bind(FORMAT)
        .bind(at.millis())
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)",
    )
    .bind(KEEP)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The newest snapshot that can be read, at or before log entry `upto`, with its entry;
/// those that can't be read are reported through `skipped` and passed over.
pub(crate) async fn newest(
    pool: &SqlitePool,
    upto: u64,
    skipped: impl FnMut(u64, StoreError),
) -> Result<Option<(u64, State)>, StoreError> {
    let rows =
        sqlx::query("SELECT seq, format, state FROM snapshots WHERE seq <= ? ORDER BY seq DESC")
            .bind(i64::try_from(upto).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
    let mut read = Vec::with_capacity(rows.len());
    for row in rows {
        read.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
    }
    first_readable(read, skipped).await
}

/// The first of `rows` (log entry, format, bytes; newest first) that decodes, with its entry;
/// those that can't be read are reported through `skipped` and passed over. Either database.
pub(crate) async fn first_readable(
    rows: Vec<(i64, i64, Vec<u8>)>,
    mut skipped: impl FnMut(u64, StoreError),
) -> Result<Option<(u64, State)>, StoreError> {
    for (seq, format, bytes) in rows {
        let seq = u64::try_from(seq).unwrap_or(0);
        match tokio::task::spawn_blocking(move || decode(format, &bytes))
            .await
            .map_err(|e| StoreError::Snapshot(e.to_string()))?
        {
            Ok(state) => return Ok(Some((seq, state))),
            Err(e) => skipped(seq, e),
        }
    }
    Ok(None)
}

/// The shard sizes stored with the data (`text`, JSON) against the configured ones: data
/// made with other sizes is refused, since its counts would change meaning. Either database.
pub(crate) fn same_sizes(text: &str, configured: ShardSizes) -> Result<(), StoreError> {
    let stored: ShardSizes = serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        seq: 0,
        reason: format!("shard sizes: {e}"),
    })?;
    if stored != configured {
        return Err(StoreError::ShardSizesChanged { stored, configured });
    }
    Ok(())
}
