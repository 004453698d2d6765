//! Property tests: random action sequences (reservations, modifications, offers by hand and
//! automatic, immediate and scheduled requests, reclaims, releases, market prices, expiries)
//! keep DESIGN.md invariants 1 (conservation), 2 (allocations), 5 (double-entry money that
//! matches the metering) and 7 (priority), and a refused action changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use proptest::prelude::*;
use rust_decimal::Decimal;
use shardex_core::action;
use shardex_core::billing::{
    Account, Charge, Journal, Meter, Subject, accrue, invoice, period_start, quote_action,
};
use shardex_core::ledger::Event;
use shardex_core::{
    Action, Change, KindChange, Ledger, LedgerError, LedgerParams, Lender, PriceTable, PriceVector,
    ResourceKind, ShardVector, Span, TenantId, Tier, Timestamp, Window,
};

#[derive(Debug, Clone)]
enum Op {
    CreateReservation {
        tenant: u8,
        host: u8,
        vector: [u8; 4],
        start: u8,
        dur: u8,
        tier: u8,
    },
    Modify {
        res: u8,
        kind: u8,
        change: ChangeGen,
        start: u8,
        dur: u8,
    },
    CancelModification {
        m: u8,
    },
    /// A change from now, kept pending when the host has no room.
    Queue {
        res: u8,
        kind: u8,
        change: ChangeGen,
        dur: u8,
    },
    /// Starts a pending modification (refused while there is no room).
    StartPending {
        m: u8,
    },
    /// Withdraws a pending modification.
    Withdraw {
        m: u8,
    },
    CancelReservation {
        res: u8,
    },
    Bind {
        res: u8,
    },
    Unbind {
        w: u8,
    },
    /// Share as a percentage per kind of what the reservation holds now (over 100 to hit errors).
    Allocate {
        w: u8,
        share: [u8; 4],
    },
    /// Offer as a percentage per kind of the reservation's idle shards.
    Offer {
        res: u8,
        vector: [u8; 4],
        floor: u8,
    },
    Request {
        w: u8,
        vector: [u8; 4],
        dur: u8,
        max: u8,
        all_or_nothing: bool,
        /// 0: immediate; otherwise scheduled this many × 10 s ahead.
        delay: u8,
    },
    /// Lending rules; the cap as a percentage per kind of what the reservation holds.
    SetLending {
        res: u8,
        opt_out: bool,
        cap: Option<[u8; 4]>,
        floor: u8,
    },
    /// The engine's automatic offer, with a predicted need per kind.
    AutoOffer {
        res: u8,
        need: [u8; 4],
    },
    /// A host's market price (in tenths).
    SetMarket {
        host: u8,
        price: u8,
    },
    CancelRequest {
        r: u8,
    },
    Reclaim {
        lease: u8,
    },
    Release {
        lease: u8,
    },
    Advance {
        secs: u8,
    },
    AdvanceToEdge {
        i: u8,
    },
    /// Several ops resolved against the same state, applied as one batch.
    Batch(Vec<Op>),
}

#[derive(Debug, Clone)]
enum ChangeGen {
    Set(u8),
    Delta(i8),
    Percent(i16),
}

fn vec4(max: u8) -> impl Strategy<Value = [u8; 4]> {
    prop::array::uniform4(0..=max)
}

/// Mostly one or two kinds, as real requests are.
fn sparse4(max: u8) -> impl Strategy<Value = [u8; 4]> {
    prop::array::uniform4(prop_oneof![2 => Just(0u8), 1 => 1..=max])
}

fn op() -> impl Strategy<Value = (Op, bool, u8)> {
    let one = base_op();
    let op = prop_oneof![
        12 => one.clone(),
        1 => prop::collection::vec(one, 2..5).prop_map(Op::Batch),
    ];
    // (op, act as a foreign tenant, seconds of clock jitter before it)
    (op, prop::bool::weighted(0.1), 0u8..4)
}

fn base_op() -> BoxedStrategy<Op> {
    let change = prop_oneof![
        (0u8..40).prop_map(ChangeGen::Set),
        (-20i8..20).prop_map(ChangeGen::Delta),
        (-100i16..150).prop_map(ChangeGen::Percent),
    ];
    let op = prop_oneof![
        3 => (0u8..3, 0u8..2, vec4(15), 0u8..4, 1u8..60, 0u8..4).prop_map(|(tenant, host, vector, start, dur, tier)| {
            Op::CreateReservation { tenant, host, vector, start, dur, tier }
        }),
        2 => (any::<u8>(), 0u8..4, change.clone(), 0u8..4, 1u8..15).prop_map(|(res, kind, change, start, dur)| {
            Op::Modify { res, kind, change, start, dur }
        }),
        1 => any::<u8>().prop_map(|m| Op::CancelModification { m }),
        2 => (any::<u8>(), 0u8..4, change.clone(), 1u8..15).prop_map(|(res, kind, change, dur)| {
            Op::Queue { res, kind, change, dur }
        }),
        2 => any::<u8>().prop_map(|m| Op::StartPending { m }),
        1 => any::<u8>().prop_map(|m| Op::Withdraw { m }),
        1 => any::<u8>().prop_map(|res| Op::CancelReservation { res }),
        3 => any::<u8>().prop_map(|res| Op::Bind { res }),
        1 => any::<u8>().prop_map(|w| Op::Unbind { w }),
        4 => (any::<u8>(), vec4(120)).prop_map(|(w, share)| Op::Allocate { w, share }),
        4 => (any::<u8>(), vec4(120), 0u8..3).prop_map(|(res, vector, floor)| Op::Offer { res, vector, floor }),
        6 => (any::<u8>(), sparse4(12), 5u8..60, 0u8..4, any::<bool>(), prop_oneof![3 => Just(0u8), 1 => 1u8..5]).prop_map(|(w, vector, dur, max, all_or_nothing, delay)| {
            Op::Request { w, vector, dur, max, all_or_nothing, delay }
        }),
        2 => (any::<u8>(), any::<bool>(), prop::option::of(vec4(120)), 0u8..3).prop_map(|(res, opt_out, cap, floor)| {
            Op::SetLending { res, opt_out: opt_out && floor == 0, cap, floor }
        }),
        3 => (any::<u8>(), vec4(6)).prop_map(|(res, need)| Op::AutoOffer { res, need }),
        1 => (0u8..2, 0u8..30).prop_map(|(host, price)| Op::SetMarket { host, price }),
        1 => any::<u8>().prop_map(|r| Op::CancelRequest { r }),
        2 => any::<u8>().prop_map(|lease| Op::Reclaim { lease }),
        1 => any::<u8>().prop_map(|lease| Op::Release { lease }),
        2 => (0u8..60).prop_map(|secs| Op::Advance { secs }),
        3 => any::<u8>().prop_map(|i| Op::AdvanceToEdge { i }),
    ];
    op.boxed()
}

fn change_of(c: &ChangeGen) -> Change {
    match *c {
        ChangeGen::Set(n) => Change::Set(u64::from(n)),
        ChangeGen::Delta(d) => Change::Delta(i64::from(d)),
        ChangeGen::Percent(p) => Change::PercentBp(i32::from(p) * 100),
    }
}

fn pick<T: Copy>(items: &[T], i: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(i) % items.len()])
}

fn secs(s: u64) -> Span {
    Span::from_secs(s)
}

fn sv(v: [u8; 4]) -> ShardVector {
    ShardVector::from_fn(|k| u64::from(v[k.index()]))
}

struct World {
    ledger: Ledger,
    tenants: Vec<TenantId>,
}

impl World {
    fn new() -> Self {
        let mut ledger = Ledger::new();
        let t0 = Timestamp::from_secs(1_000).unwrap();
        ledger
            .apply(
                &Action::Configure(action::Configure {
                    params: LedgerParams {
                        reclaim_notice: secs(30),
                        provider_floor: PriceVector::uniform(Decimal::ONE),
                        ..LedgerParams::default()
                    },
                }),
                t0,
            )
            .unwrap();
        for (name, cap) in [
            ("h1", ShardVector::new(30, 30, 20, 20)),
            ("h2", ShardVector::new(20, 25, 10, 10)),
        ] {
            ledger
                .apply(
                    &Action::RegisterHost(action::RegisterHost {
                        name: name.into(),
                        capacity: cap,
                    }),
                    t0,
                )
                .unwrap();
        }
        let mut tenants = Vec::new();
        for name in ["a", "b", "c"] {
            ledger
                .apply(
                    &Action::CreateTenant(action::CreateTenant { name: name.into() }),
                    t0,
                )
                .unwrap();
            tenants.push(ledger.tenant_named(name).unwrap().id);
        }
        World { ledger, tenants }
    }

    /// One small host where every tier already has workloads: requests collide constantly.
    fn contention() -> Self {
        let mut w = World::new();
        let t0 = w.ledger.now();
        let h = w.ledger.host_named("h1").unwrap().id;
        let long = Window::starting(t0, secs(1_000_000)).unwrap();
        for (i, tier) in Tier::ALL.into_iter().enumerate() {
            let tenant = w.tenants[i % w.tenants.len()];
            let vector = if i == 1 {
                ShardVector::new(8, 8, 4, 4)
            } else {
                ShardVector::new(0, 1, 0, 0)
            };
            w.ledger
                .apply(
                    &Action::CreateReservation(action::CreateReservation {
                        tenant,
                        host: h,
                        vector,
                        window: long,
                        tier,
                    }),
                    t0,
                )
                .unwrap();
            let r = w.ledger.reservations().last().unwrap().id;
            for j in 0..2 {
                let name = format!("{tier}-{j}");
                w.ledger
                    .apply(
                        &Action::BindWorkload(action::BindWorkload {
                            tenant,
                            reservation: r,
                            name,
                        }),
                        t0,
                    )
                    .unwrap();
            }
        }
        w
    }

    fn other_tenant(&self, t: TenantId) -> TenantId {
        *self.tenants.iter().find(|&&x| x != t).unwrap()
    }

    /// Turns a generated op into an action and a time, given the current state.
    fn action(&self, op: &Op, foreign: bool, jitter: u8) -> Option<(Action, Timestamp)> {
        let l = &self.ledger;
        let now = l.now().checked_add(secs(u64::from(jitter))).unwrap();
        let hosts: Vec<_> = l.hosts().map(|h| h.id).collect();
        let res: Vec<_> = l.reservations().map(|r| (r.id, r.tenant)).collect();
        let mods: Vec<_> = l.modifications().map(|m| m.id).collect();
        let pending: Vec<_> = l
            .pending_modifications()
            .map(|p| (p.id, p.tenant))
            .collect();
        let wls: Vec<_> = l.workloads().map(|w| (w.id, w.tenant)).collect();
        let leases: Vec<_> = l.leases().map(|x| x.id).collect();
        let reqs: Vec<_> = l
            .requests()
            .map(|r| (r.id, l.workload(r.workload).unwrap().tenant))
            .collect();
        let as_tenant = |owner: TenantId| {
            if foreign {
                self.other_tenant(owner)
            } else {
                owner
            }
        };
        let action = match *op {
            Op::Batch(ref ops) => {
                let actions: Vec<Action> = ops
                    .iter()
                    .filter(|o| !matches!(o, Op::Advance { .. } | Op::AdvanceToEdge { .. }))
                    .filter_map(|o| self.action(o, foreign, 0).map(|(a, _)| a))
                    .collect();
                if actions.is_empty() {
                    return None;
                }
                Action::Batch(action::Batch { actions })
            }
            Op::CreateReservation {
                tenant,
                host,
                vector,
                start,
                dur,
                tier,
            } => {
                let start = now.checked_add(secs(u64::from(start) * 10)).unwrap();
                Action::CreateReservation(action::CreateReservation {
                    tenant: self.tenants[usize::from(tenant)],
                    host: hosts[usize::from(host) % hosts.len()],
                    vector: sv(vector),
                    window: Window::starting(start, secs(u64::from(dur) * 10)).unwrap(),
                    tier: Tier::ALL[usize::from(tier)],
                })
            }
            Op::Modify {
                res: r,
                kind,
                ref change,
                start,
                dur,
            } => {
                let (id, owner) = pick(&res, r)?;
                let change = change_of(change);
                Action::ModifyReservation(action::ModifyReservation {
                    tenant: as_tenant(owner),
                    reservation: id,
                    changes: vec![KindChange {
                        kind: ResourceKind::ALL[usize::from(kind)],
                        change,
                    }],
                    start: Some(now.checked_add(secs(u64::from(start) * 10)).unwrap()),
                    duration: secs(u64::from(dur) * 10),
                })
            }
            Op::CancelModification { m } => {
                let id = pick(&mods, m)?;
                let r = l.modifications().find(|x| x.id == id)?.reservation;
                Action::CancelModification(action::CancelModification {
                    tenant: as_tenant(l.reservation(r)?.tenant),
                    modification: id,
                })
            }
            Op::Queue {
                res: r,
                kind,
                ref change,
                dur,
            } => {
                let (id, owner) = pick(&res, r)?;
                let change = change_of(change);
                Action::QueueModification(action::ModifyReservation {
                    tenant: as_tenant(owner),
                    reservation: id,
                    changes: vec![KindChange {
                        kind: ResourceKind::ALL[usize::from(kind)],
                        change,
                    }],
                    start: None,
                    duration: secs(u64::from(dur) * 10),
                })
            }
            Op::StartPending { m } => {
                let (id, _) = pick(&pending, m)?;
                Action::StartPendingModification(action::StartPendingModification {
                    modification: id,
                })
            }
            Op::Withdraw { m } => {
                let (id, owner) = pick(&pending, m)?;
                Action::CancelModification(action::CancelModification {
                    tenant: as_tenant(owner),
                    modification: id,
                })
            }
            Op::CancelReservation { res: r } => {
                let (id, owner) = pick(&res, r)?;
                Action::CancelReservation(action::CancelReservation {
                    tenant: as_tenant(owner),
                    reservation: id,
                })
            }
            Op::Bind { res: r } => {
                let (id, owner) = pick(&res, r)?;
                Action::BindWorkload(action::BindWorkload {
                    tenant: as_tenant(owner),
                    reservation: id,
                    name: format!("w{}", l.workloads().count() + usize::from(r)),
                })
            }
            Op::Unbind { w } => {
                let (id, owner) = pick(&wls, w)?;
                Action::UnbindWorkload(action::UnbindWorkload {
                    tenant: as_tenant(owner),
                    workload: id,
                })
            }
            Op::Allocate { w, share } => {
                let (id, owner) = pick(&wls, w)?;
                let r = l.reservation(l.workload(id)?.reservation)?;
                let held = l.reserved_at(r, now).ok()?;
                let share =
                    ShardVector::from_fn(|k| held.get(k) * u64::from(share[k.index()]) / 100);
                Action::Allocate(action::Allocate {
                    tenant: as_tenant(owner),
                    workload: id,
                    share,
                })
            }
            Op::Offer {
                res: r,
                vector,
                floor,
            } => {
                let (id, owner) = pick(&res, r)?;
                let idle = l.idle(id).ok()?;
                Action::Offer(action::Offer {
                    tenant: as_tenant(owner),
                    reservation: id,
                    vector: ShardVector::from_fn(|k| {
                        idle.get(k) * u64::from(vector[k.index()]) / 100
                    }),
                    floor: PriceVector::uniform(Decimal::from(floor)),
                })
            }
            Op::Request {
                w,
                vector,
                dur,
                max,
                all_or_nothing,
                delay,
            } => {
                let (id, owner) = pick(&wls, w)?;
                let until = now.checked_add(secs(u64::from(dur) * 10)).unwrap();
                let start = (delay > 0)
                    .then(|| now.checked_add(secs(u64::from(delay) * 10)).unwrap())
                    .filter(|&s| s < until);
                Action::RequestLease(action::RequestLease {
                    tenant: as_tenant(owner),
                    workload: id,
                    vector: sv(vector),
                    until,
                    max_price: PriceVector::uniform(Decimal::from(max)),
                    all_or_nothing,
                    start,
                })
            }
            Op::SetLending {
                res: r,
                opt_out,
                cap,
                floor,
            } => {
                let (id, owner) = pick(&res, r)?;
                let held = l.reserved_at(l.reservation(id)?, now).ok()?;
                Action::SetLending(action::SetLending {
                    tenant: as_tenant(owner),
                    reservation: id,
                    lending: shardex_core::Lending {
                        opt_out,
                        cap: cap.map(|c| {
                            ShardVector::from_fn(|k| held.get(k) * u64::from(c[k.index()]) / 100)
                        }),
                    },
                    floor: PriceVector::uniform(Decimal::from(floor)),
                })
            }
            Op::AutoOffer { res: r, need } => {
                let (id, _) = pick(&res, r)?;
                Action::AutoOffer(action::AutoOffer {
                    reservation: id,
                    need: sv(need),
                })
            }
            Op::SetMarket { host, price } => Action::SetMarketPrice(action::SetMarketPrice {
                host: pick(&hosts, host)?,
                prices: PriceVector::uniform(Decimal::new(i64::from(price), 1)),
            }),
            Op::CancelRequest { r } => {
                let (id, owner) = pick(&reqs, r)?;
                Action::CancelRequest(action::CancelRequest {
                    tenant: as_tenant(owner),
                    request: id,
                })
            }
            Op::Reclaim { lease } => {
                let id = pick(&leases, lease)?;
                let lender = l.leases().find(|x| x.id == id)?.lender;
                let owner = match lender {
                    Lender::Reservation(r) => l.reservation(r)?.tenant,
                    Lender::Provider(_) => self.tenants[0],
                };
                Action::Reclaim(action::Reclaim {
                    tenant: as_tenant(owner),
                    lease: id,
                })
            }
            Op::Release { lease } => {
                let id = pick(&leases, lease)?;
                let b = l.leases().find(|x| x.id == id)?.borrower;
                Action::Release(action::Release {
                    tenant: as_tenant(l.workload(b)?.tenant),
                    lease: id,
                })
            }
            Op::Advance { secs: s } => {
                return Some((
                    Action::Expire,
                    l.now().checked_add(secs(u64::from(s))).unwrap(),
                ));
            }
            Op::AdvanceToEdge { i } => {
                // Land exactly on a window edge: where expiry bugs live.
                let mut edges: Vec<Timestamp> = l
                    .reservations()
                    .flat_map(|r| [r.window.start(), r.window.end()])
                    .chain(
                        l.modifications()
                            .flat_map(|m| [m.window.start(), m.window.end()]),
                    )
                    .chain(l.leases().map(|x| x.window.end()))
                    .filter(|&t| t >= l.now())
                    .collect();
                edges.sort();
                return Some((Action::Expire, pick(&edges, i)?));
            }
        };
        Some((action, now))
    }
}

/// Invariant 7 at the moment of matching: no lease went to a lower tier while a higher-tier
/// request that existed then, on the same host, could have used those shards and is still short.
fn lower_tier_took_needed_shards(
    before: &Ledger,
    after: &Ledger,
    events: &[Event],
) -> Option<String> {
    for (i, e) in events.iter().enumerate() {
        let Event::LeaseCreated {
            lease,
            lender,
            vector,
            ..
        } = e
        else {
            continue;
        };
        let Some(l) = after.leases().find(|x| x.id == *lease) else {
            continue;
        };
        for p in after.requests() {
            let existed = before.requests().any(|r| r.id == p.id)
                || events[..i].iter().any(
                    |x| matches!(x, Event::LeaseRequested { request, .. } if *request == p.id),
                );
            if !existed || p.host != l.host || p.tier <= l.tier {
                continue;
            }
            if p.start > l.window.start() {
                // Not yet competing when the lease was made (earlier in this catch-up).
                continue;
            }
            let factor = after.params().price_factor(p.tier, p.delivery);
            // A lease made while the ledger caught up with time, before the action itself
            // (e.g. a new market price), was priced and matched at the market then.
            let market = if l.window.start() < after.now() {
                before.market_price(l.host)
            } else {
                after.market_price(l.host)
            }
            .unwrap_or_default();
            for k in vector.kinds() {
                let floor = match lender {
                    Lender::Reservation(r) => after.reservation(*r).map(|r| r.floor.get(k)),
                    Lender::Provider(_) => Some(after.params().provider_floor.get(k)),
                };
                let price = floor.map(|f| f.max(market.get(k)) * factor);
                if p.remaining().get(k) > 0 && price.is_some_and(|f| f <= p.max_price.get(k)) {
                    return Some(format!(
                        "{lease} ({}) took {k} while {} ({}) waits",
                        l.tier, p.id, p.tier
                    ));
                }
            }
        }
    }
    None
}

fn contention_op() -> impl Strategy<Value = (Op, bool, u8)> {
    let op = prop_oneof![
        6 => (any::<u8>(), sparse4(12), 5u8..60, 0u8..4, any::<bool>(), prop_oneof![3 => Just(0u8), 1 => 1u8..5]).prop_map(|(w, vector, dur, max, all_or_nothing, delay)| {
            Op::Request { w, vector, dur, max, all_or_nothing, delay }
        }),
        2 => (any::<u8>(), any::<bool>(), prop::option::of(vec4(120)), 0u8..3).prop_map(|(res, opt_out, cap, floor)| {
            Op::SetLending { res, opt_out: opt_out && floor == 0, cap, floor }
        }),
        3 => (any::<u8>(), vec4(6)).prop_map(|(res, need)| Op::AutoOffer { res, need }),
        1 => (0u8..2, 0u8..30).prop_map(|(host, price)| Op::SetMarket { host, price }),
        2 => (any::<u8>(), vec4(120)).prop_map(|(w, share)| Op::Allocate { w, share }),
        2 => (any::<u8>(), vec4(120), 0u8..3).prop_map(|(res, vector, floor)| Op::Offer { res, vector, floor }),
        1 => any::<u8>().prop_map(|r| Op::CancelRequest { r }),
        2 => any::<u8>().prop_map(|lease| Op::Reclaim { lease }),
        2 => any::<u8>().prop_map(|lease| Op::Release { lease }),
        2 => (0u8..60).prop_map(|secs| Op::Advance { secs }),
        2 => any::<u8>().prop_map(|i| Op::AdvanceToEdge { i }),
    ];
    (op, prop::bool::weighted(0.05), 0u8..4)
}

/// Σ over reservations of shards held, integrated second by second: an independent check of
/// the metering (every window edge in these tests falls on a whole second).
fn brute_force_reserved_ms(l: &Ledger, to: Timestamp) -> u128 {
    let mut total = 0u128;
    let mut t = l.now();
    while t < to {
        for r in l.reservations() {
            let v = l.reserved_at(r, t).unwrap();
            total += ResourceKind::ALL
                .iter()
                .map(|&k| u128::from(v.get(k)))
                .sum::<u128>()
                * 1000;
        }
        t = t.checked_add(secs(1)).unwrap();
    }
    total
}

/// Actions that name no tenant (or create a fresh object): a "foreign" flag means nothing.
fn system_action(a: &Action) -> bool {
    if let Action::Batch(action::Batch { actions }) = a {
        return actions.iter().all(system_action);
    }
    matches!(
        a,
        Action::Expire
            | Action::CreateReservation(action::CreateReservation { .. })
            | Action::AutoOffer(action::AutoOffer { .. })
            | Action::SetMarketPrice(action::SetMarketPrice { .. })
    )
}

/// Lending rules: an automatic offer is at most idle − predicted need and nothing when opted
/// out; no offer goes over the cap; a scheduled request's leases never start early; a lease's
/// price is never under its lender's floor.
fn check_lending(
    before: &Ledger,
    after: &Ledger,
    action: &Action,
    events: &[Event],
    starts: &mut std::collections::BTreeMap<shardex_core::RequestId, Timestamp>,
) -> Result<(), TestCaseError> {
    if let Action::AutoOffer(action::AutoOffer { reservation, need }) = action
        && let Some(r) = after.reservation(*reservation)
    {
        {
            let mut idle = before.clone();
            idle.apply(&Action::Expire, after.now()).unwrap();
            let most = idle.idle(*reservation).unwrap().excess_over(need);
            prop_assert!(
                r.offered.fits_in(&most),
                "auto offer {} over idle − need {}",
                r.offered,
                most
            );
            if r.lending.opt_out {
                prop_assert!(r.offered.is_zero());
            }
        }
    }
    for r in after.reservations() {
        if let Some(cap) = r.lending.cap {
            let lent = ShardVector::checked_sum(
                after
                    .leases()
                    .filter(|l| l.lender == Lender::Reservation(r.id))
                    .map(|l| &l.vector),
            )
            .unwrap();
            prop_assert!(
                r.offered.fits_in(&cap.excess_over(&lent)),
                "{} offers {} with {} lent under a cap of {}",
                r.id,
                r.offered,
                lent,
                cap
            );
        }
    }
    // Floors and market prices as they stood at each event of this action.
    let mut floors: std::collections::BTreeMap<Lender, PriceVector> = before
        .reservations()
        .map(|r| (Lender::Reservation(r.id), r.floor))
        .collect();
    let mut market: std::collections::BTreeMap<shardex_core::HostId, PriceVector> = before
        .hosts()
        .filter_map(|h| Some((h.id, before.market_price(h.id)?)))
        .collect();
    for e in events {
        match e {
            Event::OfferChanged {
                reservation, floor, ..
            }
            | Event::LendingChanged {
                reservation, floor, ..
            } => {
                floors.insert(Lender::Reservation(*reservation), *floor);
            }
            Event::MarketPriceChanged { host, prices } => {
                market.insert(*host, *prices);
            }
            Event::LeaseRequested {
                request,
                start: Some(s),
                ..
            } => {
                starts.insert(*request, *s);
            }
            Event::LeaseCreated {
                request,
                window,
                lender,
                borrower,
                price,
                vector,
                ..
            } => {
                if let Some(s) = starts.get(request) {
                    prop_assert!(
                        window.start() >= *s,
                        "scheduled for {s}, delivered {window}"
                    );
                }
                // The price is the lender's floor or the market price, whichever is higher,
                // times the tier and delivery factors.
                let w = before
                    .workload(*borrower)
                    .or_else(|| after.workload(*borrower))
                    .unwrap();
                let tier = before
                    .reservation(w.reservation)
                    .or_else(|| after.reservation(w.reservation))
                    .unwrap()
                    .tier;
                let floor = match lender {
                    Lender::Reservation(_) => floors.get(lender).copied().unwrap_or_default(),
                    Lender::Provider(_) => after.params().provider_floor,
                };
                let delivery = if starts.contains_key(request) {
                    shardex_core::Delivery::Scheduled
                } else {
                    shardex_core::Delivery::Immediate
                };
                let factor = after.params().price_factor(tier, delivery);
                let m = market.get(&w.host).copied().unwrap_or_default();
                for k in vector.kinds() {
                    prop_assert_eq!(price.get(k), floor.get(k).max(m.get(k)) * factor);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A quote as first written: everything the tenant pays, metered with and without the action.
fn quote_by_full_accrual(
    ledger: &Ledger,
    prices: &PriceTable,
    action: &Action,
    tenant: TenantId,
    until: Timestamp,
) -> Decimal {
    let now = ledger.now();
    let (after, _) = ledger.applied(action, now).unwrap();
    let cost = |l: &Ledger| -> Decimal {
        accrue(l, prices, until.max(now))
            .unwrap()
            .iter()
            .filter(|c| c.payer == tenant)
            .map(|c| c.amount)
            .sum()
    };
    cost(&after) - cost(ledger)
}

/// Shard-milliseconds per subject and kind, with who pays and who lends.
fn shard_ms_by_subject(
    charges: &[Charge],
) -> std::collections::BTreeMap<(Subject, String, TenantId, Option<TenantId>), u128> {
    let mut out = std::collections::BTreeMap::new();
    for c in charges {
        *out.entry((c.subject, c.kind.to_string(), c.payer, c.lender))
            .or_insert(0) += c.shard_ms;
    }
    out.retain(|_, ms| *ms > 0);
    out
}

fn run(mut world: World, ops: &[(Op, bool, u8)]) -> Result<(), TestCaseError> {
    let mut applied = 0usize;
    let prices = PriceTable::default();
    let share = Decimal::new(8, 1);
    let mut journal = Journal::new();
    let mut charges: Vec<Charge> = Vec::new();
    let mut starts = std::collections::BTreeMap::new();
    // Metering by change, beside metering at every commit: the same shard-milliseconds.
    let mut meter = Meter::new();
    let mut by_change: Vec<Charge> = Vec::new();
    for (op, foreign, jitter) in ops {
        let Some((action, now)) = world.action(op, *foreign, *jitter) else {
            continue;
        };
        let before = world.ledger.clone();
        // A quote meters only what the action touches: the same as metering everything.
        if before.applied(&action, before.now()).is_ok() {
            let mut spans = vec![before.now().checked_add(secs(7200)).unwrap()];
            // Over a modification's own window too, as the API quotes it: where the reservation
            // with and without it splits the span alike, only what differs is priced.
            if let Action::ModifyReservation(m) = &action {
                let start = m.start.unwrap_or(before.now());
                spans.push(start.checked_add(m.duration).unwrap());
            }
            for until in spans {
                for &tenant in &world.tenants {
                    let fast = quote_action(&before, &prices, &action, tenant, until).unwrap();
                    let full = quote_by_full_accrual(&before, &prices, &action, tenant, until);
                    prop_assert_eq!(
                        fast,
                        full,
                        "quote of {:?} for {} until {}",
                        action,
                        tenant,
                        until
                    );
                }
            }
        }
        // What the ledger held up to this action, metered before it changes anything.
        let accrued = accrue(&before, &prices, now).unwrap();
        if now.since(before.now()) <= secs(120) {
            let metered: u128 = accrued
                .iter()
                .filter(|c| matches!(c.subject, Subject::Reservation(_)))
                .map(|c| c.shard_ms)
                .sum();
            prop_assert_eq!(metered, brute_force_reserved_ms(&before, now));
        }
        match world.ledger.apply(&action, now) {
            Ok(events) => {
                applied += 1;
                let (next, due) = meter.charge(&before, &events, &prices, now).unwrap();
                for c in &due {
                    let last = Timestamp::from_millis(c.to.millis() - 1).unwrap();
                    prop_assert!(c.from < c.to, "empty charge {c:?}");
                    prop_assert_eq!(period_start(c.from), period_start(last), "{:?}", c);
                }
                prop_assert_eq!(&meter.advanced(&before, &events, now), &next);
                meter = next;
                by_change.extend(due);
                for c in &accrued {
                    journal.post_charge(c, share).unwrap();
                    prop_assert_eq!(
                        c.amount,
                        shardex_core::pricing::round_amount(c.shard_hours() * c.unit_price)
                    );
                }
                charges.extend(accrued);
                prop_assert_eq!(journal.trial_balance(), Decimal::ZERO);
                let violations = world.ledger.check();
                prop_assert!(
                    violations.is_empty(),
                    "after {action:?} at {now}: {violations:#?}"
                );
                if let Some(why) = lower_tier_took_needed_shards(&before, &world.ledger, &events) {
                    prop_assert!(false, "after {action:?}: {why}");
                }
                check_lending(&before, &world.ledger, &action, &events, &mut starts)?;
                if *foreign && !system_action(&action) {
                    prop_assert!(false, "{action:?} by a foreign tenant was accepted");
                }
            }
            Err(e) => {
                prop_assert_eq!(
                    &world.ledger,
                    &before,
                    "refused {:?} ({}) changed the ledger",
                    action,
                    e
                );
                // In a batch, an earlier action may fail first for its own reasons.
                if *foreign
                    && !system_action(&action)
                    && !matches!(action, Action::Batch(action::Batch { .. }))
                {
                    prop_assert!(
                        // The object may also have ended while time caught up.
                        matches!(
                            e,
                            LedgerError::NotOwner { .. }
                                | LedgerError::NotLender { .. }
                                | LedgerError::UnknownWorkload(_)
                                | LedgerError::UnknownLease(_)
                                | LedgerError::UnknownRequest(_)
                        ),
                        "foreign {action:?} refused for the wrong reason: {e}"
                    );
                }
            }
        }
    }
    let mut pending = meter
        .pending(&world.ledger, &prices, world.ledger.now())
        .unwrap();
    pending.extend(by_change);
    prop_assert_eq!(shard_ms_by_subject(&pending), shard_ms_by_subject(&charges));
    // Drain: run past every window; everything must return and still balance.
    let last = world.ledger.reservations().map(|r| r.window.end()).max();
    let end = last
        .unwrap_or(world.ledger.now())
        .max(world.ledger.now())
        .checked_add(secs(100_000))
        .unwrap();
    world.ledger.apply(&Action::Expire, end).unwrap();
    prop_assert!(world.ledger.check().is_empty());
    prop_assert_eq!(world.ledger.leases().count(), 0);
    for h in world.ledger.hosts() {
        let b = world.ledger.balance(h.id).unwrap();
        prop_assert_eq!(b.reserved, ShardVector::ZERO);
        prop_assert_eq!(b.free, h.capacity);
    }
    let _ = applied;
    // Invoices: each total is the sum of its lines and the tenant's journal balance, and
    // together the payers' lines are every charge exactly once.
    let end = world.ledger.now().checked_add(secs(1)).unwrap();
    let mut charged = Decimal::ZERO;
    for &tenant in &world.tenants {
        let inv = invoice(tenant, Timestamp::EPOCH, end, &charges, share);
        prop_assert_eq!(
            inv.total,
            inv.lines.iter().map(|l| l.amount).sum::<Decimal>()
        );
        charged += inv
            .lines
            .iter()
            .filter(|l| !l.what.starts_with("credit"))
            .map(|l| l.amount)
            .sum::<Decimal>();
        prop_assert_eq!(
            journal.balance(Account::Tenant(tenant)),
            inv.total,
            "journal and invoice of {}",
            tenant
        );
    }
    prop_assert_eq!(charged, charges.iter().map(|c| c.amount).sum::<Decimal>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_action_sequences_keep_the_invariants(ops in prop::collection::vec(op(), 1..80)) {
        run(World::new(), &ops)?;
    }

    #[test]
    fn contended_lease_sequences_keep_the_invariants(ops in prop::collection::vec(contention_op(), 1..80)) {
        run(World::contention(), &ops)?;
    }
}

/// The generator must reach the rules the property is about, or passing proves little.
#[test]
fn generated_sequences_reach_every_rule() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..300 {
        let (mut world, ops) = if i % 2 == 0 {
            (
                World::new(),
                prop::collection::vec(op(), 1..80)
                    .new_tree(&mut runner)
                    .unwrap()
                    .current(),
            )
        } else {
            (
                World::contention(),
                prop::collection::vec(contention_op(), 1..80)
                    .new_tree(&mut runner)
                    .unwrap()
                    .current(),
            )
        };
        for (op, foreign, jitter) in &ops {
            let Some((action, now)) = world.action(op, *foreign, *jitter) else {
                continue;
            };
            if let Ok(events) = world.ledger.apply(&action, now) {
                for e in events {
                    let label = match e {
                        Event::AllocationChanged { reason, .. } => format!("allocation {reason:?}"),
                        Event::LeaseEnded { reason, .. } => format!("lease ended {reason:?}"),
                        Event::LeaseReclaiming { reason, .. } => {
                            format!(
                                "reclaiming {}",
                                if matches!(reason, shardex_core::domain::ReclaimReason::Lender) {
                                    "lender"
                                } else {
                                    "preempted"
                                }
                            )
                        }
                        Event::OfferChanged { reason, .. } => format!("offer {reason:?}"),
                        Event::LeaseRequested { start: Some(_), .. } => {
                            "scheduled request".to_string()
                        }
                        Event::ModificationEnded { cancelled, .. } => {
                            format!("modification ended cancelled={cancelled}")
                        }
                        other => format!("{other:?}")
                            .split([' ', '{'])
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    };
                    *seen.entry(label).or_default() += 1;
                }
            }
        }
    }
    eprintln!("SEEN {seen:?}");
    for needed in [
        "allocation Allocated",
        "allocation ReservationShrank",
        "lease ended Expired",
        "lease ended Reclaimed",
        "lease ended Preempted",
        "lease ended Released",
        "reclaiming preempted",
        "offer ReservationShrank",
        "modification ended cancelled=false",
        "modification ended cancelled=true",
        "LeaseCreated",
        "offer Auto",
        "offer Lending",
        "scheduled request",
        "MarketPriceChanged",
        "LendingChanged",
    ] {
        assert!(
            seen.get(needed).copied().unwrap_or(0) > 0,
            "never reached {needed}: {seen:#?}"
        );
    }
}
