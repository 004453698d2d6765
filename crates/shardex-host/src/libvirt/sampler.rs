//! Samples `libvirt:DOMAIN` workloads from libvirt's domain statistics: cpu time, what the
//! guest uses by its balloon's statistics (its total less what it can give up without
//! swapping), the disks' requests and the interfaces' transmitted bytes, as rates between
//! two samples.

use std::collections::BTreeMap;

use shardex_core::ResourceKind;
use shardex_core::ports::{Reading, Sampler, SamplerError};
use shardex_core::time::Timestamp;
use virt::domain::Domain;
use virt::sys;

use super::{Link, domain_of, iotune};

/// Counters at the previous sample of a domain.
#[derive(Debug, Clone, Copy)]
struct Before {
    at: Timestamp,
    cpu_ns: u64,
    ios: u64,
    tx_bytes: u64,
}

/// Samples libvirt domains.
#[derive(Debug)]
pub struct LibvirtSampler {
    link: Link,
    before: BTreeMap<String, Before>,
}

impl LibvirtSampler {
    /// Through libvirt at `uri`.
    pub fn new(uri: &str) -> Self {
        Self {
            link: Link::new(uri),
            before: BTreeMap::new(),
        }
    }
}

/// The domain's interfaces (their host-side names), from its live XML.
fn interfaces(dom: &Domain) -> Vec<String> {
    let xml = dom.get_xml_desc(0).unwrap_or_default();
    xml.split("<interface ")
        .skip(1)
        .filter_map(|i| {
            let block = i.split("</interface>").next()?;
            let at = block.find("<target dev=")? + "<target dev=".len();
            let quoted = &block[at..];
            let q = quoted.chars().next()?;
            let rest = &quoted[1..];
            Some(rest[..rest.find(q)?].to_string())
        })
        .collect()
}

impl Sampler for LibvirtSampler {
    fn sample(&mut self, workload: &str, now: Timestamp) -> Result<Option<Reading>, SamplerError> {
        let Some(domain) = domain_of(workload) else {
            return Ok(None);
        };
        let err = |reason: String| SamplerError {
            workload: workload.to_string(),
            reason,
        };
        let Ok(dom) = self.link.domain(domain) else {
            // Not running here (or libvirt is away): not sampled, as a missing cgroup.
            return Ok(None);
        };
        let info = dom.get_info().map_err(|e| err(e.to_string()))?;
        let stats = dom.memory_stats(0).map_err(|e| err(e.to_string()))?;
        let tag = |t: u32| stats.iter().find(|s| s.tag == t).map(|s| s.val * 1024);
        let memory = match (
            tag(sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE),
            tag(sys::VIR_DOMAIN_MEMORY_STAT_USABLE),
        ) {
            (Some(total), Some(usable)) if usable <= total => Some(total - usable),
            // Without the balloon's statistics, what the domain holds.
            _ => tag(sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).or(Some(info.memory * 1024)),
        };
        let ios: u64 = iotune::disks(self.link.uri(), domain)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| dom.get_block_stats(d).ok())
            .map(|s| u64::try_from(s.rd_req.max(0) + s.wr_req.max(0)).unwrap_or(0))
            .sum();
        let tx_bytes: u64 = interfaces(&dom)
            .iter()
            .filter_map(|i| dom.interface_stats(i).ok())
            .map(|s| u64::try_from(s.tx_bytes.max(0)).unwrap_or(0))
            .sum();
        let here = Before {
            at: now,
            cpu_ns: info.cpu_time,
            ios,
            tx_bytes,
        };
        let before = self.before.insert(workload.to_string(), here);
        let mut usage = [None; 4];
        usage[ResourceKind::Memory.index()] = memory;
        if let Some(b) = before {
            let ms = now.millis().saturating_sub(b.at.millis());
            if ms > 0 {
                let ms = u64::try_from(ms).unwrap_or(u64::MAX);
                let rate = |now: u64, then: u64, per_ms: u64| {
                    now.checked_sub(then).map(|d| d * per_ms / ms)
                };
                // ns of cpu per ms are micro-cores: / 1000 millicores.
                usage[ResourceKind::Cpu.index()] = rate(here.cpu_ns, b.cpu_ns, 1).map(|r| r / 1000);
                usage[ResourceKind::Iops.index()] = rate(here.ios, b.ios, 1000);
                usage[ResourceKind::Net.index()] = rate(here.tx_bytes, b.tx_bytes, 8000);
            }
        }
        Ok(Some(Reading {
            usage,
            ..Reading::default()
        }))
    }
}
