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
