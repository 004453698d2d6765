//! The loop's steps driven without the daemon: a fixed clock, a scripted sampler, the
//! simulated actuator (and one that fails), a ledger in memory.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use shardex_agent::{Agent, AgentParams, Outcome, Profiler};
use shardex_core::action;
use shardex_core::control::Controller;
use shardex_core::engine::{Engine, EngineParams, Reason};
use shardex_core::ports::{
    Actuator, Applied, Kinds, Limits, NoMigrator, Reading, Sampler, SamplerError,
    SimulatedActuator, StaticProvisioner,
};
use shardex_core::{
    Action, Ledger, ResourceKind, ShardSizes, ShardVector, Span, Tier, Timestamp, Window,
    WorkloadId,
};
use shardex_forecast::Policy;

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

/// Gives each workload name the reading set for it, or "not here".
#[derive(Default)]
struct Script(BTreeMap<String, Reading>);

impl Sampler for Script {
    fn sample(&mut self, name: &str, _: Timestamp) -> Result<Option<Reading>, SamplerError> {
        Ok(self.0.get(name).copied())
    }
}

fn reading(cpu_millicores: u64, censored_cpu: bool) -> Reading {
    Reading {
        usage: [Some(cpu_millicores), Some(32 << 20), None, None],
        censored: [censored_cpu, false, false, false],
        oom_kills: 0,
    }
}

/// A 200-shard host; tenant "a" reserves `cpu` shards (and 64 memory shards) and binds "job",
/// which holds none of them yet (the engine sizes its share from the forecast).
fn world(cpu: u64) -> (Ledger, WorkloadId) {
    world_of(ShardVector::new(cpu, 64, 0, 0))
}

/// The same world with a reservation of `vector` (the host has 100 iops shards too).
fn world_of(vector: ShardVector) -> (Ledger, WorkloadId) {
    let mut l = Ledger::new();
    let ok = |l: &mut Ledger, a: Action| l.apply(&a, t(0)).unwrap();
    ok(
        &mut l,
        Action::RegisterHost(action::RegisterHost {
            name: "h".into(),
            capacity: ShardVector::new(200, 256, 0, 100),
        }),
    );
    ok(
        &mut l,
        Action::CreateTenant(action::CreateTenant { name: "a".into() }),
    );
    let (host, tenant) = (l.hosts().next().unwrap().id, l.tenants().next().unwrap().id);
    ok(
        &mut l,
        Action::CreateReservation(action::CreateReservation {
            tenant,
            host,
            vector,
            window: Window::new(t(0), t(86_400)).unwrap(),
            tier: Tier::Standard,
        }),
    );
    let r = l.reservations().next().unwrap().id;
    ok(
        &mut l,
        Action::BindWorkload(action::BindWorkload {
            tenant,
            reservation: r,
            name: "job".into(),
        }),
    );
    let w = l.workloads().next().unwrap().id;
    (l, w)
}

fn agent(act: bool) -> Agent<StaticProvisioner, NoMigrator> {
    let sizes = ShardSizes::default();
    let params = EngineParams {
        lead: Span::from_secs(10),
        down_after: Span::from_secs(30),
        ..EngineParams::default()
    };
    let mut p = AgentParams::new(sizes, Span::from_secs(10), act);
    p.reconcile.check_every = Span::from_secs(5);
    p.reconcile.degrade_after = 3;
    Agent::new(
        Profiler::new(
            Box::new(|k| {
                Policy::Reactive
                    .build(k, None, &Default::default())
                    .unwrap()
            }),
            sizes,
        ),
        Controller::new(
            Engine::new(params),
            StaticProvisioner::default(),
            NoMigrator,
        ),
        p,
    )
}

/// Commits a tick's actions the way the daemon does: all or nothing.
fn commit(l: &mut Ledger, actions: &[(Action, Timestamp)]) -> bool {
    let mut copy = l.clone();
    for (a, at) in actions {
        if copy.apply(a, *at).is_err() {
            return false;
        }
    }
    *l = copy;
    true
}

#[test]
fn an_idle_workload_is_sized_down_but_its_hard_limit_stays_its_reservation() {
    let (mut l, w) = world(150);
    let mut a = agent(true);
    let mut sampler = Script::default();
    sampler.0.insert("job".into(), reading(20, false));
    let mut act = SimulatedActuator::default();
    for s in 0..12 {
        let now = t(1 + s * 5);
        let sampled = a.sample(&l, &mut sampler, now);
        assert!(sampled.raise.is_empty());
        if s % 2 == 1 {
            let d = a.decide(&l, now);
            let ok = commit(&mut l, &d.actions);
            a.committed(&d, ok);
            assert!(ok);
        }
        let (done, repair) = a.actuate(&l, &mut act, l.now().max(now));
        assert!(repair.is_empty(), "{done:?}");
        // Whatever the forecast, the hard cpu limit is the whole 1.5 cores.
        assert_eq!(act.in_force(w).unwrap().hard(ResourceKind::Cpu), Some(1500));
    }
    let share = l.workload(w).unwrap().share.get(ResourceKind::Cpu);
    assert!(share < 150, "never sized for idleness: {share}");
    let soft = act.in_force(w).unwrap().soft(ResourceKind::Cpu);
    assert_eq!(soft, share * 10, "the soft knob follows the allocation");
    // Woken and throttled at its limit: raised at once, in the same sample step.
    sampler.0.insert("job".into(), reading(1500, true));
    let now = l.now().checked_add(Span::from_secs(1)).unwrap();
    let sampled = a.sample(&l, &mut sampler, now);
    assert_eq!(sampled.censored, vec![(w, ResourceKind::Cpu)]);
    assert!(
        sampled.raise.iter().any(
            |x| matches!(x, Action::Allocate(action::Allocate { share, .. }) if share.get(ResourceKind::Cpu) == 150)
        ),
        "{:?}",
        sampled.raise
    );
    commit(
        &mut l,
        &[(
            Action::Batch(action::Batch {
                actions: sampled.raise,
            }),
            now,
        )],
    );
    // The next decision doubles it: leases above the reservation.
    let d = a.decide(&l, now);
    assert!(
        d.decisions
            .iter()
            .any(|x| x.reason == Reason::Censored && x.kind == ResourceKind::Cpu && x.to >= 200),
        "{:?}",
        d.decisions
    );
    // An impossible decision is not recorded again while nothing changed... (recommend mode)
}

#[test]
fn recommend_mode_commits_nothing_and_says_the_same_thing_once() {
    let (l, _) = world(150);
    let mut a = agent(false);
    let mut sampler = Script::default();
    sampler.0.insert("job".into(), reading(1500, true));
    let mut per_tick = Vec::new();
    for s in 0..6 {
        let now = t(1 + s * 10);
        let sampled = a.sample(&l, &mut sampler, now);
        assert!(sampled.raise.is_empty(), "recommend mode raises nothing");
        let d = a.decide(&l, now);
        assert!(d.actions.is_empty());
        per_tick.push(d.decisions.len());
    }
    // One per kind at the first tick (cpu doubled for being held, memory to its usage), and
    // the same recommendation is not recorded again every tick.
    assert_eq!(per_tick, vec![2, 0, 0, 0, 0, 0]);
}

#[test]
fn drift_is_put_back_and_recorded_and_a_workload_that_left_is_cleared() {
    let (mut l, w) = world(100);
    let mut a = agent(true);
    let mut act = SimulatedActuator::default();
    let (done, _) = a.actuate(&l, &mut act, t(1));
    assert!(
        done.iter()
            .any(|x| x.kind == ResourceKind::Cpu
                && x.outcome == Outcome::Applied { hard: Some(1000) })
    );
    act.tamper(w, ResourceKind::Cpu, Some(100));
    // Not due yet: nothing read.
    let (done, _) = a.actuate(&l, &mut act, t(2));
    assert!(done.is_empty(), "{done:?}");
    let (done, _) = a.actuate(&l, &mut act, t(7));
    assert!(
        done.iter().any(|x| x.outcome
            == Outcome::Drift {
                found: Some(100),
                want: Some(1000)
            }),
        "{done:?}"
    );
    assert_eq!(act.in_force(w).unwrap().hard(ResourceKind::Cpu), Some(1000));
    // Unbound: shardex's limits come off.
    let tenant = l.workload(w).unwrap().tenant;
    l.apply(
        &Action::UnbindWorkload(action::UnbindWorkload {
            tenant,
            workload: w,
        }),
        t(8),
    )
    .unwrap();
    let (done, _) = a.actuate(&l, &mut act, t(8));
    assert!(done.iter().all(|x| x.outcome == Outcome::Cleared) && !done.is_empty());
    assert_eq!(act.in_force(w).unwrap().hard(ResourceKind::Cpu), None);
}

/// Refuses every memory write; applies cpu.
struct NoMemory(SimulatedActuator);

impl Actuator for NoMemory {
    fn apply(&mut self, w: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        let mut got = self.0.apply(w, name, limits, kinds);
        if kinds[1] {
            got.set(
                ResourceKind::Memory,
                shardex_core::ports::KindState::Failed(shardex_core::ports::ActuationError::other(
                    shardex_core::ports::FailureCause::Refused,
                    "EBUSY",
                )),
            );
        }
        got
    }
    fn read(&mut self, w: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.0.read(w, name, kinds)
    }
    fn clear(&mut self, w: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.0.clear(w, name, kinds)
    }
}

#[test]
fn a_kind_that_keeps_failing_backs_off_then_degrades_and_releases_its_leases_alone() {
    let (mut l, w) = world(100);
    // It holds a memory lease from the provider.
    let tenant = l.workload(w).unwrap().tenant;
    l.apply(
        &Action::RequestLease(action::RequestLease {
            tenant,
            workload: w,
            vector: ShardVector::new(0, 8, 0, 0),
            until: t(3600),
            max_price: shardex_core::PriceVector::uniform(rust_decimal::Decimal::ONE),
            all_or_nothing: false,
            start: None,
        }),
        t(1),
    )
    .unwrap();
    assert_eq!(l.leases().count(), 1);
    let mut a = agent(true);
    let mut act = NoMemory(SimulatedActuator::default());
    let mut outcomes = Vec::new();
    let mut releases = Vec::new();
    for s in 0..400 {
        let (done, repair) = a.actuate(&l, &mut act, t(2 + s));
        releases.extend(repair);
        outcomes.extend(
            done.into_iter()
                .filter(|x| x.kind == ResourceKind::Memory)
                .map(|x| (2 + s, x.outcome)),
        );
    }
    // Retried after 10 s, 20 s, then degraded (3 failures), then every 5 minutes at most.
    let times: Vec<i64> = outcomes.iter().map(|(at, _)| *at).collect();
    assert_eq!(&times[..3], &[2, 12, 32], "{outcomes:?}");
    assert!(
        matches!(outcomes[2].1, Outcome::Degraded { .. }),
        "{outcomes:?}"
    );
    assert!(a.reconciler.degraded(w));
    // Its cpu is in force all the same.
    assert_eq!(
        act.0.in_force(w).unwrap().hard(ResourceKind::Cpu),
        Some(1000)
    );
    // The ledger is brought back to what is in force: the memory lease is released, once.
    assert!(
        matches!(
            releases.as_slice(),
            [Action::Release(action::Release { .. })]
        ),
        "{releases:?}"
    );
}

#[test]
fn iops_at_their_limit_count_as_held_and_a_stall_only_with_usage_near_it() {
    // 10 iops shards: 100 IOPS in force.
    let (l, w) = world_of(ShardVector::new(100, 64, 0, 10));
    let mut a = agent(true);
    let mut act = SimulatedActuator::default();
    a.actuate(&l, &mut act, t(1));
    assert_eq!(act.in_force(w).unwrap().hard(ResourceKind::Iops), Some(100));
    let mut sampler = Script::default();
    let mut at = |iops: u64, stalled: bool, s: i64| {
        let r = Reading {
            usage: [Some(10), Some(32 << 20), None, Some(iops)],
            censored: [false, false, false, stalled],
            oom_kills: 0,
        };
        sampler.0.insert("job".into(), r);
        let sampled = a.sample(&l, &mut sampler, t(s));
        sampled.censored.contains(&(w, ResourceKind::Iops))
    };
    assert!(!at(50, false, 2), "well under the limit");
    assert!(
        !at(50, true, 3),
        "a stall far under the limit is the disk, not the limit"
    );
    assert!(at(96, true, 4), "a stall pressing on the limit");
    assert!(!at(96, false, 5), "near the limit without a stall");
    assert!(
        at(100, false, 6),
        "at the limit: held there (v1 has no other sign)"
    );
}

#[test]
fn a_reservation_whose_workloads_live_in_its_group_has_the_group_limited_to_its_entitlement() {
    let mut l = Ledger::new();
    let ok = |l: &mut Ledger, a: Action| l.apply(&a, t(0)).unwrap();
    ok(
        &mut l,
        Action::RegisterHost(action::RegisterHost {
            name: "h".into(),
            capacity: ShardVector::new(200, 256, 0, 0),
        }),
    );
    ok(
        &mut l,
        Action::CreateTenant(action::CreateTenant { name: "a".into() }),
    );
    let (host, tenant) = (l.hosts().next().unwrap().id, l.tenants().next().unwrap().id);
    let reserve = |l: &mut Ledger| {
        l.apply(
            &Action::CreateReservation(action::CreateReservation {
                tenant,
                host,
                vector: ShardVector::new(100, 64, 0, 0),
                window: Window::new(t(0), t(86_400)).unwrap(),
                tier: Tier::Standard,
            }),
            t(0),
        )
        .unwrap();
        l.reservations().last().unwrap().id
    };
    let (r1, r2) = (reserve(&mut l), reserve(&mut l));
    let group = shardex_core::entitlement::group_name(r1);
    for (r, name) in [
        (r1, format!("{group}/a")),
        (r1, format!("{group}/b")),
        // Bound by another path: its reservation has no group.
        (r2, "system.slice/web.service".to_string()),
    ] {
        ok(
            &mut l,
            Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation: r,
                name,
            }),
        );
    }
    let mut a = agent(true);
    let mut act = SimulatedActuator::default();
    act.with_groups = true;
    let (done, _) = a.actuate(&l, &mut act, t(1));
    // The group holds the reservation's 1 core and 1 GiB; each workload may use all of it.
    let g = act.group_in_force(r1).expect("the group was limited");
    assert_eq!(
        (g.hard(ResourceKind::Cpu), g.hard(ResourceKind::Memory)),
        (Some(1000), Some(1 << 30))
    );
    for w in l.workloads().filter(|w| w.reservation == r1) {
        assert_eq!(
            act.in_force(w.id).unwrap().hard(ResourceKind::Cpu),
            Some(1000)
        );
    }
    assert!(
        act.group_in_force(r2).is_none(),
        "a workload outside any group"
    );
    assert!(
        done.iter()
            .any(|x| x.subject == shardex_agent::Subject::Reservation(r1))
    );
    // Nothing changed: nothing is applied again.
    let (done, _) = a.actuate(&l, &mut act, t(2));
    assert!(done.is_empty(), "{done:?}");
}

#[test]
fn an_agent_scoped_to_one_host_samples_and_limits_only_that_host_s_workloads() {
    let (mut l, w) = world(100);
    let ok = |l: &mut Ledger, a: Action| l.apply(&a, t(0)).unwrap();
    ok(
        &mut l,
        Action::RegisterHost(action::RegisterHost {
            name: "other-host".into(),
            capacity: ShardVector::new(200, 256, 0, 0),
        }),
    );
    let here = l.workload(w).unwrap().host;
    let there = l.hosts().find(|h| h.id != here).unwrap().id;
    let tenant = l.workload(w).unwrap().tenant;
    ok(
        &mut l,
        Action::CreateReservation(action::CreateReservation {
            tenant,
            host: there,
            vector: ShardVector::new(50, 64, 0, 0),
            window: Window::new(t(0), t(86_400)).unwrap(),
            tier: Tier::Standard,
        }),
    );
    let r = l.reservations().find(|r| r.host == there).unwrap().id;
    ok(
        &mut l,
        Action::BindWorkload(action::BindWorkload {
            tenant,
            reservation: r,
            name: "elsewhere".into(),
        }),
    );
    let far = l.workloads().find(|x| x.id != w).unwrap().id;
    let mut a = agent(true);
    let mut scoped = *a.params();
    scoped.host = Some(here);
    let mut a = Agent::new(
        std::mem::replace(
            &mut a.profiler,
            Profiler::new(Box::new(|_| unreachable!()), ShardSizes::default()),
        ),
        Controller::new(
            Engine::new(EngineParams::default()),
            StaticProvisioner::default(),
            NoMigrator,
        ),
        scoped,
    );
    let mut s = Script::default();
    s.0.insert("job".into(), reading(500, false));
    s.0.insert("elsewhere".into(), reading(500, false));
    let seen = a.sample(&l, &mut s, t(1));
    assert_eq!(
        seen.readings.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![w]
    );
    let mut act = SimulatedActuator::default();
    let (done, _) = a.actuate(&l, &mut act, t(1));
    assert!(!done.is_empty());
    assert!(done.iter().all(|x| x.name == "job"), "{done:?}");
    assert!(act.in_force(far).is_none());
    assert_eq!(act.in_force(w).unwrap().hard(ResourceKind::Cpu), Some(1000));
}
