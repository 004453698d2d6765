//! What one write costs the ledger as its state grows: a modification ("+1 cpu shard for an
//! hour") applied to a ledger holding `N` reservations of `N` tenants, with as many
//! modifications already in force, for N = 1,000 and 10,000; and the replay of a log
//! of 8,000 tenant creations (what opening a store does without a snapshot). A write that
//! copied the whole state grows with N; one that shares it does not.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shardex_core::action::{CreateReservation, CreateTenant, ModifyReservation, RegisterHost};
use shardex_core::{
    Action, KindChange, Ledger, ReservationId, ResourceKind, ShardVector, Span, TenantId, Tier,
    Timestamp, Window,
};

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

fn modify(tenant: TenantId, reservation: ReservationId) -> Action {
    Action::ModifyReservation(ModifyReservation {
        tenant,
        reservation,
        changes: vec![KindChange {
            kind: ResourceKind::Cpu,
            change: "+1".parse().unwrap(),
        }],
        start: None,
        duration: Span::from_secs(3600),
    })
}

/// A host big enough for `n` tenants' reservations of 4 cpu shards, each once modified.
fn ledger_of(n: u64) -> (Ledger, Vec<(TenantId, ReservationId)>) {
    let mut l = Ledger::new();
    let capacity = ShardVector::new(n * 8, n * 8, 0, 0);
    l.apply(
        &Action::RegisterHost(RegisterHost {
            name: "h".into(),
            capacity,
        }),
        t(0),
    )
    .unwrap();
    let host = l.hosts().next().unwrap().id;
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(Action::CreateTenant(CreateTenant {
            name: format!("t{i}"),
        }));
    }
    l.apply(
        &Action::Batch(shardex_core::action::Batch { actions: batch }),
        t(0),
    )
    .unwrap();
    let tenants: Vec<TenantId> = l.tenants().map(|x| x.id).collect();
    let window = Window::new(t(0), t(30 * 86_400)).unwrap();
    let batch = tenants
        .iter()
        .map(|&tenant| {
            Action::CreateReservation(CreateReservation {
                tenant,
                host,
                vector: ShardVector::new(4, 4, 0, 0),
                window,
                tier: Tier::Standard,
            })
        })
        .collect();
    l.apply(
        &Action::Batch(shardex_core::action::Batch { actions: batch }),
        t(0),
    )
    .unwrap();
    let pairs: Vec<(TenantId, ReservationId)> =
        l.reservations().map(|r| (r.tenant, r.id)).collect();
    let batch = pairs.iter().map(|&(a, r)| modify(a, r)).collect();
    l.apply(
        &Action::Batch(shardex_core::action::Batch { actions: batch }),
        t(1),
    )
    .unwrap();
    (l, pairs)
}

fn writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger_write");
    g.sample_size(20);
    for n in [1_000u64, 10_000] {
        let (l, pairs) = ledger_of(n);
        let (a, r) = pairs[pairs.len() / 2];
        let action = modify(a, r);
        g.bench_function(format!("modify_with_{n}_reservations"), |b| {
            b.iter_batched_ref(
                || l.clone(),
                |l| l.apply(&action, t(2)).unwrap(),
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    // Opening a store without a snapshot replays its log one action at a time.
    let mut g = c.benchmark_group("ledger_replay");
    g.sample_size(10);
    g.bench_function("8000_create_tenant_one_by_one", |b| {
        b.iter(|| {
            let mut l = Ledger::new();
            for i in 0..8_000 {
                let name = format!("t{i}");
                l.apply(&Action::CreateTenant(CreateTenant { name }), t(0))
                    .unwrap();
            }
            l
        });
    });
    g.finish();
}

criterion_group!(benches, writes, replay);
criterion_main!(benches);
