//! The in-guest sampler: the guest's cpu, memory, block I/O and pressure, and its
//! applications (processes grouped by cgroup, or by name outside any), from `/proc`. Rates are
//! over the time between two samples, so the first sample only primes the counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::report::{AppUsage, GuestReport, MAX_APPS, Pressure, REPORT_VERSION};

/// Clock ticks per second in `/proc/stat` and `/proc/PID/stat`: `USER_HZ`, fixed at 100 in
/// Linux's interface to user space.
const TICKS_PER_S: u64 = 100;

/// Why the guest could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A file every Linux has could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file without what it should hold.
    #[error("{0} does not read as the kernel writes it")]
    Format(PathBuf),
}

/// Counters kept between two samples.
#[derive(Debug, Default)]
struct Counters {
    busy_ticks: u64,
    disk_ops: u64,
    /// Per process: cpu ticks and read/write calls.
    procs: BTreeMap<u32, (u64, u64)>,
}

/// Samples the guest it runs in.
#[derive(Debug)]
pub struct Probe {
    root: PathBuf,
    before: Option<Counters>,
    seq: u64,
}

/// One process, read.
struct Proc {
    pid: u32,
    app: String,
    ticks: u64,
    rss: u64,
    calls: u64,
}

impl Probe {
    /// Reads the system under `root` (`/` in a guest; a laid-out folder in tests).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            before: None,
            seq: 0,
        }
    }

    fn read(&self, rel: &str) -> Result<String, ProbeError> {
        let path = self.root.join(rel);
        std::fs::read_to_string(&path).map_err(|source| ProbeError::Read { path, source })
    }

    fn format(&self, rel: &str) -> ProbeError {
        ProbeError::Format(self.root.join(rel))
    }

    /// A report over the `elapsed_ms` since the previous sample; `None` for the first one,
    /// which only primes the counters.
    pub fn sample(&mut self, elapsed_ms: u64) -> Result<Option<GuestReport>, ProbeError> {
        let busy_ticks = self.busy_ticks()?;
        let (total, available) = self.memory()?;
        let disk_ops = self.disk_ops()?;
        let procs = self.procs();
        let now = Counters {
            busy_ticks,
            disk_ops,
            procs: procs.iter().map(|p| (p.pid, (p.ticks, p.calls))).collect(),
        };
        let before = self.before.replace(now);
        let Some(before) = before else {
            return Ok(None);
        };
        let ms = elapsed_ms.max(1);
        // Ticks over milliseconds: a tick is 10 ms of one cpu, so millicores = ticks×10×1000/ms.
        let millicores = |ticks: u64| ticks * (1000 / TICKS_PER_S) * 1000 / ms;
        let per_s = |n: u64| n * 1000 / ms;
        let mut apps: BTreeMap<String, AppUsage> = BTreeMap::new();
        for p in &procs {
            let (ticks0, calls0) = before
                .procs
                .get(&p.pid)
                .copied()
                .unwrap_or((p.ticks, p.calls));
            let a = apps.entry(p.app.clone()).or_insert_with(|| AppUsage {
                name: p.app.clone(),
                processes: 0,
                cpu_millicores: 0,
                memory_bytes: 0,
                io_ops_per_s: 0,
            });
            a.processes += 1;
            a.cpu_millicores += millicores(p.ticks.saturating_sub(ticks0));
            a.memory_bytes += p.rss;
            a.io_ops_per_s += per_s(p.calls.saturating_sub(calls0));
        }
        let mut apps: Vec<AppUsage> = apps.into_values().collect();
        apps.sort_by(|a, b| {
            (b.memory_bytes, b.cpu_millicores, &a.name).cmp(&(
                a.memory_bytes,
                a.cpu_millicores,
                &b.name,
            ))
        });
        apps.truncate(MAX_APPS);
        self.seq += 1;
        Ok(Some(GuestReport {
            version: REPORT_VERSION,
            seq: self.seq,
            interval_ms: ms,
            cpu_millicores: millicores(busy_ticks.saturating_sub(before.busy_ticks)),
            memory_used_bytes: total.saturating_sub(available),
            memory_total_bytes: total,
            io_ops_per_s: per_s(disk_ops.saturating_sub(before.disk_ops)),
            pressure: self.pressure(),
            apps,
        }))
    }

    /// Ticks every cpu spent on something other than idling or waiting for I/O.
    fn busy_ticks(&self) -> Result<u64, ProbeError> {
        let text = self.read("proc/stat")?;
        let line = text
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| self.format("proc/stat"))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().map_err(|_| self.format("proc/stat")))
            .collect::<Result<_, _>>()?;
        if v.len() < 5 {
            return Err(self.format("proc/stat"));
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let all: u64 = v.iter().take(8).sum();
        Ok(all - v[3] - v[4])
    }

    /// MemTotal and MemAvailable, in bytes.
    fn memory(&self) -> Result<(u64, u64), ProbeError> {
        let text = self.read("proc/meminfo")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .ok_or_else(|| self.format("proc/meminfo"))
        };
        Ok((field("MemTotal")?, field("MemAvailable")?))
    }

    /// Reads and writes completed on whole disks (those in `/sys/block`).
    fn disk_ops(&self) -> Result<u64, ProbeError> {
        let disks: Vec<String> = std::fs::read_dir(self.root.join("sys/block"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let text = self.read("proc/diskstats")?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let name = f.get(2)?;
                if !disks.iter().any(|d| d == name) {
                    return None;
                }
                let reads: u64 = f.get(3)?.parse().ok()?;
                let writes: u64 = f.get(7)?.parse().ok()?;
                Some(reads + writes)
            })
            .sum())
    }

    /// `some avg10` of each resource, where the kernel keeps pressure stall information.
    fn pressure(&self) -> Option<Pressure> {
        let some = |kind: &str| -> Option<f64> {
            let text = self.read(&format!("proc/pressure/{kind}")).ok()?;
            text.lines()
                .find(|l| l.starts_with("some "))?
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("avg10="))?
                .parse()
                .ok()
        };
        Some(Pressure {
            cpu: some("cpu")?,
            memory: some("memory")?,
            io: some("io")?,
        })
    }

    /// Every user-space process (kernel threads have no command line).
    fn procs(&self) -> Vec<Proc> {
        let Ok(dir) = std::fs::read_dir(self.root.join("proc")) else {
            return Vec::new();
        };
        let mut out: Vec<Proc> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| self.process(pid))
            .collect();
        out.sort_by_key(|p| p.pid);
        out
    }

    /// One process, if it is still there and is not a kernel thread.
    fn process(&self, pid: u32) -> Option<Proc> {
        let base = format!("proc/{pid}");
        if self.read(&format!("{base}/cmdline")).ok()?.is_empty() {
            return None;
        }
        let status = self.read(&format!("{base}/status")).ok()?;
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))?
            .trim()
            .to_string();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        // utime and stime are the 14th and 15th fields; the name before them may hold spaces,
        // so count from its closing parenthesis.
        let stat = self.read(&format!("{base}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let calls = self.read(&format!("{base}/io")).ok().map_or(0, |io| {
            io.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    matches!(k, "syscr" | "syscw").then(|| v.trim().parse::<u64>().ok())?
                })
                .sum()
        });
        // A cgroup other than the root names the application; otherwise the process's name.
        let cgroup = self
            .read(&format!("{base}/cgroup"))
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .map(str::to_string)
            })
            .filter(|p| p != "/" && !p.is_empty());
        Some(Proc {
            pid,
            app: cgroup.map_or(name, |c| format!("cgroup:{c}")),
            ticks,
            rss,
            calls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A laid-out `/proc` with two processes of one cgroup and one outside any.
    fn lay_out(root: &Path, busy: u64, db_ticks: u64, disk: u64) {
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "proc/stat",
            &format!("cpu  {busy} 0 0 1000 5 0 0 0 0 0\ncpu0 {busy} 0 0 1000 5 0 0 0 0 0\n"),
        );
        w(
            "proc/meminfo",
            "MemTotal:         409600 kB\nMemFree:          100000 kB\nMemAvailable:     307200 kB\n",
        );
        w(
            "proc/diskstats",
            &format!(
                " 253       0 vda {disk} 0 0 0 {disk} 0 0 0 0 0 0\n 253       1 vda1 7 0 0 0 7 0 0 0 0 0 0\n"
            ),
        );
        std::fs::create_dir_all(root.join("sys/block/vda")).unwrap();
        w(
            "proc/pressure/cpu",
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=1\n",
        );
        w(
            "proc/pressure/memory",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        w(
            "proc/pressure/io",
            "some avg10=2.25 avg60=0.00 avg300=0.00 total=1\n",
        );
        for (pid, name, cgroup, ticks, rss_kb) in [
            (10, "postgres", "/db", db_ticks, 20480),
            (11, "postgres", "/db", db_ticks, 10240),
            (12, "my app", "/", 0, 1024),
        ] {
            w(&format!("proc/{pid}/cmdline"), "x\0");
            w(
                &format!("proc/{pid}/status"),
                &format!("Name:\t{name}\nVmRSS:\t    {rss_kb} kB\n"),
            );
            w(
                &format!("proc/{pid}/stat"),
                &format!("{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 1 0 0"),
            );
            w(
                &format!("proc/{pid}/io"),
                &format!("rchar: 1\nsyscr: {ticks}\nsyscw: 0\n"),
            );
            w(&format!("proc/{pid}/cgroup"), &format!("0::{cgroup}\n"));
        }
        // A kernel thread: no command line.
        w("proc/2/cmdline", "");
        w("proc/2/status", "Name:\tkthreadd\n");
    }

    #[test]
    fn the_guest_and_its_applications_are_read_as_rates_over_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        lay_out(dir.path(), 100, 10, 50);
        let mut p = Probe::new(dir.path());
        assert!(p.sample(1000).unwrap().is_none(), "the first sample primes");
        // Over 2 s: 100 more busy ticks (1 s of one cpu over 2 s: 500 millicores), each
        // postgres 20 ticks (100 millicores each), 40 more disk operations (20 a second).
        lay_out(dir.path(), 200, 30, 70);
        let r = p.sample(2000).unwrap().unwrap();
        assert_eq!(r.seq, 1);
        assert_eq!(r.cpu_millicores, 500);
        assert_eq!(r.memory_total_bytes, 400 << 20);
        assert_eq!(r.memory_used_bytes, 100 << 20);
        assert_eq!(r.io_ops_per_s, 20);
        assert_eq!(r.pressure.unwrap().io, 2.25);
        assert_eq!(r.apps.len(), 2, "{:?}", r.apps);
        let db = &r.apps[0];
        assert_eq!(db.name, "cgroup:/db");
        assert_eq!(
            (
                db.processes,
                db.cpu_millicores,
                db.memory_bytes,
                db.io_ops_per_s
            ),
            (2, 200, 30 << 20, 20)
        );
        assert_eq!(r.apps[1].name, "my app");
        assert_eq!(r.apps[1].memory_bytes, 1 << 20);
    }

    #[test]
    fn a_guest_without_proc_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Probe::new(dir.path()).sample(1000).unwrap_err().to_string();
        assert!(e.contains("proc/stat"), "{e}");
    }
}
