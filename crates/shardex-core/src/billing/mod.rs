//! Metering, the double-entry journal, invoices and quotes.
//!
//! * **Metering** integrates what the ledger holds over time, exactly: between two actions the
//!   ledger changes only at known points (reservation and modification windows, lease ends), so
//!   [`accrue`] computes the shard-milliseconds of every reservation and lease from the ledger
//!   as it was at the earlier action up to the later one.
//! * **Charges**: a reservation's shards are charged to its tenant at the price table's price
//!   (its commitment length, its tier, scheduled delivery, volume graduated per reservation and
//!   kind); a lease's shards are charged to the borrower at the lease's agreed price.
//! * **Journal**: every charge is one balanced transaction: the payer is debited the amount; for
//!   a lease lent by a reservation the lender is credited its share and the provider the rest;
//!   otherwise the provider is credited it all. Debits are positive, credits negative; every
//!   transaction and so the whole journal sums to zero.
//! * **Invoices** group a tenant's charges and credits of a period into line items (what, how
//!   many shard-hours, unit price, amount); the total is the sum of the lines.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::{LeaseId, Lender, ReservationId, TenantId, Tier};
use crate::ledger::{Event, Ledger, LedgerError};
use crate::pricing::{Delivery, PriceTable, PricingError, hours, round_amount};
use crate::shard::ResourceKind;
use crate::time::{Span, Timestamp};

mod invoice;
mod journal;
mod meter;
mod metering;
#[cfg(test)]
mod tests;

pub use invoice::*;
pub use journal::*;
pub use meter::*;
pub use metering::*;

/// Errors of metering and billing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BillingError {
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A price could not be computed.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// A transaction whose postings do not sum to zero.
    #[error("transaction {memo:?} is unbalanced by {imbalance}")]
    Unbalanced {
        /// Its memo.
        memo: String,
        /// Σ postings.
        imbalance: Decimal,
    },
    /// An accrual that ends before it starts.
    #[error("cannot meter backwards, from {from} to {to}")]
    Backwards {
        /// Start.
        from: Timestamp,
        /// End.
        to: Timestamp,
    },
    /// A lender share outside 0..=1.
    #[error("the lender's share is {0}; it must be between 0 and 1")]
    BadShare(Decimal),
}

/// The lender's share of what a borrower pays for a lease lent by a reservation; the provider
/// keeps the rest.
pub const DEFAULT_LENDER_SHARE: Decimal = Decimal::from_parts(8, 0, 0, false, 1);
