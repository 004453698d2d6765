//! A deterministic stream of plausible actions, shared by the store tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use shardex_core::action;
use shardex_core::{
    Action, Change, KindChange, Ledger, PriceVector, ResourceKind, ShardVector, Span, Tier,
    Timestamp, Window,
};

/// Generates actions against whatever the ledger holds now.
pub struct Script {
    rng: StdRng,
}

impl Script {
    pub fn new(seed: u64) -> Self {
        Script {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn vector(&mut self, max: u64) -> ShardVector {
        ShardVector::from_fn(|_| self.rng.random_range(0..=max))
    }

    fn scaled(&mut self, v: ShardVector) -> ShardVector {
        let pct = self.rng.random_range(0..=100u64);
        ShardVector::from_fn(|k| v.get(k) * pct / 100)
    }

    /// The next action and the time to apply it at (never before the ledger's time).
    pub fn next(&mut self, l: &Ledger) -> (Action, Timestamp) {
        let base = l.now().max(Timestamp::from_secs(1_700_000_000).unwrap());
        let now = base
            .checked_add(Span::from_millis(self.rng.random_range(0..3_000)))
            .unwrap();
        if l.hosts().count() == 0 {
            let capacity = ShardVector::new(1000, 1000, 200, 200);
            return (
                Action::RegisterHost(action::RegisterHost {
                    name: "h1".into(),
                    capacity,
                }),
                now,
            );
        }
        let tenants: Vec<_> = l.tenants().map(|t| t.id).collect();
        if tenants.len() < 3 {
            return (
                Action::CreateTenant(action::CreateTenant {
                    name: format!("t{}", tenants.len()),
                }),
                now,
            );
        }
        let host = l.hosts().next().unwrap().id;
        let live: Vec<_> = l
            .reservations()
            .filter(|r| !r.cancelled && r.window.contains(now))
            .map(|r| (r.id, r.tenant))
            .collect();
        let workloads: Vec<_> = l
            .workloads()
            .map(|w| (w.id, w.tenant, w.reservation))
            .collect();
        let leases: Vec<_> = l.leases().map(|x| (x.id, x.borrower)).collect();
        let choice = self.rng.random_range(0..100);
        let pick = |rng: &mut StdRng, n: usize| rng.random_range(0..n);
        match choice {
            0..15 => {
                let tenant = tenants[pick(&mut self.rng, tenants.len())];
                let secs = self.rng.random_range(30..900);
                let vector = self.vector(120);
                let tier = Tier::ALL[pick(&mut self.rng, 4)];
                let window = Window::starting(now, Span::from_secs(secs)).unwrap();
                (
                    Action::CreateReservation(action::CreateReservation {
                        tenant,
                        host,
                        vector,
                        window,
                        tier,
                    }),
                    now,
                )
            }
            15..30 if !live.is_empty() => {
                let (reservation, tenant) = live[pick(&mut self.rng, live.len())];
                let name = format!("w{}", self.rng.random::<u32>());
                (
                    Action::BindWorkload(action::BindWorkload {
                        tenant,
                        reservation,
                        name,
                    }),
                    now,
                )
            }
            30..50 if !workloads.is_empty() => {
                let (workload, tenant, r) = workloads[pick(&mut self.rng, workloads.len())];
                let held = l.reserved_at(l.reservation(r).unwrap(), now).unwrap();
                let share = self.scaled(held);
                (
                    Action::Allocate(action::Allocate {
                        tenant,
                        workload,
                        share,
                    }),
                    now,
                )
            }
            50..60 if !live.is_empty() => {
                let (reservation, tenant) = live[pick(&mut self.rng, live.len())];
                let idle = l.idle(reservation).unwrap();
                let vector = self.scaled(idle);
                let floor = PriceVector::uniform(Decimal::new(self.rng.random_range(0..5), 3));
                (
                    Action::Offer(action::Offer {
                        tenant,
                        reservation,
                        vector,
                        floor,
                    }),
                    now,
                )
            }
            60..75 if !workloads.is_empty() => {
                let (workload, tenant, _) = workloads[pick(&mut self.rng, workloads.len())];
                let vector = self.vector(40);
                let until = now
                    .checked_add(Span::from_secs(self.rng.random_range(10..300)))
                    .unwrap();
                let max_price = PriceVector::uniform(Decimal::new(self.rng.random_range(0..6), 3));
                let all_or_nothing = self.rng.random_bool(0.3);
                (
                    Action::RequestLease(action::RequestLease {
                        tenant,
                        workload,
                        vector,
                        until,
                        max_price,
                        all_or_nothing,
                        start: None,
                    }),
                    now,
                )
            }
            75..82 if !live.is_empty() => {
                let (reservation, tenant) = live[pick(&mut self.rng, live.len())];
                let kind = ResourceKind::ALL[pick(&mut self.rng, 4)];
                let change = Change::PercentBp(self.rng.random_range(-5000..5000));
                let duration = Span::from_secs(self.rng.random_range(5..120));
                let changes = vec![KindChange { kind, change }];
                let m = action::ModifyReservation {
                    tenant,
                    reservation,
                    changes,
                    start: None,
                    duration,
                };
                // Some wait for room when the host has none (pending), and start later.
                if self.rng.random_bool(0.3) {
                    (Action::QueueModification(m), now)
                } else {
                    (Action::ModifyReservation(m), now)
                }
            }
            82..85 if l.pending_modifications().count() > 0 => {
                let modification = l.pending_modifications().next().unwrap().id;
                (
                    Action::StartPendingModification(action::StartPendingModification {
                        modification,
                    }),
                    now,
                )
            }
            82..88 if !leases.is_empty() => {
                let (lease, borrower) = leases[pick(&mut self.rng, leases.len())];
                let tenant = l.workload(borrower).unwrap().tenant;
                (Action::Release(action::Release { tenant, lease }), now)
            }
            88..92 if !workloads.is_empty() => {
                let (workload, tenant, _) = workloads[pick(&mut self.rng, workloads.len())];
                (
                    Action::UnbindWorkload(action::UnbindWorkload { tenant, workload }),
                    now,
                )
            }
            _ => {
                let later = now
                    .checked_add(Span::from_secs(self.rng.random_range(1..60)))
                    .unwrap();
                (Action::Expire, later)
            }
        }
    }
}
