//! `reactive`: the last observed value plus a fixed margin. What a threshold autoscaler does.

use crate::convert::ceil_u64;
use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, Sample, Span, Timestamp};

/// The default margin: 20% over the last value.
pub const DEFAULT_MARGIN: f64 = 0.20;

/// Last value × (1 + margin).
#[derive(Debug, Clone)]
pub struct Reactive {
    margin: f64,
    last: Option<u64>,
}

impl Reactive {
    /// A reactive policy with the given relative margin.
    pub fn new(margin: f64) -> Self {
        Self { margin, last: None }
    }
}

impl Forecaster for Reactive {
    fn observe(&mut self, sample: Sample, _: Option<u64>) {
        self.last = Some(sample.value);
    }

    fn forecast(&mut self, now: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        let v = self.recommend(now, horizon.step);
        vec![Quantiles::point(v); horizon.steps as usize]
    }

    fn recommend(&mut self, _: Timestamp, _: Span) -> u64 {
        self.last
            .map_or(0, |v| ceil_u64(v as f64 * (1.0 + self.margin)))
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

    #[test]
    fn allocates_the_last_value_plus_margin() {
        let mut r = Reactive::new(0.2);
        assert_eq!(r.recommend(Timestamp::EPOCH, Span::from_secs(300)), 0);
        r.observe(
            Sample {
                time: Timestamp::EPOCH,
                value: 100,
            },
            None,
        );
        assert_eq!(
            r.recommend(Timestamp::from_secs(1).unwrap(), Span::from_secs(300)),
            120
        );
    }
}
