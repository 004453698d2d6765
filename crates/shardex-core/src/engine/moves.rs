//! When a host itself is short: which workloads move off it, and where a workload goes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{HostId, Lender, ReservationId, WorkloadId};
use crate::ledger::Ledger;
use crate::shard::{ResourceKind, ShardVector};

use super::Engine;

/// A workload to move off a short host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Which.
    pub workload: WorkloadId,
    /// From where.
    pub from: HostId,
    /// To a host with room, or `None` when a new host is needed.
    pub to: Option<HostId>,
    /// What it needs where it goes.
    pub needs: ShardVector,
}

impl Engine {
    /// Which workloads to move off `host` so that it stops missing `short`: the cheapest set
    /// to move, cost being the memory moved (what a live migration copies), among workloads
    /// that have somewhere to go. A single workload whose allocation covers the shortfall is
    /// preferred, the smallest such; otherwise the largest go first until it is covered. Only
    /// when no workload can go anywhere does one go to a new host (`to: None`): the smallest
    /// that covers the shortfall, or else the largest. Only workloads alone in a reservation
    /// that lends nothing and that no pending modification waits on can move. Destinations
    /// follow [`Engine::place`].
    pub fn choose_moves(
        &self,
        ledger: &Ledger,
        host: HostId,
        short: ShardVector,
        needs: &BTreeMap<WorkloadId, ShardVector>,
        pending: &mut BTreeMap<HostId, ShardVector>,
    ) -> Vec<Move> {
        let mut per_reservation: HashMap<ReservationId, usize> = HashMap::new();
        for w in ledger.workloads() {
            *per_reservation.entry(w.reservation).or_default() += 1;
        }
        let lending: std::collections::HashSet<Lender> =
            ledger.leases().map(|l| l.lender).collect();
        let waited_on = super::pending::waited_on(ledger);
        let movable: Vec<(WorkloadId, ShardVector)> = ledger
            .workloads()
            .filter(|w| {
                w.host == host
                    && per_reservation.get(&w.reservation) == Some(&1)
                    && !lending.contains(&Lender::Reservation(w.reservation))
                    && !waited_on.contains(&w.reservation)
            })
            .map(|w| {
                let need = needs
                    .get(&w.id)
                    .copied()
                    .unwrap_or_else(|| ledger.allocation(w.id).unwrap_or_default());
                (w.id, need)
            })
            .collect();
        let covers = |v: &ShardVector| short.kinds().all(|k| v.get(k) >= short.get(k));
        let cost = |w: &WorkloadId, v: &ShardVector| {
            (v.get(ResourceKind::Memory), v.get(ResourceKind::Cpu), *w)
        };
        let contribution = |v: &ShardVector| {
            short
                .kinds()
                .map(|k| v.get(k).min(short.get(k)))
                .sum::<u64>()
        };
        let mut out = Vec::new();
        let book = |out: &mut Vec<Move>,
                    pending: &mut BTreeMap<HostId, ShardVector>,
                    w,
                    v: ShardVector,
                    to: Option<HostId>| {
            if let Some(t) = to {
                let e = pending.entry(t).or_default();
                *e = e.saturating_add(&v);
            }
            out.push(Move {
                workload: w,
                from: host,
                to,
                needs: v,
            });
        };
        // One move to a host with room, the cheapest that covers it.
        let with_room: Vec<(WorkloadId, ShardVector, HostId)> = movable
            .iter()
            .filter_map(|&(w, v)| Self::place(ledger, &v, Some(host), pending).map(|h| (w, v, h)))
            .collect();
        if let Some(&(w, v, h)) = with_room
            .iter()
            .filter(|(_, v, _)| covers(v))
            .min_by_key(|(w, v, _)| cost(w, v))
        {
            book(&mut out, pending, w, v, Some(h));
            return out;
        }
        // Several moves to hosts with room, the largest first.
        let mut left = short;
        let mut by_size: Vec<(WorkloadId, ShardVector)> =
            with_room.iter().map(|&(w, v, _)| (w, v)).collect();
        by_size.sort_by_key(|(w, v)| (Reverse(contribution(v)), *w));
        for (w, v) in by_size {
            if left.is_zero() {
                break;
            }
            if !short.kinds().any(|k| v.get(k) > 0 && left.get(k) > 0) {
                continue;
            }
            // Room may have gone to an earlier move.
            if let Some(h) = Self::place(ledger, &v, Some(host), pending) {
                left = left.excess_over(&v);
                book(&mut out, pending, w, v, Some(h));
            }
        }
        if left.is_zero() {
            return out;
        }
        // Nowhere to go: one workload goes to a new host.
        let moving: std::collections::HashSet<WorkloadId> =
            out.iter().map(|m| m.workload).collect();
        let rest = movable.iter().filter(|(w, _)| !moving.contains(w));
        let covering = rest
            .clone()
            .filter(|(_, v)| left.kinds().all(|k| v.get(k) >= left.get(k)));
        let pick = covering
            .min_by_key(|(w, v)| cost(w, v))
            .or_else(|| rest.max_by_key(|(w, v)| (contribution(v), Reverse(*w))));
        if let Some(&(w, v)) = pick {
            book(&mut out, pending, w, v, None);
        }
        out
    }

    /// Placement: the host (other than `exclude`) where `needs` fits with the most headroom,
    /// headroom being capacity − reserved − lent by the provider − waiting requests − what is
    /// already on its way there, and "most" the largest smallest share of capacity left over
    /// any kind after placing (ties: lowest host id). Hosts in use (with a workload) come
    /// first, so that a host consolidation emptied stays empty while the others have room; an
    /// idle host only when none in use fits. `None` when no host has room.
    pub fn place(
        ledger: &Ledger,
        needs: &ShardVector,
        exclude: Option<HostId>,
        pending: &BTreeMap<HostId, ShardVector>,
    ) -> Option<HostId> {
        let in_use = hosts_in_use(ledger);
        let rooms = rooms(ledger, &waiting_by_host(ledger), |h| Some(h) != exclude);
        let (used, idle): (Vec<Room>, Vec<Room>) =
            rooms.into_iter().partition(|r| in_use.contains(&r.host));
        place_among(&used, needs, pending).or_else(|| place_among(&idle, needs, pending))
    }
}

/// A host's capacity and what it has committed for placement: reserved, lent by the
/// provider, and held back for waiting requests (what is on its way there is added apart).
#[derive(Debug, Clone, Copy)]
pub(super) struct Room {
    pub(super) host: HostId,
    pub(super) capacity: ShardVector,
    pub(super) committed: ShardVector,
}

/// The rooms of the hosts `allowed` lets through, read from the ledger once.
pub(super) fn rooms(
    ledger: &Ledger,
    waiting: &HashMap<HostId, ShardVector>,
    allowed: impl Fn(HostId) -> bool,
) -> Vec<Room> {
    ledger
        .hosts()
        .filter(|h| allowed(h.id))
        .filter_map(|h| {
            let b = ledger.balance(h.id).ok()?;
            Some(Room {
                host: h.id,
                capacity: h.capacity,
                committed: b
                    .reserved
                    .saturating_add(&b.lent_by_provider)
                    .saturating_add(&waiting.get(&h.id).copied().unwrap_or_default()),
            })
        })
        .collect()
}

/// Hosts with at least one workload.
pub(super) fn hosts_in_use(ledger: &Ledger) -> BTreeSet<HostId> {
    ledger.workloads().map(|w| w.host).collect()
}

/// Shards waiting requests hold back on each host.
pub(super) fn waiting_by_host(ledger: &Ledger) -> HashMap<HostId, ShardVector> {
    let mut waiting: HashMap<HostId, ShardVector> = HashMap::new();
    for r in ledger.requests() {
        let e = waiting.entry(r.host).or_default();
        *e = e.saturating_add(&r.remaining());
    }
    waiting
}

/// [`Engine::place`] among `rooms`, with `pending` on its way to them.
pub(super) fn place_among(
    rooms: &[Room],
    needs: &ShardVector,
    pending: &BTreeMap<HostId, ShardVector>,
) -> Option<HostId> {
    let mut best: Option<(u64, HostId)> = None;
    for r in rooms {
        let used = r
            .committed
            .saturating_add(&pending.get(&r.host).copied().unwrap_or_default());
        let room = r.capacity.excess_over(&used);
        if !needs.fits_in(&room) {
            continue;
        }
        // Per-mille of capacity left in the tightest kind the host has.
        let left = ResourceKind::ALL
            .into_iter()
            .filter(|&k| r.capacity.get(k) > 0)
            .map(|k| (room.get(k) - needs.get(k)).saturating_mul(1000) / r.capacity.get(k))
            .min()
            .unwrap_or(0);
        if best.is_none_or(|(l, _)| left > l) {
            best = Some((left, r.host));
        }
    }
    best.map(|(_, h)| h)
}
