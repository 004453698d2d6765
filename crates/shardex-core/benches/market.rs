//! Matching speed of the order book: one million requests against 100,000 offers on 1,000
//! hosts (100 lenders per host, each offering every kind at its own price; 1,000 requests per
//! host, mostly one or two kinds, a fifth all-or-nothing, served in passes of 100 by tier).
//! Prints requests per second and the latency distribution of one match, then lets criterion
//! time the whole million.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use shardex_core::book::{Bid, OrderBook};
use shardex_core::{HostId, Lender, PriceVector, ReservationId, ShardVector};

const HOSTS: u64 = 1_000;
const LENDERS_PER_HOST: u64 = 100;
const REQUESTS_PER_HOST: u64 = 1_000;
const PASS: usize = 100;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn price(rng: &mut Rng) -> Decimal {
    // 0.0001 .. 0.0010 per shard-hour, in steps of 0.000001.
    Decimal::new(100 + rng.below(900) as i64, 6)
}

fn book() -> OrderBook {
    let mut rng = Rng(1);
    let mut b = OrderBook::new();
    for h in 0..HOSTS {
        for l in 0..LENDERS_PER_HOST {
            let lender = Lender::Reservation(ReservationId(h * LENDERS_PER_HOST + l + 1));
            let prices = PriceVector {
                cpu: price(&mut rng),
                memory: price(&mut rng),
                net: price(&mut rng),
                iops: price(&mut rng),
            };
            let shards = ShardVector::from_fn(|_| 10 + rng.below(190));
            b.set_asks(HostId(h + 1), lender, &prices, &shards);
        }
    }
    b
}

/// The request stream: passes of `PASS` bids per host, round robin over hosts, each pass
/// sorted as the ledger sorts it (the generator draws tiers; sorting is the caller's job).
fn requests() -> Vec<(HostId, Vec<Bid>)> {
    let mut rng = Rng(2);
    let mut out = Vec::new();
    let passes = REQUESTS_PER_HOST as usize / PASS;
    for _ in 0..passes {
        for h in 0..HOSTS {
            let mut pass: Vec<(u64, Bid)> = (0..PASS)
                .map(|_| {
                    let kinds = 1 + u64::from(rng.below(3) == 0);
                    let mut v = ShardVector::ZERO;
                    for _ in 0..kinds {
                        let k = shardex_core::ResourceKind::ALL[rng.below(4) as usize];
                        v = v.with(k, 1 + rng.below(20));
                    }
                    let tier = rng.below(4);
                    let bid = Bid {
                        vector: v,
                        limit: PriceVector::uniform(Decimal::new(300 + rng.below(900) as i64, 6)),
                        all_or_nothing: rng.below(5) == 0,
                    };
                    (tier, bid)
                })
                .collect();
            pass.sort_by_key(|(tier, _)| std::cmp::Reverse(*tier));
            out.push((HostId(h + 1), pass.into_iter().map(|(_, b)| b).collect()));
        }
    }
    out
}

fn run(book: &mut OrderBook, reqs: &[(HostId, Vec<Bid>)]) -> u64 {
    let mut granted = 0u64;
    for (host, pass) in reqs {
        for bid in pass {
            if !book.match_bid(*host, bid).got.is_zero() {
                granted += 1;
            }
        }
        book.new_pass();
    }
    granted
}

fn report() {
    let reqs = requests();
    let n: usize = reqs.iter().map(|(_, p)| p.len()).sum();
    let t0 = Instant::now();
    let mut b = book();
    let built = t0.elapsed();
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    let mut granted = 0u64;
    let start = Instant::now();
    for (host, pass) in &reqs {
        for bid in pass {
            let t = Instant::now();
            let f = b.match_bid(*host, bid);
            lat.push(t.elapsed());
            granted += u64::from(!f.got.is_zero());
        }
        b.new_pass();
    }
    let total = start.elapsed();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!(
        "order book: {} offers on {} hosts built in {:.0} ms; {} requests matched in {:.2} s \
         ({:.0} requests/s, {:.1} % granted); one match p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs",
        HOSTS * LENDERS_PER_HOST,
        HOSTS,
        built.as_secs_f64() * 1e3,
        n,
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        granted as f64 * 100.0 / n as f64,
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
        lat[lat.len() - 1].as_secs_f64() * 1e6,
    );
}

fn bench(c: &mut Criterion) {
    report();
    let reqs = requests();
    let mut g = c.benchmark_group("order_book");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("1M requests vs 100k offers on 1000 hosts", |bch| {
        bch.iter_batched(book, |mut b| run(&mut b, &reqs), BatchSize::PerIteration)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
