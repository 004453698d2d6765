//! The ledger: every shard of every host, where it is, and the one entry point that changes it.
//!
//! [`Ledger::apply`] takes an [`Action`] at a given `now` and returns the [`Event`]s it caused,
//! or a [`LedgerError`] naming the rule it would break; a failed action leaves the ledger
//! exactly as it was. Before the action, the ledger catches up with time: it processes, in
//! time order, every lease end, request end, reservation start or end and modification start
//! or end between its last `now` and the new one.
//!
//! # Rules
//! * **Conservation** (per host and kind): capacity = Σ reservations in force + unreserved;
//!   each reservation = allocated to its workloads + lent out + idle (offered or not);
//!   unreserved = lent by the provider + free. [`Ledger::check`] verifies it.
//! * **Admission**: a reservation, a modification, the cancelling of a modification or a new
//!   host capacity is accepted only if, at every future change point, the reservations in
//!   force plus what the provider has lent fit the capacity, and no reservation drops below
//!   what it has lent out at that time.
//! * **Leases never outlive their cover**: a lender's shards are only matched to a request if
//!   the lender can keep them through the request's whole window (given the reservation's
//!   known modifications and end). So a shrinking reservation never has to cut a lease.
//! * **Give-back order when a reservation shrinks** (a modification expires, is cancelled or
//!   a decrease starts, or the reservation ends): first its idle shards that are not offered,
//!   then its offered shards (the offer shrinks), then the allocations of its own workloads,
//!   largest allocation first (ties: lowest workload id). Leases are never cut (see above).
//! * **Modifications compose** in creation order: each one in force is applied to the result of
//!   the ones before it. `=N` sets, `+N`/`-N` add or remove shards (a decrease stops at zero),
//!   `+P%`/`-P%` scale the running count and round up to a whole shard.
//! * **Matching and priority**: pending lease requests on a host are served in order of tier
//!   (highest first), then age (oldest first). Per kind a request takes the cheapest offers
//!   whose floor price it accepts (ties: reservations by id, the provider last). A request that
//!   stays short in a kind *blocks* that kind for every request after it: those may only take
//!   offers priced above what the blocking request accepts. So a lower tier never takes shards
//!   that a higher tier is waiting for, and equal tiers are first come, first served.
//! * **Preemption**: a pending request that stays short reclaims leases of strictly lower tiers
//!   (lowest tier first, newest first) that it could use, with the configured reclaim notice;
//!   when they end their shards go back to the pool and to the waiting request.
//! * **Where returned shards go**: a lease that expires, is released or preempted returns its
//!   shards to the lender's offer; a lease the lender reclaimed returns them to the lender's
//!   idle, unoffered shards.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::book::{Bid, HostBook};
use crate::domain::{
    Delivery, Host, HostId, KindChange, Lease, LeaseId, LeaseRequest, Lender, Lending,
    Modification, ModificationId, PendingModification, PriceVector, ReclaimReason, RequestId,
    Reservation, ReservationId, Tenant, TenantId, Tier, Workload, WorkloadId,
};
use crate::pricing::TierFactors;
use crate::shard::{ResourceKind, ShardError, ShardVector};
use crate::time::{Span, TimeError, Timestamp, Window};

mod act;
pub mod action;
mod admission;
pub mod bounds;
mod check;
mod committed;
mod compose;
mod dues;
mod error;
pub mod event;
mod hosts;
mod lending;
mod matching;
mod params;
mod pending;
mod reservations;
mod split;
mod timeline;

#[cfg(test)]
mod admission_props;
#[cfg(test)]
mod tests;

pub use action::{Action, TenantAction};
pub use check::{Rule, Violation};
pub use error::LedgerError;
pub use event::{AllocationReason, Event, LeaseEnd, OfferReason, PendingEnd, RequestOutcome};
pub use params::LedgerParams;
pub use split::CapacitySplit;

use admission::{check_name, check_workload_name, same_thing};
use compose::compose;

/// Where every shard of one host is, per kind, at the ledger's time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBalance {
    /// The host.
    pub host: Option<HostId>,
    /// Its capacity.
    pub capacity: ShardVector,
    /// Σ reservations in force.
    pub reserved: ShardVector,
    /// Σ workload shares of those reservations.
    pub allocated: ShardVector,
    /// Σ lent out by reservations.
    pub lent_by_reservations: ShardVector,
    /// Σ idle shards of reservations (offered or not).
    pub idle: ShardVector,
    /// Σ offered by reservations (part of idle).
    pub offered: ShardVector,
    /// Capacity not reserved.
    pub unreserved: ShardVector,
    /// Lent out by the provider from unreserved capacity.
    pub lent_by_provider: ShardVector,
    /// Unreserved and not lent.
    pub free: ShardVector,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counters {
    host: u64,
    tenant: u64,
    reservation: u64,
    modification: u64,
    workload: u64,
    lease: u64,
    request: u64,
}

/// The ledger's maps and sets: persistent (structurally shared), so that copying the ledger
/// for an atomic action, or for a reader's snapshot, costs nothing until a path is written.
pub(crate) type Map<K, V> = imbl::OrdMap<K, V>;
/// See [`Map`].
pub(crate) type Set<T> = imbl::OrdSet<T>;

/// The whole state: hosts, tenants, reservations, workloads, leases and pending requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    params: LedgerParams,
    now: Timestamp,
    counters: Counters,
    hosts: Map<HostId, Host>,
    tenants: Map<TenantId, Tenant>,
    reservations: Map<ReservationId, Reservation>,
    modifications: Map<ModificationId, Modification>,
    workloads: Map<WorkloadId, Workload>,
    leases: Map<LeaseId, Lease>,
    requests: Map<RequestId, LeaseRequest>,
    market: Map<HostId, PriceVector>,
    /// Modifications waiting for room on their host (see `pending.rs`).
    #[serde(default)]
    pending: Map<ModificationId, PendingModification>,
    /// Leases by lender and by borrower: derived from `leases`, kept in step with it.
    by_lender: Map<Lender, Set<LeaseId>>,
    by_borrower: Map<WorkloadId, Set<LeaseId>>,
    /// Per-host and per-reservation indexes, derived the same way: every host-local rule
    /// reads only its host's objects.
    #[serde(default)]
    idx: Indexes,
}

/// Objects by where they are. Derived from the ledger's maps and checked by `check()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Indexes {
    reservations: Map<HostId, Set<ReservationId>>,
    requests: Map<HostId, Set<RequestId>>,
    leases: Map<HostId, Set<LeaseId>>,
    workloads: Map<ReservationId, Set<WorkloadId>>,
    /// Tenants by name (names are unique), so a new tenant's name is checked without a scan.
    tenant_names: Map<String, TenantId>,
    /// What falls due when (see `dues.rs`).
    dues: dues::Dues,
    /// When reservations and modifications leave the state (see `dues.rs`).
    ends: dues::Ends,
    /// Each host's committed shards over time (see `committed.rs`); checked by `check()`
    /// from now on, not compared here.
    committed: Map<HostId, committed::Committed>,
    /// Each reservation's modifications as values, in its order: composing a reservation (what
    /// admission, metering and quotes do for every action) reads them here rather than looking
    /// each up in `modifications`. Shared, so that refreshing a reservation's list after one
    /// modification changes copies pointers, not the others.
    mods: Map<ReservationId, std::sync::Arc<[std::sync::Arc<Modification>]>>,
}

fn index_add<K: Ord + Clone, V: Ord + Clone>(m: &mut Map<K, Set<V>>, k: K, v: V) {
    m.entry(k).or_default().insert(v);
}

/// The objects an index lists under `key`.
fn indexed<'a, K: Ord + Clone, I: Ord + Clone, V: Clone>(
    index: &'a Map<K, Set<I>>,
    key: &K,
    objects: &'a Map<I, V>,
) -> impl Iterator<Item = &'a V> + use<'a, K, I, V> {
    index
        .get(key)
        .into_iter()
        .flatten()
        .filter_map(|id| objects.get(id))
}

fn index_remove<K: Ord + Clone, V: Ord + Clone>(m: &mut Map<K, Set<V>>, k: &K, v: &V) {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

fn next(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

impl Ledger {
    /// An empty ledger with default parameters, at the epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one action at `now`: all of it, or nothing.
    pub fn apply(&mut self, action: &Action, now: Timestamp) -> Result<Vec<Event>, LedgerError> {
        let (next, events) = self.applied(action, now)?;
        *self = next;
        Ok(events)
    }

    /// The ledger as it would be after `action` at `now`, and the events; `self` is untouched.
    /// A store uses this to persist first and switch over only once the write is durable.
    pub fn applied(
        &self,
        action: &Action,
        now: Timestamp,
    ) -> Result<(Ledger, Vec<Event>), LedgerError> {
        if now < self.now {
            return Err(LedgerError::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        // Working on a copy makes every action atomic however far it got before failing.
        let mut next = self.clone();
        let mut events = Vec::new();
        next.advance(now, &mut events)?;
        match action {
            Action::Batch(action::Batch { actions }) => {
                // Its actions in order, then matching once on every host they touched.
                let mut touched: Option<BTreeSet<HostId>> = Some(BTreeSet::new());
                for (index, a) in actions.iter().enumerate() {
                    let hosts = next.hosts_of(a);
                    next.act(a, &mut events).map_err(|e| LedgerError::InBatch {
                        index,
                        source: Box::new(e),
                    })?;
                    touched = match (touched, hosts) {
                        (Some(mut t), Some(h)) => {
                            t.extend(h);
                            Some(t)
                        }
                        _ => None,
                    };
                }
                next.match_hosts(touched.as_ref(), &mut events)?;
            }
            a => next.act_and_match(a, &mut events)?,
        }
        next.prune();
        Ok((next, events))
    }

    /// One action, then matching on the hosts it touched: nothing changed elsewhere, and time
    /// passing was matched at every change point on the way.
    fn act_and_match(&mut self, action: &Action, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let touched = self.hosts_of(action);
        self.act(action, ev)?;
        self.match_hosts(touched.as_ref(), ev)
    }

    /// Matches pending requests on `hosts` (every host when `None`).
    fn match_hosts(
        &mut self,
        hosts: Option<&BTreeSet<HostId>>,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let pending: Vec<HostId> = match hosts {
            Some(hs) => hs
                .iter()
                .copied()
                .filter(|h| self.idx.requests.contains_key(h))
                .collect(),
            None => self.idx.requests.keys().copied().collect(),
        };
        for host in pending {
            self.match_requests(host, ev)?;
        }
        Ok(())
    }

    /// The hosts an action can change; `None` when it can change all of them.
    fn hosts_of(&self, action: &Action) -> Option<BTreeSet<HostId>> {
        let res = |r: &ReservationId| self.reservations.get(r).map(|r| r.host);
        let wl = |w: &WorkloadId| self.workloads.get(w).map(|w| w.host);
        let host = match action {
            Action::Configure(action::Configure { .. }) | Action::Batch(action::Batch { .. }) => {
                return None;
            }
            Action::CreateTenant(action::CreateTenant { .. })
            | Action::Expire
            | Action::RegisterHost(action::RegisterHost { .. }) => None,
            Action::SetHostCapacity(action::SetHostCapacity { host, .. })
            | Action::CreateReservation(action::CreateReservation { host, .. })
            | Action::SetMarketPrice(action::SetMarketPrice { host, .. }) => Some(*host),
            Action::ModifyReservation(action::ModifyReservation { reservation, .. })
            | Action::CancelReservation(action::CancelReservation { reservation, .. })
            | Action::BindWorkload(action::BindWorkload { reservation, .. })
            | Action::Offer(action::Offer { reservation, .. })
            | Action::SetLending(action::SetLending { reservation, .. })
            | Action::AutoOffer(action::AutoOffer { reservation, .. }) => res(reservation),
            Action::CancelModification(action::CancelModification { modification, .. })
            | Action::StartPendingModification(action::StartPendingModification { modification }) => {
                self.modifications
                    .get(modification)
                    .map(|m| m.reservation)
                    .or_else(|| self.pending.get(modification).map(|p| p.reservation))
                    .and_then(|r| res(&r))
            }
            Action::QueueModification(action::ModifyReservation { reservation, .. }) => {
                res(reservation)
            }
            Action::UnbindWorkload(action::UnbindWorkload { workload, .. })
            | Action::Allocate(action::Allocate { workload, .. })
            | Action::RequestLease(action::RequestLease { workload, .. }) => wl(workload),
            Action::CancelRequest(action::CancelRequest { request, .. }) => {
                self.requests.get(request).map(|r| r.host)
            }
            Action::Reclaim(action::Reclaim { lease, .. })
            | Action::ReclaimProvider(action::ReclaimProvider { lease })
            | Action::Release(action::Release { lease, .. }) => {
                self.leases.get(lease).map(|l| l.host)
            }
        };
        Some(host.into_iter().collect())
    }

    /// Time of the last applied action.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The next time at which something changes by itself (an expiry, a start, an end), if any.
    /// A daemon applies [`Action::Expire`] then, so that nothing waits for the next action.
    pub fn next_change(&self) -> Option<Timestamp> {
        self.next_change_after(self.now)
    }

    /// Current parameters.
    pub fn params(&self) -> &LedgerParams {
        &self.params
    }

    /// All hosts.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// One host.
    pub fn host(&self, id: HostId) -> Option<&Host> {
        self.hosts.get(&id)
    }

    /// A host by name.
    pub fn host_named(&self, name: &str) -> Option<&Host> {
        self.hosts.values().find(|h| h.name == name)
    }

    /// All tenants.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// One tenant.
    pub fn tenant(&self, id: TenantId) -> Option<&Tenant> {
        self.tenants.get(&id)
    }

    /// A tenant by name.
    pub fn tenant_named(&self, name: &str) -> Option<&Tenant> {
        self.idx
            .tenant_names
            .get(name)
            .and_then(|id| self.tenants.get(id))
    }

    /// Reservations not yet over (ended ones leave the state; the log keeps their history).
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// One reservation.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// All modifications.
    pub fn modifications(&self) -> impl Iterator<Item = &Modification> {
        self.modifications.values()
    }

    /// One modification.
    pub fn modification(&self, id: ModificationId) -> Option<&Modification> {
        self.modifications.get(&id)
    }

    /// All bound workloads.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.values()
    }

    /// One workload.
    pub fn workload(&self, id: WorkloadId) -> Option<&Workload> {
        self.workloads.get(&id)
    }

    /// A tenant's workload by name.
    pub fn workload_named(&self, tenant: TenantId, name: &str) -> Option<&Workload> {
        self.workloads
            .values()
            .find(|w| w.tenant == tenant && w.name == name)
    }

    fn host_reservations(&self, host: HostId) -> impl Iterator<Item = &Reservation> {
        indexed(&self.idx.reservations, &host, &self.reservations)
    }

    fn host_requests(&self, host: HostId) -> impl Iterator<Item = &LeaseRequest> {
        indexed(&self.idx.requests, &host, &self.requests)
    }

    fn host_leases(&self, host: HostId) -> impl Iterator<Item = &Lease> {
        indexed(&self.idx.leases, &host, &self.leases)
    }

    fn reservation_workloads(&self, r: ReservationId) -> impl Iterator<Item = &Workload> {
        indexed(&self.idx.workloads, &r, &self.workloads)
    }

    /// The reservations on a host (indexed).
    pub fn reservations_on(&self, host: HostId) -> impl Iterator<Item = &Reservation> {
        self.host_reservations(host)
    }

    /// The leases on a host (indexed).
    pub fn leases_on(&self, host: HostId) -> impl Iterator<Item = &Lease> {
        self.host_leases(host)
    }

    /// The workloads running inside a reservation.
    pub fn workloads_of(&self, r: ReservationId) -> impl Iterator<Item = &Workload> {
        self.reservation_workloads(r)
    }

    /// Shards a lender has lent out now (leases in their reclaim notice included: their
    /// borrower still holds them).
    pub fn lent_now(&self, lender: Lender) -> Result<ShardVector, LedgerError> {
        self.lent_by(lender, self.now)
    }

    /// Shards a workload borrows now.
    pub fn borrowed(&self, w: WorkloadId) -> Result<ShardVector, LedgerError> {
        Ok(ShardVector::checked_sum(
            self.by_borrower
                .get(&w)
                .into_iter()
                .flatten()
                .filter_map(|id| self.leases.get(id))
                .map(|l| &l.vector),
        )?)
    }

    /// One pending lease request.
    pub fn request(&self, id: RequestId) -> Option<&LeaseRequest> {
        self.requests.get(&id)
    }

    /// Active leases.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// A lease by id.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Pending lease requests.
    pub fn requests(&self) -> impl Iterator<Item = &LeaseRequest> {
        self.requests.values()
    }

    /// The vector a reservation holds at `t`, with its modifications applied.
    pub fn reserved_at(&self, r: &Reservation, t: Timestamp) -> Result<ShardVector, LedgerError> {
        let mods = self.modifications_of(r)?;
        compose(r, &mods, &compose::touched(&mods), t)
    }

    /// What a reservation holds from `from` on: at `from` and at each later time its vector
    /// may change (its window's and its modifications' ends), in order; each value holds until
    /// the next. The modifications are looked up once, so this costs far less than calling
    /// [`Ledger::reserved_at`] at each of those times.
    pub fn holdings(
        &self,
        r: &Reservation,
        from: Timestamp,
    ) -> Result<Vec<(Timestamp, ShardVector)>, LedgerError> {
        self.holdings_until(r, from, Timestamp::MAX)
    }

    /// [`Ledger::holdings`] for the times before `to` only (`from` always): what metering a
    /// stretch needs, without composing the reservation at every later change.
    pub fn holdings_until(
        &self,
        r: &Reservation,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(Timestamp, ShardVector)>, LedgerError> {
        let mods = self.modifications_of(r)?;
        let mut at = vec![from, r.window.start(), r.window.end()];
        for m in mods.iter() {
            at.extend([m.window.start(), m.window.end()]);
        }
        at.retain(|&t| t == from || (t > from && t < to));
        at.sort_unstable();
        at.dedup();
        let touched = compose::touched(&mods);
        at.into_iter()
            .map(|t| Ok((t, compose(r, &mods, &touched, t)?)))
            .collect()
    }

    /// What `r` holds from `from` on once `m`, its newest modification, is added, given what
    /// it held from `from` on before (`old`, from [`Ledger::holdings`]): modifications compose
    /// in creation order, so the newest applies last, on top of the rest, and only inside its
    /// window. Costs a pass over `old`, not a composition at every point.
    pub(super) fn holdings_after(
        old: &[(Timestamp, ShardVector)],
        m: &Modification,
        from: Timestamp,
    ) -> Result<Vec<(Timestamp, ShardVector)>, LedgerError> {
        let mut at: Vec<Timestamp> = old.iter().map(|p| p.0).collect();
        at.extend([m.window.start(), m.window.end()]);
        at.retain(|&t| t >= from);
        at.sort_unstable();
        at.dedup();
        let mut out = Vec::with_capacity(at.len());
        let mut i = 0;
        for t in at {
            while i + 1 < old.len() && old[i + 1].0 <= t {
                i += 1;
            }
            let mut v = old.get(i).map_or(ShardVector::ZERO, |p| p.1);
            if m.in_force(t) {
                for kc in &m.changes {
                    v = v.with(kc.kind, kc.change.apply(kc.kind, v.get(kc.kind))?);
                }
            }
            out.push((t, v));
        }
        Ok(out)
    }

    fn modifications_of<'a>(
        &'a self,
        r: &Reservation,
    ) -> Result<std::borrow::Cow<'a, [std::sync::Arc<Modification>]>, LedgerError> {
        let listed: &[std::sync::Arc<Modification>] = self.idx.mods.get(&r.id).map_or(&[], |m| m);
        let same = listed.len() == r.modifications.len()
            && listed
                .iter()
                .zip(&r.modifications)
                .all(|(m, id)| m.id == *id);
        if same {
            return Ok(std::borrow::Cow::Borrowed(listed));
        }
        // `r` is not the reservation this state holds (e.g. a copy from before a change).
        r.modifications
            .iter()
            .map(|id| {
                self.modifications
                    .get(id)
                    .map(|m| std::sync::Arc::new(m.clone()))
                    .ok_or(LedgerError::UnknownModification(*id))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(std::borrow::Cow::Owned)
    }

    /// Brings `id`'s entry of the index of modifications by reservation in step with the
    /// reservation's list (after a modification is added, `changed` or dropped). The entries
    /// of the others are kept as they are: the list is in creation order, as is the one it
    /// replaces, so one pass pairs them up.
    pub(super) fn refresh_mods(&mut self, id: ReservationId, changed: Option<ModificationId>) {
        let before = self
            .idx
            .mods
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Vec::new().into());
        let mut kept = before.iter().peekable();
        let list: Vec<std::sync::Arc<Modification>> = self
            .reservations
            .get(&id)
            .map(|r| {
                r.modifications
                    .iter()
                    .filter_map(|m| {
                        while kept.next_if(|k| k.id < *m).is_some() {}
                        match kept.next_if(|k| k.id == *m) {
                            Some(k) if changed != Some(*m) => Some(std::sync::Arc::clone(k)),
                            _ => self.modifications.get(m).cloned().map(std::sync::Arc::new),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        if list.is_empty() {
            self.idx.mods.remove(&id);
        } else {
            self.idx.mods.insert(id, list.into());
        }
    }

    /// A workload's allocation: its share plus what it borrows.
    pub fn allocation(&self, w: WorkloadId) -> Result<ShardVector, LedgerError> {
        let wl = self
            .workloads
            .get(&w)
            .ok_or(LedgerError::UnknownWorkload(w))?;
        let borrowed = ShardVector::checked_sum(
            self.by_borrower
                .get(&w)
                .into_iter()
                .flatten()
                .filter_map(|id| self.leases.get(id))
                .map(|l| &l.vector),
        )?;
        Ok(wl.share.checked_add(&borrowed)?)
    }

    /// Where every shard of a host is now.
    pub fn balance(&self, host: HostId) -> Result<HostBalance, LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        let mut b = HostBalance {
            host: Some(host),
            capacity: h.capacity,
            ..HostBalance::default()
        };
        for r in self.host_reservations(host) {
            let reserved = self.reserved_at(r, self.now)?;
            let allocated = self.allocated(r.id)?;
            let lent = self.lent_by(Lender::Reservation(r.id), self.now)?;
            b.reserved = b.reserved.checked_add(&reserved)?;
            b.allocated = b.allocated.checked_add(&allocated)?;
            b.lent_by_reservations = b.lent_by_reservations.checked_add(&lent)?;
            b.offered = b.offered.checked_add(&r.offered)?;
            let idle = reserved.checked_sub(&allocated.checked_add(&lent)?)?;
            b.idle = b.idle.checked_add(&idle)?;
        }
        b.unreserved = h.capacity.checked_sub(&b.reserved)?;
        b.lent_by_provider = self.lent_by(Lender::Provider(host), self.now)?;
        b.free = b.unreserved.checked_sub(&b.lent_by_provider)?;
        Ok(b)
    }

    pub(super) fn lent_by(&self, lender: Lender, t: Timestamp) -> Result<ShardVector, LedgerError> {
        Ok(ShardVector::checked_sum(
            self.lent_leases(lender)
                .filter(|l| l.window.contains(t))
                .map(|l| &l.vector),
        )?)
    }

    /// The leases `lender` has out (indexed).
    pub(super) fn lent_leases(&self, lender: Lender) -> impl Iterator<Item = &Lease> {
        indexed(&self.by_lender, &lender, &self.leases)
    }

    pub(super) fn allocated(&self, r: ReservationId) -> Result<ShardVector, LedgerError> {
        Ok(ShardVector::checked_sum(
            self.reservation_workloads(r).map(|w| &w.share),
        )?)
    }
}
