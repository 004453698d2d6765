//! The provisioner port: adds a host when reclaim, preemption and growth are not enough.

use serde::{Deserialize, Serialize};

use crate::domain::HostId;
use crate::shard::ShardVector;
use crate::time::Span;

/// What the engine asks a provisioner for: a host with at least `needs` free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// Why (for the operator and the cloud's audit log).
    pub reason: String,
    /// The host that is short.
    pub short_host: HostId,
    /// Shards the new host must have room for.
    pub needs: ShardVector,
}

/// A host a provisioner added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    /// Its unique name.
    pub name: String,
    /// Its capacity in shards.
    pub capacity: ShardVector,
}

/// Why a provisioner gave no host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// Every standby host has joined already.
    #[error("no standby host is left")]
    Exhausted,
    /// The provisioner ran but failed.
    #[error("the provisioner failed: {0}")]
    Failed(String),
    /// It did not answer in time (and was stopped).
    #[error("the provisioner did not answer within {0}")]
    TimedOut(Span),
    /// It answered something that is not a host.
    #[error("the provisioner's answer is not a host: {0}")]
    BadAnswer(String),
}

/// Adds capacity when reclaim, preemption and growth are not enough.
pub trait Provisioner {
    /// A new host for `request`, or why not.
    fn provision(&mut self, request: &ProvisionRequest) -> Result<NewHost, ProvisionError>;
}

impl<P: Provisioner + ?Sized> Provisioner for Box<P> {
    fn provision(&mut self, request: &ProvisionRequest) -> Result<NewHost, ProvisionError> {
        (**self).provision(request)
    }
}

/// A list of standby hosts that join when asked, in order; with a template, an unlimited
/// supply of identical hosts named `<prefix>-<n>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticProvisioner {
    standby: std::collections::VecDeque<NewHost>,
    template: Option<(String, ShardVector)>,
    made: u64,
}

impl StaticProvisioner {
    /// Standby hosts, joined in this order.
    pub fn new(standby: Vec<NewHost>) -> Self {
        Self {
            standby: standby.into(),
            ..Self::default()
        }
    }

    /// An unlimited supply of hosts like `capacity`.
    pub fn unlimited(prefix: &str, capacity: ShardVector) -> Self {
        Self {
            template: Some((prefix.to_string(), capacity)),
            ..Self::default()
        }
    }
}

impl Provisioner for StaticProvisioner {
    fn provision(&mut self, request: &ProvisionRequest) -> Result<NewHost, ProvisionError> {
        // The first standby host big enough; smaller ones wait for a smaller need.
        if let Some(i) = self
            .standby
            .iter()
            .position(|h| request.needs.fits_in(&h.capacity))
        {
            return self.standby.remove(i).ok_or(ProvisionError::Exhausted);
        }
        match &self.template {
            Some((prefix, capacity)) if request.needs.fits_in(capacity) => {
                self.made += 1;
                Ok(NewHost {
                    name: format!("{prefix}-{}", self.made),
                    capacity: *capacity,
                })
            }
            _ => Err(ProvisionError::Exhausted),
        }
    }
}
