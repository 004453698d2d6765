//! Group commit: actions applied in memory one after another, each on the state the earlier
//! ones left, then written together in one transaction (`log_writer.rs`), so that one fsync
//! makes all of them durable.

use shardex_core::billing::{BillingError, Charge, CommitError, Meter, commit, commit_applied};
use shardex_core::{Action, Event, Ledger, LedgerError, PriceTable, Timestamp};

use crate::StoreError;

/// A claim on an `Idempotency-Key`, stored in the same transaction as the action it made, so
/// that a retry after a crash finds the key taken and applies nothing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whose key (a tenant, or the admin).
    pub caller: String,
    /// The key.
    pub key: String,
    /// The hash of the request that claimed it.
    pub fingerprint: Vec<u8>,
}

/// One applied action with what it caused.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) action: Action,
    pub(crate) at: Timestamp,
    pub(crate) events: Vec<Event>,
    pub(crate) charges: Vec<Charge>,
    pub(crate) claim: Option<Claim>,
}

/// Actions applied in memory on top of the store's state, waiting to be committed together
/// ([`crate::SqliteStore::commit_batch`]). A refused action leaves the batch as it was.
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) ledger: Ledger,
    pub(crate) meter: Meter,
    pub(crate) prices: PriceTable,
    pub(crate) rows: Vec<Row>,
}

impl Batch {
    /// A batch on top of `ledger` and `meter`, metering at `prices`.
    pub(crate) fn new(ledger: Ledger, meter: Meter, prices: PriceTable) -> Self {
        Self {
            ledger,
            meter,
            prices,
            rows: Vec::new(),
        }
    }

    /// The ledger with every action of the batch applied.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// How many actions it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when it holds no action.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Applies `action` at `now` after the batch's earlier actions: the outer error is a
    /// metering failure, the inner one the ledger's refusal; either way the batch is unchanged.
    /// `claim` is stored with the action.
    pub fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
        claim: Option<Claim>,
    ) -> Result<Result<Vec<Event>, LedgerError>, BillingError> {
        let c = match commit(&self.ledger, &self.meter, &self.prices, &action, now) {
            Ok(c) => c,
            Err(CommitError::Refused(e)) => return Ok(Err(e)),
            Err(CommitError::Metering(e)) => return Err(e),
        };
        Ok(Ok(self.push(action, now, claim, c)))
    }

    /// [`Batch::apply`] for an action the caller already applied to [`Batch::ledger`] at
    /// `now` (to price it, say): `applied` is what `ledger().applied(&action, now)` gave.
    /// Applying is deterministic, so this is the same as applying it again, without the cost.
    pub fn apply_applied(
        &mut self,
        action: Action,
        now: Timestamp,
        applied: (Ledger, Vec<Event>),
        claim: Option<Claim>,
    ) -> Result<Vec<Event>, BillingError> {
        let (next, events) = applied;
        let c = commit_applied(&self.ledger, &self.meter, &self.prices, next, events, now)?;
        Ok(self.push(action, now, claim, c))
    }

    fn push(
        &mut self,
        action: Action,
        now: Timestamp,
        claim: Option<Claim>,
        c: shardex_core::billing::Committed,
    ) -> Vec<Event> {
        self.ledger = c.ledger;
        self.meter = c.meter;
        self.rows.push(Row {
            action,
            at: now,
            events: c.events.clone(),
            charges: c.charges,
            claim,
        });
        c.events
    }

    /// Every event of the batch, in order.
    pub fn events(&self) -> Vec<Event> {
        self.rows.iter().flat_map(|r| r.events.clone()).collect()
    }
}

/// `v` as JSON text for a column; `what` names it in the error.
pub(crate) fn encode<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|source| StoreError::Encode { what, source })
}

pub(crate) fn event_kind(e: &Event) -> Result<String, StoreError> {
    let v = serde_json::to_value(e).map_err(|source| StoreError::Encode {
        what: "event",
        source,
    })?;
    Ok(v.get("event")
        .and_then(|k| k.as_str())
        .unwrap_or("unknown")
        .to_string())
}

pub(crate) fn db_seq(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt {
        seq,
        reason: "log too long".into(),
    })
}

pub(crate) fn db_idx(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// An id as SQLite's INTEGER holds it (ids count up from 1 and never reach 2^63).
pub(crate) fn db_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// The `account` column of a posting.
pub(crate) fn account_key(a: shardex_core::billing::Account) -> String {
    match a {
        shardex_core::billing::Account::Provider => "provider".into(),
        shardex_core::billing::Account::Tenant(t) => format!("tenant:{}", t.0),
    }
}
