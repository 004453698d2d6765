//! Bounds every action is held to before it is applied, so that no accepted action can make
//! later arithmetic overflow (money in `rust_decimal`, times in milliseconds) and with it a
//! data folder that no longer opens. Documented in the README ("Bounds").
//!
//! * shard counts: at most [`MAX_SHARDS`] per kind in any vector;
//! * prices: at most [`MAX_PRICE`] per shard-hour;
//! * times: at most [`MAX_AHEAD`] after now (a window's end, a lease's end, a start), and a
//!   modification lasts at most that long;
//! * parameters: a reclaim notice in (0, [`MAX_NOTICE`]], an immediate premium in [1, 10], tier
//!   factors in (0, 100], the provider's floor a price.
//!
//! With these, the largest charge is 2^40 shards × 10 years (87,840 h) × 10^6 × 10 × 100 ≈
//! 10^26, under `Decimal::MAX` (about 7.9 × 10^28).

use super::*;

/// The most shards of one kind any action may name (2^40: with 10-millicore shards, 11 billion
/// cores).
pub const MAX_SHARDS: u64 = 1 << 40;
/// The highest price per shard-hour.
pub const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// The furthest ahead of now a time may be: 10 years of 366 days.
pub const MAX_AHEAD: Span = Span::from_millis(10 * 366 * 86_400_000);
/// The longest reclaim notice: a day.
pub const MAX_NOTICE: Span = Span::from_millis(86_400_000);

fn out(what: &str, value: impl fmt::Display, allowed: &str) -> LedgerError {
    LedgerError::OutOfBounds {
        what: what.to_string(),
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

fn shards(what: &str, v: &ShardVector) -> Result<(), LedgerError> {
    for kind in ResourceKind::ALL {
        if v.get(kind) > MAX_SHARDS {
            return Err(out(
                &format!("{what}.{kind}"),
                v.get(kind),
                "at most 2^40 shards",
            ));
        }
    }
    Ok(())
}

fn prices(what: &str, p: &PriceVector) -> Result<(), LedgerError> {
    for kind in ResourceKind::ALL {
        if p.get(kind) > MAX_PRICE {
            return Err(out(
                &format!("{what}.{kind}"),
                p.get(kind),
                "at most 1000000 per shard-hour",
            ));
        }
    }
    Ok(())
}

fn ahead(what: &str, t: Timestamp, now: Timestamp) -> Result<(), LedgerError> {
    if t > now && t.since(now) > MAX_AHEAD {
        return Err(out(what, t, "at most 10 years after now"));
    }
    Ok(())
}

/// The ledger's parameters, as the config file and [`Action::Configure`] both require them.
pub fn params(p: &LedgerParams) -> Result<(), LedgerError> {
    if p.reclaim_notice.is_zero() || p.reclaim_notice > MAX_NOTICE {
        return Err(out(
            "reclaim_notice",
            p.reclaim_notice,
            "longer than zero and at most a day",
        ));
    }
    if !p.provider_floor.is_non_negative() {
        return Err(LedgerError::NegativePrice {
            what: "provider_floor",
        });
    }
    prices("provider_floor", &p.provider_floor)?;
    if p.immediate_premium < Decimal::ONE || p.immediate_premium > Decimal::TEN {
        return Err(out(
            "immediate_premium",
            p.immediate_premium,
            "from 1 to 10",
        ));
    }
    let f = &p.tier_factors;
    for (name, v) in [
        ("tier_factors.best-effort", f.best_effort),
        ("tier_factors.standard", f.standard),
        ("tier_factors.premium", f.premium),
        ("tier_factors.critical", f.critical),
    ] {
        if v <= Decimal::ZERO || v > Decimal::ONE_HUNDRED {
            return Err(out(name, v, "more than 0 and at most 100"));
        }
    }
    Ok(())
}

/// Checks `action` against the bounds at `now`.
pub fn check(action: &Action, now: Timestamp) -> Result<(), LedgerError> {
    match action {
        Action::Configure(a) => params(&a.params),
        Action::RegisterHost(a) => shards("capacity", &a.capacity),
        Action::SetHostCapacity(a) => shards("capacity", &a.capacity),
        Action::CreateReservation(a) => {
            shards("vector", &a.vector)?;
            ahead("window end", a.window.end(), now)
        }
        Action::ModifyReservation(a) | Action::QueueModification(a) => {
            if let Some(s) = a.start {
                ahead("start", s, now)?;
            }
            if a.duration > MAX_AHEAD {
                return Err(out("duration", a.duration, "at most 10 years"));
            }
            for c in &a.changes {
                let too_big = match c.change {
                    crate::domain::Change::Set(n) => n > MAX_SHARDS,
                    crate::domain::Change::Delta(d) => d.unsigned_abs() > MAX_SHARDS,
                    crate::domain::Change::PercentBp(_) => false,
                };
                if too_big {
                    return Err(out(
                        &format!("changes.{}", c.kind),
                        c.change,
                        "at most 2^40 shards",
                    ));
                }
            }
            Ok(())
        }
        Action::Allocate(a) => shards("share", &a.share),
        Action::Offer(a) => {
            shards("vector", &a.vector)?;
            prices("floor", &a.floor)
        }
        Action::RequestLease(a) => {
            shards("vector", &a.vector)?;
            prices("max_price", &a.max_price)?;
            ahead("until", a.until, now)?;
            a.start.map_or(Ok(()), |s| ahead("start", s, now))
        }
        Action::SetLending(a) => {
            if let Some(cap) = &a.lending.cap {
                shards("lending.cap", cap)?;
            }
            prices("floor", &a.floor)
        }
        Action::AutoOffer(a) => shards("need", &a.need),
        Action::SetMarketPrice(a) => prices("prices", &a.prices),
        Action::CreateTenant(_)
        | Action::CancelModification(_)
        | Action::CancelReservation(_)
        | Action::BindWorkload(_)
        | Action::UnbindWorkload(_)
        | Action::CancelRequest(_)
        | Action::Reclaim(_)
        | Action::ReclaimProvider(_)
        | Action::StartPendingModification(_)
        | Action::Release(_)
        | Action::Expire
        | Action::Batch(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::{accrue, quote_action};
    use crate::pricing::PriceTable;

    use crate::testkit::{World, t};

    fn world(capacity: ShardVector) -> Ledger {
        World::new(capacity, &["a"]).ledger
    }

    fn refused(l: &Ledger, a: Action) -> LedgerError {
        let e = l.applied(&a, t(1)).expect_err("accepted");
        assert!(matches!(e, LedgerError::OutOfBounds { .. }), "{e}");
        e
    }

    #[test]
    fn a_market_price_of_62e27_per_shard_hour_is_refused() {
        let l = world(ShardVector::new(100, 100, 0, 0));
        let huge: Decimal = "62000000000000000000000000000".parse().unwrap();
        let e = refused(
            &l,
            Action::SetMarketPrice(action::SetMarketPrice {
                host: HostId(1),
                prices: PriceVector::uniform(huge),
            }),
        );
        assert!(e.to_string().contains("prices.cpu"), "{e}");
        let ok = Action::SetMarketPrice(action::SetMarketPrice {
            host: HostId(1),
            prices: PriceVector::uniform(MAX_PRICE),
        });
        l.applied(&ok, t(1)).unwrap();
    }

    #[test]
    fn a_window_ending_at_i64_max_a_lease_until_then_and_u64_max_shards_are_refused() {
        let l = world(ShardVector::new(100, 100, 0, 0));
        refused(
            &l,
            Action::CreateReservation(action::CreateReservation {
                tenant: TenantId(1),
                host: HostId(1),
                vector: ShardVector::new(1, 0, 0, 0),
                window: Window::new(t(1), Timestamp::from_millis(i64::MAX).unwrap()).unwrap(),
                tier: Tier::Standard,
            }),
        );
        refused(
            &l,
            Action::RegisterHost(action::RegisterHost {
                name: "big".into(),
                capacity: ShardVector::new(u64::MAX, 0, 0, 0),
            }),
        );
        refused(
            &l,
            Action::SetHostCapacity(action::SetHostCapacity {
                host: HostId(1),
                capacity: ShardVector::new(1 << 63, 0, 0, 0),
            }),
        );
        refused(
            &l,
            Action::ModifyReservation(action::ModifyReservation {
                tenant: TenantId(1),
                reservation: ReservationId(1),
                changes: vec![crate::domain::KindChange {
                    kind: ResourceKind::Cpu,
                    change: crate::domain::Change::Set(u64::MAX),
                }],
                start: None,
                duration: Span::from_millis(u64::MAX),
            }),
        );
    }

    #[test]
    fn configure_validates_what_the_config_file_does() {
        let l = world(ShardVector::new(100, 100, 0, 0));
        let with = |f: &dyn Fn(&mut LedgerParams)| {
            let mut p = LedgerParams::default();
            f(&mut p);
            Action::Configure(action::Configure { params: p })
        };
        refused(
            &l,
            with(&|p| p.reclaim_notice = Span::from_millis(u64::MAX)),
        );
        refused(&l, with(&|p| p.immediate_premium = Decimal::ZERO));
        refused(&l, with(&|p| p.immediate_premium = Decimal::from(-5)));
        refused(&l, with(&|p| p.tier_factors.premium = Decimal::ZERO));
        refused(
            &l,
            with(&|p| p.provider_floor = PriceVector::uniform(Decimal::MAX)),
        );
        let e = l
            .applied(&with(&|p| p.reclaim_notice = Span::from_millis(0)), t(1))
            .unwrap_err();
        assert!(e.to_string().contains("reclaim_notice"), "{e}");
        l.applied(&with(&|_| {}), t(1)).unwrap();
    }

    #[test]
    fn at_every_bound_at_once_metering_and_quotes_do_not_overflow() {
        let mut l = world(ShardVector::new(
            MAX_SHARDS, MAX_SHARDS, MAX_SHARDS, MAX_SHARDS,
        ));
        let end = t(0).checked_add(MAX_AHEAD).unwrap();
        let create = Action::CreateReservation(action::CreateReservation {
            tenant: TenantId(1),
            host: HostId(1),
            vector: ShardVector::new(MAX_SHARDS, MAX_SHARDS, MAX_SHARDS, MAX_SHARDS),
            window: Window::new(t(1), end).unwrap(),
            tier: Tier::Critical,
        });
        let prices = PriceTable {
            shard_hour: PriceVector::uniform(MAX_PRICE),
            ..PriceTable::default()
        };
        quote_action(&l, &prices, &create, TenantId(1), end).unwrap();
        l.apply(&create, t(1)).unwrap();
        let charges = accrue(&l, &prices, end).unwrap();
        assert!(!charges.is_empty());
    }
}
