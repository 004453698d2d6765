//! What can go wrong running `tc`, with the system's error, and the cause each maps to in
//! the `Actuator` port.

use shardex_core::ports::{ActuationError, FailureCause};

/// Why tc could not shape or read a workload's interface.
#[derive(Debug, thiserror::Error)]
pub enum TcError {
    /// The workload has no interface in `engine.net_interfaces`.
    #[error("no interface is configured for {0:?}")]
    NotMapped(String),
    /// The configured name can't be an interface's.
    #[error("{0:?} is not an interface name")]
    BadInterface(String),
    /// `tc` could not be started.
    #[error("running {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// `tc` ran and refused.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `tc -j` printed something that is not JSON.
    #[error("tc printed something that is not JSON ({source}): {text:?}")]
    NotJson {
        /// What it printed.
        text: String,
        /// Why it is not JSON.
        #[source]
        source: serde_json::Error,
    },
}

impl TcError {
    /// The port's cause for this error.
    pub fn cause(&self) -> FailureCause {
        match self {
            Self::NotMapped(_) => FailureCause::Unsupported,
            Self::BadInterface(_) => FailureCause::Invalid,
            Self::Spawn { .. } => FailureCause::Unavailable,
            Self::Failed { .. } => FailureCause::Refused,
            Self::NotJson { .. } => FailureCause::Io,
        }
    }
}

impl From<TcError> for ActuationError {
    fn from(e: TcError) -> Self {
        Self::new(e.cause(), e)
    }
}
