//! The ports: traits the core owns and adapters implement. The store and the forecaster are
//! here; each other port has a file of its own, re-exported so that paths stay `ports::X`.

mod actuator;
mod failure;
mod migrator;
mod provisioner;
mod sampler;

pub use actuator::*;
pub use failure::*;
pub use migrator::*;
pub use provisioner::*;
pub use sampler::*;

use std::future::Future;

use crate::ledger::{Action, Event, Ledger, LedgerError};
use crate::rdv::{Horizon, Quantiles, Sample};
use crate::time::{Span, Timestamp};

/// The outcome of [`LedgerStore::apply_all`]: outer error = store failure, inner error = the
/// index of the action the ledger refused and why (nothing applied either way).
pub type ApplyAllResult<E> = Result<Result<Vec<Event>, (usize, LedgerError)>, E>;

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

    /// Applies and persists several actions in order as one transaction: all of them, or
    /// (refused at the index given, or a store failure) none.
    fn apply_all(
        &mut self,
        actions: Vec<(Action, Timestamp)>,
    ) -> impl Future<Output = ApplyAllResult<Self::Error>> + Send;

    /// The charges metered with each commit ([`crate::billing::commit`]) whose interval ends
    /// in `(from, to]`, paid or lent by `tenant` (every tenant when `None`), oldest first.
    fn charges(
        &self,
        tenant: Option<crate::TenantId>,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<Vec<crate::billing::Charge>, Self::Error>> + Send;
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

    /// What a host shows when it held the workload at `limit` at `time`: cpu (net, iops)
    /// throttled at its quota, so demand was at least `limit` (`oom` false), or memory past its
    /// limit, killed (`oom` true). The usage itself is not known. By default, a sample at the
    /// limit with the limit in force; policies that know better override it.
    fn observe_limited(&mut self, time: Timestamp, limit: u64, oom: bool) {
        let _ = oom;
        self.observe(Sample { time, value: limit }, Some(limit));
    }

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
    fn observe_limited(&mut self, time: Timestamp, limit: u64, oom: bool) {
        (**self).observe_limited(time, limit, oom);
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

    /// Feeds what a host showed of a sample held at `limit` (see
    /// [`Forecaster::observe_limited`]); an out-of-order one is refused.
    pub fn observe_limited(
        &mut self,
        time: Timestamp,
        limit: u64,
        oom: bool,
    ) -> Result<(), Peeking> {
        if let Some(seen) = self.newest.filter(|&s| time <= s) {
            return Err(Peeking { asked: time, seen });
        }
        self.newest = Some(time);
        self.inner.observe_limited(time, limit, oom);
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
