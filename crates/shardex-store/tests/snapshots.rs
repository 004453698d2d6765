//! Snapshots and the log's format: a store opened from its newest snapshot plus the log after
//! it is the store a full replay rebuilds (ledger, meter, charges); a snapshot that can't be
//! read is passed over; a log entry in a format this version does not know is refused, never
//! misread; and a log written in format 1 still replays to the events it recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use shardex_core::ports::LedgerStore;
use shardex_core::{Action, Event, Ledger, ShardSizes, TenantId, Timestamp};
use shardex_store::{SqliteStore, StoreError};

async fn filled(path: &std::path::Path, n: usize) -> SqliteStore {
    let mut store = SqliteStore::open(path, ShardSizes::default())
        .await
        .unwrap();
    let mut script = common::Script::new(7);
    for i in 0..n {
        let (action, now) = script.next(store.ledger());
        let _ = store.apply(action, now).await.unwrap();
        if i == n / 2 {
            store.snapshot().await.unwrap();
        }
    }
    store
}

async fn everything(store: &SqliteStore) -> (Ledger, u64, Vec<shardex_core::billing::Charge>) {
    let charges = store
        .charges(
            None,
            Timestamp::EPOCH,
            Timestamp::from_secs(1 << 40).unwrap(),
        )
        .await
        .unwrap();
    (store.ledger().clone(), store.seq(), charges)
}

async fn db(path: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_store_opened_from_a_snapshot_is_the_one_a_full_replay_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = filled(&path, 400).await;
    let live = everything(&store).await;
    // The open store's pending charges come from the meter, which the snapshot carries.
    let open_seq = store.seq();
    drop(store);
    // Without a clean close the newest snapshot is the one from the middle: the rest is
    // replayed from the log.
    let reopened = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(everything(&reopened).await, live);
    reopened.close().await;
    let full = SqliteStore::open_read_only(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(everything(&full).await, live);
    let pool = db(&path).await;
    let newest: i64 = sqlx::query_scalar("SELECT max(seq) FROM snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(u64::try_from(newest).unwrap(), open_seq, "close took one");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 2);
}

#[tokio::test]
async fn a_snapshot_that_cant_be_read_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = filled(&path, 200).await;
    let live = everything(&store).await;
    store.close().await;
    let pool = db(&path).await;
    sqlx::query("UPDATE snapshots SET state = x'ff00ff'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let reopened = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(everything(&reopened).await, live);
}

#[tokio::test]
async fn a_log_entry_in_an_unknown_format_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    filled(&path, 50).await.close().await;
    let pool = db(&path).await;
    sqlx::query("UPDATE actions SET format = 2 WHERE seq = 5")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let got = SqliteStore::open_read_only(&path, ShardSizes::default()).await;
    match got {
        Err(StoreError::Corrupt { seq: 5, reason }) => {
            assert!(reason.contains("format 2"), "{reason}");
        }
        other => panic!("expected a refusal of entry 5, got {other:?}"),
    }
}

/// The stored log's format 1, as written by this version and committed: every entry still
/// reads as an action and replays to the events stored with it. A rename in the core's
/// actions or events that would break stored logs fails here.
#[test]
fn a_log_written_in_format_1_still_replays() {
    let text = include_str!("fixtures/log-v1.jsonl");
    let mut ledger = Ledger::new();
    let mut n = 0;
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = Timestamp::from_millis(entry["at_ms"].as_i64().unwrap()).unwrap();
        let action: Action = serde_json::from_value(entry["action"].clone()).unwrap();
        let stored: Vec<Event> = serde_json::from_value(entry["events"].clone()).unwrap();
        let events = ledger.apply(&action, at).unwrap();
        assert_eq!(events, stored, "entry {n}");
        n += 1;
    }
    assert!(n >= 100, "{n} entries");
    assert!(ledger.tenant(TenantId(1)).is_some());
    assert_eq!(ledger.check(), vec![]);
}
