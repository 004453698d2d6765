//! The profiler inside a VM and its host side. `shardex guest` runs in the guest, samples the
//! guest's own processes and cgroups (`probe.rs`) and writes a [`GuestReport`] a line at a
//! time to a virtio-serial port; on the host, each VM's end of that port is a socket that
//! QEMU (or libvirt's `<channel>`) opens for that VM alone, so a stream is taken as that VM's
//! because of the socket it came in on, never because of anything it says (`channel.rs`).
//! The VM's samples then carry the memory its applications use (`sampler.rs`), which the
//! host's view of guest RAM (pages the guest touched once and never gave back) does not show.

mod channel;
mod probe;
mod report;
mod sampler;

pub use channel::{FIRST_REPORT, GuestChannels};
pub use probe::{Probe, ProbeError};
pub use report::{AppUsage, GuestReport, Pressure, REPORT_VERSION, ReportError};
pub use sampler::GuestAwareSampler;

/// The name of the virtio-serial port the profiler writes to (QEMU's `virtserialport`
/// `name=`, libvirt's `<target type='virtio' name=…>`).
pub const PORT_NAME: &str = "org.shardex.guest.0";
