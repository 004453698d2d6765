//! `Idempotency-Key` answers in the SQLite store, so that a retry after a restart is as safe
//! as one before it. A request that makes an action claims its key in the action's own
//! transaction ([`crate::Claim`]); the answer sent is added right after. A handle shares the
//! store's pool, so looking a key up never waits for the ledger's lock.

use shardex_core::{Span, Timestamp};

use crate::StoreError;
use crate::side::{Db, on_db};
use crate::sqlite::SqliteStore;

/// How long a key and its answer are kept.
pub const KEEP: Span = Span::from_millis(24 * 3_600_000);

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    /// The hash of the request that used the key first.
    pub fingerprint: Vec<u8>,
    /// The log entry that request made, if it made one.
    pub seq: Option<u64>,
    /// When.
    pub at: Timestamp,
    /// The answer sent, once it was kept: status, content type and body. `None` when the
    /// request's action is durable but the process stopped before its answer was kept.
    pub answer: Option<(u16, String, Vec<u8>)>,
}

/// The store's idempotency keys, usable without the ledger's lock.
#[derive(Debug, Clone)]
pub struct Idempotency {
    db: Db,
}

/// A kept key's row, as either database gives it.
#[derive(sqlx::FromRow)]
struct KeptRow {
    fingerprint: Vec<u8>,
    seq: Option<i64>,
    at_ms: i64,
    status: Option<i64>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

impl SqliteStore {
    /// A handle on the idempotency keys that shares this store's pool.
    pub fn idempotency(&self) -> Idempotency {
        Idempotency {
            db: Db::Sqlite(self.pool().clone()),
        }
    }
}

impl crate::PgStore {
    /// A handle on the `Idempotency-Key` answers in the shared database.
    pub fn idempotency(&self) -> Idempotency {
        Idempotency {
            db: Db::Pg(self.pool().clone()),
        }
    }
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt { seq: 0, reason }
}

impl Idempotency {
    /// What `caller`'s `key` holds, if it was used since `now - KEEP`.
    pub async fn get(
        &self,
        caller: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<KeptAnswer>, StoreError> {
        let from = now.millis().saturating_sub(keep_ms());
        let row: Option<KeptRow> = on_db!(&self.db, |pool, sql| {
            sqlx::query_as(sql(
                "SELECT fingerprint, seq, at_ms, status, content_type, body FROM idempotency
                 WHERE caller = ? AND key = ? AND at_ms > ?",
            ))
            .bind(caller)
            .bind(key)
            .bind(from)
            .fetch_optional(pool)
            .await?
        });
        let Some(row) = row else { return Ok(None) };
        let at = Timestamp::from_millis(row.at_ms)
            .map_err(|e| corrupt(format!("idempotency time: {e}")))?;
        let answer = match (row.status, row.content_type, row.body) {
            (Some(s), Some(t), Some(b)) => Some((
                u16::try_from(s).map_err(|_| corrupt(format!("idempotency status {s}")))?,
                t,
                b,
            )),
            _ => None,
        };
        Ok(Some(KeptAnswer {
            fingerprint: row.fingerprint,
            seq: row.seq.and_then(|s| u64::try_from(s).ok()),
            at,
            answer,
        }))
    }

    /// Keeps the answer sent for `caller`'s `key`: on the claim its action made, or as a new
    /// row (a request that made no action). Durable when it returns.
    #[allow(clippy::too_many_arguments)]
    pub async fn keep(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &[u8],
        at: Timestamp,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let stale = at.millis().saturating_sub(keep_ms());
        on_db!(&self.db, |pool, sql| {
            sqlx::query(sql(
                "INSERT INTO idempotency (caller, key, fingerprint, at_ms, status, content_type, body)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (caller, key) DO UPDATE SET
                   seq = CASE WHEN idempotency.fingerprint = excluded.fingerprint
                         THEN idempotency.seq END,
                   at_ms = CASE WHEN idempotency.fingerprint = excluded.fingerprint
                           THEN idempotency.at_ms ELSE excluded.at_ms END,
                   fingerprint = excluded.fingerprint,
                   status = excluded.status, content_type = excluded.content_type,
                   body = excluded.body
                 WHERE idempotency.fingerprint = excluded.fingerprint OR idempotency.at_ms <= ?",
            ))
            .bind(caller)
            .bind(key)
            .bind(fingerprint)
            .bind(at.millis())
            .bind(i64::from(status))
            .bind(content_type)
            .bind(body)
            .bind(stale)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forgets keys used before `now - KEEP`; returns how many.
    pub async fn forget_old(&self, now: Timestamp) -> Result<u64, StoreError> {
        let stale = now.millis().saturating_sub(keep_ms());
        Ok(on_db!(&self.db, |pool, sql| {
            sqlx::query(sql("DELETE FROM idempotency WHERE at_ms <= ?"))
                .bind(stale)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

fn keep_ms() -> i64 {
    i64::try_from(KEEP.millis()).unwrap_or(i64::MAX)
}
