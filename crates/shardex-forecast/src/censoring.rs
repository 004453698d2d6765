//! What shardex does with what a host shows when a workload was held at its limit: the rule
//! of `shardex_core::censoring` (the daemon's profiler runs the same), around any forecaster,
//! so that `replay` scores the policy the daemon runs. A held sample reaches the forecaster
//! only as a lower bound (`observe_limited`: shardex's counts a miss for its quantiles under
//! the limit and never learns "demand = limit"); the next decision is at least twice the
//! limit; an OOM floors memory over the limit for a day.

pub use shardex_core::censoring::oom_hold;
use shardex_core::censoring::{OOM_HOLD, oom_floor, raised};
use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, Sample, Span, Timestamp};

/// A forecaster with the censoring rules around it.
pub struct Censored<F> {
    inner: F,
    /// The next decision is at least this (twice the limit a sample was held at).
    raise: Option<u64>,
    /// An OOM floor and until when it holds (ms).
    floor: Option<(u64, i64)>,
    /// How long an OOM floor holds.
    hold: Span,
}

impl<F: Forecaster> Censored<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self::holding(inner, OOM_HOLD)
    }

    /// Wraps `inner`, with OOM floors that hold for `hold` (see `oom_hold`).
    pub fn holding(inner: F, hold: Span) -> Self {
        Self {
            inner,
            raise: None,
            floor: None,
            hold,
        }
    }

    fn at_least(&mut self, now: Timestamp, q: u64) -> u64 {
        let raise = self.raise.take().unwrap_or(0);
        let floor = match self.floor {
            Some((f, until)) if now.millis() < until => f,
            _ => 0,
        };
        q.max(raise).max(floor)
    }
}

impl<F: Forecaster> Forecaster for Censored<F> {
    fn observe(&mut self, sample: Sample, allocated: Option<u64>) {
        self.inner.observe(sample, allocated);
    }

    fn observe_limited(&mut self, time: Timestamp, limit: u64, oom: bool) {
        self.raise = Some(raised(limit));
        if oom {
            let until = time
                .checked_add(self.hold)
                .map_or(i64::MAX, Timestamp::millis);
            self.floor = Some((oom_floor(limit), until));
        }
        // The forecaster learns it as a lower bound, if it knows how (shardex's does: its
        // quantile trackers count the miss); one that does not would learn "demand = limit".
        self.inner.observe_limited(time, limit, oom);
    }

    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        self.inner.forecast(now, horizon)
    }

    fn recommend(&mut self, now: Timestamp, lead: Span) -> u64 {
        let q = self.inner.recommend(now, lead);
        self.at_least(now, q)
    }

    fn has_quantiles(&self) -> bool {
        self.inner.has_quantiles()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::static_policy::Static;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    #[test]
    fn a_throttled_sample_is_not_learned_and_doubles_the_next_decision_only() {
        let mut c = Censored::new(Static::new(100));
        c.observe(
            Sample {
                time: t(0),
                value: 100,
            },
            Some(200),
        );
        c.observe_limited(t(300), 200, false);
        let lead = Span::from_secs(300);
        assert_eq!(
            c.recommend(t(301), lead),
            400,
            "twice the limit it was held at"
        );
        assert_eq!(
            c.recommend(t(302), lead),
            100,
            "the forecaster never saw 200"
        );
    }

    #[test]
    fn an_oom_floors_memory_above_the_limit_for_a_day() {
        let mut c = Censored::new(Static::new(100));
        c.observe(
            Sample {
                time: t(0),
                value: 100,
            },
            Some(1000),
        );
        c.observe_limited(t(300), 1000, true);
        let lead = Span::from_secs(300);
        assert_eq!(c.recommend(t(301), lead), 2000);
        assert_eq!(c.recommend(t(302), lead), 1200, "20 % over the limit");
        assert_eq!(c.recommend(t(300 + 86_400), lead), 100, "a day later");
    }

    #[test]
    fn under_a_16_percent_memory_budget_an_oom_floor_holds_an_hour_and_a_half() {
        let mut c = Censored::holding(Static::new(100), oom_hold(Some(0.16)));
        c.observe_limited(t(300), 1000, true);
        let lead = Span::from_secs(300);
        assert_eq!(c.recommend(t(301), lead), 2000);
        assert_eq!(c.recommend(t(300 + 5_399), lead), 1200, "still floored");
        assert_eq!(
            c.recommend(t(300 + 5_400), lead),
            100,
            "an hour and a half later"
        );
    }
}
