//! The embedded SQLite store: the log in one file, WAL mode, fsync on every commit.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use shardex_core::billing::{
    Account, Charge, CommitError, DEFAULT_LENDER_SHARE, Meter, charge_transaction, commit,
};
use shardex_core::ports::LedgerStore;
use shardex_core::{
    Action, Event, Ledger, LedgerError, PriceTable, ShardSizes, TenantId, Timestamp,
};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Rows read per query while replaying, so a long log never sits in memory whole.
const REPLAY_PAGE: i64 = 1000;

/// The ledger in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    ledger: Ledger,
    meter: Meter,
    seq: u64,
    sizes: ShardSizes,
    prices: PriceTable,
    lender_share: Decimal,
    /// Told of every commit, once it is durable (see [`SqliteStore::notify_commits`]).
    commits: Option<tokio::sync::mpsc::UnboundedSender<Commit>>,
}

/// One durable commit, for those who follow the log live (the event stream): the ledger
/// before and after (persistent maps: both are cheap to hold) and the events.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The log's sequence number of the commit's last action.
    pub seq: u64,
    /// The ledger before it.
    pub before: Ledger,
    /// The ledger after it.
    pub after: Ledger,
    /// What it caused, in order.
    pub events: Vec<Event>,
}

fn account_key(a: Account) -> String {
    match a {
        Account::Provider => "provider".into(),
        Account::Tenant(t) => format!("tenant:{}", t.0),
    }
}

fn parse_account(s: &str) -> Option<Account> {
    if s == "provider" {
        return Some(Account::Provider);
    }
    s.strip_prefix("tenant:")?
        .parse()
        .ok()
        .map(|n| Account::Tenant(TenantId(n)))
}

fn encode<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|source| StoreError::Encode { what, source })
}

fn event_kind(e: &Event) -> Result<String, StoreError> {
    let v = serde_json::to_value(e).map_err(|source| StoreError::Encode {
        what: "event",
        source,
    })?;
    Ok(v.get("event")
        .and_then(|k| k.as_str())
        .unwrap_or("unknown")
        .to_string())
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, replays the log and checks every invariant.
    /// `sizes` must match the sizes the store was created with.
    pub async fn open(path: &Path, sizes: ShardSizes) -> Result<Self, StoreError> {
        Self::open_with(path, sizes, false).await
    }

    /// Opens an existing store without writing to it (safe beside a running daemon), replays
    /// the log and checks every invariant.
    pub async fn open_read_only(path: &Path, sizes: ShardSizes) -> Result<Self, StoreError> {
        Self::open_with(path, sizes, true).await
    }

    async fn open_with(
        path: &Path,
        sizes: ShardSizes,
        read_only: bool,
    ) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(!read_only)
            .read_only(read_only)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it returns, so an acknowledged action survives
            // power loss, not only a crash of this process.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // One connection: the ledger has a single writer, and this keeps the log's order total.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        if !read_only {
            MIGRATOR.run(&pool).await?;
        }
        let mut store = SqliteStore {
            pool,
            path: path.to_path_buf(),
            ledger: Ledger::new(),
            meter: Meter::new(),
            seq: 0,
            sizes,
            prices: PriceTable::default(),
            lender_share: DEFAULT_LENDER_SHARE,
            commits: None,
        };
        store.check_sizes(read_only).await?;
        store.replay().await?;
        let violations = store.ledger.check();
        if !violations.is_empty() {
            return Err(StoreError::InvariantsBroken(violations));
        }
        Ok(store)
    }

    async fn check_sizes(&self, read_only: bool) -> Result<(), StoreError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'shard_sizes'")
                .fetch_optional(&self.pool)
                .await?;
        match stored {
            None if read_only => Ok(()),
            None => {
                sqlx::query("INSERT INTO meta (key, value) VALUES ('shard_sizes', ?)")
                    .bind(encode("shard sizes", &self.sizes)?)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
            Some(text) => {
                let stored: ShardSizes =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                        seq: 0,
                        reason: format!("shard sizes: {e}"),
                    })?;
                if stored != self.sizes {
                    return Err(StoreError::ShardSizesChanged {
                        stored,
                        configured: self.sizes,
                    });
                }
                Ok(())
            }
        }
    }

    async fn replay(&mut self) -> Result<(), StoreError> {
        loop {
            let from = i64::try_from(self.seq).unwrap_or(i64::MAX);
            let rows = sqlx::query(
                "SELECT seq, at_ms, action FROM actions WHERE seq > ? ORDER BY seq LIMIT ?",
            )
            .bind(from)
            .bind(REPLAY_PAGE)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last().map(|r| r.try_get::<i64, _>(0)).transpose()? else {
                return Ok(());
            };
            // Events are read as text and parsed here: SQLite's JSON functions would turn
            // integers past i64 into floats.
            let mut stored_events: std::collections::BTreeMap<i64, Vec<serde_json::Value>> =
                std::collections::BTreeMap::new();
            let event_rows = sqlx::query(
                "SELECT seq, event FROM events WHERE seq > ? AND seq <= ? ORDER BY seq, idx",
            )
            .bind(from)
            .bind(last)
            .fetch_all(&self.pool)
            .await?;
            for row in event_rows {
                let seq: i64 = row.try_get(0)?;
                let text: String = row.try_get(1)?;
                let value = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    seq: u64::try_from(seq).unwrap_or(0),
                    reason: format!("event: {e}"),
                })?;
                stored_events.entry(seq).or_default().push(value);
            }
            for row in rows {
                let raw_seq: i64 = row.try_get(0)?;
                let seq = u64::try_from(raw_seq).unwrap_or(0);
                let corrupt = |reason: String| StoreError::Corrupt { seq, reason };
                if seq != self.seq + 1 {
                    return Err(corrupt(format!("expected action {} next", self.seq + 1)));
                }
                let at =
                    Timestamp::from_millis(row.try_get(1)?).map_err(|e| corrupt(e.to_string()))?;
                let action: Action = serde_json::from_str(&row.try_get::<String, _>(2)?)
                    .map_err(|e| corrupt(format!("action: {e}")))?;
                let stored =
                    serde_json::Value::Array(stored_events.remove(&raw_seq).unwrap_or_default());
                let before = self.ledger.clone();
                let events = self
                    .ledger
                    .apply(&action, at)
                    .map_err(|e| StoreError::Diverged {
                        seq,
                        detail: format!("the ledger now refuses it: {e}"),
                    })?;
                self.meter = self.meter.advanced(&before, &events, at);
                let replayed =
                    serde_json::to_value(&events).map_err(|source| StoreError::Encode {
                        what: "events",
                        source,
                    })?;
                if replayed != stored {
                    return Err(StoreError::Diverged {
                        seq,
                        detail: format!("stored {stored}, replayed {replayed}"),
                    });
                }
                self.seq = seq;
            }
        }
    }

    /// The connection pool (for the tables beside the ledger's).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Sequence number of the last acknowledged action (0 for an empty log).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shard sizes the store was created with.
    pub fn sizes(&self) -> ShardSizes {
        self.sizes
    }

    /// The stored action with sequence number `seq`, with its time.
    pub async fn action(&self, seq: u64) -> Result<Option<(Timestamp, Action)>, StoreError> {
        let row = sqlx::query("SELECT at_ms, action FROM actions WHERE seq = ?")
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let corrupt = |reason: String| StoreError::Corrupt { seq, reason };
        let at = Timestamp::from_millis(row.try_get(0)?).map_err(|e| corrupt(e.to_string()))?;
        let action = serde_json::from_str(&row.try_get::<String, _>(1)?)
            .map_err(|e| corrupt(format!("action: {e}")))?;
        Ok(Some((at, action)))
    }

    /// Number of stored events.
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Prices charges from now on with `prices` (the default table until set).
    pub fn set_prices(&mut self, prices: PriceTable) {
        self.prices = prices;
    }

    /// Credits lenders this share of what their shards earn from now on (the provider keeps
    /// the rest); 0.8 until set.
    pub fn set_lender_share(&mut self, share: Decimal) {
        self.lender_share = share;
    }

    /// Every account's balance in the stored journal (positive: owes; negative: is owed).
    pub async fn journal_balances(&self) -> Result<BTreeMap<Account, Decimal>, StoreError> {
        let rows = sqlx::query("SELECT seq, account, amount FROM postings")
            .fetch_all(&self.pool)
            .await?;
        let mut out = BTreeMap::new();
        for row in rows {
            let seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
            let account: String = row.try_get(1)?;
            let amount: String = row.try_get(2)?;
            let corrupt = |what: &str| StoreError::Corrupt {
                seq,
                reason: format!("posting {what}"),
            };
            let account = parse_account(&account).ok_or_else(|| corrupt("account"))?;
            let amount: Decimal = amount.parse().map_err(|_| corrupt("amount"))?;
            *out.entry(account).or_insert(Decimal::ZERO) += amount;
        }
        Ok(out)
    }

    /// Records decisions of the engine (JSON values) made at `at`, in one transaction.
    pub async fn record_decisions(
        &self,
        at: Timestamp,
        mode: &str,
        decisions: &[serde_json::Value],
    ) -> Result<(), StoreError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for d in decisions {
            sqlx::query("INSERT INTO decisions (at_ms, seq, mode, decision) VALUES (?, ?, ?, ?)")
                .bind(at.millis())
                .bind(i64::try_from(self.seq).unwrap_or(i64::MAX))
                .bind(mode)
                .bind(encode("decision", d)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` decisions, newest first, each with its time, sequence and mode.
    pub async fn decisions(&self, limit: u32) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, seq, mode, decision FROM decisions ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(1)?;
            let text: String = row.try_get(3)?;
            let decision: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    seq: u64::try_from(seq).unwrap_or(0),
                    reason: format!("decision: {e}"),
                })?;
            out.push(serde_json::json!({
                "at_ms": row.try_get::<i64, _>(0)?,
                "seq": seq,
                "mode": row.try_get::<String, _>(2)?,
                "decision": decision,
            }));
        }
        Ok(out)
    }

    /// Charges whose interval ends in `(from, to]`, paid or lent by `tenant` (every tenant when
    /// `None`), oldest first: those stored, then what is metered but not stored yet (the
    /// stretches since each subject's last change or the last hour boundary, up to the
    /// ledger's time; see [`Meter`]).
    pub async fn charges_of(
        &self,
        tenant: Option<TenantId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Charge>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, charge FROM charges
             WHERE to_ms > ? AND to_ms <= ? AND (? IS NULL OR payer = ? OR lender = ?)
             ORDER BY seq, idx",
        )
        .bind(from.millis())
        .bind(to.millis())
        .bind(tenant.map(|t| db_id(t.0)))
        .bind(tenant.map(|t| db_id(t.0)))
        .bind(tenant.map(|t| db_id(t.0)))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
            let text: String = row.try_get(1)?;
            out.push(
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    seq,
                    reason: format!("charge: {e}"),
                })?,
            );
        }
        let pending = self
            .meter
            .pending(&self.ledger, &self.prices, self.ledger.now())?;
        out.extend(
            pending
                .into_iter()
                .filter(|c| c.to > from && c.to <= to)
                .filter(|c| tenant.is_none_or(|t| c.payer == t || c.lender == Some(t))),
        );
        Ok(out)
    }

    /// The market prices set on `host` from `since` on, newest first, at most `limit`: read
    /// from the log's `market_price_changed` events, so the history survives restarts.
    pub async fn price_history(
        &self,
        host: shardex_core::HostId,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Timestamp, shardex_core::PriceVector)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.at_ms, e.seq, json_extract(e.event, '$.prices') FROM events e
             JOIN actions a ON a.seq = e.seq
             WHERE e.kind = 'market_price_changed' AND json_extract(e.event, '$.host') = ?
               AND a.at_ms >= ?
             ORDER BY e.seq DESC, e.idx DESC LIMIT ?",
        )
        .bind(db_id(host.0))
        .bind(since.millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(1)?;
            let corrupt = |reason: String| StoreError::Corrupt {
                seq: u64::try_from(seq).unwrap_or(0),
                reason,
            };
            let at = Timestamp::from_millis(row.try_get(0)?).map_err(|e| corrupt(e.to_string()))?;
            let text: String = row.try_get(2)?;
            let prices = serde_json::from_str(&text).map_err(|e| corrupt(format!("price: {e}")))?;
            out.push((at, prices));
        }
        Ok(out)
    }

    /// Sends every commit from now on to `tx`, in order, once it is durable.
    pub fn notify_commits(&mut self, tx: tokio::sync::mpsc::UnboundedSender<Commit>) {
        self.commits = Some(tx);
    }

    fn committed(&self, before: &Ledger, events: &[Event]) {
        if let Some(tx) = &self.commits
            && !events.is_empty()
        {
            // A follower that went away is no reason to fail a durable commit.
            let _ = tx.send(Commit {
                seq: self.seq,
                before: before.clone(),
                after: self.ledger.clone(),
                events: events.to_vec(),
            });
        }
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }

    async fn persist(
        &self,
        seq: u64,
        action: &Action,
        now: Timestamp,
        events: &[Event],
        charges: &[Charge],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.write(&mut tx, seq, action, now, events, charges)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One action's rows, inside the caller's transaction.
    async fn write(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        seq: u64,
        action: &Action,
        now: Timestamp,
        events: &[Event],
        charges: &[Charge],
    ) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).map_err(|_| StoreError::Corrupt {
            seq,
            reason: "log too long".into(),
        })?;
        sqlx::query("INSERT INTO actions (seq, at_ms, action) VALUES (?, ?, ?)")
            .bind(seq)
            .bind(now.millis())
            .bind(encode("action", action)?)
            .execute(&mut **tx)
            .await?;
        for (idx, e) in events.iter().enumerate() {
            sqlx::query("INSERT INTO events (seq, idx, kind, event) VALUES (?, ?, ?, ?)")
                .bind(seq)
                .bind(i64::try_from(idx).unwrap_or(i64::MAX))
                .bind(event_kind(e)?)
                .bind(encode("event", e)?)
                .execute(&mut **tx)
                .await?;
        }
        for (idx, c) in charges.iter().enumerate() {
            sqlx::query(
                "INSERT INTO charges (seq, idx, from_ms, to_ms, payer, lender, charge, amount)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(seq)
            .bind(i64::try_from(idx).unwrap_or(i64::MAX))
            .bind(c.from.millis())
            .bind(c.to.millis())
            .bind(db_id(c.payer.0))
            .bind(c.lender.map(|l| db_id(l.0)))
            .bind(encode("charge", c)?)
            .bind(c.amount.to_string())
            .execute(&mut **tx)
            .await?;
            let t = charge_transaction(c, self.lender_share)?;
            for (pidx, p) in t.postings.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO postings (seq, idx, pidx, account, amount) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(seq)
                .bind(i64::try_from(idx).unwrap_or(i64::MAX))
                .bind(i64::try_from(pidx).unwrap_or(i64::MAX))
                .bind(account_key(p.account))
                .bind(p.amount.to_string())
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }
}

impl LedgerStore for SqliteStore {
    type Error = StoreError;

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
    ) -> Result<Result<Vec<Event>, LedgerError>, StoreError> {
        // The core commits and meters; the store persists what it computed.
        let c = match commit(&self.ledger, &self.meter, &self.prices, &action, now) {
            Ok(c) => c,
            Err(CommitError::Refused(e)) => return Ok(Err(e)),
            Err(CommitError::Metering(e)) => return Err(e.into()),
        };
        let seq = self.seq + 1;
        self.persist(seq, &action, now, &c.events, &c.charges)
            .await?;
        let before = std::mem::replace(&mut self.ledger, c.ledger);
        self.meter = c.meter;
        self.seq = seq;
        self.committed(&before, &c.events);
        Ok(Ok(c.events))
    }

    async fn apply_all(
        &mut self,
        actions: Vec<(Action, Timestamp)>,
    ) -> Result<Result<Vec<Event>, (usize, LedgerError)>, StoreError> {
        // Every next state and its charges first, in memory: a refusal writes nothing.
        let mut ledger = self.ledger.clone();
        let mut meter = self.meter.clone();
        let mut rows = Vec::with_capacity(actions.len());
        let mut all = Vec::new();
        for (i, (action, now)) in actions.into_iter().enumerate() {
            let c = match commit(&ledger, &meter, &self.prices, &action, now) {
                Ok(c) => c,
                Err(CommitError::Refused(e)) => return Ok(Err((i, e))),
                Err(CommitError::Metering(e)) => return Err(e.into()),
            };
            all.extend(c.events.iter().cloned());
            rows.push((action, now, c.events, c.charges));
            ledger = c.ledger;
            meter = c.meter;
        }
        let mut tx = self.pool.begin().await?;
        for (i, (action, now, events, charges)) in rows.iter().enumerate() {
            self.write(
                &mut tx,
                self.seq + 1 + i as u64,
                action,
                *now,
                events,
                charges,
            )
            .await?;
        }
        tx.commit().await?;
        self.seq += rows.len() as u64;
        self.meter = meter;
        let before = std::mem::replace(&mut self.ledger, ledger);
        self.committed(&before, &all);
        Ok(Ok(all))
    }

    async fn charges(
        &self,
        tenant: Option<TenantId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Charge>, StoreError> {
        self.charges_of(tenant, from, to).await
    }
}

/// An id as SQLite's INTEGER holds it (ids count up from 1 and never reach 2^63).
fn db_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}
