//! The engine's decisions: kept across a reopen, and found by workload, newest first.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use serde_json::json;
use shardex_core::{ShardSizes, Timestamp, WorkloadId};
use shardex_store::SqliteStore;

#[tokio::test]
async fn a_workload_s_decisions_are_its_own_newest_first_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let d =
        |w: u64, to: u64| json!({"workload_id": w, "kind": "cpu", "from": 1, "to": to, "why": "x"});
    let t = |ms| Timestamp::from_millis(ms).unwrap();
    store
        .record_decisions(t(1_000), "act", &[d(1, 2), d(2, 9)])
        .await
        .unwrap();
    store
        .record_decisions(t(2_000), "act", &[d(1, 3)])
        .await
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let mine = store.decisions_of(WorkloadId(1), 10).await.unwrap();
    let to: Vec<u64> = mine
        .iter()
        .map(|r| r["decision"]["to"].as_u64().unwrap())
        .collect();
    assert_eq!(to, [3, 2], "workload 1's, newest first: {mine:?}");
    assert_eq!(mine[0]["at_ms"], 2_000);
    assert_eq!(store.decisions_of(WorkloadId(1), 1).await.unwrap().len(), 1);
    assert!(
        store
            .decisions_of(WorkloadId(3), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.decisions(10).await.unwrap().len(), 3);
}
