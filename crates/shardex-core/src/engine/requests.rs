//! Phase 2 of a tick: shard requests for what the market left short, raised, resolved by
//! reclaim, preemption and growth, and closed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::action;
use crate::domain::{HostId, KindChange, ModificationId, RequestId, Tier, WorkloadId};
use crate::ledger::{Action, Ledger};
use crate::shard::ShardVector;
use crate::time::Timestamp;

use super::{Engine, View};

/// Where a shard request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum RequestStatus {
    /// Shards are on their way (reclaim or preemption notice, growth, a move).
    Pending,
    /// The workload holds what it asked for.
    Fulfilled,
    /// It got part of it before giving up.
    PartiallyFulfilled(String),
    /// It got nothing, and why.
    Failed(String),
}

/// One step taken for a shard request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    /// Leases lent by the workload's own reservation are reclaimed (after notice).
    Reclaim {
        /// Shards coming back.
        shards: ShardVector,
    },
    /// Lower-tier leases are being preempted for it (after notice).
    Preempt {
        /// Shards coming.
        shards: ShardVector,
    },
    /// Its reservation grows from the host's free capacity.
    Grow {
        /// Shards added.
        shards: ShardVector,
    },
    /// The host is short: workloads move away (and a host may be provisioned).
    HostShort {
        /// Shards missing on the host.
        shards: ShardVector,
    },
}

/// What the engine raises when the market cannot cover a workload, or when a pending
/// modification waits for room on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest {
    /// Its id.
    pub id: u64,
    /// For which workload (none for a pending modification's).
    pub workload: Option<WorkloadId>,
    /// For which pending modification, if it is one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modification: Option<ModificationId>,
    /// Where.
    pub host: HostId,
    /// Shards the market could not cover when it was raised.
    pub wanted: ShardVector,
    /// When it was raised.
    pub raised: Timestamp,
    /// What was done, in order.
    pub steps: Vec<Step>,
    /// Where it stands.
    pub status: RequestStatus,
}

impl ShardRequest {
    /// Whose request it is: its workload's tenant, or its pending (or since started)
    /// modification's; `None` once that is gone.
    pub fn tenant(&self, l: &Ledger) -> Option<crate::domain::TenantId> {
        if let Some(w) = self.workload {
            return l.workload(w).map(|w| w.tenant);
        }
        l.modification_owner(self.modification?)
    }
}

/// The outcome of [`Engine::resolve`].
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Ledger actions (reclaims, growth), to commit as one batch.
    pub actions: Vec<Action>,
    /// Hosts still short after reclaim, preemption and growth, with what they miss.
    pub short_hosts: BTreeMap<HostId, ShardVector>,
    /// Hosts a pending modification waits on: a tenant asked for the room, so moves start
    /// at once rather than after the hysteresis that keeps a brief spike from moving anything.
    pub asked_hosts: std::collections::BTreeSet<HostId>,
}

impl Engine {
    /// Phase 2, after the plan is committed: raises a shard request for every workload the
    /// market left short, and resolves it by reclaim, preemption and growth; returns what to
    /// commit and the hosts still short (for moves and provisioning).
    pub fn resolve(&mut self, ledger: &Ledger) -> Resolution {
        let now = ledger.now();
        let p = self.params.clone();
        let view = View::of(ledger, now);
        let mut out = Resolution::default();
        self.update_statuses(ledger, &view);
        // Pending modifications first: those that fit start, the others make their host short.
        let started = self.resolve_pending(ledger, &mut out);
        let with_started = started.as_ref().unwrap_or(ledger);
        // Host free capacity left to grow reservations from, as this resolution uses it.
        let mut free: HashMap<HostId, ShardVector> = HashMap::new();
        let mut short: Vec<(Reverse<Tier>, RequestId)> = ledger
            .requests()
            .filter(|r| r.start <= now && !r.remaining().is_zero())
            .map(|r| (Reverse(r.tier), r.id))
            .collect();
        short.sort();
        for (_, rid) in short {
            let Some(req) = ledger.request(rid) else {
                continue;
            };
            let Some(w) = ledger.workload(req.workload) else {
                continue;
            };
            let mut missing = req.remaining();
            let mut sr = ShardRequest {
                id: 0,
                workload: Some(w.id),
                modification: None,
                host: w.host,
                wanted: missing,
                raised: now,
                steps: Vec::new(),
                status: RequestStatus::Pending,
            };
            // 1. Reclaim what its own reservation has lent out.
            let mut reclaimed = ShardVector::ZERO;
            for &(lease, v, reclaiming) in view.lent.get(&w.reservation).into_iter().flatten() {
                if reclaiming || !v.kinds().any(|k| missing.get(k) > 0) {
                    continue;
                }
                out.actions.push(Action::Reclaim(action::Reclaim {
                    tenant: w.tenant,
                    lease,
                }));
                reclaimed = reclaimed.saturating_add(&v);
                missing = missing.excess_over(&v);
            }
            if !reclaimed.is_zero() {
                sr.steps.push(Step::Reclaim { shards: reclaimed });
            }
            // 2. What the ledger is already preempting for this request.
            let preempting = view.preempting.get(&rid).copied().unwrap_or_default();
            if !preempting.is_zero() {
                sr.steps.push(Step::Preempt { shards: preempting });
                missing = missing.excess_over(&preempting);
            }
            // 3. Grow the reservation from the host's free capacity.
            if !missing.is_zero() {
                let f = free.entry(w.host).or_insert_with(|| {
                    with_started
                        .balance(w.host)
                        .map(|b| b.free)
                        .unwrap_or_default()
                });
                let grow = missing.min(f);
                if !grow.is_zero() {
                    *f = f.excess_over(&grow);
                    let changes = grow
                        .kinds()
                        .map(|kind| KindChange {
                            kind,
                            change: crate::domain::Change::Delta(
                                i64::try_from(grow.get(kind)).unwrap_or(i64::MAX),
                            ),
                        })
                        .collect();
                    let end = ledger
                        .reservation(w.reservation)
                        .map(|r| r.window.end())
                        .unwrap_or(now);
                    let duration = end.since(now).min(p.lease_for);
                    if !duration.is_zero() {
                        out.actions
                            .push(Action::ModifyReservation(action::ModifyReservation {
                                tenant: w.tenant,
                                reservation: w.reservation,
                                changes,
                                start: None,
                                duration,
                            }));
                        out.actions.push(Action::Allocate(action::Allocate {
                            tenant: w.tenant,
                            workload: w.id,
                            share: w.share.saturating_add(&grow),
                        }));
                        sr.steps.push(Step::Grow { shards: grow });
                        missing = missing.excess_over(&grow);
                    }
                }
            }
            // 4. Still short: the host is.
            if !missing.is_zero() {
                sr.steps.push(Step::HostShort { shards: missing });
                let e = out.short_hosts.entry(w.host).or_default();
                *e = e.saturating_add(&missing);
            }
            self.raise(sr);
        }
        out
    }

    /// Records a request, or folds it into the open one of the same workload or modification.
    pub(super) fn raise(&mut self, mut sr: ShardRequest) {
        if let Some(open) = self.requests.values_mut().find(|o| {
            o.workload == sr.workload
                && o.modification == sr.modification
                && o.status == RequestStatus::Pending
        }) {
            open.wanted = open.wanted.max(&sr.wanted);
            open.steps.append(&mut sr.steps);
            return;
        }
        self.next_request += 1;
        sr.id = self.next_request;
        self.requests.insert(sr.id, sr);
    }

    /// Closes pending requests: fulfilled once the workload has no short request left;
    /// partially fulfilled or failed once it has waited for longer than a lease request may.
    fn update_statuses(&mut self, ledger: &Ledger, view: &View) {
        let now = ledger.now();
        let patience = self.params.down_after;
        for r in self.requests.values_mut() {
            if r.status != RequestStatus::Pending {
                continue;
            }
            if let Some(m) = r.modification {
                r.status = super::pending::status(ledger, m);
                continue;
            }
            let Some(w) = r.workload.and_then(|w| ledger.workload(w)) else {
                r.status = RequestStatus::Failed("the workload is gone".into());
                continue;
            };
            let still_short = view
                .requests
                .get(&w.id)
                .into_iter()
                .flatten()
                .filter_map(|id| ledger.request(*id))
                .any(|x| !x.remaining().is_zero());
            if !still_short {
                r.status = RequestStatus::Fulfilled;
            } else if now.since(r.raised) > patience {
                let got = ledger
                    .allocation(w.id)
                    .map(|a| !a.is_zero())
                    .unwrap_or(false);
                r.status = if got {
                    RequestStatus::PartiallyFulfilled(format!(
                        "still short after {}; the host has no room left",
                        now.since(r.raised)
                    ))
                } else {
                    RequestStatus::Failed(format!("nothing found in {}", now.since(r.raised)))
                };
            }
        }
    }

    /// Marks the open requests on a host failed, with the reason (a provisioner failed).
    pub fn fail(&mut self, host: HostId, reason: &str) {
        for r in self
            .requests
            .values_mut()
            .filter(|r| r.host == host && r.status == RequestStatus::Pending)
        {
            r.status = RequestStatus::Failed(reason.to_string());
        }
    }
}
