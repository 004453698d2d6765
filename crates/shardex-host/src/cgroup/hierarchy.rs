//! Where the cgroup hierarchies are: probed once and shared by the sampler, the cgroup
//! actuator and the managed tree, each of which then takes the controllers it needs.

use std::path::{Path, PathBuf};

/// The cgroup filesystem of a host, as found under its mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One unified (v2) hierarchy.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
    /// Per-controller (v1) hierarchies; each is `None` when it is not mounted.
    V1 {
        /// Where the controllers are mounted (`/sys/fs/cgroup`).
        base: PathBuf,
        /// The cpu controller (CFS bandwidth), alone or mounted with cpuacct.
        cpu: Option<PathBuf>,
        /// The cpuacct controller (cpu usage).
        cpuacct: Option<PathBuf>,
        /// The memory controller.
        memory: Option<PathBuf>,
        /// The blkio controller.
        blkio: Option<PathBuf>,
    },
}

impl Hierarchy {
    /// The hierarchy under `/sys/fs/cgroup`, or `None` when there is no cgroup filesystem.
    pub fn probe() -> Option<Self> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The hierarchy under `base`.
    pub fn probe_at(base: &Path) -> Option<Self> {
        if base.join("cgroup.controllers").exists() {
            return Some(Self::V2 {
                root: base.to_path_buf(),
            });
        }
        let found = |names: &[&str], marker: &str| {
            names
                .iter()
                .map(|d| base.join(d))
                .find(|d| d.join(marker).exists())
        };
        let h = Self::V1 {
            base: base.to_path_buf(),
            // v1 mounts cpu alone or together with cpuacct, depending on the distribution.
            cpu: found(&["cpu", "cpu,cpuacct", "cpuacct,cpu"], "cpu.cfs_period_us"),
            cpuacct: found(&["cpuacct"], "cpuacct.usage"),
            memory: found(&["memory"], "memory.limit_in_bytes"),
            blkio: base.join("blkio").is_dir().then(|| base.join("blkio")),
        };
        match &h {
            Self::V1 {
                cpu: None,
                cpuacct: None,
                memory: None,
                blkio: None,
                ..
            } => None,
            _ => Some(h),
        }
    }
}
