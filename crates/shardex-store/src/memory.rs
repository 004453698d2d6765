//! An in-memory ledger store: same contract as SQLite (the core commits and meters, the store
//! keeps what it computed), nothing on disk.

use shardex_core::billing::{BillingError, Charge, CommitError, Meter, commit};
use shardex_core::ports::LedgerStore;
use shardex_core::{Action, Event, Ledger, LedgerError, PriceTable, TenantId, Timestamp};

/// Keeps the log and the charges in memory; for tests and dry runs.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    ledger: Ledger,
    meter: Meter,
    prices: PriceTable,
    log: Vec<(Timestamp, Action, Vec<Event>)>,
    charges: Vec<Charge>,
}

/// The only way an in-memory store fails: metering (a price that can't be computed).
pub type MemoryError = BillingError;

impl MemoryStore {
    /// An empty store, pricing with the default table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prices charges from now on with `prices`.
    pub fn set_prices(&mut self, prices: PriceTable) {
        self.prices = prices;
    }

    /// Every applied action with its time and events, oldest first.
    pub fn log(&self) -> &[(Timestamp, Action, Vec<Event>)] {
        &self.log
    }
}

impl LedgerStore for MemoryStore {
    type Error = MemoryError;

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
    ) -> Result<Result<Vec<Event>, LedgerError>, MemoryError> {
        let c = match commit(&self.ledger, &self.meter, &self.prices, &action, now) {
            Ok(c) => c,
            Err(CommitError::Refused(e)) => return Ok(Err(e)),
            Err(CommitError::Metering(e)) => return Err(e),
        };
        self.log.push((now, action, c.events.clone()));
        self.charges.extend(c.charges);
        self.ledger = c.ledger;
        self.meter = c.meter;
        Ok(Ok(c.events))
    }

    async fn apply_all(
        &mut self,
        actions: Vec<(Action, Timestamp)>,
    ) -> Result<Result<Vec<Event>, (usize, LedgerError)>, MemoryError> {
        let mut ledger = self.ledger.clone();
        let mut meter = self.meter.clone();
        let mut log = Vec::new();
        let mut charges = Vec::new();
        let mut all = Vec::new();
        for (i, (action, now)) in actions.into_iter().enumerate() {
            let c = match commit(&ledger, &meter, &self.prices, &action, now) {
                Ok(c) => c,
                Err(CommitError::Refused(e)) => return Ok(Err((i, e))),
                Err(CommitError::Metering(e)) => return Err(e),
            };
            all.extend(c.events.iter().cloned());
            log.push((now, action, c.events));
            charges.extend(c.charges);
            ledger = c.ledger;
            meter = c.meter;
        }
        self.log.extend(log);
        self.charges.extend(charges);
        self.ledger = ledger;
        self.meter = meter;
        Ok(Ok(all))
    }

    async fn charges(
        &self,
        tenant: Option<TenantId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Charge>, MemoryError> {
        let pending = self
            .meter
            .pending(&self.ledger, &self.prices, self.ledger.now())?;
        Ok(self
            .charges
            .iter()
            .chain(&pending)
            .filter(|c| c.to > from && c.to <= to)
            .filter(|c| tenant.is_none_or(|t| c.payer == t || c.lender == Some(t)))
            .cloned()
            .collect())
    }
}
