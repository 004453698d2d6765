//! One scenario per shard-request path: market, reclaim, preempt, grow, move, provision,
//! provisioner failure and provisioner timeout; each runs real ticks of the controller over a
//! real ledger and checks every invariant after each tick.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use shardex_core::action;
use shardex_core::control::{Controller, TickReport};
use shardex_core::engine::{Demand, Engine, EngineParams, RequestStatus, Step};
use shardex_core::ports::{
    MigrationStatus, Migrator, NewHost, ProvisionError, ProvisionRequest, Provisioner,
    SimulatedMigrator, StaticProvisioner,
};
use shardex_core::{
    Action, HostId, Ledger, PriceVector, ResourceKind, ShardSizes, ShardVector, Span, TenantId,
    Tier, Timestamp, Window, WorkloadId,
};

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

fn cpu(n: u64) -> ShardVector {
    ShardVector::of(ResourceKind::Cpu, n)
}

// A forecast of `shards` cpu shards (10 millicores each) at every quantile.
use shardex_core::testkit::moves::cpu_demand as demand;

struct World {
    ledger: Ledger,
    names: BTreeMap<&'static str, WorkloadId>,
}

impl World {
    /// Hosts of the given cpu capacities; one tenant per workload, each with its own
    /// reservation (`base` shards, `tier`) on the given host, its share = the reservation.
    fn new(hosts: &[u64], workloads: &[(&'static str, usize, u64, Tier)]) -> Self {
        let mut l = Ledger::new();
        let t0 = t(0);
        for (i, &c) in hosts.iter().enumerate() {
            l.apply(
                &Action::RegisterHost(action::RegisterHost {
                    name: format!("h{}", i + 1),
                    capacity: cpu(c),
                }),
                t0,
            )
            .unwrap();
        }
        let mut names = BTreeMap::new();
        for (i, &(name, host, base, tier)) in workloads.iter().enumerate() {
            l.apply(
                &Action::CreateTenant(action::CreateTenant { name: name.into() }),
                t0,
            )
            .unwrap();
            let tenant = TenantId(i as u64 + 1);
            l.apply(
                &Action::CreateReservation(action::CreateReservation {
                    tenant,
                    host: HostId(host as u64),
                    vector: cpu(base),
                    window: Window::new(t0, t(1_000_000)).unwrap(),
                    tier,
                }),
                t0,
            )
            .unwrap();
            let r = l.reservations().last().unwrap().id;
            l.apply(
                &Action::BindWorkload(action::BindWorkload {
                    tenant,
                    reservation: r,
                    name: name.into(),
                }),
                t0,
            )
            .unwrap();
            let w = l.workload_named(tenant, name).unwrap().id;
            l.apply(
                &Action::Allocate(action::Allocate {
                    tenant,
                    workload: w,
                    share: cpu(base),
                }),
                t0,
            )
            .unwrap();
            names.insert(name, w);
        }
        World { ledger: l, names }
    }

    fn w(&self, name: &str) -> WorkloadId {
        self.names[name]
    }

    fn held(&self, name: &str) -> u64 {
        self.ledger
            .allocation(self.w(name))
            .unwrap()
            .get(ResourceKind::Cpu)
    }

    fn tick<P: Provisioner, M: Migrator>(
        &mut self,
        c: &mut Controller<P, M>,
        wants: &[(&str, u64)],
        at: i64,
    ) -> TickReport {
        let demands: BTreeMap<WorkloadId, Demand> = wants
            .iter()
            .map(|&(n, s)| (self.w(n), demand(s, t(at))))
            .collect();
        let report = c.tick(&mut self.ledger, &demands, &ShardSizes::default(), t(at));
        assert_eq!(self.ledger.check(), vec![], "after the tick at {at}");
        for (old, new) in &report.moved {
            for v in self.names.values_mut() {
                if v == old {
                    *v = *new;
                }
            }
        }
        report
    }
}

fn controller<P: Provisioner>(p: P) -> Controller<P, SimulatedMigrator> {
    let params = EngineParams {
        headroom_pct: 0,
        move_after: Span::from_millis(0),
        ..EngineParams::default()
    };
    Controller::new(
        Engine::new(params),
        p,
        SimulatedMigrator::new(Span::from_secs(60)),
    )
}

fn last_request<P, M>(c: &Controller<P, M>, w: WorkloadId) -> shardex_core::engine::ShardRequest {
    c.engine
        .shard_requests()
        .filter(|r| r.workload == Some(w))
        .last()
        .cloned()
        .expect("a shard request was raised")
}

#[test]
fn the_market_covers_a_rise_before_it_arrives() {
    let mut w = World::new(&[100], &[("a", 1, 10, Tier::Standard)]);
    let mut c = controller(StaticProvisioner::default());
    let r = w.tick(&mut c, &[("a", 30)], 0);
    assert_eq!(w.held("a"), 30, "{r:?}");
    assert_eq!(
        c.engine.shard_requests().count(),
        0,
        "the market had enough"
    );
    // A small dip causes no actuation; a long one releases the lease after the cool-down.
    w.tick(&mut c, &[("a", 28)], 60);
    assert_eq!(w.held("a"), 30);
    w.tick(&mut c, &[("a", 10)], 120);
    assert_eq!(w.held("a"), 30, "scale-down waits");
    w.tick(&mut c, &[("a", 10)], 120 + 900);
    assert_eq!(w.held("a"), 10, "released after 15 min under");
}

#[test]
fn a_lasting_dip_gives_back_the_share_down_to_the_upper_forecast_and_offers_it() {
    let mut w = World::new(&[100], &[("a", 1, 50, Tier::Standard)]);
    let mut c = controller(StaticProvisioner::default());
    let wa = w.w("a");
    w.tick(&mut c, &[("a", 40)], 0);
    assert_eq!(w.held("a"), 50, "a short dip keeps the share");
    // 15 minutes under: the share shrinks to what the forecast says, no further.
    w.tick(&mut c, &[("a", 12)], 60);
    w.tick(&mut c, &[("a", 12)], 60 + 900);
    let a = w.ledger.workload(wa).unwrap();
    assert_eq!(
        a.share.get(ResourceKind::Cpu),
        12,
        "shrunk to the upper forecast"
    );
    // The next tick offers what the reservation now has idle.
    w.tick(&mut c, &[("a", 12)], 60 + 960);
    let a = w.ledger.workload(wa).unwrap();
    let offered = w.ledger.reservation(a.reservation).unwrap().offered;
    assert_eq!(
        offered.get(ResourceKind::Cpu),
        38,
        "the shards given back are offered"
    );
    // The entitlement (the hard limit) is still the whole reservation: nothing is lent yet.
    let e = shardex_core::entitlement::entitlement(&w.ledger, wa).unwrap();
    assert_eq!(e.get(ResourceKind::Cpu), 50);
}

#[test]
fn a_share_stays_where_the_upper_forecast_over_the_notice_needs_it() {
    // The median is low but the p99 within the reclaim notice is high: nothing to give back.
    let mut w = World::new(&[100], &[("a", 1, 50, Tier::Standard)]);
    let mut c = controller(StaticProvisioner::default());
    let wa = w.w("a");
    let spiky = |at: i64| {
        let mut d = demand(5, t(at));
        for q in &mut d.rdv.kinds[0].steps {
            q.p99 = 500;
        }
        d
    };
    for at in [0, 60, 60 + 900, 60 + 960] {
        let demands = BTreeMap::from([(wa, spiky(at))]);
        c.tick(&mut w.ledger, &demands, &ShardSizes::default(), t(at));
        assert_eq!(w.ledger.check(), vec![]);
    }
    assert_eq!(
        w.ledger.workload(wa).unwrap().share.get(ResourceKind::Cpu),
        50
    );
}

#[test]
fn reclaim_brings_back_what_the_workloads_own_reservation_lent() {
    // a reserved 50 but holds 10 and lent 40 to b; the host is full.
    let mut w = World::new(
        &[100],
        &[("a", 1, 50, Tier::Standard), ("b", 1, 50, Tier::Standard)],
    );
    let (ta, wa) = (TenantId(1), w.w("a"));
    w.ledger
        .apply(
            &Action::Allocate(action::Allocate {
                tenant: ta,
                workload: wa,
                share: cpu(10),
            }),
            t(0),
        )
        .unwrap();
    let mut c = controller(StaticProvisioner::default());
    // b wants 90: its own 50 plus a's idle 40 from the market.
    w.tick(&mut c, &[("a", 10), ("b", 90)], 0);
    assert_eq!(w.held("b"), 90);
    // a needs 45 again: nothing on the market, so its reservation reclaims its lease.
    w.tick(&mut c, &[("a", 45), ("b", 90)], 60);
    let req = last_request(&c, wa);
    assert!(
        req.steps.iter().any(|s| matches!(s, Step::Reclaim { .. })),
        "{req:?}"
    );
    // After the 30 s notice the shards are back; the next tick gives them to a.
    w.tick(&mut c, &[("a", 45), ("b", 90)], 120);
    assert_eq!(w.held("a"), 45);
    w.tick(&mut c, &[("a", 45), ("b", 90)], 180);
    assert_eq!(last_request(&c, wa).status, RequestStatus::Fulfilled);
}

#[test]
fn a_higher_tier_preempts_a_lower_tier_lease_with_notice() {
    let mut w = World::new(
        &[100],
        &[
            ("low", 1, 10, Tier::BestEffort),
            ("high", 1, 30, Tier::Premium),
        ],
    );
    let mut c = controller(StaticProvisioner::default());
    // low borrows all 60 free shards.
    w.tick(&mut c, &[("low", 70), ("high", 30)], 0);
    assert_eq!(w.held("low"), 70);
    // high needs 60 more: the ledger preempts low's lease for it.
    w.tick(&mut c, &[("low", 70), ("high", 90)], 60);
    let req = last_request(&c, w.w("high"));
    assert!(
        req.steps.iter().any(|s| matches!(s, Step::Preempt { .. })),
        "{req:?}"
    );
    w.tick(&mut c, &[("low", 70), ("high", 90)], 120);
    assert_eq!(
        w.held("high"),
        90,
        "the preempted shards went to the premium workload"
    );
    assert_eq!(
        w.held("low"),
        10,
        "the best-effort workload keeps its own reservation"
    );
}

#[test]
fn growth_takes_free_capacity_when_the_market_is_too_dear() {
    let mut w = World::new(&[100], &[("a", 1, 10, Tier::Standard)]);
    // The market price is above what the engine pays, but the capacity is free.
    w.ledger
        .apply(
            &Action::SetMarketPrice(action::SetMarketPrice {
                host: HostId(1),
                prices: PriceVector::uniform(Decimal::ONE),
            }),
            t(0),
        )
        .unwrap();
    let mut c = controller(StaticProvisioner::default());
    w.tick(&mut c, &[("a", 40)], 0);
    let req = last_request(&c, w.w("a"));
    assert!(
        req.steps
            .iter()
            .any(|s| matches!(s, Step::Grow { shards } if *shards == cpu(30))),
        "{req:?}"
    );
    assert_eq!(w.held("a"), 40);
    let r = w.ledger.workload(w.w("a")).unwrap().reservation;
    let res = w.ledger.reservation(r).unwrap();
    assert_eq!(w.ledger.reserved_at(res, t(0)).unwrap(), cpu(40));
}

/// Host 1 is full (a and b, 50 each) and a needs 70.
fn full_host(hosts: &[u64]) -> World {
    World::new(
        hosts,
        &[("a", 1, 50, Tier::Standard), ("b", 1, 50, Tier::Standard)],
    )
}

#[test]
fn a_short_host_moves_the_cheapest_workload_to_a_host_with_room() {
    let mut w = full_host(&[100, 100]);
    let mut c = controller(StaticProvisioner::default());
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert_eq!(r.moves_started.len(), 1, "{r:?}");
    assert_eq!(
        r.moves_started[0].mv.workload,
        w.w("b"),
        "b is the smaller move"
    );
    assert_eq!(r.moves_started[0].to, HostId(2));
    // The move takes 60 s; then a gets the freed shards.
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 60);
    assert_eq!(r.moved.len(), 1, "{r:?}");
    assert_eq!(w.ledger.workload(w.w("b")).unwrap().host, HostId(2));
    assert_eq!(w.held("b"), 50);
    w.tick(&mut c, &[("a", 70), ("b", 50)], 120);
    assert_eq!(w.held("a"), 70);
    assert_eq!(c.migrator.moves, 1);
}

#[test]
fn a_move_whose_workload_leaves_is_abandoned_not_failed() {
    let mut w = full_host(&[100, 100]);
    let mut c = controller(StaticProvisioner::default());
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert_eq!(r.moves_started.len(), 1, "{r:?}");
    let b = w.w("b");
    let tenant = w.ledger.workload(b).unwrap().tenant;
    w.ledger
        .apply(
            &Action::UnbindWorkload(action::UnbindWorkload {
                tenant,
                workload: b,
            }),
            t(30),
        )
        .unwrap();
    w.names.remove("b");
    let r = w.tick(&mut c, &[("a", 70)], 60);
    assert_eq!(r.abandoned, vec![b], "{r:?}");
    assert!(r.problems.is_empty(), "{r:?}");
    assert!(r.moved.is_empty(), "{r:?}");
    assert!(c.in_flight.is_empty());
}

/// A migrator whose moves stand as the test says.
struct Scripted(std::rc::Rc<std::cell::RefCell<MigrationStatus>>);

impl Migrator for Scripted {
    fn start(
        &mut self,
        _: &shardex_core::ports::MoveOrder,
        now: Timestamp,
    ) -> Result<Timestamp, shardex_core::ports::MigrationError> {
        Ok(now.checked_add(Span::from_secs(10)).unwrap())
    }
    fn status(&mut self, _: WorkloadId, _: Timestamp) -> MigrationStatus {
        self.0.borrow().clone()
    }
}

fn scripted() -> (
    Controller<StaticProvisioner, Scripted>,
    std::rc::Rc<std::cell::RefCell<MigrationStatus>>,
) {
    let status = std::rc::Rc::new(std::cell::RefCell::new(MigrationStatus::Running));
    let c = controller(StaticProvisioner::default());
    let (engine, provisioner) = (c.engine, c.provisioner);
    (
        Controller::new(engine, provisioner, Scripted(status.clone())),
        status,
    )
}

#[test]
fn a_move_changes_the_ledger_only_once_the_migrator_says_it_completed() {
    let mut w = full_host(&[100, 100]);
    let (mut c, status) = scripted();
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert_eq!(r.moves_started.len(), 1, "{r:?}");
    let b = w.w("b");
    // Past the estimate, still running: b stays on host 1, asked again a second later.
    for at in [10, 11, 30, 300] {
        let r = w.tick(&mut c, &[("a", 70), ("b", 50)], at);
        assert!(r.moved.is_empty(), "at {at}: {r:?}");
        assert_eq!(w.ledger.workload(b).unwrap().host, HostId(1), "at {at}");
        assert_eq!(c.in_flight.len(), 1);
        assert!(c.in_flight[0].done_at <= t(at + 1));
    }
    *status.borrow_mut() = MigrationStatus::Completed;
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 301);
    assert_eq!(r.moved.len(), 1, "{r:?}");
    assert_eq!(w.ledger.workload(w.w("b")).unwrap().host, HostId(2));
    assert!(c.in_flight.is_empty());
}

#[test]
fn a_failed_move_leaves_the_workload_where_it_was_and_says_why() {
    let mut w = full_host(&[100, 100]);
    let (mut c, status) = scripted();
    w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    let b = w.w("b");
    *status.borrow_mut() = MigrationStatus::Failed("the peer closed the connection".into());
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 10);
    assert_eq!(r.failed_moves, vec![b], "{r:?}");
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("the peer closed the connection") && p.contains("stays on")),
        "{r:?}"
    );
    assert!(r.moved.is_empty());
    assert_eq!(w.ledger.workload(b).unwrap().host, HostId(1));
    assert_eq!(w.held("b"), 50, "it keeps what it held");
}

#[test]
fn a_brief_spike_moves_nothing_a_lasting_shortage_does() {
    let mut w = full_host(&[100, 100]);
    let mut c = controller(StaticProvisioner::default());
    c.engine.params.move_after = Span::from_secs(600);
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert!(r.moves_started.is_empty(), "{r:?}");
    let r = w.tick(&mut c, &[("a", 50), ("b", 50)], 300);
    assert!(r.moves_started.is_empty(), "the spike is over");
    // Short again, and for 10 minutes this time.
    w.tick(&mut c, &[("a", 70), ("b", 50)], 600);
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 900);
    assert!(r.moves_started.is_empty(), "short for 5 min only");
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 1200);
    assert_eq!(r.moves_started.len(), 1, "{r:?}");
}

#[test]
fn with_no_room_anywhere_the_provisioner_adds_a_host() {
    let mut w = full_host(&[100]);
    let mut c = controller(StaticProvisioner::new(vec![NewHost {
        name: "standby-1".into(),
        capacity: cpu(100),
    }]));
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert_eq!(r.provisioned.len(), 1, "{r:?}");
    assert!(w.ledger.host_named("standby-1").is_some());
    w.tick(&mut c, &[("a", 70), ("b", 50)], 60);
    w.tick(&mut c, &[("a", 70), ("b", 50)], 120);
    assert_eq!(w.held("a"), 70);
    assert_eq!(
        w.ledger.workload(w.w("b")).unwrap().host,
        w.ledger.host_named("standby-1").unwrap().id
    );
}

#[test]
fn a_failing_provisioner_fails_the_request_and_changes_nothing() {
    let mut w = full_host(&[100]);
    let mut c = controller(StaticProvisioner::new(Vec::new()));
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert!(
        r.problems.iter().any(|p| p.contains("no standby host")),
        "{r:?}"
    );
    assert_eq!(w.ledger.hosts().count(), 1);
    assert_eq!(c.migrator.moves, 0);
    let failed: Vec<_> = c
        .engine
        .shard_requests()
        .filter(
            |r| matches!(&r.status, RequestStatus::Failed(why) if why.contains("no standby host")),
        )
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "{:?}",
        c.engine.shard_requests().collect::<Vec<_>>()
    );
    assert_eq!(w.held("a"), 50, "a keeps what it had");
}

/// A provisioner that never answers in time (the command adapter's timeout, as the engine
/// sees it; the adapter itself is tested with a real sleeping command in the binary crate).
struct Slow;

impl Provisioner for Slow {
    fn provision(&mut self, _: &ProvisionRequest) -> Result<NewHost, ProvisionError> {
        Err(ProvisionError::TimedOut(Span::from_secs(5)))
    }
}

#[test]
fn a_slow_provisioner_fails_the_request_with_its_timeout() {
    let mut w = full_host(&[100]);
    let mut c = controller(Slow);
    let before = w.ledger.hosts().count();
    let r = w.tick(&mut c, &[("a", 70), ("b", 50)], 0);
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("did not answer within 5s")),
        "{r:?}"
    );
    assert_eq!(w.ledger.hosts().count(), before);
    assert!(c.engine.shard_requests().any(
        |r| matches!(&r.status, RequestStatus::Failed(why) if why.contains("did not answer"))
    ));
}

#[test]
fn recommend_only_decides_but_changes_nothing() {
    let mut w = World::new(&[100], &[("a", 1, 10, Tier::Standard)]);
    let mut c = controller(StaticProvisioner::default());
    c.recommend_only = true;
    let before = w.ledger.clone();
    let r = w.tick(&mut c, &[("a", 30)], 0);
    assert_eq!(r.decisions.len(), 1);
    assert_eq!(r.decisions[0].to, 30);
    assert!(r.applied.is_empty());
    assert_eq!(w.ledger, before);
}

/// The controller of these scenarios with consolidation after `after` seconds.
fn consolidating(after: u64) -> Controller<StaticProvisioner, SimulatedMigrator> {
    let mut c = controller(StaticProvisioner::default());
    c.engine.params.consolidate_after = Span::from_secs(after);
    c
}

fn host_of(w: &World, name: &str) -> HostId {
    w.ledger.workload(w.w(name)).unwrap().host
}

#[test]
fn underused_hosts_are_drained_cheapest_first_onto_hosts_in_use_and_stay_empty() {
    let mut w = World::new(
        &[100, 100, 100],
        &[
            ("a", 1, 30, Tier::Standard),
            ("b", 2, 20, Tier::Standard),
            ("c", 3, 10, Tier::Standard),
        ],
    );
    let mut c = consolidating(0);
    let wants = [("a", 30), ("b", 20), ("c", 10)];
    let r = w.tick(&mut c, &wants, 0);
    // h3 is the cheapest to empty; c goes where it fits with the most headroom among hosts in
    // use (h2: 80 free).
    assert_eq!(r.drains, vec![HostId(3)], "{r:?}");
    assert_eq!(r.moves_started.len(), 1);
    assert_eq!(r.moves_started[0].to, HostId(2));
    let r = w.tick(&mut c, &wants, 30);
    assert!(r.drains.is_empty(), "one drain at a time: {r:?}");
    // At 60 s c lands on h2; then h1 (a: 30) and h2 (b + c: 30) tie: the lower id drains at
    // once (h2 ends 60 % committed).
    let r = w.tick(&mut c, &wants, 60);
    assert_eq!(host_of(&w, "c"), HostId(2));
    assert_eq!(w.held("c"), 10, "it holds its whole need where it landed");
    assert_eq!(r.drains, vec![HostId(1)], "{r:?}");
    w.tick(&mut c, &wants, 120);
    for n in ["a", "b", "c"] {
        assert_eq!(host_of(&w, n), HostId(2), "{n}");
    }
    assert_eq!((w.held("a"), w.held("b"), w.held("c")), (30, 20, 10));
    // One host in use: nothing more to drain, and a newcomer lands on the host in use.
    let r = w.tick(&mut c, &wants, 180);
    assert!(r.drains.is_empty() && r.moves_started.is_empty(), "{r:?}");
    let pending = BTreeMap::new();
    assert_eq!(
        Engine::place(&w.ledger, &cpu(10), None, &pending),
        Some(HostId(2)),
        "the drained hosts stay empty while the host in use has room"
    );
    assert_eq!(c.migrator.moves, 2);
}

#[test]
fn no_drain_past_the_fill_limit_and_none_before_its_hysteresis() {
    // Draining either would leave the other 80 % committed (limit 70 %).
    let mut w = World::new(
        &[100, 100],
        &[("a", 1, 40, Tier::Standard), ("b", 2, 40, Tier::Standard)],
    );
    let mut c = consolidating(0);
    for at in [0, 60, 120] {
        let r = w.tick(&mut c, &[("a", 40), ("b", 40)], at);
        assert!(r.drains.is_empty(), "{r:?}");
    }
    // At 30 % it drains, but only once b's host has been the one to drain for 30 min.
    let mut w = World::new(
        &[100, 100],
        &[("a", 1, 15, Tier::Standard), ("b", 2, 15, Tier::Standard)],
    );
    let mut c = consolidating(1800);
    let wants = [("a", 15), ("b", 15)];
    for at in [0, 600, 1200, 1799] {
        let r = w.tick(&mut c, &wants, at);
        assert!(r.drains.is_empty(), "at {at}: {r:?}");
    }
    let r = w.tick(&mut c, &wants, 1800);
    assert_eq!(r.drains, vec![HostId(1)], "{r:?}");
}

#[test]
fn a_short_host_resets_the_hysteresis() {
    let mut w = World::new(
        &[100, 100],
        &[
            ("a", 1, 50, Tier::Standard),
            ("b", 1, 50, Tier::Standard),
            ("c", 2, 10, Tier::Standard),
        ],
    );
    let mut c = consolidating(600);
    c.engine.params.move_after = Span::from_secs(3600);
    // h1 is full and not short: h2 (c) would drain... but 110 of 100 does not fit.
    let r = w.tick(&mut c, &[("a", 50), ("b", 50), ("c", 10)], 0);
    assert!(r.drains.is_empty(), "{r:?}");
    // a and b shrink; h2 is the candidate from 60 s on; a spike of a at 300 s makes h1 short
    // and starts the count again.
    let small = [("a", 20), ("b", 20), ("c", 10)];
    w.tick(&mut c, &small, 60);
    w.tick(&mut c, &small, 60 + 900);
    let r = w.tick(&mut c, &[("a", 90), ("b", 20), ("c", 10)], 60 + 960);
    assert!(r.drains.is_empty(), "{r:?}");
    w.tick(&mut c, &small, 60 + 1020);
    let r = w.tick(&mut c, &small, 60 + 1020 + 599);
    assert!(r.drains.is_empty(), "the count restarted: {r:?}");
}

#[test]
fn a_drained_hosts_lenders_and_borrowers_move_together() {
    // h2 is all reserved, so b leases a's idle shards; both move to h1 at once, and the lease
    // between them is ended first so that a's reservation can be given up.
    let mut w = World::new(
        &[200, 40],
        &[
            ("x", 1, 60, Tier::Standard),
            ("a", 2, 30, Tier::Standard),
            ("b", 2, 10, Tier::Standard),
        ],
    );
    // a holds 10 of its 30: its idle 20 is on the market.
    w.ledger
        .apply(
            &Action::Allocate(action::Allocate {
                tenant: TenantId(2),
                workload: w.w("a"),
                share: cpu(10),
            }),
            t(0),
        )
        .unwrap();
    let mut c = consolidating(600);
    let wants = [("x", 60), ("a", 10), ("b", 25)];
    w.tick(&mut c, &wants, 0);
    let a_res = w.ledger.workload(w.w("a")).unwrap().reservation;
    assert!(
        w.ledger
            .leases()
            .any(|l| l.lender == shardex_core::Lender::Reservation(a_res)),
        "a lends to b before the drain"
    );
    let mut drained = false;
    for at in (60..=1200).step_by(60) {
        let r = w.tick(&mut c, &wants, at);
        assert!(r.problems.is_empty(), "{r:?}");
        drained |= r.drains == vec![HostId(2)];
    }
    assert!(drained);
    for n in ["x", "a", "b"] {
        assert_eq!(host_of(&w, n), HostId(1), "{n}");
    }
    assert!(w.held("b") >= 25 && w.held("a") >= 10 && w.held("x") >= 60);
}

#[test]
fn without_a_migrator_a_drain_is_a_recommendation_never_reported_as_done() {
    let mut w = World::new(
        &[100, 100],
        &[("a", 1, 15, Tier::Standard), ("b", 2, 15, Tier::Standard)],
    );
    let mut params = controller(StaticProvisioner::default()).engine.params;
    params.consolidate_after = Span::from_secs(0);
    let mut c = Controller::new(
        Engine::new(params),
        StaticProvisioner::default(),
        shardex_core::ports::NoMigrator,
    );
    let demands: BTreeMap<WorkloadId, Demand> = [("a", 15), ("b", 15)]
        .iter()
        .map(|&(n, s)| (w.w(n), demand(s, t(0))))
        .collect();
    let before = w.ledger.clone();
    let r = c.tick(&mut w.ledger, &demands, &ShardSizes::default(), t(0));
    assert!(r.drains.is_empty(), "{r:?}");
    assert!(
        r.moves_started.is_empty() && c.in_flight.is_empty(),
        "{r:?}"
    );
    assert!(
        r.problems.iter().any(|p| p.contains("recommendation")),
        "the refused move is said: {r:?}"
    );
    assert_eq!(w.ledger.workloads().count(), before.workloads().count());
    assert_eq!(host_of(&w, "a"), HostId(1));
}
