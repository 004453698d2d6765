//! The cgroup sampler: a workload named `system.slice/nginx.service` is the cgroup at that
//! path under the hierarchy; `/` is the root. [`CgroupSampler::probe`] picks cgroup v2 (one
//! unified hierarchy with `cpu.stat` and `memory.current`) or v1 (`cpuacct.usage` and
//! `memory.usage_in_bytes` in their own hierarchies), whichever the host has.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use shardex_core::Timestamp;
use shardex_core::ports::{Sampler, SamplerError};

/// Which cgroup layout the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One unified hierarchy.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
    /// Per-controller hierarchies.
    V1 {
        /// The cpuacct hierarchy.
        cpuacct: PathBuf,
        /// The memory hierarchy.
        memory: PathBuf,
    },
}

/// Samples cpu (from the cumulative usage counter) and memory of cgroups.
#[derive(Debug)]
pub struct CgroupSampler {
    layout: Layout,
    /// Per workload: the cpu counter in nanoseconds and when it was read.
    last_cpu: HashMap<String, (u64, Timestamp)>,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The directory of the cgroup a workload names under a hierarchy's `root`; `None` for a name
/// that would climb out of it (`..`).
pub fn cgroup_dir(root: &Path, workload: &str) -> Option<PathBuf> {
    let rel = workload.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    })
}

impl CgroupSampler {
    /// The layout under `/sys/fs/cgroup`, or `None` when there is no cgroup filesystem.
    pub fn probe() -> Option<Self> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The layout under `base`.
    pub fn probe_at(base: &Path) -> Option<Self> {
        let layout = if base.join("cgroup.controllers").exists() {
            Layout::V2 {
                root: base.to_path_buf(),
            }
        } else if base.join("cpuacct/cpuacct.usage").exists() {
            Layout::V1 {
                cpuacct: base.join("cpuacct"),
                memory: base.join("memory"),
            }
        } else {
            return None;
        };
        Some(Self {
            layout,
            last_cpu: HashMap::new(),
        })
    }

    /// The layout found.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn dir(root: &Path, workload: &str) -> Option<PathBuf> {
        cgroup_dir(root, workload)
    }

    /// (cpu counter in ns, memory bytes) of a workload's cgroup, if it exists.
    fn read(&self, workload: &str) -> Option<(Option<u64>, Option<u64>)> {
        match &self.layout {
            Layout::V2 { root } => {
                let dir = Self::dir(root, workload)?;
                if !dir.is_dir() {
                    return None;
                }
                let cpu = std::fs::read_to_string(dir.join("cpu.stat"))
                    .ok()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("usage_usec "))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .map(|us| us.saturating_mul(1000));
                // The root cgroup has no memory.current; its usage is the machine's.
                let memory = read_u64(&dir.join("memory.current"));
                Some((cpu, memory))
            }
            Layout::V1 { cpuacct, memory } => {
                let cdir = Self::dir(cpuacct, workload)?;
                if !cdir.is_dir() {
                    return None;
                }
                let cpu = read_u64(&cdir.join("cpuacct.usage"));
                let mem = Self::dir(memory, workload)
                    .and_then(|d| read_u64(&d.join("memory.usage_in_bytes")));
                Some((cpu, mem))
            }
        }
    }
}

impl Sampler for CgroupSampler {
    fn sample(
        &mut self,
        workload: &str,
        now: Timestamp,
    ) -> Result<Option<[Option<u64>; 4]>, SamplerError> {
        let Some((cpu_ns, memory)) = self.read(workload) else {
            return Ok(None);
        };
        // Millicores over the interval since the previous reading.
        let cpu = cpu_ns.and_then(|ns| {
            let key = workload.trim_start_matches('/').to_string();
            let prev = self.last_cpu.insert(key, (ns, now));
            let (pns, pt) = prev?;
            let ms = now.since(pt).millis();
            if ms == 0 {
                return None;
            }
            // ns used per ms of wall time = millicores × 1000.
            Some(ns.saturating_sub(pns) / ms / 1000)
        });
        Ok(Some([cpu, memory, None, None]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    #[test]
    fn v2_cpu_is_a_rate_of_the_counter_and_memory_is_read_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let cg = base.join("web.slice");
        std::fs::create_dir(&cg).unwrap();
        std::fs::write(cg.join("cpu.stat"), "usage_usec 1000000\nuser_usec 5\n").unwrap();
        std::fs::write(cg.join("memory.current"), "4096\n").unwrap();
        let mut s = CgroupSampler::probe_at(base).unwrap();
        assert!(matches!(s.layout(), Layout::V2 { .. }));
        let first = s.sample("web.slice", t(0)).unwrap().unwrap();
        assert_eq!(
            first,
            [None, Some(4096), None, None],
            "no rate from one reading"
        );
        // 0.5 s of cpu in 1 s: 500 millicores.
        std::fs::write(cg.join("cpu.stat"), "usage_usec 1500000\n").unwrap();
        let second = s.sample("web.slice", t(1000)).unwrap().unwrap();
        assert_eq!(second[0], Some(500));
        assert_eq!(s.sample("missing.slice", t(2000)).unwrap(), None);
        assert_eq!(s.sample("../etc", t(2000)).unwrap(), None);
    }

    #[test]
    fn v1_reads_cpuacct_and_memory_hierarchies() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("cpuacct/app")).unwrap();
        std::fs::create_dir_all(base.join("memory/app")).unwrap();
        std::fs::write(base.join("cpuacct/cpuacct.usage"), "0\n").unwrap();
        std::fs::write(base.join("cpuacct/app/cpuacct.usage"), "2000000000\n").unwrap();
        std::fs::write(base.join("memory/app/memory.usage_in_bytes"), "123\n").unwrap();
        let mut s = CgroupSampler::probe_at(base).unwrap();
        assert!(matches!(s.layout(), Layout::V1 { .. }));
        s.sample("app", t(0)).unwrap();
        std::fs::write(base.join("cpuacct/app/cpuacct.usage"), "4000000000\n").unwrap();
        // 2 s of cpu in 1 s: two cores.
        assert_eq!(
            s.sample("/app", t(1000)).unwrap().unwrap(),
            [Some(2000), Some(123), None, None]
        );
    }

    #[test]
    fn this_machine_has_a_cgroup_layout_it_can_read() {
        // The real kernel interface: the root cgroup always exists where cgroups are mounted.
        let Some(mut s) = CgroupSampler::probe() else {
            eprintln!("no cgroup filesystem at /sys/fs/cgroup; nothing to read here");
            return;
        };
        let got = s.sample("/", t(0)).unwrap();
        assert!(
            got.is_some(),
            "the root cgroup of {:?} is unreadable",
            s.layout()
        );
    }
}
