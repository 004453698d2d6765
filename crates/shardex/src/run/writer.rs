//! The single writer of the API: each write arrives as a job, the jobs waiting together are
//! applied one after another on one batch (each on the ledger the earlier ones left) and
//! committed in one transaction (group commit: one fsync for all of them), and only then is
//! each answered. Readers use the ledger the store publishes and never wait for a write.

use std::sync::Arc;

use shardex_api::Problem;
use shardex_core::Timestamp;
use shardex_core::ports::LedgerStore;
use shardex_store::Batch;
use tokio::sync::mpsc;

use super::{App, wall_clock};

/// The most jobs committed together: bounds a batch's transaction and its answers' wait.
pub(super) const MAX_BATCH: usize = 1024;

/// Jobs waiting at most; a writer that is this far behind makes new writes wait to enqueue.
pub(super) const QUEUE: usize = 4096;

/// What the writer does with the answer once the batch is committed (or not).
pub(super) type Reply = Box<dyn FnOnce(Result<(), Problem>) + Send>;

/// One write: applied to the batch at the commit's time; returns how to answer it.
pub(super) type Job = Box<dyn FnOnce(&mut Batch, Timestamp) -> Reply + Send>;

/// Serves jobs until every sender is gone.
pub(super) async fn run(app: Arc<App>, mut jobs: mpsc::Receiver<Job>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let mut store = app.store.lock().await;
        let now = match wall_clock(store.ledger().now()) {
            Ok(now) => now,
            Err(e) => {
                // Dropping a job answers its request with a store failure; nothing applied.
                tracing::error!(error = %e, jobs = waiting.len(), "no time to commit at");
                waiting.clear();
                continue;
            }
        };
        let mut batch = store.batch();
        let replies: Vec<Reply> = waiting.drain(..).map(|job| job(&mut batch, now)).collect();
        let applied = batch.len();
        let outcome = store
            .commit_batch(batch)
            .await
            .map(|_| ())
            .map_err(Problem::store);
        drop(store);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, actions = applied, "a batch of writes was not committed; none of it was applied");
        } else if applied > 0 {
            app.changed.notify_one();
        }
        for reply in replies {
            reply(outcome.clone());
        }
    }
}
