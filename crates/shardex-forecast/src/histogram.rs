//! The exponential, exponentially-decaying histogram of the Kubernetes VPA recommender.
//!
//! Follows kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender/util/histogram.go`,
//! `histogram_options.go` and `decaying_histogram.go`: buckets grow by a fixed ratio, a
//! sample's weight is multiplied by `2^((t - ref) / half_life)`, the reference is moved (and
//! the weights rescaled) when the exponent would pass 100, and a percentile is the *end* of the
//! bucket where the running weight reaches `p × total`.

use crate::convert::{to_i32, to_usize};

/// Bucket layout: the first bucket's size and the growth ratio, up to a maximum value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBuckets {
    first: f64,
    ratio: f64,
    count: usize,
    epsilon: f64,
}

impl ExponentialBuckets {
    /// `NewExponentialHistogramOptions(max, first, ratio, epsilon)`.
    pub fn new(max: f64, first: f64, ratio: f64, epsilon: f64) -> Self {
        let count = to_usize(((max * (ratio - 1.0) / first + 1.0).ln() / ratio.ln()).ceil()) + 1;
        Self {
            first,
            ratio,
            count,
            epsilon,
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: there is at least one bucket.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start of bucket `i` (`GetBucketStart`).
    pub fn start(&self, i: usize) -> f64 {
        if i == 0 {
            0.0
        } else {
            self.first * (self.ratio.powi(to_i32(i)) - 1.0) / (self.ratio - 1.0)
        }
    }

    /// Bucket of a value (`FindBucket`).
    pub fn find(&self, value: f64) -> usize {
        if value < self.first {
            return 0;
        }
        let i = to_usize((value * (self.ratio - 1.0) / self.first + 1.0).ln() / self.ratio.ln());
        i.min(self.count - 1)
    }
}

/// Milliseconds; the histogram's own clock.
type Ms = i64;

/// A decaying histogram (`decayingHistogram`).
#[derive(Debug, Clone)]
pub struct DecayingHistogram {
    buckets: ExponentialBuckets,
    weights: Vec<f64>,
    total: f64,
    half_life: Ms,
    reference: Option<Ms>,
}

const MAX_DECAY_EXPONENT: f64 = 100.0;

impl DecayingHistogram {
    /// An empty histogram with the given layout and half-life (milliseconds).
    pub fn new(buckets: ExponentialBuckets, half_life_ms: i64) -> Self {
        Self {
            weights: vec![0.0; buckets.len()],
            buckets,
            total: 0.0,
            half_life: half_life_ms.max(1),
            reference: None,
        }
    }

    fn decay_factor(&mut self, t: Ms) -> f64 {
        let shift_needed = match self.reference {
            None => true,
            Some(r) => (t - r) as f64 > self.half_life as f64 * MAX_DECAY_EXPONENT,
        };
        if shift_needed {
            // Go's Time.Round: nearest multiple of the half-life, halves rounding up.
            let new_ref = (t + self.half_life / 2).div_euclid(self.half_life) * self.half_life;
            if let Some(old) = self.reference {
                let exponent = ((old - new_ref) as f64 / self.half_life as f64 + 0.5).floor();
                let f = 2f64.powf(exponent);
                self.weights.iter_mut().for_each(|w| *w *= f);
                self.total *= f;
            }
            self.reference = Some(new_ref);
        }
        let r = self.reference.unwrap_or(t);
        ((t - r) as f64 / self.half_life as f64).exp2()
    }

    /// Adds a sample of `weight` at time `t`.
    pub fn add(&mut self, value: f64, weight: f64, t: Ms) {
        let w = weight * self.decay_factor(t);
        let i = self.buckets.find(value);
        self.weights[i] += w;
        self.total += w;
    }

    /// Removes a sample added earlier (`SubtractSample`, the newer safe-subtract form).
    pub fn subtract(&mut self, value: f64, weight: f64, t: Ms) {
        let w = weight * self.decay_factor(t);
        let i = self.buckets.find(value);
        let eps = self.buckets.epsilon;
        let safe = |v: f64| if v - w < eps { 0.0 } else { v - w };
        self.weights[i] = safe(self.weights[i]);
        self.total = safe(self.total);
    }

    /// True when it holds no weight above epsilon.
    pub fn is_empty(&self) -> bool {
        self.total < self.buckets.epsilon
    }

    /// `Percentile(p)`: the end of the bucket where the running weight reaches `p × total`.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let eps = self.buckets.epsilon;
        let last = self.weights.iter().rposition(|&w| w >= eps).unwrap_or(0);
        let threshold = p * self.total;
        let mut sum = 0.0;
        let mut bucket = self.weights.iter().position(|&w| w >= eps).unwrap_or(0);
        while bucket < last {
            sum += self.weights[bucket];
            if sum >= threshold {
                break;
            }
            bucket += 1;
        }
        if bucket < self.buckets.len() - 1 {
            self.buckets.start(bucket + 1)
        } else {
            self.buckets.start(bucket)
        }
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

    fn cpu() -> ExponentialBuckets {
        ExponentialBuckets::new(1000.0, 0.01, 1.05, 0.0001)
    }

    #[test]
    fn bucket_layout_matches_the_vpa_options() {
        let b = cpu();
        assert_eq!(b.len(), 176);
        let mem = ExponentialBuckets::new(1e12, 1e7, 1.05, 0.0001);
        assert_eq!(mem.len(), 176);
        assert_eq!(b.start(0), 0.0);
        assert!((b.start(1) - 0.01).abs() < 1e-12);
        assert!((b.start(2) - 0.0205).abs() < 1e-12);
        assert_eq!(b.find(0.005), 0);
        assert_eq!(b.find(0.01), 1);
        assert_eq!(b.find(0.0204), 1);
        assert_eq!(b.find(0.0206), 2);
        assert_eq!(b.find(1e9), 175);
    }

    #[test]
    fn percentile_is_the_end_of_the_bucket_reaching_the_threshold() {
        // The worked example of histogram_test.go: samples 1, 2, 3 (weights 1 each) in
        // buckets of first size 1 and ratio 2 ... here with VPA's CPU layout.
        let mut h = DecayingHistogram::new(cpu(), 86_400_000);
        assert_eq!(h.percentile(0.9), 0.0, "empty histograms answer 0");
        for v in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
            h.add(v, 1.0, 0);
        }
        let b = cpu();
        // p50 reaches 5 of 10 at the bucket of 0.5; the answer is that bucket's end.
        assert_eq!(h.percentile(0.5), b.start(b.find(0.5) + 1));
        assert_eq!(h.percentile(1.0), b.start(b.find(1.0) + 1));
        assert!(h.percentile(0.9) >= 0.9 && h.percentile(0.9) < 0.9 * 1.06);
    }

    #[test]
    fn a_sample_one_half_life_newer_weighs_double() {
        let day = 86_400_000;
        let mut h = DecayingHistogram::new(cpu(), day);
        h.add(1.0, 1.0, 0);
        h.add(2.0, 1.0, day);
        // Weights 1 and 2: the median is in the bucket of 2.0.
        let b = cpu();
        assert_eq!(h.percentile(0.5), b.start(b.find(2.0) + 1));
        // Far in the future the reference shifts, and proportions stay the same.
        h.add(2.0, 1.0, 150 * day);
        assert!(h.total.is_finite());
        assert_eq!(h.percentile(0.1), b.start(b.find(2.0) + 1));
    }

    #[test]
    fn subtract_removes_a_peak() {
        let mut h = DecayingHistogram::new(cpu(), 86_400_000);
        h.add(1.0, 1.0, 0);
        h.add(5.0, 1.0, 0);
        h.subtract(5.0, 1.0, 0);
        let b = cpu();
        assert_eq!(h.percentile(0.99), b.start(b.find(1.0) + 1));
    }
}
