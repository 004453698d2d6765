//! Pipelined group commit: a batch made on the state a batch in flight leaves is written after
//! it and holds after a reopen; a commit that comes in between is refused whole, and nothing
//! of it shows in the state or the log.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shardex_core::ports::LedgerStore;
use shardex_core::{Action, ShardSizes, Timestamp, action};
use shardex_store::SqliteStore;

fn tenant(name: &str) -> Action {
    Action::CreateTenant(action::CreateTenant { name: name.into() })
}

#[tokio::test]
async fn a_batch_made_on_one_in_flight_commits_after_it_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let at = Timestamp::from_secs(10).unwrap();
    let mut first = store.batch();
    first.apply(tenant("a"), at, None).unwrap().unwrap();
    first.apply(tenant("b"), at, None).unwrap().unwrap();
    let in_flight = store.start_commit(first);
    // The next batch sees what the first one did before it is durable...
    let mut second = in_flight.next_batch();
    assert!(second.ledger().tenant_named("b").is_some());
    assert!(
        second.apply(tenant("b"), at, None).unwrap().is_err(),
        "a name taken in the batch in flight is taken for the next one"
    );
    second.apply(tenant("c"), at, None).unwrap().unwrap();
    // ...while the store and its readers see only what is durable.
    assert!(store.ledger().tenant_named("a").is_none());
    assert_eq!(store.finish_commit(in_flight).await.unwrap().len(), 2);
    assert_eq!(store.seq(), 2);
    let events = store
        .finish_commit(store.start_commit(second))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(store.seq(), 3);
    let expected = store.ledger().clone();
    store.close().await;
    let reopened = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(reopened.seq(), 3);
    assert_eq!(reopened.ledger(), &expected);
}

#[tokio::test]
async fn a_commit_between_a_batch_in_flight_and_its_finish_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut store = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    let at = Timestamp::from_secs(10).unwrap();
    let mut first = store.batch();
    first.apply(tenant("a"), at, None).unwrap().unwrap();
    let mut other = store.batch();
    other.apply(tenant("z"), at, None).unwrap().unwrap();
    let mut in_flight = store.start_commit(first);
    in_flight.written().await;
    // `other` was made on the state before `first`: its log position is taken.
    assert!(store.commit_batch(other).await.is_err());
    assert!(
        store.ledger().tenant_named("z").is_none(),
        "nothing of it applied"
    );
    store.finish_commit(in_flight).await.unwrap();
    assert!(store.ledger().tenant_named("a").is_some());
    store.close().await;
    let reopened = SqliteStore::open(&path, ShardSizes::default())
        .await
        .unwrap();
    assert_eq!(reopened.seq(), 1);
    assert!(
        reopened.ledger().tenant_named("z").is_none(),
        "nothing of it logged"
    );
}
