//! The loop's steps: sample → profile → (raise censored workloads at once) → forecast and
//! decide → commit → actuate → read back. Each step is a function of the ledger, the ports and
//! the time it is given; the daemon calls them on its clock, a test on a fixed one, and none of
//! them holds the store.
//!
//! # Rules
//! * **Sampling** every workload bound in the ledger; a name the sampler can't resolve is
//!   reported (once, until it resolves), not silently skipped.
//! * **Censored at once**: a workload held at a limit gets, in the same sample step, its share
//!   raised to all the room its reservation has (its soft knobs follow, and its idle shards are
//!   no longer offered) and every lease its reservation lent that carries that kind reclaimed
//!   (with the notice): it has its whole entitlement back within the notice plus one sample
//!   period. Memory counts as held at its limit on an OOM kill, or when the kernel's limit
//!   counter or its memory stall (v2 PSI `memory.pressure` `full`) rose while usage was
//!   within `memory_censor_pct` of the limit in force (page cache alone fills a cgroup up to
//!   its limit without any demand). IOPS count as held when usage is within
//!   `iops_censor_pct` of the limit in force (the kernel counts no IOPS throttling; v1 has no
//!   other sign), or when its I/O stall (v2 `io.pressure` `full`) rose with usage within
//!   `memory_censor_pct` of it.
//! * **Deciding** on a copy of the ledger, from samples before the decision only; the tick's
//!   actions are committed as one transaction by the caller, who reports back with
//!   [`Agent::committed`]: when it was refused, the controller forgets the tick.
//! * A decision identical to the last one recorded for that workload and kind is not
//!   recorded again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use shardex_core::action;
use shardex_core::control::{Controller, ControllerState};
use shardex_core::engine::Decision;
use shardex_core::ports::{Actuator, Migrator, Provisioner, Reading, Sampler};
use shardex_core::{
    Action, Horizon, HostId, Ledger, Lender, ResourceKind, ShardSizes, ShardVector, Span,
    Timestamp, WorkloadId,
};

use crate::profiler::Profiler;
use crate::reconcile::{Actuation, ReconcileParams, Reconciler};
use crate::targets::Targets;

/// How the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentParams {
    /// Shard sizes.
    pub sizes: ShardSizes,
    /// How often it decides: the forecast is read this far ahead.
    pub decide_every: Span,
    /// Act (commit and actuate) or only recommend.
    pub act: bool,
    /// Reconciliation.
    pub reconcile: ReconcileParams,
    /// A memory limit counter counts as censoring only with usage this close to the limit,
    /// in percent of it.
    pub memory_censor_pct: u64,
    /// IOPS this close to the limit in force, in percent of it, count as held there.
    pub iops_censor_pct: u64,
    /// Only the workloads of this host (fleet mode: a broker plans one host, an agent limits
    /// its own); `None`: every workload in the ledger (`shardex run`, one host).
    pub host: Option<HostId>,
}

impl AgentParams {
    /// Acting or recommending every `decide_every`, with the default reconciliation.
    pub fn new(sizes: ShardSizes, decide_every: Span, act: bool) -> Self {
        Self {
            sizes,
            decide_every,
            act,
            reconcile: ReconcileParams::default(),
            memory_censor_pct: 95,
            iops_censor_pct: 98,
            host: None,
        }
    }
}

/// An OOM kill inside a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Oom {
    /// The workload.
    pub workload: WorkloadId,
    /// Its name.
    pub name: String,
    /// When it was seen.
    pub at: Timestamp,
    /// How many kills since the previous sample.
    pub kills: u64,
    /// The memory limit in force then, bytes (`None`: unlimited or unknown).
    pub limit: Option<u64>,
}

/// What one sample step saw.
#[derive(Debug, Clone, Default)]
pub struct Sampled {
    /// Every reading, to keep as the workloads' history.
    pub readings: Vec<(WorkloadId, Timestamp, Reading)>,
    /// Kinds held at their limit.
    pub censored: Vec<(WorkloadId, ResourceKind)>,
    /// OOM kills.
    pub ooms: Vec<Oom>,
    /// Workloads whose names the sampler can't resolve, reported once each.
    pub unresolved: Vec<(WorkloadId, String)>,
    /// Sampler failures.
    pub errors: Vec<String>,
    /// What raises the censored workloads at once: commit these (act mode only).
    pub raise: Vec<Action>,
}

/// What one decision step made.
#[must_use]
#[derive(Debug, Clone)]
pub struct Decided {
    /// The moment decided for.
    pub at: Timestamp,
    /// The tick's actions, to commit in order as one transaction.
    pub actions: Vec<(Action, Timestamp)>,
    /// New decisions, with their reasons.
    pub decisions: Vec<Decision>,
    /// Problems and recommendations the tick could not carry out (e.g. a move without a
    /// migrator), new ones only.
    pub problems: Vec<String>,
    before: ControllerState,
}

/// The control loop's state: profiler, controller and reconciler.
pub struct Agent<P, M> {
    /// Forecasters and profiles.
    pub profiler: Profiler,
    /// The engine with its provisioner and migrator.
    pub controller: Controller<P, M>,
    /// Applies, reads back and repairs limits.
    pub reconciler: Reconciler,
    params: AgentParams,
    recorded: HashMap<(WorkloadId, ResourceKind), (u64, u64)>,
    problems: BTreeSet<String>,
    unresolved: BTreeSet<WorkloadId>,
}

impl<P: Provisioner, M: Migrator> Agent<P, M> {
    /// An agent.
    pub fn new(profiler: Profiler, mut controller: Controller<P, M>, params: AgentParams) -> Self {
        controller.recommend_only = !params.act;
        Self {
            profiler,
            controller,
            reconciler: Reconciler::new(params.reconcile),
            params,
            recorded: HashMap::new(),
            problems: BTreeSet::new(),
            unresolved: BTreeSet::new(),
        }
    }

    /// Its parameters.
    pub fn params(&self) -> &AgentParams {
        &self.params
    }

    /// Feeds stored history (oldest first), e.g. after a restart.
    pub fn restore_history(
        &mut self,
        history: impl IntoIterator<Item = (WorkloadId, Timestamp, Reading)>,
    ) -> u64 {
        let mut fed = 0;
        for (w, at, r) in history {
            if self.profiler.observe(w, at, &r, [None; 4]) {
                fed += 1;
            }
        }
        fed
    }

    /// What the limits of the workloads it looks after should be, in `ledger`.
    pub fn targets(&self, ledger: &Ledger) -> Targets {
        Targets::of(ledger, &self.params.sizes, self.params.host)
    }

    /// Samples every workload bound in `ledger` at `now` (on its host only, when scoped to
    /// one), and says what would raise the censored ones at once (act mode).
    pub fn sample(
        &mut self,
        ledger: &Ledger,
        sampler: &mut dyn Sampler,
        now: Timestamp,
    ) -> Sampled {
        let targets = self.targets(ledger);
        let mut out = self.sample_targets(&targets, sampler, now);
        if self.params.act {
            out.raise = raise(ledger, &out.censored);
        }
        out
    }

    /// Samples the workloads of `targets` at `now` (fleet mode's agent, which has no ledger:
    /// the broker raises what it reports censored).
    pub fn sample_targets(
        &mut self,
        targets: &Targets,
        sampler: &mut dyn Sampler,
        now: Timestamp,
    ) -> Sampled {
        let mut out = Sampled::default();
        for w in &targets.workloads {
            let mut reading = match sampler.sample(&w.name, now) {
                Ok(Some(r)) => {
                    self.unresolved.remove(&w.id);
                    r
                }
                Ok(None) => {
                    if self.unresolved.insert(w.id) {
                        out.unresolved.push((w.id, w.name.clone()));
                    }
                    continue;
                }
                Err(e) => {
                    out.errors.push(e.to_string());
                    continue;
                }
            };
            let limits = self.reconciler.in_force(w.id);
            // Whether usage of kind `i` is within `pct` % of its limit in force.
            let pressing = |i: usize, pct: u64| match (reading.usage[i], limits[i]) {
                (Some(u), Some(l)) => u128::from(u) * 100 >= u128::from(l) * u128::from(pct),
                _ => false,
            };
            let m = ResourceKind::Memory.index();
            if reading.censored[m] && reading.oom_kills == 0 {
                // The limit counter or a stall alone: censored only when usage presses on
                // the limit.
                reading.censored[m] = pressing(m, self.params.memory_censor_pct);
            }
            let io = ResourceKind::Iops.index();
            reading.censored[io] = if reading.censored[io] {
                pressing(io, self.params.memory_censor_pct)
            } else {
                pressing(io, self.params.iops_censor_pct)
            };
            if reading.oom_kills > 0 {
                self.profiler
                    .oom(w.id, limits[m].or(reading.usage[m]).unwrap_or(0), now);
                out.ooms.push(Oom {
                    workload: w.id,
                    name: w.name.clone(),
                    at: now,
                    kills: reading.oom_kills,
                    limit: limits[m],
                });
            }
            self.profiler.observe(w.id, now, &reading, limits);
            for kind in ResourceKind::ALL {
                if reading.censored(kind) {
                    out.censored.push((w.id, kind));
                }
            }
            out.readings.push((w.id, now, reading));
        }
        out
    }

    /// Decides at `now` on a copy of `ledger` (for its host's workloads only, when scoped to
    /// one): the actions to commit as one transaction.
    pub fn decide(&mut self, ledger: &Ledger, now: Timestamp) -> Decided {
        let before = self.controller.state();
        self.profiler.retain(|w| ledger.workload(w).is_some());
        self.recorded
            .retain(|(w, _), _| ledger.workload(*w).is_some());
        // Samples at `now` were seen: decide for the moment just after.
        let at = now.checked_add(Span::from_millis(1)).unwrap_or(now);
        let horizon = Horizon {
            step: self.params.decide_every,
            steps: 1,
        };
        let here = self.params.host;
        let demands = self.profiler.demands(
            ledger
                .workloads()
                .filter(|w| here.is_none_or(|h| h == w.host))
                .map(|w| w.id),
            at,
            horizon,
        );
        let mut copy = ledger.clone();
        let report = self
            .controller
            .tick(&mut copy, &demands, &self.params.sizes, at);
        for (old, new) in &report.moved {
            self.profiler.rename(*old, *new);
        }
        let decisions = report
            .decisions
            .into_iter()
            .filter(|d| {
                self.recorded.insert((d.workload, d.kind), (d.from, d.to)) != Some((d.from, d.to))
            })
            .collect();
        let seen: BTreeSet<String> = report.problems.into_iter().collect();
        let problems = seen.difference(&self.problems).cloned().collect();
        self.problems = seen;
        Decided {
            at,
            actions: report.applied,
            decisions,
            problems,
            before,
        }
    }

    /// Reports whether the decision's actions were committed; when they were not, the
    /// controller forgets the tick (its hysteresis, shard requests and moves).
    pub fn committed(&mut self, decided: &Decided, ok: bool) {
        if !ok {
            self.controller.restore(decided.before.clone());
            for d in &decided.decisions {
                self.recorded.remove(&(d.workload, d.kind));
            }
        }
    }

    /// Applies what changed and reads back what is due (act mode only): what happened, and
    /// the ledger actions that bring degraded workloads' ledger back to what is in force.
    pub fn actuate(
        &mut self,
        ledger: &Ledger,
        actuator: &mut dyn Actuator,
        now: Timestamp,
    ) -> (Vec<Actuation>, Vec<Action>) {
        let targets = self.targets(ledger);
        self.actuate_targets(&targets, actuator, now)
    }

    /// [`Agent::actuate`] towards `targets` (fleet mode's agent, sent them by a broker).
    pub fn actuate_targets(
        &mut self,
        targets: &Targets,
        actuator: &mut dyn Actuator,
        now: Timestamp,
    ) -> (Vec<Actuation>, Vec<Action>) {
        if !self.params.act {
            return (Vec::new(), Vec::new());
        }
        self.reconciler.reconcile(targets, actuator, now)
    }
}

/// The actions that give censored workloads their whole entitlement back: the share raised to
/// all the room in its reservation (which withdraws its offer) and every lease its reservation
/// lent with that kind reclaimed.
pub fn raise(ledger: &Ledger, censored: &[(WorkloadId, ResourceKind)]) -> Vec<Action> {
    let mut by_workload: BTreeMap<WorkloadId, Vec<ResourceKind>> = BTreeMap::new();
    for &(w, k) in censored {
        by_workload.entry(w).or_default().push(k);
    }
    let mut actions = Vec::new();
    let mut reclaimed = BTreeSet::new();
    for (wid, kinds) in by_workload {
        let Some(w) = ledger.workload(wid) else {
            continue;
        };
        let Some(r) = ledger.reservation(w.reservation) else {
            continue;
        };
        if r.cancelled || !r.window.contains(ledger.now()) {
            continue;
        }
        let reserved = ledger.reserved_at(r, ledger.now()).unwrap_or_default();
        let lent = ledger
            .lent_now(Lender::Reservation(r.id))
            .unwrap_or_default();
        let others = ledger
            .workloads_of(r.id)
            .filter(|o| o.id != wid)
            .fold(ShardVector::ZERO, |a, o| a.saturating_add(&o.share));
        let room = reserved.excess_over(&others.saturating_add(&lent));
        let mut share = w.share;
        for &k in &kinds {
            share = share.with(k, share.get(k).max(room.get(k)));
        }
        if share != w.share {
            actions.push(Action::Allocate(action::Allocate {
                tenant: w.tenant,
                workload: wid,
                share,
            }));
        }
        for l in ledger.leases() {
            let carries = kinds.iter().any(|&k| l.vector.get(k) > 0);
            if l.lender == Lender::Reservation(r.id)
                && l.reclaim.is_none()
                && carries
                && reclaimed.insert(l.id)
            {
                actions.push(Action::Reclaim(action::Reclaim {
                    tenant: r.tenant,
                    lease: l.id,
                }));
            }
        }
    }
    actions
}
