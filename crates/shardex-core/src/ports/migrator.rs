//! The migrator port: moves a workload between hosts.

use crate::domain::{HostId, WorkloadId};
use crate::time::{Span, Timestamp};

/// Why a migration could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("migration of {workload} refused: {reason}")]
pub struct MigrationError {
    /// The workload.
    pub workload: WorkloadId,
    /// Why.
    pub reason: String,
}

/// Where a move under way stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// Still moving: asked again later.
    Running,
    /// Done: the workload runs on its new host (the ledger follows now, not before).
    Completed,
    /// It failed: the workload stays where it was.
    Failed(String),
}

/// Moves a workload live to another host. A move can take minutes: the controller asks
/// [`Migrator::status`] from the time [`Migrator::start`] gave on, and the ledger moves the
/// workload only once the migrator says it completed.
pub trait Migrator {
    /// Starts moving `workload` from `from` to `to` at `now`; returns when to ask how it
    /// stands (when it should be done).
    fn start(
        &mut self,
        workload: WorkloadId,
        from: HostId,
        to: HostId,
        now: Timestamp,
    ) -> Result<Timestamp, MigrationError>;

    /// Where the move of `workload` stands at `now`. A migrator that only estimates (the
    /// simulated one) is done at the time it gave.
    fn status(&mut self, workload: WorkloadId, now: Timestamp) -> MigrationStatus {
        let _ = (workload, now);
        MigrationStatus::Completed
    }
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

/// No migrator: a move is a recommendation only, never recorded as done (a single host, or
/// a fleet without a live-migration adapter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoMigrator;

impl Migrator for NoMigrator {
    fn start(
        &mut self,
        workload: WorkloadId,
        from: HostId,
        to: HostId,
        _: Timestamp,
    ) -> Result<Timestamp, MigrationError> {
        Err(MigrationError {
            workload,
            reason: format!(
                "no migrator is configured: moving it from {from} to {to} is a recommendation"
            ),
        })
    }
}
