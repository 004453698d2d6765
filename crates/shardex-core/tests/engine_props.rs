//! Property tests of the engine: whatever the forecasts, after every tick of the controller
//! the ledger's invariants hold (conservation, allocations within capacity, no lower tier
//! keeping shards a waiting higher tier could use), and a workload's share of its reservation
//! shrinks only by a scale-down and never under its upper forecast over the reclaim notice.
//! And invariant 8: once the limits are applied, no
//! workload's hard limit in force is below its entitlement, and the entitlements of a host's
//! reservations together never exceed its capacity.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use shardex_core::action;
use shardex_core::control::Controller;
use shardex_core::engine::{Demand, Engine, EngineParams, Reason};
use shardex_core::entitlement;
use shardex_core::ports::{
    ALL_KINDS, Actuator, SimulatedActuator, SimulatedMigrator, StaticProvisioner,
};
use shardex_core::{
    Action, Horizon, HostId, KindForecast, Ledger, Quantiles, Rdv, ResourceKind, ShardSizes,
    ShardVector, Span, TenantId, Tier, Timestamp, Window, WorkloadId,
};

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

/// (host, base cpu, base memory, tier) per workload.
fn workloads() -> impl Strategy<Value = Vec<(u8, u8, u8, u8)>> {
    prop::collection::vec((0u8..3, 1u8..20, 1u8..20, 0u8..4), 1..10)
}

/// Per tick, per workload: (cpu p50, cpu p99, memory p99) in shards, and whether its cpu was
/// held at its limit.
fn ticks(n: usize) -> impl Strategy<Value = Vec<Vec<(u8, u8, u8, bool)>>> {
    prop::collection::vec(
        prop::collection::vec(
            (0u8..40, 0u8..60, 0u8..40, prop::bool::weighted(0.2)),
            n..=n,
        ),
        1..24,
    )
}

fn rdv(cpu50: u64, cpu99: u64, mem99: u64, now: Timestamp) -> Rdv {
    // Heavy-tailed: the tier's quantile can sit far below the p99 the lending rule keeps.
    let q = |p50: u64, p99: u64| Quantiles {
        p50,
        p90: p50.max(p99 * 2 / 5),
        p95: p50.max(p99 / 2),
        p99: p99.max(p50),
    };
    Rdv {
        made_at: now,
        horizon: Horizon::default(),
        kinds: vec![
            KindForecast {
                kind: ResourceKind::Cpu,
                steps: vec![q(cpu50 * 10, cpu99 * 10); 12],
            },
            KindForecast {
                kind: ResourceKind::Memory,
                steps: vec![q(0, mem99 << 24); 12],
            },
        ],
    }
}

/// Runs the ticks, checking every invariant after each; returns how many hosts were drained.
fn run(ws: &[(u8, u8, u8, u8)], plan: &[Vec<(u8, u8, u8, bool)>]) -> Result<usize, TestCaseError> {
    let mut l = Ledger::new();
    for h in 0..3 {
        l.apply(
            &Action::RegisterHost(action::RegisterHost {
                name: format!("h{h}"),
                capacity: ShardVector::new(100, 100, 0, 0),
            }),
            t(0),
        )
        .unwrap();
    }
    // name → (tenant, guaranteed share)
    let mut names: BTreeMap<String, (TenantId, ShardVector)> = BTreeMap::new();
    for (i, &(host, cpu, mem, tier)) in ws.iter().enumerate() {
        let name = format!("w{i}");
        l.apply(
            &Action::CreateTenant(action::CreateTenant { name: name.clone() }),
            t(0),
        )
        .unwrap();
        let tenant = TenantId(i as u64 + 1);
        let base = ShardVector::new(u64::from(cpu), u64::from(mem), 0, 0);
        let reserved = l.apply(
            &Action::CreateReservation(action::CreateReservation {
                tenant,
                host: HostId(u64::from(host) + 1),
                vector: base,
                window: Window::new(t(0), t(1_000_000)).unwrap(),
                tier: Tier::ALL[usize::from(tier)],
            }),
            t(0),
        );
        if reserved.is_err() {
            continue; // the host is full
        }
        let r = l.reservations().last().unwrap().id;
        l.apply(
            &Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation: r,
                name: name.clone(),
            }),
            t(0),
        )
        .unwrap();
        let w = l.workload_named(tenant, &name).unwrap().id;
        l.apply(
            &Action::Allocate(action::Allocate {
                tenant,
                workload: w,
                share: base,
            }),
            t(0),
        )
        .unwrap();
        names.insert(name, (tenant, base));
    }
    let params = EngineParams {
        move_after: Span::from_secs(120),
        // Short enough for scale-downs (and share give-backs) to happen within a case.
        down_after: Span::from_secs(180),
        // Soon enough for hosts to be drained within a case.
        consolidate_after: Span::from_secs(120),
        ..EngineParams::default()
    };
    let mut c = Controller::new(
        Engine::new(params),
        StaticProvisioner::unlimited("spare", ShardVector::new(100, 100, 0, 0)),
        SimulatedMigrator::new(Span::from_secs(60)),
    );
    let sizes = ShardSizes::default();
    let mut actuator = SimulatedActuator::default();
    let mut drains = 0;
    for (i, tick) in plan.iter().enumerate() {
        let now = t(60 * i as i64);
        let mut demands = BTreeMap::new();
        for (j, (name, (tenant, _))) in names.iter().enumerate() {
            let Some(w) = l.workload_named(*tenant, name) else {
                continue;
            };
            let (c50, c99, m99, held) = tick[j % tick.len()];
            demands.insert(
                w.id,
                Demand {
                    rdv: rdv(u64::from(c50), u64::from(c99), u64::from(m99), now),
                    usage: ShardVector::new(0, u64::from(m99) / 2, 0, 0),
                    cap: None,
                    censored: [held, false, false, false],
                },
            );
        }
        let before: BTreeMap<WorkloadId, ShardVector> =
            l.workloads().map(|w| (w.id, w.share)).collect();
        let report = c.tick(&mut l, &demands, &sizes, now);
        prop_assert!(
            report.problems.iter().all(|p| !p.contains("refused")),
            "{:?}",
            report.problems
        );
        let violations = l.check();
        prop_assert!(violations.is_empty(), "tick {i}: {violations:#?}");
        // Consolidation never makes a host short: what is on its way to a drain's destination
        // fits in what that host has not committed, and the fill rule holds.
        if !report.drains.is_empty() {
            let mut incoming: BTreeMap<HostId, ShardVector> = BTreeMap::new();
            for f in &c.in_flight {
                let e = incoming.entry(f.to).or_default();
                *e = e.saturating_add(&f.mv.needs);
            }
            for (h, v) in &incoming {
                let b = l.balance(*h).unwrap();
                let committed = b.reserved.saturating_add(&b.lent_by_provider);
                prop_assert!(
                    committed.saturating_add(v).fits_in(&b.capacity),
                    "tick {i}: {h} gets {v} with {committed} of {} committed",
                    b.capacity
                );
                prop_assert!(!report.drains.contains(h), "a drain onto itself");
            }
            drains += report.drains.len();
        }
        // Invariant 8, through the actuator port: what is in force is never under the
        // entitlement, and the shared limits of a host's reservations fit its capacity.
        for w in l.workloads() {
            let limits = entitlement::limits(&l, w.id, &sizes).unwrap();
            let got = actuator.apply(w.id, &w.name, &limits, ALL_KINDS);
            let owed = sizes
                .physical_vector(entitlement::entitlement(&l, w.id).unwrap())
                .unwrap();
            for kind in ResourceKind::ALL {
                let in_force = got.in_force(kind).unwrap();
                prop_assert!(
                    in_force.is_none_or(|v| v >= owed.get(kind)),
                    "tick {i}: {} has a {kind} limit of {in_force:?} under its entitlement {}",
                    w.name,
                    owed.get(kind)
                );
                prop_assert!(limits.soft(kind) <= in_force.unwrap_or(u64::MAX));
            }
        }
        for h in l.hosts() {
            let mut sum = ShardVector::ZERO;
            for r in l.reservations().filter(|r| r.host == h.id) {
                sum = sum
                    .checked_add(&entitlement::reservation_entitlement(&l, r.id).unwrap())
                    .unwrap();
            }
            prop_assert!(
                sum.fits_in(&h.capacity),
                "tick {i}: {} entitled to {sum}, capacity {}",
                h.name,
                h.capacity
            );
        }
        // A share shrinks only by a scale-down, and never under what the owner's upper
        // forecast over the reclaim notice says it may need.
        let notice = l.params().reclaim_notice;
        for w in l.workloads() {
            let (Some(was), Some(d)) = (before.get(&w.id), demands.get(&w.id)) else {
                continue;
            };
            let upper = d.rdv.upper_shards(&sizes, notice);
            for kind in [ResourceKind::Cpu, ResourceKind::Memory] {
                let now_share = w.share.get(kind);
                if now_share < was.get(kind) {
                    prop_assert!(
                        now_share >= upper.get(kind).min(was.get(kind)),
                        "tick {i}: {} {kind} share {} -> {now_share}, upper need {}",
                        w.name,
                        was.get(kind),
                        upper.get(kind)
                    );
                    prop_assert!(
                        report.decisions.iter().any(|d| d.workload == w.id
                            && d.kind == kind
                            && d.reason == Reason::ScaleDown),
                        "tick {i}: {} {kind} share shrank without a scale-down",
                        w.name
                    );
                }
            }
        }
    }
    Ok(drains)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn after_every_tick_the_invariants_hold_and_a_share_shrinks_only_to_the_upper_need(
        (ws, plan) in workloads().prop_flat_map(|ws| { let n = ws.len(); (Just(ws), ticks(n)) })
    ) {
        run(&ws, &plan)?;
    }
}

#[test]
fn the_property_s_runs_do_drain_hosts() {
    // Three lightly used hosts: two are drained, one after the other, under the same checks.
    let ws = [(0, 5, 5, 1), (1, 5, 5, 1), (2, 5, 5, 1)];
    let plan = vec![vec![(5, 5, 5, false)]; 12];
    assert_eq!(run(&ws, &plan).unwrap(), 2);
}
