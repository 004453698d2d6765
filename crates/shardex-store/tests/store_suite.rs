//! One test suite for the `LedgerStore` port, run against every adapter; then what only the
//! durable adapter can show (reopen, tampering, shard-size changes).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use shardex_core::action;
use shardex_core::ports::LedgerStore;
use shardex_core::{Action, LedgerError, ShardSizes, ShardVector, Timestamp};
use shardex_store::{MemoryStore, PgStore, SqliteStore, StoreError};

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

/// The port's contract, whatever the adapter.
async fn contract<S: LedgerStore>(store: &mut S) {
    let host = Action::RegisterHost(action::RegisterHost {
        name: "h".into(),
        capacity: ShardVector::new(10, 10, 10, 10),
    });
    let events = store.apply(host.clone(), t(100)).await.unwrap().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(store.ledger().hosts().count(), 1);

    // A refused action is reported as the ledger's verdict and leaves everything as it was.
    let before = store.ledger().clone();
    let refused = store.apply(host, t(101)).await.unwrap();
    assert!(matches!(refused, Err(LedgerError::DuplicateName { .. })));
    assert_eq!(store.ledger(), &before);
    let backwards = store.apply(Action::Expire, t(50)).await.unwrap();
    assert!(matches!(
        backwards,
        Err(LedgerError::TimeWentBackwards { .. })
    ));

    // Several actions as one transaction: all or none.
    let before = store.ledger().clone();
    let tenant = |n: &str| Action::CreateTenant(action::CreateTenant { name: n.into() });
    let refused = store
        .apply_all(vec![(tenant("a"), t(102)), (tenant("a"), t(102))])
        .await
        .unwrap();
    assert!(matches!(
        refused,
        Err((1, LedgerError::DuplicateName { .. }))
    ));
    assert_eq!(
        store.ledger(),
        &before,
        "the first of a refused pair is not applied"
    );
    let events = store
        .apply_all(vec![(tenant("a"), t(102)), (tenant("b"), t(103))])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(store.ledger().tenants().count(), 2);

    // A long plausible stream keeps the invariants at every step.
    let mut script = common::Script::new(11);
    for _ in 0..300 {
        let (action, now) = script.next(store.ledger());
        let _ = store.apply(action, now).await.unwrap();
        assert_eq!(store.ledger().check(), vec![]);
    }
}

/// Metering, whatever the adapter: the core meters by change and at each hour boundary, and
/// the store keeps what it computed. A reservation of 100 cpu shards for exactly one hour,
/// seen through two actions and one batch that don't change it, is charged 100 shard-hours at
/// the list price (0.0004 per cpu shard-hour: 0.04), to its tenant only, as one charge that
/// ends with the hour; before the ledger passes that hour it is pending, and counted.
async fn meters<S: LedgerStore>(store: &mut S) {
    use rust_decimal::Decimal;
    use shardex_core::{HostId, TenantId, Tier, Window};
    let setup = vec![
        (
            Action::RegisterHost(action::RegisterHost {
                name: "h".into(),
                capacity: ShardVector::new(1000, 1000, 10, 10),
            }),
            t(0),
        ),
        (
            Action::CreateTenant(action::CreateTenant { name: "a".into() }),
            t(0),
        ),
        (
            Action::CreateTenant(action::CreateTenant { name: "b".into() }),
            t(0),
        ),
    ];
    store.apply_all(setup).await.unwrap().unwrap();
    let reserve = Action::CreateReservation(action::CreateReservation {
        tenant: TenantId(1),
        host: HostId(1),
        vector: ShardVector::new(100, 0, 0, 0),
        window: Window::new(t(0), t(3600)).unwrap(),
        tier: Tier::Standard,
    });
    store.apply(reserve, t(0)).await.unwrap().unwrap();
    store.apply(Action::Expire, t(1800)).await.unwrap().unwrap();
    // Not stored yet, but pending up to the ledger's time, and so charged.
    let pending = store.charges(None, t(0), t(1800)).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].shard_ms, 100 * 1_800_000);
    store
        .apply_all(vec![(Action::Expire, t(2400)), (Action::Expire, t(7200))])
        .await
        .unwrap()
        .unwrap();
    let charges = store
        .charges(Some(TenantId(1)), t(0), t(7200))
        .await
        .unwrap();
    assert_eq!(
        charges.iter().map(|c| c.shard_ms).sum::<u128>(),
        100 * 3_600_000,
        "{charges:?}"
    );
    let total: Decimal = charges.iter().map(|c| c.amount).sum();
    assert_eq!(total, "0.04".parse::<Decimal>().unwrap());
    assert!(charges.iter().all(|c| c.payer == TenantId(1)));
    // One charge for the hour, counted in the period its end falls in; only the tenant
    // asked for.
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert!(store.charges(None, t(0), t(1800)).await.unwrap().is_empty());
    assert_eq!(
        store.charges(None, t(3599), t(3600)).await.unwrap(),
        charges
    );
    assert!(
        store
            .charges(Some(TenantId(2)), t(0), t(7200))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn memory_store_meters_each_commit() {
    meters(&mut MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_meters_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("ledger.db"), ShardSizes::default())
        .await
        .unwrap();
    meters(&mut store).await;
    store.close().await;
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    let mut store = MemoryStore::new();
    contract(&mut store).await;
    assert!(store.log().len() > 100, "most scripted actions apply");
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    contract(&mut store).await;
    let ledger = store.ledger().clone();
    let seq = store.seq();
    let events = store.event_count().await.unwrap();
    store.close().await;

    let store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(store.ledger(), &ledger, "replay rebuilds the same ledger");
    assert_eq!(store.seq(), seq);
    assert_eq!(store.event_count().await.unwrap(), events);
    assert!(matches!(
        store.action(1).await.unwrap(),
        Some((_, Action::RegisterHost(action::RegisterHost { .. })))
    ));
    store.close().await;
}

#[tokio::test]
async fn sqlite_store_refuses_other_shard_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap()
        .close()
        .await;
    let other = ShardSizes {
        cpu_millicores: 20,
        ..ShardSizes::default()
    };
    let err = SqliteStore::open(&path, other).await.unwrap_err();
    assert!(matches!(err, StoreError::ShardSizesChanged { .. }), "{err}");
    assert!(err.to_string().contains("can't change"));
}

async fn tamper(path: &std::path::Path, sql: &str) {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    let mut c = SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_store_detects_a_tampered_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let mut script = common::Script::new(5);
    for _ in 0..40 {
        let (action, now) = script.next(store.ledger());
        let _ = store.apply(action, now).await.unwrap();
    }
    store.close().await;
    // The daemon opens from the snapshot its close took; a full replay (what `shardex
    // ledger check` does, read-only) verifies every entry of the log.

    // An event that replay doesn't reproduce.
    tamper(&path, "UPDATE events SET event = replace(event, '\"capacity\":{\"cpu\":1000', '\"capacity\":{\"cpu\":999') WHERE seq = 1").await;
    let err = SqliteStore::open_read_only(&path, ShardSizes::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Diverged { seq: 1, .. }), "{err}");

    // An action that no longer parses.
    tamper(
        &path,
        "UPDATE actions SET action = '{\"action\":\"fly\"}' WHERE seq = 2",
    )
    .await;
    tamper(
        &path,
        "UPDATE events SET event = replace(event, '\"cpu\":999', '\"cpu\":1000') WHERE seq = 1",
    )
    .await;
    let err = SqliteStore::open_read_only(&path, ShardSizes::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { seq: 2, .. }), "{err}");
}

#[tokio::test]
async fn sqlite_store_meters_what_the_ledger_held_between_actions_durably() {
    use rust_decimal::Decimal;
    use shardex_core::{HostId, TenantId, Tier, Window};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let capacity = ShardVector::new(1000, 1000, 10, 10);
    store
        .apply(
            Action::RegisterHost(action::RegisterHost {
                name: "h".into(),
                capacity,
            }),
            t(0),
        )
        .await
        .unwrap()
        .unwrap();
    store
        .apply(
            Action::CreateTenant(action::CreateTenant { name: "a".into() }),
            t(0),
        )
        .await
        .unwrap()
        .unwrap();
    let reserve = Action::CreateReservation(action::CreateReservation {
        tenant: TenantId(1),
        host: HostId(1),
        vector: ShardVector::new(100, 0, 0, 0),
        window: Window::new(t(0), t(3600)).unwrap(),
        tier: Tier::Standard,
    });
    store.apply(reserve, t(0)).await.unwrap().unwrap();
    store.apply(Action::Expire, t(1800)).await.unwrap().unwrap();
    store.apply(Action::Expire, t(7200)).await.unwrap().unwrap();
    let charges = store
        .charges(Some(TenantId(1)), t(0), t(7200))
        .await
        .unwrap();
    // 100 cpu shards for exactly the hour the reservation lasted, as one charge: nothing
    // changed it within the hour.
    assert_eq!(charges.len(), 1);
    assert_eq!(
        charges.iter().map(|c| c.shard_ms).sum::<u128>(),
        100 * 3_600_000
    );
    let total: Decimal = charges.iter().map(|c| c.amount).sum();
    assert_eq!(total, "0.04".parse::<Decimal>().unwrap());
    store.close().await;
    let store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(store.charges(None, t(0), t(7200)).await.unwrap(), charges);
    // The journal was written with the charges: a owes 0.04, the provider is owed it.
    let balances = store.journal_balances().await.unwrap();
    use shardex_core::billing::Account;
    assert_eq!(balances[&Account::Tenant(TenantId(1))], total);
    assert_eq!(balances[&Account::Provider], -total);
    assert_eq!(balances.values().sum::<Decimal>(), Decimal::ZERO);
    assert!(
        store
            .charges(Some(TenantId(2)), t(0), t(7200))
            .await
            .unwrap()
            .is_empty()
    );
}

// PostgreSQL: the same contract and metering against a real server (`testkit::database`: the
// one CI starts, named by SHARDEX_TEST_PG, or a private cluster made with initdb).

#[tokio::test]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn postgres_store_keeps_the_contract_and_survives_reopening() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let mut store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    contract(&mut store).await;
    let ledger = store.ledger().clone();
    let seq = store.seq();
    drop(store);
    let store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    assert_eq!(store.ledger(), &ledger, "replay rebuilds the same ledger");
    assert_eq!(store.seq(), seq);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn postgres_store_meters_each_commit() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let mut store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    meters(&mut store).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn postgres_store_refuses_other_shard_sizes_and_opens_from_a_snapshot() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let mut store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let mut script = common::Script::new(5);
    for _ in 0..60 {
        let (action, now) = script.next(store.ledger());
        let _ = store.apply(action, now).await.unwrap();
    }
    let at = store.snapshot().await.unwrap();
    assert_eq!(at, store.seq());
    for _ in 0..40 {
        let (action, now) = script.next(store.ledger());
        let _ = store.apply(action, now).await.unwrap();
    }
    let ledger = store.ledger().clone();
    let other = ShardSizes {
        cpu_millicores: 20,
        ..ShardSizes::default()
    };
    assert!(matches!(
        PgStore::open(&url, other).await,
        Err(StoreError::ShardSizesChanged { .. })
    ));
    let reopened = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    assert_eq!(
        reopened.ledger(),
        &ledger,
        "the snapshot and the log after it"
    );
    assert_eq!(reopened.seq(), store.seq());
}

#[tokio::test]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn postgres_store_reads_a_host_s_price_history_from_the_log() {
    use shardex_core::market::{PriceBook, PriceCurve, reprice};
    let (url, _pg) = shardex_store::testkit::database().await;
    let mut store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let host = Action::RegisterHost(action::RegisterHost {
        name: "h".into(),
        capacity: ShardVector::new(10, 10, 10, 10),
    });
    store.apply(host, t(100)).await.unwrap().unwrap();
    let list = shardex_core::PriceVector::default();
    let mut book = PriceBook::new(PriceCurve::default());
    let set = reprice(&mut book, store.ledger(), &list, t(200));
    assert!(!set.is_empty(), "a first repricing sets a price");
    for a in set {
        store.apply(a, t(200)).await.unwrap().unwrap();
    }
    let points = store
        .price_history(shardex_core::HostId(1), t(0), 10)
        .await
        .unwrap();
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].0, t(200));
    assert_eq!(
        Some(points[0].1),
        store.ledger().market_price(shardex_core::HostId(1))
    );
    assert!(
        store
            .price_history(shardex_core::HostId(1), t(201), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
