//! Catching up with time: every change point between the ledger's last time and the new one
//! processed in order (reservations and modifications starting and ending, leases and requests
//! ending), and pruning what is over.

use super::*;

impl Ledger {
    /// Moves the clock to `now` in place when nothing falls due up to then (no event, no
    /// other change, nothing to log: the next action at `now` would do the same); returns
    /// false, changing nothing, when something is due or `now` is in the past.
    pub fn advance_idle(&mut self, now: Timestamp) -> bool {
        if now < self.now || self.next_change_after(self.now).is_some_and(|t| t <= now) {
            return false;
        }
        self.now = now;
        true
    }

    /// Drops reservations and modifications that are over: the log keeps their history, and
    /// keeping them here would make every later action slower.
    pub(super) fn prune(&mut self) {
        // What is over is found in the index of ends (`dues.rs`), not by a scan.
        let mut stale: BTreeSet<ReservationId> = BTreeSet::new();
        for end in self.take_over() {
            match end {
                dues::End::Modification(id) => {
                    if let Some(m) = self.modifications.remove(&id) {
                        stale.insert(m.reservation);
                    }
                }
                dues::End::Reservation(id) => {
                    if let Some(r) = self.reservations.remove(&id) {
                        index_remove(&mut self.idx.reservations, &r.host, &id);
                        self.idx.workloads.remove(&id);
                        self.idx.mods.remove(&id);
                    }
                }
            }
        }
        let now = self.now;
        // Written to (a copy of its path, for a persistent map) only where there is a full
        // block of the past to fold: most actions fold nothing.
        let hosts: Vec<HostId> = self
            .idx
            .committed
            .iter()
            .filter(|(_, c)| c.past_to_fold(now))
            .map(|(h, _)| *h)
            .collect();
        for host in hosts {
            self.committed_mut(host).fold(now);
        }
        // Only the reservations that listed an ended modification change (a write to a
        // persistent map copies the path it touches, so untouched ones stay shared).
        for id in stale {
            let mods = &self.modifications;
            if let Some(r) = self.reservations.get_mut(&id) {
                r.modifications.retain(|m| mods.contains_key(m));
            }
            self.refresh_mods(id, None);
        }
    }

    // ----- time -----

    pub(super) fn advance(
        &mut self,
        now: Timestamp,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        while let Some(t) = self.next_change_after(self.now).filter(|&t| t <= now) {
            let prev = self.now;
            self.now = t;
            self.step(prev, ev)?;
        }
        self.now = now;
        Ok(())
    }

    /// The first time after `after` at which something changes by itself: a start or end of a
    /// reservation or modification not cancelled, a lease's end, a request's start or end.
    pub(super) fn next_change_after(&self, after: Timestamp) -> Option<Timestamp> {
        match (self.next_due_after(after), self.next_give_up_after(after)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes everything that happens at `self.now`, coming from `prev`.
    pub(super) fn step(&mut self, prev: Timestamp, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let now = self.now;
        // A pending modification gives up at the latest when its reservation ends: first.
        self.give_up_pending(ev);
        let due = self.dues_in(prev, now);
        for id in self.leases_due_by(now) {
            let reason = match self.leases.get(&id).and_then(|l| l.reclaim) {
                None => LeaseEnd::Expired,
                Some(ReclaimReason::Lender) => LeaseEnd::Reclaimed,
                Some(ReclaimReason::Preempted { .. }) => LeaseEnd::Preempted,
            };
            self.end_lease(id, reason, ev)?;
        }
        let expired: BTreeSet<RequestId> = due
            .iter()
            .filter_map(|d| match d {
                dues::Due::Request(q) => self.requests.get(q).filter(|q| q.until <= now),
                _ => None,
            })
            .map(|q| q.id)
            .collect();
        for id in expired {
            self.end_request(id, RequestOutcome::Expired, ev);
        }
        // Only reservations with an edge in (prev, now] can have changed.
        let ids: BTreeSet<ReservationId> = due
            .iter()
            .filter_map(|d| match d {
                dues::Due::Reservation(r) => Some(*r),
                dues::Due::Modification(m) => self.modifications.get(m).map(|m| m.reservation),
                _ => None,
            })
            .filter(|r| self.reservations.get(r).is_some_and(|r| !r.cancelled))
            .collect();
        for id in ids {
            let r = self.reservations[&id].clone();
            for m in &r.modifications {
                let m = &self.modifications[m];
                if !m.cancelled && m.window.end() == now {
                    ev.push(Event::ModificationEnded {
                        modification: m.id,
                        cancelled: false,
                    });
                }
            }
            let before = self.reserved_at(&r, prev)?;
            let after = self.reserved_at(&r, now)?;
            if before != after {
                ev.push(Event::ReservationResized {
                    reservation: id,
                    from: before,
                    to: after,
                });
                self.give_back(id, after, ev)?;
            }
            if r.window.end() == now {
                ev.push(Event::ReservationEnded {
                    reservation: id,
                    cancelled: false,
                });
                self.unbind_all(id, ev)?;
            }
        }
        let hosts: BTreeSet<HostId> = self.requests.values().map(|r| r.host).collect();
        for host in hosts {
            self.match_requests(host, ev)?;
        }
        Ok(())
    }

    /// Every time at or after now when something on `host` changes.
    pub(super) fn change_points(&self, host: HostId) -> Vec<Timestamp> {
        // Collected, then sorted once: cheaper than keeping a set ordered at every insert.
        let mut pts = vec![self.now];
        for r in self.host_reservations(host).filter(|r| !r.cancelled) {
            pts.push(r.window.start());
            pts.push(r.window.end());
            for m in r
                .modifications
                .iter()
                .filter_map(|m| self.modifications.get(m))
            {
                if !m.cancelled {
                    pts.push(m.window.start());
                    pts.push(m.window.end());
                }
            }
        }
        for l in self.host_leases(host) {
            pts.push(l.window.end());
        }
        pts.retain(|&t| t >= self.now);
        pts.sort_unstable();
        pts.dedup();
        pts
    }
}
