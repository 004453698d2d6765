//! Metering, journal and invoices, hand-worked.

use super::*;
use crate::action;
use crate::domain::{KindChange, PriceVector};
use crate::ledger::{Action, Event};
use crate::shard::ShardVector;
use crate::testkit::{World, t};
use crate::time::Window;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Host of 1000 cpu; tenant 1 reserves 100 cpu for 2 h, standard.
fn world() -> (Ledger, TenantId, ReservationId) {
    let mut w = World::new(ShardVector::new(1000, 1000, 0, 0), &["a", "b"]);
    let a = w.tenant(0);
    let r = w.reserve(a, ShardVector::new(100, 0, 0, 0), 0, 7200);
    (w.ledger, a, r)
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
