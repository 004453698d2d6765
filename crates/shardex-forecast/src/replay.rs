//! The yardstick: drive policies through a recorded trace and measure their allocations.
//!
//! For each workload, kind and policy, the allocation in force for the sample at time `t` is
//! what the policy recommended at `t − lead`, having been fed only the samples measured strictly
//! before that moment (through [`Causal`], which refuses anything else), rounded up to whole
//! shards. Samples in the first `warmup` of a workload are fed but not scored, for every
//! policy alike.
//!
//! **Closed loop** (the default, [`Loop::ClosedLoop`]): each policy is fed what a host would show
//! it under its own allocations, not the trace's true usage. Cpu, net and iops above the
//! allocation in force are throttled: the policy sees the allocation and a throttled flag
//! ([`shardex_core::ports::Forecaster::observe_limited`]). Memory above it is an OOM kill: the
//! policy sees the event and the limit, never the usage; the workload is taken to restart and
//! goes on at the trace's next value. Every figure is still measured against the true usage.
//! In a workload's warm-up (not scored) it runs on what it reserved, so every policy sees its
//! true usage there: a policy is not judged on a start it had no data for.
//! [`Loop::OpenLoop`] feeds every policy the true usage (the figures before closed loops).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use shardex_core::ports::{Causal, Forecaster, Peeking};
use shardex_core::{Horizon, PriceTable, ResourceKind, Sample, ShardSizes, Span, Timestamp};

use crate::Policy;

/// One row of a trace: a time and what was measured then (None: not measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRow {
    /// When.
    pub time: Timestamp,
    /// Per kind, in `ResourceKind::ALL` order, physical units.
    pub values: [Option<u64>; 4],
}

/// One workload of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadTrace {
    /// Its name.
    pub name: String,
    /// What it was provisioned with, per kind, if known.
    pub provisioned: [Option<u64>; 4],
    /// Its rows, in time order.
    pub rows: Vec<TraceRow>,
}

/// What the policies are fed (see the module's doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loop {
    /// What a host shows: usage capped at the allocation, OOM kills as events.
    #[default]
    ClosedLoop,
    /// The trace's true usage, whatever the allocation was.
    OpenLoop,
}

impl Loop {
    /// Its name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Loop::ClosedLoop => "closed_loop",
            Loop::OpenLoop => "open_loop",
        }
    }
}

/// What a replay runs and how.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// What the policies are fed.
    pub mode: Loop,
    /// Policies to compare.
    pub policies: Vec<Policy>,
    /// Kinds to score.
    pub kinds: Vec<ResourceKind>,
    /// Actuation lead time: decisions are made this long before they take effect.
    pub lead: Span,
    /// Scored from this long after a workload's first sample.
    pub warmup: Span,
    /// Shard sizes allocations are rounded to.
    pub sizes: ShardSizes,
    /// Prices for the cost figure.
    pub prices: PriceTable,
    /// Parameters of the shardex policy.
    pub shardex: crate::adaptive::Params,
}

/// Running sums for one policy and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Samples scored.
    pub samples: u64,
    /// Samples where use exceeded the allocation.
    pub shortfall_samples: u64,
    /// Σ allocated.
    pub allocated: u128,
    /// Σ used.
    pub used: u128,
    /// Σ (allocated − used)⁺.
    pub slack: u128,
    /// Σ (used − allocated)⁺.
    pub shortfall_volume: u128,
    /// Allocation changes between consecutive scored samples.
    pub changes: u64,
    /// Σ time each scored sample stands for, ms.
    pub interval_ms: u128,
    /// Σ allocated shards × interval, shard-ms (for cost).
    pub shard_ms: u128,
    /// Scored samples that had a p95 forecast.
    pub p95_samples: u64,
    /// Of those, samples at or under it.
    pub p95_covered: u64,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.samples += o.samples;
        self.shortfall_samples += o.shortfall_samples;
        self.allocated += o.allocated;
        self.used += o.used;
        self.slack += o.slack;
        self.shortfall_volume += o.shortfall_volume;
        self.changes += o.changes;
        self.interval_ms += o.interval_ms;
        self.shard_ms += o.shard_ms;
        self.p95_samples += o.p95_samples;
        self.p95_covered += o.p95_covered;
    }

    /// The figures of this tally.
    pub fn figures(&self) -> KindFigures {
        let pct = |a: u128, b: u128| {
            if b == 0 {
                0.0
            } else {
                round3(a as f64 / b as f64 * 100.0)
            }
        };
        let hours = self.interval_ms as f64 / 3_600_000.0;
        KindFigures {
            slack_pct: pct(self.slack, self.allocated),
            shortfall_samples_pct: pct(
                u128::from(self.shortfall_samples),
                u128::from(self.samples),
            ),
            shortfall_volume_pct: pct(self.shortfall_volume, self.used),
            changes_per_hour: if hours > 0.0 {
                round3(self.changes as f64 / hours)
            } else {
                0.0
            },
            coverage_p95_pct: (self.p95_samples > 0)
                .then(|| pct(u128::from(self.p95_covered), u128::from(self.p95_samples))),
            samples: self.samples,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The reported figures for one policy and kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindFigures {
    /// Σ(allocated − used)⁺ / Σ allocated × 100.
    pub slack_pct: f64,
    /// Share of samples with used > allocated × 100.
    pub shortfall_samples_pct: f64,
    /// Σ(used − allocated)⁺ / Σ used × 100.
    pub shortfall_volume_pct: f64,
    /// Allocation changes per workload-hour.
    pub changes_per_hour: f64,
    /// Share of samples at or under the p95 forecast, for policies with quantiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage_p95_pct: Option<f64>,
    /// Samples scored.
    pub samples: u64,
}

/// Tallies per policy and kind; merge the results of many workloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies(pub BTreeMap<(Policy, ResourceKind), Tally>);

impl Tallies {
    /// Adds another set of tallies into this one.
    pub fn merge(&mut self, other: &Tallies) {
        for (key, t) in &other.0 {
            self.0.entry(*key).or_default().merge(t);
        }
    }

    /// Total scored samples (over every policy and kind).
    pub fn samples(&self) -> u64 {
        self.0.values().map(|t| t.samples).sum()
    }
}

/// One point of a workload's plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlotPoint {
    /// Time of the sample.
    pub time: Timestamp,
    /// Kind.
    pub kind: ResourceKind,
    /// Used.
    pub used: u64,
    /// Allocation per policy, in `ReplayConfig::policies` order (None: policy can't serve).
    pub allocated: Vec<Option<u64>>,
    /// The shardex policy's p50, p95 and p99 for this sample, if it ran.
    pub band: Option<(u64, u64, u64)>,
}

struct Runner {
    policy: Policy,
    causal: Causal<Box<dyn Forecaster>>,
    fed: usize,
    allocations: Vec<u64>,
    last_scored: Option<u64>,
    tally: Tally,
}

/// Median gap between consecutive samples (the nominal step), at least 1 ms.
fn nominal_step(times: &[Timestamp]) -> u64 {
    let mut gaps: Vec<u64> = times
        .windows(2)
        .map(|w| w[1].since(w[0]).millis())
        .collect();
    if gaps.is_empty() {
        return 300_000;
    }
    let mid = gaps.len() / 2;
    *gaps.select_nth_unstable(mid).1.max(&mut 1)
}

/// What a policy is shown of one sample measured under `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// The sample as measured.
    Sample(Sample),
    /// Held at the limit: throttled, or (`oom`) killed for going past it.
    Limited {
        /// When.
        time: Timestamp,
        /// The allocation in force.
        limit: u64,
        /// Memory past its limit: an OOM kill.
        oom: bool,
    },
}

/// The censoring rule: in a closed loop a sample above its allocation is shown as held at it
/// (memory: an OOM kill); in an open loop every sample is shown as measured.
pub fn shown(mode: Loop, kind: ResourceKind, sample: Sample, limit: u64) -> Shown {
    match mode {
        Loop::ClosedLoop if sample.value > limit => Shown::Limited {
            time: sample.time,
            limit,
            oom: kind == ResourceKind::Memory,
        },
        _ => Shown::Sample(sample),
    }
}

/// Replays one workload; returns its tallies (and plot points when `plot` is set).
pub fn replay_workload(
    trace: &WorkloadTrace,
    config: &ReplayConfig,
    mut plot: Option<&mut Vec<PlotPoint>>,
) -> Result<Tallies, Peeking> {
    let mut tallies = Tallies::default();
    for &kind in &config.kinds {
        let series: Vec<Sample> = trace
            .rows
            .iter()
            .filter_map(|r| {
                r.values[kind.index()].map(|value| Sample {
                    time: r.time,
                    value,
                })
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let times: Vec<Timestamp> = series.iter().map(|s| s.time).collect();
        let step = nominal_step(&times);
        let scored_from = series[0]
            .time
            .checked_add(config.warmup)
            .unwrap_or(Timestamp::EPOCH);
        let shard = config.sizes.size(kind);
        let mut runners: Vec<Option<Runner>> = config
            .policies
            .iter()
            .map(|&policy| {
                policy
                    .build(kind, trace.provisioned[kind.index()], &config.shardex)
                    .map(|f| Runner {
                        policy,
                        causal: Causal::new(f),
                        fed: 0,
                        allocations: Vec::with_capacity(series.len()),
                        last_scored: None,
                        tally: Tally::default(),
                    })
            })
            .collect();
        let one_step = Horizon {
            step: config.lead,
            steps: 1,
        };
        for (i, sample) in series.iter().enumerate() {
            let decided_at = Timestamp::from_millis(
                sample
                    .time
                    .millis()
                    .saturating_sub(i64::try_from(config.lead.millis()).unwrap_or(i64::MAX)),
            )
            .unwrap_or(Timestamp::EPOCH);
            let scored = sample.time >= scored_from;
            let interval = series
                .get(i + 1)
                .map_or(step, |n| n.time.since(sample.time).millis().min(step));
            let mut point_allocs = Vec::new();
            let mut band = None;
            for runner in runners.iter_mut() {
                let Some(r) = runner.as_mut() else {
                    point_allocs.push(None);
                    continue;
                };
                // Feed everything measured strictly before the decision, with the allocation
                // that was in force for it.
                while r.fed < i && series[r.fed].time < decided_at {
                    let limit = r.allocations[r.fed];
                    // In its warm-up a workload runs on what it reserved: nothing held back.
                    let mode = if series[r.fed].time < scored_from {
                        Loop::OpenLoop
                    } else {
                        config.mode
                    };
                    match shown(mode, kind, series[r.fed], limit) {
                        Shown::Sample(s) => r.causal.observe(s, Some(limit))?,
                        Shown::Limited { time, limit, oom } => {
                            r.causal.observe_limited(time, limit, oom)?;
                        }
                    }
                    r.fed += 1;
                }
                let raw = r.causal.recommend(decided_at, config.lead)?;
                let shards = config.sizes.demand_shards(kind, raw);
                let allocated = shards.saturating_mul(shard);
                r.allocations.push(allocated);
                point_allocs.push(Some(allocated));
                let quantiles = if r.causal.has_quantiles() {
                    r.causal.forecast(decided_at, one_step)?.first().copied()
                } else {
                    None
                };
                if r.policy == Policy::Shardex {
                    band = quantiles.map(|q| (q.p50, q.p95, q.p99));
                }
                if !scored {
                    continue;
                }
                let used = sample.value;
                let t = &mut r.tally;
                t.samples += 1;
                t.allocated += u128::from(allocated);
                t.used += u128::from(used);
                t.slack += u128::from(allocated.saturating_sub(used));
                t.shortfall_volume += u128::from(used.saturating_sub(allocated));
                if used > allocated {
                    t.shortfall_samples += 1;
                }
                if r.last_scored.is_some_and(|p| p != allocated) {
                    t.changes += 1;
                }
                r.last_scored = Some(allocated);
                t.interval_ms += u128::from(interval);
                t.shard_ms += u128::from(shards) * u128::from(interval);
                if let Some(q) = quantiles {
                    t.p95_samples += 1;
                    if used <= q.p95 {
                        t.p95_covered += 1;
                    }
                }
            }
            if let Some(points) = plot.as_deref_mut() {
                points.push(PlotPoint {
                    time: sample.time,
                    kind,
                    used: sample.value,
                    allocated: point_allocs,
                    band,
                });
            }
        }
        for r in runners.into_iter().flatten() {
            tallies
                .0
                .entry((r.policy, kind))
                .or_default()
                .merge(&r.tally);
        }
    }
    Ok(tallies)
}

/// The report of a whole replay, in the shape other tools read.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What the policies were fed: `closed_loop` or `open_loop`.
    pub mode: Loop,
    /// The trace's name.
    pub trace: String,
    /// One entry per policy.
    pub policies: Vec<PolicyReport>,
}

/// One policy's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Policy name.
    pub name: String,
    /// Figures per kind.
    pub kinds: BTreeMap<String, KindFigures>,
    /// Allocated shard-hours priced with the price table (rounded to cents).
    pub cost: f64,
    /// The same, exact.
    pub cost_exact: String,
    /// The `static` policy's cost over the same samples, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_cost: Option<f64>,
}

impl Report {
    /// Builds the report from merged tallies.
    pub fn new(trace: &str, config: &ReplayConfig, tallies: &Tallies) -> Self {
        let cost_of = |policy: Policy| -> Option<Decimal> {
            let mut total = Decimal::ZERO;
            let mut any = false;
            for &kind in &config.kinds {
                if let Some(t) = tallies.0.get(&(policy, kind)) {
                    any = true;
                    total += config.prices.cost(kind, t.shard_ms)?;
                }
            }
            any.then_some(total)
        };
        let to_f64 = |d: Decimal| d.round_dp(2).to_string().parse::<f64>().unwrap_or(0.0);
        let static_cost = cost_of(Policy::Static).map(to_f64);
        let policies = config
            .policies
            .iter()
            .map(|&p| {
                let kinds = config
                    .kinds
                    .iter()
                    .filter_map(|&k| {
                        tallies
                            .0
                            .get(&(p, k))
                            .map(|t| (k.name().to_string(), t.figures()))
                    })
                    .collect();
                let cost = cost_of(p).unwrap_or_default();
                PolicyReport {
                    name: p.name().to_string(),
                    kinds,
                    cost: to_f64(cost),
                    cost_exact: cost.to_string(),
                    static_cost,
                }
            })
            .collect();
        Report {
            mode: config.mode,
            trace: trace.to_string(),
            policies,
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

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    fn config(policies: Vec<Policy>) -> ReplayConfig {
        ReplayConfig {
            mode: Loop::OpenLoop,
            policies,
            kinds: vec![ResourceKind::Cpu],
            lead: Span::from_secs(300),
            warmup: Span::from_secs(0),
            sizes: ShardSizes::default(),
            prices: PriceTable::default(),
            shardex: crate::adaptive::Params::default(),
        }
    }

    fn cpu_trace(values: &[u64], provisioned: Option<u64>) -> WorkloadTrace {
        WorkloadTrace {
            name: "w".into(),
            provisioned: [provisioned, None, None, None],
            rows: values
                .iter()
                .enumerate()
                .map(|(i, &v)| TraceRow {
                    time: t(i as i64 * 300),
                    values: [Some(v), None, None, None],
                })
                .collect(),
        }
    }

    #[test]
    fn metrics_match_a_hand_computed_series() {
        // Static 100 millicores against uses 50, 100, 150, 100 (cpu shards are 10 millicores).
        let trace = cpu_trace(&[50, 100, 150, 100], Some(100));
        let tallies = replay_workload(&trace, &config(vec![Policy::Static]), None).unwrap();
        let t = &tallies.0[&(Policy::Static, ResourceKind::Cpu)];
        assert_eq!((t.samples, t.allocated, t.used), (4, 400, 400));
        assert_eq!(
            (t.slack, t.shortfall_volume, t.shortfall_samples),
            (50, 50, 1)
        );
        let f = t.figures();
        assert_eq!(f.slack_pct, 12.5); // 50 / 400
        assert_eq!(f.shortfall_samples_pct, 25.0); // 1 of 4
        assert_eq!(f.shortfall_volume_pct, 12.5); // 50 / 400
        assert_eq!(f.changes_per_hour, 0.0);
        // 4 samples × 5 minutes × 10 shards = 200 shard-minutes = 10/3 shard-hours.
        assert_eq!(t.shard_ms, 10 * 4 * 300_000);
    }

    #[test]
    fn reactive_cannot_anticipate_a_spike() {
        // Flat 100, then a spike to 1000 at the 10th sample. With a 5-minute lead the decision
        // for the spike is made at the 9th sample's time, from samples before it only.
        let mut values = vec![100; 12];
        values[10] = 1000;
        let trace = cpu_trace(&values, None);
        let mut points = Vec::new();
        replay_workload(&trace, &config(vec![Policy::Reactive]), Some(&mut points)).unwrap();
        assert_eq!(
            points[10].allocated[0],
            Some(120),
            "decided from the flat past: 100 + 20%"
        );
        assert!(points[10].used > points[10].allocated[0].unwrap());
        // The spike is seen two samples later (measured at t, usable strictly after t).
        assert_eq!(points[12 - 1].allocated[0], Some(120));
    }

    #[test]
    fn changes_count_allocation_moves_per_workload_hour() {
        // Reactive follows 100, 200, 100, 200 ... with the lead, so it changes every sample.
        let values: Vec<u64> = (0..14)
            .map(|i| if i % 2 == 0 { 100 } else { 200 })
            .collect();
        let trace = cpu_trace(&values, None);
        let tallies = replay_workload(&trace, &config(vec![Policy::Reactive]), None).unwrap();
        let f = tallies.0[&(Policy::Reactive, ResourceKind::Cpu)].figures();
        // 14 samples = 14 × 5 min = 70 min. The first two decisions have no past (0), then
        // 120, 240, 120, ...: a move at every sample from the 3rd on, 12 in all.
        assert!(
            (f.changes_per_hour - 12.0 / (70.0 / 60.0)).abs() < 0.01,
            "{f:?}"
        );
    }

    #[test]
    fn a_forecaster_cannot_be_handed_a_future_sample() {
        let mut c =
            Causal::new(Box::new(crate::reactive::Reactive::new(0.2)) as Box<dyn Forecaster>);
        c.observe(
            Sample {
                time: t(1000),
                value: 5,
            },
            None,
        )
        .unwrap();
        assert!(
            c.recommend(t(1000), Span::from_secs(300)).is_err(),
            "a sample from the decision's own moment"
        );
        assert!(c.recommend(t(900), Span::from_secs(300)).is_err());
        assert!(
            c.observe(
                Sample {
                    time: t(500),
                    value: 5
                },
                None
            )
            .is_err(),
            "out of order"
        );
        assert!(c.recommend(t(1001), Span::from_secs(300)).is_ok());
    }

    #[test]
    fn closed_loop_shows_no_sample_above_its_allocation_and_memory_past_it_is_an_oom() {
        let at = |v: u64| Sample {
            time: t(600),
            value: v,
        };
        for kind in [ResourceKind::Cpu, ResourceKind::Net, ResourceKind::Iops] {
            assert_eq!(
                shown(Loop::ClosedLoop, kind, at(250), 200),
                Shown::Limited {
                    time: t(600),
                    limit: 200,
                    oom: false
                },
                "{kind}: throttled at the quota"
            );
        }
        assert_eq!(
            shown(Loop::ClosedLoop, ResourceKind::Memory, at(250), 200),
            Shown::Limited {
                time: t(600),
                limit: 200,
                oom: true
            }
        );
        for v in [0, 150, 200] {
            assert_eq!(
                shown(Loop::ClosedLoop, ResourceKind::Memory, at(v), 200),
                Shown::Sample(at(v))
            );
        }
        assert_eq!(
            shown(Loop::OpenLoop, ResourceKind::Cpu, at(250), 200),
            Shown::Sample(at(250))
        );
    }

    #[test]
    fn in_a_closed_loop_a_policy_learns_only_what_its_allocation_let_through() {
        // Reactive (last value + 20 %) under a spike from 100 to 1000 millicores, five minutes
        // of lead: open loop it sees 1000 and asks for 1200; closed loop it was held at 120 and
        // climbs from what it saw: 144, 173, ... Scores use the true usage either way.
        // The first hour (12 samples) is warm-up: seen as measured.
        let mut values = vec![100; 14];
        values.extend([1000; 6]);
        let trace = cpu_trace(&values, None);
        let mut cfg = config(vec![Policy::Reactive]);
        cfg.warmup = Span::from_secs(3600);
        let mut open = Vec::new();
        replay_workload(&trace, &cfg, Some(&mut open)).unwrap();
        cfg.mode = Loop::ClosedLoop;
        let mut closed = Vec::new();
        let tallies = replay_workload(&trace, &cfg, Some(&mut closed)).unwrap();
        assert_eq!(open[16].allocated[0], Some(1200));
        // Sample 14 (1000) was held at 120: seen as 120, + 20 % = 144, whole shards: 150.
        assert_eq!(closed[14].allocated[0], Some(120));
        assert_eq!(closed[16].allocated[0], Some(150));
        assert_eq!(closed[18].allocated[0], Some(180));
        let f = tallies.0[&(Policy::Reactive, ResourceKind::Cpu)].figures();
        assert_eq!(f.shortfall_samples_pct, 75.0, "6 of 8 scored samples short");
    }

    #[test]
    fn warmup_is_excluded_for_every_policy_alike() {
        let trace = cpu_trace(&[100; 24], Some(100));
        let mut cfg = config(vec![Policy::Static, Policy::Reactive]);
        cfg.warmup = Span::from_secs(3600);
        let tallies = replay_workload(&trace, &cfg, None).unwrap();
        for p in [Policy::Static, Policy::Reactive] {
            assert_eq!(tallies.0[&(p, ResourceKind::Cpu)].samples, 12);
        }
    }
}
