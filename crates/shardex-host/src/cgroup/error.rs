//! What can go wrong writing or reading a cgroup's limits, with the system's error as the
//! source, and the cause each maps to in the `Actuator` port.

use std::path::PathBuf;

use shardex_core::ports::{ActuationError, FailureCause};

/// Why the cgroup actuator could not apply or read one kind.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The workload named the root cgroup, whose limits are the machine's.
    #[error("the root cgroup can't be limited: name a child cgroup")]
    Root,
    /// The name climbs out of the hierarchy (`..`).
    #[error("{0:?} climbs out of the hierarchy")]
    Escapes(String),
    /// No cgroup by that name.
    #[error("no cgroup {name:?} (no directory {})", dir.display())]
    NoCgroup {
        /// The workload's name.
        name: String,
        /// Where its directory would be.
        dir: PathBuf,
    },
    /// The controller is not enabled for this cgroup, so its file is missing.
    #[error(
        "{} is missing: enable the {controller} controller for this cgroup (the parent's cgroup.subtree_control on v2)",
        path.display()
    )]
    ControllerMissing {
        /// The file that should be there.
        path: PathBuf,
        /// The controller it belongs to.
        controller: &'static str,
    },
    /// IOPS devices are configured, but v1's blkio hierarchy is not mounted.
    #[error("iops devices are configured but blkio is not mounted")]
    NoBlkio,
    /// Network is not a cgroup's to shape.
    #[error("network is shaped by tc, not by cgroups")]
    Net,
    /// A memory limit of zero would have the kernel kill the workload at once.
    #[error("a memory limit of 0 would kill the workload")]
    ZeroMemory,
    /// A control file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a write (e.g. EBUSY: memory it can't reclaim down to the limit).
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A control file holds something that is not a limit.
    #[error("{} holds {text:?}, not a limit", path.display())]
    NotALimit {
        /// The file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
}

impl CgroupError {
    /// The port's cause for this error.
    pub fn cause(&self) -> FailureCause {
        match self {
            Self::Root | Self::Escapes(_) | Self::ZeroMemory => FailureCause::Invalid,
            Self::NoCgroup { .. } => FailureCause::Missing,
            Self::ControllerMissing { .. } | Self::NoBlkio | Self::Net => FailureCause::Unsupported,
            Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                FailureCause::Missing
            }
            // The kernel answers a value it won't take with an errno on the write.
            Self::Write { source, .. } if source.raw_os_error().is_some() => FailureCause::Refused,
            Self::Read { .. } | Self::Write { .. } | Self::NotALimit { .. } => FailureCause::Io,
        }
    }
}

impl From<CgroupError> for ActuationError {
    fn from(e: CgroupError) -> Self {
        Self::new(e.cause(), e)
    }
}
