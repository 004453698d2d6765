//! The ledger on PostgreSQL, shared by several brokers (fleet mode).
//!
//! Every broker keeps the ledger in memory as of the last log entry it has seen. A write
//! locks the log's `head` row (`SELECT … FOR UPDATE`), reads and replays what other brokers
//! appended since (checked as on open: each entry must reproduce its stored events), applies
//! its actions on that state, appends them with their events, charges, postings and claims,
//! moves the head and commits: one transaction. Writers are serialised by the lock, so the log's
//! order is total and no two brokers ever decide on the same state; a refusal, a failure or a
//! broker killed mid-write leaves the log as before (PostgreSQL rolls the transaction back).
//! [`PgStore::refresh`] catches up without writing, for reads. Opening restores the newest
//! snapshot and replays only the log after it.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use shardex_core::billing::{Charge, DEFAULT_LENDER_SHARE, Meter, charge_transaction};
use shardex_core::ports::LedgerStore;
use shardex_core::{
    Action, Event, Ledger, LedgerError, PriceTable, ShardSizes, TenantId, Timestamp,
};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::StoreError;
use crate::batch::{Batch, Row as LogRow, account_key, db_id, db_idx, db_seq, encode, event_kind};
use crate::replay::{Entry, step};
use crate::snapshot::{self, LOG_FORMAT, SNAPSHOT_EVERY};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_pg");

/// Log entries read per query when catching up.
const PAGE: i64 = 1000;

/// A broker's handle on the shared ledger.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    ledger: Ledger,
    meter: Meter,
    seq: u64,
    snapshot_seq: u64,
    sizes: ShardSizes,
    prices: PriceTable,
    lender_share: Decimal,
    /// Events of other writers' entries replayed since the last [`PgStore::caught_up`].
    others: Vec<Event>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`), creates or migrates the schema,
    /// checks the shard sizes and rebuilds the ledger from the newest snapshot and the log
    /// after it.
    pub async fn open(url: &str, sizes: ShardSizes) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        // Brokers starting together migrate one at a time (sqlx takes an advisory lock).
        MIGRATOR.run(&pool).await?;
        let mut store = Self {
            pool,
            ledger: Ledger::new(),
            meter: Meter::new(),
            seq: 0,
            snapshot_seq: 0,
            sizes,
            prices: PriceTable::default(),
            lender_share: DEFAULT_LENDER_SHARE,
            others: Vec::new(),
        };
        store.check_sizes().await?;
        store.restore_snapshot().await?;
        store.refresh().await?;
        let violations = store.ledger.check();
        if !violations.is_empty() {
            return Err(StoreError::InvariantsBroken(violations));
        }
        Ok(store)
    }

    /// The last log entry this handle has seen.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The list prices charges are metered at.
    pub fn set_prices(&mut self, prices: PriceTable) {
        self.prices = prices;
    }

    /// The share of a lease's price its lender is credited (the journal's postings).
    pub fn set_lender_share(&mut self, share: Decimal) {
        self.lender_share = share;
    }

    /// The connection pool (for the tables beside the ledger's).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn check_sizes(&self) -> Result<(), StoreError> {
        // Two brokers opening a new database at once: the first insert wins, both read it.
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('shard_sizes', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(encode("shard sizes", &self.sizes)?)
        .execute(&self.pool)
        .await?;
        let text: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'shard_sizes'")
            .fetch_one(&self.pool)
            .await?;
        snapshot::same_sizes(&text, self.sizes)
    }

    async fn restore_snapshot(&mut self) -> Result<(), StoreError> {
        let rows: Vec<(i64, i32, Vec<u8>)> =
            sqlx::query_as("SELECT seq, format, state FROM snapshots ORDER BY seq DESC")
                .fetch_all(&self.pool)
                .await?;
        let rows = rows
            .into_iter()
            .map(|(seq, format, bytes)| (seq, i64::from(format), bytes))
            .collect();
        let newest = snapshot::first_readable(rows, |seq, e| {
            tracing::warn!(seq, error = %e, "a snapshot can't be read; using an older one or the log");
        })
        .await?;
        if let Some((seq, state)) = newest {
            self.ledger = state.ledger;
            self.meter = state.meter;
            self.seq = seq;
            self.snapshot_seq = seq;
        }
        Ok(())
    }

    /// Writes a snapshot of the state as of the last entry this handle has seen; returns it.
    pub async fn snapshot(&mut self) -> Result<u64, StoreError> {
        let state = snapshot::State {
            ledger: self.ledger.clone(),
            meter: self.meter.clone(),
        };
        let bytes = tokio::task::spawn_blocking(move || snapshot::encode(&state))
            .await
            .map_err(|e| StoreError::Snapshot(e.to_string()))??;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO snapshots (seq, format, at_ms, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(db_seq(self.seq)?)
        .bind(i32::try_from(snapshot::FORMAT).unwrap_or(i32::MAX))
        .bind(self.ledger.now().millis())
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT $1)",
        )
        .bind(snapshot::KEEP)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.snapshot_seq = self.seq;
        Ok(self.seq)
    }

    /// A scratch batch on the state this handle has seen (never written: to plan on).
    pub fn batch(&self) -> Batch {
        Batch::new(self.ledger.clone(), self.meter.clone(), self.prices.clone())
    }

    /// The events of other writers' entries this handle replayed since the last call (for an
    /// event stream), oldest first.
    pub fn caught_up(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.others)
    }

    /// Catches up with what other brokers appended; returns how many entries were replayed.
    pub async fn refresh(&mut self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let (ledger, meter, seq, events) =
            catch_up(&mut conn, self.ledger.clone(), self.meter.clone(), self.seq).await?;
        let replayed = seq - self.seq;
        (self.ledger, self.meter, self.seq) = (ledger, meter, seq);
        self.others.extend(events);
        Ok(replayed)
    }

    /// Runs `plan` on the ledger as of the newest entry, under the head's lock, and appends
    /// what it applied to the batch in the same transaction. `plan`'s error is returned with
    /// nothing written; a batch it leaves empty writes nothing.
    pub async fn write<T, E>(
        &mut self,
        plan: impl FnOnce(&mut Batch) -> Result<T, E>,
    ) -> Result<Result<(T, Vec<Event>), E>, StoreError> {
        self.write_fenced(None, plan).await
    }

    /// [`PgStore::write`] for work done as `broker`, the owner of `held` (a host's plan): in
    /// the same transaction, after the head's lock, the host's ownership row is read and the
    /// write goes ahead only if `broker` still holds it under that epoch and its lease has not
    /// run out ([`StoreError::NotOwner`] otherwise, with nothing written). A broker that lost
    /// a host while it planned can't commit that plan: its successor's writes and its own
    /// never interleave on one host.
    pub async fn write_as<T, E>(
        &mut self,
        broker: &str,
        held: crate::Held,
        plan: impl FnOnce(&mut Batch) -> Result<T, E>,
    ) -> Result<Result<(T, Vec<Event>), E>, StoreError> {
        self.write_fenced(Some((broker, held)), plan).await
    }

    async fn write_fenced<T, E>(
        &mut self,
        fence: Option<(&str, crate::Held)>,
        plan: impl FnOnce(&mut Batch) -> Result<T, E>,
    ) -> Result<Result<(T, Vec<Event>), E>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let head: i64 = sqlx::query_scalar("SELECT seq FROM head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        if let Some((broker, held)) = fence {
            let owner: Option<i64> = sqlx::query_scalar(
                "SELECT epoch FROM host_owners WHERE host = $1 AND broker = $2 AND epoch = $3
                 AND expires_ms > (extract(epoch from clock_timestamp()) * 1000)::BIGINT
                 FOR SHARE",
            )
            .bind(i64::try_from(held.host).unwrap_or(i64::MAX))
            .bind(broker)
            .bind(i64::try_from(held.epoch).unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await?;
            if owner.is_none() {
                return Err(StoreError::NotOwner {
                    host: held.host,
                    epoch: held.epoch,
                });
            }
        }
        let head = u64::try_from(head).unwrap_or(0);
        if head != self.seq {
            let (ledger, meter, seq, events) =
                catch_up(&mut tx, self.ledger.clone(), self.meter.clone(), self.seq).await?;
            if seq != head {
                return Err(StoreError::Corrupt {
                    seq: head,
                    reason: format!("the head says {head}, the log ends at {seq}"),
                });
            }
            // What others committed stands whatever becomes of this transaction.
            (self.ledger, self.meter, self.seq) = (ledger, meter, seq);
            self.others.extend(events);
        }
        let mut batch = Batch::new(self.ledger.clone(), self.meter.clone(), self.prices.clone());
        let planned = match plan(&mut batch) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if batch.rows.is_empty() {
            return Ok(Ok((planned, Vec::new())));
        }
        let rows = batch.rows.len() as u64;
        append(&mut tx, self.seq + 1, &batch.rows, self.lender_share).await?;
        sqlx::query("UPDATE head SET seq = $1 WHERE id = 1")
            .bind(db_seq(self.seq + rows)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let events = batch.events();
        self.ledger = batch.ledger;
        self.meter = batch.meter;
        self.seq += rows;
        if self.seq >= self.snapshot_seq + SNAPSHOT_EVERY
            && let Err(e) = self.snapshot().await
        {
            tracing::warn!(error = %e, "could not write a snapshot");
        }
        Ok(Ok((planned, events)))
    }
}

impl PgStore {
    /// The market prices set on `host` from `since` on, newest first, at most `limit`: read
    /// from the log's `market_price_changed` events (as the SQLite store does).
    pub async fn price_history(
        &self,
        host: shardex_core::HostId,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Timestamp, shardex_core::PriceVector)>, StoreError> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT a.at_ms, e.seq, (e.event::jsonb -> 'prices')::text FROM events e
             JOIN actions a ON a.seq = e.seq
             WHERE e.kind = 'market_price_changed' AND (e.event::jsonb ->> 'host')::BIGINT = $1
               AND a.at_ms >= $2
             ORDER BY e.seq DESC, e.idx DESC LIMIT $3",
        )
        .bind(db_id(host.0))
        .bind(since.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        crate::charges::price_points(rows)
    }
}

/// Replays the log after `seq` onto `ledger` and `meter`, through `conn`.
async fn catch_up(
    conn: &mut sqlx::PgConnection,
    mut ledger: Ledger,
    mut meter: Meter,
    mut seq: u64,
) -> Result<(Ledger, Meter, u64, Vec<Event>), StoreError> {
    let mut replayed = Vec::new();
    loop {
        let from = db_seq(seq)?;
        let rows = sqlx::query(
            "SELECT seq, at_ms, action, format FROM actions WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(from)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last().map(|r| r.try_get::<i64, _>(0)).transpose()? else {
            return Ok((ledger, meter, seq, replayed));
        };
        let mut stored: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
        let events = sqlx::query(
            "SELECT seq, event FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq, idx",
        )
        .bind(from)
        .bind(last)
        .fetch_all(&mut *conn)
        .await?;
        for row in events {
            let s: i64 = row.try_get(0)?;
            let text: String = row.try_get(1)?;
            let value = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                seq: u64::try_from(s).unwrap_or(0),
                reason: format!("event: {e}"),
            })?;
            stored.entry(s).or_default().push(value);
        }
        for row in rows {
            let raw: i64 = row.try_get(0)?;
            let entry = Entry {
                seq: u64::try_from(raw).unwrap_or(0),
                at_ms: row.try_get(1)?,
                action: row.try_get(2)?,
                format: i64::from(row.try_get::<i32, _>(3)?),
                events: stored.remove(&raw).unwrap_or_default(),
            };
            let (next, events) = step(&mut ledger, &mut meter, seq, entry)?;
            seq = next;
            replayed.extend(events);
        }
    }
}

/// The `actions` rows of a batch, column by column.
#[derive(Default)]
struct ActionColumns(Vec<i64>, Vec<i64>, Vec<String>, Vec<i32>);

/// The `events` rows of a batch, column by column.
#[derive(Default)]
struct EventColumns(Vec<i64>, Vec<i32>, Vec<String>, Vec<String>);

/// The `charges` rows of a batch, column by column.
#[derive(Default)]
struct ChargeColumns(
    Vec<i64>,
    Vec<i32>,
    Vec<i64>,
    Vec<i64>,
    Vec<i64>,
    Vec<Option<i64>>,
    Vec<String>,
    Vec<String>,
);

/// The `postings` rows of a batch, column by column.
#[derive(Default)]
struct PostingColumns(Vec<i64>, Vec<i32>, Vec<i32>, Vec<String>, Vec<String>);

/// The idempotency claims of a batch, column by column.
#[derive(Default)]
struct ClaimColumns(Vec<String>, Vec<String>, Vec<Vec<u8>>, Vec<i64>, Vec<i64>);

/// Appends `rows` from `first` on: actions, events, charges with their postings, claims. One
/// statement per table for the whole batch (arrays unnested by PostgreSQL): a round trip per
/// row held a batch of 64 modifications to ~600 a second.
async fn append(
    tx: &mut sqlx::PgConnection,
    first: u64,
    rows: &[LogRow],
    lender_share: Decimal,
) -> Result<(), StoreError> {
    let mut actions = ActionColumns::default();
    let mut events = EventColumns::default();
    let mut charges = ChargeColumns::default();
    let mut postings = PostingColumns::default();
    let mut claims = ClaimColumns::default();
    for (i, r) in rows.iter().enumerate() {
        let seq = db_seq(first + i as u64)?;
        actions.0.push(seq);
        actions.1.push(r.at.millis());
        actions.2.push(encode("action", &r.action)?);
        actions
            .3
            .push(i32::try_from(LOG_FORMAT).unwrap_or(i32::MAX));
        for (idx, e) in r.events.iter().enumerate() {
            events.0.push(seq);
            events.1.push(idx32(idx));
            events.2.push(event_kind(e)?);
            events.3.push(encode("event", e)?);
        }
        for (idx, c) in r.charges.iter().enumerate() {
            charges.0.push(seq);
            charges.1.push(idx32(idx));
            charges.2.push(c.from.millis());
            charges.3.push(c.to.millis());
            charges.4.push(db_id(c.payer.0));
            charges.5.push(c.lender.map(|l| db_id(l.0)));
            charges.6.push(encode("charge", c)?);
            charges.7.push(c.amount.to_string());
            let t = charge_transaction(c, lender_share)?;
            for (pidx, p) in t.postings.iter().enumerate() {
                postings.0.push(seq);
                postings.1.push(idx32(idx));
                postings.2.push(idx32(pidx));
                postings.3.push(account_key(p.account));
                postings.4.push(p.amount.to_string());
            }
        }
        if let Some(c) = &r.claim {
            claims.0.push(c.caller.clone());
            claims.1.push(c.key.clone());
            claims.2.push(c.fingerprint.clone());
            claims.3.push(seq);
            claims.4.push(r.at.millis());
        }
    }
    sqlx::query(
        "INSERT INTO actions (seq, at_ms, action, format)
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::INTEGER[])",
    )
    .bind(&actions.0)
    .bind(&actions.1)
    .bind(&actions.2)
    .bind(&actions.3)
    .execute(&mut *tx)
    .await?;
    if !events.0.is_empty() {
        sqlx::query(
            "INSERT INTO events (seq, idx, kind, event)
             SELECT * FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::TEXT[], $4::TEXT[])",
        )
        .bind(&events.0)
        .bind(&events.1)
        .bind(&events.2)
        .bind(&events.3)
        .execute(&mut *tx)
        .await?;
    }
    if !charges.0.is_empty() {
        sqlx::query(
            "INSERT INTO charges (seq, idx, from_ms, to_ms, payer, lender, charge, amount)
             SELECT * FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::BIGINT[], $4::BIGINT[],
                                  $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[])",
        )
        .bind(&charges.0)
        .bind(&charges.1)
        .bind(&charges.2)
        .bind(&charges.3)
        .bind(&charges.4)
        .bind(&charges.5)
        .bind(&charges.6)
        .bind(&charges.7)
        .execute(&mut *tx)
        .await?;
    }
    if !postings.0.is_empty() {
        sqlx::query(
            "INSERT INTO postings (seq, idx, pidx, account, amount)
             SELECT * FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::INTEGER[], $4::TEXT[], $5::TEXT[])",
        )
        .bind(&postings.0)
        .bind(&postings.1)
        .bind(&postings.2)
        .bind(&postings.3)
        .bind(&postings.4)
        .execute(&mut *tx)
        .await?;
    }
    // One claim per key within a batch (a key's requests are served one at a time).
    for i in 0..claims.0.len() {
        sqlx::query(
            "INSERT INTO idempotency (caller, key, fingerprint, seq, at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (caller, key) DO UPDATE SET fingerprint = $3, seq = $4, at_ms = $5,
               status = NULL, content_type = NULL, body = NULL",
        )
        .bind(&claims.0[i])
        .bind(&claims.1[i])
        .bind(&claims.2[i])
        .bind(claims.3[i])
        .bind(claims.4[i])
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn idx32(i: usize) -> i32 {
    i32::try_from(db_idx(i)).unwrap_or(i32::MAX)
}

impl LedgerStore for PgStore {
    type Error = StoreError;

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
    ) -> Result<Result<Vec<Event>, LedgerError>, StoreError> {
        let done = self
            .write(|b| match b.apply(action, now, None) {
                Ok(Ok(_)) => Ok(Ok(())),
                Ok(Err(e)) => Err(e),
                Err(e) => Ok(Err(e)),
            })
            .await?;
        match done {
            Ok((Ok(()), events)) => Ok(Ok(events)),
            Ok((Err(metering), _)) => Err(metering.into()),
            Err(refused) => Ok(Err(refused)),
        }
    }

    async fn apply_all(
        &mut self,
        actions: Vec<(Action, Timestamp)>,
    ) -> Result<Result<Vec<Event>, (usize, LedgerError)>, StoreError> {
        let done = self
            .write(|b| {
                for (i, (action, now)) in actions.into_iter().enumerate() {
                    match b.apply(action, now, None) {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err((i, e)),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                Ok(Ok(()))
            })
            .await?;
        match done {
            Ok((Ok(()), events)) => Ok(Ok(events)),
            Ok((Err(metering), _)) => Err(metering.into()),
            Err(refused) => Ok(Err(refused)),
        }
    }

    async fn charges(
        &self,
        tenant: Option<TenantId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Charge>, StoreError> {
        let who = tenant.map(|t| db_id(t.0));
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, charge FROM charges
             WHERE to_ms > $1 AND to_ms <= $2 AND ($3::BIGINT IS NULL OR payer = $3 OR lender = $3)
             ORDER BY seq, idx",
        )
        .bind(from.millis())
        .bind(to.millis())
        .bind(who)
        .fetch_all(&self.pool)
        .await?;
        crate::charges::with_pending(
            rows,
            (&self.ledger, &self.meter, &self.prices),
            tenant,
            from,
            to,
        )
    }
}
