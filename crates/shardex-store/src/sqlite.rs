//! The embedded SQLite store: the log in one file, WAL mode, fsync on every commit.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use shardex_core::billing::{Account, Charge, DEFAULT_LENDER_SHARE, Meter};
use shardex_core::ports::LedgerStore;
use shardex_core::{
    Action, Event, Ledger, LedgerError, PriceTable, ShardSizes, TenantId, Timestamp,
};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::batch::{Batch, Row as LogRow, db_id, encode};
use crate::log_writer::LogWriter;
use crate::snapshot::{self, SNAPSHOT_EVERY};

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
    /// The log entry of the newest snapshot (0: none).
    snapshot_seq: u64,
    read_only: bool,
    sizes: ShardSizes,
    prices: PriceTable,
    lender_share: Decimal,
    /// The ledger as of the last commit, for readers ([`SqliteStore::published`]).
    published: tokio::sync::watch::Sender<Ledger>,
    /// Told of every commit, once it is durable (see [`SqliteStore::notify_commits`]).
    commits: Option<tokio::sync::mpsc::UnboundedSender<Commit>>,
    /// Writes the log (none when read-only).
    log: Option<LogWriter>,
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

fn parse_account(s: &str) -> Option<Account> {
    if s == "provider" {
        return Some(Account::Provider);
    }
    s.strip_prefix("tenant:")?
        .parse()
        .ok()
        .map(|n| Account::Tenant(TenantId(n)))
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
            // Checkpoints run beside the writers (`checkpoint.rs`), not inside their commits.
            .pragma("wal_autocheckpoint", "0")
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
            snapshot_seq: 0,
            read_only,
            sizes,
            prices: PriceTable::default(),
            lender_share: DEFAULT_LENDER_SHARE,
            published: tokio::sync::watch::Sender::new(Ledger::new()),
            commits: None,
            log: None,
        };
        store.check_sizes(read_only).await?;
        if !read_only {
            store.log = Some(LogWriter::open(path)?);
            crate::checkpoint::spawn(store.pool.clone());
        }
        // A read-only open (`shardex ledger check`) verifies the whole log; the daemon starts
        // from the newest snapshot and replays only what follows it.
        if !read_only {
            store.restore_snapshot().await?;
        }
        store.replay().await?;
        if !read_only && store.seq >= store.snapshot_seq + SNAPSHOT_EVERY {
            store.snapshot().await?;
        }
        let violations = store.ledger.check();
        if !violations.is_empty() {
            return Err(StoreError::InvariantsBroken(violations));
        }
        store.published.send_replace(store.ledger.clone());
        Ok(store)
    }

    async fn restore_snapshot(&mut self) -> Result<(), StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM actions")
            .fetch_one(&self.pool)
            .await?;
        let last = last.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        let newest = snapshot::newest(&self.pool, last, |seq, e| {
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

    /// Writes a snapshot of the state as of the last commit now (opening replays only the log
    /// after the newest snapshot); returns its log entry.
    pub async fn snapshot(&mut self) -> Result<u64, StoreError> {
        let state = snapshot::State {
            ledger: self.ledger.clone(),
            meter: self.meter.clone(),
        };
        snapshot::write(&self.pool, self.seq, self.ledger.now(), state).await?;
        self.snapshot_seq = self.seq;
        Ok(self.seq)
    }

    /// Takes a snapshot in the background when the log has grown by [`SNAPSHOT_EVERY`] since
    /// the last one: the writer does not wait for it, and one that fails is only logged.
    fn snapshot_when_due(&mut self) {
        if self.read_only || self.seq < self.snapshot_seq + SNAPSHOT_EVERY {
            return;
        }
        let (pool, seq, at) = (self.pool.clone(), self.seq, self.ledger.now());
        let state = snapshot::State {
            ledger: self.ledger.clone(),
            meter: self.meter.clone(),
        };
        self.snapshot_seq = seq;
        tokio::spawn(async move {
            match snapshot::write(&pool, seq, at, state).await {
                Ok(()) => tracing::info!(seq, "snapshot written"),
                Err(e) => tracing::warn!(seq, error = %e, "could not write a snapshot"),
            }
        });
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
            Some(text) => snapshot::same_sizes(&text, self.sizes),
        }
    }

    async fn replay(&mut self) -> Result<(), StoreError> {
        loop {
            let from = i64::try_from(self.seq).unwrap_or(i64::MAX);
            let rows = sqlx::query(
                "SELECT seq, at_ms, action, format FROM actions WHERE seq > ? ORDER BY seq LIMIT ?",
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
                let entry = crate::replay::Entry {
                    seq: u64::try_from(raw_seq).unwrap_or(0),
                    at_ms: row.try_get(1)?,
                    action: row.try_get(2)?,
                    format: row.try_get(3)?,
                    events: stored_events.remove(&raw_seq).unwrap_or_default(),
                };
                self.seq =
                    crate::replay::step(&mut self.ledger, &mut self.meter, self.seq, entry)?.0;
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
            let workload = d["workload_id"]
                .as_u64()
                .and_then(|w| i64::try_from(w).ok());
            sqlx::query(
                "INSERT INTO decisions (at_ms, seq, mode, decision, workload) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(at.millis())
            .bind(i64::try_from(self.seq).unwrap_or(i64::MAX))
            .bind(mode)
            .bind(encode("decision", d)?)
            .bind(workload)
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
        Self::decision_rows(rows)
    }

    /// The newest `limit` decisions about `workload`, newest first, as [`Self::decisions`].
    pub async fn decisions_of(
        &self,
        workload: shardex_core::WorkloadId,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, seq, mode, decision FROM decisions WHERE workload = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::try_from(workload.0).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Self::decision_rows(rows)
    }

    /// Decision rows (`at_ms, seq, mode, decision`) as JSON values.
    fn decision_rows(
        rows: Vec<sqlx::sqlite::SqliteRow>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        rows.iter()
            .map(|row| {
                crate::plans::decision_row(
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    &row.try_get::<String, _>(3)?,
                )
            })
            .collect()
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
        let who = tenant.map(|t| db_id(t.0));
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, charge FROM charges
             WHERE to_ms > ? AND to_ms <= ? AND (? IS NULL OR payer = ? OR lender = ?)
             ORDER BY seq, idx",
        )
        .bind(from.millis())
        .bind(to.millis())
        .bind(who)
        .bind(who)
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

    /// The market prices set on `host` from `since` on, newest first, at most `limit`: read
    /// from the log's `market_price_changed` events, so the history survives restarts.
    pub async fn price_history(
        &self,
        host: shardex_core::HostId,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Timestamp, shardex_core::PriceVector)>, StoreError> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
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
        crate::charges::price_points(rows)
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

    /// Takes a snapshot if the log grew since the last one (so the next open is quick), then
    /// closes the pool, checkpointing the WAL.
    pub async fn close(mut self) {
        if !self.read_only
            && self.seq > self.snapshot_seq
            && let Err(e) = self.snapshot().await
        {
            tracing::warn!(error = %e, "could not write a snapshot at close");
        }
        // The writer finishes what it was given and closes its connection first.
        drop(self.log.take());
        self.pool.close().await;
    }

    /// A batch on top of the store's state: actions applied to it are made durable together
    /// by [`SqliteStore::commit_batch`].
    pub fn batch(&self) -> Batch {
        Batch::new(self.ledger.clone(), self.meter.clone(), self.prices.clone())
    }

    /// Writes every action of `batch` in one transaction (one fsync), then switches to the
    /// state it reached; on a failure nothing of it is applied. The batch must be made on
    /// the current state ([`SqliteStore::batch`] with no commit in between). Returns the
    /// events of all its actions, in order.
    pub async fn commit_batch(&mut self, batch: Batch) -> Result<Vec<Event>, StoreError> {
        let f = self.start_commit(batch);
        self.finish_commit(f).await
    }

    /// After a durable commit of `rows` actions: the state they left, published.
    pub(crate) fn switch_to(&mut self, ledger: Ledger, meter: Meter, rows: u64, events: &[Event]) {
        self.seq += rows;
        self.meter = meter;
        let before = std::mem::replace(&mut self.ledger, ledger);
        self.published.send_replace(self.ledger.clone());
        self.committed(&before, events);
        self.snapshot_when_due();
    }

    /// Starts writing `rows` to the log from `first_seq` on; the answer says when they are
    /// durable.
    pub(crate) fn write_log(
        &self,
        first_seq: u64,
        rows: Vec<LogRow>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), StoreError>> {
        match &self.log {
            Some(log) => log.write(first_seq, rows, self.lender_share),
            None => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Err(StoreError::Log("the store is read-only".into())));
                rx
            }
        }
    }

    /// The ledger as of every commit, published: a reader clones it and never waits for a
    /// write.
    pub fn published(&self) -> tokio::sync::watch::Receiver<Ledger> {
        self.published.subscribe()
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
        let mut batch = self.batch();
        if let Err(e) = batch.apply(action, now, None)? {
            return Ok(Err(e));
        }
        self.commit_batch(batch).await.map(Ok)
    }

    async fn apply_all(
        &mut self,
        actions: Vec<(Action, Timestamp)>,
    ) -> Result<Result<Vec<Event>, (usize, LedgerError)>, StoreError> {
        // Every next state and its charges first, in memory: a refusal writes nothing.
        let mut batch = self.batch();
        for (i, (action, now)) in actions.into_iter().enumerate() {
            if let Err(e) = batch.apply(action, now, None)? {
                return Ok(Err((i, e)));
            }
        }
        self.commit_batch(batch).await.map(Ok)
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
