//! Reservations changing size: the give-back order when one shrinks, and unbinding workloads.

use super::*;

impl Ledger {
    /// After an action changed a reservation's vector now, records it and gives back if it shrank.
    pub(super) fn resized(
        &mut self,
        r: ReservationId,
        before: ShardVector,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let res = self.reservations[&r].clone();
        let after = self.reserved_at(&res, self.now)?;
        if after != before {
            ev.push(Event::ReservationResized {
                reservation: r,
                from: before,
                to: after,
            });
            self.give_back(r, after, ev)?;
        }
        Ok(())
    }

    /// Makes what a reservation holds fit `reserved`, in the documented give-back order.
    pub(super) fn give_back(
        &mut self,
        r: ReservationId,
        reserved: ShardVector,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let res = self.reservations[&r].clone();
        let lent = self.lent_by(Lender::Reservation(r), self.now)?;
        if !lent.fits_in(&reserved) {
            return Err(LedgerError::Internal(format!(
                "{r} shrank to {reserved} below what it lent ({lent})"
            )));
        }
        let room = reserved.checked_sub(&lent)?;
        let allocated = self.allocated(r)?;
        // Idle unoffered shards go first, then the offer, then allocations.
        let after_alloc = room.checked_sub(&allocated.min(&room))?;
        let offered = res.offered.min(&after_alloc);
        if offered != res.offered {
            self.set_offer(r, offered, OfferReason::ReservationShrank, ev);
        }
        if allocated.fits_in(&room) {
            return Ok(());
        }
        let mut shares: BTreeMap<WorkloadId, ShardVector> = self
            .reservation_workloads(r)
            .map(|w| (w.id, w.share))
            .collect();
        for kind in ResourceKind::ALL {
            let mut over = allocated.get(kind).saturating_sub(room.get(kind));
            // One shard at a time from the current largest holder (ties: lowest id), which
            // levels the largest allocations down first.
            while over > 0 {
                let Some((&id, _)) = shares
                    .iter()
                    .filter(|(_, s)| s.get(kind) > 0)
                    .max_by_key(|(id, s)| (s.get(kind), Reverse(**id)))
                else {
                    return Err(LedgerError::Internal(format!(
                        "{r} has nothing left to give back"
                    )));
                };
                let top = shares[&id].get(kind);
                let second = shares
                    .iter()
                    .filter(|(other, _)| **other != id)
                    .map(|(_, s)| s.get(kind))
                    .max()
                    .unwrap_or(0);
                let take = (top - second).max(1).min(over);
                shares.insert(id, shares[&id].with(kind, top - take));
                over -= take;
            }
        }
        let cut = shares;
        for (id, share) in cut {
            let w = self
                .workloads
                .get_mut(&id)
                .ok_or(LedgerError::UnknownWorkload(id))?;
            if w.share != share {
                let from = w.share;
                w.share = share;
                ev.push(Event::AllocationChanged {
                    workload: id,
                    from,
                    to: share,
                    reason: AllocationReason::ReservationShrank,
                });
            }
        }
        Ok(())
    }

    pub(super) fn unbind_all(
        &mut self,
        r: ReservationId,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let ws: Vec<WorkloadId> = self.reservation_workloads(r).map(|w| w.id).collect();
        for w in ws {
            self.unbind(w, ev)?;
        }
        Ok(())
    }

    pub(super) fn unbind(&mut self, w: WorkloadId, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let reqs: Vec<RequestId> = self
            .requests
            .values()
            .filter(|r| r.workload == w)
            .map(|r| r.id)
            .collect();
        for r in reqs {
            self.end_request(r, RequestOutcome::Cancelled, ev);
        }
        let leases: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|l| l.borrower == w)
            .map(|l| l.id)
            .collect();
        for l in leases {
            self.end_lease(l, LeaseEnd::BorrowerGone, ev)?;
        }
        let wl = self
            .workloads
            .remove(&w)
            .ok_or(LedgerError::UnknownWorkload(w))?;
        index_remove(&mut self.idx.workloads, &wl.reservation, &w);
        if !wl.share.is_zero() {
            ev.push(Event::AllocationChanged {
                workload: w,
                from: wl.share,
                to: ShardVector::ZERO,
                reason: AllocationReason::Unbound,
            });
        }
        ev.push(Event::WorkloadUnbound { workload: w });
        Ok(())
    }
}

impl Ledger {
    /// Applies [`Action::CreateReservation`].
    pub(super) fn create_reservation(
        &mut self,
        a: &action::CreateReservation,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::CreateReservation {
            tenant,
            host,
            vector,
            window,
            tier,
        } = a;
        let now = self.now;
        if !self.tenants.contains_key(tenant) {
            return Err(LedgerError::UnknownTenant(*tenant));
        }
        if !self.hosts.contains_key(host) {
            return Err(LedgerError::UnknownHost(*host));
        }
        if vector.is_zero() {
            return Err(LedgerError::EmptyVector {
                what: "a reservation",
            });
        }
        if window.start() < now {
            return Err(LedgerError::StartsInPast {
                what: "the reservation",
                start: window.start(),
                now,
            });
        }
        let id = ReservationId(next(&mut self.counters.reservation));
        index_add(&mut self.idx.reservations, *host, id);
        let r = Reservation {
            id,
            tenant: *tenant,
            host: *host,
            base: *vector,
            window: *window,
            tier: *tier,
            modifications: Vec::new(),
            offered: ShardVector::ZERO,
            floor: PriceVector::default(),
            lending: Lending::default(),
            cancelled: false,
        };
        self.due(Self::reservation_dues(&r));
        self.ends_at(dues::End::Reservation(id), window.end(), None);
        self.reservations.insert(id, r);
        let new = self.recommit(id, &[])?;
        self.admit_change(*host, Some((id, &new)))?;
        ev.push(Event::ReservationCreated {
            reservation: id,
            tenant: *tenant,
            host: *host,
            vector: *vector,
            window: *window,
            tier: *tier,
        });
        Ok(())
    }

    /// Applies [`Action::ModifyReservation`].
    pub(super) fn modify_reservation(
        &mut self,
        a: &action::ModifyReservation,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        self.modify_reservation_as(a, None, ev)
    }

    /// [`Ledger::modify_reservation`] under `id` when given (a pending modification keeps the
    /// id it was given when it was queued), else under the next one.
    pub(super) fn modify_reservation_as(
        &mut self,
        a: &action::ModifyReservation,
        id: Option<ModificationId>,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::ModifyReservation {
            tenant,
            reservation,
            changes,
            start,
            duration,
        } = a;
        let now = self.now;
        let r = self.own_reservation(*tenant, *reservation)?.clone();
        if r.cancelled || r.window.end() <= now {
            return Err(LedgerError::ReservationEnded(r.id));
        }
        let start = start.unwrap_or(now);
        if start < now {
            return Err(LedgerError::StartsInPast {
                what: "the modification",
                start,
                now,
            });
        }
        let window = Window::starting(start, *duration)?;
        if !r.window.covers(&window) {
            return Err(LedgerError::ModificationOutsideReservation {
                reservation: r.id,
                window,
                reserved: r.window,
            });
        }
        if changes.is_empty() {
            return Err(LedgerError::BadChanges("none given".into()));
        }
        let kinds: BTreeSet<ResourceKind> = changes.iter().map(|c| c.kind).collect();
        if kinds.len() != changes.len() {
            return Err(LedgerError::BadChanges("a kind appears twice".into()));
        }
        let id = id.unwrap_or_else(|| ModificationId(next(&mut self.counters.modification)));
        let m = Modification {
            id,
            reservation: r.id,
            changes: changes.clone(),
            window,
            cancelled: false,
        };
        self.due(Self::modification_dues(&m));
        self.ends_at(dues::End::Modification(id), window.end(), None);
        self.modifications.insert(id, m);
        let old = self.holdings(&r, now)?;
        let before = old.first().map_or(ShardVector::ZERO, |p| p.1);
        let new = Self::holdings_after(&old, &self.modifications[&id], now)?;
        if let Some(res) = self.reservations.get_mut(&r.id) {
            res.modifications.push(id);
        }
        self.refresh_mods(r.id, None);
        debug_assert_eq!(
            Ok(&new),
            self.holdings(&self.reservations[&r.id], now).as_ref(),
            "holdings with the newest modification"
        );
        self.committed_mut(r.host).replace_steps(&old, &new);
        self.admit_change(r.host, Some((r.id, &new)))?;
        ev.push(Event::ModificationCreated {
            modification: id,
            reservation: r.id,
            changes: changes.clone(),
            window,
        });
        self.resized(r.id, before, ev)?;
        Ok(())
    }

    /// Applies [`Action::CancelModification`].
    pub(super) fn cancel_modification(
        &mut self,
        a: &action::CancelModification,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::CancelModification {
            tenant,
            modification,
        } = a;
        let now = self.now;
        if self.pending.contains_key(modification) {
            return self.withdraw_pending(*tenant, *modification, ev);
        }
        let m = self
            .modifications
            .get(modification)
            .ok_or(LedgerError::UnknownModification(*modification))?
            .clone();
        let r = self.own_reservation(*tenant, m.reservation)?.clone();
        if m.cancelled || m.window.end() <= now {
            return Err(LedgerError::ModificationEnded(m.id));
        }
        let before = self.reserved_at(&r, now)?;
        let old = self.holdings(&r, now)?;
        if let Some(m) = self.modifications.get_mut(modification) {
            m.cancelled = true;
        }
        self.refresh_mods(r.id, Some(m.id));
        let new = self.recommit(r.id, &old)?;
        self.undue(Self::modification_dues(&m));
        self.ends_at(dues::End::Modification(m.id), now, Some(m.window.end()));
        self.admit_change(r.host, Some((r.id, &new)))?;
        ev.push(Event::ModificationEnded {
            modification: m.id,
            cancelled: true,
        });
        self.resized(r.id, before, ev)?;
        Ok(())
    }

    /// Applies [`Action::CancelReservation`].
    pub(super) fn cancel_reservation(
        &mut self,
        a: &action::CancelReservation,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::CancelReservation {
            tenant,
            reservation,
        } = a;
        let now = self.now;
        let r = self.own_reservation(*tenant, *reservation)?.clone();
        if r.cancelled || r.window.end() <= now {
            return Err(LedgerError::ReservationEnded(r.id));
        }
        let lent: Vec<&Lease> = self
            .leases
            .values()
            .filter(|l| l.lender == Lender::Reservation(r.id))
            .collect();
        if !lent.is_empty() {
            return Err(LedgerError::LenderHasLeases {
                reservation: r.id,
                leases: lent.len(),
            });
        }
        let before = self.reserved_at(&r, now)?;
        let old = self.holdings(&r, now)?;
        self.unbind_all(r.id, ev)?;
        if let Some(res) = self.reservations.get_mut(&r.id) {
            res.cancelled = true;
            res.offered = ShardVector::ZERO;
        }
        self.recommit(r.id, &old)?;
        self.drop_pending_of(r.id, ev);
        self.undue(Self::reservation_dues(&r));
        let mods: Vec<[(Timestamp, dues::Due); 2]> = r
            .modifications
            .iter()
            .filter_map(|m| self.modifications.get(m))
            .filter(|m| !m.cancelled)
            .map(Self::modification_dues)
            .collect();
        self.undue(mods.into_iter().flatten());
        self.ends_at(dues::End::Reservation(r.id), now, Some(r.window.end()));
        if !before.is_zero() {
            ev.push(Event::ReservationResized {
                reservation: r.id,
                from: before,
                to: ShardVector::ZERO,
            });
        }
        ev.push(Event::ReservationEnded {
            reservation: r.id,
            cancelled: true,
        });
        Ok(())
    }

    /// Applies [`Action::BindWorkload`].
    pub(super) fn bind_workload(
        &mut self,
        a: &action::BindWorkload,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::BindWorkload {
            tenant,
            reservation,
            name,
        } = a;
        let now = self.now;
        check_workload_name(name)?;
        let r = self.own_reservation(*tenant, *reservation)?.clone();
        if r.cancelled || r.window.end() <= now {
            return Err(LedgerError::ReservationEnded(r.id));
        }
        // One cgroup, process or VM is one workload, of one tenant.
        if let Some(w) = self
            .workloads
            .values()
            .find(|w| w.host == r.host && w.tenant != *tenant && same_thing(&w.name, name))
        {
            return Err(LedgerError::WorkloadTaken {
                name: name.clone(),
                host: r.host,
                workload: w.id,
                tenant: w.tenant,
            });
        }
        if self
            .workloads
            .values()
            .any(|w| w.tenant == *tenant && w.name == *name)
        {
            return Err(LedgerError::DuplicateName {
                what: "workload",
                name: name.clone(),
            });
        }
        let id = WorkloadId(next(&mut self.counters.workload));
        index_add(&mut self.idx.workloads, r.id, id);
        self.workloads.insert(
            id,
            Workload {
                id,
                tenant: *tenant,
                name: name.clone(),
                host: r.host,
                reservation: r.id,
                share: ShardVector::ZERO,
            },
        );
        ev.push(Event::WorkloadBound {
            workload: id,
            tenant: *tenant,
            name: name.clone(),
            reservation: r.id,
            host: r.host,
        });
        Ok(())
    }

    /// Applies [`Action::UnbindWorkload`].
    pub(super) fn unbind_workload(
        &mut self,
        a: &action::UnbindWorkload,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::UnbindWorkload { tenant, workload } = a;
        self.own_workload(*tenant, *workload)?;
        self.unbind(*workload, ev)?;
        Ok(())
    }

    /// Applies [`Action::Allocate`].
    pub(super) fn allocate(
        &mut self,
        a: &action::Allocate,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::Allocate {
            tenant,
            workload,
            share,
        } = a;
        let now = self.now;
        let w = self.own_workload(*tenant, *workload)?.clone();
        let r = self.reservations[&w.reservation].clone();
        if r.cancelled || !r.window.contains(now) {
            return Err(LedgerError::ReservationNotInForce {
                reservation: r.id,
                now,
            });
        }
        let reserved = self.reserved_at(&r, now)?;
        let others = self.allocated(r.id)?.checked_sub(&w.share)?;
        let lent = self.lent_by(Lender::Reservation(r.id), now)?;
        let room = reserved.checked_sub(&others.checked_add(&lent)?)?;
        if let Some(kind) = ResourceKind::ALL
            .into_iter()
            .find(|&k| share.get(k) > room.get(k))
        {
            return Err(LedgerError::InsufficientIdle {
                reservation: r.id,
                kind,
                idle: room.get(kind).saturating_sub(w.share.get(kind)),
                needed: share.get(kind).saturating_sub(w.share.get(kind)),
            });
        }
        // Own workloads come before the pool: the offer shrinks if unoffered idle runs out.
        let unoffered = room.checked_sub(share)?;
        let offered = r.offered.min(&unoffered);
        if let Some(w) = self.workloads.get_mut(workload) {
            w.share = *share;
        }
        ev.push(Event::AllocationChanged {
            workload: *workload,
            from: w.share,
            to: *share,
            reason: AllocationReason::Allocated,
        });
        if offered != r.offered {
            self.set_offer(r.id, offered, OfferReason::Allocated, ev);
        }
        Ok(())
    }
}
