//! What can go wrong in a QMP exchange, with the system's or QEMU's error, and the cause each
//! maps to in the `Actuator` port.

use std::path::PathBuf;

use serde_json::Value;
use shardex_core::ports::{ActuationError, FailureCause};

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The workload has no socket in `engine.qmp_sockets`.
    #[error("no QMP socket is configured for {0:?}")]
    NotMapped(String),
    /// The socket could not be reached or set up.
    #[error("connecting to QMP at {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed mid-session (a timeout included).
    #[error("{what} QMP: {source}")]
    Io {
        /// "reading from" or "writing to".
        what: &'static str,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// QEMU closed the socket.
    #[error("QMP closed the connection")]
    Closed,
    /// A line that is not JSON.
    #[error("QMP sent something that is not JSON ({source}): {line:?}")]
    NotJson {
        /// The line.
        line: String,
        /// Why it is not JSON.
        #[source]
        source: serde_json::Error,
    },
    /// The peer is not QMP.
    #[error("{path} did not greet as QMP: {greeting}")]
    NotQmp {
        /// The socket.
        path: String,
        /// What it said first.
        greeting: Value,
    },
    /// QEMU refused a command, with its error class.
    #[error("QMP {command} failed: {desc} ({class}){hint}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class (`DeviceNotActive`, `GenericError`, …).
        class: String,
        /// QEMU's description.
        desc: String,
        /// What to do about it, when shardex knows.
        hint: &'static str,
    },
    /// An answer without what it should hold, or a limit that can't be applied.
    #[error("{0}")]
    Answer(String),
}

impl QmpError {
    /// The port's cause for this error.
    pub fn cause(&self) -> FailureCause {
        match self {
            Self::NotMapped(_) => FailureCause::Unsupported,
            Self::Connect { .. } | Self::Closed | Self::NotQmp { .. } => FailureCause::Unavailable,
            Self::Io { .. } | Self::NotJson { .. } | Self::Answer(_) => FailureCause::Io,
            Self::Command { .. } => FailureCause::Refused,
        }
    }
}

impl From<QmpError> for ActuationError {
    fn from(e: QmpError) -> Self {
        Self::new(e.cause(), e)
    }
}
