//! The log's writer: one SQLite connection on its own thread that writes each batch's rows
//! (actions, events, charges, postings, idempotency claims) in one transaction with
//! statements prepared once and reused. Everything the log holds goes through it, in the order
//! it is asked, so the log's order stays total; reads and the store's other tables use the
//! sqlx pool beside it (WAL: readers never wait for it, other writers wait their turn).

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, params};
use rust_decimal::Decimal;
use shardex_core::billing::charge_transaction;
use tokio::sync::oneshot;

use crate::StoreError;
use crate::batch::{Row, account_key, db_id, db_idx, db_seq, encode, event_kind};

/// A batch's rows to write from `first_seq` on.
struct Job {
    first_seq: u64,
    rows: Vec<Row>,
    lender_share: Decimal,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The writer thread and the way to it.
#[derive(Debug)]
pub(crate) struct LogWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Log(e.to_string())
}

impl LogWriter {
    /// Opens the writer's connection on `path` (the schema must exist).
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db)?;
        // FULL: a commit is on disk before it returns (see the pool's options).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        // Checkpoints run beside the writer (`checkpoint.rs`), not inside its commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("shardex-log".into())
            .spawn(move || serve(conn, &rx))
            .map_err(|e| StoreError::Log(format!("could not start the log's writer: {e}")))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Writes `rows` from `first_seq` on in one transaction; the answer says when it is
    /// durable.
    pub(crate) fn write(
        &self,
        first_seq: u64,
        rows: Vec<Row>,
        lender_share: Decimal,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            first_seq,
            rows,
            lender_share,
            done,
        };
        if let Some(jobs) = &self.jobs
            && let Err(mpsc::SendError(job)) = jobs.send(job)
        {
            let _ = job
                .done
                .send(Err(StoreError::Log("the log's writer has stopped".into())));
        }
        answer
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // Writes already asked for finish; then the thread ends and closes its connection.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: Connection, jobs: &mpsc::Receiver<Job>) {
    let mut checkpointed = std::time::Instant::now();
    while let Ok(job) = jobs.recv() {
        let started = std::time::Instant::now();
        let r = write(&mut conn, job.first_seq, &job.rows, job.lender_share);
        tracing::debug!(
            actions = job.rows.len(),
            write_us = started.elapsed().as_micros(),
            "log written"
        );
        // The asker may have gone; the write stands either way.
        let _ = job.done.send(r);
        // A checkpoint that found the one beside it running is tried again after the next
        // transaction rather than a second later.
        if checkpointed.elapsed() >= RESET_EVERY && reset_point(&conn) {
            checkpointed = std::time::Instant::now();
        }
    }
}

/// How often the writer finishes a checkpoint itself, between two of its transactions.
const RESET_EVERY: Duration = Duration::from_secs(1);

/// Copies what is left of the WAL into the database between two transactions, so that the
/// next transaction starts the WAL over. The checkpoints beside the writer (`checkpoint.rs`)
/// never get there under a steady load: a commit always lands before they finish, so the WAL
/// grew without end (a gigabyte in 20 s of load) and every page read searched more of its
/// index (throughput fell as it grew). They copy most of it; this copies the rest, when no
/// commit can land in between. A checkpoint that is busy (theirs is running) waits for the next
/// turn; either way nothing is lost: the WAL is the durable copy until it is copied.
/// Returns false when the checkpoint was busy or failed.
fn reset_point(conn: &Connection) -> bool {
    let started = std::time::Instant::now();
    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    });
    match r {
        Ok((busy, frames, copied)) => {
            tracing::debug!(
                busy,
                frames,
                copied,
                us = started.elapsed().as_micros(),
                "writer's checkpoint"
            );
            busy == 0
        }
        Err(e) => {
            tracing::debug!(error = %e, "the writer's checkpoint did not run");
            false
        }
    }
}

fn write(
    conn: &mut Connection,
    first_seq: u64,
    rows: &[Row],
    lender_share: Decimal,
) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(db)?;
    {
        let mut action = tx
            .prepare_cached("INSERT INTO actions (seq, at_ms, action, format) VALUES (?, ?, ?, ?)")
            .map_err(db)?;
        let mut event = tx
            .prepare_cached("INSERT INTO events (seq, idx, kind, event) VALUES (?, ?, ?, ?)")
            .map_err(db)?;
        let mut charge = tx
            .prepare_cached(
                "INSERT INTO charges (seq, idx, from_ms, to_ms, payer, lender, charge, amount) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(db)?;
        let mut posting = tx
            .prepare_cached(
                "INSERT INTO postings (seq, idx, pidx, account, amount) VALUES (?, ?, ?, ?, ?)",
            )
            .map_err(db)?;
        let mut claim = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO idempotency (caller, key, fingerprint, seq, at_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .map_err(db)?;
        for (i, r) in rows.iter().enumerate() {
            let seq = db_seq(first_seq + i as u64)?;
            action
                .execute(params![
                    seq,
                    r.at.millis(),
                    encode("action", &r.action)?,
                    crate::snapshot::LOG_FORMAT
                ])
                .map_err(db)?;
            for (idx, e) in r.events.iter().enumerate() {
                event
                    .execute(params![
                        seq,
                        db_idx(idx),
                        event_kind(e)?,
                        encode("event", e)?
                    ])
                    .map_err(db)?;
            }
            for (idx, c) in r.charges.iter().enumerate() {
                charge
                    .execute(params![
                        seq,
                        db_idx(idx),
                        c.from.millis(),
                        c.to.millis(),
                        db_id(c.payer.0),
                        c.lender.map(|l| db_id(l.0)),
                        encode("charge", c)?,
                        c.amount.to_string()
                    ])
                    .map_err(db)?;
                let t = charge_transaction(c, lender_share)?;
                for (pidx, p) in t.postings.iter().enumerate() {
                    posting
                        .execute(params![
                            seq,
                            db_idx(idx),
                            db_idx(pidx),
                            account_key(p.account),
                            p.amount.to_string()
                        ])
                        .map_err(db)?;
                }
            }
            if let Some(c) = &r.claim {
                claim
                    .execute(params![c.caller, c.key, c.fingerprint, seq, r.at.millis()])
                    .map_err(db)?;
            }
        }
    }
    tx.commit().map_err(db)
}
