//! Applies `libvirt:DOMAIN` workloads' allocations live through libvirt, each read back from
//! libvirt: memory as the balloon's actual size, cpu as vCPUs times their CFS quota, IOPS as
//! the disks' `total_iops_sec`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};
use virt::domain::{Domain, SchedBandwidth, SchedulerInfo};
use virt::sys;

use super::{LibvirtError, Link, domain_of, iotune};

/// The CFS period the vCPUs' quota is set against, in microseconds.
const PERIOD_US: u64 = 100_000;

/// How long an actuation waits for the balloon to reach its target before reading back.
const SETTLE: Duration = Duration::from_millis(500);

/// What a domain has at most: memory in bytes, vCPUs, and whether it has disks.
#[derive(Debug, Clone, Copy)]
struct Most {
    memory: u64,
    vcpus: u64,
    disks: bool,
}

/// Applies libvirt domains' cpu, memory and IOPS allocations.
#[derive(Debug)]
pub struct LibvirtActuator {
    link: Link,
    most: Mutex<BTreeMap<String, Most>>,
}

fn call<'a>(
    what: &'static str,
    domain: &'a str,
) -> impl Fn(virt::error::Error) -> LibvirtError + 'a {
    move |e| LibvirtError::Call {
        what,
        domain: domain.to_string(),
        message: e.to_string(),
    }
}

impl LibvirtActuator {
    /// Through libvirt at `uri` (e.g. `qemu:///system`).
    pub fn new(uri: &str) -> Self {
        Self {
            link: Link::new(uri),
            most: Mutex::default(),
        }
    }

    /// One lookup of the domain behind `name`, then each kind asked that this manages.
    fn each(
        &mut self,
        name: &str,
        kinds: Kinds,
        mut f: impl FnMut(&Domain, &str, &str, ResourceKind) -> Result<Option<u64>, LibvirtError>,
    ) -> Applied {
        let mine: Kinds =
            std::array::from_fn(|i| kinds[i] && self.manages(name, ResourceKind::ALL[i]));
        let Some(domain) = domain_of(name).filter(|_| mine.iter().any(|&m| m)) else {
            return Applied::default();
        };
        let dom = match self.link.domain(domain) {
            Ok(d) => d,
            Err(e) => return Applied::failed(mine, &e.into()),
        };
        let uri = self.link.uri().to_string();
        let mut out = Applied::default();
        for kind in [ResourceKind::Memory, ResourceKind::Cpu, ResourceKind::Iops] {
            if mine[kind.index()] {
                out.set(
                    kind,
                    match f(&dom, domain, &uri, kind) {
                        Ok(v) => KindState::InForce(v),
                        Err(e) => KindState::Failed(e.into()),
                    },
                );
            }
        }
        out
    }

    fn learn(&self, name: &str, most: Most) {
        if let Ok(mut m) = self.most.lock() {
            m.insert(name.to_string(), most);
        }
    }
}

/// What the domain has at most.
fn most(dom: &Domain, domain: &str, uri: &str) -> Result<Most, LibvirtError> {
    let memory = dom.get_max_memory().map_err(call("maxmem", domain))? * 1024;
    let vcpus = dom
        .get_vcpus_flags(sys::VIR_DOMAIN_VCPU_LIVE | sys::VIR_DOMAIN_VCPU_MAXIMUM)
        .map_err(call("vcpucount --maximum --live", domain))?;
    Ok(Most {
        memory,
        vcpus: u64::from(vcpus),
        disks: !iotune::disks(uri, domain)?.is_empty(),
    })
}

/// The balloon's actual size and what the guest uses (its total less what it can give up
/// without swapping), in bytes, from the domain's memory statistics.
fn balloon(dom: &Domain, domain: &str) -> Result<(u64, Option<u64>), LibvirtError> {
    let stats = dom.memory_stats(0).map_err(call("dommemstat", domain))?;
    let tag = |t: u32| stats.iter().find(|s| s.tag == t).map(|s| s.val * 1024);
    let actual = match tag(sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON) {
        Some(a) => a,
        None => dom.get_info().map_err(call("dominfo", domain))?.memory * 1024,
    };
    let used = match (
        tag(sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE),
        tag(sys::VIR_DOMAIN_MEMORY_STAT_USABLE),
    ) {
        (Some(total), Some(usable)) if usable <= total => Some(total - usable),
        _ => None,
    };
    Ok((actual, used))
}

fn set_memory(dom: &Domain, domain: &str, target: u64) -> Result<(), LibvirtError> {
    let (actual, used) = balloon(dom, domain)?;
    let set =
        crate::balloon::next_target(actual, target, if target < actual { used } else { None });
    dom.set_memory_flags(set / 1024, sys::VIR_DOMAIN_MEM_LIVE)
        .map_err(call("setmem --live", domain))?;
    let deadline = Instant::now() + SETTLE;
    while balloon(dom, domain)?.0 != set / 1024 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// vCPUs up to `ceil(millicores / 1000)` (never unplugged: the quota below caps the total, and
/// QEMU 7.2 crashed, measured here, plugging a vCPU after an unplug), then each vCPU's quota so
/// that together they have `millicores` (`None`: no quota).
fn set_cpu(
    dom: &Domain,
    domain: &str,
    most: Most,
    millicores: Option<u64>,
) -> Result<(), LibvirtError> {
    let want = millicores.map_or(most.vcpus, |m| m.div_ceil(1000).clamp(1, most.vcpus.max(1)));
    let now = u64::from(
        dom.get_vcpus_flags(sys::VIR_DOMAIN_VCPU_LIVE)
            .map_err(call("vcpucount --live", domain))?,
    );
    if want > now {
        let n = u32::try_from(want).unwrap_or(u32::MAX);
        dom.set_vcpus_flags(n, sys::VIR_DOMAIN_VCPU_LIVE)
            .map_err(call("setvcpus --live", domain))?;
    }
    let n = u64::from(
        dom.get_vcpus_flags(sys::VIR_DOMAIN_VCPU_LIVE)
            .map_err(call("vcpucount --live", domain))?,
    )
    .max(1);
    let quota = match millicores {
        // Each vCPU's share of the total, rounded up; at most a whole period (a vCPU can't
        // run more than one core).
        Some(m) => {
            i64::try_from((m * (PERIOD_US / 1000)).div_ceil(n).min(PERIOD_US)).unwrap_or(i64::MAX)
        }
        None => -1,
    };
    let info = SchedulerInfo {
        vcpu_bw: SchedBandwidth {
            period: Some(PERIOD_US),
            quota: Some(quota),
        },
        ..SchedulerInfo::default()
    };
    dom.set_scheduler_parameters_flags(&info, sys::VIR_DOMAIN_AFFECT_LIVE)
        .map_err(call("schedinfo vcpu_quota --live", domain))?;
    Ok(())
}

/// The cores in force: vCPUs times their quota's share of its period (whole vCPUs without one).
fn cpu_in_force(dom: &Domain, domain: &str) -> Result<u64, LibvirtError> {
    let n = u64::from(
        dom.get_vcpus_flags(sys::VIR_DOMAIN_VCPU_LIVE)
            .map_err(call("vcpucount --live", domain))?,
    );
    let s = dom
        .get_scheduler_parameters_flags(sys::VIR_DOMAIN_AFFECT_LIVE)
        .map_err(call("schedinfo --live", domain))?;
    Ok(match (s.vcpu_bw.quota, s.vcpu_bw.period) {
        (Some(q), Some(p)) if q > 0 && p > 0 => {
            let q = u64::try_from(q).unwrap_or(0).min(p);
            n * q * 1000 / p
        }
        _ => n * 1000,
    })
}

fn read(
    dom: &Domain,
    domain: &str,
    uri: &str,
    kind: ResourceKind,
) -> Result<Option<u64>, LibvirtError> {
    match kind {
        ResourceKind::Memory => Ok(Some(balloon(dom, domain)?.0)),
        ResourceKind::Cpu => Ok(Some(cpu_in_force(dom, domain)?)),
        _ => iotune::get(uri, domain),
    }
}

impl Actuator for LibvirtActuator {
    fn apply(&mut self, _: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        let mut learned = None;
        let out = self.each(name, kinds, |dom, domain, uri, kind| {
            let m = match learned {
                Some(m) => m,
                None => {
                    let m = most(dom, domain, uri)?;
                    learned = Some(m);
                    m
                }
            };
            match kind {
                ResourceKind::Memory => {
                    let target = match limits.hard(kind) {
                        Some(0) => {
                            return Err(LibvirtError::Answer(
                                "a memory limit of 0 would take all of the guest's memory".into(),
                            ));
                        }
                        Some(b) => b.min(m.memory),
                        None => m.memory,
                    };
                    set_memory(dom, domain, target)?;
                }
                ResourceKind::Cpu => set_cpu(dom, domain, m, limits.hard(kind))?,
                _ => {
                    // No IOPS reserved is no IOPS limit, as for cpu.
                    iotune::set(uri, domain, limits.hard(kind).filter(|&l| l > 0))?;
                }
            }
            read(dom, domain, uri, kind)
        });
        if let Some(m) = learned {
            self.learn(name, m);
        }
        out
    }

    fn read(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, read)
    }

    fn clear(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, |dom, domain, uri, kind| {
            // The guest gets its memory, cores and disks back; its vCPUs stay as they are.
            match kind {
                ResourceKind::Memory => {
                    let max = dom.get_max_memory().map_err(call("maxmem", domain))? * 1024;
                    set_memory(dom, domain, max)?;
                }
                ResourceKind::Cpu => {
                    let vcpus = u64::from(
                        dom.get_vcpus_flags(sys::VIR_DOMAIN_VCPU_LIVE)
                            .map_err(call("vcpucount --live", domain))?,
                    );
                    let m = Most {
                        memory: 0,
                        vcpus,
                        disks: false,
                    };
                    set_cpu(dom, domain, m, None)?;
                }
                _ => {
                    iotune::set(uri, domain, None)?;
                }
            }
            read(dom, domain, uri, kind)
        })
    }

    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        kind != ResourceKind::Net && domain_of(name).is_some()
    }

    fn expected(&self, name: &str, kind: ResourceKind, hard: Option<u64>) -> Option<u64> {
        let most = self.most.lock().ok().and_then(|m| m.get(name).copied());
        match (kind, most) {
            // The quota makes the cores exact, up to every vCPU the domain may have.
            (ResourceKind::Cpu, Some(m)) => {
                Some(hard.map_or(m.vcpus * 1000, |h| h.min(m.vcpus * 1000)))
            }
            (ResourceKind::Memory, Some(m)) => {
                Some(hard.map_or(m.memory, |h| h.min(m.memory) / 1024 * 1024))
            }
            (ResourceKind::Iops, Some(m)) if !m.disks => None,
            (ResourceKind::Iops, _) => hard.filter(|&l| l > 0),
            (_, _) => hard,
        }
    }
}
