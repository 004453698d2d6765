//! `shardex`: our forecaster. Online, O(1) work per sample (bounded windows), no batch refits.
//!
//! * **Candidate predictors.** Cheap predictors of the demand at the target time run side by
//!   side: the last value; the maximum of the last 15 minutes, hour and 6 hours; an
//!   additive Holt-Winters level with daily and weekly seasonal profiles (indexed by time of day
//!   and of week, so gaps don't shift the seasons); and the seasonal maximum, i.e. the largest
//!   value within ±10 minutes of the same time on each of the last three days and a week ago.
//! * **Calibrated quantiles.** Each candidate has, per quantile level, a multiplier learned by
//!   quantile tracking in log space (conformal PID control's P step: `m += η·(miss − α)`), so
//!   the share of samples above `candidate × e^m` is kept at `α` whatever the candidate's bias.
//!   Misses are scored against the prediction actually made for that sample, at the same lead,
//!   so the quantiles are calibrated for the decision they serve.
//! * **Selection.** Per quantile level, the candidate with the lowest recent pinball loss at
//!   that level is used: the proper scoring rule for a quantile, so a seasonal workload is
//!   served by the seasonal candidates and a bursty one by the windowed maxima.
//! * **Spikes.** A miss raises every multiplier at once (by `η`, against `η·α` per hit), and
//!   the windowed maxima carry a spike forward for up to six hours; both relax slowly.

use std::collections::VecDeque;

use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, ResourceKind, Sample, Span, Timestamp};

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
const SLOT_MS: i64 = 300_000;
const DAY_SLOTS: usize = (DAY_MS / SLOT_MS) as usize;
const WEEK_SLOTS: usize = (WEEK_MS / SLOT_MS) as usize;
/// Samples kept for windowed maxima: six hours of five-minute samples.
const RECENT: usize = 72;

/// Tunables. Defaults are set from how fast each part should adapt, not fitted to one trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Quantile level of the allocation.
    pub allocation_level: f64,
    /// Step of the quantile trackers (log space: 0.05 moves a multiplier by about 5 %).
    pub eta: f64,
    /// Smoothing of the Holt-Winters level.
    pub level_alpha: f64,
    /// Smoothing of the seasonal profiles.
    pub season_gamma: f64,
    /// Smoothing of the pinball losses used to pick a candidate.
    pub loss_alpha: f64,
    /// Decisions a scale-down waits: the allocation is the largest of the last this many.
    pub hold: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            allocation_level: 0.997,
            eta: 0.05,
            level_alpha: 0.05,
            season_gamma: 0.05,
            loss_alpha: 0.01,
            hold: 1.0,
        }
    }
}

impl Params {
    /// These parameters with `name=value` overrides, comma-separated (for experiments).
    pub fn with_overrides(mut self, text: &str) -> Result<Self, String> {
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=value"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not a number"))?;
            let slot = match k.trim() {
                "allocation_level" => &mut self.allocation_level,
                "eta" => &mut self.eta,
                "level_alpha" => &mut self.level_alpha,
                "season_gamma" => &mut self.season_gamma,
                "loss_alpha" => &mut self.loss_alpha,
                "hold" => &mut self.hold,
                other => return Err(format!("unknown shardex parameter {other:?}")),
            };
            *slot = v;
        }
        Ok(self)
    }
}

/// Quantile levels tracked, in this order: p50, p90, p95, p99, allocation.
const LEVELS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    Last,
    Max15m,
    Max1h,
    Max6h,
    HoltWinters,
    SeasonalMax,
}

const CANDIDATES: [Candidate; 6] = [
    Candidate::Last,
    Candidate::Max15m,
    Candidate::Max1h,
    Candidate::Max6h,
    Candidate::HoltWinters,
    Candidate::SeasonalMax,
];
const N: usize = CANDIDATES.len();

/// A decision made, waiting for the sample it was about.
#[derive(Debug, Clone)]
struct Pending {
    target: i64,
    base: [f64; N],
}

/// Our forecaster for one series.
#[derive(Debug, Clone)]
pub struct Adaptive {
    params: Params,
    levels: [f64; LEVELS],
    recent: VecDeque<f64>,
    last_time: Option<i64>,
    level: f64,
    mean: f64,
    day: Vec<f32>,
    week: Vec<f32>,
    /// Value seen in each five-minute slot of the last week (NaN where none).
    history: Vec<f32>,
    first: Option<i64>,
    /// Per candidate and level: log multiplier and smoothed pinball loss.
    mult: [[f64; LEVELS]; N],
    loss: [[f64; LEVELS]; N],
    scored: u64,
    pending: VecDeque<Pending>,
    decisions: VecDeque<u64>,
    count: u64,
}

impl Adaptive {
    /// A fresh forecaster for one series of `kind`.
    pub fn new(_kind: ResourceKind, params: Params) -> Self {
        Self {
            levels: [0.5, 0.9, 0.95, 0.99, params.allocation_level],
            params,
            recent: VecDeque::with_capacity(RECENT),
            last_time: None,
            level: 0.0,
            mean: 0.0,
            day: vec![0.0; DAY_SLOTS],
            week: vec![0.0; WEEK_SLOTS],
            history: vec![f32::NAN; WEEK_SLOTS],
            first: None,
            // Start generous: until misses are seen, allocate well above every candidate.
            mult: [[0.0, 0.3, 0.4, 0.6, 0.8]; N],
            loss: [[0.0; LEVELS]; N],
            scored: 0,
            pending: VecDeque::new(),
            decisions: VecDeque::new(),
            count: 0,
        }
    }

    fn slot(t: i64) -> (usize, usize) {
        (
            (t.rem_euclid(DAY_MS) / SLOT_MS) as usize,
            (t.rem_euclid(WEEK_MS) / SLOT_MS) as usize,
        )
    }

    fn season(&self, t: i64) -> f64 {
        let (d, w) = Self::slot(t);
        f64::from(self.day[d]) + f64::from(self.week[w])
    }

    fn max_recent(&self, n: usize) -> f64 {
        self.recent
            .iter()
            .rev()
            .take(n)
            .copied()
            .fold(0.0, f64::max)
    }

    /// Largest value within ±10 minutes of `target` on each of the last 3 days and a week ago
    /// (only slots that lie in the past and were seen).
    fn seasonal_max(&self, target: i64) -> Option<f64> {
        let first = self.first?;
        let mut best: Option<f64> = None;
        for back in [DAY_MS, 2 * DAY_MS, 3 * DAY_MS, WEEK_MS] {
            let centre = target - back;
            if centre - 2 * SLOT_MS < first {
                continue;
            }
            for k in -2..=2 {
                let t = centre + k * SLOT_MS;
                let v = self.history[Self::slot(t).1];
                if !v.is_nan() {
                    best = Some(best.map_or(f64::from(v), |b: f64| b.max(f64::from(v))));
                }
            }
        }
        best
    }

    fn base(&self, target: i64) -> [f64; N] {
        let last = self.recent.back().copied().unwrap_or(0.0);
        let hw = (self.level + self.season(target)).max(0.0);
        CANDIDATES.map(|c| match c {
            Candidate::Last => last,
            Candidate::Max15m => self.max_recent(3),
            Candidate::Max1h => self.max_recent(12),
            Candidate::Max6h => self.max_recent(RECENT),
            Candidate::HoltWinters => hw,
            Candidate::SeasonalMax => self.seasonal_max(target).unwrap_or(self.max_recent(RECENT)),
        })
    }

    /// Offset that keeps the log-space multipliers finite for idle series.
    fn floor(&self) -> f64 {
        1.0 + 0.02 * self.mean
    }

    fn predict(&self, base: &[f64; N], level: usize) -> f64 {
        let mut best = 0;
        for i in 1..N {
            if self.loss[i][level] < self.loss[best][level] {
                best = i;
            }
        }
        (base[best] + self.floor()) * self.mult[best][level].exp()
    }

    fn quantiles(&self, target: i64) -> [f64; LEVELS] {
        let base = self.base(target);
        let mut q = [0.0; LEVELS];
        for (l, v) in q.iter_mut().enumerate() {
            *v = self.predict(&base, l);
        }
        q
    }

    fn record(&mut self, target: i64) {
        if self.pending.back().is_some_and(|p| p.target == target) {
            return;
        }
        let base = self.base(target);
        self.pending.push_back(Pending { target, base });
        while self.pending.len() > 64 {
            self.pending.pop_front();
        }
    }

    fn score(&mut self, pending: &Pending, y: f64) {
        let p = self.params;
        let floor = self.floor();
        for i in 0..N {
            let b = pending.base[i] + floor;
            for l in 0..LEVELS {
                let level = self.levels[l];
                let pred = b * self.mult[i][l].exp();
                let miss = if y > pred { 1.0 } else { 0.0 };
                self.mult[i][l] += p.eta * (miss - (1.0 - level));
                let loss = if y >= pred {
                    level * (y - pred)
                } else {
                    (1.0 - level) * (pred - y)
                };
                self.loss[i][l] += p.loss_alpha * (loss - self.loss[i][l]);
            }
        }
        self.scored += 1;
    }
}

impl Forecaster for Adaptive {
    fn observe(&mut self, sample: Sample, _: Option<u64>) {
        let t = sample.time.millis();
        let y = sample.value as f64;
        while self
            .pending
            .front()
            .is_some_and(|q| q.target < t - SLOT_MS / 2)
        {
            self.pending.pop_front();
        }
        if let Some(pending) = self
            .pending
            .front()
            .filter(|q| (q.target - t).abs() <= SLOT_MS / 2)
            .cloned()
        {
            self.pending.pop_front();
            self.score(&pending, y);
        }
        let p = self.params;
        if self.count == 0 {
            self.level = y;
            self.mean = y;
            self.first = Some(t);
        } else {
            self.mean += 0.01 * (y - self.mean);
            let season = self.season(t);
            let resid = y - self.level - season;
            self.level += p.level_alpha * (y - season - self.level);
            let (d, w) = Self::slot(t);
            // The daily profile learns what repeats every day; the weekly one what remains.
            self.day[d] += (p.season_gamma * resid) as f32;
            self.week[w] += (p.season_gamma * 0.5 * (1.0 - p.season_gamma) * resid) as f32;
        }
        // Clear slots skipped since the last sample, so old weeks don't pose as recent.
        if let Some(lt) = self.last_time {
            let mut s = lt + SLOT_MS;
            let mut cleared = 0;
            while s < t && cleared < WEEK_SLOTS {
                self.history[Self::slot(s).1] = f32::NAN;
                s += SLOT_MS;
                cleared += 1;
            }
        }
        self.history[Self::slot(t).1] = y as f32;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(y);
        self.last_time = Some(t);
        self.count += 1;
    }

    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        let step = i64::try_from(horizon.step.millis()).unwrap_or(SLOT_MS);
        (1..=i64::from(horizon.steps))
            .map(|k| {
                let target = now.millis() + k * step;
                self.record(target);
                let q = self.quantiles(target);
                Quantiles {
                    p50: q[0].round() as u64,
                    p90: q[1].ceil() as u64,
                    p95: q[2].ceil() as u64,
                    p99: q[3].ceil() as u64,
                }
                .sorted()
            })
            .collect()
    }

    fn recommend(&mut self, now: Timestamp, lead: Span) -> u64 {
        let target = now.millis() + i64::try_from(lead.millis()).unwrap_or(SLOT_MS);
        self.record(target);
        let q = self.quantiles(target)[LEVELS - 1].ceil() as u64;
        let hold = self.params.hold.max(1.0) as usize;
        self.decisions.push_back(q);
        while self.decisions.len() > hold {
            self.decisions.pop_front();
        }
        self.decisions.iter().copied().max().unwrap_or(q)
    }

    fn has_quantiles(&self) -> bool {
        true
    }
}
