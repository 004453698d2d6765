//! How a reservation's modifications compose at a time: in creation order, each one in force
//! applied to what the ones before it left. A `set` overrides whatever came before it, so each
//! kind starts from its newest `set` in force and applies only the changes after it: the same
//! value as applying every modification in order, without the work before that `set`
//! (composition runs at every change point of every reservation an action touches, and the
//! API's modifications are mostly `set`s).

use std::borrow::Borrow;

use crate::domain::{Change, Modification, Reservation};
use crate::shard::{ResourceKind, ShardVector};
use crate::time::Timestamp;

use super::LedgerError;

/// Which kinds any of `mods` changes: the others are the reservation's base at every time.
pub(super) fn touched<M: Borrow<Modification>>(mods: &[M]) -> [bool; 4] {
    let mut out = [false; 4];
    for kc in mods.iter().flat_map(|m| &m.borrow().changes) {
        out[kc.kind.index()] = true;
    }
    out
}

/// What `r` holds at `t` with `mods` (its modifications, oldest first; `touched` from
/// [`touched`] of them). Fails only when an increase applied after the newest `set` overflows.
pub(super) fn compose<M: Borrow<Modification>>(
    r: &Reservation,
    mods: &[M],
    touched: &[bool; 4],
    t: Timestamp,
) -> Result<ShardVector, LedgerError> {
    if r.cancelled || !r.window.contains(t) {
        return Ok(ShardVector::ZERO);
    }
    let mut v = r.base;
    let mut after_set: Vec<Change> = Vec::new();
    for kind in ResourceKind::ALL.into_iter().filter(|k| touched[k.index()]) {
        // Newest first, down to the newest `set` in force.
        after_set.clear();
        let mut value = r.base.get(kind);
        'newest: for m in mods
            .iter()
            .map(Borrow::borrow)
            .rev()
            .filter(|m| m.in_force(t))
        {
            for kc in m.changes.iter().rev().filter(|kc| kc.kind == kind) {
                if let Change::Set(n) = kc.change {
                    value = n;
                    break 'newest;
                }
                after_set.push(kc.change);
            }
        }
        for c in after_set.iter().rev() {
            value = c.apply(kind, value)?;
        }
        v = v.with(kind, value);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_wrap)]

    use proptest::prelude::*;

    use super::*;
    use crate::domain::{KindChange, ModificationId, ReservationId, TenantId, Tier};
    use crate::time::Window;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    /// Every modification in force applied in order: the rule as written.
    fn in_order(r: &Reservation, mods: &[Modification], at: Timestamp) -> Option<ShardVector> {
        if r.cancelled || !r.window.contains(at) {
            return Some(ShardVector::ZERO);
        }
        let mut v = r.base;
        for m in mods.iter().filter(|m| m.in_force(at)) {
            for kc in &m.changes {
                v = v.with(kc.kind, kc.change.apply(kc.kind, v.get(kc.kind)).ok()?);
            }
        }
        Some(v)
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0u64..40).prop_map(Change::Set),
            (-30i64..30).prop_map(Change::Delta),
            (-9_000i32..20_000).prop_map(Change::PercentBp),
        ]
    }

    proptest! {
        #[test]
        fn composing_from_the_newest_set_is_applying_every_change_in_order(
            base in prop::collection::vec(0u64..50, 4),
            mods in prop::collection::vec(
                (prop::collection::vec((0usize..4, change()), 1..3), 0i64..20, 1i64..20, any::<bool>()),
                0..12,
            ),
            at in 0i64..40,
        ) {
            let r = Reservation {
                id: ReservationId(1),
                tenant: TenantId(1),
                host: crate::domain::HostId(1),
                base: ShardVector::new(base[0], base[1], base[2], base[3]),
                window: Window::new(t(0), t(35)).unwrap(),
                tier: Tier::Standard,
                modifications: Vec::new(),
                offered: ShardVector::ZERO,
                floor: crate::domain::PriceVector::default(),
                lending: crate::domain::Lending::default(),
                cancelled: false,
            };
            let mods: Vec<Modification> = mods
                .into_iter()
                .enumerate()
                .map(|(i, (changes, start, len, cancelled))| Modification {
                    id: ModificationId(i as u64 + 1),
                    reservation: r.id,
                    changes: changes
                        .into_iter()
                        .map(|(k, change)| KindChange { kind: ResourceKind::ALL[k], change })
                        .collect(),
                    window: Window::new(t(start), t(start + len)).unwrap(),
                    cancelled,
                })
                .collect();
            // Changes here never overflow, so the rule as written always has a value.
            let want = in_order(&r, &mods, t(at)).unwrap();
            prop_assert_eq!(compose(&r, &mods, &touched(&mods), t(at)).unwrap(), want);
        }
    }
}
