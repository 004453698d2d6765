//! Several writers on one PostgreSQL ledger (fleet mode's brokers): a storm of concurrent
//! writes from separate handles, then a check of the recorded history, not only of the final
//! state: every log entry, replayed in order from the start, reproduces what was stored with it
//! and leaves every invariant holding (no shard is ever held twice, at any point of the
//! history), and every write a handle acknowledged is in the log, where it said.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation
)]

mod common;

use shardex_core::ports::LedgerStore;
use shardex_core::{Event, ShardSizes};
use shardex_store::PgStore;

/// What one writer was told: the log entry its write became and the events it caused.
type Acked = Vec<(u64, Vec<Event>)>;

async fn writer(url: String, seed: u64, writes: usize) -> (Acked, usize) {
    let mut store = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    let mut script = common::Script::new(seed);
    let mut acked = Vec::new();
    let mut refused = 0;
    for _ in 0..writes {
        // Plan on what this handle knows; the write itself catches up under the lock, so
        // the action is judged on the newest state, whatever the other writers did meanwhile.
        store.refresh().await.unwrap();
        let (action, now) = script.next(store.ledger());
        match store.apply(action, now).await.unwrap() {
            Ok(events) => acked.push((store.seq(), events)),
            Err(_) => refused += 1,
        }
        assert_eq!(store.ledger().check(), vec![], "writer {seed}");
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn concurrent_writers_keep_one_serial_history_and_lose_nothing_acknowledged() {
    let (url, _pg) = shardex_store::testkit::database().await;
    // Create the schema once before the storm.
    drop(PgStore::open(&url, ShardSizes::default()).await.unwrap());
    let writers: Vec<_> = (0..4)
        .map(|seed| tokio::spawn(writer(url.clone(), 100 + seed, 150)))
        .collect();
    let mut acked = Vec::new();
    let mut refused = 0;
    for w in writers {
        let (a, r) = w.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    assert!(
        acked.len() > 200,
        "most writes apply: {} of 600",
        acked.len()
    );

    // The history: every entry in order, from nothing, each checked.
    let replayed = shardex_store::testkit::check_history(&url).await;
    let mut seen = std::collections::BTreeSet::new();
    for (seq, events) in &acked {
        assert!(seen.insert(*seq), "two writes were told entry {seq}");
        assert_eq!(replayed.get(seq), Some(events), "acknowledged entry {seq}");
    }
    assert_eq!(
        replayed.len(),
        acked.len(),
        "nothing unacknowledged was logged"
    );
    // A fresh handle opens on the same history.
    let fresh = PgStore::open(&url, ShardSizes::default()).await.unwrap();
    assert_eq!(fresh.ledger().check(), vec![]);
    assert_eq!(fresh.seq(), replayed.len() as u64);
    eprintln!(
        "{} writes applied, {refused} refused by the ledger, from 4 concurrent writers",
        acked.len()
    );
}
