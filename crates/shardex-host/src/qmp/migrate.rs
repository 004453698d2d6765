//! Live migration between two QEMU processes over QMP, as the `Migrator` port. The VM's QEMU
//! on the host it leaves is its source; on the host it goes to, a QEMU started with the same
//! machine and devices and `-incoming defer` waits for it. [`Migrator::start`] tells the
//! destination where to listen (`migrate-incoming`) and the source to send there (`migrate`);
//! [`Migrator::status`] is the source's `query-migrate`: `completed` (the source, paused by
//! QEMU after the switch-over, is then told to `quit`), `failed` or `cancelled` (the VM keeps
//! running on the source), anything else still running. The ledger moves the workload only
//! once this says completed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;
use shardex_core::ports::{MigrationError, MigrationStatus, Migrator, MoveOrder};
use shardex_core::{Span, Timestamp, WorkloadId};

use super::QmpError;
use super::session::Session;

/// Where a host receives VMs: the QMP socket of its QEMU waiting with `-incoming defer`, and
/// the migration URI it is to listen on (e.g. `tcp:10.0.0.2:4444`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The waiting QEMU's QMP socket.
    pub socket: PathBuf,
    /// Where it listens and the source sends.
    pub uri: String,
}

/// Moves VMs between QEMU processes over QMP.
#[derive(Debug, Clone, Default)]
pub struct QmpMigrator {
    /// Each VM by its workload's name: its QEMU's QMP socket where it runs now (as
    /// `engine.qmp_sockets`).
    sources: BTreeMap<String, PathBuf>,
    /// Each host's QEMU waiting for a VM, by the host's name.
    incoming: BTreeMap<String, Incoming>,
    /// Moves under way: the VM's name, the source's socket, the destination's.
    moving: BTreeMap<WorkloadId, (String, PathBuf, PathBuf)>,
    /// How long after starting a move it is first asked how it stands.
    first_look: Span,
}

impl QmpMigrator {
    /// No VMs known yet; a move is first looked at a second after it starts.
    pub fn new() -> Self {
        Self {
            first_look: Span::from_secs(1),
            ..Self::default()
        }
    }

    /// The workload named `name` is the VM whose QEMU answers QMP on `socket`.
    pub fn with_vm(mut self, name: impl Into<String>, socket: impl Into<PathBuf>) -> Self {
        self.sources.insert(name.into(), socket.into());
        self
    }

    /// The host named `host` receives VMs through `incoming`.
    pub fn with_incoming(mut self, host: impl Into<String>, incoming: Incoming) -> Self {
        self.incoming.insert(host.into(), incoming);
        self
    }

    fn send(
        socket: &std::path::Path,
        command: &str,
        args: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, QmpError> {
        Session::open(socket)?.execute(command, args)
    }
}

impl Migrator for QmpMigrator {
    fn start(&mut self, order: &MoveOrder, now: Timestamp) -> Result<Timestamp, MigrationError> {
        let workload = order.workload;
        let (from, to) = (&order.from_name, &order.to_name);
        let refuse = |reason: String| MigrationError { workload, reason };
        let source = self
            .sources
            .get(&order.name)
            .cloned()
            .ok_or_else(|| refuse(format!("no QEMU is known for {} on {from}", order.name)))?;
        let target = self
            .incoming
            .get(to)
            .cloned()
            .ok_or_else(|| refuse(format!("no QEMU waits for incoming VMs on {to}")))?;
        Self::send(
            &target.socket,
            "migrate-incoming",
            Some(json!({ "uri": target.uri })),
        )
        .map_err(|e| refuse(format!("the destination QEMU on {to}: {e}")))?;
        Self::send(&source, "migrate", Some(json!({ "uri": target.uri })))
            .map_err(|e| refuse(format!("the source QEMU on {from}: {e}")))?;
        // The destination's QEMU is taken: the next VM to that host needs another.
        self.incoming.remove(to);
        self.moving
            .insert(workload, (order.name.clone(), source, target.socket));
        Ok(now.checked_add(self.first_look).unwrap_or(now))
    }

    fn status(&mut self, workload: WorkloadId, _: Timestamp) -> MigrationStatus {
        let Some((name, source, target)) = self.moving.get(&workload).cloned() else {
            return MigrationStatus::Failed(format!("no move of {workload} is under way"));
        };
        let answer = match Self::send(&source, "query-migrate", None) {
            Ok(a) => a,
            // Not reachable for a moment is not a failure: asked again.
            Err(e) => {
                tracing::warn!(%workload, error = %e, "could not ask the source QEMU how its migration stands");
                return MigrationStatus::Running;
            }
        };
        match answer.get("status").and_then(|s| s.as_str()) {
            Some("completed") => {
                self.moving.remove(&workload);
                // The VM answers on the destination's socket from now on.
                self.sources.insert(name, target);
                // The source stays paused after the switch-over; it holds the VM's memory
                // until it exits.
                if let Err(e) = Self::send(&source, "quit", None) {
                    tracing::warn!(%workload, error = %e, "the migrated VM's old QEMU did not quit");
                }
                MigrationStatus::Completed
            }
            Some(s @ ("failed" | "cancelled")) => {
                self.moving.remove(&workload);
                let why = answer
                    .get("error-desc")
                    .and_then(|d| d.as_str())
                    .unwrap_or("no reason given");
                MigrationStatus::Failed(format!("QEMU says the migration {s}: {why}"))
            }
            _ => MigrationStatus::Running,
        }
    }
}
