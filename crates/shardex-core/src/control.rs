//! One control-loop tick over a ledger: plan, commit, resolve shortages, commit, then move
//! workloads off hosts that are still short (provisioning a host when none has room), and
//! finish the moves whose migration is done. The controller works on a [`Ledger`] and records
//! every action it applied, in order, so a durable store can replay exactly those actions (the
//! ledger is deterministic) and the control loop of `shardex run` and `shardex simulate` are
//! the same code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action;
use crate::domain::{HostId, Lender, TenantId, Tier, WorkloadId};
use crate::engine::{Decision, Demand, Engine, Move};
use crate::ledger::{Action, Event, Ledger, LedgerError};
use crate::ports::{MigrationStatus, Migrator, MoveOrder, ProvisionRequest, Provisioner};
use crate::shard::{ShardSizes, ShardVector};
use crate::time::{Timestamp, Window};

/// How often a move still running is asked how it stands.
pub const MIGRATION_POLL: crate::time::Span = crate::time::Span::from_secs(1);

/// A move under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The move.
    pub mv: Move,
    /// Where it goes.
    pub to: HostId,
    /// When it should be done: when the migrator is asked how it stands.
    pub done_at: Timestamp,
}

/// What a tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Decisions with their reasons.
    pub decisions: Vec<Decision>,
    /// Moves started.
    pub moves_started: Vec<InFlight>,
    /// Moves finished: old workload id → new one (a workload gets a new id on its new host).
    pub moved: Vec<(WorkloadId, WorkloadId)>,
    /// Hosts the provisioner added.
    pub provisioned: Vec<HostId>,
    /// Hosts consolidation started to drain (their moves are in `moves_started`).
    pub drains: Vec<HostId>,
    /// Moves dropped because their workload left before they finished: nothing to move.
    pub abandoned: Vec<WorkloadId>,
    /// Moves the migrator reported failed: the workload stays on its host.
    pub failed_moves: Vec<WorkloadId>,
    /// What went wrong without stopping the tick (a refused batch, a failed provisioner).
    pub problems: Vec<String>,
    /// Every action applied, in order, with its time: what a store must persist.
    pub applied: Vec<(Action, Timestamp)>,
}

/// What a controller remembers between ticks, to put back when a tick made on a copy of the
/// ledger could not be committed (so its hysteresis, shard requests and moves never assume
/// actions that did not happen).
#[derive(Debug, Clone)]
pub struct ControllerState {
    engine: Engine,
    in_flight: Vec<InFlight>,
    short_since: BTreeMap<HostId, Timestamp>,
    drain_since: Option<(HostId, Timestamp)>,
}

/// The engine with its provisioner and migrator.
pub struct Controller<P, M> {
    /// The engine.
    pub engine: Engine,
    /// Adds hosts.
    pub provisioner: P,
    /// Moves workloads.
    pub migrator: M,
    /// Moves under way.
    pub in_flight: Vec<InFlight>,
    /// Recommend-only: decide and record, commit nothing.
    pub recommend_only: bool,
    /// Since when each host has been short without a break.
    short_since: BTreeMap<HostId, Timestamp>,
    /// The host consolidation would drain, and since when it has been the one.
    drain_since: Option<(HostId, Timestamp)>,
}

/// `needs`, where each workload on `host` needs at least what its reservation holds now.
fn with_reservations(
    ledger: &Ledger,
    host: HostId,
    needs: &BTreeMap<WorkloadId, ShardVector>,
) -> BTreeMap<WorkloadId, ShardVector> {
    let mut out = needs.clone();
    for w in ledger.workloads().filter(|w| w.host == host) {
        let holds = ledger
            .reservation(w.reservation)
            .and_then(|r| ledger.reserved_at(r, ledger.now()).ok())
            .unwrap_or_default();
        let need = out
            .get(&w.id)
            .copied()
            .or_else(|| ledger.allocation(w.id).ok())
            .unwrap_or_default();
        out.insert(w.id, need.max(&holds));
    }
    out
}

impl<P: Provisioner, M: Migrator> Controller<P, M> {
    /// A controller.
    pub fn new(engine: Engine, provisioner: P, migrator: M) -> Self {
        Self {
            engine,
            provisioner,
            migrator,
            in_flight: Vec::new(),
            recommend_only: false,
            short_since: BTreeMap::new(),
            drain_since: None,
        }
    }

    /// What it remembers now.
    pub fn state(&self) -> ControllerState {
        ControllerState {
            engine: self.engine.clone(),
            in_flight: self.in_flight.clone(),
            short_since: self.short_since.clone(),
            drain_since: self.drain_since,
        }
    }

    /// Forgets everything since `state` was taken.
    pub fn restore(&mut self, state: ControllerState) {
        self.engine = state.engine;
        self.in_flight = state.in_flight;
        self.short_since = state.short_since;
        self.drain_since = state.drain_since;
    }

    fn commit(
        &self,
        ledger: &mut Ledger,
        actions: Vec<Action>,
        now: Timestamp,
        report: &mut TickReport,
    ) -> Result<Vec<Event>, LedgerError> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        let action = if actions.len() == 1 {
            actions.into_iter().next().unwrap_or(Action::Expire)
        } else {
            Action::Batch(action::Batch { actions })
        };
        let events = ledger.apply(&action, now)?;
        report.applied.push((action, now));
        Ok(events)
    }

    /// One tick at `now` (the ledger catches up to it first).
    pub fn tick(
        &mut self,
        ledger: &mut Ledger,
        demands: &BTreeMap<WorkloadId, Demand>,
        sizes: &ShardSizes,
        now: Timestamp,
    ) -> TickReport {
        let mut report = TickReport::default();
        if self.recommend_only {
            // Decide on a copy; nothing reaches the ledger.
            let mut copy = ledger.clone();
            if copy.apply(&Action::Expire, now).is_ok() {
                report.decisions = self.engine.plan(&copy, demands, sizes).decisions;
            }
            return report;
        }
        // Catching up with time needs a logged action only when something falls due.
        if !ledger.advance_idle(now)
            && let Err(e) = self.commit(ledger, vec![Action::Expire], now, &mut report)
        {
            report.problems.push(format!("catching up with time: {e}"));
            return report;
        }
        self.finish_moves(ledger, now, &mut report);
        let plan = self.engine.plan(ledger, demands, sizes);
        report.decisions = plan.decisions;
        if let Err(e) = self.commit(ledger, plan.actions.clone(), now, &mut report) {
            // A plan is made from the state it applies to, so this is a bug; keep going with
            // what can be applied one by one, and say so.
            report
                .problems
                .push(format!("the plan was refused ({e}); applied one by one"));
            for a in plan.actions {
                if let Err(e) = self.commit(ledger, vec![a], now, &mut report) {
                    report.problems.push(format!("refused: {e}"));
                }
            }
        }
        let res = self.engine.resolve(ledger);
        if let Err(e) = self.commit(ledger, res.actions, now, &mut report) {
            report
                .problems
                .push(format!("resolving shortages was refused: {e}"));
        }
        // Targets of the workloads, for choosing what to move.
        let mut waiting: BTreeMap<WorkloadId, ShardVector> = BTreeMap::new();
        for r in ledger.requests() {
            let e = waiting.entry(r.workload).or_default();
            *e = e.saturating_add(&r.remaining());
        }
        let needs: BTreeMap<WorkloadId, ShardVector> = demands
            .keys()
            .filter_map(|w| {
                let holds = ledger.allocation(*w).ok()?;
                let waits = waiting.get(w).copied().unwrap_or_default();
                Some((*w, holds.saturating_add(&waits)))
            })
            .collect();
        let mut pending: BTreeMap<HostId, ShardVector> = BTreeMap::new();
        for f in &self.in_flight {
            let e = pending.entry(f.to).or_default();
            *e = e.saturating_add(&f.mv.needs);
        }
        self.short_since
            .retain(|h, _| res.short_hosts.contains_key(h));
        let calm = res.short_hosts.is_empty() && self.in_flight.is_empty();
        for (host, short) in res.short_hosts {
            let since = *self.short_since.entry(host).or_insert(now);
            if now.since(since) < self.engine.params.move_after && !res.asked_hosts.contains(&host)
            {
                // Maybe a brief spike: wait before moving anything.
                continue;
            }
            if self.in_flight.iter().any(|f| f.mv.from == host) {
                // A move off this host is already under way; wait for it.
                continue;
            }
            // Room asked for by a pending modification is room in reservations: a workload
            // that moves frees its whole reservation, and takes one as large where it goes.
            let asked;
            let needs = if res.asked_hosts.contains(&host) {
                asked = with_reservations(ledger, host, &needs);
                &asked
            } else {
                &needs
            };
            for mv in self
                .engine
                .choose_moves(ledger, host, short, needs, &mut pending)
            {
                let to = match mv.to {
                    Some(t) => t,
                    None => match self.provision(ledger, &mv, now, &mut report) {
                        Some(t) => t,
                        None => continue,
                    },
                };
                self.start_move(ledger, mv, to, now, &mut report);
            }
        }
        if calm {
            self.consolidate(ledger, &needs, &pending, now, &mut report);
        } else {
            self.drain_since = None;
        }
        report
    }

    fn start_move(
        &mut self,
        ledger: &Ledger,
        mv: Move,
        to: HostId,
        now: Timestamp,
        report: &mut TickReport,
    ) {
        let host_name = |h: HostId| ledger.host(h).map(|x| x.name.clone()).unwrap_or_default();
        let order = MoveOrder {
            workload: mv.workload,
            name: ledger
                .workload(mv.workload)
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            from: mv.from,
            from_name: host_name(mv.from),
            to,
            to_name: host_name(to),
        };
        match self.migrator.start(&order, now) {
            Ok(done_at) => {
                let f = InFlight { mv, to, done_at };
                report.moves_started.push(f.clone());
                self.in_flight.push(f);
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }

    /// Drains the host [`Engine::choose_drain`] names once it has named it for
    /// `consolidate_after` without a break (the tick calls this only when no host is short and
    /// no move is under way).
    fn consolidate(
        &mut self,
        ledger: &Ledger,
        needs: &BTreeMap<WorkloadId, ShardVector>,
        pending: &BTreeMap<HostId, ShardVector>,
        now: Timestamp,
        report: &mut TickReport,
    ) {
        let Some(drain) = self.engine.choose_drain(ledger, needs, pending) else {
            self.drain_since = None;
            return;
        };
        let since = match self.drain_since {
            Some((h, s)) if h == drain.host => s,
            _ => now,
        };
        if now.since(since) < self.engine.params.consolidate_after {
            self.drain_since = Some((drain.host, since));
            return;
        }
        self.drain_since = None;
        let planned = drain.moves.len();
        let before = report.moves_started.len();
        for mv in drain.moves {
            if let Some(to) = mv.to {
                self.start_move(ledger, mv, to, now, report);
            }
        }
        // A drain is reported only when every one of its moves is under way (a migrator that
        // refuses, e.g. none configured, leaves its reasons in the problems instead).
        if report.moves_started.len() - before == planned {
            report.drains.push(drain.host);
        }
    }

    fn provision(
        &mut self,
        ledger: &mut Ledger,
        mv: &Move,
        now: Timestamp,
        report: &mut TickReport,
    ) -> Option<HostId> {
        let request = ProvisionRequest {
            reason: format!("{} is short; {} must move", mv.from, mv.workload),
            short_host: mv.from,
            needs: mv.needs,
        };
        match self.provisioner.provision(&request) {
            Ok(h) => {
                let name = h.name.clone();
                let registered = self.commit(
                    ledger,
                    vec![Action::RegisterHost(action::RegisterHost {
                        name: h.name,
                        capacity: h.capacity,
                    })],
                    now,
                    report,
                );
                match registered {
                    Ok(_) => {
                        let id = ledger.host_named(&name).map(|h| h.id);
                        report.provisioned.extend(id);
                        id
                    }
                    Err(e) => {
                        let why = format!("the provisioned host {name} was refused: {e}");
                        self.engine.fail(mv.from, &why);
                        report.problems.push(why);
                        None
                    }
                }
            }
            Err(e) => {
                let why = e.to_string();
                self.engine.fail(mv.from, &why);
                report.problems.push(why);
                None
            }
        }
    }

    /// When the next move under way is done, if any.
    pub fn next_move_done(&self) -> Option<Timestamp> {
        self.in_flight.iter().map(|f| f.done_at).min()
    }

    /// Finishes the moves that are done by `now` (a tick does this first; call it between
    /// ticks to finish a move at its exact time).
    pub fn finish_due_moves(&mut self, ledger: &mut Ledger, now: Timestamp) -> TickReport {
        let mut report = TickReport::default();
        if let Err(e) = self.commit(ledger, vec![Action::Expire], now, &mut report) {
            report.problems.push(format!("catching up with time: {e}"));
            return report;
        }
        self.finish_moves(ledger, now, &mut report);
        report
    }

    /// Moves whose migration is done: the workload leaves its old reservation and gets a new
    /// one of the same size and tier on the new host, for the rest of the old window, with
    /// leases for the rest of what it needs.
    fn finish_moves(&mut self, ledger: &mut Ledger, now: Timestamp, report: &mut TickReport) {
        let (due, mut waiting): (Vec<InFlight>, Vec<InFlight>) =
            self.in_flight.drain(..).partition(|f| f.done_at <= now);
        // Only what the migrator says completed moves in the ledger; a move still running is
        // asked again a poll period later; a failed one leaves the workload where it was.
        let mut done = Vec::with_capacity(due.len());
        for mut f in due {
            if ledger.workload(f.mv.workload).is_none() {
                done.push(f);
                continue;
            }
            match self.migrator.status(f.mv.workload, now) {
                MigrationStatus::Completed => done.push(f),
                MigrationStatus::Running => {
                    f.done_at = now.checked_add(MIGRATION_POLL).unwrap_or(now);
                    waiting.push(f);
                }
                MigrationStatus::Failed(reason) => {
                    report.failed_moves.push(f.mv.workload);
                    report.problems.push(format!(
                        "moving {} from {} to {} failed ({reason}); it stays on {}",
                        f.mv.workload, f.mv.from, f.to, f.mv.from
                    ));
                }
            }
        }
        self.in_flight = waiting;
        self.release_among(ledger, &done, now, report);
        for f in done {
            match self.move_actions(ledger, &f, now) {
                Some((actions, tenant, name)) => match self.commit(ledger, actions, now, report) {
                    Ok(_) => {
                        if let Some(new) = ledger.workload_named(tenant, &name) {
                            report.moved.push((f.mv.workload, new.id));
                        }
                    }
                    Err(e) => report
                        .problems
                        .push(format!("moving {} was refused: {e}", f.mv.workload)),
                },
                None => report.abandoned.push(f.mv.workload),
            }
        }
    }

    /// Leases between workloads that move at the same moment (a drained host's lenders and
    /// borrowers) end first, so that each lender's reservation can be given up as it leaves.
    fn release_among(
        &self,
        ledger: &mut Ledger,
        done: &[InFlight],
        now: Timestamp,
        report: &mut TickReport,
    ) {
        let moving: std::collections::BTreeSet<WorkloadId> =
            done.iter().map(|f| f.mv.workload).collect();
        let lenders: std::collections::BTreeSet<Lender> = moving
            .iter()
            .filter_map(|w| ledger.workload(*w))
            .map(|w| Lender::Reservation(w.reservation))
            .collect();
        let releases: Vec<Action> = ledger
            .leases()
            .filter(|l| moving.contains(&l.borrower) && lenders.contains(&l.lender))
            .filter_map(|l| {
                let tenant = ledger.workload(l.borrower)?.tenant;
                Some(Action::Release(action::Release {
                    tenant,
                    lease: l.id,
                }))
            })
            .collect();
        if let Err(e) = self.commit(ledger, releases, now, report) {
            report
                .problems
                .push(format!("ending the leases among moving workloads: {e}"));
        }
    }

    fn move_actions(
        &self,
        ledger: &Ledger,
        f: &InFlight,
        now: Timestamp,
    ) -> Option<(Vec<Action>, TenantId, String)> {
        let w = ledger.workload(f.mv.workload)?;
        let r = ledger.reservation(w.reservation)?;
        let base = ledger.reserved_at(r, now).ok()?;
        let window = Window::new(now, r.window.end()).ok()?;
        let tier: Tier = r.tier;
        let actions = vec![
            Action::UnbindWorkload(action::UnbindWorkload {
                tenant: w.tenant,
                workload: w.id,
            }),
            Action::CancelReservation(action::CancelReservation {
                tenant: w.tenant,
                reservation: r.id,
            }),
            Action::CreateReservation(action::CreateReservation {
                tenant: w.tenant,
                host: f.to,
                vector: base,
                window,
                tier,
            }),
        ];
        // Ids are given in sequence: find the new reservation's and workload's on a copy.
        let mut probe = ledger.clone();
        probe
            .apply(
                &Action::Batch(action::Batch {
                    actions: actions.clone(),
                }),
                now,
            )
            .ok()?;
        let new_r = probe
            .reservations()
            .filter(|x| x.host == f.to && x.tenant == w.tenant)
            .map(|x| x.id)
            .max()?;
        let bind = Action::BindWorkload(action::BindWorkload {
            tenant: w.tenant,
            reservation: new_r,
            name: w.name.clone(),
        });
        probe.apply(&bind, now).ok()?;
        let new_w = probe.workload_named(w.tenant, &w.name)?.id;
        let mut all = actions;
        all.push(bind);
        all.push(Action::Allocate(action::Allocate {
            tenant: w.tenant,
            workload: new_w,
            share: base,
        }));
        let until = now.checked_add(self.engine.params.lease_for).ok()?;
        for kind in f.mv.needs.excess_over(&base).kinds() {
            all.push(Action::RequestLease(action::RequestLease {
                tenant: w.tenant,
                workload: new_w,
                vector: ShardVector::of(kind, f.mv.needs.get(kind) - base.get(kind)),
                until,
                max_price: self.engine.params.max_price,
                all_or_nothing: false,
                start: None,
            }));
        }
        Some((all, w.tenant, w.name.clone()))
    }
}
