//! The ledger's hand-worked examples and refusals.

use super::*;
use crate::domain::Change;
use crate::testkit::{World, t, win};

fn cpu(n: u64) -> ShardVector {
    ShardVector::of(ResourceKind::Cpu, n)
}

struct Fixture {
    l: Ledger,
    host: HostId,
    a: TenantId,
    b: TenantId,
}

fn fixture(capacity: ShardVector) -> Fixture {
    let w = World::new(capacity, &["a", "b"]);
    Fixture {
        host: w.host,
        a: w.tenant(0),
        b: w.tenant(1),
        l: w.ledger,
    }
}

impl Fixture {
    fn ok(&mut self, a: Action, at: i64) -> Vec<Event> {
        let ev = self
            .l
            .apply(&a, t(at))
            .unwrap_or_else(|e| panic!("{a:?} refused: {e}"));
        assert_eq!(self.l.check(), vec![], "after {a:?}");
        ev
    }
    fn err(&mut self, a: Action, at: i64) -> LedgerError {
        let before = self.l.clone();
        let e = self.l.apply(&a, t(at)).expect_err("accepted");
        assert_eq!(self.l, before, "refused action changed the ledger");
        e
    }
    fn reserve(
        &mut self,
        tenant: TenantId,
        v: ShardVector,
        w: Window,
        tier: Tier,
        at: i64,
    ) -> ReservationId {
        let ev = self.ok(
            Action::CreateReservation(action::CreateReservation {
                tenant,
                host: self.host,
                vector: v,
                window: w,
                tier,
            }),
            at,
        );
        match ev.last() {
            Some(Event::ReservationCreated { reservation, .. }) => *reservation,
            other => panic!("{other:?}"),
        }
    }
    fn bind(&mut self, tenant: TenantId, r: ReservationId, name: &str, at: i64) -> WorkloadId {
        let ev = self.ok(
            Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation: r,
                name: name.into(),
            }),
            at,
        );
        match ev.last() {
            Some(Event::WorkloadBound { workload, .. }) => *workload,
            other => panic!("{other:?}"),
        }
    }
    /// `b` reserves one memory shard, binds a workload to it and leases 6 cpu shards for
    /// 1,000 s, at time 0, after `a`'s reservation `lender` (if any) offered 8: the lease.
    fn borrow_six_cpu(&mut self, lender: Option<ReservationId>) -> Lease {
        let br = self.reserve(
            self.b,
            ShardVector::of(ResourceKind::Memory, 1),
            win(0, 10_000),
            Tier::Standard,
            0,
        );
        let w = self.bind(self.b, br, "w", 0);
        if let Some(reservation) = lender {
            self.ok(
                Action::Offer(action::Offer {
                    tenant: self.a,
                    reservation,
                    vector: cpu(8),
                    floor: PriceVector::default(),
                }),
                0,
            );
        }
        self.ok(
            Action::RequestLease(action::RequestLease {
                tenant: self.b,
                workload: w,
                vector: cpu(6),
                until: t(1000),
                max_price: PriceVector::default(),
                all_or_nothing: true,
                start: None,
            }),
            0,
        );
        self.l.leases().next().unwrap().clone()
    }
    fn share(&self, w: WorkloadId) -> ShardVector {
        self.l.workload(w).unwrap().share
    }
}

#[test]
fn a_workload_name_is_a_path_and_one_thing_is_one_tenant_s_workload() {
    let mut f = fixture(ShardVector::new(100, 100, 0, 0));
    let win = Window::new(t(0), t(3600)).unwrap();
    let ra = f.reserve(f.a, ShardVector::new(10, 10, 0, 0), win, Tier::Standard, 0);
    let rb = f.reserve(f.b, ShardVector::new(10, 10, 0, 0), win, Tier::Standard, 0);
    for bad in ["../etc", "not a path!", "a//b", "a/./b", "a/"] {
        let e = f.err(
            Action::BindWorkload(action::BindWorkload {
                tenant: f.a,
                reservation: ra,
                name: bad.into(),
            }),
            1,
        );
        assert!(
            matches!(e, LedgerError::BadWorkloadName { .. }),
            "{bad}: {e}"
        );
    }
    let w = f.bind(f.a, ra, "system.slice/web.service", 1);
    f.bind(f.a, ra, "/", 1);
    // The same cgroup, written either way, can't become another tenant's workload.
    for same in ["system.slice/web.service", "/system.slice/web.service"] {
        let e = f.err(
            Action::BindWorkload(action::BindWorkload {
                tenant: f.b,
                reservation: rb,
                name: same.into(),
            }),
            2,
        );
        assert!(
            matches!(e, LedgerError::WorkloadTaken { workload, .. } if workload == w),
            "{e}"
        );
    }
    f.bind(f.b, rb, "vm-7@host:1", 2);
}

#[test]
fn shrink_gives_back_unoffered_idle_then_offer_then_largest_allocations() {
    let mut f = fixture(cpu(100));
    let r = f.reserve(f.a, cpu(10), win(0, 1000), Tier::Standard, 0);
    let wa = f.bind(f.a, r, "a", 0);
    let wb = f.bind(f.a, r, "b", 0);
    f.ok(
        Action::Allocate(action::Allocate {
            tenant: f.a,
            workload: wa,
            share: cpu(4),
        }),
        0,
    );
    f.ok(
        Action::Allocate(action::Allocate {
            tenant: f.a,
            workload: wb,
            share: cpu(3),
        }),
        0,
    );
    f.ok(
        Action::Offer(action::Offer {
            tenant: f.a,
            reservation: r,
            vector: cpu(2),
            floor: PriceVector::default(),
        }),
        0,
    );
    // -6 for a minute: 10 → 4. Idle unoffered (1) goes, then the offer (2), then 3 from allocations.
    f.ok(
        Action::ModifyReservation(action::ModifyReservation {
            tenant: f.a,
            reservation: r,
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change: Change::Delta(-6),
            }],
            start: Some(t(10)),
            duration: Span::from_secs(60),
        }),
        0,
    );
    assert_eq!(f.share(wa), cpu(4));
    f.ok(Action::Expire, 10);
    assert_eq!(f.l.reservation(r).unwrap().offered, ShardVector::ZERO);
    assert_eq!(
        (f.share(wa), f.share(wb)),
        (cpu(2), cpu(2)),
        "largest first, then evenly"
    );
    // At the modification's end the reservation grows back; shares stay where they were cut.
    f.ok(Action::Expire, 69);
    assert_eq!(
        f.l.reserved_at(f.l.reservation(r).unwrap(), t(69)).unwrap(),
        cpu(4)
    );
    let ev = f.ok(Action::Expire, 70);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::ModificationEnded {
            cancelled: false,
            ..
        }
    )));
    assert_eq!(f.l.idle(r).unwrap(), cpu(6));
}

#[test]
fn modifications_compose_in_creation_order() {
    let mut f = fixture(cpu(200));
    let r = f.reserve(f.a, cpu(100), win(0, 1000), Tier::Standard, 0);
    for (change, dur) in [(Change::Set(50), 100), (Change::PercentBp(1000), 200)] {
        f.ok(
            Action::ModifyReservation(action::ModifyReservation {
                tenant: f.a,
                reservation: r,
                changes: vec![KindChange {
                    kind: ResourceKind::Cpu,
                    change,
                }],
                start: None,
                duration: Span::from_secs(dur),
            }),
            0,
        );
    }
    let res = f.l.reservation(r).unwrap().clone();
    assert_eq!(f.l.reserved_at(&res, t(0)).unwrap(), cpu(55));
    assert_eq!(f.l.reserved_at(&res, t(100)).unwrap(), cpu(110));
    assert_eq!(f.l.reserved_at(&res, t(200)).unwrap(), cpu(100));
}

#[test]
fn a_reservation_ends_exactly_at_its_window_end() {
    let mut f = fixture(cpu(10));
    let r = f.reserve(f.a, cpu(10), win(0, 60), Tier::Standard, 0);
    let w = f.bind(f.a, r, "w", 0);
    f.ok(
        Action::Allocate(action::Allocate {
            tenant: f.a,
            workload: w,
            share: cpu(10),
        }),
        0,
    );
    f.l.apply(&Action::Expire, Timestamp::from_millis(59_999).unwrap())
        .unwrap();
    assert_eq!(f.share(w), cpu(10));
    let ev = f.ok(Action::Expire, 60);
    assert!(ev.contains(&Event::ReservationEnded {
        reservation: r,
        cancelled: false
    }));
    assert!(
        f.l.workload(w).is_none(),
        "workloads leave with their reservation"
    );
    assert_eq!(f.l.balance(f.host).unwrap().free, cpu(10));
}

#[test]
fn higher_tier_preempts_lower_tier_lease_after_notice() {
    let mut f = fixture(ShardVector::new(10, 10, 0, 0));
    let mem = ShardVector::of(ResourceKind::Memory, 1);
    let lo_r = f.reserve(f.a, mem, win(0, 10_000), Tier::BestEffort, 0);
    let hi_r = f.reserve(f.b, mem, win(0, 10_000), Tier::Critical, 0);
    let lo = f.bind(f.a, lo_r, "lo", 0);
    let hi = f.bind(f.b, hi_r, "hi", 0);
    let any = PriceVector::uniform(Decimal::ONE);
    let req = |tenant, workload, n, all_or_nothing| {
        Action::RequestLease(action::RequestLease {
            tenant,
            workload,
            vector: cpu(n),
            until: t(5_000),
            max_price: any,
            all_or_nothing,
            start: None,
        })
    };
    f.ok(req(f.a, lo, 10, false), 1);
    assert_eq!(f.l.allocation(lo).unwrap(), cpu(10));
    let ev = f.ok(req(f.b, hi, 5, true), 2);
    assert!(ev.iter().any(|e| matches!(e, Event::LeaseReclaiming { at, reason: ReclaimReason::Preempted { .. }, .. } if *at == t(32))));
    // Within the notice the borrower keeps its shards and the request waits.
    f.ok(Action::Expire, 31);
    assert_eq!(f.l.allocation(lo).unwrap(), cpu(10));
    assert_eq!(f.l.allocation(hi).unwrap(), ShardVector::ZERO);
    // A lower tier asking now can't take what the critical request waits for.
    f.ok(req(f.a, lo, 3, false), 31);
    let ev = f.ok(Action::Expire, 32);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::LeaseEnded {
            reason: LeaseEnd::Preempted,
            ..
        }
    )));
    assert_eq!(f.l.allocation(hi).unwrap(), cpu(5));
    // What the critical request didn't need is now open to the lower tier again.
    assert_eq!(f.l.allocation(lo).unwrap(), cpu(3));
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Tenant a lends 8 cpu at a floor of 1; b (standard) has a workload that borrows.
fn market_fixture() -> (Fixture, ReservationId, WorkloadId) {
    let mut f = fixture(ShardVector::new(10, 10, 0, 0));
    let params = LedgerParams {
        provider_floor: PriceVector::uniform(d("5")),
        ..LedgerParams::default()
    };
    f.ok(Action::Configure(action::Configure { params }), 0);
    let lender = f.reserve(f.a, cpu(8), win(0, 10_000), Tier::Standard, 0);
    let br = f.reserve(
        f.b,
        ShardVector::of(ResourceKind::Memory, 1),
        win(0, 10_000),
        Tier::Standard,
        0,
    );
    let w = f.bind(f.b, br, "w", 0);
    f.ok(
        Action::Offer(action::Offer {
            tenant: f.a,
            reservation: lender,
            vector: cpu(8),
            floor: PriceVector::uniform(d("1")),
        }),
        0,
    );
    (f, lender, w)
}

fn request(f: &Fixture, w: WorkloadId, n: u64, max: &str, start: Option<i64>) -> Action {
    Action::RequestLease(action::RequestLease {
        tenant: f.b,
        workload: w,
        vector: cpu(n),
        until: t(1000),
        max_price: PriceVector::uniform(d(max)),
        all_or_nothing: false,
        start: start.map(t),
    })
}

#[test]
fn a_scheduled_request_is_delivered_at_its_start_without_the_immediate_premium() {
    let (mut f, _, w) = market_fixture();
    f.ok(request(&f, w, 4, "10", Some(100)), 0);
    assert_eq!(f.l.leases().count(), 0, "nothing before the start");
    assert_eq!(f.l.next_change(), Some(t(100)));
    let ev = f.ok(Action::Expire, 100);
    let lease = f.l.leases().next().unwrap();
    assert_eq!(lease.window, win(100, 1000));
    // Floor 1 × standard 1 × scheduled 1.
    assert_eq!(lease.price.cpu, d("1"));
    assert!(ev.iter().any(|e| matches!(e, Event::LeaseCreated { .. })));
    // The same request for now pays the premium: 1 × 1.25.
    f.ok(request(&f, w, 2, "10", None), 100);
    let now = f.l.leases().last().unwrap();
    assert_eq!(now.price.cpu, d("1.25"));
}

#[test]
fn the_market_price_lifts_lease_prices_above_low_floors() {
    let (mut f, _, w) = market_fixture();
    f.ok(
        Action::SetMarketPrice(action::SetMarketPrice {
            host: f.host,
            prices: PriceVector::uniform(d("2")),
        }),
        0,
    );
    // max(floor 1, market 2) × 1.25 = 2.5; a maximum of 2.4 waits, 2.5 is served.
    f.ok(request(&f, w, 1, "2.4", None), 0);
    assert_eq!(f.l.leases().count(), 0);
    f.ok(request(&f, w, 1, "2.5", None), 0);
    assert_eq!(f.l.leases().next().unwrap().price.cpu, d("2.5"));
    assert!(matches!(
        f.err(
            Action::SetMarketPrice(action::SetMarketPrice {
                host: f.host,
                prices: PriceVector::uniform(d("-1")),
            }),
            0
        ),
        LedgerError::NegativePrice { .. }
    ));
}

#[test]
fn requests_under_every_floor_or_in_the_past_are_refused() {
    let (mut f, _, w) = market_fixture();
    // The lowest floor is a's 1; immediate standard needs at least 1.25.
    assert!(matches!(
        f.err(request(&f, w, 1, "1.2", None), 0),
        LedgerError::PriceUnderFloor {
            kind: ResourceKind::Cpu,
            ..
        }
    ));
    f.ok(Action::Expire, 50);
    assert!(matches!(
        f.err(request(&f, w, 1, "9", Some(10)), 50),
        LedgerError::StartsInPast { .. }
    ));
    assert!(matches!(
        f.err(request(&f, w, 1, "9", Some(1000)), 50),
        LedgerError::Time(_)
    ));
}

#[test]
fn automatic_offers_keep_the_owners_need_and_obey_opt_out_and_cap() {
    let (mut f, lender, _) = market_fixture();
    let auto = |need| {
        Action::AutoOffer(action::AutoOffer {
            reservation: lender,
            need: cpu(need),
        })
    };
    // 8 idle, 3 predicted: 5 offered.
    f.ok(auto(3), 0);
    assert_eq!(f.l.reservation(lender).unwrap().offered, cpu(5));
    let a = f.a;
    let lending = |opt_out, cap: Option<u64>| {
        Action::SetLending(action::SetLending {
            tenant: a,
            reservation: lender,
            lending: Lending {
                opt_out,
                cap: cap.map(cpu),
            },
            floor: PriceVector::uniform(d("1")),
        })
    };
    f.ok(lending(false, Some(2)), 0);
    assert_eq!(
        f.l.reservation(lender).unwrap().offered,
        cpu(2),
        "cap trims"
    );
    f.ok(auto(0), 0);
    assert_eq!(f.l.reservation(lender).unwrap().offered, cpu(2));
    assert!(matches!(
        f.err(
            Action::Offer(action::Offer {
                tenant: f.a,
                reservation: lender,
                vector: cpu(3),
                floor: PriceVector::default(),
            }),
            0
        ),
        LedgerError::OverLendingCap { cap: 2, .. }
    ));
    f.ok(lending(true, None), 0);
    assert!(f.l.reservation(lender).unwrap().offered.is_zero());
    f.ok(auto(0), 0);
    assert!(
        f.l.reservation(lender).unwrap().offered.is_zero(),
        "opted out"
    );
    // A foreign tenant can't change a's lending.
    let foreign = Action::SetLending(action::SetLending {
        tenant: f.b,
        reservation: lender,
        lending: Lending::default(),
        floor: PriceVector::default(),
    });
    assert!(matches!(f.err(foreign, 0), LedgerError::NotOwner { .. }));
}

#[test]
fn lender_reclaim_returns_shards_to_the_lender_after_notice() {
    let mut f = fixture(ShardVector::new(10, 10, 0, 0));
    let lender = f.reserve(f.a, cpu(8), win(0, 10_000), Tier::Standard, 0);
    let lease = f.borrow_six_cpu(Some(lender));
    assert_eq!(
        lease.lender,
        Lender::Reservation(lender),
        "cheapest offer first: free beats the provider's 0 floor tie by order"
    );
    assert!(matches!(
        f.err(
            Action::Reclaim(action::Reclaim {
                tenant: f.b,
                lease: lease.id
            }),
            1
        ),
        LedgerError::NotLender { .. }
    ));
    f.ok(
        Action::Reclaim(action::Reclaim {
            tenant: f.a,
            lease: lease.id,
        }),
        1,
    );
    assert!(matches!(
        f.err(
            Action::Reclaim(action::Reclaim {
                tenant: f.a,
                lease: lease.id
            }),
            2
        ),
        LedgerError::AlreadyReclaiming(_)
    ));
    f.ok(Action::Expire, 31);
    assert_eq!(f.l.leases().count(), 0);
    let res = f.l.reservation(lender).unwrap();
    assert_eq!(
        res.offered,
        cpu(2),
        "reclaimed shards stay with the lender, unoffered"
    );
    assert_eq!(f.l.idle(lender).unwrap(), cpu(8));
}

#[test]
fn bad_input_is_refused_with_a_named_rule_and_changes_nothing() {
    let mut f = fixture(cpu(10));
    let r = f.reserve(f.a, cpu(6), win(0, 100), Tier::Standard, 0);
    let host = f.host;
    let e = f.err(
        Action::CreateReservation(action::CreateReservation {
            tenant: f.a,
            host,
            vector: cpu(5),
            window: win(0, 100),
            tier: Tier::Standard,
        }),
        0,
    );
    assert!(
        matches!(
            e,
            LedgerError::HostCapacityExceeded {
                kind: ResourceKind::Cpu,
                needed: 11,
                capacity: 10,
                ..
            }
        ),
        "{e}"
    );
    let e = f.err(
        Action::CreateReservation(action::CreateReservation {
            tenant: f.a,
            host,
            vector: ShardVector::ZERO,
            window: win(0, 100),
            tier: Tier::Standard,
        }),
        0,
    );
    assert!(matches!(e, LedgerError::EmptyVector { .. }));
    let e = f.err(
        Action::CreateReservation(action::CreateReservation {
            tenant: f.a,
            host,
            vector: cpu(1),
            window: win(5, 100),
            tier: Tier::Standard,
        }),
        10,
    );
    assert!(matches!(e, LedgerError::StartsInPast { .. }));
    let grow = |tenant, change| {
        Action::ModifyReservation(action::ModifyReservation {
            tenant,
            reservation: r,
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change,
            }],
            start: None,
            duration: Span::from_secs(10),
        })
    };
    let e = f.err(grow(f.a, Change::PercentBp(10_000)), 10);
    assert!(
        matches!(e, LedgerError::HostCapacityExceeded { needed: 12, .. }),
        "{e}"
    );
    let e = f.err(grow(f.b, Change::Delta(1)), 10);
    assert!(matches!(e, LedgerError::NotOwner { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("reservation 1 does not belong to tenant 2")
    );
    let e = f.err(
        Action::CancelReservation(action::CancelReservation {
            tenant: f.a,
            reservation: ReservationId(99),
        }),
        10,
    );
    assert!(matches!(e, LedgerError::UnknownReservation(_)));
    let e = f.err(
        Action::ModifyReservation(action::ModifyReservation {
            tenant: f.a,
            reservation: r,
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change: Change::Delta(1),
            }],
            start: None,
            duration: Span::from_secs(1000),
        }),
        10,
    );
    assert!(matches!(
        e,
        LedgerError::ModificationOutsideReservation { .. }
    ));
    let w = f.bind(f.a, r, "w", 10);
    let e = f.err(Action::Expire, 5);
    assert!(matches!(e, LedgerError::TimeWentBackwards { .. }));
    let e = f.err(
        Action::Allocate(action::Allocate {
            tenant: f.a,
            workload: w,
            share: cpu(7),
        }),
        10,
    );
    assert!(
        matches!(
            e,
            LedgerError::InsufficientIdle {
                idle: 6,
                needed: 7,
                ..
            }
        ),
        "{e}"
    );
    let e = f.err(
        Action::Offer(action::Offer {
            tenant: f.a,
            reservation: r,
            vector: cpu(1),
            floor: PriceVector::uniform(Decimal::NEGATIVE_ONE),
        }),
        10,
    );
    assert!(matches!(e, LedgerError::NegativePrice { .. }));
    let e = f.err(
        Action::BindWorkload(action::BindWorkload {
            tenant: f.a,
            reservation: r,
            name: "w".into(),
        }),
        10,
    );
    assert!(matches!(e, LedgerError::DuplicateName { .. }));
    let e = f.err(
        Action::RegisterHost(action::RegisterHost {
            name: "h".into(),
            capacity: cpu(1),
        }),
        10,
    );
    assert!(matches!(e, LedgerError::DuplicateName { .. }));
    let e = f.err(
        Action::SetHostCapacity(action::SetHostCapacity {
            host,
            capacity: cpu(5),
        }),
        10,
    );
    assert!(matches!(e, LedgerError::HostCapacityExceeded { .. }));
    let e = f.err(
        Action::RequestLease(action::RequestLease {
            tenant: f.a,
            workload: w,
            vector: cpu(11),
            until: t(50),
            max_price: PriceVector::default(),
            all_or_nothing: false,
            start: None,
        }),
        10,
    );
    assert!(matches!(e, LedgerError::RequestExceedsCapacity { .. }));
}

#[test]
fn actions_and_events_round_trip_through_json() {
    let a = Action::ModifyReservation(action::ModifyReservation {
        tenant: TenantId(1),
        reservation: ReservationId(2),
        changes: vec!["cpu +10%".parse().unwrap()],
        start: None,
        duration: Span::from_secs(3600),
    });
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), a);
    assert!(
        serde_json::from_str::<Action>(r#"{"action":"create_tenant","name":"x","extra":1}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<Action>(r#"{"action":"fly"}"#).is_err());
}

#[test]
fn actions_keep_their_json_and_tenant_actions_are_a_type_apart() {
    // The log and the API read and write the same JSON as before actions became one type
    // per intent.
    let text = r#"{"action":"modify_reservation","tenant":1,"reservation":2,"changes":[{"kind":"cpu","change":{"percent_bp":1000}}],"duration":3600000}"#;
    let a: Action = serde_json::from_str(text).unwrap();
    assert!(
        matches!(&a, Action::ModifyReservation(m) if m.start.is_none() && m.reservation == ReservationId(2))
    );
    let back: serde_json::Value = serde_json::to_value(&a).unwrap();
    let mut want: serde_json::Value = serde_json::from_str(text).unwrap();
    want["start"] = serde_json::Value::Null;
    assert_eq!(back, want);
    assert_eq!(
        serde_json::to_string(&Action::Expire).unwrap(),
        r#"{"action":"expire"}"#
    );
    // Unknown fields are refused (serde lets a field-less variant such as `expire` ignore
    // them, as it did before; the API's wire types refuse them).
    let bad = r#"{"action":"create_tenant","name":"a","extra":1}"#;
    assert!(serde_json::from_str::<Action>(bad).is_err(), "{bad}");
    // A tenant may ask for a modification, never for what only the system sends.
    let t: TenantAction = serde_json::from_str(text).unwrap();
    assert_eq!(t.tenant(), TenantId(1));
    assert_eq!(Action::from(t), a);
    for system in [
        r#"{"action":"configure","params":{}}"#,
        r#"{"action":"set_market_price","host":1,"prices":{}}"#,
        r#"{"action":"expire"}"#,
        r#"{"action":"batch","actions":[]}"#,
    ] {
        let e = serde_json::from_str::<TenantAction>(system).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{system}: {e}");
    }
}

#[test]
fn the_provider_takes_back_what_it_lent_after_notice_so_a_reservation_can_start_then() {
    let mut f = fixture(ShardVector::new(10, 10, 0, 0));
    let lease = f.borrow_six_cpu(None);
    assert_eq!(lease.lender, Lender::Provider(f.host));
    let (a, host) = (f.a, f.host);
    let want = move |start: i64| {
        Action::CreateReservation(action::CreateReservation {
            tenant: a,
            host,
            vector: cpu(8),
            window: win(start, 5_000),
            tier: Tier::Standard,
        })
    };
    // 6 of the host's 10 cpu shards are lent by the provider: 8 don't fit now.
    assert!(matches!(
        f.err(want(1), 1),
        LedgerError::HostCapacityExceeded { .. }
    ));
    let ev = f.ok(
        Action::ReclaimProvider(action::ReclaimProvider { lease: lease.id }),
        1,
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::LeaseReclaiming { lease: l, at, .. } if *l == lease.id && *at == t(31)
    )));
    // Once the lease is back (after the 30 s notice) they fit, and not a moment earlier.
    assert!(matches!(
        f.err(want(30), 1),
        LedgerError::HostCapacityExceeded { .. }
    ));
    f.ok(want(31), 1);
    assert!(matches!(
        f.err(
            Action::ReclaimProvider(action::ReclaimProvider { lease: lease.id }),
            2
        ),
        LedgerError::AlreadyReclaiming(_)
    ));
    f.ok(Action::Expire, 31);
    assert_eq!(f.l.leases().count(), 0);
    assert_eq!(f.l.check(), vec![]);
}

#[test]
fn the_provider_cannot_take_back_what_a_tenant_lent() {
    let mut f = fixture(ShardVector::new(10, 10, 0, 0));
    let lender = f.reserve(f.a, cpu(8), win(0, 10_000), Tier::Standard, 0);
    let lease = f.borrow_six_cpu(Some(lender)).id;
    assert!(matches!(
        f.err(
            Action::ReclaimProvider(action::ReclaimProvider { lease }),
            1
        ),
        LedgerError::NotProviderLease(_)
    ));
}
