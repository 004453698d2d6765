//! The ports: traits the core owns and adapters implement.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::domain::{HostId, WorkloadId};
use crate::ledger::{Action, Event, Ledger, LedgerError};
use crate::rdv::{Horizon, Quantiles, Sample};
use crate::shard::{PhysicalVector, ShardVector};
use crate::time::{Span, Timestamp};

/// Durable home of the ledger. `apply` returns only once the action and its events are durable
/// (or the ledger refused the action, in which case nothing was written).
pub trait LedgerStore {
    /// Failure of the store itself (I/O, database), as opposed to a refused action.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The ledger as of the last acknowledged action.
    fn ledger(&self) -> &Ledger;

    /// Applies and persists one action: outer error = store failure (nothing applied),
    /// inner error = the ledger refused the action (nothing applied).
    fn apply(
        &mut self,
        action: Action,
        now: Timestamp,
    ) -> impl Future<Output = Result<Result<Vec<Event>, LedgerError>, Self::Error>> + Send;
}

/// Forecasts one series (one workload, one kind) from its past samples only.
///
/// Samples arrive in time order through [`Forecaster::observe`]; a forecaster never sees a
/// sample measured at or after the moment it is asked about (the replay and the profiler feed
/// it that way, and [`Causal`](crate::ports::Causal) enforces it).
pub trait Forecaster: Send {
    /// Feeds one sample, with the allocation that was in force when it was measured (if any):
    /// a sample above it was a shortfall (throttling for cpu, an OOM for memory).
    fn observe(&mut self, sample: Sample, allocated: Option<u64>);

    /// Demand quantiles for each step of `horizon` after `now`, physical units.
    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles>;

    /// What to allocate, decided at `now`, for the moment `now + lead`.
    fn recommend(&mut self, now: Timestamp, lead: Span) -> u64;

    /// True when [`Forecaster::forecast`] gives real quantiles rather than one point.
    fn has_quantiles(&self) -> bool {
        false
    }
}

impl<F: Forecaster + ?Sized> Forecaster for Box<F> {
    fn observe(&mut self, sample: Sample, allocated: Option<u64>) {
        (**self).observe(sample, allocated);
    }
    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        (**self).forecast(now, horizon)
    }
    fn recommend(&mut self, now: Timestamp, lead: Span) -> u64 {
        (**self).recommend(now, lead)
    }
    fn has_quantiles(&self) -> bool {
        (**self).has_quantiles()
    }
}

/// Refused: a forecaster was asked about a moment it had already seen samples from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "asked to decide at {asked} but a sample from {seen} was already observed: that is peeking"
)]
pub struct Peeking {
    /// The moment of the decision.
    pub asked: Timestamp,
    /// The newest sample observed.
    pub seen: Timestamp,
}

/// Wraps a forecaster so that no decision can use a sample from its own moment or later, and
/// samples only arrive in time order.
pub struct Causal<F> {
    inner: F,
    newest: Option<Timestamp>,
}

impl<F: Forecaster> Causal<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner,
            newest: None,
        }
    }

    /// Feeds a sample; an out-of-order sample is refused.
    pub fn observe(&mut self, sample: Sample, allocated: Option<u64>) -> Result<(), Peeking> {
        if let Some(seen) = self.newest.filter(|&s| sample.time <= s) {
            return Err(Peeking {
                asked: sample.time,
                seen,
            });
        }
        self.newest = Some(sample.time);
        self.inner.observe(sample, allocated);
        Ok(())
    }

    fn guard(&self, now: Timestamp) -> Result<(), Peeking> {
        match self.newest {
            Some(seen) if seen >= now => Err(Peeking { asked: now, seen }),
            _ => Ok(()),
        }
    }

    /// The inner forecaster's decision at `now`, only if every sample it saw is older.
    pub fn recommend(&mut self, now: Timestamp, lead: Span) -> Result<u64, Peeking> {
        self.guard(now)?;
        Ok(self.inner.recommend(now, lead))
    }

    /// The inner forecaster's quantiles at `now`, only if every sample it saw is older.
    pub fn forecast(
        &mut self,
        now: Timestamp,
        horizon: Horizon,
    ) -> Result<Vec<Quantiles>, Peeking> {
        self.guard(now)?;
        Ok(self.inner.forecast(now, horizon))
    }

    /// True when the inner forecaster gives real quantiles.
    pub fn has_quantiles(&self) -> bool {
        self.inner.has_quantiles()
    }
}

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

/// Why a workload could not be sampled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not sample {workload}: {reason}")]
pub struct SamplerError {
    /// The workload's name.
    pub workload: String,
    /// Why.
    pub reason: String,
}

/// Measures what running workloads use.
pub trait Sampler {
    /// What `workload` used since the previous sample, physical units per kind in
    /// `ResourceKind::ALL` order (`None` for a kind it can't tell yet); `Ok(None)` when the
    /// workload doesn't run here.
    fn sample(
        &mut self,
        workload: &str,
        now: Timestamp,
    ) -> Result<Option<[Option<u64>; 4]>, SamplerError>;
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

/// Why a migration could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("migration of {workload} refused: {reason}")]
pub struct MigrationError {
    /// The workload.
    pub workload: WorkloadId,
    /// Why.
    pub reason: String,
}

/// Moves a workload live to another host.
pub trait Migrator {
    /// Starts moving `workload` from `from` to `to` at `now`; returns when it will be done.
    fn start(
        &mut self,
        workload: WorkloadId,
        from: HostId,
        to: HostId,
        now: Timestamp,
    ) -> Result<Timestamp, MigrationError>;
}

/// The simulated migrator: every move takes the same time and is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedMigrator {
    /// How long a move takes.
    pub duration: Span,
    /// Moves started.
    pub moves: u64,
}

impl SimulatedMigrator {
    /// Moves that take `duration` (60 s by default in the config).
    pub fn new(duration: Span) -> Self {
        Self { duration, moves: 0 }
    }
}

impl Migrator for SimulatedMigrator {
    fn start(
        &mut self,
        _workload: WorkloadId,
        _from: HostId,
        _to: HostId,
        now: Timestamp,
    ) -> Result<Timestamp, MigrationError> {
        self.moves += 1;
        Ok(now.checked_add(self.duration).unwrap_or(now))
    }
}

/// Why an actuation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not apply the allocation of {workload}: {reason}")]
pub struct ActuatorError {
    /// The workload.
    pub workload: WorkloadId,
    /// Why.
    pub reason: String,
}

/// Applies an allocation to a running workload live and reads back what is in force.
pub trait Actuator {
    /// Applies `allocation` (physical units) to the workload `name` and returns what is in
    /// force afterwards, for the kinds it manages.
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError>;

    /// Whether it enforces `kind` for the workload `name` (the others are left as they are
    /// and read back as 0).
    fn manages(&self, name: &str, kind: crate::ResourceKind) -> bool {
        let _ = (name, kind);
        true
    }
}

impl<A: Actuator + ?Sized> Actuator for Box<A> {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        (**self).apply(workload, name, allocation)
    }

    fn manages(&self, name: &str, kind: crate::ResourceKind) -> bool {
        (**self).manages(name, kind)
    }
}

/// Several actuators, each for the kinds it manages (e.g. cgroups for cpu and memory, tc for
/// network): a kind goes to the first that manages it for the workload.
#[derive(Default)]
pub struct Combined(pub Vec<Box<dyn Actuator + Send>>);

impl Actuator for Combined {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        let mut in_force = [0u64; 4];
        let mut claimed = [false; 4];
        for a in &mut self.0 {
            let mine: Vec<crate::ResourceKind> = crate::ResourceKind::ALL
                .into_iter()
                .filter(|&k| !claimed[k.index()] && a.manages(name, k))
                .collect();
            if mine.is_empty() {
                continue;
            }
            // Each actuator leaves its own files as they were when it refuses; one refusing
            // after another applied leaves the workload between two allocations that both fit
            // the ledger's bounds, and the next tick applies the whole again.
            let got = a.apply(workload, name, allocation)?;
            for k in mine {
                claimed[k.index()] = true;
                in_force[k.index()] = got.get(k);
            }
        }
        Ok(PhysicalVector(in_force))
    }

    fn manages(&self, name: &str, kind: crate::ResourceKind) -> bool {
        self.0.iter().any(|a| a.manages(name, kind))
    }
}

/// The simulated actuator: whatever is applied is in force, at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimulatedActuator {
    in_force: std::collections::BTreeMap<WorkloadId, PhysicalVector>,
    /// Actuations done.
    pub actuations: u64,
}

impl SimulatedActuator {
    /// What is in force for `workload`.
    pub fn in_force(&self, workload: WorkloadId) -> Option<PhysicalVector> {
        self.in_force.get(&workload).copied()
    }
}

impl Actuator for SimulatedActuator {
    fn apply(
        &mut self,
        workload: WorkloadId,
        _: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        self.actuations += 1;
        self.in_force.insert(workload, allocation);
        Ok(allocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceKind;

    /// Enforces one kind, for workloads whose name starts with a prefix; refuses `fail`.
    struct One {
        kind: ResourceKind,
        prefix: &'static str,
        calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    }

    impl Actuator for One {
        fn apply(
            &mut self,
            workload: WorkloadId,
            name: &str,
            allocation: PhysicalVector,
        ) -> Result<PhysicalVector, ActuatorError> {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if name == "fail" {
                return Err(ActuatorError {
                    workload,
                    reason: "refused".into(),
                });
            }
            let mut v = [0; 4];
            v[self.kind.index()] = allocation.get(self.kind) + 1;
            Ok(PhysicalVector(v))
        }

        fn manages(&self, name: &str, kind: ResourceKind) -> bool {
            kind == self.kind && name.starts_with(self.prefix)
        }
    }

    #[test]
    fn combined_sends_each_kind_to_the_actuator_that_manages_it() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let one = |kind, prefix| -> Box<dyn Actuator + Send> {
            Box::new(One {
                kind,
                prefix,
                calls: calls.clone(),
            })
        };
        let mut c = Combined(vec![
            one(ResourceKind::Cpu, ""),
            one(ResourceKind::Net, "vm"),
            one(ResourceKind::Cpu, ""),
        ]);
        let w = WorkloadId(1);
        let a = PhysicalVector([10, 20, 30, 40]);
        // The cpu comes from the first that manages it; the net only for a mapped workload.
        assert_eq!(
            c.apply(w, "vm-1", a).unwrap(),
            PhysicalVector([11, 0, 31, 0])
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(c.apply(w, "job", a).unwrap(), PhysicalVector([11, 0, 0, 0]));
        assert!(c.manages("vm-1", ResourceKind::Net) && !c.manages("job", ResourceKind::Net));
        assert!(!c.manages("job", ResourceKind::Memory));
        assert_eq!(c.apply(w, "fail", a).unwrap_err().reason, "refused");
    }
}
