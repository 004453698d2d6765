//! The single writer of the API: each write arrives as a job, the jobs waiting together are
//! applied one after another on one batch (each on the ledger the earlier ones left) and
//! committed in one transaction (group commit: one fsync for all of them), and only then is
//! each answered. Readers use the ledger the store publishes and never wait for a write.
//!
//! Pipelined: while one batch's transaction is being written, the jobs that arrived meanwhile
//! are applied on the state it leaves; that next batch is written only once the one before is
//! durable, and if the one before fails, the next is answered with the failure and nothing of
//! it is written. The writer holds the store while a batch is in flight, at most
//! [`HOLD`] at a stretch, so that the daemon's other writers (expiry, the control loop,
//! repricing) get their turn under a steady load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardex_api::Problem;
use shardex_store::{Batch, InFlight, SqliteStore};
use tokio::sync::mpsc;

use super::{App, wall_clock};

/// The most jobs committed together: bounds a batch's transaction and its answers' wait.
pub(crate) const MAX_BATCH: usize = 1024;

/// Jobs waiting at most; a writer that is this far behind makes new writes wait to enqueue.
pub(crate) const QUEUE: usize = 4096;

/// The longest the writer keeps the store through back-to-back batches.
pub(super) const HOLD: Duration = Duration::from_millis(20);

/// What the writer does with the answer once the batch is committed (or not).
pub(crate) type Reply = Box<dyn FnOnce(Result<(), Problem>) + Send>;

/// One write: applied to the batch at the commit's time; returns how to answer it.
pub(crate) type Job = Box<dyn FnOnce(&mut Batch, shardex_core::Timestamp) -> Reply + Send>;

/// An API write as a job for a writer: `plan` on the batch's ledger at the batch's time, the
/// action applied to the batch (with `claim`), `describe` on the ledger after it; the answer
/// comes through the receiver once the batch is committed (or with the failure).
pub(crate) fn job<P: Send + 'static, T: Send + 'static>(
    plan: impl FnOnce(
        &shardex_core::Ledger,
        shardex_core::Timestamp,
    ) -> Result<(shardex_api::Planned, P), Problem>
    + Send
    + 'static,
    describe: impl FnOnce(&shardex_core::Ledger, &[shardex_core::Event], P) -> T + Send + 'static,
    claim: Option<shardex_api::idempotency::Claim>,
) -> (Job, tokio::sync::oneshot::Receiver<Result<T, Problem>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(
        move |batch: &mut Batch, now: shardex_core::Timestamp| -> Reply {
            let claim = claim.map(|c| shardex_store::Claim {
                caller: c.caller,
                key: c.key,
                fingerprint: c.fingerprint.to_vec(),
            });
            let done = plan(batch.ledger(), now).and_then(|(planned, p)| {
                // The plan ran on this batch's ledger at this time: what it applied is what
                // applying again would give.
                let applied = match planned.applied {
                    Some(applied) => batch
                        .apply_applied(planned.action, now, applied, claim)
                        .map(Ok),
                    None => batch.apply(planned.action, now, claim),
                };
                match applied {
                    Ok(Ok(events)) => Ok(describe(batch.ledger(), &events, p)),
                    Ok(Err(e)) => Err(Problem::ledger(&e)),
                    Err(e) => Err(Problem::store(e)),
                }
            });
            Box::new(move |committed: Result<(), Problem>| {
                // A request that went away no longer wants its answer.
                let _ = tx.send(committed.and(done));
            })
        },
    );
    (job, rx)
}

/// A dry run: `plan` and the action applied to a copy of `ledger` at `now`, `describe` on the
/// result; nothing is stored.
pub(crate) fn dry_run<P, T>(
    ledger: &shardex_core::Ledger,
    now: shardex_core::Timestamp,
    plan: impl FnOnce(
        &shardex_core::Ledger,
        shardex_core::Timestamp,
    ) -> Result<(shardex_api::Planned, P), Problem>,
    describe: impl FnOnce(&shardex_core::Ledger, &[shardex_core::Event], P) -> T,
) -> Result<T, Problem> {
    let (planned, p) = plan(ledger, now)?;
    let (after, events) = match planned.applied {
        Some(applied) => applied,
        None => ledger
            .applied(&planned.action, now)
            .map_err(|e| Problem::ledger(&e))?,
    };
    Ok(describe(&after, &events, p))
}

/// A batch being written and the answers that wait for it.
struct Writing {
    batch: InFlight,
    replies: Vec<Reply>,
    started: Instant,
}

/// The next batch: open, taking jobs as they arrive, until the one before is durable.
struct Next {
    batch: Batch,
    replies: Vec<Reply>,
}

/// What woke the writer while a batch was being written.
enum Woke {
    Jobs(usize),
    Written,
}

/// Serves jobs until every sender is gone.
pub(super) async fn run(app: Arc<App>, mut jobs: mpsc::Receiver<Job>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let mut store = app.store.lock().await;
        let held = Instant::now();
        let mut writing: Option<Writing> = None;
        let mut next: Option<Next> = None;
        let mut failed = false;
        loop {
            if !waiting.is_empty() {
                let n = next.get_or_insert_with(|| Next {
                    batch: writing
                        .as_ref()
                        .map_or_else(|| store.batch(), |w| w.batch.next_batch()),
                    replies: Vec::new(),
                });
                apply(&mut n.batch, &mut n.replies, &mut waiting);
            }
            // A batch is sealed and written only once the one before it is durable: jobs that
            // arrive meanwhile join it, so that a straggler never costs a transaction alone.
            if writing.is_none() {
                let Some(n) = next.take() else { break };
                writing = Some(Writing {
                    batch: store.start_commit(n.batch),
                    replies: n.replies,
                    started: Instant::now(),
                });
            }
            let Some(w) = writing.as_mut() else { break };
            let room = MAX_BATCH.saturating_sub(next.as_ref().map_or(0, |n| n.replies.len()));
            let woke = tokio::select! {
                n = jobs.recv_many(&mut waiting, room), if room > 0 && held.elapsed() < HOLD => {
                    Woke::Jobs(n)
                }
                () = w.batch.written() => Woke::Written,
            };
            match woke {
                Woke::Jobs(0) => break,
                Woke::Jobs(_) => {}
                Woke::Written => {
                    if let Some(w) = writing.take() {
                        failed = !finish(&app, &mut store, w).await;
                    }
                    if failed {
                        break;
                    }
                    if held.elapsed() >= HOLD && waiting.is_empty() {
                        // Let the daemon's other writers have the store; the open batch is
                        // written first (it was made on this state).
                        break;
                    }
                }
            }
        }
        if let Some(w) = writing.take() {
            failed = !finish(&app, &mut store, w).await;
        }
        if let Some(n) = next.take() {
            if failed {
                let why = Problem::store("an earlier write failed; this one was not applied");
                for reply in n.replies {
                    reply(Err(why.clone()));
                }
            } else {
                let w = Writing {
                    batch: store.start_commit(n.batch),
                    replies: n.replies,
                    started: Instant::now(),
                };
                finish(&app, &mut store, w).await;
            }
        }
        drop(store);
    }
}

/// Applies the waiting jobs on `batch`, at one time; adds how to answer each job.
fn apply(batch: &mut Batch, replies: &mut Vec<Reply>, waiting: &mut Vec<Job>) {
    let now = match wall_clock(batch.ledger().now()) {
        Ok(now) => now,
        Err(e) => {
            // Dropping a job answers its request with a store failure; nothing applied.
            tracing::error!(error = %e, jobs = waiting.len(), "no time to commit at");
            waiting.clear();
            return;
        }
    };
    let started = Instant::now();
    let before = replies.len();
    replies.extend(waiting.drain(..).map(|job| job(batch, now)));
    tracing::debug!(
        jobs = replies.len() - before,
        actions = batch.len(),
        apply_us = started.elapsed().as_micros(),
        "batch applied"
    );
}

/// Waits until `w` is durable and answers its jobs; false when it failed.
async fn finish(app: &App, store: &mut SqliteStore, w: Writing) -> bool {
    let actions = w.batch.len();
    let outcome = store
        .finish_commit(w.batch)
        .await
        .map(|_| ())
        .map_err(Problem::store);
    tracing::debug!(
        actions,
        commit_us = w.started.elapsed().as_micros(),
        "batch committed"
    );
    let ok = outcome.is_ok();
    if let Err(e) = &outcome {
        tracing::error!(error = %e, actions, "a batch of writes was not committed; none of it was applied");
    } else if actions > 0 {
        app.changed.notify_one();
    }
    for reply in w.replies {
        reply(outcome.clone());
    }
    ok
}
