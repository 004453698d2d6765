//! What a host's limits should be, read off the ledger: each workload's limits
//! ([`entitlement::limits`]), each reservation group's ([`entitlement::group_limits`]), and the
//! leases each workload holds, per kind (what a degraded kind gives back). The sampler and the
//! reconciler work from these alone: `shardex run` computes them from its ledger at each
//! step; in fleet mode a broker computes them for one host and sends them to its agent (a few
//! kilobytes per host, where the fleet's whole ledger is megabytes).

use serde::{Deserialize, Serialize};
use shardex_core::entitlement;
use shardex_core::ports::Limits;
use shardex_core::{
    HostId, LeaseId, Ledger, ReservationId, ResourceKind, ShardSizes, TenantId, WorkloadId,
};

/// One lease a workload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLease {
    /// The lease.
    pub id: LeaseId,
    /// Per kind, whether it carries shards of it.
    pub kinds: [bool; 4],
}

/// One workload's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadTarget {
    /// The workload.
    pub id: WorkloadId,
    /// Its name (its cgroup path, VM, …).
    pub name: String,
    /// Its owner.
    pub tenant: TenantId,
    /// Its limits now, physical units.
    pub want: Limits,
    /// The leases it holds.
    pub leases: Vec<HeldLease>,
}

/// One reservation group's limits (the cgroup holding all its workloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTarget {
    /// The reservation.
    pub reservation: ReservationId,
    /// The group's name.
    pub name: String,
    /// Its limits now, physical units.
    pub want: Limits,
    /// Its workloads.
    pub workloads: Vec<WorkloadId>,
}

/// A host's (or every host's) limits now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Workloads, by id.
    pub workloads: Vec<WorkloadTarget>,
    /// Reservation groups, by reservation.
    pub groups: Vec<GroupTarget>,
}

impl Targets {
    /// The limits of the workloads on `host` (every host's with `None`) in `ledger`.
    pub fn of(ledger: &Ledger, sizes: &ShardSizes, host: Option<HostId>) -> Self {
        let mut out = Self::default();
        let reservations: Vec<ReservationId> = match host {
            Some(h) => ledger.reservations_on(h).map(|r| r.id).collect(),
            None => ledger.reservations().map(|r| r.id).collect(),
        };
        for r in reservations {
            let workloads: Vec<_> = ledger.workloads_of(r).collect();
            if let (Some(name), Ok(want)) = (
                entitlement::group_of(ledger, r),
                entitlement::group_limits(ledger, r, sizes),
            ) {
                out.groups.push(GroupTarget {
                    reservation: r,
                    name,
                    want,
                    workloads: workloads.iter().map(|w| w.id).collect(),
                });
            }
            for w in workloads {
                let Ok(want) = entitlement::limits(ledger, w.id, sizes) else {
                    continue;
                };
                out.workloads.push(WorkloadTarget {
                    id: w.id,
                    name: w.name.clone(),
                    tenant: w.tenant,
                    want,
                    leases: Vec::new(),
                });
            }
        }
        // A workload's leases are on its own host.
        let leases: Vec<_> = match host {
            Some(h) => ledger.leases_on(h).collect(),
            None => ledger.leases().collect(),
        };
        out.workloads.sort_by_key(|w| w.id);
        out.groups.sort_by_key(|g| g.reservation);
        for l in leases {
            if let Ok(i) = out.workloads.binary_search_by_key(&l.borrower, |w| w.id) {
                out.workloads[i].leases.push(HeldLease {
                    id: l.id,
                    kinds: ResourceKind::ALL.map(|k| l.vector.get(k) > 0),
                });
            }
        }
        out
    }

    /// The workload `id`'s limits, if it is here.
    pub fn workload(&self, id: WorkloadId) -> Option<&WorkloadTarget> {
        self.workloads.iter().find(|w| w.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::testkit::{fleet, t};

    /// A fleet of 4 hosts × 3 workloads, with every workload's share set.
    fn ledger() -> Ledger {
        let mut l = Ledger::new();
        for batch in fleet(4, 3, t(0)) {
            l.apply(&batch, t(0)).unwrap();
        }
        l
    }

    #[test]
    fn each_host_s_targets_are_its_own_workloads_and_together_they_are_the_fleet_s() {
        let l = ledger();
        let sizes = ShardSizes::default();
        let all = Targets::of(&l, &sizes, None);
        assert_eq!(all.workloads.len(), 12);
        let mut joined = Targets::default();
        for h in l.hosts() {
            let mine = Targets::of(&l, &sizes, Some(h.id));
            assert_eq!(mine.workloads.len(), 3);
            for w in &mine.workloads {
                let in_ledger = l.workload(w.id).unwrap();
                assert_eq!(in_ledger.host, h.id);
                assert_eq!(w.want, entitlement::limits(&l, w.id, &sizes).unwrap());
                let held: Vec<LeaseId> = l
                    .leases()
                    .filter(|x| x.borrower == w.id)
                    .map(|x| x.id)
                    .collect();
                assert_eq!(w.leases.iter().map(|x| x.id).collect::<Vec<_>>(), held);
            }
            joined.workloads.extend(mine.workloads);
            joined.groups.extend(mine.groups);
        }
        joined.workloads.sort_by_key(|w| w.id);
        joined.groups.sort_by_key(|g| g.reservation);
        assert_eq!(joined, all);
        // Small enough to send to a host's agent every time its limits change.
        let one = Targets::of(&l, &sizes, l.hosts().next().map(|h| h.id));
        let bytes = serde_json::to_vec(&one).unwrap();
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        let back: Targets = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, one);
    }
}
