//! The profiler: per workload and kind, one forecaster fed the workload's samples in time
//! order, and the engine's [`Demand`]s built from them. `shardex run` and `shardex simulate`
//! both use it, so the two loops forecast the same way.
//!
//! # Rules
//! * A **censored** sample (the workload was held at a limit) is a lower bound on demand: it is
//!   not fed to the forecaster (which would learn "demand = limit"); the kind is marked
//!   censored until the next decision, which then doubles what the workload may use.
//! * An **OOM kill** raises the memory forecast to at least 1.2 × the limit it was killed at,
//!   for `oom_hold` (a day). The floor comes from the limit the kernel enforced, never from the
//!   previous floor, so one OOM never inflates the next (the feedback loop of
//!   kubernetes/autoscaler#9521).
//! * A workload's last usage and its cap (its provisioned size, in `simulate`) go into its
//!   demand; a workload that left takes its forecasters with it ([`Profiler::retain`]).

use std::collections::{BTreeMap, HashMap};

use shardex_core::engine::Demand;
use shardex_core::ports::{Causal, Forecaster, Reading};
use shardex_core::{
    Horizon, KindForecast, Quantiles, Rdv, ResourceKind, Sample, ShardSizes, ShardVector,
    Timestamp, WorkloadId,
};

/// Builds a workload's forecaster for one kind.
pub type Factory = Box<dyn Fn(ResourceKind) -> Box<dyn Forecaster> + Send>;

pub use shardex_core::censoring::{OOM_BUMP_PCT, OOM_HOLD};

/// What the profiler knows of one workload besides its forecasters.
#[derive(Debug, Clone, Default)]
struct Profile {
    /// The last usage measured, in shards (rounded up).
    usage: ShardVector,
    /// Per kind, whether it was held at a limit since the last decision.
    censored: [bool; 4],
    /// Per kind, the highest usage seen while held at a limit since the last decision: demand
    /// is at least that.
    lower_bound: [Option<u64>; 4],
    /// The memory floor after an OOM kill (bytes) and until when it holds.
    oom_floor: Option<(u64, Timestamp)>,
    /// The most it may hold.
    cap: Option<ShardVector>,
    /// Samples fed since it was first seen.
    samples: u64,
}

/// The forecasters and profiles of every workload.
pub struct Profiler {
    factory: Factory,
    forecasters: HashMap<(WorkloadId, ResourceKind), Causal<Box<dyn Forecaster>>>,
    profiles: HashMap<WorkloadId, Profile>,
    sizes: ShardSizes,
}

impl Profiler {
    /// A profiler whose forecasters come from `factory`.
    pub fn new(factory: Factory, sizes: ShardSizes) -> Self {
        Self {
            factory,
            forecasters: HashMap::new(),
            profiles: HashMap::new(),
            sizes,
        }
    }

    /// Feeds one reading of `workload` taken at `time`, with the hard limits that were in
    /// force (physical units; `None`: unknown or unlimited). Returns whether any kind was fed
    /// to its forecaster (a reading older than one already seen is not).
    pub fn observe(
        &mut self,
        workload: WorkloadId,
        time: Timestamp,
        reading: &Reading,
        limits: [Option<u64>; 4],
    ) -> bool {
        let profile = self.profiles.entry(workload).or_default();
        let mut fed = false;
        for kind in ResourceKind::ALL {
            let i = kind.index();
            let Some(value) = reading.usage[i] else {
                continue;
            };
            profile.usage = profile
                .usage
                .with(kind, self.sizes.demand_shards(kind, value));
            if reading.censored[i] {
                profile.censored[i] = true;
                profile.lower_bound[i] = Some(profile.lower_bound[i].unwrap_or(0).max(value));
                continue;
            }
            let f = self
                .forecasters
                .entry((workload, kind))
                .or_insert_with(|| Causal::new((self.factory)(kind)));
            fed |= f.observe(Sample { time, value }, limits[i]).is_ok();
        }
        if fed {
            profile.samples += 1;
        }
        fed
    }

    /// Records an OOM kill of `workload` at `limit` bytes: its memory forecast stays at least
    /// [`OOM_BUMP_PCT`] above that limit for [`OOM_HOLD`].
    pub fn oom(&mut self, workload: WorkloadId, limit: u64, now: Timestamp) {
        let floor = shardex_core::censoring::oom_floor(limit);
        let until = now.checked_add(OOM_HOLD).unwrap_or(now);
        let p = self.profiles.entry(workload).or_default();
        // From the limit the kernel enforced, never from the previous floor.
        p.oom_floor = Some(match p.oom_floor {
            Some((old, _)) if old > floor => (old, until),
            _ => (floor, until),
        });
        p.censored[ResourceKind::Memory.index()] = true;
    }

    /// Gives `workload` its own forecaster for `kind` (e.g. one that needs the workload's
    /// provisioned size), instead of the factory's.
    pub fn install(&mut self, workload: WorkloadId, kind: ResourceKind, f: Box<dyn Forecaster>) {
        self.forecasters.insert((workload, kind), Causal::new(f));
    }

    /// Sets what `workload` is taken to use before its first sample, in shards.
    pub fn set_usage(&mut self, workload: WorkloadId, usage: ShardVector) {
        self.profiles.entry(workload).or_default().usage = usage;
    }

    /// Forgets `workload` (it left).
    pub fn forget(&mut self, workload: WorkloadId) {
        self.retain(|w| w != workload);
    }

    /// Caps what `workload` may hold (its provisioned size).
    pub fn set_cap(&mut self, workload: WorkloadId, cap: ShardVector) {
        self.profiles.entry(workload).or_default().cap = Some(cap);
    }

    /// Keeps only the workloads `keep` says still exist.
    pub fn retain(&mut self, mut keep: impl FnMut(WorkloadId) -> bool) {
        self.forecasters.retain(|(w, _), _| keep(*w));
        self.profiles.retain(|w, _| keep(*w));
    }

    /// Renames a workload (a move gives it a new id on its new host).
    pub fn rename(&mut self, from: WorkloadId, to: WorkloadId) {
        for kind in ResourceKind::ALL {
            if let Some(f) = self.forecasters.remove(&(from, kind)) {
                self.forecasters.insert((to, kind), f);
            }
        }
        if let Some(p) = self.profiles.remove(&from) {
            self.profiles.insert(to, p);
        }
    }

    /// Whether any kind of `workload` was censored since the last decision.
    pub fn censored(&self, workload: WorkloadId) -> [bool; 4] {
        self.profiles
            .get(&workload)
            .map(|p| p.censored)
            .unwrap_or_default()
    }

    /// Samples fed for `workload` so far.
    pub fn samples(&self, workload: WorkloadId) -> u64 {
        self.profiles.get(&workload).map_or(0, |p| p.samples)
    }

    /// The last usage of `workload`, in shards.
    pub fn usage(&self, workload: WorkloadId) -> Option<ShardVector> {
        self.profiles.get(&workload).map(|p| p.usage)
    }

    /// The forecast of one workload for `steps` of `step` after `decide_at`, from samples
    /// before it only.
    pub fn rdv(
        &mut self,
        workload: WorkloadId,
        decide_at: Timestamp,
        horizon: Horizon,
    ) -> Option<Rdv> {
        let mut rdv = Rdv {
            made_at: decide_at,
            horizon,
            kinds: Vec::new(),
        };
        let floor = self
            .profiles
            .get(&workload)
            .and_then(|p| p.oom_floor)
            .filter(|&(_, until)| until > decide_at)
            .map(|(b, _)| b);
        let bounds = self
            .profiles
            .get(&workload)
            .map(|p| p.lower_bound)
            .unwrap_or_default();
        for kind in ResourceKind::ALL {
            let forecast = self
                .forecasters
                .get_mut(&(workload, kind))
                .and_then(|f| f.forecast(decide_at, horizon).ok());
            let mut lowest = bounds[kind.index()];
            if kind == ResourceKind::Memory {
                lowest = lowest.max(floor);
            }
            let mut steps = match (forecast, lowest) {
                (Some(steps), _) => steps,
                // Only censored samples so far: the lower bound is all that is known.
                (None, Some(b)) => vec![Quantiles::point(b); horizon.steps.max(1) as usize],
                (None, None) => continue,
            };
            if let Some(b) = lowest {
                for q in &mut steps {
                    q.p50 = q.p50.max(b);
                    q.p90 = q.p90.max(b);
                    q.p95 = q.p95.max(b);
                    q.p99 = q.p99.max(b);
                }
            }
            rdv.kinds.push(KindForecast { kind, steps });
        }
        (!rdv.kinds.is_empty()).then_some(rdv)
    }

    /// The engine's demands of `workloads` for a decision at `decide_at` (from samples before
    /// it), one step of `step` ahead; clears the censored marks, which the demand carries.
    pub fn demands(
        &mut self,
        workloads: impl IntoIterator<Item = WorkloadId>,
        decide_at: Timestamp,
        horizon: Horizon,
    ) -> BTreeMap<WorkloadId, Demand> {
        let mut out = BTreeMap::new();
        for w in workloads {
            let Some(rdv) = self.rdv(w, decide_at, horizon) else {
                continue;
            };
            let p = self.profiles.entry(w).or_default();
            p.lower_bound = [None; 4];
            out.insert(
                w,
                Demand {
                    rdv,
                    usage: p.usage,
                    cap: p.cap,
                    censored: std::mem::take(&mut p.censored),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::Span;
    use shardex_forecast::Policy;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    fn profiler() -> Profiler {
        Profiler::new(
            Box::new(|kind| {
                Policy::Reactive
                    .build(kind, None, &Default::default())
                    .unwrap()
            }),
            ShardSizes::default(),
        )
    }

    fn reading(cpu: u64, censored: bool) -> Reading {
        Reading {
            usage: [Some(cpu), Some(64 << 20), None, None],
            censored: [censored, false, false, false],
            oom_kills: 0,
        }
    }

    const W: WorkloadId = WorkloadId(1);

    fn horizon() -> Horizon {
        Horizon {
            step: Span::from_secs(60),
            steps: 1,
        }
    }

    #[test]
    fn a_censored_sample_is_not_learned_as_demand_and_marks_the_demand() {
        let mut p = profiler();
        p.observe(
            W,
            t(0),
            &reading(200, false),
            [Some(1500), None, None, None],
        );
        // Held at 300 millicores: the forecaster must not learn 300 as the demand.
        p.observe(W, t(10), &reading(300, true), [Some(300), None, None, None]);
        let d = p.demands([W], t(11), horizon());
        let d = &d[&W];
        assert!(d.censored[0] && !d.censored[1]);
        // This decision knows demand is at least the 300 it was held at...
        let cpu = d.rdv.at(ResourceKind::Cpu, Span::from_secs(60)).unwrap();
        assert!(cpu.p50 >= 300, "{cpu:?}");
        // ...but the forecaster never learned 300 as demand: the next one, with the mark gone
        // with the decision, forecasts from the uncensored 200 only.
        let next = p.demands([W], t(12), horizon());
        assert!(!next[&W].censored[0]);
        let cpu = next[&W]
            .rdv
            .at(ResourceKind::Cpu, Span::from_secs(60))
            .unwrap();
        assert!(cpu.p99 < 300, "learned from the censored sample: {cpu:?}");
        // Both readings fed memory (not censored); only the first fed cpu.
        assert_eq!(p.samples(W), 2);
    }

    #[test]
    fn an_oom_floor_comes_from_the_limit_and_never_compounds() {
        let mut p = profiler();
        p.observe(W, t(0), &reading(100, false), [None; 4]);
        let before = p
            .rdv(W, t(1), horizon())
            .unwrap()
            .at(ResourceKind::Memory, Span::from_secs(60))
            .unwrap()
            .p50;
        assert!(before < 120 << 20);
        p.oom(W, 100 << 20, t(5));
        let mem = |p: &mut Profiler, at| {
            p.rdv(W, at, horizon())
                .unwrap()
                .at(ResourceKind::Memory, Span::from_secs(60))
                .unwrap()
                .p50
        };
        assert_eq!(mem(&mut p, t(6)), 120 << 20);
        // A second OOM at the same limit keeps the same floor: no feedback.
        p.oom(W, 100 << 20, t(7));
        assert_eq!(mem(&mut p, t(8)), 120 << 20);
        // It lapses after a day.
        assert_eq!(mem(&mut p, t(7 + 86_401)), before);
        p.retain(|_| false);
        assert!(p.rdv(W, t(9), horizon()).is_none());
    }
}
