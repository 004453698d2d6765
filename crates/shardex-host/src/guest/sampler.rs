//! A VM's samples with what its guest reports: the memory its applications use (the guest's
//! total less what it says is available) replaces the host's view of the VM's memory (every
//! page the guest ever touched), so the VM's forecast follows application demand. Cpu, net and
//! I/O stay the host's (what the VM costs the host, emulation included).

use shardex_core::ResourceKind;
use shardex_core::ports::{Reading, Sampler, SamplerError};
use shardex_core::time::Timestamp;

use super::channel::GuestChannels;

/// A guest at or above this share of its memory is held by it (its balloon): what it uses is
/// then a lower bound on what it would use, as for a cgroup at its limit.
const FULL_PERCENT: u64 = 95;

/// `inner`'s samples, with each VM's memory from its guest where a fresh report is at hand.
#[derive(Debug)]
pub struct GuestAwareSampler<S> {
    inner: S,
    channels: GuestChannels,
}

impl<S> GuestAwareSampler<S> {
    /// Wraps `inner`; VMs without a channel, or whose guest is silent, are sampled by it alone.
    pub fn new(inner: S, channels: GuestChannels) -> Self {
        Self { inner, channels }
    }

    /// The wrapped sampler.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The channels the reports come from.
    pub fn channels(&self) -> &GuestChannels {
        &self.channels
    }
}

impl<S: Sampler> Sampler for GuestAwareSampler<S> {
    fn sample(&mut self, workload: &str, now: Timestamp) -> Result<Option<Reading>, SamplerError> {
        let Some(mut reading) = self.inner.sample(workload, now)? else {
            return Ok(None);
        };
        let fresh = self.channels.current(workload);
        let m = ResourceKind::Memory.index();
        if fresh.is_none() && self.channels.awaiting_first(workload) {
            // The guest's figure and the host's are different quantities: until the first
            // report (a minute at most), nothing rather than the host's.
            reading.usage[m] = None;
            reading.censored[m] = false;
        }
        if let Some(r) = fresh {
            reading.usage[m] = Some(r.memory_used_bytes);
            reading.censored[m] |= r.memory_used_bytes * 100 >= r.memory_total_bytes * FULL_PERCENT;
        }
        Ok(Some(reading))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{GuestReport, REPORT_VERSION};
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// The host's view: every VM at 900 MiB and 300 millicores, memory not held.
    struct Host;

    impl Sampler for Host {
        fn sample(&mut self, w: &str, _: Timestamp) -> Result<Option<Reading>, SamplerError> {
            Ok((w != "gone").then(|| Reading {
                usage: [Some(300), Some(900 << 20), None, None],
                ..Reading::default()
            }))
        }
    }

    #[test]
    fn a_vm_s_memory_is_what_its_guest_uses_while_it_reports() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vm.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let channels = GuestChannels::start(&BTreeMap::from([("vm".to_string(), sock)]));
        let (mut guest, _) = listener.accept().unwrap();
        let mut s = GuestAwareSampler::new(Host, channels);
        let now = Timestamp::from_millis(1).unwrap();
        // No report yet: nothing, rather than the host's view, for the first minute.
        let before = s.sample("vm", now).unwrap().unwrap();
        assert_eq!(before.usage[1], None);
        assert_eq!(before.usage[0], Some(300), "cpu stays the host's");
        let send = |guest: &mut std::os::unix::net::UnixStream, used: u64, seq: u64| {
            let r = GuestReport {
                version: REPORT_VERSION,
                seq,
                interval_ms: 1000,
                cpu_millicores: 50,
                memory_used_bytes: used,
                memory_total_bytes: 1 << 30,
                io_ops_per_s: 0,
                pressure: None,
                apps: vec![],
            };
            guest
                .write_all(format!("{}\n", r.to_line()).as_bytes())
                .unwrap();
        };
        let wait_for = |s: &mut GuestAwareSampler<Host>, used: u64| {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let r = s.sample("vm", now).unwrap().unwrap();
                if r.usage[1] == Some(used) || std::time::Instant::now() > end {
                    return r;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        send(&mut guest, 200 << 20, 1);
        let r = wait_for(&mut s, 200 << 20);
        assert_eq!(
            r.usage,
            [Some(300), Some(200 << 20), None, None],
            "cpu stays the host's"
        );
        assert!(!r.censored[1]);
        // At 95 % of what the balloon leaves it, the guest is held: a lower bound.
        send(&mut guest, 1000 << 20, 2);
        let r = wait_for(&mut s, 1000 << 20);
        assert!(r.censored[1]);
        // Other workloads, and ones the host can't find, are the host's alone.
        assert_eq!(
            s.sample("other", now).unwrap().unwrap().usage[1],
            Some(900 << 20)
        );
        assert!(s.sample("gone", now).unwrap().is_none());
    }
}
