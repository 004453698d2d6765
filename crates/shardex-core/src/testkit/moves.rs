//! A host too small for its workloads, beside one with room: the engine moves the cheaper
//! workload, which is what a migrator's tests need to see a real move through the controller.

use std::collections::BTreeMap;

use super::t;
use crate::control::Controller;
use crate::domain::{TenantId, Tier, WorkloadId};
use crate::engine::{Demand, Engine, EngineParams};
use crate::ledger::{Action, Ledger, action};
use crate::ports::{Migrator, StaticProvisioner};
use crate::rdv::{Horizon, KindForecast, Quantiles, Rdv};
use crate::shard::{ResourceKind, ShardVector};
use crate::time::{Span, Timestamp, Window};

fn cpu(n: u64) -> ShardVector {
    ShardVector::of(ResourceKind::Cpu, n)
}

/// Hosts `h1` and `h2` of 100 cpu shards; on `h1` the workloads `a` and `b`, 50 shards each
/// in reservations of their own, as of time 0. Returns the ledger and (a, b).
pub fn crowded() -> (Ledger, WorkloadId, WorkloadId) {
    let mut l = Ledger::new();
    let ok = |l: &mut Ledger, a: Action| l.apply(&a, t(0)).unwrap();
    for h in ["h1", "h2"] {
        ok(
            &mut l,
            Action::RegisterHost(action::RegisterHost {
                name: h.into(),
                capacity: cpu(100),
            }),
        );
    }
    let h1 = l.host_named("h1").unwrap().id;
    let mut ids = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        ok(
            &mut l,
            Action::CreateTenant(action::CreateTenant { name: name.into() }),
        );
        let tenant = TenantId(i as u64 + 1);
        ok(
            &mut l,
            Action::CreateReservation(action::CreateReservation {
                tenant,
                host: h1,
                vector: cpu(50),
                window: Window::new(t(0), t(1_000_000)).unwrap(),
                tier: Tier::Standard,
            }),
        );
        let r = l.reservations().last().unwrap().id;
        ok(
            &mut l,
            Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation: r,
                name: name.into(),
            }),
        );
        let w = l.workload_named(tenant, name).unwrap().id;
        ok(
            &mut l,
            Action::Allocate(action::Allocate {
                tenant,
                workload: w,
                share: cpu(50),
            }),
        );
        ids.push(w);
    }
    (l, ids[0], ids[1])
}

/// A forecast of `shards` cpu shards (10 millicores each) at every quantile and step, made at
/// `now`.
pub fn cpu_demand(shards: u64, now: Timestamp) -> Demand {
    Demand {
        rdv: Rdv {
            made_at: now,
            horizon: Horizon::default(),
            kinds: vec![KindForecast {
                kind: ResourceKind::Cpu,
                steps: vec![Quantiles::point(shards * 10); 12],
            }],
        },
        usage: ShardVector::ZERO,
        cap: None,
        censored: [false; 4],
    }
}

/// `a` needs 70 shards, `b` 50, forecast at `now`: `h1` is short and `b` is moved.
pub fn crowding(a: WorkloadId, b: WorkloadId, now: Timestamp) -> BTreeMap<WorkloadId, Demand> {
    [(a, cpu_demand(70, now)), (b, cpu_demand(50, now))]
        .into_iter()
        .collect()
}

/// A controller that moves at once (no hysteresis, no headroom) through `migrator`.
pub fn mover<M: Migrator>(migrator: M) -> Controller<StaticProvisioner, M> {
    let params = EngineParams {
        headroom_pct: 0,
        move_after: Span::from_millis(0),
        ..EngineParams::default()
    };
    Controller::new(Engine::new(params), StaticProvisioner::default(), migrator)
}
