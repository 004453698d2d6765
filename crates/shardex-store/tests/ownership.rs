//! Hosts owned through PostgreSQL: one owner per host at any time, a cap spreads them over
//! brokers, a dead broker's hosts are taken over once their leases run out (within the
//! documented bound), a clean stop hands them over at once, and the epoch fences stale work.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use shardex_core::ShardSizes;
use shardex_core::ports::LedgerStore;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn a_write_fenced_by_a_lost_hold_writes_nothing_and_the_new_owner_s_does() {
    use shardex_core::{Action, Timestamp, action};
    let (url, _pg) = shardex_store::testkit::database().await;
    let mut store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let ttl = Duration::from_millis(400);
    let a = Ownership::new(store.pool().clone(), "a", ttl);
    let b = Ownership::new(store.pool().clone(), "b", ttl);
    let held_a = a.round(&[7], None).await.unwrap()[0];
    let add = |name: &str| {
        let name = name.to_string();
        move |batch: &mut shardex_store::Batch| {
            batch
                .apply(
                    Action::CreateTenant(action::CreateTenant { name }),
                    Timestamp::from_secs(1).unwrap(),
                    None,
                )
                .map(|r| r.map(|_| ()))
        }
    };
    store
        .write_as("a", held_a, add("by-a"))
        .await
        .unwrap()
        .unwrap()
        .0
        .unwrap();
    assert_eq!(store.seq(), 1);
    // a stops renewing; b takes host 7 over once a's lease ran out.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let held_b = b.round(&[7], None).await.unwrap()[0];
    assert_eq!(held_b.epoch, held_a.epoch + 1);
    // a's plan, made before it lost the host, can't be committed: nothing is written.
    match store.write_as("a", held_a, add("late")).await {
        Err(shardex_store::StoreError::NotOwner { host: 7, epoch }) => {
            assert_eq!(epoch, held_a.epoch)
        }
        other => panic!("a stale owner wrote: {other:?}"),
    }
    assert_eq!(store.seq(), 1);
    store
        .write_as("b", held_b, add("by-b"))
        .await
        .unwrap()
        .unwrap()
        .0
        .unwrap();
    assert_eq!(store.seq(), 2);
    let names: Vec<String> = store.ledger().tenants().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["by-a", "by-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn an_agent_s_report_keeps_its_samples_for_whichever_broker_plans_its_host() {
    use shardex_core::ports::Reading;
    use shardex_core::{Timestamp, WorkloadId};
    use shardex_store::{AgentSeen, HostToken};
    let (url, _pg) = shardex_store::testkit::database().await;
    let store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let agents = store.agents();
    let t = |s| Timestamp::from_secs(s).unwrap();
    agents
        .add_token(&HostToken {
            id: "ab12".into(),
            host_name: "h1".into(),
            hash: "00".repeat(32),
            created: t(1),
            revoked: None,
        })
        .await
        .unwrap();
    assert_eq!(agents.token("ab12").await.unwrap().unwrap().host_name, "h1");
    assert!(agents.token("zz").await.unwrap().is_none());
    let r = |cpu| Reading {
        usage: [Some(cpu), Some(1 << 20), None, None],
        censored: [cpu > 900, false, false, false],
        oom_kills: 0,
    };
    let seen = |s| AgentSeen {
        host: 1,
        name: "h1".into(),
        seen: t(s),
        seq: 4,
        in_force: "[]".into(),
    };
    agents
        .report(
            &seen(10),
            &[
                (WorkloadId(3), t(10), r(100)),
                (WorkloadId(4), t(10), r(950)),
            ],
        )
        .await
        .unwrap();
    agents
        .report(&seen(20), &[(WorkloadId(3), t(20), r(200))])
        .await
        .unwrap();
    let all = agents.samples(1, 0, t(0), 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|s| (s.workload.0, s.at, s.reading))
            .collect::<Vec<_>>(),
        vec![(3, t(10), r(100)), (4, t(10), r(950)), (3, t(20), r(200))]
    );
    // A reader continues after the last row it read; another host's are not its.
    let after = agents.samples(1, all[1].id, t(0), 100).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(agents.samples(2, 0, t(0), 100).await.unwrap().is_empty());
    assert_eq!(agents.agents().await.unwrap(), vec![seen(20)]);
    assert_eq!(agents.prune(t(15)).await.unwrap(), 2);
    assert_eq!(agents.revoke_tokens("h1", t(30)).await.unwrap(), 1);
    assert_eq!(
        agents.token("ab12").await.unwrap().unwrap().revoked,
        Some(t(30))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn brokers_that_arrive_get_their_share_of_the_hosts_and_one_that_leaves_gives_its_own_back() {
    let (pool, _keep) = pool().await;
    let ttl = Duration::from_millis(1500);
    let brokers: Vec<Ownership> = ["a", "b", "c"]
        .iter()
        .map(|n| Ownership::new(pool.clone(), *n, ttl))
        .collect();
    let all: Vec<u64> = (0..10).collect();
    // Rounds of the brokers in `alive` until each holds its share and every host is held
    // once; what each holds.
    async fn settle(brokers: &[&Ownership], all: &[u64]) -> Vec<Vec<u64>> {
        let mut last = Vec::new();
        for _ in 0..6 {
            last = Vec::new();
            for b in brokers {
                last.push(hosts(&b.spread(all).await.unwrap()));
            }
        }
        last
    }
    let held = settle(&[&brokers[0]], &all).await;
    assert_eq!(held, vec![all.clone()], "alone, a holds every host");
    let held = settle(&[&brokers[0], &brokers[1]], &all).await;
    assert_eq!(
        held.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![5, 5],
        "{held:?}"
    );
    let held = settle(&[&brokers[0], &brokers[1], &brokers[2]], &all).await;
    let mut sizes: Vec<usize> = held.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![2, 4, 4],
        "ceil(10 / 3) = 4 at most each: {held:?}"
    );
    let mut every: Vec<u64> = held.concat();
    every.sort_unstable();
    assert_eq!(every, all, "each host held once: {held:?}");
    // c stops cleanly: a and b share its hosts again.
    brokers[2].release().await.unwrap();
    let held = settle(&[&brokers[0], &brokers[1]], &all).await;
    assert_eq!(
        held.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![5, 5],
        "{held:?}"
    );
}
