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
    HostId, LeaseId, Lender, PriceVector, ReclaimReason, RequestId, ReservationId, Tier, WorkloadId,
};
use crate::ledger::{Action, Ledger};
use crate::market;
use crate::rdv::{Quantiles, Rdv};
use crate::shard::{ResourceKind, ShardSizes, ShardVector};
use crate::time::{Span, Timestamp};

mod consolidate;
mod moves;
mod pending;
mod requests;

pub use consolidate::Drain;
pub use moves::Move;
pub use requests::{RequestStatus, Resolution, ShardRequest, Step};

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
    /// Consolidation drains a host only when the hosts left would commit at most this percent
    /// of their capacity in every kind (0 turns consolidation off).
    pub consolidate_fill_pct: u64,
    /// How long a host must stay the one to drain, with no host short, before it is drained.
    pub consolidate_after: Span,
}

impl Default for EngineParams {
    /// A 60 s lead, 5 % headroom, 15 min before scaling down, 10 % memory margin, day-long
    /// leases renewed 10 min before their end, up to 0.01 per shard-hour (25 × the cpu list
    /// price), moves off a host short for 10 min, and a host drained when the others would
    /// be at most 70 % committed, for 30 min on end.
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
            consolidate_fill_pct: 70,
            consolidate_after: Span::from_secs(1800),
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
                    target = target.max(crate::censoring::raised(may_use.max(held).max(1)));
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
}
