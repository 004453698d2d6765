//! An in-memory ledger store: same contract as SQLite, nothing on disk.

use std::convert::Infallible;

use shardex_core::ports::LedgerStore;
use shardex_core::{Action, Event, Ledger, LedgerError, Timestamp};

/// Keeps the log in memory; for tests and dry runs.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    ledger: Ledger,
    log: Vec<(Timestamp, Action, Vec<Event>)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every applied action with its time and events, oldest first.
    pub fn log(&self) -> &[(Timestamp, Action, Vec<Event>)] {
        &self.log
    }
}

impl LedgerStore for MemoryStore {
    type Error = Infallible;

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
    ) -> Result<Result<Vec<Event>, LedgerError>, Infallible> {
        Ok(match self.ledger.applied(&action, now) {
            Ok((next, events)) => {
                self.log.push((now, action, events.clone()));
                self.ledger = next;
                Ok(events)
            }
            Err(e) => Err(e),
        })
    }

    async fn apply_all(
        &mut self,
        actions: Vec<(Action, Timestamp)>,
    ) -> Result<Result<Vec<Event>, (usize, LedgerError)>, Infallible> {
        let mut ledger = self.ledger.clone();
        let mut log = Vec::new();
        let mut all = Vec::new();
        for (i, (action, now)) in actions.into_iter().enumerate() {
            match ledger.applied(&action, now) {
                Ok((next, events)) => {
                    all.extend(events.iter().cloned());
                    log.push((now, action, events));
                    ledger = next;
                }
                Err(e) => return Ok(Err((i, e))),
            }
        }
        self.log.extend(log);
        self.ledger = ledger;
        Ok(Ok(all))
    }
}
