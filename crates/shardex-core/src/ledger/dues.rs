//! What falls due when: the times at which the ledger changes by itself, indexed, so that
//! finding the next one, processing it and pruning what is over cost a look-up, not a scan of
//! every reservation, modification, lease and request.
//!
//! Two derived sets, kept in step with the maps by the few places that change a window (and
//! rebuilt from scratch by `check()`, which reports any difference):
//! * `dues`: every start and end still ahead (reservations and modifications not cancelled,
//!   lease ends, request starts and ends); entries at or before the ledger's time are dropped
//!   once they have been processed.
//! * `ends`: when each reservation and modification leaves the state (its end, or the time it
//!   was cancelled).

use std::ops::Bound;

use super::*;

/// Something that changes by itself at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) enum Due {
    /// A reservation starts or ends.
    Reservation(ReservationId),
    /// A modification starts or ends.
    Modification(ModificationId),
    /// A lease ends.
    Lease(LeaseId),
    /// A lease request starts or gives up.
    Request(RequestId),
}

impl Due {
    /// Greater than every other: `(t, Due::LAST)` bounds everything at `t`.
    const LAST: Due = Due::Request(RequestId(u64::MAX));
}

/// What falls due, by time.
pub(super) type Dues = Set<(Timestamp, Due)>;
/// What leaves the state, by time.
pub(super) type Ends = Set<(Timestamp, End)>;

/// Something that leaves the state once over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) enum End {
    /// A reservation.
    Reservation(ReservationId),
    /// A modification.
    Modification(ModificationId),
}

/// What each object puts in the indexes, computed the same way when kept and when rebuilt.
impl Ledger {
    pub(super) fn reservation_dues(r: &Reservation) -> [(Timestamp, Due); 2] {
        let d = Due::Reservation(r.id);
        [(r.window.start(), d), (r.window.end(), d)]
    }

    pub(super) fn modification_dues(m: &Modification) -> [(Timestamp, Due); 2] {
        let d = Due::Modification(m.id);
        [(m.window.start(), d), (m.window.end(), d)]
    }

    pub(super) fn lease_due(l: &Lease) -> (Timestamp, Due) {
        (l.window.end(), Due::Lease(l.id))
    }

    pub(super) fn request_dues(q: &LeaseRequest) -> [(Timestamp, Due); 2] {
        let d = Due::Request(q.id);
        [(q.start, d), (q.until, d)]
    }

    /// Adds what falls due for `entries`.
    pub(super) fn due(&mut self, entries: impl IntoIterator<Item = (Timestamp, Due)>) {
        for e in entries {
            self.idx.dues.insert(e);
        }
    }

    /// Removes `entries` from what falls due.
    pub(super) fn undue(&mut self, entries: impl IntoIterator<Item = (Timestamp, Due)>) {
        for e in entries {
            self.idx.dues.remove(&e);
        }
    }

    /// Records when `what` leaves the state, replacing `was` (its previous time) if given.
    pub(super) fn ends_at(&mut self, what: End, at: Timestamp, was: Option<Timestamp>) {
        if let Some(was) = was {
            self.idx.ends.remove(&(was, what));
        }
        self.idx.ends.insert((at, what));
    }

    /// The first time after `after` at which something falls due.
    pub(super) fn next_due_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.idx
            .dues
            .range((Bound::Excluded((after, Due::LAST)), Bound::Unbounded))
            .next()
            .map(|(t, _)| *t)
    }

    /// What falls due in `(from, to]`, in time order.
    pub(super) fn dues_in(&self, from: Timestamp, to: Timestamp) -> Vec<Due> {
        self.idx
            .dues
            .range((
                Bound::Excluded((from, Due::LAST)),
                Bound::Included((to, Due::LAST)),
            ))
            .map(|(_, d)| *d)
            .collect()
    }

    /// Lease ends at or before `now`: a lease whose reclaim notice ended at the very time it
    /// was given (a notice of zero) ends at the next change, as any other.
    pub(super) fn leases_due_by(&self, now: Timestamp) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self
            .idx
            .dues
            .range(..=(now, Due::LAST))
            .filter_map(|(_, d)| match d {
                Due::Lease(l) => Some(*l),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Drops what fell due at or before now (it has been processed; a lease's end stays until
    /// the lease has ended) and returns what leaves the state by now, removing it from `ends`.
    pub(super) fn take_over(&mut self) -> Vec<End> {
        let now = self.now;
        let past: Vec<(Timestamp, Due)> = self
            .idx
            .dues
            .range(..=(now, Due::LAST))
            .filter(|(_, d)| !matches!(d, Due::Lease(_)))
            .copied()
            .collect();
        for e in &past {
            self.idx.dues.remove(e);
        }
        let mut over = Vec::new();
        while let Some(first) = self.idx.ends.get_min().copied() {
            if first.0 > now {
                break;
            }
            self.idx.ends.remove(&first);
            over.push(first.1);
        }
        over
    }

    /// Both indexes rebuilt from the maps, as they must be after an action (`check()`).
    pub(super) fn rebuilt_dues(&self) -> (Dues, Ends) {
        let now = self.now;
        let mut dues = Dues::new();
        let mut ends = Ends::new();
        for r in self.reservations.values() {
            ends.insert((
                if r.cancelled { now } else { r.window.end() },
                End::Reservation(r.id),
            ));
            if !r.cancelled {
                dues.extend(Self::reservation_dues(r));
                for m in r
                    .modifications
                    .iter()
                    .filter_map(|m| self.modifications.get(m))
                {
                    if !m.cancelled {
                        dues.extend(Self::modification_dues(m));
                    }
                }
            }
        }
        for m in self.modifications.values() {
            ends.insert((
                if m.cancelled { now } else { m.window.end() },
                End::Modification(m.id),
            ));
        }
        for q in self.requests.values() {
            dues.extend(Self::request_dues(q));
        }
        let mut dues: Dues = dues.into_iter().filter(|e| e.0 > now).collect();
        dues.extend(self.leases.values().map(Self::lease_due));
        (dues, ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_due_and_end_sort_after_every_other() {
        let all = [
            Due::Reservation(ReservationId(u64::MAX)),
            Due::Modification(ModificationId(u64::MAX)),
            Due::Lease(LeaseId(u64::MAX)),
            Due::Request(RequestId(u64::MAX - 1)),
        ];
        assert!(all.iter().all(|d| *d < Due::LAST));
    }
}
