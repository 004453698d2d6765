//! One engine tick for 10,000 workloads on 1,000 hosts: the plan alone (the engine's
//! decision), and the whole controller tick (plan, one committed batch, shortage resolution).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shardex_core::control::Controller;
use shardex_core::engine::{Demand, Engine, EngineParams};
use shardex_core::ports::{SimulatedMigrator, StaticProvisioner};
use shardex_core::{Action, Ledger, ShardSizes, Span, Timestamp, WorkloadId};

const HOSTS: u64 = 1_000;
const PER_HOST: u64 = 10;

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

/// 1,000 hosts of 64 cores and 512 GiB, ten workloads each with a base of 2 cores and 8 GiB.
fn world() -> Ledger {
    let mut l = Ledger::new();
    for batch in shardex_core::testkit::fleet(HOSTS, PER_HOST, t(0)) {
        l.apply(&batch, t(0)).unwrap();
    }
    l
}

/// Forecasts around the base: most workloads want a bit more or less, some a lot more.
fn demands(seed: u64, now: Timestamp) -> BTreeMap<WorkloadId, Demand> {
    shardex_core::testkit::demands(HOSTS * PER_HOST, seed, now)
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
