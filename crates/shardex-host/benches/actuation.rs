//! Actuation latency (issue 14): from the decision (the actuator called with new limits) to
//! the limit in force (the read-back shows it), against the booted test guest, through QMP and,
//! with `--features libvirt`, through libvirt: memory (the balloon, alternately 384 and 320
//! MiB) and vCPUs (one more plugged each round; through libvirt, vCPUs and their quota).
//! Median and p99 of each, printed as a line per backend.
//!
//!   bash tools/guest/build.sh && cargo bench -p shardex-host --bench actuation [--features libvirt]
//!
//! Needs QEMU and the test guest (and libvirtd for libvirt); runs 40 rounds of each.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    missing_docs
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, KindState, Kinds, Limits};
use shardex_host::qmp::QmpActuator;
use shardex_host::testkit::guest::Guest;

const W: WorkloadId = WorkloadId(1);
const MIB: u64 = 1 << 20;
const ROUNDS: usize = 40;
/// vCPU plugs, one more each (the guest has 24 slots).
const CPU_ROUNDS: usize = 20;
const CPU: Kinds = [true, false, false, false];
const MEMORY: Kinds = [false, true, false, false];

fn limits(cpu: Option<u64>, memory: Option<u64>) -> Limits {
    Limits {
        hard: [cpu, memory, None, None],
        soft: [0; 4],
    }
}

/// Applies `l` for `kind`, then reads back until it shows `want` (re-applying as the agent
/// would when a read-back says "not yet"); the time from the first call to the match.
fn decision_to_in_force(
    a: &mut dyn Actuator,
    name: &str,
    l: &Limits,
    kinds: Kinds,
    kind: ResourceKind,
    want: u64,
) -> Duration {
    let t = Instant::now();
    let mut got = a.apply(W, name, l, kinds);
    loop {
        if got.get(kind) == &KindState::InForce(Some(want)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{kind} never reached {want}: {got:?}"
        );
        got = a.apply(W, name, l, kinds);
    }
}

fn stats(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    let p = |q: f64| d[((d.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

/// Memory and vCPU rounds through `a` on the VM `name`.
fn measure(backend: &str, a: &mut dyn Actuator, name: &str, cpu_at: impl Fn(usize) -> u64) {
    let (mut mem, mut cpu) = (Vec::new(), Vec::new());
    // vCPUs one more at a time (shardex does not unplug by default: see qmp/vcpus.rs).
    for i in 0..CPU_ROUNDS {
        let c = cpu_at(i);
        cpu.push(decision_to_in_force(
            a,
            name,
            &limits(Some(c), None),
            CPU,
            ResourceKind::Cpu,
            c,
        ));
    }
    for i in 0..ROUNDS {
        let m = if i % 2 == 0 { 384 } else { 320 } * MIB;
        mem.push(decision_to_in_force(
            a,
            name,
            &limits(None, Some(m)),
            MEMORY,
            ResourceKind::Memory,
            m,
        ));
    }
    let (m50, m99) = stats(mem);
    let n = cpu.len();
    let (c50, c99) = stats(cpu);
    println!(
        "{backend:8} memory (balloon 384 <-> 320 MiB): median {m50:>10.1?}, p99 {m99:>10.1?} | cpu: median {c50:>10.1?}, p99 {c99:>10.1?} over {n}"
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guest::boot(dir.path(), 512, 24);
    let mut qmp = QmpActuator::new(BTreeMap::from([("vm".to_string(), g.qmp.clone())]));
    let measured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // One more vCPU each round (the guest has 24 slots).
        measure("qmp", &mut qmp, "vm", |i| (i as u64 + 2) * 1000);
    }));
    if measured.is_err() {
        panic!(
            "the guest's console ends with:\n{}\nQEMU said: {}",
            g.console_tail(3000),
            std::fs::read_to_string(dir.path().join("qemu.err")).unwrap_or_default()
        );
    }
    drop(g);
    #[cfg(feature = "libvirt")]
    libvirt::measure_libvirt();
}

#[cfg(feature = "libvirt")]
mod libvirt {
    pub fn measure_libvirt() {
        let dir = shardex_host::testkit::guest::Guest::libvirt_dir();
        let name = format!("shardex-bench-{}", std::process::id());
        let _g =
            shardex_host::testkit::guest::Guest::boot_libvirt("qemu:///system", dir.path(), &name);
        let mut a = shardex_host::libvirt::LibvirtActuator::new("qemu:///system");
        // Cores through vCPUs and their quota: 2.5 and 1.5 in turn (the domain has 4 vCPUs).
        super::measure("libvirt", &mut a, &format!("libvirt:{name}"), |i| {
            if i % 2 == 0 { 2500 } else { 1500 }
        });
    }
}
