//! Samples in, Resource Demand Vectors out: the values that cross from the profiler to the
//! engine. Physical units throughout (millicores, bytes, bit/s, IOPS); shards on request.

use serde::{Deserialize, Serialize};

use crate::shard::{ResourceKind, ShardSizes, ShardVector};
use crate::time::{Span, Timestamp};

/// One measurement of one kind for one workload, in physical units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was measured.
    pub time: Timestamp,
    /// How much was used.
    pub value: u64,
}

/// Demand quantiles at one step of a horizon, in physical units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
}

impl Quantiles {
    /// The same value at every quantile (a point forecast).
    pub const fn point(v: u64) -> Self {
        Self {
            p50: v,
            p90: v,
            p95: v,
            p99: v,
        }
    }

    /// Makes the quantiles non-decreasing (p50 ≤ p90 ≤ p95 ≤ p99), as quantiles must be.
    #[must_use]
    pub fn sorted(self) -> Self {
        let p90 = self.p90.max(self.p50);
        let p95 = self.p95.max(p90);
        Self {
            p50: self.p50,
            p90,
            p95,
            p99: self.p99.max(p95),
        }
    }

    /// Each quantile in shards of `kind`, rounded up (demand).
    pub fn shards(&self, sizes: &ShardSizes, kind: ResourceKind) -> Quantiles {
        let s = |v| sizes.demand_shards(kind, v);
        Quantiles {
            p50: s(self.p50),
            p90: s(self.p90),
            p95: s(self.p95),
            p99: s(self.p99),
        }
    }
}

/// How far ahead and how finely an RDV looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Horizon {
    /// Length of one step.
    pub step: Span,
    /// Number of steps.
    pub steps: u32,
}

impl Default for Horizon {
    /// One hour in five-minute steps.
    fn default() -> Self {
        Self {
            step: Span::from_secs(300),
            steps: 12,
        }
    }
}

/// One kind's forecast over a horizon: `steps[i]` is the demand during step `i + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindForecast {
    /// The kind.
    pub kind: ResourceKind,
    /// Quantiles per step, physical units.
    pub steps: Vec<Quantiles>,
}

/// Resource Demand Vector: one workload's forecast demand per kind over a horizon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rdv {
    /// When it was made.
    pub made_at: Timestamp,
    /// Its horizon.
    pub horizon: Horizon,
    /// One forecast per kind the workload uses.
    pub kinds: Vec<KindForecast>,
}

impl Rdv {
    /// The forecast for `kind`, if the workload has one.
    pub fn kind(&self, kind: ResourceKind) -> Option<&KindForecast> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Quantiles of `kind` for the step that contains `made_at + ahead` (clamped to the horizon).
    pub fn at(&self, kind: ResourceKind, ahead: Span) -> Option<Quantiles> {
        let f = self.kind(kind)?;
        let step = self.horizon.step.millis().max(1);
        let i =
            usize::try_from(ahead.millis().div_ceil(step).saturating_sub(1)).unwrap_or(usize::MAX);
        f.steps.get(i.min(f.steps.len().saturating_sub(1))).copied()
    }
}

impl Rdv {
    /// Per kind, the highest upper quantile (p99) over the steps that cover the next `over`
    /// (at least the first step), in shards rounded up; zero for kinds without a forecast.
    pub fn upper_shards(&self, sizes: &ShardSizes, over: Span) -> ShardVector {
        let step = self.horizon.step.millis().max(1);
        let n = usize::try_from(over.millis().div_ceil(step).max(1)).unwrap_or(usize::MAX);
        ShardVector::from_fn(|kind| {
            self.kind(kind).map_or(0, |f| {
                f.steps
                    .iter()
                    .take(n)
                    .map(|q| sizes.demand_shards(kind, q.p99))
                    .max()
                    .unwrap_or(0)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_convert_to_shards_rounding_up_and_stay_ordered() {
        let q = Quantiles {
            p50: 15,
            p90: 10,
            p95: 31,
            p99: 30,
        }
        .sorted();
        assert_eq!(
            q,
            Quantiles {
                p50: 15,
                p90: 15,
                p95: 31,
                p99: 31
            }
        );
        let s = q.shards(&ShardSizes::default(), ResourceKind::Cpu);
        assert_eq!(
            s,
            Quantiles {
                p50: 2,
                p90: 2,
                p95: 4,
                p99: 4
            }
        );
    }

    #[test]
    fn rdv_picks_the_step_containing_the_lead() {
        let steps = (1..=12).map(Quantiles::point).collect();
        let rdv = Rdv {
            made_at: Timestamp::EPOCH,
            horizon: Horizon::default(),
            kinds: vec![KindForecast {
                kind: ResourceKind::Cpu,
                steps,
            }],
        };
        assert_eq!(
            rdv.at(ResourceKind::Cpu, Span::from_secs(300)),
            Some(Quantiles::point(1))
        );
        assert_eq!(
            rdv.at(ResourceKind::Cpu, Span::from_secs(301)),
            Some(Quantiles::point(2))
        );
        assert_eq!(
            rdv.at(ResourceKind::Cpu, Span::from_secs(99_999)),
            Some(Quantiles::point(12))
        );
        assert_eq!(rdv.at(ResourceKind::Memory, Span::from_secs(300)), None);
    }
}
