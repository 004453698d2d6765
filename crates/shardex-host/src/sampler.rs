//! The cgroup sampler: a workload named `system.slice/nginx.service` is the cgroup at that
//! path under the hierarchy; `/` is the root. [`CgroupSampler::probe`] picks cgroup v2 (one
//! unified hierarchy: `cpu.stat`, `memory.current`, `io.stat`) or v1 (`cpuacct.usage`,
//! `memory.usage_in_bytes`, `blkio.throttle.io_serviced` in their own hierarchies), whichever
//! the host has. Network usage is the transmit counter of the interface a workload is mapped to
//! (`engine.net_interfaces`), the direction the tc actuator shapes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use shardex_core::ports::{Reading, Sampler, SamplerError};
use shardex_core::{ResourceKind, Timestamp};

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
        /// The cpu hierarchy (CFS throttling counters), where mounted.
        cpu: Option<PathBuf>,
        /// The memory hierarchy.
        memory: PathBuf,
        /// The blkio hierarchy, where mounted.
        blkio: Option<PathBuf>,
    },
}

/// Samples cpu, memory, storage operations and, for mapped workloads, network transmit of
/// cgroups.
#[derive(Debug)]
pub struct CgroupSampler {
    layout: Layout,
    /// Workload name → the interface whose transmitted bytes are its network usage.
    interfaces: BTreeMap<String, String>,
    /// Where interfaces' counters are (`/sys/class/net`).
    net_root: PathBuf,
    /// Per workload and kind: the last reading of a cumulative counter and when it was read.
    last: HashMap<(String, ResourceKind), (u64, Timestamp)>,
    /// Per workload: the last reading of each limit counter.
    counters: HashMap<(String, &'static str), u64>,
}

/// The cumulative counters that say a workload was held at a limit.
#[derive(Debug, Clone, Copy, Default)]
struct Limited {
    /// Periods in which its cpu quota throttled it (v1 and v2 `cpu.stat` `nr_throttled`).
    cpu_throttled: Option<u64>,
    /// Times its memory hit a limit (v1 `memory.failcnt`; v2 `memory.events` high + max).
    memory_limited: Option<u64>,
    /// OOM kills (v1 `memory.oom_control`, v2 `memory.events` `oom_kill`).
    oom_kills: Option<u64>,
    /// Packets the shaping qdisc dropped or held over its rate.
    net_dropped: Option<u64>,
    /// Microseconds all its tasks stalled on memory (v2 `memory.pressure` `full total`).
    memory_stalled: Option<u64>,
    /// Microseconds all its tasks stalled on I/O (v2 `io.pressure` `full total`).
    io_stalled: Option<u64>,
}

/// The `total=` microseconds of the `line` (`some` or `full`) of a PSI file
/// (`full avg10=0.00 avg60=0.00 avg300=0.00 total=1234`).
fn psi_total(text: &str, line: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(line))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The number after `key ` on its own line of a flat-keyed cgroup file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
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

/// Operations completed, summed over devices, from a v2 `io.stat` (`rios=` and `wios=`).
fn v2_ios(text: &str) -> u64 {
    text.split_whitespace()
        .filter_map(|kv| {
            kv.strip_prefix("rios=")
                .or_else(|| kv.strip_prefix("wios="))
        })
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Operations completed from a v1 `blkio.throttle.io_serviced` (its `Total` line).
fn v1_ios(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Total "))
        .and_then(|v| v.trim().parse().ok())
}

impl CgroupSampler {
    /// The layout under `/sys/fs/cgroup`, or `None` when there is no cgroup filesystem.
    pub fn probe() -> Option<Self> {
        Self::probe_at(Path::new("/sys/fs/cgroup"))
    }

    /// The layout under `base`.
    pub fn probe_at(base: &Path) -> Option<Self> {
        Self::from_hierarchy(&crate::cgroup::Hierarchy::probe_at(base)?)
    }

    /// The sampler for a probed hierarchy, or `None` when it can't read cpu usage (on v1 the
    /// cpuacct controller is needed; cpu, memory and blkio are read where mounted).
    pub fn from_hierarchy(h: &crate::cgroup::Hierarchy) -> Option<Self> {
        use crate::cgroup::Hierarchy;
        let layout = match h {
            Hierarchy::V2 { root } => Layout::V2 { root: root.clone() },
            Hierarchy::V1 {
                base,
                cpu,
                cpuacct,
                memory,
                blkio,
            } => Layout::V1 {
                cpuacct: cpuacct.clone()?,
                cpu: cpu.clone(),
                memory: memory.clone().unwrap_or_else(|| base.join("memory")),
                blkio: blkio
                    .clone()
                    .filter(|d| d.join("blkio.throttle.io_serviced").exists()),
            },
        };
        Some(Self {
            layout,
            interfaces: BTreeMap::new(),
            net_root: PathBuf::from("/sys/class/net"),
            last: HashMap::new(),
            counters: HashMap::new(),
        })
    }

    /// Also samples the transmit rate of these workloads' interfaces (workload name →
    /// interface), read under `net_root` (`/sys/class/net` on a real host).
    pub fn with_interfaces(
        mut self,
        interfaces: BTreeMap<String, String>,
        net_root: &Path,
    ) -> Self {
        self.interfaces = interfaces;
        self.net_root = net_root.to_path_buf();
        self
    }

    /// The layout found.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Raw readings of a workload's cgroup, if it exists, in `ResourceKind::ALL` order: the
    /// cpu counter (ns), memory (bytes), the interface's transmit counter (bytes) and the
    /// operations counter; and its limit counters.
    fn read(&self, workload: &str) -> Option<([Option<u64>; 4], Limited)> {
        let mut v = [None; 4];
        let mut limited = Limited::default();
        match &self.layout {
            Layout::V2 { root } => {
                let dir = cgroup_dir(root, workload)?;
                if !dir.is_dir() {
                    return None;
                }
                v[0] = std::fs::read_to_string(dir.join("cpu.stat"))
                    .ok()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("usage_usec "))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .map(|us| us.saturating_mul(1000));
                // The root cgroup has no memory.current; its usage is the machine's.
                v[1] = read_u64(&dir.join("memory.current"));
                v[3] = std::fs::read_to_string(dir.join("io.stat"))
                    .ok()
                    .map(|t| v2_ios(&t));
                let stat = |file: &str, key: &str| {
                    std::fs::read_to_string(dir.join(file))
                        .ok()
                        .and_then(|t| keyed(&t, key))
                };
                limited.cpu_throttled = stat("cpu.stat", "nr_throttled");
                // `high`: reclaimed at memory.high; `max`: at memory.max.
                limited.memory_limited =
                    match (stat("memory.events", "high"), stat("memory.events", "max")) {
                        (None, None) => None,
                        (h, m) => Some(h.unwrap_or(0) + m.unwrap_or(0)),
                    };
                limited.oom_kills = stat("memory.events", "oom_kill");
                let psi = |file: &str| {
                    std::fs::read_to_string(dir.join(file))
                        .ok()
                        .and_then(|t| psi_total(&t, "full"))
                };
                limited.memory_stalled = psi("memory.pressure");
                limited.io_stalled = psi("io.pressure");
            }
            Layout::V1 {
                cpuacct,
                cpu,
                memory,
                blkio,
            } => {
                let cdir = cgroup_dir(cpuacct, workload)?;
                if !cdir.is_dir() {
                    return None;
                }
                v[0] = read_u64(&cdir.join("cpuacct.usage"));
                let mdir = cgroup_dir(memory, workload);
                v[1] = mdir
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("memory.usage_in_bytes")));
                limited.cpu_throttled = cpu
                    .as_ref()
                    .and_then(|c| cgroup_dir(c, workload))
                    .and_then(|d| std::fs::read_to_string(d.join("cpu.stat")).ok())
                    .and_then(|t| keyed(&t, "nr_throttled"));
                limited.memory_limited = mdir
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("memory.failcnt")));
                limited.oom_kills = mdir
                    .as_ref()
                    .and_then(|d| std::fs::read_to_string(d.join("memory.oom_control")).ok())
                    .and_then(|t| keyed(&t, "oom_kill"));
                v[3] = blkio
                    .as_ref()
                    .and_then(|b| cgroup_dir(b, workload))
                    .and_then(|d| {
                        std::fs::read_to_string(d.join("blkio.throttle.io_serviced")).ok()
                    })
                    .and_then(|t| v1_ios(&t));
            }
        }
        v[2] = self
            .interfaces
            .get(workload)
            .filter(|dev| crate::tc::valid_interface(dev))
            .and_then(|dev| read_u64(&self.net_root.join(dev).join("statistics/tx_bytes")));
        limited.net_dropped = self
            .interfaces
            .get(workload)
            .filter(|dev| crate::tc::valid_interface(dev))
            .and_then(|dev| crate::tc::tbf_pressure(dev))
            .map(|(drops, overlimits)| drops + overlimits);
        Some((v, limited))
    }

    /// Whether a cumulative limit counter rose since its previous reading (`false` on the
    /// first reading, or when the counter is not there).
    fn rose(&mut self, workload: &str, what: &'static str, value: Option<u64>) -> u64 {
        let Some(value) = value else { return 0 };
        let key = (workload.trim_start_matches('/').to_string(), what);
        match self.counters.insert(key, value) {
            Some(prev) => value.saturating_sub(prev),
            None => 0,
        }
    }

    /// The rate of a cumulative counter since its previous reading: its increase per
    /// millisecond, times `scale` (`None` on the first reading, when no time has passed, or
    /// after the counter was reset).
    fn rate(
        &mut self,
        workload: &str,
        kind: ResourceKind,
        value: u64,
        now: Timestamp,
        scale: u128,
    ) -> Option<u64> {
        let key = (workload.trim_start_matches('/').to_string(), kind);
        let (prev, at) = self.last.insert(key, (value, now))?;
        let ms = u128::from(now.since(at).millis());
        if ms == 0 {
            return None;
        }
        // A counter that went backwards was reset (the cgroup was recreated): no rate yet.
        let delta = u128::from(value.checked_sub(prev)?);
        u64::try_from(delta * scale / ms).ok()
    }
}

impl Sampler for CgroupSampler {
    fn sample(&mut self, workload: &str, now: Timestamp) -> Result<Option<Reading>, SamplerError> {
        let Some(([cpu_ns, memory, tx_bytes, ios], limited)) = self.read(workload) else {
            return Ok(None);
        };
        // Per millisecond of wall time: ns of cpu / 1000 are millicores; bytes × 8000 are
        // bits per second; operations × 1000 are operations per second.
        let cpu = cpu_ns.and_then(|ns| {
            self.rate(workload, ResourceKind::Cpu, ns, now, 1)
                .map(|r| r / 1000)
        });
        let net = tx_bytes.and_then(|b| self.rate(workload, ResourceKind::Net, b, now, 8_000));
        let iops = ios.and_then(|n| self.rate(workload, ResourceKind::Iops, n, now, 1_000));
        let oom_kills = self.rose(workload, "oom_kill", limited.oom_kills);
        let memory_stalled = self.rose(workload, "memory_stalled", limited.memory_stalled) > 0;
        let censored = [
            self.rose(workload, "nr_throttled", limited.cpu_throttled) > 0,
            self.rose(workload, "memory_limited", limited.memory_limited) > 0
                || memory_stalled
                || oom_kills > 0,
            self.rose(workload, "net_dropped", limited.net_dropped) > 0,
            // A stall is a sign, not proof, of its limit: the agent also asks that usage
            // pressed on the limit in force (as for memory).
            self.rose(workload, "io_stalled", limited.io_stalled) > 0,
        ];
        Ok(Some(Reading {
            usage: [cpu, memory, net, iops],
            censored,
            oom_kills,
        }))
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
        let first = s.sample("web.slice", t(0)).unwrap().unwrap().usage;
        assert_eq!(
            first,
            [None, Some(4096), None, None],
            "no rate from one reading"
        );
        // 0.5 s of cpu in 1 s: 500 millicores.
        std::fs::write(cg.join("cpu.stat"), "usage_usec 1500000\n").unwrap();
        let second = s.sample("web.slice", t(1000)).unwrap().unwrap().usage;
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
            s.sample("/app", t(1000)).unwrap().unwrap().usage,
            [Some(2000), Some(123), None, None]
        );
    }

    #[test]
    fn storage_operations_and_network_transmit_are_rates_of_their_counters() {
        // v2: io.stat, summed over devices; the interface's tx_bytes.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu io memory\n").unwrap();
        let cg = base.join("vm.scope");
        std::fs::create_dir(&cg).unwrap();
        let net = base.join("net");
        std::fs::create_dir_all(net.join("tap0/statistics")).unwrap();
        let write = |ios: (u64, u64), tx: u64| {
            std::fs::write(
                cg.join("io.stat"),
                format!(
                    "8:0 rbytes=1 wbytes=2 rios={} wios={} dbytes=0 dios=0\n8:16 rios=5 wios=0\n",
                    ios.0, ios.1
                ),
            )
            .unwrap();
            std::fs::write(net.join("tap0/statistics/tx_bytes"), tx.to_string()).unwrap();
        };
        let mut s = CgroupSampler::probe_at(base).unwrap().with_interfaces(
            BTreeMap::from([("vm.scope".to_string(), "tap0".to_string())]),
            &net,
        );
        write((100, 50), 1_000);
        assert_eq!(
            s.sample("vm.scope", t(0)).unwrap().unwrap().usage[2..],
            [None, None]
        );
        // 2 s later: 300 more operations, 250,000 more bytes sent.
        write((300, 150), 251_000);
        let v = s.sample("vm.scope", t(2000)).unwrap().unwrap().usage;
        assert_eq!(v[3], Some(150), "operations per second");
        assert_eq!(v[2], Some(1_000_000), "bits per second");
        // A counter that went backwards (a recreated cgroup) gives no rate, then rates again.
        write((0, 0), 251_000);
        assert_eq!(
            s.sample("vm.scope", t(3000)).unwrap().unwrap().usage[3],
            None
        );
        // v1: the Total line of blkio.throttle.io_serviced.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in ["cpuacct/app", "memory/app", "blkio/app"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("cpuacct/cpuacct.usage"), "0").unwrap();
        std::fs::write(base.join("blkio/blkio.throttle.io_serviced"), "Total 0\n").unwrap();
        let serviced = |n: u64| {
            std::fs::write(
                base.join("blkio/app/blkio.throttle.io_serviced"),
                format!("254:0 Read {n}\n254:0 Write 0\n254:0 Total {n}\nTotal {n}\n"),
            )
            .unwrap();
        };
        let mut s = CgroupSampler::probe_at(base).unwrap();
        serviced(10);
        s.sample("app", t(0)).unwrap();
        serviced(1010);
        assert_eq!(
            s.sample("app", t(1000)).unwrap().unwrap().usage[3],
            Some(1000)
        );
    }

    #[test]
    fn on_v2_memory_and_io_pressure_stalls_mark_samples_censored() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu memory io\n").unwrap();
        let cg = base.join("db");
        std::fs::create_dir(&cg).unwrap();
        std::fs::write(cg.join("cpu.stat"), "usage_usec 0\nnr_throttled 0\n").unwrap();
        std::fs::write(cg.join("memory.current"), "4096\n").unwrap();
        let psi = |file: &str, some: u64, full: u64| {
            std::fs::write(
                cg.join(file),
                format!(
                    "some avg10=1.00 avg60=0.50 avg300=0.10 total={some}\n\
                     full avg10=0.50 avg60=0.20 avg300=0.05 total={full}\n"
                ),
            )
            .unwrap();
        };
        psi("memory.pressure", 100, 10);
        psi("io.pressure", 100, 10);
        let mut s = CgroupSampler::probe_at(base).unwrap();
        assert_eq!(s.sample("db", t(0)).unwrap().unwrap().censored, [false; 4]);
        // Only some tasks waited: not a stall of the whole workload.
        psi("memory.pressure", 900, 10);
        psi("io.pressure", 900, 10);
        assert_eq!(
            s.sample("db", t(1000)).unwrap().unwrap().censored,
            [false; 4]
        );
        psi("memory.pressure", 900, 5000);
        let r = s.sample("db", t(2000)).unwrap().unwrap();
        assert_eq!(r.censored, [false, true, false, false]);
        psi("io.pressure", 900, 70_000);
        let r = s.sample("db", t(3000)).unwrap().unwrap();
        assert_eq!(r.censored, [false, false, false, true]);
        assert_eq!(psi_total("full avg10=0.00 total=77\n", "full"), Some(77));
        assert_eq!(psi_total("some total=1\n", "full"), None);
    }

    #[test]
    fn throttling_memory_limits_and_oom_kills_mark_samples_censored() {
        // v2: cpu.stat nr_throttled, memory.events high / max / oom_kill.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::write(base.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let cg = base.join("job");
        std::fs::create_dir(&cg).unwrap();
        let write = |cpu: u64, throttled: u64, high: u64, oom: u64| {
            std::fs::write(
                cg.join("cpu.stat"),
                format!(
                    "usage_usec {cpu}\nnr_periods 10\nnr_throttled {throttled}\nthrottled_usec 5\n"
                ),
            )
            .unwrap();
            std::fs::write(
                cg.join("memory.events"),
                format!("low 0\nhigh {high}\nmax 0\noom 0\noom_kill {oom}\n"),
            )
            .unwrap();
            std::fs::write(cg.join("memory.current"), "4096\n").unwrap();
        };
        let mut s = CgroupSampler::probe_at(base).unwrap();
        write(0, 3, 1, 0);
        let first = s.sample("job", t(0)).unwrap().unwrap();
        assert_eq!(
            first.censored, [false; 4],
            "counters from before shardex looked are history"
        );
        write(1_000_000, 3, 1, 0);
        let calm = s.sample("job", t(1000)).unwrap().unwrap();
        assert_eq!((calm.censored, calm.oom_kills), ([false; 4], 0));
        write(2_000_000, 9, 1, 0);
        let throttled = s.sample("job", t(2000)).unwrap().unwrap();
        assert!(throttled.censored(ResourceKind::Cpu) && !throttled.censored(ResourceKind::Memory));
        write(3_000_000, 9, 4, 1);
        let oom = s.sample("job", t(3000)).unwrap().unwrap();
        assert!(oom.censored(ResourceKind::Memory) && !oom.censored(ResourceKind::Cpu));
        assert_eq!(oom.oom_kills, 1);
        // v1: the cpu hierarchy's cpu.stat, memory.failcnt and memory.oom_control.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in ["cpuacct/app", "cpu/app", "memory/app"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("cpuacct/cpuacct.usage"), "0").unwrap();
        std::fs::write(base.join("cpu/cpu.cfs_period_us"), "100000").unwrap();
        let write = |throttled: u64, failcnt: u64, oom: u64| {
            std::fs::write(base.join("cpuacct/app/cpuacct.usage"), "5").unwrap();
            std::fs::write(
                base.join("cpu/app/cpu.stat"),
                format!("nr_periods 4\nnr_throttled {throttled}\nthrottled_time 9\n"),
            )
            .unwrap();
            std::fs::write(base.join("memory/app/memory.usage_in_bytes"), "8192").unwrap();
            std::fs::write(base.join("memory/app/memory.failcnt"), failcnt.to_string()).unwrap();
            std::fs::write(
                base.join("memory/app/memory.oom_control"),
                format!("oom_kill_disable 0\nunder_oom 0\noom_kill {oom}\n"),
            )
            .unwrap();
        };
        let mut s = CgroupSampler::probe_at(base).unwrap();
        write(0, 0, 0);
        s.sample("app", t(0)).unwrap();
        write(2, 0, 0);
        let r = s.sample("app", t(1000)).unwrap().unwrap();
        assert_eq!(r.censored, [true, false, false, false]);
        write(2, 7, 2);
        let r = s.sample("app", t(2000)).unwrap().unwrap();
        assert_eq!((r.censored, r.oom_kills), ([false, true, false, false], 2));
    }

    #[test]
    #[ignore = "needs a cgroup filesystem at /sys/fs/cgroup; CI runs it with --include-ignored"]
    fn this_machine_has_a_cgroup_layout_it_can_read() {
        // The real kernel interface: the root cgroup always exists where cgroups are mounted.
        let mut s = CgroupSampler::probe().expect("no cgroup filesystem at /sys/fs/cgroup");
        let got = s.sample("/", t(0)).unwrap();
        assert!(
            got.is_some(),
            "the root cgroup of {:?} is unreadable",
            s.layout()
        );
        // The loopback interface's transmit counter is a real one to take a rate of.
        let mut s = s.with_interfaces(
            BTreeMap::from([("/".to_string(), "lo".to_string())]),
            Path::new("/sys/class/net"),
        );
        if Path::new("/sys/class/net/lo/statistics/tx_bytes").exists() {
            s.sample("/", t(0)).unwrap();
            let v = s.sample("/", t(1000)).unwrap().unwrap().usage;
            assert!(v[2].is_some(), "no transmit rate from lo: {v:?}");
        }
    }
}
