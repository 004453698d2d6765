//! The host's sampler: `libvirt:DOMAIN` workloads from libvirt's domain statistics (with the
//! `libvirt` feature), every other one from its cgroup; each VM's memory then from its guest
//! where it reports (`GuestAwareSampler`).

use shardex_core::Timestamp;
use shardex_core::ports::{Reading, Sampler, SamplerError};
use shardex_host::sampler::CgroupSampler;

/// The daemon's sampler.
pub(crate) type DaemonSampler = shardex_host::guest::GuestAwareSampler<HostSampler>;

/// Each workload to the sampler that can see it.
#[derive(Debug)]
pub(crate) struct HostSampler {
    cgroups: CgroupSampler,
    #[cfg(feature = "libvirt")]
    libvirt: shardex_host::libvirt::LibvirtSampler,
}

impl HostSampler {
    /// Cgroups through `cgroups`, libvirt domains through libvirt at `uri`.
    pub(crate) fn new(cgroups: CgroupSampler, uri: &str) -> Self {
        #[cfg(not(feature = "libvirt"))]
        let _ = uri;
        Self {
            cgroups,
            #[cfg(feature = "libvirt")]
            libvirt: shardex_host::libvirt::LibvirtSampler::new(uri),
        }
    }

    /// The cgroup sampler.
    pub(crate) fn cgroups(&self) -> &CgroupSampler {
        &self.cgroups
    }
}

impl Sampler for HostSampler {
    fn sample(&mut self, workload: &str, now: Timestamp) -> Result<Option<Reading>, SamplerError> {
        if workload.starts_with(crate::workload::LIBVIRT_PREFIX) {
            #[cfg(feature = "libvirt")]
            return self.libvirt.sample(workload, now);
            #[cfg(not(feature = "libvirt"))]
            return Err(SamplerError {
                workload: workload.to_string(),
                reason: "this shardex was built without libvirt (cargo build --features libvirt)"
                    .into(),
            });
        }
        self.cgroups.sample(workload, now)
    }
}
