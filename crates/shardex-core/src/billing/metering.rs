//! Metering: what the ledger holds integrated over time, exactly, priced into charges; and
//! the one commit path every store uses.

use super::*;

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
pub(super) fn shard_ms_to_hours(ms: u128) -> Decimal {
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

/// One action committed: the ledger and the meter after it, its events, and the charges it
/// made due (see [`Meter`]: what the action touched, up to it, and everything at a period
/// boundary), metered from the ledger before it changed.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The ledger after the action.
    pub ledger: Ledger,
    /// The meter after the action.
    pub meter: Meter,
    /// What the action did.
    pub events: Vec<Event>,
    /// What was held and is metered now, priced.
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
/// what it makes due metered at `prices`. A store persists what this returns; it computes no
/// money of its own.
pub fn commit(
    ledger: &Ledger,
    meter: &Meter,
    prices: &PriceTable,
    action: &crate::Action,
    now: Timestamp,
) -> Result<Committed, CommitError> {
    let (next, events) = ledger.applied(action, now).map_err(CommitError::Refused)?;
    commit_applied(ledger, meter, prices, next, events, now).map_err(CommitError::Metering)
}

/// [`commit`] for an action already applied to `ledger` at `now`: `next` and `events` must
/// be what `ledger.applied(action, now)` gave (applying is deterministic, so a caller that
/// applied it to price it need not apply it twice). Meters what it makes due.
pub fn commit_applied(
    ledger: &Ledger,
    meter: &Meter,
    prices: &PriceTable,
    next: Ledger,
    events: Vec<Event>,
    now: Timestamp,
) -> Result<Committed, BillingError> {
    let (meter, charges) = meter.charge(ledger, &events, prices, now)?;
    Ok(Committed {
        ledger: next,
        meter,
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
        reservation_charges(ledger, prices, r, from, to, &mut out)?;
    }
    for l in ledger.leases() {
        lease_charges(ledger, l, from, to, &mut out);
    }
    Ok(out)
}

/// The charges for what reservation `r` held in `ledger` over `[from, to)` (`from` at or after
/// its last change), one per stretch between its change points and kind held.
pub(super) fn reservation_charges(
    ledger: &Ledger,
    prices: &PriceTable,
    r: &crate::domain::Reservation,
    from: Timestamp,
    to: Timestamp,
    out: &mut Vec<Charge>,
) -> Result<(), BillingError> {
    let mut pricer = ReservationPricer::new(prices, r);
    for (start, end, held) in reservation_stretches(ledger, r, from, to)? {
        for kind in held.kinds() {
            out.push(pricer.charge(kind, held.get(kind), start, end));
        }
    }
    Ok(())
}

/// What reservation `r` holds over `[from, to)`, as stretches `[start, end)` of one vector.
pub(super) fn reservation_stretches(
    ledger: &Ledger,
    r: &crate::domain::Reservation,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<(Timestamp, Timestamp, crate::shard::ShardVector)>, BillingError> {
    let mut held = ledger.holdings_until(r, from, to)?;
    held.retain(|(t, _)| *t < to);
    let ends: Vec<Timestamp> = held.iter().skip(1).map(|(t, _)| *t).chain([to]).collect();
    Ok(held
        .into_iter()
        .zip(ends)
        .map(|((start, v), end)| (start, end, v))
        .collect())
}

/// Prices one reservation's stretches: a stretch's unit price depends only on the kind and
/// count (and the reservation's commitment and tier), and the same ones recur.
pub(super) struct ReservationPricer<'a> {
    prices: &'a PriceTable,
    r: &'a crate::domain::Reservation,
    commitment: Span,
    units: Vec<(ResourceKind, u64, Decimal)>,
}

impl<'a> ReservationPricer<'a> {
    /// A pricer for `r`'s stretches at `prices`.
    pub(super) fn new(prices: &'a PriceTable, r: &'a crate::domain::Reservation) -> Self {
        Self {
            prices,
            r,
            commitment: r.window.end().since(r.window.start()),
            units: Vec::new(),
        }
    }

    /// The priced charge for `shards` of `kind` held over `[start, end)`.
    pub(super) fn charge(
        &mut self,
        kind: ResourceKind,
        shards: u64,
        start: Timestamp,
        end: Timestamp,
    ) -> Charge {
        let unit = match self.units.iter().find(|u| u.0 == kind && u.1 == shards) {
            Some(u) => u.2,
            None => {
                let hourly = self.prices.hourly(
                    kind,
                    shards,
                    self.commitment,
                    self.r.tier,
                    Delivery::Scheduled,
                );
                let unit = if shards == 0 {
                    Decimal::ZERO
                } else {
                    hourly / Decimal::from(shards)
                };
                self.units.push((kind, shards, unit));
                unit
            }
        };
        let ms = u128::from(end.since(start).millis());
        Charge {
            from: start,
            to: end,
            payer: self.r.tenant,
            lender: None,
            subject: Subject::Reservation(self.r.id),
            kind,
            tier: self.r.tier,
            shard_ms: u128::from(shards) * ms,
            unit_price: unit,
            amount: Decimal::ZERO,
        }
        .priced()
    }
}

/// The charges for what lease `l` lent over `[from, to)` (nothing once its borrower is gone).
pub(super) fn lease_charges(
    ledger: &Ledger,
    l: &crate::domain::Lease,
    from: Timestamp,
    to: Timestamp,
    out: &mut Vec<Charge>,
) {
    let a = l.window.start().max(from);
    let b = l.window.end().min(to);
    if b <= a {
        return;
    }
    let Some(payer) = ledger.workload(l.borrower).map(|w| w.tenant) else {
        return;
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

/// The charges for what `subject` held in `ledger` over `[from, to)`, in one piece per
/// stretch between its change points.
pub(super) fn subject_charges(
    ledger: &Ledger,
    prices: &PriceTable,
    subject: Subject,
    from: Timestamp,
    to: Timestamp,
    out: &mut Vec<Charge>,
) -> Result<(), BillingError> {
    match subject {
        Subject::Reservation(id) => {
            if let Some(r) = ledger.reservation(id) {
                reservation_charges(ledger, prices, r, from, to, out)?;
            }
        }
        Subject::Lease(id) => {
            if let Some(l) = ledger.lease(id) {
                lease_charges(ledger, l, from, to, out);
            }
        }
    }
    Ok(())
}
