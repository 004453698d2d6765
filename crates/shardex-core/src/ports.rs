//! The ports: traits the core owns and adapters implement.

use std::future::Future;

use crate::ledger::{Action, Event, Ledger, LedgerError};
use crate::time::Timestamp;

/// Durable home of the ledger. `apply` returns only once the action and its events are durable
/// (or the ledger refused the action, in which case nothing was written).
pub trait LedgerStore {
    /// Failure of the store itself (I/O, database), as opposed to a refused action.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The ledger as of the last acknowledged action.
    fn ledger(&self) -> &Ledger;

    /// Applies and persists one action: outer error = store failure (nothing applied),
    /// inner error = the ledger refused the action (nothing applied).
    fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
    ) -> impl Future<Output = Result<Result<Vec<Event>, LedgerError>, Self::Error>> + Send;
}
