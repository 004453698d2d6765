//! A VM's bandwidth through tc on its tap device (issue 14): the test guest with a virtio NIC
//! on a tap; the tc actuator shapes the tap (the host's egress on it is the VM's inbound
//! traffic), reads it back, and a transfer into the guest feels it. `#[ignore]`d: it needs root
//! (a tap, addresses, tc), QEMU and the built guest; `.ci/run` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, KindState, Kinds, Limits};
use shardex_host::tc::TcActuator;
use shardex_host::testkit::guest::Guest;
use shardex_host::testkit::in_force;

const NET: Kinds = [false, false, true, false];

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `bytes` to the guest's listener at `addr` (started just before) and times it, until
/// the guest has them all.
fn send(g: &mut Guest, addr: &str, bytes: usize) -> Duration {
    g.run("nc -l -p 5001 > /dev/null &");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "the guest's listener: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let t = Instant::now();
    let chunk = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        conn.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    // The listener exits once it has read everything.
    let mut buf = [0u8; 1];
    let _ = std::io::Read::read(&mut conn, &mut buf);
    t.elapsed()
}

#[test]
#[ignore = "needs root, qemu-system-x86_64 and the test guest (tools/guest/build.sh); CI runs it with --ignored"]
fn a_vm_s_tap_is_shaped_by_tc_and_the_guest_feels_it() {
    let id = std::process::id() % 200 + 20;
    let tap = format!("shxtap{id}");
    let dir = tempfile::tempdir().unwrap();
    let mut g = Guest::boot_with(dir.path(), 256, 1, &[], Some(&tap));
    ip(&["addr", "add", &format!("10.213.{id}.1/24"), "dev", &tap]);
    ip(&["link", "set", &tap, "up"]);
    g.run(&format!(
        "ip addr add 10.213.{id}.2/24 dev eth0 && ip link set eth0 up"
    ));
    let addr = format!("10.213.{id}.2:5001");
    let bytes = 4 << 20;
    let free = send(&mut g, &addr, bytes);

    let mut tc = TcActuator::new(BTreeMap::from([("vm".to_string(), tap.clone())]));
    let rate = 16_000_000; // 16 Mbit/s: 4 MiB in about 2.1 s
    let limits = Limits {
        hard: [None, None, Some(rate), None],
        soft: [0; 4],
    };
    let shaped = tc.apply(WorkloadId(1), "vm", &limits, NET);
    assert_eq!(in_force(&shaped, ResourceKind::Net), rate);
    let slow = send(&mut g, &addr, bytes);
    let cleared = tc.clear(WorkloadId(1), "vm", NET);
    assert_eq!(cleared.get(ResourceKind::Net), &KindState::InForce(None));
    let fast = send(&mut g, &addr, bytes);
    eprintln!("4 MiB into the guest: {free:?} unshaped, {slow:?} at 16 Mbit/s, {fast:?} cleared");
    assert!(slow >= Duration::from_millis(1600), "{slow:?} at 16 Mbit/s");
    assert!(fast * 3 < slow, "cleared: {fast:?}");
}
