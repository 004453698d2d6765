//! The host's side of the in-guest profiler: one reader thread per VM on the socket that is
//! that VM's end of its virtio-serial port (QEMU's `-chardev socket,server=on`, libvirt's
//! `<channel type='unix'>`). A report is that VM's because of the socket it came in on; the
//! newest one per VM is kept for the sampler. A reader reconnects when QEMU goes away.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::report::{GuestReport, MAX_LINE};

/// How long a reader waits before connecting again.
const RETRY: Duration = Duration::from_secs(1);

/// The newest report of a VM and when it arrived.
#[derive(Debug, Clone)]
struct Latest {
    report: GuestReport,
    at: Instant,
}

/// What the readers share with the sampler.
#[derive(Debug, Default)]
struct Shared {
    latest: Mutex<BTreeMap<String, Latest>>,
    refused: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

/// How long after the readers start a VM with a channel waits for its guest's first report
/// before its host-side figures are used instead.
pub const FIRST_REPORT: Duration = Duration::from_secs(60);

/// The VMs' channels (workload name → socket), read in the background while this lives.
#[derive(Debug, Clone)]
pub struct GuestChannels {
    shared: Arc<Shared>,
    vms: Arc<std::collections::BTreeSet<String>>,
    started: Instant,
}

impl GuestChannels {
    /// Starts a reader per VM.
    pub fn start(channels: &BTreeMap<String, PathBuf>) -> Self {
        let shared = Arc::new(Shared::default());
        for (vm, path) in channels {
            let (vm, path, shared) = (vm.clone(), path.clone(), Arc::clone(&shared));
            let spawned = std::thread::Builder::new()
                .name(format!("guest-{vm}"))
                .spawn(move || read_forever(&vm, &path, &shared));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a guest channel's reader");
            }
        }
        Self {
            shared,
            vms: Arc::new(channels.keys().cloned().collect()),
            started: Instant::now(),
        }
    }

    /// Whether `vm` has a channel whose first report has not come yet, within
    /// [`FIRST_REPORT`] of the start: its memory is then unknown rather than the host's figure,
    /// so that one series never mixes the two.
    pub fn awaiting_first(&self, vm: &str) -> bool {
        self.vms.contains(vm)
            && self.started.elapsed() < FIRST_REPORT
            && self.shared.latest.lock().is_ok_and(|l| !l.contains_key(vm))
    }

    /// The newest report of `vm` if it arrived within `fresh`.
    pub fn latest(&self, vm: &str, fresh: Duration) -> Option<GuestReport> {
        let latest = self.shared.latest.lock().ok()?;
        latest
            .get(vm)
            .filter(|l| l.at.elapsed() <= fresh)
            .map(|l| l.report.clone())
    }

    /// The newest report of `vm` unless it is stale: older than three of its intervals, and
    /// than 5 s.
    pub fn current(&self, vm: &str) -> Option<GuestReport> {
        let latest = self.shared.latest.lock().ok()?;
        let l = latest.get(vm)?;
        let stale = Duration::from_millis(l.report.interval_ms)
            .saturating_mul(3)
            .max(Duration::from_secs(5));
        (l.at.elapsed() <= stale).then(|| l.report.clone())
    }

    /// Lines refused from `vm` so far (not reports, too long, another version).
    pub fn refused(&self, vm: &str) -> u64 {
        self.shared
            .refused
            .lock()
            .map_or(0, |r| r.get(vm).copied().unwrap_or(0))
    }
}

impl Drop for GuestChannels {
    fn drop(&mut self) {
        // The last handle stops the readers at their next line or retry.
        if Arc::strong_count(&self.shared) == 1 {
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }
}

fn read_forever(vm: &str, path: &std::path::Path, shared: &Shared) {
    let mut warned = false;
    while !shared.stop.load(Ordering::Relaxed) {
        match UnixStream::connect(path) {
            Ok(stream) => {
                warned = false;
                tracing::info!(vm, path = %path.display(), "reading the guest's profiler");
                // A read timeout lets the reader notice it should stop.
                let _ = stream.set_read_timeout(Some(RETRY));
                read_stream(vm, stream, shared);
            }
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(vm, path = %path.display(), error = %e, "no guest channel yet; retrying every second");
            }
            Err(_) => {}
        }
        std::thread::sleep(RETRY);
    }
}

/// Reads lines until the stream ends; bounded, so a guest can't make the host buffer without
/// end.
fn read_stream(vm: &str, stream: UnixStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let limit = u64::try_from(MAX_LINE + 2).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if !line.ends_with(b"\n") && line.len() <= MAX_LINE => {
                // Part of a line (a read timed out, or the take's limit): read on.
                continue;
            }
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                match GuestReport::parse(text.trim_end()) {
                    Ok(report) => {
                        if let Ok(mut latest) = shared.latest.lock() {
                            latest.insert(
                                vm.to_string(),
                                Latest {
                                    report,
                                    at: Instant::now(),
                                },
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(vm, error = %e, "a line from the guest's profiler was refused");
                        if let Ok(mut r) = shared.refused.lock() {
                            *r.entry(vm.to_string()).or_default() += 1;
                        }
                        if line.len() > MAX_LINE && !line.ends_with(b"\n") {
                            // The rest of an overlong line is skipped up to its end.
                            let mut rest = Vec::new();
                            let _ = reader.read_until(b'\n', &mut rest);
                        }
                    }
                }
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                tracing::warn!(vm, error = %e, "the guest channel failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    fn report(seq: u64) -> GuestReport {
        GuestReport {
            version: super::super::REPORT_VERSION,
            seq,
            interval_ms: 1000,
            cpu_millicores: 10,
            memory_used_bytes: seq << 20,
            memory_total_bytes: 1 << 30,
            io_ops_per_s: 0,
            pressure: None,
            apps: vec![],
        }
    }

    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn each_vm_gets_the_reports_of_its_own_socket_and_bad_lines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let (la, lb) = (
            UnixListener::bind(&a).unwrap(),
            UnixListener::bind(&b).unwrap(),
        );
        let ch = GuestChannels::start(&BTreeMap::from([
            ("vm-a".to_string(), a.clone()),
            ("vm-b".to_string(), b.clone()),
        ]));
        let (mut sa, _) = la.accept().unwrap();
        let (mut sb, _) = lb.accept().unwrap();
        // Written in pieces, as a serial port may deliver it.
        let line = report(7).to_line();
        let (head, tail) = line.split_at(10);
        sa.write_all(head.as_bytes()).unwrap();
        sa.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        sa.write_all(format!("{tail}\n").as_bytes()).unwrap();
        sb.write_all(b"not a report\n").unwrap();
        sb.write_all(&vec![b'x'; MAX_LINE + 10]).unwrap();
        sb.write_all(format!("\n{}\n", report(3).to_line()).as_bytes())
            .unwrap();
        let fresh = Duration::from_secs(5);
        assert!(eventually(|| ch
            .latest("vm-a", fresh)
            .is_some_and(|r| r.seq == 7)));
        assert!(eventually(|| ch
            .latest("vm-b", fresh)
            .is_some_and(|r| r.seq == 3)));
        assert_eq!(ch.refused("vm-b"), 2);
        assert_eq!(ch.refused("vm-a"), 0);
        assert!(ch.latest("vm-c", fresh).is_none());
        // A report goes stale.
        assert!(ch.latest("vm-a", Duration::ZERO).is_none());
    }
}
