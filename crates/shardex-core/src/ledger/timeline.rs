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
        let now = self.now;
        let over = |cancelled: bool, w: &Window| cancelled || w.end() <= now;
        let ended: Vec<ModificationId> = self
            .modifications
            .iter()
            .filter(|(_, m)| over(m.cancelled, &m.window))
            .map(|(id, _)| *id)
            .collect();
        for id in &ended {
            self.modifications.remove(id);
        }
        let gone: Vec<(ReservationId, HostId)> = self
            .reservations
            .values()
            .filter(|r| over(r.cancelled, &r.window))
            .map(|r| (r.id, r.host))
            .collect();
        for (id, host) in gone {
            self.reservations.remove(&id);
            index_remove(&mut self.idx.reservations, &host, &id);
            self.idx.workloads.remove(&id);
        }
        if ended.is_empty() {
            return;
        }
        // Only the reservations that listed an ended modification change (a write to a
        // persistent map copies the path it touches, so untouched ones stay shared).
        let mods = &self.modifications;
        let stale: Vec<ReservationId> = self
            .reservations
            .values()
            .filter(|r| r.modifications.iter().any(|m| !mods.contains_key(m)))
            .map(|r| r.id)
            .collect();
        for id in stale {
            if let Some(r) = self.reservations.get_mut(&id) {
                r.modifications.retain(|m| mods.contains_key(m));
            }
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

    pub(super) fn next_change_after(&self, after: Timestamp) -> Option<Timestamp> {
        let res = self
            .reservations
            .values()
            .filter(|r| !r.cancelled)
            .flat_map(|r| {
                [r.window.start(), r.window.end()].into_iter().chain(
                    r.modifications
                        .iter()
                        .filter_map(|m| self.modifications.get(m))
                        .filter(|m| !m.cancelled)
                        .flat_map(|m| [m.window.start(), m.window.end()]),
                )
            });
        let leases = self.leases.values().map(|l| l.window.end());
        let requests = self.requests.values().flat_map(|r| [r.start, r.until]);
        res.chain(leases)
            .chain(requests)
            .filter(|&t| t > after)
            .min()
    }

    /// Processes everything that happens at `self.now`, coming from `prev`.
    pub(super) fn step(&mut self, prev: Timestamp, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let now = self.now;
        let ending: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|l| l.window.end() <= now)
            .map(|l| l.id)
            .collect();
        for id in ending {
            let reason = match self.leases.get(&id).and_then(|l| l.reclaim) {
                None => LeaseEnd::Expired,
                Some(ReclaimReason::Lender) => LeaseEnd::Reclaimed,
                Some(ReclaimReason::Preempted { .. }) => LeaseEnd::Preempted,
            };
            self.end_lease(id, reason, ev)?;
        }
        let expired: Vec<RequestId> = self
            .requests
            .values()
            .filter(|r| r.until <= now)
            .map(|r| r.id)
            .collect();
        for id in expired {
            self.end_request(id, RequestOutcome::Expired, ev);
        }
        // Only reservations with an edge in (prev, now] can have changed.
        let edge = |t: Timestamp| prev < t && t <= now;
        let ids: Vec<ReservationId> = self
            .reservations
            .values()
            .filter(|r| {
                !r.cancelled
                    && (edge(r.window.start())
                        || edge(r.window.end())
                        || r.modifications.iter().any(|m| {
                            self.modifications
                                .get(m)
                                .is_some_and(|m| edge(m.window.start()) || edge(m.window.end()))
                        }))
            })
            .map(|r| r.id)
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
