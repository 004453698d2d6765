//! One suite for the `Actuator` port, run against every adapter that can run here: the
//! simulated actuator, the cgroup actuator on laid-out v1 and v2 trees (the kernel's file
//! formats) and, `#[ignore]`d because it needs root (CI runs it), on this machine's kernel.
//! Then one for the `Sampler` port: a reading only for a cgroup that exists, rates only
//! after a first reading.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::path::PathBuf;

use shardex_core::ports::{
    ALL_KINDS, Actuator, KindState, Kinds, Limits, Sampler, SimulatedActuator,
};
use shardex_core::{ResourceKind, Timestamp, WorkloadId};
use shardex_host::cgroup::CgroupActuator;
use shardex_host::sampler::CgroupSampler;
use shardex_host::testkit::{laid_out_v1, laid_out_v2};

const W: WorkloadId = WorkloadId(5);

fn limits(cpu: u64, memory: u64) -> Limits {
    Limits {
        hard: [Some(cpu), Some(memory), None, None],
        soft: [cpu / 10, memory / 4, 0, 0],
    }
}

fn state(a: &shardex_core::ports::Applied, kind: ResourceKind) -> KindState {
    a.get(kind).clone()
}

/// The port's contract, whatever the adapter, for a workload `name` it manages cpu and
/// memory of.
fn contract(a: &mut dyn Actuator, name: &str) {
    let kinds: Kinds = std::array::from_fn(|i| a.manages(name, ResourceKind::ALL[i]));
    assert!(
        kinds[ResourceKind::Cpu.index()] && kinds[ResourceKind::Memory.index()],
        "{name}: cpu and memory are managed"
    );
    // What is applied reads back as asked, kind by kind; unmanaged kinds say so.
    let want = limits(1500, 256 << 20);
    let got = a.apply(W, name, &want, ALL_KINDS);
    for kind in ResourceKind::ALL {
        let expected = if kinds[kind.index()] {
            KindState::InForce(a.expected(name, kind, want.hard(kind)))
        } else {
            KindState::Unmanaged
        };
        assert_eq!(state(&got, kind), expected, "{name}: {kind} after apply");
    }
    // Reading writes nothing and shows the same.
    let read = a.read(W, name, kinds);
    for kind in [ResourceKind::Cpu, ResourceKind::Memory] {
        assert_eq!(state(&read, kind), state(&got, kind), "{name}: {kind} read");
    }
    // Asking for one kind changes and reports that kind only.
    let cut = limits(500, 128 << 20);
    let only_cpu = a.apply(W, name, &cut, [true, false, false, false]);
    assert_eq!(
        state(&only_cpu, ResourceKind::Cpu),
        KindState::InForce(a.expected(name, ResourceKind::Cpu, Some(500)))
    );
    assert_eq!(state(&only_cpu, ResourceKind::Memory), KindState::Unmanaged);
    let read = a.read(W, name, kinds);
    assert_eq!(
        state(&read, ResourceKind::Memory),
        KindState::InForce(Some(256 << 20)),
        "{name}: memory left as it was"
    );
    // Raised again, then taken off: no limit in force.
    let raised = a.apply(W, name, &limits(2000, 512 << 20), kinds);
    assert_eq!(
        state(&raised, ResourceKind::Memory),
        KindState::InForce(Some(512 << 20))
    );
    let cleared = a.clear(W, name, kinds);
    for kind in [ResourceKind::Cpu, ResourceKind::Memory] {
        assert_eq!(
            state(&cleared, kind),
            KindState::InForce(None),
            "{name}: {kind} cleared"
        );
    }
}

#[test]
fn the_simulated_actuator_keeps_the_contract() {
    contract(&mut SimulatedActuator::default(), "anything");
}

#[test]
fn the_cgroup_actuator_keeps_the_contract_on_v2_and_v1_trees() {
    let dir = tempfile::tempdir().unwrap();
    laid_out_v2(dir.path(), "web.slice");
    contract(
        &mut CgroupActuator::probe_at(dir.path()).unwrap(),
        "web.slice",
    );
    let dir = tempfile::tempdir().unwrap();
    laid_out_v1(dir.path(), "web.slice");
    contract(
        &mut CgroupActuator::probe_at(dir.path()).unwrap(),
        "web.slice",
    );
}

/// A child cgroup of this machine's hierarchies, removed when dropped.
struct Real(Vec<PathBuf>);

impl Drop for Real {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
#[ignore = "needs root and cgroups with cpu and memory control; CI runs it with --include-ignored"]
fn the_cgroup_actuator_keeps_the_contract_on_this_machine_s_kernel() {
    let tree = shardex_host::tree::CgroupTree::probe().unwrap();
    let name = format!("shardex-suite-{}", std::process::id());
    tree.create(&name).unwrap();
    let _guard = Real(tree.roots().iter().map(|r| r.join(&name)).collect());
    contract(&mut CgroupActuator::probe().unwrap(), &name);
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

/// The `Sampler` port's contract for a cgroup `name` that exists and one that doesn't.
fn sampler_contract(s: &mut dyn Sampler, name: &str) {
    assert!(
        s.sample("no/such/cgroup", t(1000)).unwrap().is_none(),
        "a cgroup that is not there gives no reading"
    );
    let first = s.sample(name, t(1000)).unwrap().expect("a reading");
    assert_eq!(first.usage[0], None, "no cpu rate from one reading");
    assert!(first.usage[1].is_some(), "memory is read as is");
    assert_eq!(first.censored, [false; 4], "old counters are history");
    let second = s.sample(name, t(2000)).unwrap().expect("a reading");
    assert!(second.usage[0].is_some(), "a rate from two readings");
}

#[test]
fn the_cgroup_sampler_keeps_the_contract_on_v2_and_v1_trees() {
    let dir = tempfile::tempdir().unwrap();
    laid_out_v2(dir.path(), "web.slice");
    let cg = dir.path().join("web.slice");
    std::fs::write(cg.join("cpu.stat"), "usage_usec 100\nnr_throttled 0\n").unwrap();
    std::fs::write(cg.join("memory.current"), "4096\n").unwrap();
    sampler_contract(
        &mut CgroupSampler::probe_at(dir.path()).unwrap(),
        "web.slice",
    );
    let dir = tempfile::tempdir().unwrap();
    laid_out_v1(dir.path(), "web.slice");
    for (d, f, v) in [
        ("cpuacct", "cpuacct.usage", "100\n"),
        ("memory", "memory.usage_in_bytes", "4096\n"),
    ] {
        let cg = dir.path().join(d).join("web.slice");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(dir.path().join(d).join(f), v).unwrap();
        std::fs::write(cg.join(f), v).unwrap();
    }
    sampler_contract(
        &mut CgroupSampler::probe_at(dir.path()).unwrap(),
        "web.slice",
    );
}

#[test]
#[ignore = "needs a cgroup filesystem at /sys/fs/cgroup; CI runs it with --include-ignored"]
fn the_cgroup_sampler_keeps_the_contract_on_this_machine_s_kernel() {
    let tree = shardex_host::tree::CgroupTree::probe().unwrap();
    let name = format!("shardex-sampler-suite-{}", std::process::id());
    tree.create(&name).unwrap();
    let _guard = Real(tree.roots().iter().map(|r| r.join(&name)).collect());
    sampler_contract(&mut CgroupSampler::probe().unwrap(), &name);
}
