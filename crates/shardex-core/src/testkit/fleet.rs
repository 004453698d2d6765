//! A fleet for benchmarks: `hosts` hosts of 64 cores and 512 GiB, `per_host` tenants each with
//! a reservation of 2 cores and 8 GiB on one host (tiers in turn) and a workload holding all of
//! it; and forecasts around that base (most want a bit more or less, some a lot more).

use std::collections::BTreeMap;

use crate::domain::{HostId, ReservationId, TenantId, Tier, WorkloadId};
use crate::engine::Demand;
use crate::ledger::{Action, action};
use crate::rdv::{Horizon, KindForecast, Quantiles, Rdv};
use crate::shard::{ResourceKind, ShardVector};
use crate::time::{Timestamp, Window};

/// The fleet as two batches to apply at `at`: hosts, tenants and reservations; then the
/// workloads bound and allocated.
pub fn fleet(hosts: u64, per_host: u64, at: Timestamp) -> [Action; 2] {
    let mut setup = Vec::new();
    for h in 0..hosts {
        setup.push(Action::RegisterHost(action::RegisterHost {
            name: format!("h{h}"),
            capacity: ShardVector::new(6400, 32768, 0, 0),
        }));
    }
    let n = hosts * per_host;
    let end = Timestamp::from_millis(at.millis() + 10_000_000_000).unwrap();
    for i in 0..n {
        setup.push(Action::CreateTenant(action::CreateTenant {
            name: format!("t{i}"),
        }));
        setup.push(Action::CreateReservation(action::CreateReservation {
            tenant: TenantId(i + 1),
            host: HostId(i / per_host + 1),
            vector: ShardVector::new(200, 512, 0, 0),
            window: Window::new(at, end).unwrap(),
            tier: Tier::ALL[usize::try_from(i % 4).unwrap()],
        }));
    }
    let mut bind = Vec::new();
    for i in 0..n {
        bind.push(Action::BindWorkload(action::BindWorkload {
            tenant: TenantId(i + 1),
            reservation: ReservationId(i + 1),
            name: format!("w{i}"),
        }));
        bind.push(Action::Allocate(action::Allocate {
            tenant: TenantId(i + 1),
            workload: WorkloadId(i + 1),
            share: ShardVector::new(200, 512, 0, 0),
        }));
    }
    [
        Action::Batch(action::Batch { actions: setup }),
        Action::Batch(action::Batch { actions: bind }),
    ]
}

/// Forecasts made at `now` for workloads 1 to `n`: cpu 1 to 4 cores, memory 4 to 12 GiB at
/// p99, deterministic for a `seed`.
pub fn demands(n: u64, seed: u64, now: Timestamp) -> BTreeMap<WorkloadId, Demand> {
    let mut state = seed;
    let mut below = |k: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % k
    };
    (1..=n)
        .map(|i| {
            let cpu = 100 + below(300);
            let mem = 256 + below(512);
            let q = |v: u64| Quantiles {
                p50: v / 2,
                p90: v * 9 / 10,
                p95: v * 19 / 20,
                p99: v,
            };
            let rdv = Rdv {
                made_at: now,
                horizon: Horizon::default(),
                kinds: vec![
                    KindForecast {
                        kind: ResourceKind::Cpu,
                        steps: vec![q(cpu * 10); 12],
                    },
                    KindForecast {
                        kind: ResourceKind::Memory,
                        steps: vec![q(mem << 24); 12],
                    },
                ],
            };
            (
                WorkloadId(i),
                Demand {
                    rdv,
                    usage: ShardVector::new(0, mem / 2, 0, 0),
                    cap: None,
                    censored: [false; 4],
                },
            )
        })
        .collect()
}
