//! The cgroup actuator on laid-out v1 and v2 trees, and on this machine's kernel.

use super::*;
use shardex_core::ports::ALL_KINDS;

const W: WorkloadId = WorkloadId(7);

fn lim(cpu: Option<u64>, memory: u64) -> Limits {
    Limits {
        hard: [cpu, Some(memory), Some(5), Some(6)],
        // The forecast: a tenth of the entitlement.
        soft: [cpu.unwrap_or(0) / 10, memory / 10, 0, 0],
    }
}

fn got(a: &Applied, kind: ResourceKind) -> Option<u64> {
    match a.get(kind) {
        KindState::InForce(v) => *v,
        other => panic!("{kind} not in force: {other:?}"),
    }
}

/// The port's cause of `kind`'s failure, checked to carry the cgroup's own error.
fn cause(a: &Applied, kind: ResourceKind) -> shardex_core::ports::FailureCause {
    match a.get(kind) {
        KindState::Failed(e) => {
            let typed = e
                .adapter_error()
                .and_then(|s| s.downcast_ref::<CgroupError>());
            assert!(typed.is_some(), "{e} carries no CgroupError");
            e.cause()
        }
        other => panic!("{kind} did not fail: {other:?}"),
    }
}

fn why(a: &Applied, kind: ResourceKind) -> String {
    match a.get(kind) {
        KindState::Failed(e) => e.to_string(),
        other => panic!("{kind} did not fail: {other:?}"),
    }
}

#[test]
fn v2_hard_limits_are_the_entitlement_and_soft_knobs_the_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let cg = crate::testkit::laid_out_v2(base, "web.slice");
    let mut a = CgroupActuator::probe_at(base).unwrap();
    assert!(matches!(a.layout(), Layout::V2 { .. }));
    let in_force = a.apply(W, "web.slice", &lim(Some(1500), 256 << 20), ALL_KINDS);
    let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap();
    assert_eq!(read("cpu.max"), "150000 100000");
    assert_eq!(
        read("cpu.weight"),
        "15",
        "150 millicores forecast: weight 15"
    );
    assert_eq!(read("memory.max"), (256u64 << 20).to_string());
    assert_eq!(read("memory.high"), ((256u64 << 20) / 10).to_string());
    assert_eq!(got(&in_force, ResourceKind::Cpu), Some(1500));
    assert_eq!(got(&in_force, ResourceKind::Memory), Some(256 << 20));
    assert_eq!(in_force.get(ResourceKind::Net), &KindState::Unmanaged);
    assert!(
        a.manages("web.slice", ResourceKind::Cpu) && !a.manages("web.slice", ResourceKind::Net)
    );
    // The smallest quota the kernel takes is 1 ms per period: 10 millicores.
    let small = a.apply(W, "/web.slice", &lim(Some(3), 1 << 20), ALL_KINDS);
    assert_eq!(got(&small, ResourceKind::Cpu), Some(10));
    // No cpu entitlement: no guarantee, so no quota either, and the lowest weight.
    let none = a.apply(W, "/web.slice", &lim(None, 1 << 20), ALL_KINDS);
    assert_eq!(got(&none, ResourceKind::Cpu), None);
    assert_eq!(read("cpu.max"), "max 100000");
    assert_eq!(read("cpu.weight"), "1");
    // Unbinding takes every limit off.
    let cleared = a.clear(W, "web.slice", ALL_KINDS);
    assert_eq!(got(&cleared, ResourceKind::Memory), None);
    assert_eq!(
        (read("memory.max"), read("memory.high")),
        ("max".into(), "max".into())
    );
    assert_eq!(read("cpu.weight"), "100");
}

#[test]
fn iops_are_throttled_on_the_configured_devices_and_fail_alone() {
    let dev: BlockDevice = "254:0".parse().unwrap();
    assert_eq!(dev.to_string(), "254:0");
    assert!("sda".parse::<BlockDevice>().is_err());
    // v2: io.max, one line per device.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let cg = crate::testkit::laid_out_v2(base, "db");
    std::fs::write(cg.join("io.max"), "").unwrap();
    let a = CgroupActuator::probe_at(base).unwrap();
    assert!(!a.manages("db", ResourceKind::Iops), "no device, no IOPS");
    let mut a = a.with_iops_devices(vec![dev]);
    assert!(a.manages("db", ResourceKind::Iops));
    // A file that only keeps the last line written, like the kernel's, reads back as set.
    let in_force = a.apply(W, "db", &lim(Some(100), 1 << 20), ALL_KINDS);
    assert_eq!(
        std::fs::read_to_string(cg.join("io.max")).unwrap(),
        "254:0 riops=6 wiops=6"
    );
    assert_eq!(got(&in_force, ResourceKind::Iops), Some(6));
    // A cgroup without the io controller fails its IOPS, and its cpu and memory are
    // still applied.
    let other = crate::testkit::laid_out_v2(base, "noio");
    let in_force = a.apply(W, "noio", &lim(Some(700), 1 << 20), ALL_KINDS);
    assert!(why(&in_force, ResourceKind::Iops).contains("io controller"));
    assert_eq!(got(&in_force, ResourceKind::Cpu), Some(700));
    assert_eq!(
        std::fs::read_to_string(other.join("cpu.max")).unwrap(),
        "70000 100000"
    );
    // v1: blkio.throttle files, `major:minor value`.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    for d in ["cpu/app", "memory/app", "blkio/app"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(base.join("cpu/cpu.cfs_period_us"), "100000").unwrap();
    std::fs::write(base.join("memory/memory.limit_in_bytes"), "0").unwrap();
    std::fs::write(base.join("blkio/blkio.throttle.read_iops_device"), "").unwrap();
    for (f, v) in [
        ("cpu/app/cpu.cfs_period_us", "100000"),
        ("cpu/app/cpu.cfs_quota_us", "-1"),
        ("memory/app/memory.limit_in_bytes", "0"),
        ("memory/app/memory.soft_limit_in_bytes", "0"),
        ("blkio/app/blkio.throttle.read_iops_device", ""),
        ("blkio/app/blkio.throttle.write_iops_device", ""),
    ] {
        std::fs::write(base.join(f), v).unwrap();
    }
    let mut a = CgroupActuator::probe_at(base)
        .unwrap()
        .with_iops_devices(vec![dev]);
    // 0 IOPS would lift a v1 throttle: the least kept is 1.
    let mut l = lim(Some(100), 1 << 20);
    l.hard[ResourceKind::Iops.index()] = Some(0);
    let in_force = a.apply(W, "app", &l, ALL_KINDS);
    assert_eq!(got(&in_force, ResourceKind::Iops), Some(1));
    for f in ["read", "write"] {
        let path = base.join(format!("blkio/app/blkio.throttle.{f}_iops_device"));
        assert_eq!(std::fs::read_to_string(path).unwrap(), "254:0 1");
    }
}

#[test]
fn v1_writes_the_cfs_quota_the_shares_and_both_memory_limits() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    for d in ["cpu,cpuacct/app", "memory/app"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    for (f, v) in [
        ("cpu,cpuacct/cpu.cfs_period_us", "100000"),
        ("cpu,cpuacct/app/cpu.cfs_period_us", "50000"),
        ("cpu,cpuacct/app/cpu.cfs_quota_us", "-1"),
        ("cpu,cpuacct/app/cpu.shares", "1024"),
        ("memory/memory.limit_in_bytes", "0"),
        ("memory/app/memory.limit_in_bytes", "0"),
        ("memory/app/memory.soft_limit_in_bytes", "0"),
    ] {
        std::fs::write(base.join(f), v).unwrap();
    }
    let mut a = CgroupActuator::probe_at(base).unwrap();
    assert!(matches!(a.layout(), Layout::V1 { .. }));
    let in_force = a.apply(W, "app", &lim(Some(2000), 1 << 30), ALL_KINDS);
    assert_eq!(got(&in_force, ResourceKind::Cpu), Some(2000));
    assert_eq!(got(&in_force, ResourceKind::Memory), Some(1 << 30));
    let read = |p: &str| std::fs::read_to_string(base.join(p)).unwrap();
    assert_eq!(read("cpu,cpuacct/app/cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu,cpuacct/app/cpu.cfs_quota_us"), "200000");
    assert_eq!(read("cpu,cpuacct/app/cpu.shares"), "204");
    assert_eq!(read("memory/app/memory.limit_in_bytes"), "1073741824");
    assert_eq!(read("memory/app/memory.soft_limit_in_bytes"), "107374182");
    let cleared = a.clear(W, "app", ALL_KINDS);
    assert_eq!(got(&cleared, ResourceKind::Cpu), None);
    assert_eq!(read("cpu,cpuacct/app/cpu.cfs_quota_us"), "-1");
    assert_eq!(read("memory/app/memory.limit_in_bytes"), "-1");
}

#[test]
fn bad_targets_are_refused_with_the_reason_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    std::fs::write(base.join("cgroup.controllers"), "cpu memory\n").unwrap();
    std::fs::create_dir(base.join("nocpu")).unwrap();
    std::fs::write(base.join("nocpu/memory.max"), "max").unwrap();
    std::fs::write(base.join("nocpu/memory.high"), "max").unwrap();
    let mut a = CgroupActuator::probe_at(base).unwrap();
    let l = lim(Some(100), 1 << 20);
    let cpu = ResourceKind::Cpu;
    assert!(why(&a.apply(W, "/", &l, ALL_KINDS), cpu).contains("root cgroup"));
    assert!(why(&a.apply(W, "../etc", &l, ALL_KINDS), cpu).contains("climbs out"));
    assert!(why(&a.apply(W, "gone.slice", &l, ALL_KINDS), cpu).contains("no cgroup"));
    use shardex_core::ports::FailureCause as C;
    assert_eq!(cause(&a.apply(W, "/", &l, ALL_KINDS), cpu), C::Invalid);
    assert_eq!(
        cause(&a.apply(W, "gone.slice", &l, ALL_KINDS), cpu),
        C::Missing
    );
    assert_eq!(
        cause(&a.apply(W, "nocpu", &l, ALL_KINDS), cpu),
        C::Unsupported
    );
    // No cpu controller: cpu fails, memory is applied all the same.
    let half = a.apply(W, "nocpu", &l, ALL_KINDS);
    assert!(why(&half, cpu).contains("cpu controller"));
    assert_eq!(got(&half, ResourceKind::Memory), Some(1 << 20));
    let zero = a.apply(W, "nocpu", &lim(Some(10), 0), ALL_KINDS);
    assert!(why(&zero, ResourceKind::Memory).contains("memory limit of 0"));
    assert_eq!(
        std::fs::read_to_string(base.join("nocpu/memory.max")).unwrap(),
        (1u64 << 20).to_string(),
        "the refused zero left the memory limit alone"
    );
    // A memory.high the kernel refuses after memory.max was set puts memory.max back
    // (here the refusal is /proc/version's: readable, never writable).
    std::fs::remove_file(base.join("nocpu/memory.high")).unwrap();
    std::os::unix::fs::symlink("/proc/version", base.join("nocpu/memory.high")).unwrap();
    let e = why(
        &a.apply(W, "nocpu", &lim(Some(10), 2 << 20), ALL_KINDS),
        ResourceKind::Memory,
    );
    assert!(e.contains("memory.high"), "{e}");
    let refused = a.apply(W, "nocpu", &lim(Some(10), 2 << 20), ALL_KINDS);
    assert_eq!(cause(&refused, ResourceKind::Memory), C::Refused);
    assert_eq!(
        std::fs::read_to_string(base.join("nocpu/memory.max")).unwrap(),
        (1u64 << 20).to_string()
    );
    assert!(CgroupActuator::probe_at(&base.join("nocpu")).is_none());
}

/// A child cgroup of this machine's real hierarchy, removed when dropped.
struct RealCgroup {
    dirs: Vec<PathBuf>,
    name: String,
}

impl Drop for RealCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn real_cgroup(a: &CgroupActuator) -> RealCgroup {
    let name = format!("shardex-test-{}", std::process::id());
    let dirs: Vec<PathBuf> = match a.layout() {
        Layout::V2 { root } => vec![root.join(&name)],
        Layout::V1 { cpu, memory, blkio } => [Some(cpu), Some(memory), blkio.as_ref()]
            .into_iter()
            .flatten()
            .map(|d| d.join(&name))
            .collect(),
    };
    let guard = RealCgroup {
        dirs: dirs.clone(),
        name,
    };
    for d in &dirs {
        std::fs::create_dir(d)
            .unwrap_or_else(|e| panic!("can't create the cgroup {}: {e}", d.display()));
    }
    guard
}

#[test]
#[ignore = "needs root and a writable cgroup hierarchy with cpu and memory control; CI runs it"]
fn this_machine_s_kernel_takes_the_limits() {
    let mut a = CgroupActuator::probe().expect("no cgroup filesystem with cpu and memory control");
    let cg = real_cgroup(&a);
    let in_force = a.apply(W, &cg.name, &lim(Some(250), 64 << 20), ALL_KINDS);
    assert_eq!(got(&in_force, ResourceKind::Cpu), Some(250));
    assert_eq!(got(&in_force, ResourceKind::Memory), Some(64 << 20));
    // And again, larger: a live change, nothing restarted.
    let grown = a.apply(W, &cg.name, &lim(Some(1200), 128 << 20), ALL_KINDS);
    assert_eq!(got(&grown, ResourceKind::Cpu), Some(1200));
    assert_eq!(
        got(&a.read(W, &cg.name, ALL_KINDS), ResourceKind::Memory),
        Some(128 << 20)
    );
    // IOPS on this machine's first disk, where blkio (v1) or io (v2) is there.
    let disk = std::fs::read_dir("/sys/block").ok().and_then(|entries| {
        entries
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p))
            })
            .find_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
            .and_then(|d| d.trim().parse::<BlockDevice>().ok())
    });
    let throttles = match a.layout() {
        Layout::V1 { blkio, .. } => blkio.is_some(),
        Layout::V2 { root } => root.join(&cg.name).join("io.max").exists(),
    };
    if let (Some(disk), true) = (disk, throttles) {
        let mut a = a.clone().with_iops_devices(vec![disk]);
        let limited = a.apply(W, &cg.name, &lim(Some(1200), 128 << 20), ALL_KINDS);
        assert_eq!(got(&limited, ResourceKind::Iops), Some(6));
        let cleared = a.clear(W, &cg.name, ALL_KINDS);
        assert_eq!(got(&cleared, ResourceKind::Iops), None);
    } else {
        eprintln!("IOPS not checked: no disk or no block throttling on this machine");
    }
    let cleared = a.clear(W, &cg.name, ALL_KINDS);
    assert_eq!(got(&cleared, ResourceKind::Cpu), None);
    assert_eq!(got(&cleared, ResourceKind::Memory), None);
}
