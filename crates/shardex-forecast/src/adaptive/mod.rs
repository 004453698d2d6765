//! `shardex`: our forecaster. Online: O(1) amortised work per sample, bounded memory (a week
//! of five-minute slots), no batch refits.
//!
//! * **Candidate predictors.** Cheap predictors of the demand at the target time run side by
//!   side: the last value; running maxima over the last 15 minutes, hour, 6 hours, day and 3
//!   days; a fast and a slow exponentially weighted mean; an additive Holt-Winters level with
//!   a damped trend and daily and weekly seasonal profiles (indexed by time of day and of week, so gaps in the
//!   samples don't shift the seasons); and the seasonal maximum, the largest value within ±10
//!   minutes of the same time on each of the last three days and a week ago.
//! * **Calibrated quantiles.** Each candidate has, per quantile level (p50, p90, p95, p99 and
//!   the allocation's), a multiplier learned by quantile tracking in log space (conformal PID
//!   control's P step, `m += η·(miss − α)`), so the share of samples above the candidate
//!   scaled by `e^m` is held at `α` whatever the candidate's bias. Misses are scored against
//!   the prediction actually made for that sample, at the same lead, so the quantiles are
//!   calibrated for the decision they serve.
//! * **Selection.** Per level, the candidate with the lowest recent pinball loss at that level
//!   is used (the proper scoring rule for a quantile): a seasonal workload ends up served by the
//!   seasonal candidates, a bursty one by the running maxima, a steady one by a mean. The
//!   allocation's level, where misses are rare, is ranked on its loss plus that of the nearest
//!   band level below it. Memory's allocation (an OOM kill per miss, one sample in a thousand)
//!   is the largest of the three best-ranked candidates: picking the single best on a handful of
//!   misses favours whichever happened to predict low lately, and so misses about twice as
//!   often as its level says; the top three hedge that choice (`memory_top`).
//! * **Spikes.** A miss raises every multiplier at once (by `η`, against `η·α` per hit), and
//!   the running maxima carry a spike forward for hours; both relax slowly.
//! * **Ceiling.** No quantile exceeds the largest value of the past week by more than the
//!   `ceiling` factor (10 %, Autopilot's safety margin), so a multiplier grown on a noisy
//!   candidate can't allocate far beyond anything the workload has done.
//! * **Levels by kind.** The allocation is the 98th percentile for cpu, net and iops (a
//!   shortfall throttles) and the 99.8th for memory (a shortfall is an OOM kill).

use crate::convert::{ceil_u64, round_u64, slot, to_f32, to_i64, to_usize};
use std::collections::VecDeque;

use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, ResourceKind, Sample, Span, Timestamp};

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
const SLOT_MS: i64 = 300_000;
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const DAY_SLOTS: usize = (DAY_MS / SLOT_MS) as usize;
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const WEEK_SLOTS: usize = (WEEK_MS / SLOT_MS) as usize;

mod candidates;
mod params;
#[cfg(test)]
mod tests;

use candidates::{CANDIDATES, Candidate, EWMA_ALPHAS, N, WINDOWS, WindowMax};
pub use params::Params;

/// Quantile levels tracked, in this order: p50, p90, p95, p99, allocation.
const LEVELS: usize = 5;

/// The output tracker's multiplier stays within `e^±1`: it corrects the allocation's rate, it
/// does not replace the candidates.
const OUTPUT_BOUND: f64 = 1.0;

/// A decision made, waiting for the sample it was about.
#[derive(Debug, Clone)]
struct Pending {
    target: i64,
    base: [[f64; LEVELS]; N],
}

/// Our forecaster for one series.
#[derive(Debug, Clone)]
pub struct Adaptive {
    params: Params,
    levels: [f64; LEVELS],
    last: f64,
    maxima: [WindowMax; WINDOWS.len()],
    ewma: [f64; EWMA_ALPHAS.len()],
    week_max: f64,
    last_time: Option<i64>,
    level: f64,
    /// Holt-Winters trend: the level's change per slot (damped).
    trend: f64,
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
    /// The last sample above its allocation, and until when the allocation stays at least at it.
    spike: Option<(i64, f64)>,
    pending: VecDeque<Pending>,
    decisions: VecDeque<u64>,
    count: u64,
    /// Log multiplier on the allocation itself, and its tracker's step (see
    /// [`Adaptive::track_output`]).
    output: f64,
    output_eta: f64,
    /// How many best-ranked candidates the allocation takes the largest of.
    top: usize,
}

impl Adaptive {
    /// A fresh forecaster for one series of `kind`.
    pub fn new(kind: ResourceKind, params: Params) -> Self {
        let allocation = match kind {
            ResourceKind::Memory => params.memory_level,
            _ => params.throttle_level,
        };
        Self {
            levels: [0.5, 0.9, 0.95, 0.99, allocation],
            params,
            last: 0.0,
            maxima: Default::default(),
            ewma: [0.0; EWMA_ALPHAS.len()],
            week_max: 0.0,
            last_time: None,
            level: 0.0,
            trend: 0.0,
            mean: 0.0,
            day: vec![0.0; DAY_SLOTS],
            week: vec![0.0; WEEK_SLOTS],
            history: vec![f32::NAN; WEEK_SLOTS],
            first: None,
            // Start generous: until misses are seen, allocate well above every candidate.
            mult: [[0.0, 0.3, 0.4, 0.6, 0.8]; N],
            loss: [[0.0; LEVELS]; N],
            scored: 0,
            spike: None,
            pending: VecDeque::new(),
            decisions: VecDeque::new(),
            count: 0,
            output: 0.0,
            output_eta: match kind {
                ResourceKind::Memory => params.memory_output_eta,
                _ => 0.0,
            },
            top: match kind {
                ResourceKind::Memory => to_usize(params.memory_top).clamp(1, N),
                _ => 1,
            },
        }
    }

    fn slot(t: i64) -> (usize, usize) {
        (
            slot(t.rem_euclid(DAY_MS) / SLOT_MS),
            slot(t.rem_euclid(WEEK_MS) / SLOT_MS),
        )
    }

    fn season(&self, t: i64) -> f64 {
        let (d, w) = Self::slot(t);
        f64::from(self.day[d]) + f64::from(self.week[w])
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

    fn base(&mut self, target: i64) -> [[f64; LEVELS]; N] {
        let now = self.last_time.unwrap_or(target);
        let mut maxima = [self.last; WINDOWS.len()];
        for (m, (w, span)) in maxima.iter_mut().zip(self.maxima.iter_mut().zip(WINDOWS)) {
            *m = w.max_since(now - span).unwrap_or(self.last);
        }
        self.week_max = maxima[WINDOWS.len() - 1];
        let hw = (self.level + self.trend_ahead(target - now) + self.season(target)).max(0.0);
        let seasonal = self.seasonal_max(target).unwrap_or(maxima[2]);
        let ewma = self.ewma;
        CANDIDATES.map(|c| match c {
            Candidate::Last => [self.last; LEVELS],
            Candidate::Max(i) => [maxima[i]; LEVELS],
            Candidate::HoltWinters => [hw; LEVELS],
            Candidate::SeasonalMax => [seasonal; LEVELS],
            Candidate::Ewma(i) => [ewma[i]; LEVELS],
        })
    }

    /// The damped trend's contribution `ahead` milliseconds past the last sample:
    /// `b·(φ + φ² + … + φʰ)` for `h` slots.
    fn trend_ahead(&self, ahead: i64) -> f64 {
        let phi = self.params.trend_damping.clamp(0.0, 0.999);
        let h = (ahead.max(0) as f64 / SLOT_MS as f64).min(f64::from(i32::MAX));
        self.trend * phi * (1.0 - phi.powf(h)) / (1.0 - phi)
    }

    /// Offset that keeps the log-space multipliers finite for idle series.
    fn floor(&self) -> f64 {
        1.0 + 0.02 * self.mean
    }

    fn predict(&self, base: &[[f64; LEVELS]; N], level: usize) -> f64 {
        // At the allocation's extreme level a miss is rare (one sample in 50 or 500), so its
        // pinball loss alone ranks candidates on a handful of misses; adding the loss at the
        // nearest band level below it (p95 for 0.98, p99 for 0.998) ranks them on the same
        // tail with ten times the evidence.
        let neighbour = (level == LEVELS - 1)
            .then(|| {
                (0..LEVELS - 1)
                    .rev()
                    .find(|&l| self.levels[l] < self.levels[level])
            })
            .flatten();
        let key = |i: usize| self.loss[i][level] + neighbour.map_or(0.0, |l| self.loss[i][l]);
        let mut best = 0;
        for i in 1..N {
            if key(i) < key(best) {
                best = i;
            }
        }
        if self.params.only >= 0.0 {
            best = to_usize(self.params.only).min(N - 1);
        }
        let f = self.floor();
        let value = |i: usize| ((base[i][level] + f) * self.mult[i][level].exp() - f).max(0.0);
        if level == LEVELS - 1 && self.top > 1 && self.params.only < 0.0 {
            let mut ranked: Vec<usize> = (0..N).collect();
            ranked.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
            return ranked
                .into_iter()
                .take(self.top)
                .map(value)
                .fold(0.0, f64::max);
        }
        value(best)
    }

    /// The allocation's quantile `q` with the output tracker's multiplier.
    fn scaled(&self, q: f64) -> f64 {
        let f = self.floor();
        ((q + f) * self.output.exp() - f).max(0.0)
    }

    /// Moves the multiplier on the allocation itself by the sample it was made for: up by
    /// `η (1 − α)` when `y` was above it, down by `η α` otherwise (quantile tracking on the
    /// output, as in adaptive conformal inference). Each candidate's own tracker holds its
    /// rate, but the allocation switches to whichever candidate scored best lately, and that
    /// choice favours the ones that happened to predict low: at memory's rate (a miss in a
    /// thousand samples, each an OOM kill) the allocation ends up short about twice as often as
    /// its level says, and the candidates' trackers see too few misses to tell. This one sees
    /// the allocation's own misses. `censored`: `y` is only a lower bound (the sample was held
    /// at its limit), which says nothing when it is under the allocation. Off by default
    /// (`memory_output_eta` 0): on bitbrains it meets memory's budget but costs more slack than
    /// the same rate reached by a lower budget (see the README's shortfall budgets).
    fn track_output(&mut self, base: &[[f64; LEVELS]; N], y: f64, censored: bool) {
        if self.output_eta == 0.0 {
            return;
        }
        let ceiling = self.week_max * self.params.ceiling + self.floor();
        let a = self.scaled(self.predict(base, LEVELS - 1).min(ceiling));
        let alpha = 1.0 - self.levels[LEVELS - 1];
        let miss = if censored { y >= a } else { y > a };
        if censored && !miss {
            return;
        }
        let step = if miss { 1.0 - alpha } else { -alpha };
        self.output = (self.output + self.output_eta * step).clamp(-OUTPUT_BOUND, OUTPUT_BOUND);
    }

    fn quantiles(&mut self, target: i64) -> [f64; LEVELS] {
        let base = self.base(target);
        // A week's peak with headroom bounds every quantile: a multiplier that grew on a noisy
        // candidate must not allocate far beyond anything this workload has ever done.
        let ceiling = self.week_max * self.params.ceiling + self.floor();
        let mut q = [0.0; LEVELS];
        for (l, v) in q.iter_mut().enumerate() {
            *v = self.predict(&base, l);
        }
        for v in &mut q {
            *v = v.min(ceiling);
        }
        // After the ceiling: it bounds what a candidate's tracker may grow to; this tracker
        // answers to the allocation's own misses, and those say when the ceiling is too low.
        q[LEVELS - 1] = self.scaled(q[LEVELS - 1]);
        if let Some((until, spike)) = self.spike
            && self.last_time.is_some_and(|now| now < until)
        {
            q[LEVELS - 1] = q[LEVELS - 1].max(spike);
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

    /// Candidate `i`'s quantile at level `l` for `pending`, as its tracker stands, shifted
    /// back by `floor` so that a quantile can reach zero for idle series.
    fn tracked(&self, pending: &Pending, i: usize, l: usize, floor: f64) -> f64 {
        (pending.base[i][l] + floor) * self.mult[i][l].exp() - floor
    }

    fn score(&mut self, pending: &Pending, y: f64) {
        let p = self.params;
        let floor = self.floor();
        for i in 0..N {
            for l in 0..LEVELS {
                let level = self.levels[l];
                let pred = self.tracked(pending, i, l, floor);
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

    /// A sample above the allocation the model predicted: the allocation stays at least at it
    /// for `spike_hold_min`.
    fn hold_spike(&mut self, t: i64, y: f64) {
        let hold = to_i64(self.params.spike_hold_min * 60_000.0);
        self.spike = Some((t + hold, y));
    }

    /// The forecast made for the slot of `t`, if one was (older ones are dropped).
    fn take_pending(&mut self, t: i64) -> Option<Pending> {
        while self
            .pending
            .front()
            .is_some_and(|q| q.target < t - SLOT_MS / 2)
        {
            self.pending.pop_front();
        }
        let p = self
            .pending
            .front()
            .filter(|q| (q.target - t).abs() <= SLOT_MS / 2)
            .cloned();
        if p.is_some() {
            self.pending.pop_front();
        }
        p
    }

    /// A sample known only to be above `y` (held at its limit): a miss for every quantile at
    /// or under `y`, whose tracker moves up; for those above it, nothing is known, so they are
    /// not moved. Each candidate's loss takes the least it can be (`level × (y − pred)` under
    /// `y`, 0 above): leaving held samples out of the losses would favour the candidates
    /// that predicted low, since their misses would never count.
    fn score_censored(&mut self, pending: &Pending, y: f64) {
        let p = self.params;
        let floor = self.floor();
        for i in 0..N {
            for l in 0..LEVELS {
                let level = self.levels[l];
                let pred = self.tracked(pending, i, l, floor);
                let loss = if y >= pred {
                    self.mult[i][l] += p.eta * level;
                    level * (y - pred)
                } else {
                    0.0
                };
                self.loss[i][l] += p.loss_alpha * (loss - self.loss[i][l]);
            }
        }
    }
}

impl Forecaster for Adaptive {
    /// Demand was above `limit`: the level, seasons and history learn nothing from it (they
    /// would learn "demand = limit"); the quantile trackers count a miss wherever the limit is
    /// at or above their quantile, and the windows' maxima take the limit as a floor.
    fn observe_limited(&mut self, time: Timestamp, limit: u64, _oom: bool) {
        let t = time.millis();
        let y = limit as f64;
        if let Some(pending) = self.take_pending(t) {
            if y >= self.predict(&pending.base, LEVELS - 1) {
                self.hold_spike(t, y);
            }
            self.track_output(&pending.base, y, true);
            self.score_censored(&pending, y);
        }
        for w in &mut self.maxima {
            w.push(t, y);
        }
    }

    fn observe(&mut self, sample: Sample, _: Option<u64>) {
        let t = sample.time.millis();
        let y = sample.value as f64;
        if let Some(pending) = self.take_pending(t) {
            if y > self.predict(&pending.base, LEVELS - 1) {
                self.hold_spike(t, y);
            }
            self.track_output(&pending.base, y, false);
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
            // The level carried forward by the damped trend over the slots since the last
            // sample (gaps included), then corrected towards the deseasonalised sample.
            let ahead = self.last_time.map_or(SLOT_MS, |lt| t - lt);
            let carried = self.level + self.trend_ahead(ahead);
            let resid = y - carried - season;
            let level = carried + p.level_alpha * resid;
            // The slope is estimated undamped (a damped estimate never learns a steady
            // ramp); only its extrapolation ahead is damped.
            let slots = (ahead as f64 / SLOT_MS as f64).max(1.0);
            self.trend += p.trend_beta * ((level - self.level) / slots - self.trend);
            self.level = level;
            let (d, w) = Self::slot(t);
            // The daily profile learns what repeats every day; the weekly one what remains.
            self.day[d] += to_f32(p.season_gamma * resid);
            self.week[w] += to_f32(p.season_gamma * 0.5 * (1.0 - p.season_gamma) * resid);
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
        self.history[Self::slot(t).1] = to_f32(y);
        self.last = y;
        for w in &mut self.maxima {
            w.push(t, y);
        }
        for (m, a) in self.ewma.iter_mut().zip(EWMA_ALPHAS) {
            *m = if self.count == 0 {
                y
            } else {
                *m + a * (y - *m)
            };
        }
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
                // Each level has its own best candidate, so they can cross; keep p95 (the
                // band's calibrated anchor) and move the others to it rather than move it.
                let p95 = ceil_u64(q[2]);
                let p90 = ceil_u64(q[1]).min(p95);
                Quantiles {
                    p50: round_u64(q[0]).min(p90),
                    p90,
                    p95,
                    p99: ceil_u64(q[3]).max(p95),
                }
            })
            .collect()
    }

    fn recommend(&mut self, now: Timestamp, lead: Span) -> u64 {
        let target = now.millis() + i64::try_from(lead.millis()).unwrap_or(SLOT_MS);
        self.record(target);
        let q = ceil_u64(self.quantiles(target)[LEVELS - 1]);
        let hold = to_usize(self.params.hold.max(1.0));
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
