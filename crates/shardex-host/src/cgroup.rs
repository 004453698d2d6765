//! The cgroup actuator: a workload's limits written live to its cgroup (the workload's name is
//! the cgroup's path, as for the sampler) and read back, without restarting anything. Hard
//! limits are the workload's entitlement; the allocation planned from the forecast only sets
//! the soft knobs. cgroup v2: `cpu.max` (`quota period`) and `cpu.weight`, `memory.max` and
//! `memory.high`, `io.max` (`riops`/`wiops`); v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us`
//! and `cpu.shares`, `memory.limit_in_bytes` and `memory.soft_limit_in_bytes`,
//! `blkio.throttle.{read,write}_iops_device`. Each kind is applied on its own: its old values
//! are read first, and a refused write puts back that kind's earlier ones. IOPS are throttled
//! only on the block devices configured (`engine.iops_devices`). Network bandwidth needs the tc
//! actuator, so it is not managed here.

use std::path::{Path, PathBuf};

use shardex_core::ResourceKind;
use shardex_core::domain::{ReservationId, WorkloadId};
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};

use crate::sampler::cgroup_dir;

/// The CFS period the quota is expressed in: the kernel's default, 100 ms.
pub const PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts: 1 ms per period.
const MIN_QUOTA_US: u64 = 1_000;

/// A block device as the kernel names it in throttling files: `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDevice {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl std::str::FromStr for BlockDevice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a block device as major:minor (e.g. \"8:0\")");
        let (a, b) = s.trim().split_once(':').ok_or_else(bad)?;
        Ok(Self {
            major: a.parse().map_err(|_| bad())?,
            minor: b.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for BlockDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Which cgroup layout the host has, as the actuator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One unified hierarchy.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
    /// Per-controller hierarchies.
    V1 {
        /// The cpu hierarchy (CFS bandwidth).
        cpu: PathBuf,
        /// The memory hierarchy.
        memory: PathBuf,
        /// The blkio hierarchy, where mounted.
        blkio: Option<PathBuf>,
    },
}

/// Applies cpu, memory and IOPS allocations to cgroups.
#[derive(Debug, Clone)]
pub struct CgroupActuator {
    layout: Layout,
    devices: Vec<BlockDevice>,
    /// Allocations applied.
    pub actuations: u64,
}

/// Millicores a quota per period allows (`None`: unlimited).
fn millicores(quota_us: Option<u64>, period_us: u64) -> Option<u64> {
    match quota_us {
        Some(q) if period_us > 0 => Some(q.saturating_mul(1000) / period_us),
        _ => None,
    }
}

/// The value of `key=` for `device` in a v2 `io.max` (`None`: no line, or `max`).
fn io_max_value(text: &str, device: BlockDevice, key: &str) -> Option<u64> {
    let dev = device.to_string();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(dev.as_str()))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// The limit for `device` in a v1 `blkio.throttle.*_device` file (`None`: none).
fn v1_device_value(text: &str, device: BlockDevice) -> Option<u64> {
    let dev = device.to_string();
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(dev.as_str()))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// One file write of an actuation, with what puts the file back as it was.
struct Change {
    file: PathBuf,
    value: String,
    undo: String,
}

/// The cgroup v2 `cpu.weight` for a soft cpu target: 100 (the kernel's default) per core,
/// 1 to 10,000.
fn v2_weight(millicores: u64) -> u64 {
    (millicores / 10).clamp(1, 10_000)
}

/// The cgroup v1 `cpu.shares` for a soft cpu target: 1,024 (the default) per core, 2 to
/// 262,144.
fn v1_shares(millicores: u64) -> u64 {
    (millicores.saturating_mul(1024) / 1000).clamp(2, 262_144)
}

/// What a limit is written as: the number, or the layout's word for none.
fn limit_text(v: Option<u64>, none: &str) -> String {
    v.map_or_else(|| none.to_string(), |n| n.to_string())
}

/// What to write for one kind.
enum Target {
    /// Limits from the ledger.
    Set(Limits),
    /// shardex's limits taken off.
    Clear,
}

impl CgroupActuator {
    /// The layout under `/sys/fs/cgroup`, or `None` when there is no cgroup filesystem with
    /// cpu and memory control.
    pub fn probe() -> Option<Self> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The layout under `base`.
    pub fn probe_at(base: &Path) -> Option<Self> {
        Self::from_hierarchy(&crate::hierarchy::Hierarchy::probe_at(base)?)
    }

    /// The actuator for a probed hierarchy, or `None` when it lacks cpu or memory control
    /// (on v1 the cpu and memory controllers; blkio is used where it can throttle).
    pub fn from_hierarchy(h: &crate::hierarchy::Hierarchy) -> Option<Self> {
        use crate::hierarchy::Hierarchy;
        let layout = match h {
            Hierarchy::V2 { root } => Layout::V2 { root: root.clone() },
            Hierarchy::V1 {
                cpu, memory, blkio, ..
            } => Layout::V1 {
                cpu: cpu.clone()?,
                memory: memory.clone()?,
                blkio: blkio
                    .clone()
                    .filter(|d| d.join("blkio.throttle.read_iops_device").exists()),
            },
        };
        Some(Self {
            layout,
            devices: Vec::new(),
            actuations: 0,
        })
    }

    /// Also throttles IOPS on these block devices.
    pub fn with_iops_devices(mut self, devices: Vec<BlockDevice>) -> Self {
        self.devices = devices;
        self
    }

    /// The layout found.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The cgroup directory of `name` under `root`: it must exist and must not be the root
    /// (whose limits are the machine's and can't be set).
    fn dir(root: &Path, name: &str) -> Result<PathBuf, String> {
        if name.trim_start_matches('/').is_empty() {
            return Err("the root cgroup can't be limited: name a child cgroup".into());
        }
        let dir = cgroup_dir(root, name)
            .ok_or_else(|| format!("{name:?} climbs out of the hierarchy"))?;
        if !dir.is_dir() {
            return Err(format!(
                "no cgroup {name:?} (no directory {})",
                dir.display()
            ));
        }
        Ok(dir)
    }

    /// `dir/file`, which must exist (else the controller is not enabled there).
    fn control_file(dir: &Path, file: &str, controller: &str) -> Result<PathBuf, String> {
        let path = dir.join(file);
        if !path.exists() {
            return Err(format!(
                "{} is missing: enable the {controller} controller for this cgroup (the parent's cgroup.subtree_control on v2)",
                path.display()
            ));
        }
        Ok(path)
    }

    /// The hierarchy (and its controller's name) that `kind` is controlled in.
    fn root_of(&self, kind: ResourceKind) -> Result<&Path, String> {
        match (&self.layout, kind) {
            (Layout::V2 { root }, _) => Ok(root),
            (Layout::V1 { cpu, .. }, ResourceKind::Cpu) => Ok(cpu),
            (Layout::V1 { memory, .. }, ResourceKind::Memory) => Ok(memory),
            (Layout::V1 { blkio, .. }, ResourceKind::Iops) => blkio
                .as_deref()
                .ok_or_else(|| "iops devices are configured but blkio is not mounted".into()),
            (_, ResourceKind::Net) => Err("network is shaped by tc, not by cgroups".into()),
        }
    }

    /// The writes for one kind, in order, each with its undo, read before anything is written.
    fn plan(&self, name: &str, kind: ResourceKind, target: &Target) -> Result<Vec<Change>, String> {
        let dir = Self::dir(self.root_of(kind)?, name)?;
        let change = |file: PathBuf, value: String, undo: &dyn Fn(&str) -> String| {
            let old = read_text(&file)?;
            Ok::<_, String>(Change {
                undo: undo(&old),
                file,
                value,
            })
        };
        let same = |old: &str| old.to_string();
        let v2 = matches!(self.layout, Layout::V2 { .. });
        let mut changes = Vec::new();
        match kind {
            ResourceKind::Memory => {
                let (hard, soft) = match target {
                    Target::Set(l) => match l.hard(kind) {
                        Some(0) => return Err("a memory limit of 0 would kill the workload".into()),
                        Some(h) => (Some(h), Some(l.soft(kind).clamp(1, h))),
                        None => (None, None),
                    },
                    Target::Clear => (None, None),
                };
                if v2 {
                    let max = Self::control_file(&dir, "memory.max", "memory")?;
                    let high = Self::control_file(&dir, "memory.high", "memory")?;
                    // memory.high under memory.max: a soft limit that reclaims, never kills;
                    // a `high` event is a censored sample that lifts it at the next sample.
                    changes.push(change(max, limit_text(hard, "max"), &same)?);
                    changes.push(change(high, limit_text(soft, "max"), &same)?);
                } else {
                    let max = Self::control_file(&dir, "memory.limit_in_bytes", "memory")?;
                    let softf = Self::control_file(&dir, "memory.soft_limit_in_bytes", "memory")?;
                    changes.push(change(max, limit_text(hard, "-1"), &same)?);
                    changes.push(change(softf, limit_text(soft, "-1"), &same)?);
                }
            }
            ResourceKind::Cpu => {
                let (quota, soft) = match target {
                    Target::Set(l) => (
                        l.hard(kind)
                            .map(|m| (m.saturating_mul(PERIOD_US) / 1000).max(MIN_QUOTA_US)),
                        // No cpu entitlement: no quota, the lowest weight.
                        l.hard(kind).map_or(0, |h| l.soft(kind).min(h)),
                    ),
                    Target::Clear => (None, 1000),
                };
                if v2 {
                    let max = Self::control_file(&dir, "cpu.max", "cpu")?;
                    changes.push(change(
                        max,
                        format!("{} {PERIOD_US}", limit_text(quota, "max")),
                        &same,
                    )?);
                    if let Ok(weight) = Self::control_file(&dir, "cpu.weight", "cpu") {
                        changes.push(change(weight, v2_weight(soft).to_string(), &same)?);
                    }
                } else {
                    let period = Self::control_file(&dir, "cpu.cfs_period_us", "cpu")?;
                    let quota_file = Self::control_file(&dir, "cpu.cfs_quota_us", "cpu")?;
                    changes.push(change(period, PERIOD_US.to_string(), &same)?);
                    changes.push(change(quota_file, limit_text(quota, "-1"), &same)?);
                    if let Ok(shares) = Self::control_file(&dir, "cpu.shares", "cpu") {
                        changes.push(change(shares, v1_shares(soft).to_string(), &same)?);
                    }
                }
            }
            ResourceKind::Iops => {
                // A throttle of 0 means "none" to the kernel: the least kept is 1.
                let iops = match target {
                    Target::Set(l) => Some(l.hard(kind).unwrap_or(u64::MAX).max(1)),
                    Target::Clear => None,
                };
                if v2 {
                    let io = Self::control_file(&dir, "io.max", "io")?;
                    for &d in &self.devices {
                        let undo = move |old: &str| {
                            let v = |k| {
                                io_max_value(old, d, k).map_or("max".into(), |n: u64| n.to_string())
                            };
                            format!("{d} riops={} wiops={}", v("riops"), v("wiops"))
                        };
                        let n = limit_text(iops, "max");
                        changes.push(change(
                            io.clone(),
                            format!("{d} riops={n} wiops={n}"),
                            &undo,
                        )?);
                    }
                } else {
                    for file in [
                        "blkio.throttle.read_iops_device",
                        "blkio.throttle.write_iops_device",
                    ] {
                        let path = Self::control_file(&dir, file, "blkio")?;
                        for &d in &self.devices {
                            // 0 removes a v1 throttle.
                            let undo = move |old: &str| {
                                format!("{d} {}", v1_device_value(old, d).unwrap_or(0))
                            };
                            changes.push(change(
                                path.clone(),
                                format!("{d} {}", iops.unwrap_or(0)),
                                &undo,
                            )?);
                        }
                    }
                }
            }
            ResourceKind::Net => return Err("network is shaped by tc, not by cgroups".into()),
        }
        Ok(changes)
    }

    /// The hard limit in force for one kind (`None`: unlimited).
    fn in_force(&self, name: &str, kind: ResourceKind) -> Result<Option<u64>, String> {
        let dir = Self::dir(self.root_of(kind)?, name)?;
        let v2 = matches!(self.layout, Layout::V2 { .. });
        let devices = |text: &dyn Fn(BlockDevice) -> Option<u64>| {
            self.devices.iter().map(|&d| text(d)).min().flatten()
        };
        Ok(match (kind, v2) {
            (ResourceKind::Memory, true) => limit(&dir.join("memory.max"))?,
            (ResourceKind::Memory, false) => {
                let file = dir.join("memory.limit_in_bytes");
                // v1 prints a huge page-aligned number for "no limit".
                limit(&file)?.filter(|&b| b < (1 << 62))
            }
            (ResourceKind::Cpu, true) => {
                let file = dir.join("cpu.max");
                let text = read_text(&file)?;
                let mut parts = text.split_whitespace();
                let q = parse_limit(&file, parts.next().unwrap_or(""))?;
                let period = parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(PERIOD_US);
                millicores(q, period)
            }
            (ResourceKind::Cpu, false) => {
                let quota_file = dir.join("cpu.cfs_quota_us");
                let q: i64 = read_text(&quota_file)?
                    .parse()
                    .map_err(|_| format!("{} is not a number", quota_file.display()))?;
                let period = read_text(&dir.join("cpu.cfs_period_us"))?
                    .parse()
                    .unwrap_or(PERIOD_US);
                // v1 prints -1 for no limit.
                millicores(u64::try_from(q).ok(), period)
            }
            (ResourceKind::Iops, true) => {
                let text = read_text(&dir.join("io.max"))?;
                devices(&|d| {
                    Some(io_max_value(&text, d, "riops")?.min(io_max_value(&text, d, "wiops")?))
                })
            }
            (ResourceKind::Iops, false) => {
                let r = read_text(&dir.join("blkio.throttle.read_iops_device"))?;
                let w = read_text(&dir.join("blkio.throttle.write_iops_device"))?;
                devices(&|d| Some(v1_device_value(&r, d)?.min(v1_device_value(&w, d)?)))
            }
            (ResourceKind::Net, _) => return Err("network is shaped by tc, not by cgroups".into()),
        })
    }

    /// Writes one kind's changes; a write the kernel refuses (e.g. EBUSY for a memory limit it
    /// can't reclaim down to) puts back the ones before it, so that kind is left as it was.
    fn write_all(changes: &[Change]) -> Result<(), String> {
        for (i, c) in changes.iter().enumerate() {
            if let Err(e) = write_text(&c.file, &c.value) {
                for done in changes[..i].iter().rev() {
                    if let Err(undo) = write_text(&done.file, &done.undo) {
                        tracing::error!(error = %undo, "could not put a limit back");
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn each(&mut self, name: &str, kinds: Kinds, target: Option<&Target>) -> Applied {
        let mut out = Applied::default();
        for kind in ResourceKind::ALL {
            if !kinds[kind.index()] || !self.manages(name, kind) {
                continue;
            }
            let done = match target {
                Some(t) => self
                    .plan(name, kind, t)
                    .and_then(|changes| Self::write_all(&changes))
                    .and_then(|()| self.in_force(name, kind)),
                None => self.in_force(name, kind),
            };
            out.set(
                kind,
                match done {
                    Ok(v) => KindState::InForce(v),
                    Err(e) => KindState::Failed(e),
                },
            );
        }
        if target.is_some() {
            self.actuations += 1;
        }
        out
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

fn write_text(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// A limit as the kernel prints it in `path`: a number, or `max`/`-1` for none.
fn limit(path: &Path) -> Result<Option<u64>, String> {
    parse_limit(path, &read_text(path)?)
}

fn parse_limit(path: &Path, text: &str) -> Result<Option<u64>, String> {
    if text == "max" || text == "-1" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{} holds {text:?}, not a limit", path.display()))
}

impl Actuator for CgroupActuator {
    fn apply(&mut self, _: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        self.each(name, kinds, Some(&Target::Set(*limits)))
    }

    fn read(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, None)
    }

    fn clear(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, Some(&Target::Clear))
    }

    fn manages(&self, _: &str, kind: ResourceKind) -> bool {
        match kind {
            ResourceKind::Cpu | ResourceKind::Memory => true,
            ResourceKind::Iops => !self.devices.is_empty(),
            ResourceKind::Net => false,
        }
    }

    // A reservation's group is a parent cgroup: the same files, whose limits the kernel
    // applies to the sum of its children.
    fn manages_group(&self, name: &str, kind: ResourceKind) -> bool {
        self.manages(name, kind)
    }

    fn apply_group(
        &mut self,
        _: ReservationId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        self.each(name, kinds, Some(&Target::Set(*limits)))
    }

    fn read_group(&mut self, _: ReservationId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, None)
    }
}

#[cfg(test)]
mod tests {
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

    fn why(a: &Applied, kind: ResourceKind) -> String {
        match a.get(kind) {
            KindState::Failed(e) => e.clone(),
            other => panic!("{kind} did not fail: {other:?}"),
        }
    }

    fn v2_tree(base: &Path, name: &str) -> PathBuf {
        std::fs::write(base.join("cgroup.controllers"), "cpu io memory\n").unwrap();
        let cg = base.join(name);
        std::fs::create_dir_all(&cg).unwrap();
        for (f, v) in [
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("memory.max", "max\n"),
            ("memory.high", "max\n"),
        ] {
            std::fs::write(cg.join(f), v).unwrap();
        }
        cg
    }

    #[test]
    fn v2_hard_limits_are_the_entitlement_and_soft_knobs_the_forecast() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let cg = v2_tree(base, "web.slice");
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
        let cg = v2_tree(base, "db");
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
        let other = v2_tree(base, "noio");
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
        let mut a =
            CgroupActuator::probe().expect("no cgroup filesystem with cpu and memory control");
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
}
