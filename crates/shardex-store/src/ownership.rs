//! Who works for which host, in fleet mode: a lease per host in PostgreSQL (`host_owners`).
//! A broker claims the hosts nobody holds or whose lease ran out, renews its own before they
//! run out, and lets go of them when it stops. Time is the database's clock, so brokers'
//! clocks never disagree about expiry. Each change of owner increments the host's `epoch`, a
//! fencing token: work done under an older epoch is recognisably stale.
//!
//! Brokers spread the hosts among themselves ([`Ownership::spread`]): each holds at most the
//! hosts over the brokers alive, rounded up, and gives back what it holds above that.
//!
//! Bound on a takeover: a broker that dies holds its hosts until their leases expire (`ttl`
//! after its last renewal), and the others claim them at their next round (every `ttl / 3` by
//! default), so a dead broker's hosts are taken over within `ttl + ttl / 3`.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::StoreError;

/// One host a broker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The host's id.
    pub host: u64,
    /// Its fencing token: incremented at each change of owner.
    pub epoch: u64,
}

/// A broker's hold on hosts.
#[derive(Debug, Clone)]
pub struct Ownership {
    pool: PgPool,
    broker: String,
    ttl: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Ownership {
    /// `broker`'s hold on hosts through `pool` (the schema made by [`crate::PgStore::open`]),
    /// with leases of `ttl`.
    pub fn new(pool: PgPool, broker: impl Into<String>, ttl: Duration) -> Self {
        Self {
            pool,
            broker: broker.into(),
            ttl,
        }
    }

    /// This broker's name.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// One round: renews this broker's leases, claims every host in `hosts` that nobody holds
    /// or whose lease ran out, at most `max` held in all (`None`: no cap; a cap spreads hosts
    /// over brokers); returns what it holds now, by host.
    pub async fn round(&self, hosts: &[u64], max: Option<usize>) -> Result<Vec<Held>, StoreError> {
        let ttl = ms(self.ttl);
        let mut tx = self.pool.begin().await?;
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000)::BIGINT")
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query("UPDATE host_owners SET expires_ms = $1 WHERE broker = $2 AND expires_ms > $3")
            .bind(now + ttl)
            .bind(&self.broker)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM host_owners WHERE broker = $1 AND expires_ms > $2",
        )
        .bind(&self.broker)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for &host in hosts {
            if max.is_some_and(|m| usize::try_from(held).unwrap_or(usize::MAX) >= m) {
                break;
            }
            let host_id = i64::try_from(host).unwrap_or(i64::MAX);
            // A free host, or one whose lease ran out: the row is locked while it changes, so
            // two brokers claiming at once can't both win.
            let claimed = sqlx::query(
                "INSERT INTO host_owners (host, broker, expires_ms, epoch) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (host) DO UPDATE
                   SET broker = EXCLUDED.broker, expires_ms = EXCLUDED.expires_ms,
                       epoch = host_owners.epoch + 1
                   WHERE host_owners.expires_ms <= $4",
            )
            .bind(host_id)
            .bind(&self.broker)
            .bind(now + ttl)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            held += i64::try_from(claimed.rows_affected()).unwrap_or(0);
        }
        let rows = sqlx::query(
            "SELECT host, epoch FROM host_owners WHERE broker = $1 AND expires_ms > $2 ORDER BY host",
        )
        .bind(&self.broker)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Held {
                    host: u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                    epoch: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// One round that spreads `hosts` over the brokers alive: this broker's presence is renewed
    /// (`brokers`, expiring as its hold does), it holds at most its share (the hosts over the
    /// brokers alive, rounded up) and lets go of what it holds above that, highest host first,
    /// for the others to claim at their next round. A broker that arrives has its share within
    /// two rounds of everyone's; one that dies leaves the count when its presence runs out,
    /// and its hosts are claimed as with [`Ownership::round`].
    pub async fn spread(&self, hosts: &[u64]) -> Result<Vec<Held>, StoreError> {
        let ttl = ms(self.ttl);
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000)::BIGINT")
                .fetch_one(&self.pool)
                .await?;
        sqlx::query(
            "INSERT INTO brokers (name, expires_ms) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET expires_ms = EXCLUDED.expires_ms",
        )
        .bind(&self.broker)
        .bind(now + ttl)
        .execute(&self.pool)
        .await?;
        let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM brokers WHERE expires_ms > $1")
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        let share = hosts
            .len()
            .div_ceil(usize::try_from(alive.max(1)).unwrap_or(1));
        sqlx::query(
            "UPDATE host_owners SET expires_ms = 0 WHERE host IN (
                 SELECT host FROM host_owners WHERE broker = $1 AND expires_ms > $2
                 ORDER BY host DESC OFFSET $3)",
        )
        .bind(&self.broker)
        .bind(now)
        .bind(i64::try_from(share).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        self.round(hosts, Some(share)).await
    }

    /// Whether this broker still holds `held` (same host, same epoch, lease not run out): what
    /// a broker checks before it commits work for that host.
    pub async fn holds(&self, held: Held) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM host_owners
             WHERE host = $1 AND broker = $2 AND epoch = $3
               AND expires_ms > (extract(epoch from clock_timestamp()) * 1000)::BIGINT",
        )
        .bind(i64::try_from(held.host).unwrap_or(i64::MAX))
        .bind(&self.broker)
        .bind(i64::try_from(held.epoch).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(n == 1)
    }

    /// Every host held now and by which broker, by host.
    pub async fn owners(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT host, broker FROM host_owners
             WHERE expires_ms > (extract(epoch from clock_timestamp()) * 1000)::BIGINT
             ORDER BY host",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(h, b)| (u64::try_from(h).unwrap_or(0), b))
            .collect())
    }

    /// Lets go of every host this broker holds and leaves the brokers alive (a clean stop: the
    /// others take its hosts, and its share, at once).
    pub async fn release(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE host_owners SET expires_ms = 0 WHERE broker = $1")
            .bind(&self.broker)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM brokers WHERE name = $1")
            .bind(&self.broker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
