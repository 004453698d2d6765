//! The order book: offers (asks) per (host, kind), sorted by price then arrival, and the
//! matching of requests (bids) against them. The ledger matches every pending request through
//! a [`HostBook`]; the engine uses an [`OrderBook`] to plan a whole fleet's purchases quickly.
//!
//! Rules, in the order they apply:
//! * shards are local: a bid is matched only against asks on its own host;
//! * cheapest first: within a kind, asks are taken in ascending price; at equal price the
//!   earlier ask first (the ledger adds reservations before the provider, so idle reserved
//!   shards are lent before unreserved capacity);
//! * a bid takes only asks priced at or under its limit;
//! * all or nothing: such a bid gets its whole vector or nothing at all;
//! * no overtaking: once a bid stays short in a kind, later bids matched in the same pass
//!   may take only asks priced strictly above that bid's limit in that kind, so a later (so
//!   lower-tier, or equal-tier and younger) bid never takes shards an earlier one could use.
//!   Callers present bids by tier, highest first, then oldest first.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use rust_decimal::Decimal;

use crate::domain::{HostId, Lender, PriceVector};
use crate::shard::{ResourceKind, ShardVector};

/// One lender's shards of one kind on offer at a price per shard-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Who lends.
    pub lender: Lender,
    /// Price per shard-hour.
    pub price: Decimal,
    /// Shards left on offer.
    pub shards: u64,
}

/// What a bid asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bid {
    /// Shards wanted per kind.
    pub vector: ShardVector,
    /// Highest price per shard-hour accepted, per kind.
    pub limit: PriceVector,
    /// Take the whole vector or nothing.
    pub all_or_nothing: bool,
}

/// Shards of one kind taken from one lender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Who lends them.
    pub lender: Lender,
    /// Which kind.
    pub kind: ResourceKind,
    /// How many.
    pub shards: u64,
    /// At what price per shard-hour.
    pub price: Decimal,
}

/// The outcome of matching one bid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fill {
    /// What it got (empty when nothing was granted).
    pub takes: Vec<Take>,
    /// Shards granted per kind.
    pub got: ShardVector,
}

#[derive(Debug, Clone, Default)]
struct KindBook {
    asks: BTreeMap<(Decimal, u64), Ask>,
    by_lender: HashMap<Lender, (Decimal, u64)>,
    /// Bids matched earlier in this pass left short at this limit.
    blocked: Option<Decimal>,
}

impl KindBook {
    fn set(&mut self, seq: u64, lender: Lender, price: Decimal, shards: u64) {
        if let Some(key) = self.by_lender.remove(&lender) {
            self.asks.remove(&key);
        }
        if shards > 0 {
            self.asks.insert(
                (price, seq),
                Ask {
                    lender,
                    price,
                    shards,
                },
            );
            self.by_lender.insert(lender, (price, seq));
        }
    }

    fn eligible(&self, limit: Decimal) -> impl Iterator<Item = &Ask> {
        let from = match self.blocked {
            Some(b) => Bound::Excluded((b, u64::MAX)),
            None => Bound::Unbounded,
        };
        self.asks
            .range((from, Bound::Unbounded))
            .map(|(_, a)| a)
            .take_while(move |a| a.price <= limit)
    }

    fn take(&mut self, lender: Lender, shards: u64) {
        if let Some(&key) = self.by_lender.get(&lender)
            && let Some(a) = self.asks.get_mut(&key)
        {
            a.shards = a.shards.saturating_sub(shards);
            if a.shards == 0 {
                self.asks.remove(&key);
                self.by_lender.remove(&lender);
            }
        }
    }
}

/// The asks of one host, one book per kind.
#[derive(Debug, Clone, Default)]
pub struct HostBook {
    kinds: [KindBook; 4],
    seq: u64,
}

impl HostBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts (or replaces) a lender's ask of one kind; zero shards withdraws it.
    pub fn set_ask(&mut self, lender: Lender, kind: ResourceKind, price: Decimal, shards: u64) {
        self.seq += 1;
        let seq = self.seq;
        self.kinds[kind.index()].set(seq, lender, price, shards);
    }

    /// Puts a lender's asks of every kind in its vector at per-kind prices.
    pub fn set_asks(&mut self, lender: Lender, prices: &PriceVector, shards: &ShardVector) {
        for kind in ResourceKind::ALL {
            self.set_ask(lender, kind, prices.get(kind), shards.get(kind));
        }
    }

    /// Shards on offer of one kind, whatever the price.
    pub fn depth(&self, kind: ResourceKind) -> u64 {
        self.kinds[kind.index()]
            .asks
            .values()
            .map(|a| a.shards)
            .sum()
    }

    /// The asks of one kind, cheapest first.
    pub fn asks(&self, kind: ResourceKind) -> impl Iterator<Item = &Ask> {
        self.kinds[kind.index()].asks.values()
    }

    /// Lifts the no-overtaking blocks: a new matching pass starts.
    pub fn new_pass(&mut self) {
        for k in &mut self.kinds {
            k.blocked = None;
        }
    }

    /// Matches one bid; `cap(lender, kind)` bounds what a lender can still give it (the
    /// ledger uses it for how long the lender's cover lasts). Takes what it grants out of
    /// the book and blocks the kinds it stays short in.
    pub fn match_bid(
        &mut self,
        bid: &Bid,
        mut cap: impl FnMut(Lender, ResourceKind) -> u64,
    ) -> Fill {
        let mut fill = Fill::default();
        for kind in bid.vector.kinds() {
            let mut need = bid.vector.get(kind);
            for ask in self.kinds[kind.index()].eligible(bid.limit.get(kind)) {
                if need == 0 {
                    break;
                }
                let take = ask.shards.min(need).min(cap(ask.lender, kind));
                if take == 0 {
                    continue;
                }
                need -= take;
                fill.takes.push(Take {
                    lender: ask.lender,
                    kind,
                    shards: take,
                    price: ask.price,
                });
            }
            fill.got = fill.got.with(kind, bid.vector.get(kind) - need);
        }
        let grant = !fill.got.is_zero() && (!bid.all_or_nothing || fill.got == bid.vector);
        if !grant {
            fill = Fill::default();
        }
        for t in &fill.takes {
            self.kinds[t.kind.index()].take(t.lender, t.shards);
        }
        for kind in bid.vector.kinds() {
            if fill.got.get(kind) < bid.vector.get(kind) {
                let k = &mut self.kinds[kind.index()];
                let limit = bid.limit.get(kind);
                k.blocked = Some(k.blocked.map_or(limit, |b| b.max(limit)));
            }
        }
        fill
    }
}

/// Asks of a whole fleet, one [`HostBook`] per host.
#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    hosts: HashMap<HostId, HostBook>,
}

impl OrderBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts (or replaces) a lender's asks on a host.
    pub fn set_asks(
        &mut self,
        host: HostId,
        lender: Lender,
        prices: &PriceVector,
        shards: &ShardVector,
    ) {
        self.hosts
            .entry(host)
            .or_default()
            .set_asks(lender, prices, shards);
    }

    /// The book of one host, if it has any asks.
    pub fn host(&self, host: HostId) -> Option<&HostBook> {
        self.hosts.get(&host)
    }

    /// Lifts every no-overtaking block.
    pub fn new_pass(&mut self) {
        for b in self.hosts.values_mut() {
            b.new_pass();
        }
    }

    /// Matches a bid against the asks of its host, with no per-lender cap.
    pub fn match_bid(&mut self, host: HostId, bid: &Bid) -> Fill {
        match self.hosts.get_mut(&host) {
            Some(b) => b.match_bid(bid, |_, _| u64::MAX),
            None => Fill::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReservationId;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn cpu(n: u64) -> ShardVector {
        ShardVector::new(n, 0, 0, 0)
    }

    fn bid(n: u64, limit: &str, aon: bool) -> Bid {
        Bid {
            vector: cpu(n),
            limit: PriceVector::uniform(d(limit)),
            all_or_nothing: aon,
        }
    }

    fn r(n: u64) -> Lender {
        Lender::Reservation(ReservationId(n))
    }

    fn book() -> HostBook {
        let mut b = HostBook::new();
        b.set_ask(r(1), ResourceKind::Cpu, d("3"), 10);
        b.set_ask(r(2), ResourceKind::Cpu, d("1"), 5);
        b.set_ask(Lender::Provider(HostId(1)), ResourceKind::Cpu, d("2"), 10);
        b.set_ask(r(3), ResourceKind::Cpu, d("2"), 4);
        b
    }

    #[test]
    fn fills_cheapest_first_and_earlier_asks_first_at_equal_price() {
        let mut b = book();
        let f = b.match_bid(&bid(12, "5", false), |_, _| u64::MAX);
        let got: Vec<(Lender, u64)> = f.takes.iter().map(|t| (t.lender, t.shards)).collect();
        // 5 at 1 from r2, then 7 at price 2: the provider's ask came first, r3 after it.
        assert_eq!(got, vec![(r(2), 5), (Lender::Provider(HostId(1)), 7)]);
        assert_eq!(f.got, cpu(12));
        assert_eq!(b.depth(ResourceKind::Cpu), 29 - 12);
    }

    #[test]
    fn respects_the_limit_and_all_or_nothing() {
        let mut b = book();
        // Only 19 shards at or under 2: an all-or-nothing bid for 20 gets nothing.
        let f = b.match_bid(&bid(20, "2", true), |_, _| u64::MAX);
        assert_eq!(f, Fill::default());
        assert_eq!(b.depth(ResourceKind::Cpu), 29, "nothing was taken");
        b.new_pass();
        let f = b.match_bid(&bid(20, "2", false), |_, _| u64::MAX);
        assert_eq!(f.got, cpu(19));
    }

    #[test]
    fn a_short_bid_blocks_later_bids_from_its_price_range() {
        let mut b = book();
        let short = b.match_bid(&bid(40, "2", true), |_, _| u64::MAX);
        assert!(short.takes.is_empty());
        // A later bid may only take asks above 2 in this pass.
        let later = b.match_bid(&bid(3, "5", false), |_, _| u64::MAX);
        assert_eq!(later.takes[0].lender, r(1));
        assert_eq!(later.takes[0].price, d("3"));
        b.new_pass();
        let next = b.match_bid(&bid(3, "5", false), |_, _| u64::MAX);
        assert_eq!(next.takes[0].lender, r(2));
    }

    #[test]
    fn a_cap_limits_a_lender_without_removing_its_ask() {
        let mut b = book();
        let f = b.match_bid(&bid(7, "5", false), |l, _| if l == r(2) { 1 } else { 99 });
        assert_eq!(
            f.takes[0],
            Take {
                lender: r(2),
                kind: ResourceKind::Cpu,
                shards: 1,
                price: d("1"),
            }
        );
        assert_eq!(b.asks(ResourceKind::Cpu).next().map(|a| a.shards), Some(4));
    }

    #[test]
    fn replacing_an_ask_moves_it_and_zero_withdraws_it() {
        let mut b = book();
        b.set_ask(r(2), ResourceKind::Cpu, d("9"), 5);
        assert_eq!(
            b.asks(ResourceKind::Cpu).last().map(|a| a.lender),
            Some(r(2))
        );
        b.set_ask(r(2), ResourceKind::Cpu, d("9"), 0);
        assert_eq!(b.depth(ResourceKind::Cpu), 24);
        let mut fleet = OrderBook::new();
        fleet.set_asks(HostId(1), r(1), &PriceVector::uniform(d("1")), &cpu(5));
        assert_eq!(
            fleet.match_bid(HostId(2), &bid(1, "9", false)),
            Fill::default()
        );
        assert_eq!(fleet.match_bid(HostId(1), &bid(1, "9", false)).got, cpu(1));
    }
}
