//! One engine tick for 10,000 workloads on 1,000 hosts: the plan alone (the engine's
//! decision), and the whole controller tick (plan, one committed batch, shortage resolution).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shardex_core::action;
use shardex_core::control::Controller;
use shardex_core::engine::{Demand, Engine, EngineParams};
use shardex_core::ports::{SimulatedMigrator, StaticProvisioner};
use shardex_core::{
    Action, Horizon, HostId, KindForecast, Ledger, Quantiles, Rdv, ResourceKind, ShardSizes,
    ShardVector, Span, TenantId, Tier, Timestamp, Window, WorkloadId,
};

const HOSTS: u64 = 1_000;
const PER_HOST: u64 = 10;

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// 1,000 hosts of 64 cores and 512 GiB, ten workloads each with a base of 2 cores and 8 GiB.
fn world() -> Ledger {
    let mut l = Ledger::new();
    let mut actions = Vec::new();
    for h in 0..HOSTS {
        actions.push(Action::RegisterHost(action::RegisterHost {
            name: format!("h{h}"),
            capacity: ShardVector::new(6400, 32768, 0, 0),
        }));
    }
    let n = HOSTS * PER_HOST;
    for i in 0..n {
        actions.push(Action::CreateTenant(action::CreateTenant {
            name: format!("t{i}"),
        }));
        actions.push(Action::CreateReservation(action::CreateReservation {
            tenant: TenantId(i + 1),
            host: HostId(i / PER_HOST + 1),
            vector: ShardVector::new(200, 512, 0, 0),
            window: Window::new(t(0), t(10_000_000)).unwrap(),
            tier: Tier::ALL[(i % 4) as usize],
        }));
    }
    l.apply(&Action::Batch(action::Batch { actions }), t(0))
        .unwrap();
    let mut actions = Vec::new();
    for i in 0..n {
        actions.push(Action::BindWorkload(action::BindWorkload {
            tenant: TenantId(i + 1),
            reservation: shardex_core::ReservationId(i + 1),
            name: format!("w{i}"),
        }));
        actions.push(Action::Allocate(action::Allocate {
            tenant: TenantId(i + 1),
            workload: WorkloadId(i + 1),
            share: ShardVector::new(200, 512, 0, 0),
        }));
    }
    l.apply(&Action::Batch(action::Batch { actions }), t(0))
        .unwrap();
    l
}

/// Forecasts around the base: most workloads want a bit more or less, some a lot more.
fn demands(seed: u64, now: Timestamp) -> BTreeMap<WorkloadId, Demand> {
    let mut rng = Rng(seed);
    (1..=HOSTS * PER_HOST)
        .map(|i| {
            let cpu = 100 + rng.below(300);
            let mem = 256 + rng.below(512);
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

fn bench(c: &mut Criterion) {
    let ledger = world();
    let sizes = ShardSizes::default();
    let now = t(60);
    let d = demands(7, now);
    let mut g = c.benchmark_group("engine_tick_10k_workloads_1k_hosts");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    let mut caught_up = ledger.clone();
    caught_up.apply(&Action::Expire, now).unwrap();
    g.bench_function("plan", |b| {
        b.iter_batched(
            || Engine::new(EngineParams::default()),
            |mut e| e.plan(&caught_up, &d, &sizes),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("controller tick (plan, commit, resolve)", |b| {
        b.iter_batched(
            || {
                (
                    ledger.clone(),
                    Controller::new(
                        Engine::new(EngineParams::default()),
                        StaticProvisioner::default(),
                        SimulatedMigrator::new(Span::from_secs(60)),
                    ),
                )
            },
            |(mut l, mut c)| c.tick(&mut l, &d, &sizes, now),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
