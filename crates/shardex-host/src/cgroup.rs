//! The cgroup actuator: a workload's cpu, memory and storage-IOPS allocation written live to
//! its cgroup (the workload's name is the cgroup's path, as for the sampler) and read back,
//! without restarting anything. cgroup v2: `cpu.max` (`quota period`), `memory.max` and
//! `io.max` (`riops`/`wiops`); v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us`,
//! `memory.limit_in_bytes` and `blkio.throttle.{read,write}_iops_device`. IOPS are throttled
//! only on the block devices configured (`engine.iops_devices`). Network bandwidth needs the tc
//! actuator, so it is not managed here.

use std::path::{Path, PathBuf};

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, ActuatorError};
use shardex_core::shard::PhysicalVector;

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

fn error(workload: WorkloadId, reason: impl Into<String>) -> ActuatorError {
    ActuatorError {
        workload,
        reason: reason.into(),
    }
}

fn write(workload: WorkloadId, path: &Path, value: &str) -> Result<(), ActuatorError> {
    std::fs::write(path, value).map_err(|e| {
        error(
            workload,
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

fn read(workload: WorkloadId, path: &Path) -> Result<String, ActuatorError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| error(workload, format!("reading {}: {e}", path.display())))
}

/// A limit as the kernel prints it: a number, or `max` for none.
fn limit(workload: WorkloadId, path: &Path, text: &str) -> Result<Option<u64>, ActuatorError> {
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        error(
            workload,
            format!("{} holds {text:?}, not a limit", path.display()),
        )
    })
}

/// Millicores a quota per period allows (`None`: unlimited).
fn millicores(quota_us: Option<u64>, period_us: u64) -> u64 {
    match quota_us {
        Some(q) if period_us > 0 => q.saturating_mul(1000) / period_us,
        _ => u64::MAX,
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

impl CgroupActuator {
    /// The layout under `/sys/fs/cgroup`, or `None` when there is no cgroup filesystem with
    /// cpu and memory control.
    pub fn probe() -> Option<Self> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The layout under `base`.
    pub fn probe_at(base: &Path) -> Option<Self> {
        let layout = if base.join("cgroup.controllers").exists() {
            Layout::V2 {
                root: base.to_path_buf(),
            }
        } else {
            // v1 mounts cpu alone or together with cpuacct, depending on the distribution.
            let cpu = ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
                .iter()
                .map(|d| base.join(d))
                .find(|d| d.join("cpu.cfs_period_us").exists())?;
            let memory = base.join("memory");
            if !memory.join("memory.limit_in_bytes").exists() {
                return None;
            }
            let blkio = Some(base.join("blkio"))
                .filter(|d| d.join("blkio.throttle.read_iops_device").exists());
            Layout::V1 { cpu, memory, blkio }
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
    fn dir(workload: WorkloadId, root: &Path, name: &str) -> Result<PathBuf, ActuatorError> {
        if name.trim_start_matches('/').is_empty() {
            return Err(error(
                workload,
                "the root cgroup can't be limited: name a child cgroup",
            ));
        }
        let dir = cgroup_dir(root, name)
            .ok_or_else(|| error(workload, format!("{name:?} climbs out of the hierarchy")))?;
        if !dir.is_dir() {
            return Err(error(
                workload,
                format!("no cgroup {name:?} (no directory {})", dir.display()),
            ));
        }
        Ok(dir)
    }

    /// `dir/file`, which must exist (else the controller is not enabled there).
    fn control_file(
        workload: WorkloadId,
        dir: &Path,
        file: &str,
        controller: &str,
    ) -> Result<PathBuf, ActuatorError> {
        let path = dir.join(file);
        if !path.exists() {
            return Err(error(
                workload,
                format!(
                    "{} is missing: enable the {controller} controller for this cgroup (the parent's cgroup.subtree_control on v2)",
                    path.display()
                ),
            ));
        }
        Ok(path)
    }

    /// The writes that set `allocation`, in order: memory first (the one the kernel may
    /// refuse), then cpu, then IOPS; each with its undo, read before anything is written.
    fn plan(
        &self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<Vec<Change>, ActuatorError> {
        let bytes = allocation.get(ResourceKind::Memory);
        if bytes == 0 {
            return Err(error(
                workload,
                "a memory allocation of 0 would kill the workload",
            ));
        }
        // No cpu (0 shards) is enforced as the least the kernel allows: a quota of 0 can't be
        // written, and "no limit" would be the opposite of what the ledger says.
        let quota =
            (allocation.get(ResourceKind::Cpu).saturating_mul(PERIOD_US) / 1000).max(MIN_QUOTA_US);
        // Likewise IOPS: a throttle of 0 means "none" to the kernel.
        let iops = allocation.get(ResourceKind::Iops).max(1);
        let change = |file: PathBuf, value: String, undo: &dyn Fn(&str) -> String| {
            let old = read(workload, &file)?;
            Ok::<_, ActuatorError>(Change {
                undo: undo(&old),
                file,
                value,
            })
        };
        let same = |old: &str| old.to_string();
        let mut changes = Vec::new();
        match &self.layout {
            Layout::V2 { root } => {
                let dir = Self::dir(workload, root, name)?;
                let memory = Self::control_file(workload, &dir, "memory.max", "memory")?;
                let cpu = Self::control_file(workload, &dir, "cpu.max", "cpu")?;
                changes.push(change(memory, bytes.to_string(), &same)?);
                changes.push(change(cpu, format!("{quota} {PERIOD_US}"), &same)?);
                if !self.devices.is_empty() {
                    let io = Self::control_file(workload, &dir, "io.max", "io")?;
                    for &d in &self.devices {
                        let undo = move |old: &str| {
                            let v = |k| {
                                io_max_value(old, d, k).map_or("max".into(), |n: u64| n.to_string())
                            };
                            format!("{d} riops={} wiops={}", v("riops"), v("wiops"))
                        };
                        changes.push(change(
                            io.clone(),
                            format!("{d} riops={iops} wiops={iops}"),
                            &undo,
                        )?);
                    }
                }
            }
            Layout::V1 { cpu, memory, blkio } => {
                let mdir = Self::dir(workload, memory, name)?;
                let cdir = Self::dir(workload, cpu, name)?;
                let memory =
                    Self::control_file(workload, &mdir, "memory.limit_in_bytes", "memory")?;
                let period = Self::control_file(workload, &cdir, "cpu.cfs_period_us", "cpu")?;
                let quota_file = Self::control_file(workload, &cdir, "cpu.cfs_quota_us", "cpu")?;
                changes.push(change(memory, bytes.to_string(), &same)?);
                changes.push(change(period, PERIOD_US.to_string(), &same)?);
                changes.push(change(quota_file, quota.to_string(), &same)?);
                if !self.devices.is_empty() {
                    let blkio = blkio.as_ref().ok_or_else(|| {
                        error(
                            workload,
                            "iops devices are configured but blkio is not mounted",
                        )
                    })?;
                    let bdir = Self::dir(workload, blkio, name)?;
                    for file in [
                        "blkio.throttle.read_iops_device",
                        "blkio.throttle.write_iops_device",
                    ] {
                        let path = Self::control_file(workload, &bdir, file, "blkio")?;
                        for &d in &self.devices {
                            // 0 removes a v1 throttle.
                            let undo = move |old: &str| {
                                format!("{d} {}", v1_device_value(old, d).unwrap_or(0))
                            };
                            changes.push(change(path.clone(), format!("{d} {iops}"), &undo)?);
                        }
                    }
                }
            }
        }
        Ok(changes)
    }

    /// What is in force now for `name`, for the kinds managed.
    fn in_force(&self, workload: WorkloadId, name: &str) -> Result<PhysicalVector, ActuatorError> {
        let mut v = [0u64; 4];
        let devices = |text: &dyn Fn(BlockDevice) -> Option<u64>| {
            self.devices
                .iter()
                .map(|&d| text(d).unwrap_or(u64::MAX))
                .min()
                .unwrap_or(0)
        };
        match &self.layout {
            Layout::V2 { root } => {
                let dir = Self::dir(workload, root, name)?;
                let file = dir.join("memory.max");
                v[ResourceKind::Memory.index()] =
                    limit(workload, &file, &read(workload, &file)?)?.unwrap_or(u64::MAX);
                let file = dir.join("cpu.max");
                let text = read(workload, &file)?;
                let mut parts = text.split_whitespace();
                let q = limit(workload, &file, parts.next().unwrap_or(""))?;
                let period = parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(PERIOD_US);
                v[ResourceKind::Cpu.index()] = millicores(q, period);
                if !self.devices.is_empty() {
                    let text = read(workload, &dir.join("io.max"))?;
                    v[ResourceKind::Iops.index()] = devices(&|d| {
                        Some(io_max_value(&text, d, "riops")?.min(io_max_value(&text, d, "wiops")?))
                    });
                }
            }
            Layout::V1 { cpu, memory, blkio } => {
                let file = Self::dir(workload, memory, name)?.join("memory.limit_in_bytes");
                v[ResourceKind::Memory.index()] =
                    limit(workload, &file, &read(workload, &file)?)?.unwrap_or(u64::MAX);
                let cdir = Self::dir(workload, cpu, name)?;
                let quota_file = cdir.join("cpu.cfs_quota_us");
                let q: i64 = read(workload, &quota_file)?.parse().map_err(|_| {
                    error(
                        workload,
                        format!("{} is not a number", quota_file.display()),
                    )
                })?;
                let period = read(workload, &cdir.join("cpu.cfs_period_us"))?
                    .parse()
                    .unwrap_or(PERIOD_US);
                // v1 prints -1 for no limit.
                v[ResourceKind::Cpu.index()] = millicores(u64::try_from(q).ok(), period);
                if let (false, Some(blkio)) = (self.devices.is_empty(), blkio) {
                    let bdir = Self::dir(workload, blkio, name)?;
                    let r = read(workload, &bdir.join("blkio.throttle.read_iops_device"))?;
                    let w = read(workload, &bdir.join("blkio.throttle.write_iops_device"))?;
                    v[ResourceKind::Iops.index()] =
                        devices(&|d| Some(v1_device_value(&r, d)?.min(v1_device_value(&w, d)?)));
                }
            }
        }
        Ok(PhysicalVector(v))
    }
}

impl Actuator for CgroupActuator {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        // Everything is checked and every old value read before the first write; a write the
        // kernel refuses (e.g. EBUSY for a memory limit it can't reclaim down to) puts back
        // the ones before it, so a refusal leaves the cgroup as it was.
        let changes = self.plan(workload, name, allocation)?;
        for (i, c) in changes.iter().enumerate() {
            if let Err(e) = write(workload, &c.file, &c.value) {
                for done in changes[..i].iter().rev() {
                    if let Err(undo) = write(workload, &done.file, &done.undo) {
                        tracing::error!(error = %undo, "could not put a limit back");
                    }
                }
                return Err(e);
            }
        }
        self.actuations += 1;
        self.in_force(workload, name)
    }

    fn manages(&self, _: &str, kind: ResourceKind) -> bool {
        match kind {
            ResourceKind::Cpu | ResourceKind::Memory => true,
            ResourceKind::Iops => !self.devices.is_empty(),
            ResourceKind::Net => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: WorkloadId = WorkloadId(7);

    fn alloc(cpu: u64, memory: u64) -> PhysicalVector {
        PhysicalVector([cpu, memory, 5, 6])
    }

    #[test]
    fn v2_writes_cpu_max_and_memory_max_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let cg = base.join("web.slice");
        std::fs::create_dir(&cg).unwrap();
        std::fs::write(cg.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(cg.join("memory.max"), "max\n").unwrap();
        let mut a = CgroupActuator::probe_at(base).unwrap();
        assert!(matches!(a.layout(), Layout::V2 { .. }));
        let in_force = a.apply(W, "web.slice", alloc(1500, 256 << 20)).unwrap();
        assert_eq!(
            std::fs::read_to_string(cg.join("cpu.max")).unwrap(),
            "150000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(cg.join("memory.max")).unwrap(),
            (256u64 << 20).to_string()
        );
        assert_eq!(in_force, PhysicalVector([1500, 256 << 20, 0, 0]));
        assert!(
            a.manages("web.slice", ResourceKind::Cpu) && !a.manages("web.slice", ResourceKind::Net)
        );
        // The smallest quota the kernel takes is 1 ms per period: 10 millicores.
        let small = a.apply(W, "/web.slice", alloc(3, 1 << 20)).unwrap();
        assert_eq!(small.get(ResourceKind::Cpu), 10);
        let none = a.apply(W, "/web.slice", alloc(0, 1 << 20)).unwrap();
        assert_eq!(none.get(ResourceKind::Cpu), 10);
    }

    #[test]
    fn iops_are_throttled_on_the_configured_devices_reads_and_writes_alike() {
        let dev: BlockDevice = "254:0".parse().unwrap();
        assert_eq!(dev.to_string(), "254:0");
        assert!("sda".parse::<BlockDevice>().is_err());
        // v2: io.max, one line per device.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu io memory\n").unwrap();
        let cg = base.join("db");
        std::fs::create_dir(&cg).unwrap();
        std::fs::write(cg.join("cpu.max"), "max 100000").unwrap();
        std::fs::write(cg.join("memory.max"), "max").unwrap();
        std::fs::write(cg.join("io.max"), "").unwrap();
        let a = CgroupActuator::probe_at(base).unwrap();
        assert!(!a.manages("db", ResourceKind::Iops), "no device, no IOPS");
        let mut a = a.with_iops_devices(vec![dev]);
        assert!(a.manages("db", ResourceKind::Iops));
        // A file that only keeps the last line written, like the kernel's, reads back as set.
        let in_force = a.apply(W, "db", alloc(100, 1 << 20)).unwrap();
        assert_eq!(
            std::fs::read_to_string(cg.join("io.max")).unwrap(),
            "254:0 riops=6 wiops=6"
        );
        assert_eq!(in_force.get(ResourceKind::Iops), 6);
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
            ("blkio/app/blkio.throttle.read_iops_device", ""),
            ("blkio/app/blkio.throttle.write_iops_device", ""),
        ] {
            std::fs::write(base.join(f), v).unwrap();
        }
        let mut a = CgroupActuator::probe_at(base)
            .unwrap()
            .with_iops_devices(vec![dev]);
        // 0 IOPS would lift a v1 throttle: the least kept is 1.
        let in_force = a
            .apply(W, "app", PhysicalVector([100, 1 << 20, 0, 0]))
            .unwrap();
        assert_eq!(in_force.get(ResourceKind::Iops), 1);
        for f in ["read", "write"] {
            let path = base.join(format!("blkio/app/blkio.throttle.{f}_iops_device"));
            assert_eq!(std::fs::read_to_string(path).unwrap(), "254:0 1");
        }
    }

    #[test]
    fn v1_writes_the_cfs_quota_and_the_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in ["cpu,cpuacct/app", "memory/app"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("cpu,cpuacct/cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(base.join("cpu,cpuacct/app/cpu.cfs_period_us"), "50000").unwrap();
        std::fs::write(base.join("cpu,cpuacct/app/cpu.cfs_quota_us"), "-1").unwrap();
        std::fs::write(base.join("memory/memory.limit_in_bytes"), "0").unwrap();
        std::fs::write(base.join("memory/app/memory.limit_in_bytes"), "0").unwrap();
        let mut a = CgroupActuator::probe_at(base).unwrap();
        assert!(matches!(a.layout(), Layout::V1 { .. }));
        let in_force = a.apply(W, "app", alloc(2000, 1 << 30)).unwrap();
        assert_eq!(in_force, PhysicalVector([2000, 1 << 30, 0, 0]));
        let read = |p: &str| std::fs::read_to_string(base.join(p)).unwrap();
        assert_eq!(read("cpu,cpuacct/app/cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu,cpuacct/app/cpu.cfs_quota_us"), "200000");
        assert_eq!(read("memory/app/memory.limit_in_bytes"), "1073741824");
    }

    #[test]
    fn bad_targets_are_refused_with_the_reason_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::create_dir(base.join("nocpu")).unwrap();
        std::fs::write(base.join("nocpu/memory.max"), "max").unwrap();
        let mut a = CgroupActuator::probe_at(base).unwrap();
        let why = |r: Result<PhysicalVector, ActuatorError>| r.unwrap_err().reason;
        assert!(why(a.apply(W, "/", alloc(100, 1 << 20))).contains("root cgroup"));
        assert!(why(a.apply(W, "../etc", alloc(100, 1 << 20))).contains("climbs out"));
        assert!(why(a.apply(W, "gone.slice", alloc(100, 1 << 20))).contains("no cgroup"));
        assert!(why(a.apply(W, "nocpu", alloc(100, 1 << 20))).contains("cpu controller"));
        assert!(why(a.apply(W, "nocpu", alloc(10, 0))).contains("memory allocation of 0"));
        assert_eq!(a.actuations, 0);
        assert_eq!(
            std::fs::read_to_string(base.join("nocpu/memory.max")).unwrap(),
            "max",
            "the memory limit was left alone"
        );
        // A cpu limit the kernel refuses after the memory limit was set puts the memory limit
        // back (here the refusal is /proc/version's: readable, never writable).
        std::os::unix::fs::symlink("/proc/version", base.join("nocpu/cpu.max")).unwrap();
        let e = why(a.apply(W, "nocpu", alloc(100, 1 << 20)));
        assert!(e.contains("cpu.max"), "{e}");
        assert_eq!(
            std::fs::read_to_string(base.join("nocpu/memory.max")).unwrap(),
            "max"
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

    fn real_cgroup(a: &CgroupActuator) -> Option<RealCgroup> {
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
            if let Err(e) = std::fs::create_dir(d) {
                eprintln!("skipped: can't create the cgroup {}: {e}", d.display());
                return None;
            }
        }
        Some(guard)
    }

    #[test]
    fn this_machine_s_kernel_takes_the_limits() {
        // The real kernel interface where the machine lets us create a cgroup (root, with
        // cgroups mounted writable); elsewhere the test says why it did nothing.
        let Some(mut a) = CgroupActuator::probe() else {
            eprintln!("skipped: no cgroup filesystem with cpu and memory control here");
            return;
        };
        let Some(cg) = real_cgroup(&a) else { return };
        let in_force = match a.apply(W, &cg.name, alloc(250, 64 << 20)) {
            Ok(v) => v,
            // v2 without the controllers delegated to the new child: nothing to test.
            Err(e) if e.reason.contains("controller") => {
                eprintln!("skipped: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(in_force, PhysicalVector([250, 64 << 20, 0, 0]));
        // And again, larger: a live change, nothing restarted.
        let grown = a.apply(W, &cg.name, alloc(1200, 128 << 20)).unwrap();
        assert_eq!(grown, PhysicalVector([1200, 128 << 20, 0, 0]));
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
        let (Some(disk), true) = (disk, throttles) else {
            eprintln!("skipped IOPS: no disk or no block throttling here");
            return;
        };
        let mut a = a.with_iops_devices(vec![disk]);
        let limited = a.apply(W, &cg.name, alloc(1200, 128 << 20)).unwrap();
        assert_eq!(limited, PhysicalVector([1200, 128 << 20, 0, 6]));
    }
}
