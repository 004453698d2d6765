//! What the in-guest profiler sends: one JSON document per line, the guest's totals and its
//! applications' usage over the last interval.

use serde::{Deserialize, Serialize};

/// The version of [`GuestReport`] this build writes and reads.
pub const REPORT_VERSION: u32 = 1;

/// The longest line the host reads from a guest; a longer one is refused.
pub const MAX_LINE: usize = 64 * 1024;

/// The most applications one report carries (the largest by memory, then cpu).
pub const MAX_APPS: usize = 32;

/// One report of the guest's usage over its last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// Counts up from 1 since the profiler started.
    pub seq: u64,
    /// The interval the rates are over, in milliseconds.
    pub interval_ms: u64,
    /// CPU the guest used, in millicores.
    pub cpu_millicores: u64,
    /// Memory the guest uses: its total less what it says is available, in bytes.
    pub memory_used_bytes: u64,
    /// The guest's memory total (what the balloon leaves it), in bytes.
    pub memory_total_bytes: u64,
    /// Block operations completed per second, over its disks.
    pub io_ops_per_s: u64,
    /// Pressure stall information (`/proc/pressure`), `some avg10`, where the kernel has it.
    pub pressure: Option<Pressure>,
    /// The applications: processes grouped by cgroup, or by name outside any.
    pub apps: Vec<AppUsage>,
}

/// The share of the last 10 s some task stalled on each resource, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pressure {
    /// Waiting for a cpu.
    pub cpu: f64,
    /// Waiting for memory (reclaim, swap-in).
    pub memory: f64,
    /// Waiting for I/O.
    pub io: f64,
}

/// One application's usage over the interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppUsage {
    /// `cgroup:/path` for processes in a cgroup, else the process name.
    pub name: String,
    /// How many processes it has.
    pub processes: u64,
    /// CPU, in millicores.
    pub cpu_millicores: u64,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
    /// Read and write calls per second.
    pub io_ops_per_s: u64,
}

/// Why a line from a guest was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Longer than [`MAX_LINE`].
    #[error("a report of {0} bytes is longer than the {MAX_LINE} allowed")]
    TooLong(usize),
    /// Not a report.
    #[error("not a guest report: {0}")]
    NotReport(#[from] serde_json::Error),
    /// A version this build does not read.
    #[error("guest report version {0}; this shardex reads version {REPORT_VERSION}")]
    Version(u32),
    /// Numbers that can't be right.
    #[error("guest report: {0}")]
    Invalid(&'static str),
}

impl GuestReport {
    /// The report on one line (`line`, without its newline).
    pub fn parse(line: &str) -> Result<Self, ReportError> {
        if line.len() > MAX_LINE {
            return Err(ReportError::TooLong(line.len()));
        }
        let r: Self = serde_json::from_str(line)?;
        if r.version != REPORT_VERSION {
            return Err(ReportError::Version(r.version));
        }
        if r.interval_ms == 0 {
            return Err(ReportError::Invalid("an interval of 0 ms"));
        }
        if r.memory_used_bytes > r.memory_total_bytes {
            return Err(ReportError::Invalid("more memory used than the guest has"));
        }
        if r.apps.len() > MAX_APPS {
            return Err(ReportError::Invalid(
                "more applications than a report carries",
            ));
        }
        Ok(r)
    }

    /// The report as one line, without its newline.
    pub fn to_line(&self) -> String {
        // A report is plain numbers and strings: it always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> GuestReport {
        GuestReport {
            version: REPORT_VERSION,
            seq: 1,
            interval_ms: 1000,
            cpu_millicores: 250,
            memory_used_bytes: 100 << 20,
            memory_total_bytes: 400 << 20,
            io_ops_per_s: 3,
            pressure: Some(Pressure {
                cpu: 0.5,
                memory: 0.0,
                io: 1.25,
            }),
            apps: vec![AppUsage {
                name: "cgroup:/db".into(),
                processes: 2,
                cpu_millicores: 200,
                memory_bytes: 80 << 20,
                io_ops_per_s: 3,
            }],
        }
    }

    #[test]
    fn a_report_round_trips_and_bad_ones_say_what_is_wrong() {
        let r = report();
        assert_eq!(GuestReport::parse(&r.to_line()).unwrap(), r);
        let e = |line: &str| GuestReport::parse(line).unwrap_err().to_string();
        assert!(e("hello").contains("not a guest report"));
        let mut v = serde_json::to_value(report()).unwrap();
        v["version"] = 9.into();
        assert!(e(&v.to_string()).contains("version 9"));
        let mut v = serde_json::to_value(report()).unwrap();
        v["memory_used_bytes"] = (1u64 << 40).into();
        assert!(e(&v.to_string()).contains("more memory used"));
        let mut v = serde_json::to_value(report()).unwrap();
        v["extra"] = 1.into();
        assert!(e(&v.to_string()).contains("unknown field"));
        assert!(e(&" ".repeat(MAX_LINE + 1)).contains("longer than"));
    }
}
