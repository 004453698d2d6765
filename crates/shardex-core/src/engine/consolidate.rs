//! Consolidation: when what the fleet needs fits on fewer hosts, the host cheapest to empty is
//! drained (every workload on it moved to other hosts in use) and given back.
//!
//! The rule, with its hysteresis against flapping with the provisioner: a host is drained only
//! when every workload on it has a destination where its whole need fits (the placement rule of
//! [`Engine::place`], among hosts in use, never the host itself), and the hosts left would then
//! have committed at most `consolidate_fill_pct` of their capacity in every kind. Provisioning
//! happens at 100 % and only after a host has been short for `move_after`; draining stops well
//! before that. The controller drains a host only after it has been the candidate for
//! `consolidate_after` without a break, with no host short and no move under way.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{HostId, ReservationId, WorkloadId};
use crate::ledger::Ledger;
use crate::shard::{ResourceKind, ShardVector};

use super::moves::{Room, hosts_in_use, place_among, rooms, waiting_by_host};
use super::{Engine, Move};

/// A host to empty and the moves that empty it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// The host given back once the moves land.
    pub host: HostId,
    /// Every workload on it, each with its destination (`to` is always set).
    pub moves: Vec<Move>,
}

impl Engine {
    /// The host to drain now, if any: among hosts whose workloads can all move (each alone in
    /// its reservation), the cheapest to empty (least memory, then cpu, needed by its
    /// workloads: what live migration copies), provided every workload has a destination and
    /// the fill rule holds afterwards. `needs` is what each workload must have where it goes
    /// (what it holds plus what it waits for; it takes at least its reservation there);
    /// `pending` what is already on its way to each host. `None` when consolidation is off (`consolidate_fill_pct` 0) or nothing qualifies.
    pub fn choose_drain(
        &self,
        ledger: &Ledger,
        needs: &BTreeMap<WorkloadId, ShardVector>,
        pending: &BTreeMap<HostId, ShardVector>,
    ) -> Option<Drain> {
        let fill = self.params.consolidate_fill_pct.min(100);
        if fill == 0 {
            return None;
        }
        let in_use = hosts_in_use(ledger);
        if in_use.len() < 2 {
            return None;
        }
        let mut per_reservation: HashMap<ReservationId, usize> = HashMap::new();
        let mut on_host: BTreeMap<HostId, Vec<(WorkloadId, ShardVector)>> = BTreeMap::new();
        for w in ledger.workloads() {
            *per_reservation.entry(w.reservation).or_default() += 1;
            let need = needs
                .get(&w.id)
                .copied()
                .unwrap_or_else(|| ledger.allocation(w.id).unwrap_or_default());
            // Where it lands it reserves what it reserves here and leases the rest.
            let base = ledger
                .reservation(w.reservation)
                .and_then(|r| ledger.reserved_at(r, ledger.now()).ok())
                .unwrap_or_default();
            let takes = ShardVector::from_fn(|k| need.get(k).max(base.get(k)));
            on_host.entry(w.host).or_default().push((w.id, takes));
        }
        let alone = |w: &WorkloadId| {
            ledger
                .workload(*w)
                .is_some_and(|x| per_reservation.get(&x.reservation) == Some(&1))
        };
        let total = |ws: &[(WorkloadId, ShardVector)]| {
            ws.iter()
                .fold(ShardVector::ZERO, |a, (_, v)| a.saturating_add(v))
        };
        let mut candidates: Vec<(HostId, Vec<(WorkloadId, ShardVector)>)> = on_host
            .into_iter()
            .filter(|(_, ws)| ws.iter().all(|(w, _)| alone(w)))
            .collect();
        candidates.sort_by_key(|(h, ws)| {
            let t = total(ws);
            (t.get(ResourceKind::Memory), t.get(ResourceKind::Cpu), *h)
        });
        let all = rooms(ledger, &waiting_by_host(ledger), |h| in_use.contains(&h));
        for (host, mut ws) in candidates {
            let others: Vec<Room> = all.iter().filter(|r| r.host != host).copied().collect();
            // What the others hold plus all that moves must fit under the fill limit: cheap to
            // check before placing anything.
            let moving = total(&ws);
            let count = ws.len();
            let pending_total = pending
                .iter()
                .filter(|(h, _)| **h != host)
                .fold(ShardVector::ZERO, |a, (_, v)| a.saturating_add(v));
            if !Self::fill_holds(&others, &moving.saturating_add(&pending_total), fill) {
                continue;
            }
            // The largest first: they have the fewest places to go.
            ws.sort_by_key(|(w, v)| {
                (
                    Reverse((v.get(ResourceKind::Memory), v.get(ResourceKind::Cpu))),
                    *w,
                )
            });
            let mut after = pending.clone();
            let mut moves = Vec::with_capacity(ws.len());
            for (w, v) in ws {
                let Some(to) = place_among(&others, &v, &after) else {
                    break;
                };
                let e = after.entry(to).or_default();
                *e = e.saturating_add(&v);
                moves.push(Move {
                    workload: w,
                    from: host,
                    to: Some(to),
                    needs: v,
                });
            }
            if moves.len() == count {
                return Some(Drain { host, moves });
            }
        }
        None
    }

    /// Whether `rooms` with `incoming` on its way to them commit at most `fill` percent of
    /// their capacity in every kind.
    fn fill_holds(rooms: &[Room], incoming: &ShardVector, fill: u64) -> bool {
        let (used, capacity) = rooms
            .iter()
            .fold((*incoming, ShardVector::ZERO), |(u, c), r| {
                (
                    u.saturating_add(&r.committed),
                    c.saturating_add(&r.capacity),
                )
            });
        ResourceKind::ALL.into_iter().all(|k| {
            u128::from(used.get(k)) * 100 <= u128::from(capacity.get(k)) * u128::from(fill)
        })
    }
}
