//! What can go wrong talking to libvirt, and the cause each maps to in the `Actuator` port.

use shardex_core::ports::{ActuationError, FailureCause};

/// Why a libvirt call failed.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// libvirt could not be reached.
    #[error("connecting to libvirt at {uri}: {message}")]
    Connect {
        /// The URI.
        uri: String,
        /// What libvirt said.
        message: String,
    },
    /// No running domain by that name or UUID.
    #[error("no libvirt domain {domain:?}: {message}")]
    NoDomain {
        /// The name or UUID asked for.
        domain: String,
        /// What libvirt said.
        message: String,
    },
    /// libvirt refused a change or a query.
    #[error("libvirt {what} on {domain}: {message}")]
    Call {
        /// What was asked (e.g. "setmem --live").
        what: &'static str,
        /// The domain.
        domain: String,
        /// What libvirt said.
        message: String,
    },
    /// A limit that can't be applied, or an answer without what it should hold.
    #[error("{0}")]
    Answer(String),
}

impl LibvirtError {
    /// The port's cause for this error.
    pub fn cause(&self) -> FailureCause {
        match self {
            Self::Connect { .. } | Self::NoDomain { .. } => FailureCause::Unavailable,
            Self::Call { .. } => FailureCause::Refused,
            Self::Answer(_) => FailureCause::Io,
        }
    }
}

impl From<LibvirtError> for ActuationError {
    fn from(e: LibvirtError) -> Self {
        Self::new(e.cause(), e)
    }
}
