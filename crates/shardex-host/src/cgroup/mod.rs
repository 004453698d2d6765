//! The cgroup actuator: a workload's limits written live to its cgroup (the workload's name is
//! the cgroup's path, as for the sampler) and read back, without restarting anything. Hard
//! limits are the workload's entitlement; the allocation planned from the forecast only sets
//! the soft knobs. cgroup v2: `cpu.max` (`quota period`) and `cpu.weight`, `memory.max` and
//! `memory.high`, `io.max` (`riops`/`wiops`), in `v2.rs`; v1: `cpu.cfs_quota_us` /
//! `cpu.cfs_period_us` and `cpu.shares`, `memory.limit_in_bytes` and
//! `memory.soft_limit_in_bytes`, `blkio.throttle.{read,write}_iops_device`, in `v1.rs`. One
//! probe ([`Hierarchy`]) serves this actuator, the sampler and the managed tree. Each kind is applied on its own: its old values
//! are read first, and a refused write puts back that kind's earlier ones. IOPS are throttled
//! only on the block devices configured (`engine.iops_devices`). Network bandwidth needs the tc
//! actuator, so it is not managed here.

use std::path::{Path, PathBuf};

use shardex_core::ResourceKind;
use shardex_core::domain::{ReservationId, WorkloadId};
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};

use crate::sampler::cgroup_dir;

mod error;
mod hierarchy;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

pub use error::CgroupError;
pub use hierarchy::Hierarchy;

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

/// One file write of an actuation, with what puts the file back as it was.
struct Change {
    file: PathBuf,
    value: String,
    undo: String,
}

impl Change {
    /// Writes `value` to `file`; undone by writing back what the file holds now.
    fn keeping(file: PathBuf, value: String) -> Result<Self, CgroupError> {
        Self::undone_by(file, value, str::to_string)
    }

    /// Writes `value` to `file`; undone by `undo` of what the file holds now (for files whose
    /// read-back is not what one writes, like `io.max`).
    fn undone_by(
        file: PathBuf,
        value: String,
        undo: impl Fn(&str) -> String,
    ) -> Result<Self, CgroupError> {
        let old = read_text(&file)?;
        Ok(Self {
            undo: undo(&old),
            file,
            value,
        })
    }
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

/// The cgroup directory of `name` under `root`: it must exist and must not be the root
/// (whose limits are the machine's and can't be set).
fn cgroup_of(root: &Path, name: &str) -> Result<PathBuf, CgroupError> {
    if name.trim_start_matches('/').is_empty() {
        return Err(CgroupError::Root);
    }
    let dir = cgroup_dir(root, name).ok_or_else(|| CgroupError::Escapes(name.to_string()))?;
    if !dir.is_dir() {
        return Err(CgroupError::NoCgroup {
            name: name.to_string(),
            dir,
        });
    }
    Ok(dir)
}

/// `dir/file`, which must exist (else the controller is not enabled there).
fn control_file(dir: &Path, file: &str, controller: &'static str) -> Result<PathBuf, CgroupError> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(CgroupError::ControllerMissing { path, controller });
    }
    Ok(path)
}

impl CgroupActuator {
    /// The layout under `/sys/fs/cgroup`, or `None` when there is no cgroup filesystem with
    /// cpu and memory control.
    pub fn probe() -> Option<Self> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The layout under `base`.
    pub fn probe_at(base: &Path) -> Option<Self> {
        Self::from_hierarchy(&Hierarchy::probe_at(base)?)
    }

    /// The actuator for a probed hierarchy, or `None` when it lacks cpu or memory control
    /// (on v1 the cpu and memory controllers; blkio is used where it can throttle).
    pub fn from_hierarchy(h: &Hierarchy) -> Option<Self> {
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

    /// The hierarchy that `kind` is controlled in.
    fn root_of(&self, kind: ResourceKind) -> Result<&Path, CgroupError> {
        match (&self.layout, kind) {
            (_, ResourceKind::Net) => Err(CgroupError::Net),
            (Layout::V2 { root }, _) => Ok(root),
            (Layout::V1 { cpu, .. }, ResourceKind::Cpu) => Ok(cpu),
            (Layout::V1 { memory, .. }, ResourceKind::Memory) => Ok(memory),
            (Layout::V1 { blkio, .. }, ResourceKind::Iops) => {
                blkio.as_deref().ok_or(CgroupError::NoBlkio)
            }
        }
    }

    /// The writes for one kind, in order, each with its undo, read before anything is written.
    /// The rule is the same on both layouts: the hard limit is the entitlement, the soft knob
    /// the forecast under it; only the files differ.
    fn plan(
        &self,
        name: &str,
        kind: ResourceKind,
        target: &Target,
    ) -> Result<Vec<Change>, CgroupError> {
        let dir = cgroup_of(self.root_of(kind)?, name)?;
        let v2 = matches!(self.layout, Layout::V2 { .. });
        match kind {
            ResourceKind::Memory => {
                let (hard, soft) = match target {
                    Target::Set(l) => match l.hard(kind) {
                        Some(0) => return Err(CgroupError::ZeroMemory),
                        Some(h) => (Some(h), Some(l.soft(kind).clamp(1, h))),
                        None => (None, None),
                    },
                    Target::Clear => (None, None),
                };
                if v2 {
                    v2::memory(&dir, hard, soft)
                } else {
                    v1::memory(&dir, hard, soft)
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
                    v2::cpu(&dir, quota, soft)
                } else {
                    v1::cpu(&dir, quota, soft)
                }
            }
            ResourceKind::Iops => {
                // A throttle of 0 means "none" to the kernel: the least kept is 1.
                let iops = match target {
                    Target::Set(l) => Some(l.hard(kind).unwrap_or(u64::MAX).max(1)),
                    Target::Clear => None,
                };
                if v2 {
                    v2::iops(&dir, &self.devices, iops)
                } else {
                    v1::iops(&dir, &self.devices, iops)
                }
            }
            ResourceKind::Net => Err(CgroupError::Net),
        }
    }

    /// The hard limit in force for one kind (`None`: unlimited).
    fn in_force(&self, name: &str, kind: ResourceKind) -> Result<Option<u64>, CgroupError> {
        let dir = cgroup_of(self.root_of(kind)?, name)?;
        match self.layout {
            Layout::V2 { .. } => v2::in_force(&dir, kind, &self.devices),
            Layout::V1 { .. } => v1::in_force(&dir, kind, &self.devices),
        }
    }

    /// Writes one kind's changes; a write the kernel refuses (e.g. EBUSY for a memory limit it
    /// can't reclaim down to) puts back the ones before it, so that kind is left as it was.
    fn write_all(changes: &[Change]) -> Result<(), CgroupError> {
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
                    Err(e) => KindState::Failed(e.into()),
                },
            );
        }
        if target.is_some() {
            self.actuations += 1;
        }
        out
    }
}

/// A control file's text, trimmed.
fn read_text(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `value` to a control file.
fn write_text(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// A limit as the kernel prints it in `path`: a number, or `max`/`-1` for none.
fn limit(path: &Path) -> Result<Option<u64>, CgroupError> {
    parse_limit(path, &read_text(path)?)
}

/// A limit as the kernel prints it: a number, or `max`/`-1` for none.
fn parse_limit(path: &Path, text: &str) -> Result<Option<u64>, CgroupError> {
    if text == "max" || text == "-1" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| CgroupError::NotALimit {
        path: path.to_path_buf(),
        text: text.to_string(),
    })
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
