//! `autopilot` and `autopilot-window`: Google Autopilot's vertical recommenders, as published
//! in Rzadca et al., "Autopilot: workload autoscaling at Google", EuroSys 2020, §3.2.
//!
//! Our traces give one 5-minute sample per window, so each window's histogram holds that one
//! sample (the paper's windows hold 1-second samples; memory windows hold their peak, as here).
//!
//! **Moving window** (§3.2.1–3.2.2): a load-adjusted, exponentially decaying histogram
//! (`w[τ] = 2^(-τ/t½)`, each sample weighted by its value), CPU: the 95th percentile (serving
//! jobs) with a 12 h half-life; memory: the 98th percentile (the default "low" OOM tolerance)
//! with a 48 h half-life; then a 10 % safety margin and the maximum recommendation of the last
//! hour.
//!
//! **ML recommender** (§3.2.3): an ensemble of models, each a decay rate `d_m` and a safety
//! margin `M_m`. Per model, decayed overrun and underrun counts per candidate limit (Eq. 4–5),
//! the limit `L'_m = argmin_L w_o·o(L) + w_u·u(L) + w_ΔL·[L ≠ L'_m(t-1)]` (Eq. 6) and
//! `L_m = L'_m + M_m` (Eq. 7); each model's cost is a decayed sum of its own overruns,
//! underruns and limit changes (Eq. 8), judged against the sample that arrives while its limit
//! is in force; the recommendation is the limit of the model minimising cost plus the penalties
//! `w_Δm` for switching models and `w_ΔL` for changing the limit (Eq. 9).
//!
//! The paper publishes neither the model grid nor the weights. We use the only published
//! values, those of the public reimplementation by C. Herron Mulet: `w_o = 0.5`,
//! `w_u = 0.25`, `w_ΔL = w_Δm = 0.1`, `d = 0.75` and decay rates `d_m` of 0.1, 0.2, …, 1.0;
//! its margins (0 and 1, units unstated) are replaced by 0, 5, 10, 20 and 30 % of `L'_m`
//! (relative rather than additive, so one grid serves every unit). The README also reports a
//! more conservative setting (`w_o = 1`, `w_u = 0.1`, `d = 0.1`).

use crate::convert::ceil_u64;
use std::collections::VecDeque;

use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, ResourceKind, Sample, Span, Timestamp};

use crate::histogram::{DecayingHistogram, ExponentialBuckets};

const HOUR_MS: i64 = 3_600_000;

/// Bucket layout per kind, in the kind's physical unit, growing 5 % per bucket.
fn buckets(kind: ResourceKind) -> ExponentialBuckets {
    match kind {
        ResourceKind::Cpu => ExponentialBuckets::new(1e7, 1.0, 1.05, 1e-12),
        ResourceKind::Memory => ExponentialBuckets::new(1e14, 1e6, 1.05, 1e-12),
        ResourceKind::Net | ResourceKind::Iops => ExponentialBuckets::new(1e13, 1.0, 1.05, 1e-12),
    }
}

/// The moving-window recommender.
#[derive(Debug, Clone)]
pub struct MovingWindow {
    histogram: DecayingHistogram,
    percentile: f64,
    margin: f64,
    recent: VecDeque<(i64, u64)>,
}

impl MovingWindow {
    /// CPU (and net, iops): p95, 12 h; memory: p98, 48 h.
    pub fn new(kind: ResourceKind) -> Self {
        let (percentile, half_life) = match kind {
            ResourceKind::Memory => (0.98, 48 * HOUR_MS),
            _ => (0.95, 12 * HOUR_MS),
        };
        Self {
            histogram: DecayingHistogram::new(buckets(kind), half_life),
            percentile,
            margin: 0.10,
            recent: VecDeque::new(),
        }
    }
}

impl Forecaster for MovingWindow {
    fn observe(&mut self, sample: Sample, _: Option<u64>) {
        let v = sample.value as f64;
        // Load-adjusted: a sample weighs its own value, so the percentile is of the work done.
        if v > 0.0 {
            self.histogram.add(v, v, sample.time.millis());
        }
    }

    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        let v = self.recommend(now, horizon.step);
        vec![Quantiles::point(v); horizon.steps as usize]
    }

    fn recommend(&mut self, now: Timestamp, _: Span) -> u64 {
        let now = now.millis();
        let rec = ceil_u64(self.histogram.percentile(self.percentile) * (1.0 + self.margin));
        self.recent.push_back((now, rec));
        while self
            .recent
            .front()
            .is_some_and(|&(t, _)| t <= now - HOUR_MS)
        {
            self.recent.pop_front();
        }
        self.recent.iter().map(|&(_, r)| r).max().unwrap_or(rec)
    }
}

/// Decay rates of the model grid.
const DECAYS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
/// Relative safety margins of the model grid.
const MARGINS: [f64; 5] = [0.0, 0.05, 0.10, 0.20, 0.30];
const W_OVERRUN: f64 = 0.5;
const W_UNDERRUN: f64 = 0.25;
const W_LIMIT_CHANGE: f64 = 0.1;
const W_MODEL_CHANGE: f64 = 0.1;
const COST_DECAY: f64 = 0.75;

/// One decay rate's exponentially weighted histogram, stored scaled so that decaying it is O(1).
#[derive(Debug, Clone)]
struct Ewh {
    decay: f64,
    raw: Vec<f64>,
    scale: f64,
    lo: usize,
    hi: usize,
    total: f64,
    limit_bucket: Option<usize>,
}

impl Ewh {
    fn new(decay: f64, n: usize) -> Self {
        Self {
            decay,
            raw: vec![0.0; n],
            scale: 1.0,
            lo: usize::MAX,
            hi: 0,
            total: 0.0,
            limit_bucket: None,
        }
    }

    /// Eq. 4–5's recursion for every candidate limit at once: all weights × (1 − d), + d at x.
    fn add(&mut self, bucket: usize) {
        let keep = 1.0 - self.decay;
        if keep <= 0.0 {
            if self.lo <= self.hi {
                self.raw[self.lo..=self.hi]
                    .iter_mut()
                    .for_each(|w| *w = 0.0);
            }
            self.scale = 1.0;
            self.raw[bucket] = self.decay;
            self.lo = bucket;
            self.hi = bucket;
            self.total = self.decay;
            return;
        }
        self.scale *= keep;
        self.total *= keep;
        if self.scale < 1e-150 {
            for w in &mut self.raw[self.lo.min(bucket)..=self.hi.max(bucket)] {
                *w *= self.scale;
            }
            self.scale = 1.0;
        }
        self.raw[bucket] += self.decay / self.scale;
        self.total += self.decay;
        self.lo = self.lo.min(bucket);
        self.hi = self.hi.max(bucket);
        // Forget buckets whose weight no longer matters, so scans stay short.
        let tiny = self.total * 1e-9 / self.scale;
        while self.lo < self.hi && self.raw[self.lo] < tiny {
            self.raw[self.lo] = 0.0;
            self.lo += 1;
        }
        while self.hi > self.lo && self.raw[self.hi] < tiny {
            self.raw[self.hi] = 0.0;
            self.hi -= 1;
        }
    }

    /// Eq. 6: the bucket whose end minimises w_o·overruns + w_u·underruns (+ the change
    /// penalty against the previous choice).
    fn choose(&mut self) -> Option<usize> {
        if self.lo > self.hi {
            return None;
        }
        let total: f64 = self.raw[self.lo..=self.hi].iter().sum();
        let cost = |below: f64, w: f64| W_OVERRUN * (total - below - w) + W_UNDERRUN * below;
        let mut below = 0.0;
        let mut best = (f64::INFINITY, self.lo);
        let mut prev_cost = None;
        for k in self.lo..=self.hi {
            let w = self.raw[k];
            let c = cost(below, w);
            if Some(k) == self.limit_bucket {
                prev_cost = Some(c);
            }
            if c < best.0 {
                best = (c, k);
            }
            below += w;
        }
        let choice = match (self.limit_bucket, prev_cost) {
            // Raw weights are the true ones divided by `scale`, so the penalty is too.
            (Some(prev), Some(pc)) if pc <= best.0 + W_LIMIT_CHANGE / self.scale => prev,
            _ => best.1,
        };
        self.limit_bucket = Some(choice);
        Some(choice)
    }
}

/// The ML recommender.
#[derive(Debug, Clone)]
pub struct MlRecommender {
    buckets: ExponentialBuckets,
    histograms: Vec<Ewh>,
    /// Per model (decay index, margin index): its limit now and its cost.
    limits: Vec<f64>,
    changed: Vec<bool>,
    costs: Vec<f64>,
    chosen: Option<usize>,
    applied: Option<f64>,
}

impl MlRecommender {
    /// A fresh ensemble for one series of `kind`.
    pub fn new(kind: ResourceKind) -> Self {
        let buckets = buckets(kind);
        let models = DECAYS.len() * MARGINS.len();
        Self {
            histograms: DECAYS.iter().map(|&d| Ewh::new(d, buckets.len())).collect(),
            buckets,
            limits: vec![0.0; models],
            changed: vec![false; models],
            costs: vec![0.0; models],
            chosen: None,
            applied: None,
        }
    }
}

impl Forecaster for MlRecommender {
    /// An OOM is an overrun of the limit in force (Eq. 4's `o`): the least usage that killed
    /// the task, one unit over the limit. A throttled sample is usage at the limit.
    fn observe_limited(&mut self, time: Timestamp, limit: u64, oom: bool) {
        let value = if oom { limit.saturating_add(1) } else { limit };
        self.observe(Sample { time, value }, Some(limit));
    }

    fn observe(&mut self, sample: Sample, _: Option<u64>) {
        let x = sample.value as f64;
        // Eq. 8, judged on the window during which each model's limit was in force.
        for m in 0..self.limits.len() {
            let l = self.limits[m];
            let o = f64::from(u8::from(x > l));
            let u = f64::from(u8::from(x < l));
            let d = f64::from(u8::from(self.changed[m]));
            let step = W_OVERRUN * o + W_UNDERRUN * u + W_LIMIT_CHANGE * d;
            self.costs[m] = COST_DECAY * step + (1.0 - COST_DECAY) * self.costs[m];
        }
        let bucket = self.buckets.find(x);
        for (i, h) in self.histograms.iter_mut().enumerate() {
            h.add(bucket);
            let Some(k) = h.choose() else { continue };
            let base = self.buckets.start(k + 1);
            for (j, margin) in MARGINS.iter().enumerate() {
                let m = i * MARGINS.len() + j;
                let limit = base * (1.0 + margin);
                self.changed[m] = limit != self.limits[m];
                self.limits[m] = limit;
            }
        }
    }

    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        let v = self.recommend(now, horizon.step);
        vec![Quantiles::point(v); horizon.steps as usize]
    }

    fn recommend(&mut self, _: Timestamp, _: Span) -> u64 {
        // Eq. 9; ties go to the earlier model in the grid (lower decay, then lower margin).
        let mut best: Option<(f64, usize)> = None;
        for m in 0..self.limits.len() {
            let switch = f64::from(u8::from(self.chosen.is_some_and(|c| c != m)));
            let change = f64::from(u8::from(self.applied.is_some_and(|a| a != self.limits[m])));
            let score = self.costs[m] + W_MODEL_CHANGE * switch + W_LIMIT_CHANGE * change;
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, m));
            }
        }
        let Some((_, m)) = best else { return 0 };
        self.chosen = Some(m);
        self.applied = Some(self.limits[m]);
        ceil_u64(self.limits[m])
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
    fn moving_window_takes_the_load_adjusted_percentile_and_holds_the_hourly_max() {
        let mut mw = MovingWindow::new(ResourceKind::Cpu);
        // Paper Fig. 2's point: 9 samples of 1 and one of 10 → by time p90 is 1, by load 10.
        for i in 0..9 {
            mw.observe(
                Sample {
                    time: t(i),
                    value: 100,
                },
                None,
            );
        }
        mw.observe(
            Sample {
                time: t(9),
                value: 1000,
            },
            None,
        );
        let b = buckets(ResourceKind::Cpu);
        let rec = mw.recommend(t(10), Span::from_secs(300));
        let expected = (b.start(b.find(1000.0) + 1) * 1.1).ceil() as u64;
        assert_eq!(rec, expected);
        // Within the hour the recommendation can't fall, even if the percentile does.
        for i in 0..200 {
            mw.observe(
                Sample {
                    time: t(20 + i),
                    value: 100,
                },
                None,
            );
        }
        assert_eq!(mw.recommend(t(300), Span::from_secs(300)), expected);
    }

    #[test]
    fn ml_recommender_limits_sit_at_the_cost_optimal_quantile() {
        // With w_o = 1 and w_u = 0.1 the optimal limit leaves about 1/11 of the decayed mass
        // above it; a steady series gets a limit at its bucket's end, no model overruns, and
        // the cheapest (zero-margin, first) model wins.
        let mut ml = MlRecommender::new(ResourceKind::Cpu);
        for i in 0..50 {
            ml.observe(
                Sample {
                    time: t(i * 300),
                    value: 500,
                },
                None,
            );
        }
        let b = buckets(ResourceKind::Cpu);
        let rec = ml.recommend(t(50 * 300), Span::from_secs(300));
        assert_eq!(rec, b.start(b.find(500.0) + 1).ceil() as u64);
        // A series that keeps overrunning the zero-margin limit moves the choice to a margin.
        for i in 50..80 {
            let v = if i % 2 == 0 { 500 } else { 540 };
            ml.observe(
                Sample {
                    time: t(i * 300),
                    value: v,
                },
                None,
            );
        }
        let rec = ml.recommend(t(80 * 300), Span::from_secs(300));
        assert!(rec >= 540, "{rec}");
    }
}
