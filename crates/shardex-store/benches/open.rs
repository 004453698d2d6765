//! How long opening a store takes: a log of a million actions (SHARDEX_BENCH_ACTIONS to
//! change it), opened from its snapshot (what `shardex run` does) and replayed whole (what
//! `shardex ledger check` does). Prints one line per figure. Two logs:
//! SHARDEX_BENCH_MIX=modifications (the default) is what a busy host writes (100 tenants, a
//! reservation each, and modifications of a few seconds in a stream: a long log, a small
//! state); SHARDEX_BENCH_MIX=tenants is a million tenants (a long log and a large state, the
//! snapshot's worst case).
//!
//!     cargo bench -p shardex-store --bench open
//!     SHARDEX_BENCH_MIX=tenants cargo bench -p shardex-store --bench open

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use shardex_core::action::{self, CreateReservation, ModifyReservation};
use shardex_core::ports::LedgerStore;
use shardex_core::{
    Action, Change, HostId, KindChange, ReservationId, ResourceKind, ShardSizes, ShardVector, Span,
    TenantId, Tier, Timestamp, Window,
};
use shardex_store::SqliteStore;

const TENANTS: u64 = 100;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000 + ms).unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::var("SHARDEX_BENCH_ACTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tenants_only = std::env::var("SHARDEX_BENCH_MIX").as_deref() == Ok("tenants");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let mut setup = vec![(
        Action::RegisterHost(action::RegisterHost {
            name: "h1".into(),
            capacity: ShardVector::new(1_000_000, 1_000_000, 1000, 1000),
        }),
        at(0),
    )];
    for t in 1..=TENANTS {
        setup.push((
            Action::CreateTenant(action::CreateTenant {
                name: format!("t{t}"),
            }),
            at(0),
        ));
        setup.push((
            Action::CreateReservation(CreateReservation {
                tenant: TenantId(t),
                host: HostId(1),
                vector: ShardVector::new(100, 100, 0, 0),
                window: Window::new(at(0), at(100_000_000)).unwrap(),
                tier: Tier::Standard,
            }),
            at(0),
        ));
    }
    store.apply_all(setup).await.unwrap().unwrap();
    let started = Instant::now();
    let mut i = store.seq();
    while i < n {
        let mut batch = store.batch();
        for _ in 0..10_000.min(n - i) {
            i += 1;
            let now = at(i64::try_from(i).unwrap());
            if tenants_only {
                let create = Action::CreateTenant(action::CreateTenant {
                    name: format!("tenant-{i}"),
                });
                batch.apply(create, now, None).unwrap().unwrap();
                continue;
            }
            let t = (i % TENANTS) + 1;
            let modify = Action::ModifyReservation(ModifyReservation {
                tenant: TenantId(t),
                reservation: ReservationId(t),
                changes: vec![KindChange {
                    kind: ResourceKind::Cpu,
                    change: Change::Set(if i % 2 == 0 { 80 } else { 120 }),
                }],
                start: None,
                duration: Span::from_secs(2),
            });
            batch.apply(modify, now, None).unwrap().unwrap();
        }
        store.commit_batch(batch).await.unwrap();
    }
    let wrote = started.elapsed();
    let seq = store.seq();
    let ledger = store.ledger().clone();
    store.close().await;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "log ({}): {seq} actions written in {:.1} s ({:.0} a second, batches of 10,000); ledger.db {} MB",
        if tenants_only {
            "tenants"
        } else {
            "modifications"
        },
        wrote.as_secs_f64(),
        seq as f64 / wrote.as_secs_f64(),
        size / 1_000_000
    );

    let started = Instant::now();
    let store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    println!(
        "open from the snapshot (shardex run): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(store.ledger(), &ledger);
    store.close().await;

    let started = Instant::now();
    let store = SqliteStore::open_read_only(&path, ShardSizes::default())
        .await
        .unwrap();
    println!(
        "replay of the whole log (shardex ledger check): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(store.ledger(), &ledger);
}
