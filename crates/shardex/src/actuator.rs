//! The cgroup actuator: a workload's cpu and memory allocation written live to its cgroup (the
//! workload's name is the cgroup's path, as for the sampler) and read back, without restarting
//! anything. cgroup v2: `cpu.max` (`quota period`) and `memory.max`; v1: `cpu.cfs_quota_us` /
//! `cpu.cfs_period_us` and `memory.limit_in_bytes`. Network and storage IOPS need the tc and
//! block-throttle actuators, so they are not managed here.

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
    },
}

/// Applies cpu and memory allocations to cgroups.
#[derive(Debug, Clone)]
pub struct CgroupActuator {
    layout: Layout,
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
            Layout::V1 { cpu, memory }
        };
        Some(Self {
            layout,
            actuations: 0,
        })
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

    /// The file holding the cpu limit of `name` (v2 `cpu.max`, v1 `cpu.cfs_quota_us`).
    fn cpu_file(&self, workload: WorkloadId, name: &str) -> Result<PathBuf, ActuatorError> {
        let file = match &self.layout {
            Layout::V2 { root } => Self::dir(workload, root, name)?.join("cpu.max"),
            Layout::V1 { cpu, .. } => Self::dir(workload, cpu, name)?.join("cpu.cfs_quota_us"),
        };
        if !file.exists() {
            return Err(error(
                workload,
                format!(
                    "{} is missing: enable the cpu controller for this cgroup (the parent's cgroup.subtree_control on v2)",
                    file.display()
                ),
            ));
        }
        Ok(file)
    }

    /// The file holding the memory limit of `name` (v2 `memory.max`, v1
    /// `memory.limit_in_bytes`).
    fn memory_file(&self, workload: WorkloadId, name: &str) -> Result<PathBuf, ActuatorError> {
        let file = match &self.layout {
            Layout::V2 { root } => Self::dir(workload, root, name)?.join("memory.max"),
            Layout::V1 { memory, .. } => {
                Self::dir(workload, memory, name)?.join("memory.limit_in_bytes")
            }
        };
        if !file.exists() {
            return Err(error(
                workload,
                format!(
                    "{} is missing: enable the memory controller for this cgroup",
                    file.display()
                ),
            ));
        }
        Ok(file)
    }

    /// Sets the cpu limit in `file`; returns the millicores in force.
    fn set_cpu(&self, workload: WorkloadId, file: &Path, m: u64) -> Result<u64, ActuatorError> {
        // No allocation (0 shards) is enforced as the least the kernel allows: a quota of 0
        // can't be written, and "no limit" would be the opposite of what the ledger says.
        let quota = (m.saturating_mul(PERIOD_US) / 1000).max(MIN_QUOTA_US);
        match &self.layout {
            Layout::V2 { .. } => {
                write(workload, file, &format!("{quota} {PERIOD_US}"))?;
                let text = read(workload, file)?;
                let mut parts = text.split_whitespace();
                let q = limit(workload, file, parts.next().unwrap_or(""))?;
                let period = parts
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(PERIOD_US);
                Ok(millicores(q, period))
            }
            Layout::V1 { .. } => {
                let period_file = file.with_file_name("cpu.cfs_period_us");
                if read(workload, &period_file)? != PERIOD_US.to_string() {
                    write(workload, &period_file, &PERIOD_US.to_string())?;
                }
                write(workload, file, &quota.to_string())?;
                let q: i64 = read(workload, file)?
                    .parse()
                    .map_err(|_| error(workload, format!("{} is not a number", file.display())))?;
                let period = read(workload, &period_file)?.parse().unwrap_or(PERIOD_US);
                // v1 prints -1 for no limit.
                Ok(millicores(u64::try_from(q).ok(), period))
            }
        }
    }

    /// Sets the memory limit in `file`; returns the bytes in force.
    fn set_memory(
        &self,
        workload: WorkloadId,
        file: &Path,
        bytes: u64,
    ) -> Result<u64, ActuatorError> {
        // The kernel refuses (EBUSY) a v1 limit under what it can't reclaim: the error says so.
        write(workload, file, &bytes.to_string())?;
        let text = read(workload, file)?;
        Ok(limit(workload, file, &text)?.unwrap_or(u64::MAX))
    }
}

impl Actuator for CgroupActuator {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        // Everything that can be checked is checked before the first write, and the memory
        // limit (the one the kernel may refuse) goes first and is put back if the cpu limit
        // then fails: a refusal leaves the cgroup as it was.
        let bytes = allocation.get(ResourceKind::Memory);
        if bytes == 0 {
            return Err(error(
                workload,
                "a memory allocation of 0 would kill the workload",
            ));
        }
        let memory_file = self.memory_file(workload, name)?;
        let cpu_file = self.cpu_file(workload, name)?;
        let old_memory = read(workload, &memory_file)?;
        let memory = self.set_memory(workload, &memory_file, bytes)?;
        let cpu = match self.set_cpu(workload, &cpu_file, allocation.get(ResourceKind::Cpu)) {
            Ok(cpu) => cpu,
            Err(e) => {
                if let Err(undo) = write(workload, &memory_file, &old_memory) {
                    tracing::error!(error = %undo, "could not put the memory limit back");
                }
                return Err(e);
            }
        };
        self.actuations += 1;
        Ok(PhysicalVector([cpu, memory, 0, 0]))
    }

    fn manages(&self, kind: ResourceKind) -> bool {
        matches!(kind, ResourceKind::Cpu | ResourceKind::Memory)
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
        assert!(a.manages(ResourceKind::Cpu) && !a.manages(ResourceKind::Net));
        // The smallest quota the kernel takes is 1 ms per period: 10 millicores.
        let small = a.apply(W, "/web.slice", alloc(3, 1 << 20)).unwrap();
        assert_eq!(small.get(ResourceKind::Cpu), 10);
        let none = a.apply(W, "/web.slice", alloc(0, 1 << 20)).unwrap();
        assert_eq!(none.get(ResourceKind::Cpu), 10);
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
        // A cpu limit the kernel refuses (here: not a writable file) after the memory limit
        // was set puts the memory limit back.
        std::fs::create_dir(base.join("nocpu/cpu.max")).unwrap();
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
            Layout::V1 { cpu, memory } => vec![cpu.join(&name), memory.join(&name)],
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
    }
}
