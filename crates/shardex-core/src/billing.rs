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

/// What was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A reservation's shards.
    Reservation(ReservationId),
    /// A lease's shards.
    Lease(LeaseId),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Reservation(r) => write!(f, "{r}"),
            Subject::Lease(l) => write!(f, "{l}"),
        }
    }
}

/// Metered use of one kind by one subject over an interval, with its charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// Start of the interval.
    pub from: Timestamp,
    /// End of the interval.
    pub to: Timestamp,
    /// Who pays.
    pub payer: TenantId,
    /// Who lent, for a lease lent by a reservation (credited its share).
    pub lender: Option<TenantId>,
    /// What was used.
    pub subject: Subject,
    /// The kind.
    pub kind: ResourceKind,
    /// The tier it was used at.
    pub tier: Tier,
    /// Shard-milliseconds.
    pub shard_ms: u128,
    /// Price per shard-hour.
    pub unit_price: Decimal,
    /// Shard-hours × unit price, rounded to 6 decimals.
    pub amount: Decimal,
}

impl Charge {
    /// Shard-hours, exactly.
    pub fn shard_hours(&self) -> Decimal {
        shard_ms_to_hours(self.shard_ms)
    }
}

/// Shard-milliseconds as shard-hours, exactly.
fn shard_ms_to_hours(ms: u128) -> Decimal {
    Decimal::from_i128_with_scale(i128::try_from(ms).unwrap_or(i128::MAX), 0)
        / Decimal::from(3_600_000)
}

impl Charge {
    /// This charge with its amount computed: shard-hours × unit price, rounded.
    #[must_use]
    pub fn priced(mut self) -> Self {
        self.amount = round_amount(self.shard_hours() * self.unit_price);
        self
    }
}

/// One action committed: the ledger after it, its events, and the charges of what the ledger
/// held from its last time up to the action's, metered before it changes.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The ledger after the action.
    pub ledger: Ledger,
    /// What the action did.
    pub events: Vec<Event>,
    /// What was held since the previous action, priced.
    pub charges: Vec<Charge>,
}

/// Why a commit could not be made: the ledger refused the action, or metering failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitError {
    /// The ledger refused the action (nothing changed).
    #[error(transparent)]
    Refused(LedgerError),
    /// What was held could not be metered.
    #[error(transparent)]
    Metering(BillingError),
}

/// The one commit path of every store: `action` applied at `now` on a copy of `ledger`, and
/// what the ledger held up to `now` metered at `prices`. A store persists what this returns;
/// it computes no money of its own.
pub fn commit(
    ledger: &Ledger,
    prices: &PriceTable,
    action: &crate::Action,
    now: Timestamp,
) -> Result<Committed, CommitError> {
    let (next, events) = ledger.applied(action, now).map_err(CommitError::Refused)?;
    let charges = accrue(ledger, prices, now).map_err(CommitError::Metering)?;
    Ok(Committed {
        ledger: next,
        events,
        charges,
    })
}

/// The charges for everything `ledger` holds from its own time up to `to`, assuming no action
/// in between (the ledger's own expiries are accounted for exactly).
pub fn accrue(
    ledger: &Ledger,
    prices: &PriceTable,
    to: Timestamp,
) -> Result<Vec<Charge>, BillingError> {
    let from = ledger.now();
    if to < from {
        return Err(BillingError::Backwards { from, to });
    }
    let mut out = Vec::new();
    if to == from {
        return Ok(out);
    }
    for r in ledger.reservations() {
        // Change points of this reservation inside [from, to).
        let mut points = vec![from, to, r.window.start(), r.window.end()];
        for m in r
            .modifications
            .iter()
            .filter_map(|m| ledger.modification(*m))
        {
            points.push(m.window.start());
            points.push(m.window.end());
        }
        points.retain(|&t| t >= from && t <= to);
        points.sort();
        points.dedup();
        let commitment = r.window.end().since(r.window.start());
        for seg in points.windows(2) {
            let held = ledger.reserved_at(r, seg[0])?;
            let ms = u128::from(seg[1].since(seg[0]).millis());
            for kind in held.kinds() {
                let shards = held.get(kind);
                let hourly = prices.hourly(kind, shards, commitment, r.tier, Delivery::Scheduled);
                let unit = if shards == 0 {
                    Decimal::ZERO
                } else {
                    hourly / Decimal::from(shards)
                };
                out.push(
                    Charge {
                        from: seg[0],
                        to: seg[1],
                        payer: r.tenant,
                        lender: None,
                        subject: Subject::Reservation(r.id),
                        kind,
                        tier: r.tier,
                        shard_ms: u128::from(shards) * ms,
                        unit_price: unit,
                        amount: Decimal::ZERO,
                    }
                    .priced(),
                );
            }
        }
    }
    for l in ledger.leases() {
        let a = l.window.start().max(from);
        let b = l.window.end().min(to);
        if b <= a {
            continue;
        }
        let Some(payer) = ledger.workload(l.borrower).map(|w| w.tenant) else {
            continue;
        };
        let lender = match l.lender {
            Lender::Reservation(r) => ledger.reservation(r).map(|r| r.tenant),
            Lender::Provider(_) => None,
        };
        let ms = u128::from(b.since(a).millis());
        for kind in l.vector.kinds() {
            out.push(
                Charge {
                    from: a,
                    to: b,
                    payer,
                    lender,
                    subject: Subject::Lease(l.id),
                    kind,
                    tier: l.tier,
                    shard_ms: u128::from(l.vector.get(kind)) * ms,
                    unit_price: l.price.get(kind),
                    amount: Decimal::ZERO,
                }
                .priced(),
            );
        }
    }
    Ok(out)
}

/// An account of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// A tenant: positive balance = it owes.
    Tenant(TenantId),
    /// The provider (the operator of the hosts).
    Provider,
}

/// One side of a transaction: debit when positive, credit when negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// Debit (+) or credit (−).
    pub amount: Decimal,
}

/// A balanced set of postings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// When.
    pub at: Timestamp,
    /// What for.
    pub memo: String,
    /// Its postings; they sum to zero.
    pub postings: Vec<Posting>,
}

/// The double-entry journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    transactions: Vec<Transaction>,
    balances: BTreeMap<Account, Decimal>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a transaction; refused (and nothing recorded) unless its postings sum to zero.
    pub fn post(&mut self, t: Transaction) -> Result<(), BillingError> {
        let imbalance: Decimal = t.postings.iter().map(|p| p.amount).sum();
        if !imbalance.is_zero() {
            return Err(BillingError::Unbalanced {
                memo: t.memo,
                imbalance,
            });
        }
        for p in &t.postings {
            *self.balances.entry(p.account).or_default() += p.amount;
        }
        self.transactions.push(t);
        Ok(())
    }

    /// Posts one charge: debit the payer, credit the lender its share and the provider the rest.
    pub fn post_charge(&mut self, c: &Charge, lender_share: Decimal) -> Result<(), BillingError> {
        self.post(charge_transaction(c, lender_share)?)
    }

    /// Balance of an account.
    pub fn balance(&self, account: Account) -> Decimal {
        self.balances.get(&account).copied().unwrap_or_default()
    }

    /// Σ of every balance; zero in a sound journal.
    pub fn trial_balance(&self) -> Decimal {
        self.balances.values().sum()
    }

    /// Every transaction, oldest first.
    pub fn transactions(&self) -> &[Transaction] {
        &self.transactions
    }
}

/// The transaction of one charge: debit the payer, credit the lender its share (rounded like
/// every amount) and the provider the rest, so it balances exactly.
pub fn charge_transaction(c: &Charge, lender_share: Decimal) -> Result<Transaction, BillingError> {
    if lender_share < Decimal::ZERO || lender_share > Decimal::ONE {
        return Err(BillingError::BadShare(lender_share));
    }
    let mut postings = vec![Posting {
        account: Account::Tenant(c.payer),
        amount: c.amount,
    }];
    let to_lender = match c.lender {
        Some(lender) => {
            let share = round_amount(c.amount * lender_share);
            postings.push(Posting {
                account: Account::Tenant(lender),
                amount: -share,
            });
            share
        }
        None => Decimal::ZERO,
    };
    postings.push(Posting {
        account: Account::Provider,
        amount: -(c.amount - to_lender),
    });
    Ok(Transaction {
        at: c.to,
        memo: format!("{} {} {}", c.subject, c.kind, c.tier),
        postings,
    })
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// What: e.g. "reservation 3 cpu (standard)" or "credit for lending lease 7 memory".
    pub what: String,
    /// Shard-hours.
    pub shard_hours: Decimal,
    /// Price per shard-hour (negative for credits).
    pub unit_price: Decimal,
    /// Amount (negative for credits).
    pub amount: Decimal,
}

/// A tenant's invoice for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The tenant.
    pub tenant: TenantId,
    /// Start of the period.
    pub from: Timestamp,
    /// End of the period.
    pub to: Timestamp,
    /// Lines, charges then credits.
    pub lines: Vec<LineItem>,
    /// Σ line amounts.
    pub total: Decimal,
}

/// Groups charges into one line: (is a credit, subject, kind, tier, unit price).
type LineKey = (bool, Subject, ResourceKind, Tier, Decimal);

/// Builds `tenant`'s invoice for `[from, to)` from charges (those of other tenants and other
/// periods are ignored; a charge belongs to the period its end falls in). Lines group charges of
/// the same subject, kind, tier and unit price.
pub fn invoice(
    tenant: TenantId,
    from: Timestamp,
    to: Timestamp,
    charges: &[Charge],
    lender_share: Decimal,
) -> Invoice {
    let mut groups: BTreeMap<LineKey, (u128, Decimal)> = BTreeMap::new();
    for c in charges.iter().filter(|c| c.to > from && c.to <= to) {
        if c.payer == tenant {
            let g = groups
                .entry((false, c.subject, c.kind, c.tier, c.unit_price))
                .or_default();
            g.0 += c.shard_ms;
            g.1 += c.amount;
        }
        if c.lender == Some(tenant) {
            let g = groups
                .entry((true, c.subject, c.kind, c.tier, c.unit_price))
                .or_default();
            g.0 += c.shard_ms;
            g.1 -= round_amount(c.amount * lender_share);
        }
    }
    let lines: Vec<LineItem> = groups
        .into_iter()
        .map(
            |((credit, subject, kind, tier, unit), (ms, amount))| LineItem {
                what: if credit {
                    format!("credit for lending {subject} {kind} ({tier})")
                } else {
                    format!("{subject} {kind} ({tier})")
                },
                shard_hours: shard_ms_to_hours(ms),
                unit_price: if credit { -(unit * lender_share) } else { unit },
                amount,
            },
        )
        .collect();
    let total = lines.iter().map(|l| l.amount).sum();
    Invoice {
        tenant,
        from,
        to,
        lines,
        total,
    }
}

/// What a prospective lease of `shards` per kind for `span` would cost at the list prices.
pub fn quote_lease(
    prices: &PriceTable,
    shards: crate::shard::ShardVector,
    span: Span,
    tier: Tier,
    delivery: Delivery,
) -> Result<Decimal, BillingError> {
    let mut total = Decimal::ZERO;
    for kind in shards.kinds() {
        total += prices.amount(kind, shards.get(kind), span, tier, delivery)?;
    }
    Ok(total)
}

/// What an action would cost the tenant over `[ledger.now, until)`, compared with not taking
/// it: the ledger is not changed (the action is applied to a copy).
pub fn quote_action(
    ledger: &Ledger,
    prices: &PriceTable,
    action: &crate::ledger::Action,
    tenant: TenantId,
    until: Timestamp,
) -> Result<Decimal, BillingError> {
    let now = ledger.now();
    let (after, _) = ledger.applied(action, now)?;
    let cost = |l: &Ledger| -> Result<Decimal, BillingError> {
        Ok(accrue(l, prices, until.max(now))?
            .iter()
            .filter(|c| c.payer == tenant)
            .map(|c| c.amount)
            .sum())
    };
    Ok(cost(&after)? - cost(ledger)?)
}

/// Hours between two times, exactly (for display).
pub fn hours_between(from: Timestamp, to: Timestamp) -> Decimal {
    hours(to.since(from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action;
    use crate::domain::{KindChange, PriceVector};
    use crate::ledger::{Action, Event};
    use crate::shard::ShardVector;
    use crate::time::Window;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Host of 1000 cpu; tenant 1 reserves 100 cpu for 2 h, standard.
    fn world() -> (Ledger, TenantId, ReservationId) {
        let mut l = Ledger::new();
        l.apply(
            &Action::RegisterHost(action::RegisterHost {
                name: "h".into(),
                capacity: ShardVector::new(1000, 1000, 0, 0),
            }),
            t(0),
        )
        .unwrap();
        l.apply(
            &Action::CreateTenant(action::CreateTenant { name: "a".into() }),
            t(0),
        )
        .unwrap();
        l.apply(
            &Action::CreateTenant(action::CreateTenant { name: "b".into() }),
            t(0),
        )
        .unwrap();
        let ev = l
            .apply(
                &Action::CreateReservation(action::CreateReservation {
                    tenant: TenantId(1),
                    host: crate::domain::HostId(1),
                    vector: ShardVector::new(100, 0, 0, 0),
                    window: Window::new(t(0), t(7200)).unwrap(),
                    tier: Tier::Standard,
                }),
                t(0),
            )
            .unwrap();
        let Some(Event::ReservationCreated { reservation, .. }) = ev.last() else {
            panic!()
        };
        (l, TenantId(1), *reservation)
    }

    #[test]
    fn a_reservation_is_metered_exactly_across_a_modification_and_its_end() {
        let (mut l, a, r) = world();
        // +50% for the second half hour.
        l.apply(
            &Action::ModifyReservation(action::ModifyReservation {
                tenant: a,
                reservation: r,
                changes: vec![KindChange {
                    kind: ResourceKind::Cpu,
                    change: "+50%".parse().unwrap(),
                }],
                start: Some(t(1800)),
                duration: Span::from_secs(1800),
            }),
            t(0),
        )
        .unwrap();
        let prices = PriceTable::default();
        let charges = accrue(&l, &prices, t(10_000)).unwrap();
        let ms: u128 = charges.iter().map(|c| c.shard_ms).sum();
        // 100 × 1.5 h + 150 × 0.5 h = 225 shard-hours; nothing after the 2-hour window.
        assert_eq!(ms, 225 * 3_600_000);
        // List 0.0004, under a day, standard, scheduled: 225 × 0.0004 = 0.09.
        let total: Decimal = charges.iter().map(|c| c.amount).sum();
        assert_eq!(total, d("0.09"));
        let inv = invoice(a, t(0), t(10_000), &charges, d("0.8"));
        assert_eq!(inv.total, d("0.09"));
        assert_eq!(inv.total, inv.lines.iter().map(|x| x.amount).sum());
    }

    #[test]
    fn a_lease_debits_the_borrower_and_credits_lender_and_provider() {
        let (mut l, a, r) = world();
        let b = TenantId(2);
        let br = l
            .apply(
                &Action::CreateReservation(action::CreateReservation {
                    tenant: b,
                    host: crate::domain::HostId(1),
                    vector: ShardVector::new(0, 1, 0, 0),
                    window: Window::new(t(0), t(7200)).unwrap(),
                    tier: Tier::Premium,
                }),
                t(0),
            )
            .unwrap();
        let Some(Event::ReservationCreated {
            reservation: br, ..
        }) = br.last().cloned()
        else {
            panic!()
        };
        l.apply(
            &Action::BindWorkload(action::BindWorkload {
                tenant: b,
                reservation: br,
                name: "w".into(),
            }),
            t(0),
        )
        .unwrap();
        let w = l.workloads().next().unwrap().id;
        let floor = PriceVector {
            cpu: d("0.001"),
            ..PriceVector::default()
        };
        // The provider's unreserved shards cost more, so the reservation's offer is matched.
        let params = crate::ledger::LedgerParams {
            provider_floor: PriceVector::uniform(d("0.01")),
            ..Default::default()
        };
        l.apply(&Action::Configure(action::Configure { params }), t(0))
            .unwrap();
        l.apply(
            &Action::Offer(action::Offer {
                tenant: a,
                reservation: r,
                vector: ShardVector::new(40, 0, 0, 0),
                floor,
            }),
            t(0),
        )
        .unwrap();
        l.apply(
            &Action::RequestLease(action::RequestLease {
                tenant: b,
                workload: w,
                vector: ShardVector::new(40, 0, 0, 0),
                until: t(3600),
                max_price: PriceVector::uniform(d("1")),
                all_or_nothing: true,
                start: None,
            }),
            t(0),
        )
        .unwrap();
        let charges = accrue(&l, &PriceTable::default(), t(3600)).unwrap();
        let lease: Vec<&Charge> = charges
            .iter()
            .filter(|c| matches!(c.subject, Subject::Lease(_)))
            .collect();
        assert_eq!(lease.len(), 1);
        // 40 shards × 1 h × 0.001 (a's floor) × 1.25 (immediate delivery) × 1.5 (b is
        // premium) = 0.075, paid by b; a gets 80 %, the provider 20 %.
        assert_eq!(lease[0].amount, d("0.075"));
        let mut j = Journal::new();
        for c in &charges {
            j.post_charge(c, d("0.8")).unwrap();
        }
        assert_eq!(j.trial_balance(), Decimal::ZERO);
        assert_eq!(
            j.balance(Account::Tenant(b)),
            d("0.075")
                + charges
                    .iter()
                    .filter(|c| c.payer == b && matches!(c.subject, Subject::Reservation(_)))
                    .map(|c| c.amount)
                    .sum::<Decimal>()
        );
        let inv_a = invoice(a, t(0), t(3600), &charges, d("0.8"));
        let credit = inv_a
            .lines
            .iter()
            .find(|x| x.what.starts_with("credit"))
            .unwrap();
        assert_eq!(credit.amount, d("-0.06"));
        assert_eq!(inv_a.total, inv_a.lines.iter().map(|x| x.amount).sum());
    }

    #[test]
    fn an_unbalanced_transaction_is_refused_and_changes_nothing() {
        let mut j = Journal::new();
        let bad = Transaction {
            at: t(0),
            memo: "oops".into(),
            postings: vec![Posting {
                account: Account::Provider,
                amount: d("1"),
            }],
        };
        assert!(matches!(j.post(bad), Err(BillingError::Unbalanced { .. })));
        assert_eq!(j, Journal::new());
        assert!(
            j.post_charge(
                &Charge {
                    from: t(0),
                    to: t(1),
                    payer: TenantId(1),
                    lender: None,
                    subject: Subject::Lease(LeaseId(1)),
                    kind: ResourceKind::Cpu,
                    tier: Tier::Standard,
                    shard_ms: 1,
                    unit_price: d("1"),
                    amount: Decimal::ZERO,
                }
                .priced(),
                d("1.5")
            )
            .is_err()
        );
    }

    #[test]
    fn a_quote_prices_a_modification_without_committing_it() {
        let (l, a, r) = world();
        let before = l.clone();
        let action = Action::ModifyReservation(action::ModifyReservation {
            tenant: a,
            reservation: r,
            changes: vec!["cpu +10%".parse().unwrap()],
            start: None,
            duration: Span::from_secs(3600),
        });
        // +10 shards for an hour at 0.0004 = 0.004.
        assert_eq!(
            quote_action(&l, &PriceTable::default(), &action, a, t(7200)).unwrap(),
            d("0.004")
        );
        assert_eq!(l, before);
        let q = quote_lease(
            &PriceTable::default(),
            ShardVector::new(200, 0, 0, 0),
            Span::from_secs(7200),
            Tier::Premium,
            Delivery::Immediate,
        );
        assert_eq!(q.unwrap(), d("0.30"));
    }
}
