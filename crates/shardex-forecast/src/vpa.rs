//! `vpa`: the Kubernetes Vertical Pod Autoscaler's recommender and updater, as published in
//! kubernetes/autoscaler, `vertical-pod-autoscaler/pkg/`:
//! * `recommender/model/aggregations_config.go`: histogram layouts (CPU: max 1000 cores, first
//!   bucket 0.01 core, ratio 1.05; memory: max 1e12 bytes, first bucket 1e7 bytes, ratio 1.05;
//!   epsilon 0.001 × 0.1), half-lives 24 h, memory aggregation window 24 h.
//! * `recommender/util/{histogram,decaying_histogram}.go`: see [`crate::histogram`].
//! * `recommender/model/aggregate_container_state.go`: CPU samples weigh `minSampleWeight` = 0.1
//!   (the request is 0 in practice, kubernetes/autoscaler#7818); memory peaks weigh 1.
//! * `recommender/model/container.go`: one memory sample per 24 h window, its running peak
//!   (replaced while the window is open, including the `oldMaxMem != 0` check), and
//!   `RecordOOM`: the sample becomes `max(used + 100 MiB, used × 1.2)` with
//!   `used = max(request, peak)`.
//! * `recommender/logic/{estimator,recommender}.go`: target p90, lower bound p50, upper bound
//!   p95, each + 15 % margin; confidence = min(days of history, samples / 1440); upper × (1 +
//!   1/conf), lower × (1 + 0.001/conf)^-2; minimums 25 millicores and 250 MiB.
//! * `updater/priority/{update_priority_calculator,priority_processor}.go`: the allocation
//!   changes when it is outside [lower, upper], right after an OOM, or when the workload is
//!   over 12 h old and the target differs by 10 % or more.
//!
//! Differences forced by the replay: a series is one resource of one single-container pod, so
//! the 10 % difference is per resource rather than summed over resources, and the confidence
//! of a memory series counts its own samples. A sample above the memory allocation is an OOM:
//! VPA sees the OOM record and a usage sample capped at the allocation (a container can't use
//! more than its limit).

use crate::convert::ceil_u64;
use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, ResourceKind, Sample, Span, Timestamp};

use crate::histogram::{DecayingHistogram, ExponentialBuckets};

const DAY_MS: i64 = 86_400_000;
const MIN_SAMPLE_WEIGHT: f64 = 0.1;
const EPSILON: f64 = 0.001 * MIN_SAMPLE_WEIGHT;
const SAFETY_MARGIN: f64 = 0.15;
const MIN_CPU_MILLICORES: f64 = 25.0;
const MIN_MEMORY_BYTES: f64 = 250.0 * 1024.0 * 1024.0;
const OOM_MIN_BUMP_BYTES: f64 = 100.0 * 1024.0 * 1024.0;
const OOM_BUMP_RATIO: f64 = 1.2;
const UPDATE_THRESHOLD: f64 = 0.1;
const LIFETIME_THRESHOLD_MS: i64 = 12 * 3_600_000;
/// VPA clamps resource amounts to 1e14.
const MAX_AMOUNT: f64 = 1e14;

/// One series under VPA.
#[derive(Debug, Clone)]
pub struct Vpa {
    kind: ResourceKind,
    histogram: DecayingHistogram,
    first: Option<i64>,
    last: Option<i64>,
    samples: u64,
    window_end: Option<i64>,
    memory_peak: f64,
    oom_peak: f64,
    applied: Option<u64>,
    oom_since_update: bool,
}

/// The recommender's three numbers, physical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// Lower bound.
    pub lower: f64,
    /// Target.
    pub target: f64,
    /// Upper bound.
    pub upper: f64,
}

impl Vpa {
    /// A fresh VPA for one series of `kind` (cpu and memory as VPA does; other kinds are
    /// treated like CPU, with their own units).
    pub fn new(kind: ResourceKind) -> Self {
        let buckets = match kind {
            ResourceKind::Memory => ExponentialBuckets::new(1e12, 1e7, 1.05, EPSILON),
            _ => ExponentialBuckets::new(1000.0, 0.01, 1.05, EPSILON),
        };
        Self {
            kind,
            histogram: DecayingHistogram::new(buckets, DAY_MS),
            first: None,
            last: None,
            samples: 0,
            window_end: None,
            memory_peak: 0.0,
            oom_peak: 0.0,
            applied: None,
            oom_since_update: false,
        }
    }

    /// Histogram unit: cores for cpu (VPA's unit), the raw unit otherwise.
    fn histogram_value(&self, v: f64) -> f64 {
        if self.kind == ResourceKind::Memory {
            v
        } else {
            v / 1000.0
        }
    }

    fn physical_value(&self, v: f64) -> f64 {
        if self.kind == ResourceKind::Memory {
            v
        } else {
            v * 1000.0
        }
    }

    fn add_memory_sample(&mut self, t: i64, usage: f64, is_oom: bool) {
        let mut add = false;
        match self.window_end {
            Some(end) if t < end => {
                let old = self.memory_peak.max(self.oom_peak);
                if old != 0.0 && usage > old {
                    self.histogram.subtract(old, 1.0, end);
                    add = true;
                }
            }
            _ => {
                let end = self.window_end.unwrap_or(t);
                let shift = (t - end).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
                self.window_end = Some(end + shift);
                self.memory_peak = 0.0;
                self.oom_peak = 0.0;
                add = true;
            }
        }
        if add && let Some(end) = self.window_end {
            self.histogram.add(usage, 1.0, end);
            if is_oom {
                self.oom_peak = usage;
            } else {
                self.memory_peak = usage;
            }
        }
    }

    fn confidence(&self) -> f64 {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return 0.0;
        };
        let days = (last - first) as f64 / DAY_MS as f64;
        days.min(self.samples as f64 / (60.0 * 24.0))
    }

    /// What the recommender says now.
    pub fn recommendation(&self) -> Recommendation {
        let with_margin = |p: f64| {
            let base = self.physical_value(self.histogram.percentile(p));
            base + base * SAFETY_MARGIN
        };
        let conf = self.confidence();
        let min = if self.kind == ResourceKind::Memory {
            MIN_MEMORY_BYTES
        } else {
            MIN_CPU_MILLICORES
        };
        let clamp = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, MAX_AMOUNT)
            } else {
                MAX_AMOUNT
            }
        };
        let target = with_margin(0.9).max(min);
        let upper = clamp(with_margin(0.95) * (1.0 + 1.0 / conf).powf(1.0)).max(min);
        let lower = clamp(with_margin(0.5) * (1.0 + 0.001 / conf).powf(-2.0)).max(min);
        Recommendation {
            lower,
            target,
            upper,
        }
    }
}

impl Vpa {
    /// RecordOOM: the request was too small; remember a bumped peak (the OOM record and a
    /// usage sample at the limit: a container can't use more than its limit).
    fn record_oom(&mut self, t: i64, request: u64) {
        let used = (request as f64).max(self.memory_peak);
        let needed = (used + OOM_MIN_BUMP_BYTES).max(used * OOM_BUMP_RATIO);
        self.add_memory_sample(t, needed, true);
        self.add_memory_sample(t, request as f64, false);
        self.oom_since_update = true;
    }
}

impl Forecaster for Vpa {
    fn observe_limited(&mut self, time: Timestamp, limit: u64, oom: bool) {
        if oom && self.kind == ResourceKind::Memory {
            // The OOM event with its limit: what VPA's recommender gets from the kubelet.
            let t = time.millis();
            self.first.get_or_insert(t);
            self.last = Some(t);
            self.samples += 1;
            self.record_oom(t, limit);
        } else {
            // Throttling is not a VPA signal: it sees the usage, capped at the quota.
            self.observe(Sample { time, value: limit }, Some(limit));
        }
    }

    fn observe(&mut self, sample: Sample, allocated: Option<u64>) {
        let t = sample.time.millis();
        let value = sample.value as f64;
        self.first.get_or_insert(t);
        self.last = Some(t);
        self.samples += 1;
        if self.kind == ResourceKind::Memory {
            match allocated {
                Some(request) if sample.value > request => self.record_oom(t, request),
                _ => self.add_memory_sample(t, value, false),
            }
        } else {
            let cores = self.histogram_value(value);
            self.histogram.add(cores, MIN_SAMPLE_WEIGHT, t);
        }
    }

    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        let v = self.recommend(now, horizon.step);
        vec![Quantiles::point(v); horizon.steps as usize]
    }

    fn recommend(&mut self, now: Timestamp, _: Span) -> u64 {
        let rec = self.recommendation();
        let target = ceil_u64(rec.target);
        let update = match self.applied {
            None => true,
            Some(applied) => {
                let a = applied as f64;
                let outside = a < rec.lower || a > rec.upper;
                let old_enough = self
                    .first
                    .is_some_and(|f| now.millis() - f >= LIFETIME_THRESHOLD_MS);
                let diff = (a - rec.target).abs() / a.max(1.0);
                outside || self.oom_since_update || (old_enough && diff >= UPDATE_THRESHOLD)
            }
        };
        if update {
            self.applied = Some(target);
            self.oom_since_update = false;
        }
        self.applied.unwrap_or(target)
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    #[test]
    fn cpu_target_is_p90_plus_15_percent_of_bucket_ends() {
        // Worked example: 8 samples of 0.2 cores and 2 of 0.8 (same moment, equal weights).
        // 90% of the weight is first reached in the bucket of 0.8; the target is that bucket's
        // end plus 15%, and the lower bound's p50 is the end of 0.2's bucket.
        let mut v = Vpa::new(ResourceKind::Cpu);
        for value in [200, 200, 200, 200, 200, 200, 200, 200, 800, 800] {
            v.observe(Sample { time: t(0), value }, None);
        }
        let b = ExponentialBuckets::new(1000.0, 0.01, 1.05, EPSILON);
        let end = |cores: f64| b.start(b.find(cores) + 1) * 1000.0;
        let rec = v.recommendation();
        assert!((rec.target - end(0.8) * 1.15).abs() < 1e-6, "{rec:?}");
        // No history span yet: confidence 0, so the upper bound is unbounded (VPA clamps it)
        // and the lower bound collapses to the minimum.
        assert_eq!(rec.upper, MAX_AMOUNT);
        assert_eq!(rec.lower, MIN_CPU_MILLICORES);
    }

    #[test]
    fn minimums_apply() {
        let mut v = Vpa::new(ResourceKind::Cpu);
        v.observe(
            Sample {
                time: t(0),
                value: 1,
            },
            None,
        );
        assert_eq!(v.recommend(t(1), Span::from_secs(300)), 25);
        let mut m = Vpa::new(ResourceKind::Memory);
        m.observe(
            Sample {
                time: t(0),
                value: 1 << 20,
            },
            None,
        );
        assert_eq!(m.recommend(t(1), Span::from_secs(300)), 250 * 1024 * 1024);
    }

    #[test]
    fn memory_keeps_one_peak_per_day_and_bumps_after_an_oom() {
        let gib = 1u64 << 30;
        let mut m = Vpa::new(ResourceKind::Memory);
        for (i, v) in [1, 2, 1].into_iter().enumerate() {
            m.observe(
                Sample {
                    time: t(i as i64 * 300),
                    value: v * gib,
                },
                None,
            );
        }
        // One window, whose peak (2 GiB) replaced the 1 GiB first sample.
        let rec = m.recommendation();
        let b = ExponentialBuckets::new(1e12, 1e7, 1.05, EPSILON);
        let end = b.start(b.find(2.0 * gib as f64) + 1);
        assert!((rec.target - end * 1.15).abs() < 1.0, "{rec:?}");
        let before = m.recommend(t(1000), Span::from_secs(300));
        // An OOM at a 2 GiB allocation: the peak becomes max(2 GiB + 100 MiB, 2.4 GiB).
        m.observe(
            Sample {
                time: t(1200),
                value: 3 * gib,
            },
            Some(2 * gib),
        );
        let after = m.recommend(t(1500), Span::from_secs(300));
        let bumped = b.start(b.find(2.4 * gib as f64) + 1) * 1.15;
        assert!(
            after > before && (after as f64 - bumped).abs() < 2.0,
            "{after} vs {bumped}"
        );
    }

    #[test]
    fn the_updater_holds_the_allocation_inside_the_bounds_for_12_hours() {
        let mut v = Vpa::new(ResourceKind::Cpu);
        for i in 0..10 {
            v.observe(
                Sample {
                    time: t(i * 300),
                    value: 500,
                },
                None,
            );
        }
        let first = v.recommend(t(10 * 300), Span::from_secs(300));
        // Use drops to 400: after 10 hours the target is over 10% lower, but the allocation is
        // still inside [lower, upper], so the updater leaves it alone.
        for i in 10..120 {
            v.observe(
                Sample {
                    time: t(i * 300),
                    value: 400,
                },
                None,
            );
            assert_eq!(
                v.recommend(t(i * 300 + 1), Span::from_secs(300)),
                first,
                "sample {i}"
            );
        }
        let rec = v.recommendation();
        assert!(
            rec.target <= first as f64 * 0.9 && rec.lower <= first as f64,
            "{rec:?}"
        );
        // Past 12 hours of age a 10% difference is enough.
        for i in 120..150 {
            v.observe(
                Sample {
                    time: t(i * 300),
                    value: 400,
                },
                None,
            );
        }
        let now = v.recommend(t(150 * 300), Span::from_secs(300));
        assert_eq!(now, v.recommendation().target.ceil() as u64);
        assert!(now < first);
    }
}
