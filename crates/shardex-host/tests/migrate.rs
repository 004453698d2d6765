//! Live migration between two QEMU processes on this machine, through the core's controller:
//! a crowded host moves a workload's VM to a host whose QEMU waits with `-incoming defer`, and
//! the ledger moves the workload only once QEMU says the migration completed. The source is
//! held before its switch-over (`pause-before-switchover`) so that the time in between is
//! seen, not raced. `#[ignore]`d because it needs QEMU; `.ci/run` installs it and runs these.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use shardex_core::control::Controller;
use shardex_core::ports::StaticProvisioner;
use shardex_core::testkit::moves::{crowded, crowding, mover};
use shardex_core::testkit::t;
use shardex_core::{HostId, Ledger, ShardSizes, WorkloadId};
use shardex_host::qmp::{Incoming, QmpMigrator};
use shardex_host::testkit::{PausedQemu, qmp_once};

fn status(vm: &PausedQemu) -> String {
    vm.query("query-status")["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn migration(vm: &PausedQemu) -> String {
    vm.query("query-migrate")["status"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running VM (the source) and a QEMU waiting for it; the crowded ledger; a controller
/// that moves `b`'s VM to h2 through them, its move started at time 1.
fn started(
    dir: &std::path::Path,
) -> (
    PausedQemu,
    PausedQemu,
    Ledger,
    WorkloadId,
    WorkloadId,
    Controller<StaticProvisioner, QmpMigrator>,
) {
    let src = PausedQemu::spawn_as(dir, "src", 1, &[]);
    let dst = PausedQemu::spawn_as(dir, "dst", 1, &["-incoming", "defer"]);
    assert_eq!(status(&src), "running");
    assert_eq!(status(&dst), "inmigrate");
    // Held before the switch-over until the test lets it go.
    qmp_once(
        &src.socket,
        "migrate-set-capabilities",
        &json!({"capabilities": [{"capability": "pause-before-switchover", "state": true}]}),
    );
    let (mut ledger, a, b) = crowded();
    let h2 = ledger.host_named("h2").unwrap().id;
    let migrator = QmpMigrator::new().with_vm("b", &src.socket).with_incoming(
        "h2",
        Incoming {
            socket: dst.socket.clone(),
            uri: format!("tcp:127.0.0.1:{}", free_port()),
        },
    );
    let mut c = mover(migrator);
    let r = c.tick(
        &mut ledger,
        &crowding(a, b, t(1)),
        &ShardSizes::default(),
        t(1),
    );
    assert_eq!(r.moves_started.len(), 1, "{r:?}");
    assert_eq!(r.moves_started[0].mv.workload, b);
    assert_eq!(r.moves_started[0].to, h2);
    (src, dst, ledger, a, b, c)
}

/// Ticks at `from`, `from + 1`, … until the source stands in `state` (20 s of wall time at
/// most), checking at each tick that `b` is still on h1.
fn tick_until(
    c: &mut Controller<StaticProvisioner, QmpMigrator>,
    ledger: &mut Ledger,
    (a, b): (WorkloadId, WorkloadId),
    src: &PausedQemu,
    state: &str,
    from: i64,
) -> i64 {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut at = from;
    loop {
        let r = c.tick(
            ledger,
            &crowding(a, b, t(at)),
            &ShardSizes::default(),
            t(at),
        );
        assert!(r.moved.is_empty(), "moved before it completed: {r:?}");
        assert_eq!(ledger.workload(b).unwrap().host, HostId(1));
        if migration(src) == state {
            return at;
        }
        assert!(
            std::time::Instant::now() < end,
            "the source never reached {state}: {}",
            migration(src)
        );
        at += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs qemu-system-x86_64; CI installs it and runs this"]
fn a_vm_moves_live_between_two_qemus_and_the_ledger_follows_only_once_it_completed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut src, dst, mut ledger, a, b, mut c) = started(dir.path());
    // Its memory copied, held before the switch-over: still b's VM on h1, in the ledger too.
    let at = tick_until(&mut c, &mut ledger, (a, b), &src, "pre-switchover", 2);
    for k in 1..=3 {
        let r = c.tick(
            &mut ledger,
            &crowding(a, b, t(at + k)),
            &ShardSizes::default(),
            t(at + k),
        );
        assert!(r.moved.is_empty(), "{r:?}");
        assert_eq!(ledger.workload(b).unwrap().host, HostId(1));
    }
    assert_eq!(status(&dst), "inmigrate");
    // Let go: QEMU switches over; the next tick after it says completed moves b to h2.
    qmp_once(
        &src.socket,
        "migrate-continue",
        &json!({"state": "pre-switchover"}),
    );
    let mut at = at + 4;
    let moved = loop {
        let r = c.tick(
            &mut ledger,
            &crowding(a, b, t(at)),
            &ShardSizes::default(),
            t(at),
        );
        if let Some(&(old, new)) = r.moved.first() {
            assert_eq!(old, b);
            break new;
        }
        assert!(at < 100, "never completed: {r:?}");
        at += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let h2 = ledger.host_named("h2").unwrap().id;
    assert_eq!(ledger.workload(moved).unwrap().host, h2);
    assert_eq!(ledger.check(), vec![]);
    // The VM runs on the destination; its old QEMU was told to quit.
    assert_eq!(status(&dst), "running");
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        src.exited()
    });
    assert!(gone, "the source QEMU is still there after the move");
}

#[test]
#[ignore = "needs qemu-system-x86_64; CI installs it and runs this"]
fn a_migration_that_fails_leaves_the_vm_running_where_it_was_and_the_ledger_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, mut ledger, a, b, mut c) = started(dir.path());
    let at = tick_until(&mut c, &mut ledger, (a, b), &src, "pre-switchover", 2);
    // The destination dies before the switch-over; the source is told to go on, and fails.
    drop(dst);
    qmp_once(
        &src.socket,
        "migrate-continue",
        &json!({"state": "pre-switchover"}),
    );
    let mut at = at + 1;
    let failed = loop {
        let r = c.tick(
            &mut ledger,
            &crowding(a, b, t(at)),
            &ShardSizes::default(),
            t(at),
        );
        assert!(r.moved.is_empty(), "{r:?}");
        if !r.failed_moves.is_empty() {
            break r;
        }
        assert!(at < 100, "the failure was never seen: {}", migration(&src));
        at += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(failed.failed_moves, vec![b]);
    assert!(
        failed.problems.iter().any(|p| p.contains("stays on")),
        "{failed:?}"
    );
    assert_eq!(ledger.workload(b).unwrap().host, HostId(1));
    assert!(c.in_flight.is_empty());
    // The VM goes on where it was.
    assert_eq!(status(&src), "running");
}
