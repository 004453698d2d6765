//! Deferral: a reservation or a modification that does not fit now, but will once shards
//! the provider lent out of its unreserved capacity come back, is not refused: those leases
//! are reclaimed with the usual notice and it starts when the notice is over, for the
//! duration asked (a modification within its reservation's window). Only the provider's own
//! leases are taken back (a tenant's lending is its own choice), the fewest that make it fit,
//! the largest first.

use crate::action::{self, CreateReservation, ModifyReservation};
use crate::domain::{HostId, LeaseId, Lender};
use crate::ledger::{Action, Ledger};
use crate::time::{Timestamp, Window};

/// Leases tried at most before giving up (each try applies the plan to a copy).
const MAX_TRIES: usize = 32;

/// Something deferred: what to commit, and when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// The provider's reclaims, then the action starting at `start`, as one batch (or the
    /// action alone when leases end by `start` anyway).
    pub action: Action,
    /// When it starts: now plus the reclaim notice.
    pub start: Timestamp,
    /// The provider's leases taken back.
    pub reclaimed: Vec<LeaseId>,
}

/// How to defer `m`, which the ledger refuses at `now` (at or after its time), or `None`
/// when taking back every provider lease on its host would not make it fit either.
pub fn defer_modification(
    ledger: &Ledger,
    m: &ModifyReservation,
    now: Timestamp,
) -> Option<Deferred> {
    let r = ledger.reservation(m.reservation)?;
    let end_of_reservation = r.window.end();
    defer(ledger, r.host, now, |start| {
        // For the duration asked, within the reservation (as the change it defers was).
        let end = start.checked_add(m.duration).ok()?.min(end_of_reservation);
        (end > start).then(|| {
            Action::ModifyReservation(ModifyReservation {
                start: Some(start),
                duration: end.since(start),
                ..m.clone()
            })
        })
    })
}

/// How to defer `c`, a reservation asked for from now that the ledger refuses at `now`: the
/// same length, from when the provider's leases are back; `None` as above.
pub fn defer_reservation(
    ledger: &Ledger,
    c: &CreateReservation,
    now: Timestamp,
) -> Option<Deferred> {
    let length = c.window.end().since(c.window.start());
    defer(ledger, c.host, now, |start| {
        let window = Window::starting(start, length).ok()?;
        Some(Action::CreateReservation(CreateReservation {
            window,
            ..c.clone()
        }))
    })
}

/// The planner: `starting(start)` is the action deferred to `start`.
fn defer(
    ledger: &Ledger,
    host: HostId,
    now: Timestamp,
    starting: impl Fn(Timestamp) -> Option<Action>,
) -> Option<Deferred> {
    let start = now.checked_add(ledger.params().reclaim_notice).ok()?;
    let later = starting(start)?;
    let mut candidates: Vec<(u64, LeaseId)> = ledger
        .leases()
        .filter(|l| l.lender == Lender::Provider(host) && l.reclaim.is_none())
        .filter(|l| l.window.end() > start)
        .map(|l| (l.vector.kinds().map(|k| l.vector.get(k)).sum(), l.id))
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut reclaimed: Vec<LeaseId> = Vec::new();
    for next in std::iter::once(None).chain(candidates.into_iter().map(|(_, id)| Some(id))) {
        if let Some(id) = next {
            reclaimed.push(id);
        }
        if reclaimed.len() > MAX_TRIES {
            return None;
        }
        let action = plan(&reclaimed, &later);
        if ledger.applied(&action, now).is_ok() {
            return Some(Deferred {
                action,
                start,
                reclaimed,
            });
        }
    }
    None
}

fn plan(reclaimed: &[LeaseId], later: &Action) -> Action {
    if reclaimed.is_empty() {
        return later.clone();
    }
    let mut actions: Vec<Action> = reclaimed
        .iter()
        .map(|&lease| Action::ReclaimProvider(action::ReclaimProvider { lease }))
        .collect();
    actions.push(later.clone());
    Action::Batch(action::Batch { actions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, KindChange};
    use crate::shard::{ResourceKind, ShardVector};
    use crate::testkit::{World, t};
    use crate::{PriceVector, Span};

    #[test]
    fn a_modification_that_fits_once_the_provider_takes_back_its_lease_is_deferred() {
        let mut w = World::new(ShardVector::new(10, 10, 0, 0), &["a", "b"]);
        let (a, b) = (w.tenants[0], w.tenants[1]);
        let res = w.reserve(a, ShardVector::new(2, 1, 0, 0), 0, 10_000);
        let br = w.reserve(b, ShardVector::new(0, 1, 0, 0), 0, 10_000);
        let bind = action::BindWorkload {
            tenant: b,
            reservation: br,
            name: "w".into(),
        };
        w.ledger.apply(&Action::BindWorkload(bind), t(0)).unwrap();
        let wl = w.ledger.workloads().last().unwrap().id;
        let lease = Action::RequestLease(action::RequestLease {
            tenant: b,
            workload: wl,
            vector: ShardVector::new(6, 0, 0, 0),
            until: t(5_000),
            max_price: PriceVector::default(),
            all_or_nothing: true,
            start: None,
        });
        w.ledger.apply(&lease, t(0)).unwrap();
        assert_eq!(w.ledger.leases().count(), 1);
        let m = ModifyReservation {
            tenant: a,
            reservation: res,
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change: Change::Set(6),
            }],
            start: None,
            duration: Span::from_secs(3600),
        };
        let l = &w.ledger;
        assert!(
            l.applied(&Action::ModifyReservation(m.clone()), l.now())
                .is_err()
        );
        let d = defer_modification(l, &m, l.now()).expect("deferred");
        assert_eq!(d.reclaimed.len(), 1);
        assert_eq!(d.start, l.now().checked_add(Span::from_secs(30)).unwrap());
        let (after, _) = l.applied(&d.action, l.now()).unwrap();
        let r = after.reservation(res).unwrap();
        assert_eq!(
            after
                .reserved_at(r, d.start)
                .unwrap()
                .get(ResourceKind::Cpu),
            6
        );
        // Asking for more than the host has can't be deferred.
        let too_much = ModifyReservation {
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change: Change::Set(11),
            }],
            ..m
        };
        assert_eq!(defer_modification(l, &too_much, l.now()), None);
        // A new reservation of 5 cpu shards for an hour: deferred the same way.
        let c = CreateReservation {
            tenant: b,
            host: w.host,
            vector: ShardVector::new(5, 0, 0, 0),
            window: crate::Window::starting(l.now(), Span::from_secs(3600)).unwrap(),
            tier: crate::domain::Tier::Standard,
        };
        assert!(
            l.applied(&Action::CreateReservation(c.clone()), l.now())
                .is_err()
        );
        let d = defer_reservation(l, &c, l.now()).expect("deferred");
        let Action::Batch(b) = &d.action else {
            panic!("{:?}", d.action)
        };
        let Some(Action::CreateReservation(later)) = b.actions.last() else {
            panic!("{b:?}")
        };
        assert_eq!(later.window.start(), d.start);
        assert_eq!(
            later.window.end(),
            d.start.checked_add(Span::from_secs(3600)).unwrap()
        );
        assert!(l.applied(&d.action, l.now()).is_ok());
    }
}
