//! What fleet mode's plans keep in PostgreSQL: decisions by workload (any broker reads them,
//! newest first) and each host's shard requests, replaced as its planning broker sees them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::json;
use shardex_core::engine::{RequestStatus, ShardRequest};
use shardex_core::{HostId, ShardSizes, ShardVector, Timestamp, WorkloadId};
use shardex_store::PgStore;

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

fn request(id: u64, host: u64, at: i64, status: RequestStatus) -> ShardRequest {
    ShardRequest {
        id,
        workload: Some(WorkloadId(id + 10)),
        modification: None,
        host: HostId(host),
        wanted: ShardVector::new(5, 0, 0, 0),
        raised: t(at),
        steps: Vec::new(),
        status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn decisions_and_shard_requests_outlive_the_broker_that_planned_them() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let planner = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let reader = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let d = |w: u64, to: u64| json!({"workload_id": w, "kind": "cpu", "from": 100, "to": to});
    planner
        .plans()
        .record_decisions(1, t(10), 4, "act", &[d(3, 50), d(4, 20)])
        .await
        .unwrap();
    planner
        .plans()
        .record_decisions(1, t(20), 6, "act", &[d(3, 40)])
        .await
        .unwrap();
    let of3 = reader
        .plans()
        .decisions_of(WorkloadId(3), 10)
        .await
        .unwrap();
    assert_eq!(of3.len(), 2);
    assert_eq!(of3[0]["decision"]["to"], 40, "newest first: {of3:?}");
    assert_eq!(of3[0]["at_ms"], 20_000);
    assert_eq!(of3[0]["seq"], 6);
    assert_eq!(of3[1]["mode"], "act");
    assert_eq!(
        reader
            .plans()
            .decisions_of(WorkloadId(3), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        reader
            .plans()
            .decisions_of(WorkloadId(9), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Each host's requests are replaced as a whole; other hosts' stay.
    let p = planner.plans();
    p.set_requests(1, &[request(1, 1, 5, RequestStatus::Pending)])
        .await
        .unwrap();
    p.set_requests(2, &[request(1, 2, 7, RequestStatus::Pending)])
        .await
        .unwrap();
    let later = [
        request(2, 1, 9, RequestStatus::Pending),
        request(1, 1, 5, RequestStatus::Failed("no room".into())),
    ];
    p.set_requests(1, &later).await.unwrap();
    let all = reader.plans().requests(100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.host.0, r.id, r.raised))
            .collect::<Vec<_>>(),
        vec![(1, 2, t(9)), (2, 1, t(7)), (1, 1, t(5))],
        "newest first"
    );
    assert_eq!(all[2].status, RequestStatus::Failed("no room".into()));
    assert_eq!(reader.plans().requests(1).await.unwrap().len(), 1);
    p.set_requests(1, &[]).await.unwrap();
    assert_eq!(reader.plans().requests(100).await.unwrap().len(), 1);
}
