//! The tokens table and its cache: what one handle writes its own reads see at once, and a
//! handle that has not read a token yet reads it from the store.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use shardex_core::{ShardSizes, TenantId, Timestamp};
use shardex_store::{SqliteStore, StoredToken};

fn token(id: &str) -> StoredToken {
    StoredToken {
        id: id.into(),
        tenant: TenantId(7),
        hash: "ab".repeat(32),
        label: "ci".into(),
        created: Timestamp::from_millis(1_000).unwrap(),
        expires: None,
        revoked: None,
    }
}

#[tokio::test]
async fn a_revoked_token_reads_revoked_through_the_cache_and_from_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ledger.db"), ShardSizes::default())
        .await
        .unwrap();
    let a = store.tokens();
    assert_eq!(a.get("t1").await.unwrap(), None, "unknown before insert");
    a.insert(&token("t1")).await.unwrap();
    // The miss above was cached; the insert through the same handle replaced it.
    assert_eq!(a.get("t1").await.unwrap(), Some(token("t1")));
    let b = store.tokens();
    assert_eq!(
        b.get("t1").await.unwrap(),
        Some(token("t1")),
        "another handle reads the store"
    );
    let at = Timestamp::from_millis(2_000).unwrap();
    assert!(a.revoke("t1", at).await.unwrap());
    assert!(!a.revoke("t1", at).await.unwrap(), "revoked once only");
    assert_eq!(a.get("t1").await.unwrap().unwrap().revoked, Some(at));
    // A handle that never read it sees the revocation at once.
    assert_eq!(
        store.tokens().get("t1").await.unwrap().unwrap().revoked,
        Some(at)
    );
}
