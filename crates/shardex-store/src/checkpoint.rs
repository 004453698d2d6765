//! WAL checkpoints beside the writers: SQLite's automatic checkpoint runs inside the commit
//! that crosses its threshold, so one commit in a few hundred waited several milliseconds
//! while the log was copied into the database file. Here a task copies it every
//! [`EVERY`] in a PASSIVE checkpoint (it never blocks a writer or a reader), and the
//! connections' own automatic checkpoints are off. A crash in between loses nothing: the WAL
//! is the durable copy until it is checkpointed, and opening replays it. Often (every 50 ms),
//! so that what the log's writer copies itself to start the WAL over (`log_writer.rs`) is
//! little: with 250 ms its own checkpoint took 6-20 ms, with 50 ms 1-4 ms.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;

/// How often the WAL is copied into the database.
pub const EVERY: Duration = Duration::from_millis(50);

/// Checkpoints `pool`'s database every [`EVERY`] until the pool is closed.
pub(crate) fn spawn(pool: SqlitePool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "a WAL checkpoint did not run");
            }
        }
    });
}
