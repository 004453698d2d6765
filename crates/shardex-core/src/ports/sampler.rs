//! The sampler port: what running workloads use, and whether a limit held them.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Why a workload could not be sampled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not sample {workload}: {reason}")]
pub struct SamplerError {
    /// The workload's name.
    pub workload: String,
    /// Why.
    pub reason: String,
}

/// One reading of a workload: what it used since the previous reading, and whether it was
/// held at a limit meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// Usage per kind in `ResourceKind::ALL` order, physical units (`None`: can't tell yet).
    pub usage: [Option<u64>; 4],
    /// Per kind, whether the workload was held at its limit (cpu throttled, memory at its
    /// limit or reclaimed at its soft limit, packets dropped by the shaper): the usage is then
    /// a lower bound on its demand, never the demand itself.
    pub censored: [bool; 4],
    /// Out-of-memory kills inside the workload since the previous reading.
    pub oom_kills: u64,
}

impl Reading {
    /// Whether `kind` was held at its limit.
    pub fn censored(&self, kind: crate::ResourceKind) -> bool {
        self.censored[kind.index()]
    }
}

/// Measures what running workloads use.
pub trait Sampler {
    /// What `workload` used since the previous sample, and whether it was held at a limit;
    /// `Ok(None)` when the workload doesn't run here.
    fn sample(&mut self, workload: &str, now: Timestamp) -> Result<Option<Reading>, SamplerError>;
}
