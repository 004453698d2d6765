//! Reader of the trace format of `../shared/data/README.md`: a folder with `samples.csv.gz`
//! (`workload,time_s,cpu_millicores,memory_bytes,net_bps,iops`, rows grouped by workload,
//! times increasing) and `workloads.csv` (`workload,cpu_millicores,memory_bytes,net_bps,iops`:
//! provisioned sizes). Streaming: one workload's rows in memory at a time.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::GzDecoder;
use shardex_core::Timestamp;
use shardex_forecast::replay::{TraceRow, WorkloadTrace};
use thiserror::Error;

const SAMPLES_HEADER: &str = "workload,time_s,cpu_millicores,memory_bytes,net_bps,iops";
const WORKLOADS_HEADER: &str = "workload,cpu_millicores,memory_bytes,net_bps,iops";

/// Errors reading a trace.
#[derive(Debug, Error)]
pub enum TraceError {
    /// A file could not be opened or read.
    #[error("could not read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A row that breaks the format.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Counts the compressed bytes read, for a progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Splits a CSV line of plain fields (the format has no quoting) and parses optional integers.
fn parse_value(field: &str, column: &str) -> Result<Option<u64>, String> {
    let f = field.trim();
    if f.is_empty() {
        return Ok(None);
    }
    f.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{column} is {f:?}, not a non-negative integer"))
}

/// Reads `workloads.csv`: provisioned sizes per workload.
pub fn read_workloads(path: &Path) -> Result<HashMap<String, [Option<u64>; 4]>, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = BufReader::new(File::open(path).map_err(io)?);
    let mut out = HashMap::new();
    for (i, line) in file.lines().enumerate() {
        let line = line.map_err(io)?;
        let n = i as u64 + 1;
        let bad = |reason: String| TraceError::Malformed {
            path: path.to_path_buf(),
            line: n,
            reason,
        };
        if n == 1 {
            if line.trim() != WORKLOADS_HEADER {
                return Err(bad(format!(
                    "header is {line:?}, expected {WORKLOADS_HEADER:?}"
                )));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 5 {
            return Err(bad(format!("{} fields, expected 5", fields.len())));
        }
        let name = fields[0].trim();
        if name.is_empty() {
            return Err(bad("the workload name is empty".into()));
        }
        let cols = ["cpu_millicores", "memory_bytes", "net_bps", "iops"];
        let mut sizes = [None; 4];
        for k in 0..4 {
            sizes[k] = parse_value(fields[k + 1], cols[k]).map_err(bad)?;
        }
        if out.insert(name.to_string(), sizes).is_some() {
            return Err(bad(format!("workload {name:?} is listed twice")));
        }
    }
    Ok(out)
}

/// Streams the workloads of a trace, one at a time.
pub struct TraceReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<GzDecoder<Counting<File>>>>,
    line: u64,
    provisioned: HashMap<String, [Option<u64>; 4]>,
    seen: HashSet<String>,
    carry: Option<(String, TraceRow)>,
    /// Compressed bytes read so far.
    pub progress: Arc<AtomicU64>,
    /// Size of the compressed file.
    pub total_bytes: u64,
    /// The trace's folder name.
    pub name: String,
}

impl TraceReader {
    /// True when `workloads.csv` lists `name`.
    pub fn lists(&self, name: &str) -> bool {
        self.provisioned.contains_key(name)
    }

    /// Opens a trace folder and checks the header of its samples.
    pub fn open(dir: &Path) -> Result<Self, TraceError> {
        let provisioned = read_workloads(&dir.join("workloads.csv"))?;
        let path = dir.join("samples.csv.gz");
        let io = |source| TraceError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let total_bytes = file.metadata().map_err(io)?.len();
        let progress = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: file,
            read: progress.clone(),
        };
        let mut lines = BufReader::with_capacity(1 << 16, GzDecoder::new(counting)).lines();
        let header = match lines.next() {
            Some(h) => h.map_err(io)?,
            None => String::new(),
        };
        if header.trim() != SAMPLES_HEADER {
            return Err(TraceError::Malformed {
                path,
                line: 1,
                reason: format!("header is {header:?}, expected {SAMPLES_HEADER:?}"),
            });
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            path,
            lines,
            line: 1,
            provisioned,
            seen: HashSet::new(),
            carry: None,
            progress,
            total_bytes,
            name,
        })
    }

    fn bad(&self, reason: String) -> TraceError {
        TraceError::Malformed {
            path: self.path.clone(),
            line: self.line,
            reason,
        }
    }

    fn next_row(&mut self) -> Result<Option<(String, TraceRow)>, TraceError> {
        loop {
            let Some(line) = self.lines.next() else {
                return Ok(None);
            };
            self.line += 1;
            let line = line.map_err(|source| TraceError::Io {
                path: self.path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split(',');
            let mut next = || fields.next();
            let (Some(name), Some(time), Some(cpu), Some(mem), Some(net), Some(iops), None) =
                (next(), next(), next(), next(), next(), next(), next())
            else {
                let n = line.split(',').count();
                return Err(self.bad(format!("{n} fields, expected 6")));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(self.bad("the workload name is empty".into()));
            }
            let secs: i64 = time
                .trim()
                .parse()
                .map_err(|_| self.bad(format!("time_s is {:?}, not an integer", time.trim())))?;
            let time = Timestamp::from_secs(secs).map_err(|e| self.bad(format!("time_s: {e}")))?;
            let mut values = [None; 4];
            let cols = ["cpu_millicores", "memory_bytes", "net_bps", "iops"];
            for (k, f) in [cpu, mem, net, iops].into_iter().enumerate() {
                values[k] = parse_value(f, cols[k]).map_err(|r| self.bad(r))?;
            }
            return Ok(Some((name.to_string(), TraceRow { time, values })));
        }
    }

    /// The next workload with all its rows, or `None` at the end.
    pub fn next_workload(&mut self) -> Result<Option<WorkloadTrace>, TraceError> {
        let first = match self.carry.take() {
            Some(r) => r,
            None => match self.next_row()? {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        let (name, row) = first;
        if !self.seen.insert(name.clone()) {
            return Err(self.bad(format!(
                "rows of workload {name:?} are not grouped together"
            )));
        }
        let mut rows = vec![row];
        while let Some((n, row)) = self.next_row()? {
            if n != name {
                self.carry = Some((n, row));
                break;
            }
            let prev = rows.last().map(|r| r.time).unwrap_or(row.time);
            if row.time <= prev {
                return Err(self.bad(format!(
                    "time_s {} of workload {name:?} is not after the previous {}",
                    row.time.millis() / 1000,
                    prev.millis() / 1000
                )));
            }
            rows.push(row);
        }
        let provisioned = self.provisioned.get(&name).copied().unwrap_or([None; 4]);
        Ok(Some(WorkloadTrace {
            name,
            provisioned,
            rows,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_trace(dir: &Path, samples: &str, workloads: &str) {
        std::fs::write(dir.join("workloads.csv"), workloads).unwrap();
        let f = File::create(dir.join("samples.csv.gz")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(samples.as_bytes()).unwrap();
        gz.finish().unwrap();
    }

    const W: &str = "workload,cpu_millicores,memory_bytes,net_bps,iops\na,1000,2048,,\n";

    fn read_all(dir: &Path) -> Result<Vec<WorkloadTrace>, TraceError> {
        let mut r = TraceReader::open(dir)?;
        let mut out = Vec::new();
        while let Some(w) = r.next_workload()? {
            out.push(w);
        }
        Ok(out)
    }

    #[test]
    fn reads_grouped_rows_with_missing_resources_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let s = "workload,time_s,cpu_millicores,memory_bytes,net_bps,iops\n\
                 a,0,10,100,,\na,300,20,,,\na,1200,30,300,,\nb,5,1,,,7\n";
        write_trace(dir.path(), s, W);
        let ws = read_all(dir.path()).unwrap();
        assert_eq!(ws.len(), 2);
        assert_eq!(ws[0].name, "a");
        assert_eq!(ws[0].provisioned, [Some(1000), Some(2048), None, None]);
        assert_eq!(ws[0].rows.len(), 3);
        assert_eq!(ws[0].rows[1].values, [Some(20), None, None, None]);
        assert_eq!(ws[0].rows[2].time, Timestamp::from_secs(1200).unwrap());
        assert_eq!(
            ws[1].provisioned, [None; 4],
            "unknown provisioning is allowed"
        );
        assert_eq!(ws[1].rows[0].values[3], Some(7));
    }

    fn error_of(samples: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        write_trace(dir.path(), samples, W);
        read_all(dir.path()).unwrap_err().to_string()
    }

    #[test]
    fn rejects_malformed_rows_with_file_line_and_reason() {
        let h = "workload,time_s,cpu_millicores,memory_bytes,net_bps,iops\n";
        let e = error_of(&format!("{h}a,0,10,,,\na,300,-5,,,\n"));
        assert!(
            e.ends_with("samples.csv.gz:3: cpu_millicores is \"-5\", not a non-negative integer"),
            "{e}"
        );
        let e = error_of(&format!("{h}a,0,10,,\n"));
        assert!(e.contains(":2: 5 fields, expected 6"), "{e}");
        let e = error_of(&format!("{h}a,300,1,,,\na,300,1,,,\n"));
        assert!(
            e.contains(":3: time_s 300 of workload \"a\" is not after the previous 300"),
            "{e}"
        );
        let e = error_of(&format!("{h}a,0,1,,,\nb,0,1,,,\na,300,1,,,\n"));
        assert!(
            e.contains(":4: rows of workload \"a\" are not grouped together"),
            "{e}"
        );
        let e = error_of(&format!("{h}a,x,1,,,\n"));
        assert!(e.contains(":2: time_s is \"x\""), "{e}");
        let e = error_of("workload,time,cpu\n");
        assert!(e.contains(":1: header is"), "{e}");
    }

    #[test]
    fn rejects_bad_workload_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = "workload,time_s,cpu_millicores,memory_bytes,net_bps,iops\n";
        write_trace(
            dir.path(),
            s,
            "workload,cpu_millicores,memory_bytes,net_bps,iops\na,1.5,,,\n",
        );
        let e = TraceReader::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("workloads.csv:2: cpu_millicores is \"1.5\""),
            "{e}"
        );
        let missing = TraceReader::open(&dir.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(missing.contains("could not read"), "{missing}");
    }
}
