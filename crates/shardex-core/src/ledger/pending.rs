//! Pending modifications: a change asked for from now that its host has no room for, and that
//! deferral (taking back the provider's own leases) cannot make fit either, is not refused
//! when the whole host could hold it. It is kept, under the id it will have, for at most
//! `pending_for` (and never past its reservation's end), while the engine frees room for it:
//! it raises a shard request for what the host misses and moves other workloads off the host
//! (or provisions one for them). The engine starts it, through
//! [`Action::StartPendingModification`], as soon as it fits; from then on it is an ordinary
//! modification lasting the duration asked (cut at the reservation's end). Its owner may
//! withdraw it (`CancelModification`); cancelling its reservation drops it. A pending
//! modification holds no shards and costs nothing until it starts.

use super::*;

impl Ledger {
    /// Applies [`Action::QueueModification`].
    pub(super) fn queue_modification(
        &mut self,
        a: &action::ModifyReservation,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        if let Some(start) = a.start
            && start != self.now
        {
            return Err(LedgerError::BadChanges(
                "only a change from now can wait for room; a scheduled one either fits or is refused"
                    .into(),
            ));
        }
        // Everything the modification checks, on a copy: it fits now (then it simply starts),
        // or it is refused for lack of room only (then it waits), or it is refused.
        let mut trial = self.clone();
        let mut trial_ev = Vec::new();
        let refusal = match trial.modify_reservation(a, &mut trial_ev) {
            Ok(()) => {
                *self = trial;
                ev.append(&mut trial_ev);
                return Ok(());
            }
            Err(e @ LedgerError::HostCapacityExceeded { .. }) => e,
            Err(e) => return Err(e),
        };
        let r = self.own_reservation(a.tenant, a.reservation)?.clone();
        // Room can be freed only up to the whole host: what the reservation would hold then
        // must fit the host's capacity on its own.
        let host = self
            .hosts
            .get(&r.host)
            .ok_or(LedgerError::UnknownHost(r.host))?;
        let wanted = self.reserved_with(&r, &a.changes)?;
        if ResourceKind::ALL
            .iter()
            .any(|&k| wanted.get(k) > host.capacity.get(k))
        {
            return Err(refusal);
        }
        let gives_up_at = self
            .now
            .checked_add(self.params.pending_for)?
            .min(r.window.end());
        let id = ModificationId(next(&mut self.counters.modification));
        let p = PendingModification {
            id,
            tenant: a.tenant,
            reservation: r.id,
            changes: a.changes.clone(),
            duration: a.duration,
            since: self.now,
            gives_up_at,
        };
        ev.push(Event::ModificationQueued {
            modification: id,
            reservation: r.id,
            changes: p.changes.clone(),
            duration: p.duration,
            gives_up_at,
        });
        self.pending.insert(id, p);
        Ok(())
    }

    /// Applies [`Action::StartPendingModification`]: refused, changing nothing, while the
    /// host still has no room.
    pub(super) fn start_pending_modification(
        &mut self,
        a: &action::StartPendingModification,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let p = self
            .pending
            .get(&a.modification)
            .cloned()
            .ok_or(LedgerError::UnknownModification(a.modification))?;
        let end = self
            .reservations
            .get(&p.reservation)
            .map_or(self.now, |r| r.window.end());
        let m = action::ModifyReservation {
            tenant: p.tenant,
            reservation: p.reservation,
            changes: p.changes.clone(),
            start: None,
            duration: p.duration.min(end.since(self.now)),
        };
        self.pending.remove(&p.id);
        self.modify_reservation_as(&m, Some(p.id), ev)?;
        ev.push(Event::PendingModificationEnded {
            modification: p.id,
            how: PendingEnd::Started,
        });
        Ok(())
    }

    /// Its owner withdraws a pending modification (through `CancelModification`).
    pub(super) fn withdraw_pending(
        &mut self,
        tenant: TenantId,
        id: ModificationId,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let Some(p) = self.pending.get(&id) else {
            return Err(LedgerError::UnknownModification(id));
        };
        self.own_reservation(tenant, p.reservation)?;
        self.end_pending(PendingEnd::Cancelled, ev, |p| p.id == id);
        Ok(())
    }

    /// Drops the pending modifications of a reservation that ends now.
    pub(super) fn drop_pending_of(&mut self, r: ReservationId, ev: &mut Vec<Event>) {
        self.end_pending(PendingEnd::ReservationEnded, ev, |p| p.reservation == r);
    }

    /// Gives up the pending modifications whose time is over at `self.now`.
    pub(super) fn give_up_pending(&mut self, ev: &mut Vec<Event>) {
        let now = self.now;
        self.end_pending(PendingEnd::GaveUp, ev, |p| p.gives_up_at <= now);
    }

    /// Ends the pending modifications `which` picks, each with an event saying `how`.
    fn end_pending(
        &mut self,
        how: PendingEnd,
        ev: &mut Vec<Event>,
        which: impl Fn(&PendingModification) -> bool,
    ) {
        let ids: Vec<ModificationId> = self
            .pending
            .values()
            .filter(|p| which(p))
            .map(|p| p.id)
            .collect();
        for modification in ids {
            self.pending.remove(&modification);
            ev.push(Event::PendingModificationEnded { modification, how });
        }
    }

    /// The first time after `after` at which a pending modification gives up.
    pub(super) fn next_give_up_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.pending
            .values()
            .map(|p| p.gives_up_at)
            .filter(|&t| t > after)
            .min()
    }

    /// What `r` would hold now with `changes` applied on top of what it holds now.
    pub fn reserved_with(
        &self,
        r: &Reservation,
        changes: &[KindChange],
    ) -> Result<ShardVector, LedgerError> {
        let mut v = self.reserved_at(r, self.now)?;
        for kc in changes {
            v = v.with(kc.kind, kc.change.apply(kc.kind, v.get(kc.kind))?);
        }
        Ok(v)
    }

    /// Whose modification `id` is, pending or in the ledger; `None` once it is gone.
    pub fn modification_owner(&self, id: ModificationId) -> Option<TenantId> {
        self.pending.get(&id).map(|p| p.tenant).or_else(|| {
            self.modifications
                .get(&id)
                .and_then(|m| self.reservations.get(&m.reservation))
                .map(|r| r.tenant)
        })
    }

    /// Pending modifications, oldest first.
    pub fn pending_modifications(&self) -> impl Iterator<Item = &PendingModification> {
        self.pending.values()
    }

    /// One pending modification.
    pub fn pending_modification(&self, id: ModificationId) -> Option<&PendingModification> {
        self.pending.get(&id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::Change;
    use crate::testkit::{World, t};

    fn cpu(n: u64) -> ShardVector {
        ShardVector::of(ResourceKind::Cpu, n)
    }

    fn plus(reservation: ReservationId, tenant: TenantId, n: i64) -> action::ModifyReservation {
        action::ModifyReservation {
            tenant,
            reservation,
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change: Change::Delta(n),
            }],
            start: None,
            duration: Span::from_secs(600),
        }
    }

    /// Host of 10 cpu: `a` holds 6, `b` holds 4, until 10,000 s.
    fn full() -> (World, ReservationId, ReservationId) {
        let mut w = World::new(cpu(10), &["a", "b"]);
        let (a, b) = (w.tenant(0), w.tenant(1));
        let ra = w.reserve(a, cpu(6), 0, 10_000);
        let rb = w.reserve(b, cpu(4), 0, 10_000);
        (w, ra, rb)
    }

    fn queued(events: &[Event]) -> ModificationId {
        events
            .iter()
            .find_map(|e| match e {
                Event::ModificationQueued { modification, .. } => Some(*modification),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn a_change_with_no_room_waits_holding_nothing_then_starts_under_its_id_for_its_duration() {
        let (mut w, ra, rb) = full();
        let a = w.tenant(0);
        let ask = plus(ra, a, 3);
        // As a modification it is refused; queued, it waits and changes no holding.
        assert!(matches!(
            w.ledger
                .applied(&Action::ModifyReservation(ask.clone()), t(100)),
            Err(LedgerError::HostCapacityExceeded { .. })
        ));
        let ev = w
            .ledger
            .apply(&Action::QueueModification(ask), t(100))
            .unwrap();
        let id = queued(&ev);
        assert_eq!(ev.len(), 1, "{ev:?}");
        let p = w.ledger.pending_modification(id).unwrap().clone();
        assert_eq!(p.gives_up_at, t(100 + 3600));
        assert_eq!(w.ledger.balance(w.host).unwrap().reserved, cpu(10));
        assert!(w.ledger.check().is_empty(), "{:?}", w.ledger.check());
        // Starting it while the host has no room is refused and changes nothing.
        let start =
            Action::StartPendingModification(action::StartPendingModification { modification: id });
        let before = w.ledger.clone();
        assert!(matches!(
            w.ledger.apply(&start, t(200)),
            Err(LedgerError::HostCapacityExceeded { .. })
        ));
        assert_eq!(w.ledger, before);
        // `b` leaves: room. It starts under its id, for 600 s from now.
        let cancel = action::CancelReservation {
            tenant: w.tenant(1),
            reservation: rb,
        };
        w.ledger
            .apply(&Action::CancelReservation(cancel), t(300))
            .unwrap();
        let ev = w.ledger.apply(&start, t(400)).unwrap();
        assert!(ev.contains(&Event::PendingModificationEnded {
            modification: id,
            how: PendingEnd::Started
        }));
        let m = w.ledger.modification(id).unwrap();
        assert_eq!(m.window, crate::Window::new(t(400), t(1000)).unwrap());
        assert_eq!(w.ledger.pending_modification(id), None);
        let r = w.ledger.reservation(ra).unwrap();
        assert_eq!(w.ledger.reserved_at(r, t(400)).unwrap(), cpu(9));
        assert!(w.ledger.check().is_empty(), "{:?}", w.ledger.check());
        // A later modification gets a new id.
        let ev = w
            .ledger
            .apply(&Action::ModifyReservation(plus(ra, a, 1)), t(500))
            .unwrap();
        assert!(ev.iter().any(|e| matches!(e,
            Event::ModificationCreated { modification, .. } if *modification > id)));
    }

    #[test]
    fn a_change_that_fits_starts_at_once_and_one_the_whole_host_could_not_hold_is_refused() {
        let (mut w, ra, _) = full();
        let a = w.tenant(0);
        // -2 fits: it is simply a modification.
        let ev = w
            .ledger
            .apply(&Action::QueueModification(plus(ra, a, -2)), t(10))
            .unwrap();
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::ModificationCreated { .. }))
        );
        assert_eq!(w.ledger.pending_modifications().count(), 0);
        // 4 + 7 = 11 > 10: not even an empty host would hold it.
        let before = w.ledger.clone();
        assert!(matches!(
            w.ledger
                .apply(&Action::QueueModification(plus(ra, a, 7)), t(20)),
            Err(LedgerError::HostCapacityExceeded { .. })
        ));
        assert_eq!(w.ledger, before);
        // A foreign reservation is refused like a missing one would be.
        assert!(
            w.ledger
                .apply(&Action::QueueModification(plus(ra, w.tenant(1), 1)), t(20))
                .is_err()
        );
        // A scheduled change does not wait.
        let later = action::ModifyReservation {
            start: Some(t(50)),
            ..plus(ra, a, 5)
        };
        assert!(matches!(
            w.ledger.apply(&Action::QueueModification(later), t(20)),
            Err(LedgerError::BadChanges(_))
        ));
    }

    #[test]
    fn a_pending_change_gives_up_on_time_is_withdrawn_by_its_owner_only_and_goes_with_its_reservation()
     {
        let (mut w, ra, _) = full();
        let (a, b) = (w.tenant(0), w.tenant(1));
        let params = LedgerParams {
            pending_for: Span::from_secs(60),
            ..LedgerParams::default()
        };
        w.ledger
            .apply(&Action::Configure(action::Configure { params }), t(0))
            .unwrap();
        let id = queued(
            &w.ledger
                .apply(&Action::QueueModification(plus(ra, a, 2)), t(100))
                .unwrap(),
        );
        // The next change the ledger wakes for is its giving up.
        assert_eq!(w.ledger.next_change(), Some(t(160)));
        let ev = w.ledger.apply(&Action::Expire, t(170)).unwrap();
        assert_eq!(
            ev,
            vec![Event::PendingModificationEnded {
                modification: id,
                how: PendingEnd::GaveUp
            }]
        );
        assert!(w.ledger.check().is_empty());
        // Withdrawn: not by another tenant, by its owner.
        let id = queued(
            &w.ledger
                .apply(&Action::QueueModification(plus(ra, a, 2)), t(200))
                .unwrap(),
        );
        let by = |tenant| {
            Action::CancelModification(action::CancelModification {
                tenant,
                modification: id,
            })
        };
        assert!(w.ledger.apply(&by(b), t(210)).is_err());
        let ev = w.ledger.apply(&by(a), t(210)).unwrap();
        assert!(ev.contains(&Event::PendingModificationEnded {
            modification: id,
            how: PendingEnd::Cancelled
        }));
        // Cancelling the reservation drops it.
        let id = queued(
            &w.ledger
                .apply(&Action::QueueModification(plus(ra, a, 2)), t(300))
                .unwrap(),
        );
        let cancel = action::CancelReservation {
            tenant: a,
            reservation: ra,
        };
        let ev = w
            .ledger
            .apply(&Action::CancelReservation(cancel), t(310))
            .unwrap();
        assert!(ev.contains(&Event::PendingModificationEnded {
            modification: id,
            how: PendingEnd::ReservationEnded
        }));
        assert_eq!(w.ledger.pending_modifications().count(), 0);
        assert!(w.ledger.check().is_empty());
    }

    #[test]
    fn a_pending_change_never_waits_past_its_reservation() {
        let mut w = World::new(cpu(10), &["a", "b"]);
        let (a, b) = (w.tenant(0), w.tenant(1));
        let ra = w.reserve(a, cpu(6), 0, 1_000);
        w.reserve(b, cpu(4), 0, 10_000);
        let ask = action::ModifyReservation {
            duration: Span::from_secs(100),
            ..plus(ra, a, 2)
        };
        let id = queued(
            &w.ledger
                .apply(&Action::QueueModification(ask), t(900))
                .unwrap(),
        );
        assert_eq!(
            w.ledger.pending_modification(id).unwrap().gives_up_at,
            t(1_000)
        );
        let ev = w.ledger.apply(&Action::Expire, t(1_000)).unwrap();
        assert!(ev.contains(&Event::PendingModificationEnded {
            modification: id,
            how: PendingEnd::GaveUp
        }));
        assert!(w.ledger.check().is_empty(), "{:?}", w.ledger.check());
    }
}
