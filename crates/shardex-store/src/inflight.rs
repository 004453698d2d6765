//! A batch on its way to disk: its transaction runs on the store's pool while the caller goes
//! on (e.g. applies the next batch on the state this one leaves), and the store switches to
//! that state only once the transaction has committed ([`SqliteStore::finish_commit`]).
//!
//! So a writer can overlap one batch's fsync with the next batch's ledger work (pipelined
//! group commit) without ever publishing or answering anything that is not durable.

use shardex_core::billing::Meter;
use shardex_core::{Event, Ledger, PriceTable};
use tokio::sync::oneshot;

use crate::StoreError;
use crate::batch::Batch;
use crate::sqlite::SqliteStore;

/// A batch whose transaction is running; see the module's doc. Finish it with
/// [`SqliteStore::finish_commit`]: dropping it does not stop the transaction.
#[must_use = "a batch in flight must be finished, or the store never learns it was written"]
#[derive(Debug)]
pub struct InFlight {
    ledger: Ledger,
    meter: Meter,
    prices: PriceTable,
    events: Vec<Event>,
    rows: u64,
    /// The store's sequence number the batch was made after.
    after_seq: u64,
    write: Option<oneshot::Receiver<Result<(), StoreError>>>,
    written: Option<Result<(), StoreError>>,
}

impl InFlight {
    /// A new batch on the state this one leaves, to apply while it is written.
    pub fn next_batch(&self) -> Batch {
        Batch::new(self.ledger.clone(), self.meter.clone(), self.prices.clone())
    }

    /// Waits until the transaction is over (committed or failed). Safe to cancel: a wait that
    /// is dropped leaves the write as it was.
    pub async fn written(&mut self) {
        if let Some(write) = &mut self.write {
            let r = match write.await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unfinished("the log's writer stopped".into())),
            };
            self.written = Some(r);
            self.write = None;
        }
    }

    /// How many actions it holds.
    pub fn len(&self) -> usize {
        usize::try_from(self.rows).unwrap_or(usize::MAX)
    }

    /// True when it holds no action.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

impl SqliteStore {
    /// Starts writing `batch` (made on the current state: [`SqliteStore::batch`], or
    /// [`InFlight::next_batch`] of the batch finished last) in its own transaction.
    pub fn start_commit(&self, batch: Batch) -> InFlight {
        let Batch {
            ledger,
            meter,
            prices,
            rows,
        } = batch;
        let events: Vec<Event> = rows.iter().flat_map(|r| r.events.clone()).collect();
        let count = rows.len() as u64;
        let first_seq = self.seq() + 1;
        let write = (!rows.is_empty()).then(|| self.write_log(first_seq, rows));
        InFlight {
            ledger,
            meter,
            prices,
            events,
            rows: count,
            after_seq: self.seq(),
            written: write.is_none().then_some(Ok(())),
            write,
        }
    }

    /// Waits for `f`'s transaction; once it committed, switches to the state it leaves and
    /// publishes it. On a failure nothing of it is applied, and a batch made on its state
    /// must not be committed. Returns the events of its actions, in order.
    pub async fn finish_commit(&mut self, mut f: InFlight) -> Result<Vec<Event>, StoreError> {
        f.written().await;
        f.written
            .take()
            .unwrap_or_else(|| Err(StoreError::Unfinished("it was never started".into())))?;
        if f.rows == 0 {
            return Ok(Vec::new());
        }
        if f.after_seq != self.seq() {
            // Another commit came in between: the log has it, the state would not.
            return Err(StoreError::Diverged {
                seq: f.after_seq + 1,
                detail: format!(
                    "a batch made after action {} was committed after action {}",
                    f.after_seq,
                    self.seq()
                ),
            });
        }
        self.switch_to(f.ledger, f.meter, f.rows, &f.events);
        Ok(f.events)
    }
}
