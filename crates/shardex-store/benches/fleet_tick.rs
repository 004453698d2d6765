//! An engine tick for 10,000 workloads on 1,000 hosts through the shared database (fleet
//! mode): the controller's tick on the ledger a broker holds, its actions committed by
//! `PgStore` in one transaction, and another broker catching up with them. Needs PostgreSQL:
//! `SHARDEX_TEST_PG`, or a private cluster made with Debian's initdb. Prints one line per
//! figure (three ticks, each on new forecasts).
//!
//!     cargo bench -p shardex-store --bench fleet_tick

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use shardex_core::control::Controller;
use shardex_core::engine::{Engine, EngineParams};
use shardex_core::ports::{LedgerStore, SimulatedMigrator, StaticProvisioner};
use shardex_core::{ShardSizes, Span, Timestamp};
use shardex_store::PgStore;

const HOSTS: u64 = 1_000;
const PER_HOST: u64 = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let sizes = ShardSizes::default();
    let mut store = PgStore::open(&url, sizes).await.unwrap();
    let t0 = Timestamp::from_secs(1_800_000_000).unwrap();
    let built = Instant::now();
    for batch in shardex_core::testkit::fleet(HOSTS, PER_HOST, t0) {
        store.apply(batch, t0).await.unwrap().unwrap();
    }
    println!(
        "fleet of {} workloads on {HOSTS} hosts written in {:.2} s",
        HOSTS * PER_HOST,
        built.elapsed().as_secs_f64()
    );
    let mut other = PgStore::open(&url, sizes).await.unwrap();
    let mut controller = Controller::new(
        Engine::new(EngineParams::default()),
        StaticProvisioner::default(),
        SimulatedMigrator::new(Span::from_secs(60)),
    );
    for round in 1..=3i64 {
        let now = Timestamp::from_secs(1_800_000_000 + 60 * round).unwrap();
        let demands =
            shardex_core::testkit::demands(HOSTS * PER_HOST, u64::try_from(round).unwrap(), now);
        let mut ledger = store.ledger().clone();
        let started = Instant::now();
        let report = controller.tick(&mut ledger, &demands, &sizes, now);
        let decided = started.elapsed();
        let actions = report.applied.len();
        let committed = Instant::now();
        store.apply_all(report.applied).await.unwrap().unwrap();
        let commit = committed.elapsed();
        let caught = Instant::now();
        let replayed = other.refresh().await.unwrap();
        let catch_up = caught.elapsed();
        assert_eq!(other.ledger(), store.ledger());
        println!(
            "tick {round}: decided in {:.0} ms ({} decisions, {actions} actions), committed in {:.0} ms, \
             another broker caught up ({replayed} entries) in {:.0} ms",
            decided.as_secs_f64() * 1e3,
            report.decisions.len(),
            commit.as_secs_f64() * 1e3,
            catch_up.as_secs_f64() * 1e3
        );
    }
    // What each host's agent would fetch if it kept the fleet's ledger (CBOR, as snapshots
    // are), against the targets of its own host it gets (`GET /v1/agent/targets`).
    let encoding = Instant::now();
    let mut bytes = Vec::new();
    ciborium::into_writer(store.ledger(), &mut bytes).unwrap();
    let encoded = encoding.elapsed();
    let decoding = Instant::now();
    let back: shardex_core::Ledger = ciborium::from_reader(bytes.as_slice()).unwrap();
    let decoded = decoding.elapsed();
    assert_eq!(&back, store.ledger());
    println!(
        "the fleet's ledger, were agents to fetch it: {:.1} MB of CBOR, encoded in {:.0} ms, decoded in {:.0} ms",
        bytes.len() as f64 / 1e6,
        encoded.as_secs_f64() * 1e3,
        decoded.as_secs_f64() * 1e3
    );
}
