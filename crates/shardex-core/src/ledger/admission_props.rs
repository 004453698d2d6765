//! The sweep admission against the rule as written (every change point, every reservation),
//! on random hosts built directly, past the ledger's own refusals, so both overfull and
//! below-lent states are reached.

use proptest::prelude::*;

use super::*;
use crate::domain::{Change, KindChange};
use crate::testkit::{World, t};

impl Ledger {
    /// The rule point by point, as admission was first written: the reference.
    fn admit_by_point(&self, host: HostId) -> Result<(), LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        for t in self.change_points(host) {
            let mut committed = self.lent_by(Lender::Provider(host), t)?;
            for r in self.host_reservations(host) {
                let reserved = self.reserved_at(r, t)?;
                let lent = self.lent_by(Lender::Reservation(r.id), t)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| reserved.get(k) < lent.get(k))
                {
                    return Err(LedgerError::BelowLent {
                        reservation: r.id,
                        kind,
                        at: t,
                        reserved: reserved.get(kind),
                        lent: lent.get(kind),
                    });
                }
                committed = committed.checked_add(&reserved)?;
            }
            if let Some(kind) = ResourceKind::ALL
                .into_iter()
                .find(|&k| committed.get(k) > h.capacity.get(k))
            {
                return Err(LedgerError::HostCapacityExceeded {
                    host,
                    kind,
                    at: t,
                    needed: committed.get(kind),
                    capacity: h.capacity.get(kind),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Res {
    base: [u64; 4],
    start: i64,
    len: i64,
    cancelled: bool,
}

#[derive(Debug, Clone)]
struct Mod {
    res: usize,
    kind: usize,
    change: Change,
    start: i64,
    len: i64,
    cancelled: bool,
}

#[derive(Debug, Clone)]
struct Loan {
    lender: Option<usize>,
    vector: [u64; 4],
    start: i64,
    len: i64,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0u64..12).prop_map(Change::Set),
        (-6i64..6).prop_map(Change::Delta),
        (-5000i32..5000).prop_map(Change::PercentBp),
    ]
}

fn world(
    capacity: [u64; 4],
    now: i64,
    res: &[Res],
    mods: &[Mod],
    loans: &[Loan],
) -> (Ledger, HostId) {
    let w = World::new(sv(capacity), &["a"]);
    let (mut l, host, tenant) = (w.ledger, w.host, w.tenants[0]);
    let mut ids = Vec::new();
    for (i, r) in res.iter().enumerate() {
        let id = ReservationId(1000 + i as u64);
        index_add(&mut l.idx.reservations, host, id);
        l.reservations.insert(
            id,
            Reservation {
                id,
                tenant,
                host,
                base: sv(r.base),
                window: Window::new(t(r.start), t(r.start + r.len)).unwrap(),
                tier: Tier::Standard,
                modifications: Vec::new(),
                offered: ShardVector::ZERO,
                floor: PriceVector::default(),
                lending: Lending::default(),
                cancelled: r.cancelled,
            },
        );
        ids.push(id);
    }
    for (i, m) in mods.iter().enumerate() {
        let Some(&rid) = ids.get(m.res % ids.len().max(1)) else {
            continue;
        };
        let id = ModificationId(1000 + i as u64);
        l.modifications.insert(
            id,
            Modification {
                id,
                reservation: rid,
                changes: vec![KindChange {
                    kind: ResourceKind::ALL[m.kind % 4],
                    change: m.change,
                }],
                window: Window::new(t(m.start), t(m.start + m.len)).unwrap(),
                cancelled: m.cancelled,
            },
        );
        l.reservations.get_mut(&rid).unwrap().modifications.push(id);
        l.refresh_mods(rid, None);
    }
    for (i, loan) in loans.iter().enumerate() {
        let lender = match loan.lender {
            Some(r) if !ids.is_empty() => Lender::Reservation(ids[r % ids.len()]),
            _ => Lender::Provider(host),
        };
        let id = LeaseId(1000 + i as u64);
        l.leases.insert(
            id,
            Lease {
                id,
                lender,
                borrower: WorkloadId(1),
                tier: Tier::Standard,
                host,
                vector: sv(loan.vector),
                price: PriceVector::default(),
                window: Window::new(t(loan.start), t(loan.start + loan.len)).unwrap(),
                reclaim: None,
                request: RequestId(1),
            },
        );
        l.by_lender.entry(lender).or_default().insert(id);
        index_add(&mut l.idx.leases, host, id);
    }
    l.now = t(now);
    (l, host)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_sweep_decides_as_the_rule_point_by_point(
        capacity in prop::array::uniform4(0u64..40),
        now in 0i64..6,
        res in prop::collection::vec(
            (prop::array::uniform4(0u64..12), 0i64..10, 1i64..10, prop::bool::weighted(0.1))
                .prop_map(|(base, start, len, cancelled)| Res { base, start, len, cancelled }),
            0..6),
        mods in prop::collection::vec(
            (0usize..6, 0usize..4, change(), 0i64..12, 1i64..8, prop::bool::weighted(0.1))
                .prop_map(|(res, kind, change, start, len, cancelled)| Mod { res, kind, change, start, len, cancelled }),
            0..10),
        loans in prop::collection::vec(
            (prop::option::of(0usize..6), prop::array::uniform4(0u64..8), 0i64..10, 1i64..10)
                .prop_map(|(lender, vector, start, len)| Loan { lender, vector, start, len }),
            0..5),
    ) {
        let (l, host) = world(capacity, now, &res, &mods, &loans);
        prop_assert_eq!(l.admit(host), l.admit_by_point(host));
    }
}

#[test]
fn both_find_a_host_too_small_and_a_reservation_below_what_it_lent() {
    let res = [Res {
        base: [10, 0, 0, 0],
        start: 0,
        len: 5,
        cancelled: false,
    }];
    let (l, host) = world([8, 0, 0, 0], 0, &res, &[], &[]);
    assert!(matches!(
        l.admit(host),
        Err(LedgerError::HostCapacityExceeded { needed: 10, .. })
    ));
    assert_eq!(l.admit(host), l.admit_by_point(host));
    let loans = [Loan {
        lender: Some(0),
        vector: [4, 0, 0, 0],
        start: 0,
        len: 5,
    }];
    let mods = [Mod {
        res: 0,
        kind: 0,
        change: Change::Set(2),
        start: 2,
        len: 2,
        cancelled: false,
    }];
    let (l, host) = world([20, 0, 0, 0], 0, &res, &mods, &loans);
    assert!(matches!(
        l.admit(host),
        Err(LedgerError::BelowLent {
            reserved: 2,
            lent: 4,
            ..
        })
    ));
    assert_eq!(l.admit(host), l.admit_by_point(host));
}

fn sv(v: [u64; 4]) -> ShardVector {
    ShardVector::new(v[0], v[1], v[2], v[3])
}

#[test]
fn two_reservations_below_lent_at_once_name_the_first() {
    let r = Res {
        base: [2, 0, 0, 0],
        start: 0,
        len: 5,
        cancelled: false,
    };
    let loans = [
        Loan {
            lender: Some(1),
            vector: [4, 0, 0, 0],
            start: 0,
            len: 5,
        },
        Loan {
            lender: Some(0),
            vector: [3, 0, 0, 0],
            start: 0,
            len: 5,
        },
    ];
    let (l, host) = world([20, 0, 0, 0], 0, &[r.clone(), r], &[], &loans);
    assert!(matches!(
        l.admit(host),
        Err(LedgerError::BelowLent {
            reservation: ReservationId(1000),
            lent: 3,
            ..
        })
    ));
    assert_eq!(l.admit(host), l.admit_by_point(host));
}
