//! The cgroup tree as shardex manages it: the cgroups it makes for workloads (`shardex launch`,
//! `shardex workload add --pid`) under one parent, `shardex/`, in every hierarchy the sampler
//! and actuators use (the unified one on v2; cpu, cpuacct, memory and blkio on v1), the
//! processes moved into them, and their removal. A workload's name is its cgroup's path
//! relative to the hierarchy roots, as everywhere else (`shardex/web-1`).

use std::path::{Path, PathBuf};

/// The parent of every cgroup shardex makes (reservation groups under it, workloads under
/// those).
pub const MANAGED_PARENT: &str = shardex_core::entitlement::GROUPS;

/// Why the tree could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// No cgroup filesystem with cpu and memory control under the base.
    #[error("no cgroup filesystem with cpu and memory control under {0}")]
    NoCgroups(PathBuf),
    /// A cgroup name that is empty, absolute after trimming, or climbs out (`..`).
    #[error("{0:?} is not a cgroup path (parts of [A-Za-z0-9._@:-], no \"..\")")]
    BadName(String),
    /// The cgroup is not there in some hierarchy.
    #[error("there is no cgroup {name} in {hierarchy}")]
    Missing {
        /// The cgroup.
        name: String,
        /// The hierarchy's root.
        hierarchy: PathBuf,
    },
    /// A process that does not exist.
    #[error("there is no process {0}")]
    NoProcess(u32),
    /// The kernel refused a read or a write.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hierarchies a workload's cgroup is made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTree {
    /// Their roots: one on v2; on v1 each mounted controller directory once.
    roots: Vec<PathBuf>,
    /// Whether the unified (v2) hierarchy is used.
    v2: bool,
}

/// Whether `name` is a cgroup path shardex accepts (the ledger's rule for workload names).
fn valid(name: &str) -> bool {
    let rel = name.trim_start_matches('/');
    !rel.is_empty()
        && rel.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._@:-".contains(c))
        })
}

impl CgroupTree {
    /// The tree under `/sys/fs/cgroup`.
    pub fn probe() -> Result<Self, TreeError> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The tree under `base`: v2 when `base` is a unified hierarchy, otherwise the v1
    /// controllers mounted there (cpu and memory are required; cpuacct and blkio are used
    /// where mounted).
    pub fn probe_at(base: &Path) -> Result<Self, TreeError> {
        crate::cgroup::Hierarchy::probe_at(base)
            .and_then(|h| Self::from_hierarchy(&h))
            .ok_or_else(|| TreeError::NoCgroups(base.to_path_buf()))
    }

    /// The tree of a probed hierarchy, or `None` when it lacks cpu or memory control.
    pub fn from_hierarchy(h: &crate::cgroup::Hierarchy) -> Option<Self> {
        use crate::cgroup::Hierarchy;
        let (cpu, cpuacct, memory, blkio) = match h {
            Hierarchy::V2 { root } => {
                return Some(Self {
                    roots: vec![root.clone()],
                    v2: true,
                });
            }
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
                blkio,
                ..
            } => (
                cpu.clone()?,
                cpuacct.clone(),
                memory.clone()?,
                blkio.clone(),
            ),
        };
        let mut roots: Vec<PathBuf> = Vec::new();
        let mut add = |d: PathBuf| {
            // `cpu` and `cpuacct` are often links to one `cpu,cpuacct` directory.
            let real = std::fs::canonicalize(&d).unwrap_or_else(|_| d.clone());
            if !roots
                .iter()
                .any(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()) == real)
            {
                roots.push(d);
            }
        };
        add(cpu);
        if let Some(c) = cpuacct {
            add(c);
        }
        add(memory);
        if let Some(b) = blkio.filter(|d| d.join("blkio.throttle.io_serviced").exists()) {
            add(b);
        }
        Some(Self { roots, v2: false })
    }

    /// Whether this is the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The hierarchies' roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The directories of the cgroup `name`, one per hierarchy.
    fn dirs(&self, name: &str) -> Result<Vec<PathBuf>, TreeError> {
        if !valid(name) {
            return Err(TreeError::BadName(name.to_string()));
        }
        let rel = name.trim_start_matches('/');
        Ok(self.roots.iter().map(|r| r.join(rel)).collect())
    }

    /// Whether the cgroup `name` exists in every hierarchy.
    pub fn exists(&self, name: &str) -> bool {
        self.dirs(name)
            .is_ok_and(|dirs| dirs.iter().all(|d| d.is_dir()))
    }

    /// The name of the managed cgroup `leaf` directly under `shardex/`.
    pub fn managed(leaf: &str) -> String {
        format!("{MANAGED_PARENT}/{leaf}")
    }

    /// The name of the cgroup `leaf` inside `reservation`'s group (`shardex/res-ID/LEAF`),
    /// whose limits the kernel enforces on the sum of the reservation's workloads.
    pub fn in_group(reservation: shardex_core::ReservationId, leaf: &str) -> String {
        format!(
            "{}/{leaf}",
            shardex_core::entitlement::group_name(reservation)
        )
    }

    /// Removes the cgroup `name` if it is there and has no children left (a reservation's
    /// group once its last workload left); `false` when it stays.
    pub fn remove_if_empty(&self, name: &str) -> bool {
        let Ok(dirs) = self.dirs(name) else {
            return false;
        };
        let mut all = true;
        for d in dirs.iter().filter(|d| d.is_dir()) {
            let has_children = std::fs::read_dir(d)
                .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
                .unwrap_or(true);
            all &= !has_children && std::fs::remove_dir(d).is_ok();
        }
        all
    }

    /// Makes the cgroup `name` (and its parents) in every hierarchy; on v2 the cpu, memory and
    /// io controllers are enabled on the way down so that its limits can be written. Nothing is
    /// left behind if a directory can't be made.
    pub fn create(&self, name: &str) -> Result<(), TreeError> {
        let dirs = self.dirs(name)?;
        let mut made: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for (root, dir) in self.roots.iter().zip(&dirs) {
                let rel = dir.strip_prefix(root).unwrap_or(dir);
                let mut at = root.clone();
                for part in rel.components() {
                    if self.v2 {
                        enable_controllers(&at)?;
                    }
                    at.push(part);
                    if !at.is_dir() {
                        std::fs::create_dir(&at).map_err(io(&at))?;
                        made.push(at.clone());
                    }
                }
            }
            Ok(())
        })();
        if result.is_err() {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        result
    }

    /// Moves the process `pid` (all its threads) into the cgroup `name` in every hierarchy.
    pub fn attach(&self, name: &str, pid: u32) -> Result<(), TreeError> {
        for dir in self.dirs(name)? {
            if !dir.is_dir() {
                return Err(TreeError::Missing {
                    name: name.to_string(),
                    hierarchy: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
                });
            }
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(|e| {
                if e.raw_os_error() == Some(3) {
                    TreeError::NoProcess(pid)
                } else {
                    io(&procs)(e)
                }
            })?;
        }
        Ok(())
    }

    /// The processes in the cgroup `name` (its first hierarchy; on v1 a process is in one
    /// cgroup per hierarchy and shardex moves it into all of them together).
    pub fn processes(&self, name: &str) -> Result<Vec<u32>, TreeError> {
        let dirs = self.dirs(name)?;
        let Some(first) = dirs.first() else {
            return Ok(Vec::new());
        };
        let procs = first.join("cgroup.procs");
        let text = std::fs::read_to_string(&procs).map_err(io(&procs))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Removes the cgroup `name` in every hierarchy, first moving whatever still runs in it to
    /// the hierarchy's root (so removing a workload never kills it). A cgroup with children is
    /// refused by the kernel and reported.
    pub fn remove(&self, name: &str) -> Result<(), TreeError> {
        for (root, dir) in self.roots.iter().zip(self.dirs(name)?) {
            if !dir.is_dir() {
                continue;
            }
            let procs = dir.join("cgroup.procs");
            let text = std::fs::read_to_string(&procs).map_err(io(&procs))?;
            let to = root.join("cgroup.procs");
            for pid in text.lines().filter(|l| !l.trim().is_empty()) {
                match std::fs::write(&to, pid.trim()) {
                    // It exited meanwhile.
                    Err(e) if e.raw_os_error() == Some(3) => {}
                    other => other.map_err(io(&to))?,
                }
            }
            std::fs::remove_dir(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }
}

/// Enables the cpu, memory and io controllers for the children of the v2 cgroup `dir`, those
/// of them its parent gives it (`cgroup.controllers`), and only those not enabled yet.
fn enable_controllers(dir: &Path) -> Result<(), TreeError> {
    let available = dir.join("cgroup.controllers");
    let available = std::fs::read_to_string(&available).map_err(io(&available))?;
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).map_err(io(&control))?;
    let wanted: Vec<String> = ["cpu", "memory", "io"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    std::fs::write(&control, wanted.join(" ")).map_err(io(&control))
}

/// `pid` and every process descended from it, read from `/proc` (parents before children).
pub fn process_tree(pid: u32) -> Result<Vec<u32>, TreeError> {
    process_tree_at(Path::new("/proc"), pid)
}

/// [`process_tree`] under another proc root.
pub fn process_tree_at(proc_root: &Path, pid: u32) -> Result<Vec<u32>, TreeError> {
    if !proc_root.join(pid.to_string()).is_dir() {
        return Err(TreeError::NoProcess(pid));
    }
    let entries = std::fs::read_dir(proc_root).map_err(io(proc_root))?;
    // (pid, parent) of every process; one that exits while we read is skipped.
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command may hold spaces and parentheses: the fields follow the last ')'.
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(p, pp)| *pp == parent && !tree.contains(p))
                .map(|(p, _)| *p)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    Ok(tree)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A v2 tree laid out with the kernel's file formats.
    fn v2_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(d.path().join("cgroup.procs"), "").unwrap();
        d
    }

    #[test]
    fn names_are_checked_before_anything_is_made() {
        let d = v2_tree();
        let tree = CgroupTree::probe_at(d.path()).unwrap();
        for bad in ["", "/", "a/../b", "a//b", "not a path!", "../etc", "a/./b"] {
            assert!(
                matches!(tree.create(bad), Err(TreeError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(valid("/shardex/web-1") && valid("system.slice/x@1:2"));
    }

    #[test]
    fn on_v2_the_controllers_are_enabled_down_to_the_new_cgroup() {
        let d = v2_tree();
        let tree = CgroupTree::probe_at(d.path()).unwrap();
        assert!(tree.is_v2());
        // A real kernel makes these files in a new directory; a laid-out tree can't, so the
        // parent's are written before the child is asked for them.
        let parent = d.path().join(MANAGED_PARENT);
        let name = CgroupTree::managed("web-1");
        let err = tree.create(&name).unwrap_err();
        // The first level was made, then its controllers could not be read: nothing stays.
        assert!(matches!(err, TreeError::Io { .. }), "{err}");
        assert!(!parent.exists());
        std::fs::create_dir(&parent).unwrap();
        std::fs::write(parent.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        std::fs::write(parent.join("cgroup.subtree_control"), "").unwrap();
        tree.create(&name).unwrap();
        assert!(tree.exists(&name));
        let root_control =
            std::fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(root_control, "+cpu +memory +io");
        let control = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        assert_eq!(control, "+cpu +memory +io");
        // Already enabled: not written again.
        std::fs::write(d.path().join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        std::fs::write(parent.join("cgroup.subtree_control"), "cpu io memory\n").unwrap();
        tree.create(&CgroupTree::managed("web-2")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap(),
            "+io"
        );
        assert_eq!(
            std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(),
            "cpu io memory\n"
        );
    }

    #[test]
    fn on_v1_every_mounted_controller_gets_the_cgroup_once() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path();
        std::fs::create_dir(base.join("cpu,cpuacct")).unwrap();
        std::fs::write(base.join("cpu,cpuacct/cpu.cfs_period_us"), "100000\n").unwrap();
        std::fs::write(base.join("cpu,cpuacct/cpuacct.usage"), "0\n").unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", base.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", base.join("cpuacct")).unwrap();
        std::fs::create_dir(base.join("memory")).unwrap();
        std::fs::write(base.join("memory/memory.limit_in_bytes"), "0\n").unwrap();
        let tree = CgroupTree::probe_at(base).unwrap();
        assert!(!tree.is_v2());
        assert_eq!(tree.roots(), [base.join("cpu"), base.join("memory")]);
        tree.create("shardex/a").unwrap();
        assert!(base.join("cpu,cpuacct/shardex/a").is_dir());
        assert!(base.join("memory/shardex/a").is_dir());
        // Removing moves what runs there to the root first, then removes the directory
        // (a laid-out tree can't remove a directory with files in it, as the kernel can).
        for h in ["cpu", "memory"] {
            std::fs::write(base.join(h).join("cgroup.procs"), "").unwrap();
            std::fs::write(base.join(h).join("shardex/a/cgroup.procs"), "4242\n").unwrap();
        }
        assert_eq!(tree.processes("shardex/a").unwrap(), [4242]);
        assert!(matches!(
            tree.remove("shardex/a"),
            Err(TreeError::Io { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(base.join("cpu/cgroup.procs")).unwrap(),
            "4242"
        );
        assert!(tree.exists("shardex/a"));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            CgroupTree::probe_at(empty.path()),
            Err(TreeError::NoCgroups(_))
        ));
    }

    #[test]
    fn a_process_tree_is_read_from_proc() {
        let d = tempfile::tempdir().unwrap();
        let stat = |pid: u32, comm: &str, ppid: u32| {
            let dir = d.path().join(pid.to_string());
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(
                dir.join("stat"),
                format!("{pid} ({comm}) S {ppid} 1 1 0 -1\n"),
            )
            .unwrap();
        };
        stat(1, "init", 0);
        stat(10, "sh", 1);
        stat(11, "a (b) c", 10);
        stat(12, "worker", 11);
        stat(20, "other", 1);
        std::fs::create_dir(d.path().join("self")).unwrap();
        assert_eq!(process_tree_at(d.path(), 10).unwrap(), [10, 11, 12]);
        assert_eq!(process_tree_at(d.path(), 20).unwrap(), [20]);
        assert!(matches!(
            process_tree_at(d.path(), 99),
            Err(TreeError::NoProcess(99))
        ));
    }
}
