//! Tenants' API tokens in the SQLite store: hashes only, beside the ledger (auth is not ledger
//! state: tokens are never replayed into it). A [`Tokens`] handle shares the store's
//! connection pool, so that checking a token never waits for the ledger's lock.

use shardex_core::{TenantId, Timestamp};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use crate::StoreError;
use crate::sqlite::SqliteStore;

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

/// The store's tokens, usable without the ledger's lock.
#[derive(Debug, Clone)]
pub struct Tokens {
    pool: SqlitePool,
}

impl SqliteStore {
    /// A handle on the tokens table that shares this store's pool.
    pub fn tokens(&self) -> Tokens {
        Tokens {
            pool: self.pool().clone(),
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

fn row_token(row: &sqlx::sqlite::SqliteRow) -> Result<StoredToken, StoreError> {
    let tenant: i64 = row.try_get("tenant")?;
    Ok(StoredToken {
        id: row.try_get("id")?,
        tenant: TenantId(
            u64::try_from(tenant).map_err(|_| corrupt(format!("token tenant {tenant}")))?,
        ),
        hash: row.try_get("hash")?,
        label: row.try_get("label")?,
        created: time(Some(row.try_get("created_ms")?))?.unwrap_or(Timestamp::EPOCH),
        expires: time(row.try_get("expires_ms")?)?,
        revoked: time(row.try_get("revoked_ms")?)?,
    })
}

impl Tokens {
    /// Stores a new token (durably, before it is shown to anyone).
    pub async fn insert(&self, t: &StoredToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, tenant, hash, label, created_ms, expires_ms, revoked_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(i64::try_from(t.tenant.0).map_err(|_| corrupt("tenant id".into()))?)
        .bind(&t.hash)
        .bind(&t.label)
        .bind(t.created.millis())
        .bind(t.expires.map(Timestamp::millis))
        .bind(t.revoked.map(Timestamp::millis))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token with this public id, revoked or not.
    pub async fn get(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_token).transpose()
    }

    /// A tenant's tokens (every tenant's when `None`), oldest first.
    pub async fn list(&self, tenant: Option<TenantId>) -> Result<Vec<StoredToken>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query("SELECT * FROM tokens WHERE tenant = ? ORDER BY created_ms, id")
                    .bind(i64::try_from(t.0).map_err(|_| corrupt("tenant id".into()))?)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM tokens ORDER BY created_ms, id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(row_token).collect()
    }

    /// Revokes a token at `at`; false when there is no such token or it was revoked already.
    pub async fn revoke(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
                .bind(at.millis())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
