//! The migrator port: moves a workload between hosts.

use serde::Serialize;

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

/// A move to carry out: the workload and the hosts, by id and by name (what an adapter
/// finds them by: a VM's socket, a cgroup path, a host in the operator's inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveOrder {
    /// The workload.
    pub workload: WorkloadId,
    /// Its name (its cgroup path, its VM).
    pub name: String,
    /// The host it leaves.
    pub from: HostId,
    /// That host's name.
    pub from_name: String,
    /// The host it goes to.
    pub to: HostId,
    /// That host's name.
    pub to_name: String,
}

/// Moves a workload live to another host. A move can take minutes: the controller asks
/// [`Migrator::status`] from the time [`Migrator::start`] gave on, and the ledger moves the
/// workload only once the migrator says it completed.
pub trait Migrator {
    /// Starts the move `order` at `now`; returns when to ask how it stands (when it should be
    /// done).
    fn start(&mut self, order: &MoveOrder, now: Timestamp) -> Result<Timestamp, MigrationError>;

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

impl<M: Migrator + ?Sized> Migrator for Box<M> {
    fn start(&mut self, order: &MoveOrder, now: Timestamp) -> Result<Timestamp, MigrationError> {
        (**self).start(order, now)
    }

    fn status(&mut self, workload: WorkloadId, now: Timestamp) -> MigrationStatus {
        (**self).status(workload, now)
    }
}

impl Migrator for SimulatedMigrator {
    fn start(&mut self, _: &MoveOrder, now: Timestamp) -> Result<Timestamp, MigrationError> {
        self.moves += 1;
        Ok(now.checked_add(self.duration).unwrap_or(now))
    }
}

/// No migrator: a move is a recommendation only, never recorded as done (a single host, or
/// a fleet without a live-migration adapter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoMigrator;

impl Migrator for NoMigrator {
    fn start(&mut self, order: &MoveOrder, _: Timestamp) -> Result<Timestamp, MigrationError> {
        Err(MigrationError {
            workload: order.workload,
            reason: format!(
                "no migrator is configured: moving it from {} to {} is a recommendation",
                order.from, order.to
            ),
        })
    }
}
