//! Hosts owned through PostgreSQL: one owner per host at any time, a cap spreads them over
//! brokers, a dead broker's hosts are taken over once their leases run out (within the
//! documented bound), a clean stop hands them over at once, and the epoch fences stale work.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use shardex_core::ShardSizes;
use shardex_store::{Ownership, PgStore};

async fn pool() -> (sqlx::PgPool, impl Sized) {
    let (url, pg) = shardex_store::testkit::database().await;
    let store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    (store.pool().clone(), (pg, store))
}

fn hosts(held: &[shardex_store::Held]) -> Vec<u64> {
    held.iter().map(|h| h.host).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn a_dead_broker_s_hosts_are_taken_over_once_their_leases_run_out() {
    let (pool, _keep) = pool().await;
    let ttl = Duration::from_millis(600);
    let a = Ownership::new(pool.clone(), "a", ttl);
    let b = Ownership::new(pool.clone(), "b", ttl);
    let all = [1, 2, 3, 4];
    let held_a = a.round(&all, None).await.unwrap();
    assert_eq!(hosts(&held_a), all);
    assert!(held_a.iter().all(|h| h.epoch == 1));
    assert!(b.round(&all, None).await.unwrap().is_empty(), "held by a");
    // a renews for a while: b gets nothing.
    for _ in 0..3 {
        tokio::time::sleep(ttl / 3).await;
        assert_eq!(hosts(&a.round(&all, None).await.unwrap()), all);
        assert!(b.round(&all, None).await.unwrap().is_empty());
    }
    // a dies (stops renewing): b, going round every ttl / 3, has them all within ttl + ttl / 3.
    let died = Instant::now();
    let taken = loop {
        let held = b.round(&all, None).await.unwrap();
        if hosts(&held) == all {
            break held;
        }
        assert!(
            died.elapsed() < ttl * 2,
            "not taken over in {:?}",
            died.elapsed()
        );
        tokio::time::sleep(ttl / 3).await;
    };
    let took = died.elapsed();
    assert!(
        took >= ttl - Duration::from_millis(50),
        "taken before the lease ran out: {took:?}"
    );
    assert!(
        took <= ttl + ttl / 3 + Duration::from_millis(200),
        "{took:?}"
    );
    assert!(
        taken.iter().all(|h| h.epoch == 2),
        "the epoch moves on: {taken:?}"
    );
    // a's work under the old epoch is fenced off, even if a comes back.
    assert!(!a.holds(held_a[0]).await.unwrap());
    assert!(b.holds(taken[0]).await.unwrap());
    assert!(
        a.round(&all, None).await.unwrap().is_empty(),
        "b holds them now"
    );
    // A clean stop hands over at once.
    assert_eq!(b.release().await.unwrap(), 4);
    let back = a.round(&all, None).await.unwrap();
    assert_eq!(hosts(&back), all);
    assert!(back.iter().all(|h| h.epoch == 3));
    eprintln!("taken over {took:?} after the owner's last renewal (ttl {ttl:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn brokers_claiming_at_once_never_share_a_host_and_a_cap_spreads_them() {
    let (pool, _keep) = pool().await;
    let all: Vec<u64> = (1..=40).collect();
    let brokers: Vec<Ownership> = (0..4)
        .map(|i| Ownership::new(pool.clone(), format!("b{i}"), Duration::from_secs(30)))
        .collect();
    let rounds: Vec<_> = brokers
        .iter()
        .cloned()
        .map(|o| {
            let all = all.clone();
            tokio::spawn(async move { o.round(&all, Some(10)).await.unwrap() })
        })
        .collect();
    let mut owned = Vec::new();
    for r in rounds {
        let held = r.await.unwrap();
        assert_eq!(held.len(), 10, "each holds its cap: {held:?}");
        owned.extend(hosts(&held));
    }
    owned.sort_unstable();
    assert_eq!(owned, all, "every host has exactly one owner");
}
