//! Tenants' API tokens in the SQLite store: hashes only, beside the ledger (auth is not ledger
//! state: tokens are never replayed into it). A [`Tokens`] handle shares the store's
//! connection pool, so that checking a token never waits for the ledger's lock.
//!
//! Looked-up tokens are cached for [`CACHE_FOR`]: checking a token is on every request's path,
//! and a SQLite read there costs a hop to the store's worker thread (at 64 concurrent clients
//! that hop was a third of the daemon's time). Inserts and revocations through this handle
//! update the cache at once; one made by another process (another broker on a shared
//! database) is seen within [`CACHE_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::StoreError;
use crate::side::{Db, on_db};
use crate::sqlite::SqliteStore;
use shardex_core::{TenantId, Timestamp};

/// A token as stored: who it is for and the hash of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The public part of the token, unique.
    pub id: String,
    /// The tenant it acts as.
    pub tenant: TenantId,
    /// Hex SHA-256 of the secret part.
    pub hash: String,
    /// What the operator called it.
    pub label: String,
    /// When it was issued.
    pub created: Timestamp,
    /// When it stops working, if ever.
    pub expires: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked: Option<Timestamp>,
}

/// How long a looked-up token is trusted without reading the store again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// At most this many tokens are cached; past it the cache starts again empty.
const CACHE_MAX: usize = 100_000;

/// The store's tokens, usable without the ledger's lock.
#[derive(Debug, Clone)]
pub struct Tokens {
    db: Db,
    cache: Arc<RwLock<Cache>>,
}

/// Token id -> when it was read, and what (`None`: no such token).
type Cache = HashMap<String, (Instant, Option<StoredToken>)>;

impl SqliteStore {
    /// A handle on the tokens table that shares this store's pool.
    pub fn tokens(&self) -> Tokens {
        Tokens {
            db: Db::Sqlite(self.pool().clone()),
            cache: Arc::default(),
        }
    }
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt { seq: 0, reason }
}

fn time(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(|v| Timestamp::from_millis(v).map_err(|e| corrupt(format!("token time: {e}"))))
        .transpose()
}

/// A token's row, as either database gives it.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    tenant: i64,
    hash: String,
    label: String,
    created_ms: i64,
    expires_ms: Option<i64>,
    revoked_ms: Option<i64>,
}

fn row_token(row: TokenRow) -> Result<StoredToken, StoreError> {
    let tenant = row.tenant;
    Ok(StoredToken {
        id: row.id,
        tenant: TenantId(
            u64::try_from(tenant).map_err(|_| corrupt(format!("token tenant {tenant}")))?,
        ),
        hash: row.hash,
        label: row.label,
        created: time(Some(row.created_ms))?.unwrap_or(Timestamp::EPOCH),
        expires: time(row.expires_ms)?,
        revoked: time(row.revoked_ms)?,
    })
}

impl Tokens {
    fn cached(&self, id: &str) -> Option<Option<StoredToken>> {
        let cache = self.cache.read().ok()?;
        let (at, t) = cache.get(id)?;
        (at.elapsed() < CACHE_FOR).then(|| t.clone())
    }

    fn remember(&self, id: &str, t: Option<StoredToken>) {
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(id.to_string(), (Instant::now(), t));
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(id);
        }
    }

    /// Stores a new token (durably, before it is shown to anyone).
    pub async fn insert(&self, t: &StoredToken) -> Result<(), StoreError> {
        let tenant = i64::try_from(t.tenant.0).map_err(|_| corrupt("tenant id".into()))?;
        on_db!(&self.db, |pool, sql| {
            sqlx::query(sql(
                "INSERT INTO tokens (id, tenant, hash, label, created_ms, expires_ms, revoked_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            ))
            .bind(&t.id)
            .bind(tenant)
            .bind(&t.hash)
            .bind(&t.label)
            .bind(t.created.millis())
            .bind(t.expires.map(Timestamp::millis))
            .bind(t.revoked.map(Timestamp::millis))
            .execute(pool)
            .await?;
        });
        self.remember(&t.id, Some(t.clone()));
        Ok(())
    }

    /// The token with this public id, revoked or not (from the cache when read lately).
    pub async fn get(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        if let Some(t) = self.cached(id) {
            return Ok(t);
        }
        let row: Option<TokenRow> = on_db!(&self.db, |pool, sql| {
            sqlx::query_as(sql("SELECT * FROM tokens WHERE id = ?"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let t = row.map(row_token).transpose()?;
        self.remember(id, t.clone());
        Ok(t)
    }

    /// A tenant's tokens (every tenant's when `None`), oldest first.
    pub async fn list(&self, tenant: Option<TenantId>) -> Result<Vec<StoredToken>, StoreError> {
        let tenant = tenant
            .map(|t| i64::try_from(t.0).map_err(|_| corrupt("tenant id".into())))
            .transpose()?;
        let rows: Vec<TokenRow> = on_db!(&self.db, |pool, sql| {
            sqlx::query_as(sql(
                "SELECT * FROM tokens WHERE (? IS NULL OR tenant = ?) ORDER BY created_ms, id",
            ))
            .bind(tenant)
            .bind(tenant)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(row_token).collect()
    }

    /// Revokes a token at `at`; false when there is no such token or it was revoked already.
    pub async fn revoke(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let affected = on_db!(&self.db, |pool, sql| {
            sqlx::query(sql(
                "UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            ))
            .bind(at.millis())
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.forget(id);
        Ok(affected == 1)
    }
}

impl crate::PgStore {
    /// A handle on the tenants' tokens in the shared database.
    pub fn tokens(&self) -> Tokens {
        Tokens {
            db: Db::Pg(self.pool().clone()),
            cache: Arc::default(),
        }
    }
}
