//! Why one kind of an actuation or a read-back failed: a cause the controller can act on and
//! the adapter's own typed error as the source, so that nothing is decided on message text.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What kind of failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The workload, or the file or device that controls it, is not there.
    Missing,
    /// This kind can't be controlled for this workload here (a controller not enabled, a
    /// device not mapped).
    Unsupported,
    /// The limit asked for can't be written (e.g. a memory limit of 0, the root cgroup).
    Invalid,
    /// The kernel or the hypervisor refused the value (e.g. EBUSY on a memory limit it can't
    /// reclaim down to, a QMP command error).
    Refused,
    /// The adapter's peer could not be reached (a QMP socket, the `tc` binary).
    Unavailable,
    /// Reading or writing failed otherwise, or what was read back made no sense.
    Io,
}

/// One kind's failure; that kind was left as it was.
#[derive(Debug, Clone)]
pub struct ActuationError {
    cause: FailureCause,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ActuationError {
    /// The adapter's typed error `source`, with its cause.
    pub fn new(
        cause: FailureCause,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            cause,
            message: source.to_string(),
            source: Some(Arc::new(source)),
        }
    }

    /// A failure with no typed source (a fake, or a rule of the caller's).
    pub fn other(cause: FailureCause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
            source: None,
        }
    }

    /// What kind of failure it was.
    pub fn cause(&self) -> FailureCause {
        self.cause
    }

    /// The adapter's own error, to downcast (e.g. to `shardex_host::cgroup::CgroupError`).
    pub fn adapter_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl std::fmt::Display for ActuationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ActuationError {
    // The message is the adapter error's own, so the chain goes on from that error's source
    // rather than printing the same words twice.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().and_then(|e| e.source())
    }
}

impl PartialEq for ActuationError {
    fn eq(&self, other: &Self) -> bool {
        self.cause == other.cause && self.message == other.message
    }
}

impl Eq for ActuationError {}

/// What is stored and sent of a failure: its cause and its message.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    cause: FailureCause,
    message: String,
}

impl Serialize for ActuationError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            cause: self.cause,
            message: self.message.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ActuationError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Self::other(w.cause, w.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing 5 to memory.max: {0}")]
    struct Adapter(#[source] std::io::Error);

    #[test]
    fn the_typed_source_is_kept_and_its_words_are_not_repeated() {
        let io = std::io::Error::from_raw_os_error(16);
        let e = ActuationError::new(FailureCause::Refused, Adapter(io));
        assert_eq!(e.cause(), FailureCause::Refused);
        assert!(
            e.adapter_error()
                .unwrap()
                .downcast_ref::<Adapter>()
                .is_some()
        );
        assert!(e.to_string().starts_with("writing 5 to memory.max"));
        let next = std::error::Error::source(&e).unwrap();
        assert!(next.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn a_failure_round_trips_as_its_cause_and_message() {
        let e = ActuationError::other(FailureCause::Missing, "no cgroup \"a\"");
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"cause":"missing","message":"no cgroup \"a\""}"#);
        let back: ActuationError = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
        assert!(
            serde_json::from_str::<ActuationError>(r#"{"cause":"gone","message":""}"#).is_err()
        );
    }
}
