//! The candidate predictors that run side by side, and the running maximum they use.

use std::collections::VecDeque;

use super::{DAY_MS, WEEK_MS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Candidate {
    Last,
    /// Maximum over the last window `WINDOWS[i]`.
    Max(usize),
    HoltWinters,
    SeasonalMax,
    /// Exponentially weighted mean with smoothing `EWMA_ALPHAS[i]`.
    Ewma(usize),
}

/// Smoothing of the mean candidates: about half an hour and about half a day of samples.
pub(super) const EWMA_ALPHAS: [f64; 2] = [0.2, 0.01];

/// Windows of the running maxima: 15 minutes, 1 hour, 6 hours, 1 day, 3 days, a week.
pub(super) const WINDOWS: [i64; 6] = [900_000, 3_600_000, 21_600_000, DAY_MS, 3 * DAY_MS, WEEK_MS];

pub(super) const CANDIDATES: [Candidate; 10] = [
    Candidate::Last,
    Candidate::Max(0),
    Candidate::Max(1),
    Candidate::Max(2),
    Candidate::Max(3),
    Candidate::Max(4),
    Candidate::HoltWinters,
    Candidate::SeasonalMax,
    Candidate::Ewma(0),
    Candidate::Ewma(1),
];

/// A running maximum over a sliding time window (monotonic queue: amortised O(1)).
#[derive(Debug, Clone, Default)]
pub(super) struct WindowMax {
    queue: VecDeque<(i64, f64)>,
}

impl WindowMax {
    pub(super) fn push(&mut self, t: i64, v: f64) {
        while self.queue.back().is_some_and(|&(_, b)| b <= v) {
            self.queue.pop_back();
        }
        self.queue.push_back((t, v));
    }

    pub(super) fn max_since(&mut self, since: i64) -> Option<f64> {
        while self.queue.front().is_some_and(|&(t, _)| t < since) {
            self.queue.pop_front();
        }
        self.queue.front().map(|&(_, v)| v)
    }
}
pub(super) const N: usize = CANDIDATES.len();
