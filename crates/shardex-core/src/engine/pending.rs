//! Pending modifications in a tick: each one that fits now is started; each one that does not
//! makes its host short by what it misses, with a shard request that says so, and the
//! controller moves other workloads off that host (or provisions one for them) as for any
//! short host. Its own reservation's workloads never move: leaving would end the reservation
//! the modification waits on.

use std::collections::BTreeSet;

use crate::action;
use crate::domain::{ModificationId, ReservationId};
use crate::ledger::{Action, Ledger};
use crate::shard::ShardVector;

use super::Engine;
use super::requests::{RequestStatus, Resolution, ShardRequest, Step};

impl Engine {
    /// Starts the pending modifications that fit, oldest first, each on the ledger the ones
    /// before it left (their actions go first in `out`), and books what the others miss on
    /// their hosts. Returns the ledger with those started, if any did.
    pub(super) fn resolve_pending(
        &mut self,
        ledger: &Ledger,
        out: &mut Resolution,
    ) -> Option<Ledger> {
        let now = ledger.now();
        let mut started: Option<Ledger> = None;
        let waiting: Vec<_> = ledger.pending_modifications().cloned().collect();
        for p in waiting {
            let Some(r) = ledger.reservation(p.reservation) else {
                continue;
            };
            let start = Action::StartPendingModification(action::StartPendingModification {
                modification: p.id,
            });
            let base = started.as_ref().unwrap_or(ledger);
            if let Ok((after, _)) = base.applied(&start, now) {
                out.actions.push(start);
                started = Some(after);
                // Its request is fulfilled now: a short change may be over, and pruned, by the
                // next tick, which would otherwise read it as given up.
                for r in self
                    .requests
                    .values_mut()
                    .filter(|r| r.modification == Some(p.id))
                {
                    r.status = RequestStatus::Fulfilled;
                }
                continue;
            }
            let missing = misses(base, r, &p.changes).unwrap_or_default();
            if missing.is_zero() {
                continue;
            }
            let e = out.short_hosts.entry(r.host).or_default();
            *e = e.saturating_add(&missing);
            out.asked_hosts.insert(r.host);
            self.raise(ShardRequest {
                id: 0,
                workload: None,
                modification: Some(p.id),
                host: r.host,
                wanted: missing,
                raised: now,
                steps: vec![Step::HostShort { shards: missing }],
                status: RequestStatus::Pending,
            });
        }
        started
    }
}

/// What a pending modification of `r` misses on its host now: what it adds beyond the host's
/// free shards (all it adds when those would do now but a later commitment is in the way).
fn misses(
    ledger: &Ledger,
    r: &crate::domain::Reservation,
    changes: &[crate::domain::KindChange],
) -> Option<ShardVector> {
    let holds = ledger.reserved_at(r, ledger.now()).ok()?;
    let wants = ledger.reserved_with(r, changes).ok()?;
    let adds = wants.excess_over(&holds);
    let free = ledger.balance(r.host).ok()?.free;
    let missing = adds.excess_over(&free);
    Some(if missing.is_zero() { adds } else { missing })
}

/// Where the shard request of pending modification `m` stands: pending while it waits,
/// fulfilled once it is in force, failed once it stopped waiting otherwise.
pub(super) fn status(ledger: &Ledger, m: ModificationId) -> RequestStatus {
    if ledger.pending_modification(m).is_some() {
        RequestStatus::Pending
    } else if ledger.modification(m).is_some() {
        RequestStatus::Fulfilled
    } else {
        RequestStatus::Failed(
            "the modification stopped waiting: it gave up, was withdrawn or its reservation ended"
                .into(),
        )
    }
}

/// The reservations a pending modification waits on: their workloads stay where they are.
pub(super) fn waited_on(ledger: &Ledger) -> BTreeSet<ReservationId> {
    ledger
        .pending_modifications()
        .map(|p| p.reservation)
        .collect()
}
