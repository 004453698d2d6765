//! Dynamic prices of the shard pool, per (host, kind).
//!
//! The pool's utilisation is `u = (leased + waiting) / (leased + offered)`: shards lent out
//! plus shards requests are still waiting for, over everything lent or on offer. The target
//! price follows a utilisation curve over the list price (the same shape as the interest-rate
//! curves of lending pools): from `min_factor` at `u = 0` rising linearly to 1 at the `kink`,
//! then steeply to `max_factor` at `u = 1` and beyond. The price in force moves only a fraction
//! `smoothing` of the way to the target per update, so it does not oscillate tick to tick, and
//! it never goes under the cheapest floor price lenders ask. Every price is kept in a bounded
//! history.

pub mod book;
pub mod pricing;

use std::collections::{BTreeMap, HashMap, VecDeque};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::action;
use crate::domain::{HostId, PriceVector, ReservationId, WorkloadId};
use crate::ledger::{Action, Ledger};
use crate::rdv::Rdv;
use crate::shard::{ResourceKind, ShardSizes, ShardVector};
use crate::time::Timestamp;

/// Parameters of the price curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceCurve {
    /// Price factor of an idle pool.
    pub min_factor: Decimal,
    /// Utilisation where the price reaches the list price and starts to climb steeply.
    pub kink: Decimal,
    /// Price factor of a fully used (or oversubscribed) pool.
    pub max_factor: Decimal,
    /// Share of the way to the target price moved per update.
    pub smoothing: Decimal,
    /// Price points kept per (host, kind).
    pub history: usize,
}

impl Default for PriceCurve {
    /// Idle pools at half the list price, list price at 80 % utilisation, triple when full;
    /// a quarter of the way per update; a day of one-minute points.
    fn default() -> Self {
        Self {
            min_factor: Decimal::new(5, 1),
            kink: Decimal::new(8, 1),
            max_factor: Decimal::new(3, 0),
            smoothing: Decimal::new(25, 2),
            history: 1440,
        }
    }
}

impl PriceCurve {
    /// The curve's factor at utilisation `u`.
    pub fn factor(&self, u: Decimal) -> Decimal {
        let u = u.max(Decimal::ZERO);
        if u <= self.kink {
            if self.kink.is_zero() {
                return Decimal::ONE;
            }
            self.min_factor + (Decimal::ONE - self.min_factor) * u / self.kink
        } else {
            let room = Decimal::ONE - self.kink;
            if room <= Decimal::ZERO {
                return self.max_factor;
            }
            let x = ((u - self.kink) / room).min(Decimal::ONE);
            Decimal::ONE + (self.max_factor - Decimal::ONE) * x
        }
    }
}

/// One price in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePoint {
    /// When it was set.
    pub at: Timestamp,
    /// Price per shard-hour in force from then.
    pub price: Decimal,
    /// The utilisation it was set at.
    pub utilisation: Decimal,
}

/// What the pool looks like when a price is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Shards lent out.
    pub leased: u64,
    /// Shards on offer, not lent.
    pub offered: u64,
    /// Shards requests are waiting for.
    pub waiting: u64,
    /// The cheapest floor price among the offers (zero when none).
    pub floor: Decimal,
}

impl PoolState {
    /// `(leased + waiting) / (leased + offered)`; 1 + waiting when nothing is on offer at all.
    pub fn utilisation(&self) -> Decimal {
        let capacity = self.leased + self.offered;
        let used = Decimal::from(self.leased) + Decimal::from(self.waiting);
        if capacity == 0 {
            return if self.waiting > 0 {
                Decimal::TWO
            } else {
                Decimal::ZERO
            };
        }
        used / Decimal::from(capacity)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Series {
    price: Option<Decimal>,
    history: VecDeque<PricePoint>,
}

/// Prices per (host, kind), with their history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBook {
    curve: PriceCurve,
    series: BTreeMap<(HostId, ResourceKind), Series>,
}

impl PriceBook {
    /// An empty book.
    pub fn new(curve: PriceCurve) -> Self {
        Self {
            curve,
            series: BTreeMap::new(),
        }
    }

    /// Moves the price of (host, kind) toward the curve's target for `pool`; returns it.
    pub fn update(
        &mut self,
        host: HostId,
        kind: ResourceKind,
        list: Decimal,
        pool: PoolState,
        at: Timestamp,
    ) -> Decimal {
        let u = pool.utilisation();
        let target = list * self.curve.factor(u);
        let s = self.series.entry((host, kind)).or_default();
        let current = s.price.unwrap_or(target);
        let moved = current + (target - current) * self.curve.smoothing;
        let price = moved.max(pool.floor).round_dp(9);
        s.price = Some(price);
        s.history.push_back(PricePoint {
            at,
            price,
            utilisation: u.round_dp(4),
        });
        while s.history.len() > self.curve.history.max(1) {
            s.history.pop_front();
        }
        price
    }

    /// The price in force for (host, kind), if one was ever set.
    pub fn price(&self, host: HostId, kind: ResourceKind) -> Option<Decimal> {
        self.series.get(&(host, kind)).and_then(|s| s.price)
    }

    /// The price history of (host, kind), oldest first.
    pub fn history(&self, host: HostId, kind: ResourceKind) -> impl Iterator<Item = &PricePoint> {
        self.series
            .get(&(host, kind))
            .into_iter()
            .flat_map(|s| s.history.iter())
    }
}

/// What the pool of one host holds now, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// On offer and not lent: reservations' offers plus the provider's free capacity.
    pub offered: ShardVector,
    /// Lent out.
    pub leased: ShardVector,
    /// Still wanted by requests whose delivery time has come.
    pub waiting: ShardVector,
    /// The lowest floor price of any lender there.
    pub floor: PriceVector,
}

impl Pool {
    /// The pool of one kind, as the price curve sees it.
    pub fn state(&self, kind: ResourceKind) -> PoolState {
        PoolState {
            leased: self.leased.get(kind),
            offered: self.offered.get(kind),
            waiting: self.waiting.get(kind),
            floor: self.floor.get(kind),
        }
    }
}

/// The pool of `host` in `ledger` now (empty for an unknown host).
pub fn pool_of(ledger: &Ledger, host: HostId) -> Pool {
    let Ok(b) = ledger.balance(host) else {
        return Pool::default();
    };
    let now = ledger.now();
    let sum = |it: &mut dyn Iterator<Item = ShardVector>| {
        it.fold(ShardVector::ZERO, |a, v| a.saturating_add(&v))
    };
    let waiting = sum(&mut ledger
        .requests()
        .filter(|r| r.host == host && r.start <= now)
        .map(|r| r.remaining()));
    Pool {
        offered: b.offered.saturating_add(&b.free),
        leased: b.lent_by_reservations.saturating_add(&b.lent_by_provider),
        waiting,
        floor: ledger.lowest_floor(host),
    }
}

/// Moves every host's market price one step toward the curve's target over the list prices
/// and returns the actions that set the new prices in the ledger (none where nothing moved).
pub fn reprice(
    book: &mut PriceBook,
    ledger: &Ledger,
    list: &PriceVector,
    at: Timestamp,
) -> Vec<Action> {
    let mut out = Vec::new();
    for h in ledger.hosts() {
        let pool = pool_of(ledger, h.id);
        let mut prices = PriceVector::default();
        for kind in ResourceKind::ALL {
            prices.set(
                kind,
                book.update(h.id, kind, list.get(kind), pool.state(kind), at),
            );
        }
        if ledger.market_price(h.id) != Some(prices) {
            out.push(Action::SetMarketPrice(action::SetMarketPrice {
                host: h.id,
                prices,
            }));
        }
    }
    out
}

/// The automatic offers that would change something: for every reservation in force that
/// has not opted out, its idle shards minus what its own workloads are predicted to need over
/// the reclaim notice, Σ over them of (upper quantile of the RDV − what the workload holds)⁺,
/// within its cap. A reservation with a workload that has no RDV yet is left as it is:
/// lending must never starve the lender. The engine sends these every tick.
pub fn auto_offers<'a>(
    ledger: &Ledger,
    rdv: impl Fn(WorkloadId) -> Option<&'a Rdv>,
    sizes: &ShardSizes,
) -> Vec<Action> {
    let notice = ledger.params().reclaim_notice;
    // Per reservation: the summed need, or `None` once a workload has no forecast.
    let mut needs: HashMap<ReservationId, Option<ShardVector>> = HashMap::new();
    for w in ledger.workloads() {
        let need = rdv(w.id).and_then(|r| {
            let holds = ledger.allocation(w.id).ok()?;
            Some(r.upper_shards(sizes, notice).excess_over(&holds))
        });
        let e = needs
            .entry(w.reservation)
            .or_insert(Some(ShardVector::ZERO));
        *e = e.zip(need).map(|(a, b)| a.saturating_add(&b));
    }
    let mut out = Vec::new();
    for r in ledger.reservations() {
        let need = match needs.get(&r.id) {
            Some(Some(n)) => *n,
            Some(None) => continue,
            None => ShardVector::ZERO,
        };
        if let Ok((target, offered)) = ledger.auto_offer_target(r.id, &need)
            && target != offered
        {
            out.push(Action::AutoOffer(action::AutoOffer {
                reservation: r.id,
                need,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn the_curve_at_its_hand_worked_points() {
        let c = PriceCurve::default();
        assert_eq!(c.factor(d("0")), d("0.5"));
        assert_eq!(c.factor(d("0.4")), d("0.75"));
        assert_eq!(c.factor(d("0.8")), d("1"));
        assert_eq!(c.factor(d("0.9")), d("2"));
        assert_eq!(c.factor(d("1")), d("3"));
        assert_eq!(c.factor(d("1.7")), d("3"), "oversubscription is capped");
    }

    #[test]
    fn utilisation_counts_waiting_demand() {
        let p = PoolState {
            leased: 60,
            offered: 40,
            waiting: 20,
            floor: d("0"),
        };
        assert_eq!(p.utilisation(), d("0.8"));
        let empty = PoolState {
            leased: 0,
            offered: 0,
            waiting: 5,
            floor: d("0"),
        };
        assert_eq!(empty.utilisation(), d("2"));
    }

    #[test]
    fn prices_are_smoothed_and_never_under_the_floor() {
        let mut book = PriceBook::new(PriceCurve::default());
        let h = HostId(1);
        let t = |s| Timestamp::from_secs(s).unwrap();
        let list = d("0.0004");
        let busy = PoolState {
            leased: 100,
            offered: 0,
            waiting: 0,
            floor: d("0"),
        };
        let idle = PoolState {
            leased: 0,
            offered: 100,
            waiting: 0,
            floor: d("0"),
        };
        // The first price is the target itself: full pool, 3 × list.
        assert_eq!(
            book.update(h, ResourceKind::Cpu, list, busy, t(0)),
            d("0.0012")
        );
        // The pool empties: the target is 0.0002, the price moves a quarter of the way.
        assert_eq!(
            book.update(h, ResourceKind::Cpu, list, idle, t(60)),
            d("0.00095")
        );
        // Alternating busy and idle moves the price far less than the targets swing.
        let mut prices = Vec::new();
        for i in 0..20 {
            let pool = if i % 2 == 0 { busy } else { idle };
            prices.push(book.update(h, ResourceKind::Cpu, list, pool, t(120 + i * 60)));
        }
        let swing = prices[19] - prices[18];
        assert!(
            swing.abs() < d("0.0005"),
            "price swings {swing} against a target swing of 0.001"
        );
        // A lender floor above the curve holds the price up.
        let floored = PoolState {
            floor: d("0.002"),
            ..idle
        };
        assert_eq!(
            book.update(h, ResourceKind::Cpu, list, floored, t(9999)),
            d("0.002")
        );
        assert_eq!(book.history(h, ResourceKind::Cpu).count(), 23);
        assert!(book.price(h, ResourceKind::Memory).is_none());
    }

    #[test]
    fn repricing_follows_the_pool_of_each_host_and_feeds_the_ledger() {
        use crate::domain::{TenantId, Tier};
        use crate::time::Window;
        let t = |s| Timestamp::from_secs(s).unwrap();
        let mut l = Ledger::new();
        for name in ["busy", "idle"] {
            l.apply(
                &Action::RegisterHost(action::RegisterHost {
                    name: name.into(),
                    capacity: ShardVector::new(100, 0, 0, 0),
                }),
                t(0),
            )
            .unwrap();
        }
        l.apply(
            &Action::CreateTenant(action::CreateTenant { name: "a".into() }),
            t(0),
        )
        .unwrap();
        // All of host 1 is reserved and nothing is offered: its pool is empty while a request
        // waits. Host 2 is all free.
        l.apply(
            &Action::CreateReservation(action::CreateReservation {
                tenant: TenantId(1),
                host: HostId(1),
                vector: ShardVector::new(100, 0, 0, 0),
                window: Window::new(t(0), t(3600)).unwrap(),
                tier: Tier::Standard,
            }),
            t(0),
        )
        .unwrap();
        l.apply(
            &Action::BindWorkload(action::BindWorkload {
                tenant: TenantId(1),
                reservation: crate::domain::ReservationId(1),
                name: "w".into(),
            }),
            t(0),
        )
        .unwrap();
        l.apply(
            &Action::RequestLease(action::RequestLease {
                tenant: TenantId(1),
                workload: crate::domain::WorkloadId(1),
                vector: ShardVector::new(10, 0, 0, 0),
                until: t(600),
                max_price: PriceVector::uniform(d("1")),
                all_or_nothing: false,
                start: None,
            }),
            t(0),
        )
        .unwrap();
        let busy = pool_of(&l, HostId(1));
        assert_eq!(busy.waiting.get(ResourceKind::Cpu), 10);
        assert_eq!(busy.offered.get(ResourceKind::Cpu), 0);
        assert_eq!(pool_of(&l, HostId(2)).offered.get(ResourceKind::Cpu), 100);
        let mut book = PriceBook::new(PriceCurve::default());
        let list = PriceVector::uniform(d("0.0004"));
        let actions = reprice(&mut book, &l, &list, t(60));
        assert_eq!(actions.len(), 2);
        for a in &actions {
            l.apply(a, t(60)).unwrap();
        }
        // Waiting demand with nothing on offer: the top of the curve; an idle pool: the bottom.
        assert_eq!(l.market_price(HostId(1)).unwrap().cpu, d("0.0012"));
        assert_eq!(l.market_price(HostId(2)).unwrap().cpu, d("0.0002"));
        // Nothing moved: nothing to apply.
        let again = reprice(&mut book, &l, &list, t(120));
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn automatic_offers_hold_back_the_owners_predicted_need() {
        use crate::domain::{ReservationId, TenantId, Tier};
        use crate::rdv::{Horizon, KindForecast, Quantiles};
        use crate::time::Window;
        let t = |s| Timestamp::from_secs(s).unwrap();
        let mut l = Ledger::new();
        let ok = |l: &mut Ledger, a: Action| {
            l.apply(&a, t(0)).unwrap();
        };
        ok(
            &mut l,
            Action::RegisterHost(action::RegisterHost {
                name: "h".into(),
                capacity: ShardVector::new(100, 0, 0, 0),
            }),
        );
        ok(
            &mut l,
            Action::CreateTenant(action::CreateTenant { name: "a".into() }),
        );
        for name in ["w1", "w2"] {
            ok(
                &mut l,
                Action::CreateReservation(action::CreateReservation {
                    tenant: TenantId(1),
                    host: HostId(1),
                    vector: ShardVector::new(8, 0, 0, 0),
                    window: Window::new(t(0), t(3600)).unwrap(),
                    tier: Tier::Standard,
                }),
            );
            let r = l.reservations().last().unwrap().id;
            ok(
                &mut l,
                Action::BindWorkload(action::BindWorkload {
                    tenant: TenantId(1),
                    reservation: r,
                    name: name.into(),
                }),
            );
        }
        let w1 = l.workload_named(TenantId(1), "w1").unwrap().id;
        ok(
            &mut l,
            Action::Allocate(action::Allocate {
                tenant: TenantId(1),
                workload: w1,
                share: ShardVector::new(2, 0, 0, 0),
            }),
        );
        // w1 is predicted to need up to 50 millicores (5 shards of 10) in the next 30 s; the
        // later step's 80 is past the notice and doesn't count.
        let rdv = Rdv {
            made_at: t(0),
            horizon: Horizon {
                step: crate::time::Span::from_secs(30),
                steps: 2,
            },
            kinds: vec![KindForecast {
                kind: ResourceKind::Cpu,
                steps: vec![
                    Quantiles {
                        p50: 20,
                        p90: 40,
                        p95: 45,
                        p99: 50,
                    },
                    Quantiles::point(80),
                ],
            }],
        };
        let rdvs = BTreeMap::from([(w1, rdv)]);
        let actions = auto_offers(&l, |w| rdvs.get(&w), &ShardSizes::default());
        // Only w1's reservation: w2 has no forecast yet, so its reservation is left alone.
        assert_eq!(
            actions,
            vec![Action::AutoOffer(action::AutoOffer {
                reservation: ReservationId(1),
                need: ShardVector::new(3, 0, 0, 0),
            })]
        );
        ok(&mut l, actions[0].clone());
        // 8 reserved − 2 held − 3 predicted = 3 offered.
        assert_eq!(
            l.reservation(ReservationId(1)).unwrap().offered,
            ShardVector::new(3, 0, 0, 0)
        );
    }
}
