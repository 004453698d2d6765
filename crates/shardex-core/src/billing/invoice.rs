//! Invoices and quotes: a tenant's charges and credits of a period as line items, and what
//! an action would cost before it is made.

use super::*;

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
/// it: the ledger is not changed (the action is applied to a copy). Only the reservations and
/// leases the action's events name can cost differently (everything else is the same with
/// and without it), so only those are metered, both ways.
pub fn quote_action(
    ledger: &Ledger,
    prices: &PriceTable,
    action: &crate::ledger::Action,
    tenant: TenantId,
    until: Timestamp,
) -> Result<Decimal, BillingError> {
    quote_action_at(ledger, prices, action, tenant, ledger.now(), until)
}

/// [`quote_action`] for the action applied at `now` (at or after the ledger's time), as a
/// commit at `now` would apply it: over `[now, until)`.
pub fn quote_action_at(
    ledger: &Ledger,
    prices: &PriceTable,
    action: &crate::ledger::Action,
    tenant: TenantId,
    now: Timestamp,
    until: Timestamp,
) -> Result<Decimal, BillingError> {
    let (after, events) = ledger.applied(action, now)?;
    quote_applied(ledger, &after, &events, prices, tenant, now, until)
}

/// What modification `m`, refused now for lack of room and left pending, will cost `tenant`
/// once it starts, priced as if it started now (over `[now, until)`): on a copy of the
/// ledger whose host has just the room it misses.
pub fn quote_pending(
    ledger: &Ledger,
    prices: &PriceTable,
    m: &crate::action::ModifyReservation,
    now: Timestamp,
    until: Timestamp,
) -> Result<Decimal, BillingError> {
    let r =
        ledger
            .reservation(m.reservation)
            .ok_or(crate::ledger::LedgerError::UnknownReservation(
                m.reservation,
            ))?;
    let host = ledger
        .host(r.host)
        .ok_or(crate::ledger::LedgerError::UnknownHost(r.host))?;
    let holds = ledger.reserved_at(r, ledger.now())?;
    let wants = ledger.reserved_with(r, &m.changes)?;
    let capacity = host
        .capacity
        .checked_add(&wants.excess_over(&holds))
        .map_err(crate::ledger::LedgerError::from)?;
    let grow = crate::ledger::Action::SetHostCapacity(crate::action::SetHostCapacity {
        host: r.host,
        capacity,
    });
    let (roomy, _) = ledger.applied(&grow, now)?;
    let action = crate::ledger::Action::ModifyReservation(crate::action::ModifyReservation {
        start: None,
        ..m.clone()
    });
    quote_action_at(&roomy, prices, &action, m.tenant, now, until)
}

/// What an action that turned `before` into `after` with `events` at `now` costs `tenant`
/// over `[now, until)`, compared with not taking it. Only the reservations and leases the
/// events name can cost differently, so only those are metered, both ways.
pub fn quote_applied(
    before: &Ledger,
    after: &Ledger,
    events: &[Event],
    prices: &PriceTable,
    tenant: TenantId,
    now: Timestamp,
    until: Timestamp,
) -> Result<Decimal, BillingError> {
    let until = until.max(now);
    let cost = |l: &Ledger, s: Subject| -> Result<Decimal, BillingError> {
        let mut out = Vec::new();
        super::metering::subject_charges(l, prices, s, now, until, &mut out)?;
        Ok(out
            .iter()
            .filter(|c| c.payer == tenant)
            .map(|c| c.amount)
            .sum())
    };
    let mut total = Decimal::ZERO;
    for (s, _) in super::meter::touched(before, events) {
        if let Subject::Reservation(id) = s
            && let Some(d) = reservation_difference(before, after, prices, tenant, id, now, until)?
        {
            total += d;
            continue;
        }
        total += cost(after, s)? - cost(before, s)?;
    }
    Ok(total)
}

/// What reservation `id` costs `tenant` over `[now, until)` in `after` minus in `before`, priced
/// only where the two differ: when both split the span at the same times (e.g. a modification
/// over exactly that span), every stretch and kind they hold alike prices to the same charge
/// and cancels. `None` when they split it differently or differ in owner, tier or window:
/// then both are metered whole.
fn reservation_difference(
    before: &Ledger,
    after: &Ledger,
    prices: &PriceTable,
    tenant: TenantId,
    id: crate::domain::ReservationId,
    now: Timestamp,
    until: Timestamp,
) -> Result<Option<Decimal>, BillingError> {
    let (Some(rb), Some(ra)) = (before.reservation(id), after.reservation(id)) else {
        return Ok(None);
    };
    if rb.tenant != ra.tenant || rb.tier != ra.tier || rb.window != ra.window {
        return Ok(None);
    }
    let sb = super::metering::reservation_stretches(before, rb, now, until)?;
    let sa = super::metering::reservation_stretches(after, ra, now, until)?;
    if sb.len() != sa.len() || sb.iter().zip(&sa).any(|(b, a)| (b.0, b.1) != (a.0, a.1)) {
        return Ok(None);
    }
    if rb.tenant != tenant {
        return Ok(Some(Decimal::ZERO));
    }
    let mut pricer = super::metering::ReservationPricer::new(prices, rb);
    let mut amount = |kind, shards, start, end| {
        if shards == 0 {
            Decimal::ZERO
        } else {
            pricer.charge(kind, shards, start, end).amount
        }
    };
    let mut total = Decimal::ZERO;
    for ((start, end, was), (_, _, is)) in sb.into_iter().zip(sa) {
        for kind in ResourceKind::ALL {
            let (x, y) = (was.get(kind), is.get(kind));
            if x != y {
                total += amount(kind, y, start, end) - amount(kind, x, start, end);
            }
        }
    }
    Ok(Some(total))
}

/// Hours between two times, exactly (for display).
pub fn hours_between(from: Timestamp, to: Timestamp) -> Decimal {
    hours(to.since(from))
}
