//! The libvirt backend (feature `libvirt`): workloads named `libvirt:DOMAIN` (a domain's name
//! or UUID) are resized live through libvirt (`actuator.rs`) and sampled from its domain
//! statistics (`sampler.rs`). Memory: the balloon (`setmem --live`), moved by the balloon rule;
//! cpu: whole vCPUs (`setvcpus --live`) with a CFS quota on them (`vcpu_quota`) so that the
//! cores in force are the allocation exactly; IOPS: `blkdeviotune --live` (`iotune.rs`).
//! libvirt's Xen driver (libxl) speaks the same API; only QEMU/KVM is tested.

mod actuator;
mod error;
mod iotune;
mod sampler;

pub use actuator::LibvirtActuator;
pub use error::LibvirtError;
pub use sampler::LibvirtSampler;

/// Workload names that are libvirt domains start with this.
pub const PREFIX: &str = "libvirt:";

/// The domain a workload name stands for, if it is one.
pub fn domain_of(workload: &str) -> Option<&str> {
    workload.strip_prefix(PREFIX).filter(|d| !d.is_empty())
}

/// Whether the domain `name` (a name or UUID) runs in libvirt at `uri`: an error naming what
/// is missing otherwise.
pub fn check_domain(uri: &str, name: &str) -> Result<(), LibvirtError> {
    let dom = Link::new(uri).domain(name)?;
    match dom.is_active() {
        Ok(true) => Ok(()),
        Ok(false) => Err(LibvirtError::Answer(format!(
            "the libvirt domain {name} is defined but not running: start it first (virsh start {name})"
        ))),
        Err(e) => Err(LibvirtError::NoDomain {
            domain: name.to_string(),
            message: e.to_string(),
        }),
    }
}

/// A connection to libvirt at `uri`, opened on first use and again after a failure.
#[derive(Debug)]
pub(crate) struct Link {
    uri: String,
    conn: Option<virt::connect::Connect>,
}

impl Link {
    pub(crate) fn new(uri: &str) -> Self {
        Self {
            uri: uri.to_string(),
            conn: None,
        }
    }

    /// The domain `name` (a name, or a UUID), on a live connection.
    pub(crate) fn domain(&mut self, name: &str) -> Result<virt::domain::Domain, LibvirtError> {
        if self.conn.is_none() {
            let c = virt::connect::Connect::open(Some(&self.uri)).map_err(|e| {
                LibvirtError::Connect {
                    uri: self.uri.clone(),
                    message: e.to_string(),
                }
            })?;
            self.conn = Some(c);
        }
        let Some(conn) = self.conn.as_ref() else {
            return Err(LibvirtError::Connect {
                uri: self.uri.clone(),
                message: "no connection".into(),
            });
        };
        let found = virt::domain::Domain::lookup_by_name(conn, name)
            .or_else(|_| virt::domain::Domain::lookup_by_uuid_string(conn, name));
        match found {
            Ok(d) => Ok(d),
            Err(e) => {
                // A dead connection looks like a missing domain: open a new one next time.
                if conn.is_alive().map_or(true, |alive| !alive) {
                    self.conn = None;
                }
                Err(LibvirtError::NoDomain {
                    domain: name.to_string(),
                    message: e.to_string(),
                })
            }
        }
    }

    pub(crate) fn uri(&self) -> &str {
        &self.uri
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libvirt_workload_names_its_domain() {
        assert_eq!(domain_of("libvirt:web-1"), Some("web-1"));
        assert_eq!(domain_of("libvirt:"), None);
        assert_eq!(domain_of("machine.slice/vm.scope"), None);
    }

    #[test]
    fn an_unreachable_libvirt_is_an_error_naming_the_uri() {
        let mut l = Link::new("qemu+unix:///system?socket=/nonexistent/libvirt.sock");
        let e = l.domain("vm").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/libvirt.sock"), "{e}");
    }
}
