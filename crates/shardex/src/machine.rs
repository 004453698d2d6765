//! What the local machine has: read from /proc and /sys, never guessed.

use std::path::Path;

use thiserror::Error;

/// Errors reading the machine's capacity.
#[derive(Debug, Error)]
pub enum MachineError {
    /// A system file could not be read.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A system file did not say what was expected.
    #[error("{path} does not contain {what}")]
    Format {
        /// The file.
        path: String,
        /// What was looked for.
        what: &'static str,
    },
}

fn read(path: &str) -> Result<String, MachineError> {
    std::fs::read_to_string(path).map_err(|source| MachineError::Read {
        path: path.into(),
        source,
    })
}

/// The machine's hostname.
pub fn hostname() -> Result<String, MachineError> {
    let path = "/proc/sys/kernel/hostname";
    let name = read(path)?.trim().to_string();
    if name.is_empty() {
        return Err(MachineError::Format {
            path: path.into(),
            what: "a hostname",
        });
    }
    Ok(name)
}

/// Online CPUs, from the kernel's online list (e.g. `0-3,6`).
pub fn online_cpus() -> Result<u64, MachineError> {
    let path = "/sys/devices/system/cpu/online";
    if !Path::new(path).exists() {
        // Some containers hide /sys; the scheduler's view is the next best source.
        return std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .map_err(|source| MachineError::Read {
                path: path.into(),
                source,
            });
    }
    parse_cpu_list(&read(path)?).ok_or(MachineError::Format {
        path: path.into(),
        what: "a CPU list",
    })
}

fn parse_cpu_list(text: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// Total memory in bytes (MemTotal).
pub fn memory_bytes() -> Result<u64, MachineError> {
    let path = "/proc/meminfo";
    parse_meminfo_total(&read(path)?).ok_or(MachineError::Format {
        path: path.into(),
        what: "MemTotal",
    })
}

fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn parses_meminfo() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       16318460 kB\nMemFree: 1 kB\n"),
            Some(16318460 * 1024)
        );
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn reads_this_machine() {
        assert!(online_cpus().unwrap() >= 1);
        assert!(memory_bytes().unwrap() > 1 << 20);
        assert!(!hostname().unwrap().is_empty());
    }
}
