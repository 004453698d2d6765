//! Per-sample cost of every policy: observe one sample and decide once, as the replay and the
//! profiler do. Two series lengths show the work per sample does not grow with history.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardex_core::{ResourceKind, Sample, Span, Timestamp};
use shardex_forecast::Policy;
use shardex_forecast::adaptive::Params;

fn series(n: usize) -> Vec<Sample> {
    let mut x = 12345u64;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (x >> 40) % 200;
            let daily = if (i % 288) > 100 && (i % 288) < 160 {
                600
            } else {
                100
            };
            Sample {
                time: Timestamp::from_secs(i as i64 * 300).unwrap(),
                value: daily + noise,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let lead = Span::from_secs(300);
    let mut group = c.benchmark_group("observe_and_decide");
    for n in [2016usize, 8640] {
        let samples = series(n);
        group.throughput(Throughput::Elements(n as u64));
        for policy in Policy::ALL {
            group.bench_with_input(
                BenchmarkId::new(policy.name(), n),
                &samples,
                |b, samples| {
                    b.iter(|| {
                        let mut f = policy
                            .build(ResourceKind::Cpu, Some(1000), &Params::default())
                            .unwrap();
                        let mut total = 0u64;
                        for s in samples {
                            total = total.wrapping_add(f.recommend(s.time, lead));
                            f.observe(*s, None);
                        }
                        total
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
