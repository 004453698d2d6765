//! The predictive allocation engine: RDVs in, one batch of ledger actions out.
//!
//! A tick runs in two phases, each a pure function of the ledger and the engine's own state:
//!
//! 1. [`Engine::plan`] decides each workload's allocation for the moment the change would take
//!    effect (now + the actuation lead): the RDV at the quantile the workload's tier asks for,
//!    then hysteresis. It grows the workload's share of its own reservation where that has
//!    room, and asks the marketplace for the rest (one immediate lease request per kind, partial
//!    fills accepted); it releases leases the forecast no longer needs; it offers reservations'
//!    idle shards minus their owners' predicted need. The caller commits the plan as one
//!    [`Action::Batch`].
//! 2. [`Engine::resolve`] looks at what the market could not cover and raises a
//!    [`ShardRequest`] for it, resolved in this order: reclaim shards the workload's own
//!    reservation has lent out; count the lower-tier leases the ledger is preempting for it
//!    (with notice); grow the workload's reservation by a modification from the host's free,
//!    unreserved capacity; and last, when the host itself is short, move workloads away
//!    ([`Engine::choose_moves`]) to a host with room, or to a new one from the provisioner.
//!
//! # Rules
//! * **Target**: per kind, the RDV's quantile for the tier (best-effort p90, standard p95,
//!   premium and critical p99, configurable) at now + lead, in shards rounded up, capped at the
//!   workload's cap (e.g. its provisioned size). Memory never goes under the last measured
//!   usage plus `memory_margin_pct`.
//! * **Scale up** acts at once, to the target plus `headroom_pct`, so that the next small rise
//!   needs no new actuation.
//! * **Scale down** waits: only when every target for `down_after` stayed under what the
//!   workload holds by more than `headroom_pct`, and then only to the highest of those targets
//!   plus the headroom: leases are released first, largest first, whole; once none of the
//!   kind is left, the workload's share of its own reservation shrinks too, but never under
//!   its upper forecast (p99) over the reclaim notice plus the headroom, so what it gives back
//!   (then offered) is what it will not need before a reclaim could return it. Its entitlement
//!   (the hard limit) is cut only by what is then lent.
//! * **Contention**: requests go to the ledger by tier (highest first), then most starved
//!   first (lowest held ÷ target), then workload id; the ledger's matching serves them in that
//!   order and never lets a lower tier take what a higher one waits for.
//! * **Leases** are renewed `renew_before` their end: a lease that ends sooner counts as gone,
//!   so its replacement is requested while it still holds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action;
use crate::domain::{
    HostId, KindChange, LeaseId, Lender, PriceVector, ReclaimReason, RequestId, ReservationId,
    Tier, WorkloadId,
};
use crate::ledger::{Action, Ledger};
use crate::market;
use crate::rdv::{Quantiles, Rdv};
use crate::shard::{ResourceKind, ShardSizes, ShardVector};
use crate::time::{Span, Timestamp};

/// Which quantile of an RDV a tier allocates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
}

impl Quantile {
    /// This quantile of `q`.
    pub fn of(self, q: &Quantiles) -> u64 {
        match self {
            Quantile::P50 => q.p50,
            Quantile::P90 => q.p90,
            Quantile::P95 => q.p95,
            Quantile::P99 => q.p99,
        }
    }
}

/// The quantile each tier allocates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TierQuantiles {
    /// best-effort.
    pub best_effort: Quantile,
    /// standard.
    pub standard: Quantile,
    /// premium.
    pub premium: Quantile,
    /// critical.
    pub critical: Quantile,
}

impl Default for TierQuantiles {
    /// best-effort p90, standard p95, premium p99, critical p99.
    fn default() -> Self {
        Self {
            best_effort: Quantile::P90,
            standard: Quantile::P95,
            premium: Quantile::P99,
            critical: Quantile::P99,
        }
    }
}

impl TierQuantiles {
    /// The quantile of one tier.
    pub fn get(&self, tier: Tier) -> Quantile {
        match tier {
            Tier::BestEffort => self.best_effort,
            Tier::Standard => self.standard,
            Tier::Premium => self.premium,
            Tier::Critical => self.critical,
        }
    }
}

/// How the engine decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineParams {
    /// Time from a decision to the moment it is in force: the RDV is read that far ahead.
    pub lead: Span,
    /// Quantile per tier.
    pub quantiles: TierQuantiles,
    /// Headroom added on a change, and the margin a surplus must exceed before scale-down, in
    /// percent of the target.
    pub headroom_pct: u64,
    /// How long targets must stay under the allocation before it shrinks.
    pub down_after: Span,
    /// Memory is never allocated under the last usage plus this percentage.
    pub memory_margin_pct: u64,
    /// How long requested leases last (released earlier when not needed).
    pub lease_for: Span,
    /// Leases ending within this are renewed.
    pub renew_before: Span,
    /// The most the engine pays per shard-hour, per kind, after tier and delivery factors.
    pub max_price: PriceVector,
    /// How long a host must stay short before workloads move off it (and hosts are
    /// provisioned): a brief spike costs less in shortfall than a live migration and a host.
    pub move_after: Span,
}

impl Default for EngineParams {
    /// A 60 s lead, 5 % headroom, 15 min before scaling down, 10 % memory margin, day-long
    /// leases renewed 10 min before their end, up to 0.01 per shard-hour (25 × the cpu list
    /// price), and moves off a host short for 10 min.
    fn default() -> Self {
        Self {
            lead: Span::from_secs(60),
            quantiles: TierQuantiles::default(),
            headroom_pct: 5,
            down_after: Span::from_secs(900),
            memory_margin_pct: 10,
            lease_for: Span::from_secs(86_400),
            renew_before: Span::from_secs(600),
            max_price: PriceVector::uniform(rust_decimal::Decimal::new(1, 2)),
            move_after: Span::from_secs(600),
        }
    }
}

/// What the engine knows of one workload this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Its forecast, physical units.
    pub rdv: Rdv,
    /// The last measured usage, in shards (rounded up).
    pub usage: ShardVector,
    /// The most it may hold (e.g. its provisioned size), if capped.
    pub cap: Option<ShardVector>,
    /// Per kind, whether it was held at its limit since the last decision: its usage is a
    /// lower bound, so it doubles what it holds (leasing above its entitlement) until it is
    /// no longer held there.
    pub censored: [bool; 4],
}

/// Why an allocation changed or did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The forecast rose above what it holds.
    ScaleUp,
    /// The forecast stayed under what it holds for the whole cool-down.
    ScaleDown,
    /// It was held at its limit: its demand is unknown but higher, so what it holds doubles.
    Censored,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::ScaleUp => "the forecast rose above the allocation",
            Reason::ScaleDown => "the forecast stayed under the allocation for the cool-down",
            Reason::Censored => "it was held at its limit, so its demand is higher: doubling",
        })
    }
}

/// One decision of the engine, with its reason (stored as an event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The workload.
    pub workload: WorkloadId,
    /// The kind.
    pub kind: ResourceKind,
    /// Shards it held (leases ending soon excluded).
    pub from: u64,
    /// Shards it should hold.
    pub to: u64,
    /// Why.
    pub reason: Reason,
}

/// A tick's plan: commit `actions` as one batch.
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ledger actions, in order.
    pub actions: Vec<Action>,
    /// What was decided and why.
    pub decisions: Vec<Decision>,
}

/// Where a shard request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum RequestStatus {
    /// Shards are on their way (reclaim or preemption notice, growth, a move).
    Pending,
    /// The workload holds what it asked for.
    Fulfilled,
    /// It got part of it before giving up.
    PartiallyFulfilled(String),
    /// It got nothing, and why.
    Failed(String),
}

/// One step taken for a shard request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    /// Leases lent by the workload's own reservation are reclaimed (after notice).
    Reclaim {
        /// Shards coming back.
        shards: ShardVector,
    },
    /// Lower-tier leases are being preempted for it (after notice).
    Preempt {
        /// Shards coming.
        shards: ShardVector,
    },
    /// Its reservation grows from the host's free capacity.
    Grow {
        /// Shards added.
        shards: ShardVector,
    },
    /// The host is short: workloads move away (and a host may be provisioned).
    HostShort {
        /// Shards missing on the host.
        shards: ShardVector,
    },
}

/// What the engine raises when the market cannot cover a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest {
    /// Its id.
    pub id: u64,
    /// For whom.
    pub workload: WorkloadId,
    /// Where.
    pub host: HostId,
    /// Shards the market could not cover when it was raised.
    pub wanted: ShardVector,
    /// When it was raised.
    pub raised: Timestamp,
    /// What was done, in order.
    pub steps: Vec<Step>,
    /// Where it stands.
    pub status: RequestStatus,
}

/// A workload to move off a short host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Which.
    pub workload: WorkloadId,
    /// From where.
    pub from: HostId,
    /// To a host with room, or `None` when a new host is needed.
    pub to: Option<HostId>,
    /// What it needs where it goes.
    pub needs: ShardVector,
}

/// The outcome of [`Engine::resolve`].
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Ledger actions (reclaims, growth), to commit as one batch.
    pub actions: Vec<Action>,
    /// Hosts still short after reclaim, preemption and growth, with what they miss.
    pub short_hosts: BTreeMap<HostId, ShardVector>,
}

/// Per-workload memory of past targets, for the scale-down cool-down: since when targets
/// have stayed at or under what it holds, and those of the last `down_after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Below {
    since: Option<Timestamp>,
    recent: std::collections::VecDeque<(Timestamp, u64)>,
}

/// The engine and what it remembers between ticks.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// Its parameters.
    pub params: EngineParams,
    below: HashMap<(WorkloadId, ResourceKind), Below>,
    requests: BTreeMap<u64, ShardRequest>,
    next_request: u64,
}

/// One lease of a workload, as the engine sees it.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: LeaseId,
    vector: ShardVector,
    ends_soon: bool,
}

/// What the engine reads of the ledger once per tick: every lookup after this is indexed.
struct View {
    leases: HashMap<WorkloadId, Vec<Held>>,
    lent: HashMap<ReservationId, Vec<(LeaseId, ShardVector, bool)>>,
    requests: HashMap<WorkloadId, Vec<RequestId>>,
    shares: HashMap<ReservationId, ShardVector>,
    preempting: HashMap<RequestId, ShardVector>,
}

impl View {
    fn of(ledger: &Ledger, renew_by: Timestamp) -> Self {
        let mut leases: HashMap<WorkloadId, Vec<Held>> = HashMap::new();
        let mut lent: HashMap<ReservationId, Vec<(LeaseId, ShardVector, bool)>> = HashMap::new();
        for l in ledger.leases() {
            leases.entry(l.borrower).or_default().push(Held {
                id: l.id,
                vector: l.vector,
                ends_soon: l.window.end() <= renew_by || l.reclaim.is_some(),
            });
            if let Lender::Reservation(r) = l.lender {
                lent.entry(r)
                    .or_default()
                    .push((l.id, l.vector, l.reclaim.is_some()));
            }
        }
        let mut requests: HashMap<WorkloadId, Vec<RequestId>> = HashMap::new();
        for r in ledger.requests() {
            requests.entry(r.workload).or_default().push(r.id);
        }
        let mut shares: HashMap<ReservationId, ShardVector> = HashMap::new();
        for w in ledger.workloads() {
            let e = shares.entry(w.reservation).or_default();
            *e = e.saturating_add(&w.share);
        }
        let mut preempting: HashMap<RequestId, ShardVector> = HashMap::new();
        for l in ledger.leases() {
            if let Some(ReclaimReason::Preempted { by }) = l.reclaim {
                let e = preempting.entry(by).or_default();
                *e = e.saturating_add(&l.vector);
            }
        }
        Self {
            leases,
            lent,
            requests,
            shares,
            preempting,
        }
    }

    /// Shards a reservation has lent out.
    fn lent_sum(&self, r: ReservationId) -> ShardVector {
        self.lent
            .get(&r)
            .into_iter()
            .flatten()
            .fold(ShardVector::ZERO, |a, l| a.saturating_add(&l.1))
    }
}

/// When a lease request for `kind` on `host` should end: `lease_for` from now (renewed
/// before it ends), unless reservations on the host have idle shards of that kind that all end
/// sooner: then at the latest of their ends, so that their offers can match it (a lender's
/// shards are only lent for a window it can keep them lent through; the provider, which has no
/// end, can serve the shorter request as well).
fn lease_end(
    ledger: &Ledger,
    view: &View,
    host: HostId,
    kind: ResourceKind,
    lease_for: Span,
) -> Timestamp {
    let now = ledger.now();
    let full = now.checked_add(lease_for).unwrap_or(now);
    // Idle = reserved − shares − lent, from the tick's view (no per-reservation ledger scans).
    let idle = |r: &crate::domain::Reservation| {
        let reserved = ledger.reserved_at(r, now).unwrap_or_default().get(kind);
        let shares = view.shares.get(&r.id).map_or(0, |s| s.get(kind));
        reserved > shares + view.lent_sum(r.id).get(kind)
    };
    let latest = ledger
        .reservations_on(host)
        .filter(|r| !r.cancelled && r.window.contains(now))
        .filter(|r| idle(r))
        .map(|r| r.window.end())
        .max();
    match latest {
        Some(end) if end > now && end < full => end,
        _ => full,
    }
}

fn pct(v: u64, p: u64) -> u64 {
    v.saturating_add((v.saturating_mul(p)).div_ceil(100))
}

impl Engine {
    /// An engine with `params` and no memory.
    pub fn new(params: EngineParams) -> Self {
        Self {
            params,
            ..Self::default()
        }
    }

    /// Every shard request raised so far, oldest first.
    pub fn shard_requests(&self) -> impl Iterator<Item = &ShardRequest> {
        self.requests.values()
    }

    /// Phase 1 of a tick: allocations, lease requests, releases and automatic offers.
    pub fn plan(
        &mut self,
        ledger: &Ledger,
        demands: &BTreeMap<WorkloadId, Demand>,
        sizes: &ShardSizes,
    ) -> Plan {
        let p = self.params.clone();
        let now = ledger.now();
        let renew_by = now.checked_add(p.renew_before).unwrap_or(now);
        let view = View::of(ledger, renew_by);
        let mut plan = Plan::default();
        // (tier, fairness, workload, kind, shards): lease requests, ordered before sending.
        let mut asks: Vec<(Reverse<Tier>, u64, WorkloadId, ResourceKind, u64)> = Vec::new();
        for (&wid, demand) in demands {
            let Some(w) = ledger.workload(wid) else {
                continue;
            };
            let Some(r) = ledger.reservation(w.reservation) else {
                continue;
            };
            if r.cancelled || !r.window.contains(now) {
                continue;
            }
            let q = p.quantiles.get(r.tier);
            let capacity = ledger.host(w.host).map(|h| h.capacity).unwrap_or_default();
            let held_leases = view.leases.get(&wid).map(Vec::as_slice).unwrap_or(&[]);
            // Room in its own reservation for its share: reserved − others' shares − lent.
            let reserved = ledger.reserved_at(r, now).unwrap_or(ShardVector::ZERO);
            let shares = view.shares.get(&r.id).copied().unwrap_or_default();
            let lent = view.lent_sum(r.id);
            let room = reserved.excess_over(&shares.excess_over(&w.share).saturating_add(&lent));
            let mut share = w.share;
            // What the owner may need before a reclaim could bring lent shards back.
            let upper = demand
                .rdv
                .upper_shards(sizes, ledger.params().reclaim_notice);
            for kind in ResourceKind::ALL {
                let Some(quant) = demand.rdv.at(kind, p.lead) else {
                    continue;
                };
                // Leases that end soon count as gone: their replacement is asked for now.
                let held = w.share.get(kind)
                    + held_leases
                        .iter()
                        .filter(|h| !h.ends_soon)
                        .map(|h| h.vector.get(kind))
                        .sum::<u64>();
                let mut target = sizes.demand_shards(kind, q.of(&quant));
                if kind == ResourceKind::Memory {
                    target = target.max(pct(demand.usage.get(kind), p.memory_margin_pct));
                }
                let censored = demand.censored[kind.index()];
                if censored {
                    // Held at its limit: at least twice what it may use now (its whole
                    // reservation not lent, plus its leases).
                    let may_use =
                        reserved.excess_over(&lent).get(kind) + (held - w.share.get(kind));
                    target = target.max(may_use.max(held).max(1).saturating_mul(2));
                }
                if let Some(cap) = demand.cap {
                    target = target.min(cap.get(kind));
                }
                // Never more than the host has.
                target = target.min(capacity.get(kind));
                let below = self.below.entry((wid, kind)).or_default();
                let mut want = held;
                let mut reason = None;
                if target > held {
                    *below = Below::default();
                    want = pct(target, p.headroom_pct);
                    if let Some(cap) = demand.cap {
                        want = want.min(cap.get(kind)).max(target);
                    }
                    want = want.min(capacity.get(kind)).max(target);
                    reason = Some(if censored {
                        Reason::Censored
                    } else {
                        Reason::ScaleUp
                    });
                } else {
                    let since = *below.since.get_or_insert(now);
                    below.recent.push_back((now, target));
                    let horizon = Timestamp::from_millis(
                        now.millis()
                            .saturating_sub(i64::try_from(p.down_after.millis()).unwrap_or(0)),
                    )
                    .unwrap_or(now);
                    while below.recent.front().is_some_and(|&(t, _)| t < horizon) {
                        below.recent.pop_front();
                    }
                    let highest = below.recent.iter().map(|&(_, v)| v).max().unwrap_or(target);
                    // The share shrinks only to what the owner's upper forecast over the
                    // reclaim notice says it may need: what it gives back is offered, and
                    // lending what it would need again within the notice only churns.
                    let floor = w.share.get(kind).min(pct(upper.get(kind), p.headroom_pct));
                    let keep = pct(highest, p.headroom_pct).max(floor);
                    if now.since(since) >= p.down_after && held > keep {
                        want = keep;
                        reason = Some(Reason::ScaleDown);
                    }
                }
                if want > held {
                    let up = want - held;
                    let own = up.min(room.get(kind).saturating_sub(share.get(kind)));
                    if own > 0 {
                        share = share.with(kind, share.get(kind) + own);
                    }
                    if up > own {
                        // Most starved first: the smallest share of its target held.
                        let fairness = held.saturating_mul(1000) / target.max(1);
                        asks.push((Reverse(r.tier), fairness, wid, kind, up - own));
                    }
                } else if want < held {
                    // Release whole single-kind leases, largest first, while they fit.
                    let mut surplus = held - want;
                    let mut mine: Vec<&Held> = held_leases
                        .iter()
                        .filter(|h| {
                            !h.ends_soon && h.vector.get(kind) > 0 && h.vector.kinds().count() == 1
                        })
                        .collect();
                    mine.sort_by_key(|h| (Reverse(h.vector.get(kind)), h.id));
                    let mut leased = held - w.share.get(kind);
                    for h in mine {
                        if h.vector.get(kind) <= surplus {
                            surplus -= h.vector.get(kind);
                            leased -= h.vector.get(kind);
                            plan.actions.push(Action::Release(action::Release {
                                tenant: w.tenant,
                                lease: h.id,
                            }));
                        }
                    }
                    // Then the share, once no lease of the kind is left (a paid lease never
                    // replaces the workload's own shards): what it gives back becomes idle in
                    // its reservation, for the reservation to offer. The entitlement (the
                    // hard limit) is cut only by what is then lent.
                    if leased == 0 {
                        share = share.with(kind, share.get(kind) - surplus.min(share.get(kind)));
                    }
                }
                if let Some(reason) = reason {
                    plan.decisions.push(Decision {
                        workload: wid,
                        kind,
                        from: held,
                        to: want,
                        reason,
                    });
                }
            }
            if share != w.share {
                plan.actions.push(Action::Allocate(action::Allocate {
                    tenant: w.tenant,
                    workload: wid,
                    share,
                }));
            }
            // Withdraw what is still pending: this tick's asks replace it.
            for &req in view.requests.get(&wid).map(Vec::as_slice).unwrap_or(&[]) {
                plan.actions
                    .push(Action::CancelRequest(action::CancelRequest {
                        tenant: w.tenant,
                        request: req,
                    }));
            }
        }
        asks.sort();
        let mut ends: HashMap<(HostId, ResourceKind), Timestamp> = HashMap::new();
        for (_, _, wid, kind, n) in asks {
            let Some(w) = ledger.workload(wid) else {
                continue;
            };
            let until = *ends
                .entry((w.host, kind))
                .or_insert_with(|| lease_end(ledger, &view, w.host, kind, p.lease_for));
            plan.actions
                .push(Action::RequestLease(action::RequestLease {
                    tenant: w.tenant,
                    workload: wid,
                    vector: ShardVector::of(kind, n),
                    until,
                    max_price: p.max_price,
                    all_or_nothing: false,
                    start: None,
                }));
        }
        // Automatic offers: idle − predicted need, where every workload has a forecast.
        plan.actions.extend(market::auto_offers(
            ledger,
            |w| demands.get(&w).map(|d| &d.rdv),
            sizes,
        ));
        plan
    }

    /// Phase 2, after the plan is committed: raises a shard request for every workload the
    /// market left short, and resolves it by reclaim, preemption and growth; returns what to
    /// commit and the hosts still short (for moves and provisioning).
    pub fn resolve(&mut self, ledger: &Ledger) -> Resolution {
        let now = ledger.now();
        let p = self.params.clone();
        let view = View::of(ledger, now);
        let mut out = Resolution::default();
        self.update_statuses(ledger, &view);
        // Host free capacity left to grow reservations from, as this resolution uses it.
        let mut free: HashMap<HostId, ShardVector> = HashMap::new();
        let mut short: Vec<(Reverse<Tier>, RequestId)> = ledger
            .requests()
            .filter(|r| r.start <= now && !r.remaining().is_zero())
            .map(|r| (Reverse(r.tier), r.id))
            .collect();
        short.sort();
        for (_, rid) in short {
            let Some(req) = ledger.request(rid) else {
                continue;
            };
            let Some(w) = ledger.workload(req.workload) else {
                continue;
            };
            let mut missing = req.remaining();
            let mut sr = ShardRequest {
                id: 0,
                workload: w.id,
                host: w.host,
                wanted: missing,
                raised: now,
                steps: Vec::new(),
                status: RequestStatus::Pending,
            };
            // 1. Reclaim what its own reservation has lent out.
            let mut reclaimed = ShardVector::ZERO;
            for &(lease, v, reclaiming) in view.lent.get(&w.reservation).into_iter().flatten() {
                if reclaiming || !v.kinds().any(|k| missing.get(k) > 0) {
                    continue;
                }
                out.actions.push(Action::Reclaim(action::Reclaim {
                    tenant: w.tenant,
                    lease,
                }));
                reclaimed = reclaimed.saturating_add(&v);
                missing = missing.excess_over(&v);
            }
            if !reclaimed.is_zero() {
                sr.steps.push(Step::Reclaim { shards: reclaimed });
            }
            // 2. What the ledger is already preempting for this request.
            let preempting = view.preempting.get(&rid).copied().unwrap_or_default();
            if !preempting.is_zero() {
                sr.steps.push(Step::Preempt { shards: preempting });
                missing = missing.excess_over(&preempting);
            }
            // 3. Grow the reservation from the host's free capacity.
            if !missing.is_zero() {
                let f = free
                    .entry(w.host)
                    .or_insert_with(|| ledger.balance(w.host).map(|b| b.free).unwrap_or_default());
                let grow = missing.min(f);
                if !grow.is_zero() {
                    *f = f.excess_over(&grow);
                    let changes = grow
                        .kinds()
                        .map(|kind| KindChange {
                            kind,
                            change: crate::domain::Change::Delta(
                                i64::try_from(grow.get(kind)).unwrap_or(i64::MAX),
                            ),
                        })
                        .collect();
                    let end = ledger
                        .reservation(w.reservation)
                        .map(|r| r.window.end())
                        .unwrap_or(now);
                    let duration = end.since(now).min(p.lease_for);
                    if !duration.is_zero() {
                        out.actions
                            .push(Action::ModifyReservation(action::ModifyReservation {
                                tenant: w.tenant,
                                reservation: w.reservation,
                                changes,
                                start: None,
                                duration,
                            }));
                        out.actions.push(Action::Allocate(action::Allocate {
                            tenant: w.tenant,
                            workload: w.id,
                            share: w.share.saturating_add(&grow),
                        }));
                        sr.steps.push(Step::Grow { shards: grow });
                        missing = missing.excess_over(&grow);
                    }
                }
            }
            // 4. Still short: the host is.
            if !missing.is_zero() {
                sr.steps.push(Step::HostShort { shards: missing });
                let e = out.short_hosts.entry(w.host).or_default();
                *e = e.saturating_add(&missing);
            }
            self.raise(sr);
        }
        out
    }

    /// Records a request, or folds it into the open one of the same workload.
    fn raise(&mut self, mut sr: ShardRequest) {
        if let Some(open) = self
            .requests
            .values_mut()
            .find(|o| o.workload == sr.workload && o.status == RequestStatus::Pending)
        {
            open.wanted = open.wanted.max(&sr.wanted);
            open.steps.append(&mut sr.steps);
            return;
        }
        self.next_request += 1;
        sr.id = self.next_request;
        self.requests.insert(sr.id, sr);
    }

    /// Closes pending requests: fulfilled once the workload has no short request left;
    /// partially fulfilled or failed once it has waited for longer than a lease request may.
    fn update_statuses(&mut self, ledger: &Ledger, view: &View) {
        let now = ledger.now();
        let patience = self.params.down_after;
        for r in self.requests.values_mut() {
            if r.status != RequestStatus::Pending {
                continue;
            }
            let Some(w) = ledger.workload(r.workload) else {
                r.status = RequestStatus::Failed("the workload is gone".into());
                continue;
            };
            let still_short = view
                .requests
                .get(&w.id)
                .into_iter()
                .flatten()
                .filter_map(|id| ledger.request(*id))
                .any(|x| !x.remaining().is_zero());
            if !still_short {
                r.status = RequestStatus::Fulfilled;
            } else if now.since(r.raised) > patience {
                let got = ledger
                    .allocation(w.id)
                    .map(|a| !a.is_zero())
                    .unwrap_or(false);
                r.status = if got {
                    RequestStatus::PartiallyFulfilled(format!(
                        "still short after {}; the host has no room left",
                        now.since(r.raised)
                    ))
                } else {
                    RequestStatus::Failed(format!("nothing found in {}", now.since(r.raised)))
                };
            }
        }
    }

    /// Marks the open requests on a host failed, with the reason (a provisioner failed).
    pub fn fail(&mut self, host: HostId, reason: &str) {
        for r in self
            .requests
            .values_mut()
            .filter(|r| r.host == host && r.status == RequestStatus::Pending)
        {
            r.status = RequestStatus::Failed(reason.to_string());
        }
    }

    /// Which workloads to move off `host` so that it stops missing `short`: the cheapest set
    /// to move, cost being the memory moved (what a live migration copies), among workloads
    /// that have somewhere to go. A single workload whose allocation covers the shortfall is
    /// preferred, the smallest such; otherwise the largest go first until it is covered. Only
    /// when no workload can go anywhere does one go to a new host (`to: None`): the smallest
    /// that covers the shortfall, or else the largest. Only workloads alone in a reservation
    /// that lends nothing can move. Destinations follow [`Engine::place`].
    pub fn choose_moves(
        &self,
        ledger: &Ledger,
        host: HostId,
        short: ShardVector,
        needs: &BTreeMap<WorkloadId, ShardVector>,
        pending: &mut BTreeMap<HostId, ShardVector>,
    ) -> Vec<Move> {
        let mut per_reservation: HashMap<ReservationId, usize> = HashMap::new();
        for w in ledger.workloads() {
            *per_reservation.entry(w.reservation).or_default() += 1;
        }
        let lending: std::collections::HashSet<Lender> =
            ledger.leases().map(|l| l.lender).collect();
        let movable: Vec<(WorkloadId, ShardVector)> = ledger
            .workloads()
            .filter(|w| {
                w.host == host
                    && per_reservation.get(&w.reservation) == Some(&1)
                    && !lending.contains(&Lender::Reservation(w.reservation))
            })
            .map(|w| {
                let need = needs
                    .get(&w.id)
                    .copied()
                    .unwrap_or_else(|| ledger.allocation(w.id).unwrap_or_default());
                (w.id, need)
            })
            .collect();
        let covers = |v: &ShardVector| short.kinds().all(|k| v.get(k) >= short.get(k));
        let cost = |w: &WorkloadId, v: &ShardVector| {
            (v.get(ResourceKind::Memory), v.get(ResourceKind::Cpu), *w)
        };
        let contribution = |v: &ShardVector| {
            short
                .kinds()
                .map(|k| v.get(k).min(short.get(k)))
                .sum::<u64>()
        };
        let mut out = Vec::new();
        let book = |out: &mut Vec<Move>,
                    pending: &mut BTreeMap<HostId, ShardVector>,
                    w,
                    v: ShardVector,
                    to: Option<HostId>| {
            if let Some(t) = to {
                let e = pending.entry(t).or_default();
                *e = e.saturating_add(&v);
            }
            out.push(Move {
                workload: w,
                from: host,
                to,
                needs: v,
            });
        };
        // One move to a host with room, the cheapest that covers it.
        let with_room: Vec<(WorkloadId, ShardVector, HostId)> = movable
            .iter()
            .filter_map(|&(w, v)| Self::place(ledger, &v, Some(host), pending).map(|h| (w, v, h)))
            .collect();
        if let Some(&(w, v, h)) = with_room
            .iter()
            .filter(|(_, v, _)| covers(v))
            .min_by_key(|(w, v, _)| cost(w, v))
        {
            book(&mut out, pending, w, v, Some(h));
            return out;
        }
        // Several moves to hosts with room, the largest first.
        let mut left = short;
        let mut by_size: Vec<(WorkloadId, ShardVector)> =
            with_room.iter().map(|&(w, v, _)| (w, v)).collect();
        by_size.sort_by_key(|(w, v)| (Reverse(contribution(v)), *w));
        for (w, v) in by_size {
            if left.is_zero() {
                break;
            }
            if !short.kinds().any(|k| v.get(k) > 0 && left.get(k) > 0) {
                continue;
            }
            // Room may have gone to an earlier move.
            if let Some(h) = Self::place(ledger, &v, Some(host), pending) {
                left = left.excess_over(&v);
                book(&mut out, pending, w, v, Some(h));
            }
        }
        if left.is_zero() {
            return out;
        }
        // Nowhere to go: one workload goes to a new host.
        let moving: std::collections::HashSet<WorkloadId> =
            out.iter().map(|m| m.workload).collect();
        let rest = movable.iter().filter(|(w, _)| !moving.contains(w));
        let covering = rest
            .clone()
            .filter(|(_, v)| left.kinds().all(|k| v.get(k) >= left.get(k)));
        let pick = covering
            .min_by_key(|(w, v)| cost(w, v))
            .or_else(|| rest.max_by_key(|(w, v)| (contribution(v), Reverse(*w))));
        if let Some(&(w, v)) = pick {
            book(&mut out, pending, w, v, None);
        }
        out
    }

    /// Placement: the host (other than `exclude`) where `needs` fits with the most headroom,
    /// headroom being capacity − reserved − lent by the provider − waiting requests − what is
    /// already on its way there, and "most" the largest smallest share of capacity left over
    /// any kind after placing (ties: lowest host id). `None` when no host has room.
    pub fn place(
        ledger: &Ledger,
        needs: &ShardVector,
        exclude: Option<HostId>,
        pending: &BTreeMap<HostId, ShardVector>,
    ) -> Option<HostId> {
        let mut waiting: HashMap<HostId, ShardVector> = HashMap::new();
        for r in ledger.requests() {
            let e = waiting.entry(r.host).or_default();
            *e = e.saturating_add(&r.remaining());
        }
        let mut best: Option<(u64, HostId)> = None;
        for h in ledger.hosts().filter(|h| Some(h.id) != exclude) {
            let Ok(b) = ledger.balance(h.id) else {
                continue;
            };
            let used = b
                .reserved
                .saturating_add(&b.lent_by_provider)
                .saturating_add(&waiting.get(&h.id).copied().unwrap_or_default())
                .saturating_add(&pending.get(&h.id).copied().unwrap_or_default());
            let room = h.capacity.excess_over(&used);
            if !needs.fits_in(&room) {
                continue;
            }
            // Per-mille of capacity left in the tightest kind the host has.
            let left = ResourceKind::ALL
                .into_iter()
                .filter(|&k| h.capacity.get(k) > 0)
                .map(|k| (room.get(k) - needs.get(k)).saturating_mul(1000) / h.capacity.get(k))
                .min()
                .unwrap_or(0);
            if best.is_none_or(|(l, _)| left > l) {
                best = Some((left, h.id));
            }
        }
        best.map(|(_, h)| h)
    }
}
