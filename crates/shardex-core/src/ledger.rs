//! The ledger: every shard of every host, where it is, and the one entry point that changes it.
//!
//! [`Ledger::apply`] takes an [`Action`] at a given `now` and returns the [`Event`]s it caused,
//! or a [`LedgerError`] naming the rule it would break; a failed action leaves the ledger
//! exactly as it was. Before the action, the ledger catches up with time: it processes, in
//! time order, every lease end, request end, reservation start or end and modification start
//! or end between its last `now` and the new one.
//!
//! # Rules
//! * **Conservation** (per host and kind): capacity = Σ reservations in force + unreserved;
//!   each reservation = allocated to its workloads + lent out + idle (offered or not);
//!   unreserved = lent by the provider + free. [`Ledger::check`] verifies it.
//! * **Admission**: a reservation, a modification, the cancelling of a modification or a new
//!   host capacity is accepted only if, at every future change point, the reservations in
//!   force plus what the provider has lent fit the capacity, and no reservation drops below
//!   what it has lent out at that time.
//! * **Leases never outlive their cover**: a lender's shards are only matched to a request if
//!   the lender can keep them through the request's whole window (given the reservation's
//!   known modifications and end). So a shrinking reservation never has to cut a lease.
//! * **Give-back order when a reservation shrinks** (a modification expires, is cancelled or
//!   a decrease starts, or the reservation ends): first its idle shards that are not offered,
//!   then its offered shards (the offer shrinks), then the allocations of its own workloads,
//!   largest allocation first (ties: lowest workload id). Leases are never cut (see above).
//! * **Modifications compose** in creation order: each one in force is applied to the result of
//!   the ones before it. `=N` sets, `+N`/`-N` add or remove shards (a decrease stops at zero),
//!   `+P%`/`-P%` scale the running count and round up to a whole shard.
//! * **Matching and priority**: pending lease requests on a host are served in order of tier
//!   (highest first), then age (oldest first). Per kind a request takes the cheapest offers
//!   whose floor price it accepts (ties: reservations by id, the provider last). A request that
//!   stays short in a kind *blocks* that kind for every request after it: those may only take
//!   offers priced above what the blocking request accepts. So a lower tier never takes shards
//!   that a higher tier is waiting for, and equal tiers are first come, first served.
//! * **Preemption**: a pending request that stays short reclaims leases of strictly lower tiers
//!   (lowest tier first, newest first) that it could use, with the configured reclaim notice;
//!   when they end their shards go back to the pool and to the waiting request.
//! * **Where returned shards go**: a lease that expires, is released or preempted returns its
//!   shards to the lender's offer; a lease the lender reclaimed returns them to the lender's
//!   idle, unoffered shards.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::book::{Bid, HostBook};
use crate::domain::{
    Delivery, Host, HostId, KindChange, Lease, LeaseId, LeaseRequest, Lender, Lending,
    Modification, ModificationId, PriceVector, ReclaimReason, RequestId, Reservation,
    ReservationId, Tenant, TenantId, Tier, Workload, WorkloadId,
};
use crate::pricing::TierFactors;
use crate::shard::{ResourceKind, ShardError, ShardVector};
use crate::time::{Span, TimeError, Timestamp, Window};

/// Why an action was refused. The ledger is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    /// Actions must come in time order.
    #[error("time went backwards: action at {now} but the ledger is already at {last}")]
    TimeWentBackwards {
        /// Time of the refused action.
        now: Timestamp,
        /// Time of the ledger.
        last: Timestamp,
    },
    /// A bad time, duration or window.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// Shard arithmetic failed.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// No host with this id.
    #[error("{0} does not exist")]
    UnknownHost(HostId),
    /// No tenant with this id.
    #[error("{0} does not exist")]
    UnknownTenant(TenantId),
    /// No reservation with this id.
    #[error("{0} does not exist")]
    UnknownReservation(ReservationId),
    /// No modification with this id.
    #[error("{0} does not exist")]
    UnknownModification(ModificationId),
    /// No workload with this id.
    #[error("{0} does not exist")]
    UnknownWorkload(WorkloadId),
    /// No active lease with this id.
    #[error("{0} does not exist or has ended")]
    UnknownLease(LeaseId),
    /// No pending request with this id.
    #[error("{0} does not exist or has ended")]
    UnknownRequest(RequestId),
    /// The object belongs to another tenant.
    #[error("{object} does not belong to {tenant}")]
    NotOwner {
        /// What was touched.
        object: String,
        /// Who tried.
        tenant: TenantId,
    },
    /// A name already taken.
    #[error("a {what} named {name:?} already exists")]
    DuplicateName {
        /// Kind of object.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A name that is empty or too long.
    #[error("{what} name {name:?} must be 1 to 128 characters")]
    BadName {
        /// Kind of object.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A workload name that can't name a cgroup, process or VM.
    #[error(
        "workload name {name:?} is not a path of letters, digits and . _ - @ : separated by /, without .. or empty parts"
    )]
    BadWorkloadName {
        /// The name.
        name: String,
    },
    /// The cgroup, process or VM is already another workload on that host.
    #[error("{name:?} on {host} is already the workload {workload} of {tenant}")]
    WorkloadTaken {
        /// The name.
        name: String,
        /// The host.
        host: HostId,
        /// The workload it is.
        workload: WorkloadId,
        /// Its owner.
        tenant: TenantId,
    },
    /// A vector of no shards where some are needed.
    #[error("{what} must have at least one shard")]
    EmptyVector {
        /// What was empty.
        what: &'static str,
    },
    /// A window that starts before now.
    #[error("{what} starts at {start}, which is before now ({now})")]
    StartsInPast {
        /// What has the window.
        what: &'static str,
        /// Its start.
        start: Timestamp,
        /// The ledger time.
        now: Timestamp,
    },
    /// A reservation that holds no shards now.
    #[error("{reservation} is not in force at {now}")]
    ReservationNotInForce {
        /// The reservation.
        reservation: ReservationId,
        /// The ledger time.
        now: Timestamp,
    },
    /// A reservation that is over.
    #[error("{0} has ended or was cancelled")]
    ReservationEnded(ReservationId),
    /// A modification window not inside its reservation's.
    #[error("the modification {window} does not fit inside {reservation}'s window {reserved}")]
    ModificationOutsideReservation {
        /// The reservation.
        reservation: ReservationId,
        /// The modification's window.
        window: Window,
        /// The reservation's window.
        reserved: Window,
    },
    /// A modification with no change, or two for one kind.
    #[error("a modification needs one change per kind it touches: {0}")]
    BadChanges(String),
    /// A modification that has already ended or was cancelled.
    #[error("{0} has already ended")]
    ModificationEnded(ModificationId),
    /// Reservations plus provider leases would exceed the host.
    #[error("{host} has {capacity} {kind} shards but {needed} would be reserved or lent at {at}")]
    HostCapacityExceeded {
        /// The host.
        host: HostId,
        /// The kind.
        kind: ResourceKind,
        /// When.
        at: Timestamp,
        /// Shards that would be committed.
        needed: u64,
        /// Shards the host has.
        capacity: u64,
    },
    /// A reservation would hold less than it has lent out.
    #[error(
        "{reservation} would hold {reserved} {kind} shards at {at} but has {lent} lent out then; reclaim first"
    )]
    BelowLent {
        /// The reservation.
        reservation: ReservationId,
        /// The kind.
        kind: ResourceKind,
        /// When.
        at: Timestamp,
        /// What it would hold.
        reserved: u64,
        /// What it has lent.
        lent: u64,
    },
    /// Not enough idle shards in the reservation.
    #[error("{reservation} has {idle} idle {kind} shards but {needed} are needed")]
    InsufficientIdle {
        /// The reservation.
        reservation: ReservationId,
        /// The kind.
        kind: ResourceKind,
        /// Idle shards (offered or not).
        idle: u64,
        /// Shards asked for.
        needed: u64,
    },
    /// A reservation with active leases can't be cancelled.
    #[error("{reservation} has {leases} active lease(s) lent out; reclaim them first")]
    LenderHasLeases {
        /// The reservation.
        reservation: ReservationId,
        /// How many.
        leases: usize,
    },
    /// A request for more than the host has.
    #[error("{host} has {capacity} {kind} shards in all; {wanted} can never be leased there")]
    RequestExceedsCapacity {
        /// The host.
        host: HostId,
        /// The kind.
        kind: ResourceKind,
        /// Capacity.
        capacity: u64,
        /// Asked for.
        wanted: u64,
    },
    /// A time that is not in the future.
    #[error("{what} {at} is not after now ({now})")]
    NotInFuture {
        /// What time.
        what: &'static str,
        /// The time.
        at: Timestamp,
        /// The ledger time.
        now: Timestamp,
    },
    /// A negative price.
    #[error("{what} must not be negative")]
    NegativePrice {
        /// Which price.
        what: &'static str,
    },
    /// The lease is already being reclaimed.
    #[error("{0} is already being reclaimed")]
    AlreadyReclaiming(LeaseId),
    /// The lease was not lent by a reservation of this tenant.
    #[error("{lease} was not lent by {tenant}")]
    NotLender {
        /// The lease.
        lease: LeaseId,
        /// Who tried to reclaim.
        tenant: TenantId,
    },
    /// A maximum price under every floor on the host: it could never be filled.
    #[error(
        "a maximum price of {max} per {kind} shard-hour is under the lowest floor on {host}, {floor} (with tier and delivery factors)"
    )]
    PriceUnderFloor {
        /// The host.
        host: HostId,
        /// The kind.
        kind: ResourceKind,
        /// The maximum price given.
        max: Decimal,
        /// The lowest price any lender there accepts.
        floor: Decimal,
    },
    /// An offer over the owner's lending cap.
    #[error(
        "{reservation} may lend at most {cap} {kind} shards and has {lent} lent; {wanted} more can't be offered"
    )]
    OverLendingCap {
        /// The reservation.
        reservation: ReservationId,
        /// The kind.
        kind: ResourceKind,
        /// The cap.
        cap: u64,
        /// Lent now.
        lent: u64,
        /// Offered.
        wanted: u64,
    },
    /// One action of a batch was refused, so the whole batch was.
    #[error("action {index} of the batch was refused: {source}")]
    InBatch {
        /// Its position in the batch, from 0.
        index: usize,
        /// Why it was refused.
        source: Box<LedgerError>,
    },
    /// A batch inside a batch.
    #[error("a batch can't contain another batch")]
    NestedBatch,
    /// A rule the ledger itself should have kept was found broken mid-action.
    #[error("ledger rule broken: {0}")]
    Internal(String),
}

/// Parameters that shape ledger behaviour; changed only through [`Action::Configure`] so that
/// replaying the log reproduces every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerParams {
    /// Notice a borrower gets before reclaimed or preempted shards move back.
    pub reclaim_notice: Span,
    /// Lowest price per shard-hour of the provider's unreserved shards.
    pub provider_floor: PriceVector,
    /// Multiplier of a lease's price when delivered now rather than at a scheduled start.
    #[serde(default = "default_immediate_premium")]
    pub immediate_premium: Decimal,
    /// Multipliers of a lease's price by the borrower's tier.
    #[serde(default)]
    pub tier_factors: TierFactors,
}

fn default_immediate_premium() -> Decimal {
    Decimal::new(125, 2)
}

impl Default for LedgerParams {
    fn default() -> Self {
        Self {
            reclaim_notice: Span::from_secs(30),
            provider_floor: PriceVector::default(),
            immediate_premium: default_immediate_premium(),
            tier_factors: TierFactors::default(),
        }
    }
}

impl LedgerParams {
    /// What a lease's base price is multiplied by for a tier and a delivery.
    pub fn price_factor(&self, tier: Tier, delivery: Delivery) -> Decimal {
        let d = match delivery {
            Delivery::Immediate => self.immediate_premium,
            Delivery::Scheduled => Decimal::ONE,
        };
        self.tier_factors.get(tier) * d
    }
}

/// Everything that can change the ledger. HTTP and CLI only parse into these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sets ledger parameters.
    Configure {
        /// New parameters.
        params: LedgerParams,
    },
    /// Adds a host.
    RegisterHost {
        /// Unique name.
        name: String,
        /// Its capacity in shards.
        capacity: ShardVector,
    },
    /// Changes a host's capacity (admission rules apply).
    SetHostCapacity {
        /// The host.
        host: HostId,
        /// New capacity.
        capacity: ShardVector,
    },
    /// Adds a tenant.
    CreateTenant {
        /// Unique name.
        name: String,
    },
    /// Reserves shards on a host for a window.
    CreateReservation {
        /// Owner.
        tenant: TenantId,
        /// Where.
        host: HostId,
        /// How many shards.
        vector: ShardVector,
        /// When.
        window: Window,
        /// Priority.
        tier: Tier,
    },
    /// Changes a reservation for a while.
    ModifyReservation {
        /// Owner.
        tenant: TenantId,
        /// Which.
        reservation: ReservationId,
        /// What changes.
        changes: Vec<KindChange>,
        /// When it starts; now if absent.
        #[serde(default)]
        start: Option<Timestamp>,
        /// How long it lasts.
        duration: Span,
    },
    /// Ends a modification early.
    CancelModification {
        /// Owner.
        tenant: TenantId,
        /// Which.
        modification: ModificationId,
    },
    /// Ends a reservation now.
    CancelReservation {
        /// Owner.
        tenant: TenantId,
        /// Which.
        reservation: ReservationId,
    },
    /// Creates a workload inside a reservation.
    BindWorkload {
        /// Owner (of the reservation too).
        tenant: TenantId,
        /// The reservation.
        reservation: ReservationId,
        /// Name, unique per tenant.
        name: String,
    },
    /// Removes a workload: its share goes idle, its leases and requests end.
    UnbindWorkload {
        /// Owner.
        tenant: TenantId,
        /// Which.
        workload: WorkloadId,
    },
    /// Sets a workload's share of its own reservation.
    Allocate {
        /// Owner.
        tenant: TenantId,
        /// Which.
        workload: WorkloadId,
        /// New share.
        share: ShardVector,
    },
    /// Sets what a reservation offers to the pool and at what floor price.
    Offer {
        /// Owner.
        tenant: TenantId,
        /// Which.
        reservation: ReservationId,
        /// Shards offered (at most its idle shards).
        vector: ShardVector,
        /// Lowest price per shard-hour.
        floor: PriceVector,
    },
    /// Asks the pool for shards for a workload until a time.
    RequestLease {
        /// Owner of the workload.
        tenant: TenantId,
        /// The borrower.
        workload: WorkloadId,
        /// Shards wanted.
        vector: ShardVector,
        /// When the leases end.
        until: Timestamp,
        /// Highest price per shard-hour accepted.
        max_price: PriceVector,
        /// Take all or nothing instead of partial fills.
        all_or_nothing: bool,
        /// Scheduled delivery: matching starts then. Absent means now (immediate, at the
        /// immediate-delivery premium).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<Timestamp>,
    },
    /// Sets how a reservation lends: opt-out of automatic offers, a cap, a floor price.
    SetLending {
        /// Owner.
        tenant: TenantId,
        /// Which.
        reservation: ReservationId,
        /// Opt-out and cap.
        lending: Lending,
        /// Lowest price per shard-hour.
        floor: PriceVector,
    },
    /// Offers a reservation's idle shards minus its owner's predicted need, within its
    /// lending rules. The engine sends it on the owner's behalf.
    AutoOffer {
        /// Which.
        reservation: ReservationId,
        /// What its own workloads are predicted to need on top of their allocations over the
        /// reclaim notice (upper quantile of their RDVs).
        need: ShardVector,
    },
    /// Sets the pool's market price per shard-hour on a host (from the price book).
    SetMarketPrice {
        /// The host.
        host: HostId,
        /// Base price per shard-hour, per kind, before tier and delivery factors.
        prices: PriceVector,
    },
    /// Withdraws a pending request (leases it already got stay).
    CancelRequest {
        /// Owner.
        tenant: TenantId,
        /// Which.
        request: RequestId,
    },
    /// The lender takes a lease back, after the reclaim notice.
    Reclaim {
        /// Owner of the lending reservation.
        tenant: TenantId,
        /// Which.
        lease: LeaseId,
    },
    /// The borrower gives a lease back now.
    Release {
        /// Owner of the borrowing workload.
        tenant: TenantId,
        /// Which.
        lease: LeaseId,
    },
    /// Catches up with time only: processes every expiry up to now.
    Expire,
    /// Several actions applied in order as one, then matching once on the hosts they touched:
    /// all of them, or none (the engine commits a tick's plan this way).
    Batch {
        /// The actions, in order.
        actions: Vec<Action>,
    },
}

/// Why a workload's share changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationReason {
    /// Its owner set it.
    Allocated,
    /// Its reservation shrank and took shards back.
    ReservationShrank,
    /// It was unbound or its reservation ended.
    Unbound,
}

/// Why a reservation's offer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferReason {
    /// Its owner set it.
    Owner,
    /// Its own workloads needed the shards.
    Allocated,
    /// The reservation shrank.
    ReservationShrank,
    /// The engine offered idle shards minus the owner's predicted need.
    Auto,
    /// The owner changed its lending rules.
    Lending,
}

/// How a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEnd {
    /// Its window closed.
    Expired,
    /// The lender took it back.
    Reclaimed,
    /// A higher tier took it.
    Preempted,
    /// The borrower gave it back.
    Released,
    /// The borrower was unbound.
    BorrowerGone,
}

/// How a lease request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Everything was granted.
    Fulfilled,
    /// Its time ran out first.
    Expired,
    /// Its owner withdrew it, or the workload went away.
    Cancelled,
}

/// What an action did. Events are stored with the action that caused them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Parameters changed.
    Configured {
        /// New parameters.
        params: LedgerParams,
    },
    /// A host joined.
    HostRegistered {
        /// Id given.
        host: HostId,
        /// Name.
        name: String,
        /// Capacity.
        capacity: ShardVector,
    },
    /// A host's capacity changed.
    HostCapacityChanged {
        /// The host.
        host: HostId,
        /// Before.
        from: ShardVector,
        /// After.
        to: ShardVector,
    },
    /// A tenant was created.
    TenantCreated {
        /// Id given.
        tenant: TenantId,
        /// Name.
        name: String,
    },
    /// A reservation was made.
    ReservationCreated {
        /// Id given.
        reservation: ReservationId,
        /// Owner.
        tenant: TenantId,
        /// Host.
        host: HostId,
        /// Base vector.
        vector: ShardVector,
        /// Window.
        window: Window,
        /// Tier.
        tier: Tier,
    },
    /// A reservation's vector in force changed (start, modification start or end).
    ReservationResized {
        /// The reservation.
        reservation: ReservationId,
        /// Before.
        from: ShardVector,
        /// After.
        to: ShardVector,
    },
    /// A reservation ended.
    ReservationEnded {
        /// The reservation.
        reservation: ReservationId,
        /// True when cancelled, false when its window closed.
        cancelled: bool,
    },
    /// A modification was made.
    ModificationCreated {
        /// Id given.
        modification: ModificationId,
        /// Reservation.
        reservation: ReservationId,
        /// Changes.
        changes: Vec<KindChange>,
        /// Window.
        window: Window,
    },
    /// A modification stopped being in force.
    ModificationEnded {
        /// The modification.
        modification: ModificationId,
        /// True when cancelled, false when it expired.
        cancelled: bool,
    },
    /// A workload was created.
    WorkloadBound {
        /// Id given.
        workload: WorkloadId,
        /// Owner.
        tenant: TenantId,
        /// Name.
        name: String,
        /// Reservation.
        reservation: ReservationId,
        /// Host.
        host: HostId,
    },
    /// A workload was removed.
    WorkloadUnbound {
        /// The workload.
        workload: WorkloadId,
    },
    /// A workload's share of its reservation changed.
    AllocationChanged {
        /// The workload.
        workload: WorkloadId,
        /// Before.
        from: ShardVector,
        /// After.
        to: ShardVector,
        /// Why.
        reason: AllocationReason,
    },
    /// A reservation's offer changed.
    OfferChanged {
        /// The reservation.
        reservation: ReservationId,
        /// Offered now.
        offered: ShardVector,
        /// Floor price.
        floor: PriceVector,
        /// Why.
        reason: OfferReason,
    },
    /// A lease request was made.
    LeaseRequested {
        /// Id given.
        request: RequestId,
        /// Borrower.
        workload: WorkloadId,
        /// Wanted.
        wanted: ShardVector,
        /// Ends.
        until: Timestamp,
        /// Tier.
        tier: Tier,
        /// Scheduled delivery, if not now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<Timestamp>,
    },
    /// A reservation's lending rules changed.
    LendingChanged {
        /// The reservation.
        reservation: ReservationId,
        /// Opt-out and cap.
        lending: Lending,
        /// Floor price.
        floor: PriceVector,
    },
    /// A host's market price changed.
    MarketPriceChanged {
        /// The host.
        host: HostId,
        /// Base price per shard-hour.
        prices: PriceVector,
    },
    /// A lease request ended.
    LeaseRequestEnded {
        /// The request.
        request: RequestId,
        /// What it got in all.
        filled: ShardVector,
        /// How.
        outcome: RequestOutcome,
    },
    /// Shards were leased.
    LeaseCreated {
        /// Id given.
        lease: LeaseId,
        /// The request it fills.
        request: RequestId,
        /// Lender.
        lender: Lender,
        /// Borrower.
        borrower: WorkloadId,
        /// Shards.
        vector: ShardVector,
        /// Price per shard-hour.
        price: PriceVector,
        /// Window.
        window: Window,
    },
    /// A lease will end early, at `at`.
    LeaseReclaiming {
        /// The lease.
        lease: LeaseId,
        /// When the shards move back.
        at: Timestamp,
        /// Why.
        reason: ReclaimReason,
    },
    /// A lease ended and its shards went back.
    LeaseEnded {
        /// The lease.
        lease: LeaseId,
        /// How.
        reason: LeaseEnd,
    },
}

/// Where every shard of one host is, per kind, at the ledger's time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBalance {
    /// The host.
    pub host: Option<HostId>,
    /// Its capacity.
    pub capacity: ShardVector,
    /// Σ reservations in force.
    pub reserved: ShardVector,
    /// Σ workload shares of those reservations.
    pub allocated: ShardVector,
    /// Σ lent out by reservations.
    pub lent_by_reservations: ShardVector,
    /// Σ idle shards of reservations (offered or not).
    pub idle: ShardVector,
    /// Σ offered by reservations (part of idle).
    pub offered: ShardVector,
    /// Capacity not reserved.
    pub unreserved: ShardVector,
    /// Lent out by the provider from unreserved capacity.
    pub lent_by_provider: ShardVector,
    /// Unreserved and not lent.
    pub free: ShardVector,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counters {
    host: u64,
    tenant: u64,
    reservation: u64,
    modification: u64,
    workload: u64,
    lease: u64,
    request: u64,
}

/// The whole state: hosts, tenants, reservations, workloads, leases and pending requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    params: LedgerParams,
    now: Timestamp,
    counters: Counters,
    hosts: BTreeMap<HostId, Host>,
    tenants: BTreeMap<TenantId, Tenant>,
    reservations: BTreeMap<ReservationId, Reservation>,
    modifications: BTreeMap<ModificationId, Modification>,
    workloads: BTreeMap<WorkloadId, Workload>,
    leases: BTreeMap<LeaseId, Lease>,
    requests: BTreeMap<RequestId, LeaseRequest>,
    market: BTreeMap<HostId, PriceVector>,
    /// Leases by lender and by borrower: derived from `leases`, kept in step with it.
    by_lender: BTreeMap<Lender, BTreeSet<LeaseId>>,
    by_borrower: BTreeMap<WorkloadId, BTreeSet<LeaseId>>,
    /// Per-host and per-reservation indexes, derived the same way: every host-local rule
    /// reads only its host's objects.
    #[serde(default)]
    idx: Indexes,
}

/// Objects by where they are. Derived from the ledger's maps and checked by `check()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Indexes {
    reservations: BTreeMap<HostId, BTreeSet<ReservationId>>,
    requests: BTreeMap<HostId, BTreeSet<RequestId>>,
    leases: BTreeMap<HostId, BTreeSet<LeaseId>>,
    workloads: BTreeMap<ReservationId, BTreeSet<WorkloadId>>,
}

fn index_add<K: Ord, V: Ord>(m: &mut BTreeMap<K, BTreeSet<V>>, k: K, v: V) {
    m.entry(k).or_default().insert(v);
}

/// The objects an index lists under `key`.
fn indexed<'a, K: Ord, I: Ord, V>(
    index: &'a BTreeMap<K, BTreeSet<I>>,
    key: &K,
    objects: &'a BTreeMap<I, V>,
) -> impl Iterator<Item = &'a V> + use<'a, K, I, V> {
    index
        .get(key)
        .into_iter()
        .flatten()
        .filter_map(|id| objects.get(id))
}

fn index_remove<K: Ord, V: Ord>(m: &mut BTreeMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

fn next(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

fn check_name(what: &'static str, name: &str) -> Result<(), LedgerError> {
    if name.trim().is_empty() || name.len() > 128 || name.trim() != name {
        return Err(LedgerError::BadName {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// A workload's name is what the host's adapters find it by (a cgroup path like
/// `system.slice/nginx.service`, a VM's name): path parts of `[A-Za-z0-9._@:-]`, no `..`, no
/// empty part except one leading `/` (`/` alone is the root cgroup).
fn check_workload_name(name: &str) -> Result<(), LedgerError> {
    check_name("workload", name)?;
    let rel = name.strip_prefix('/').unwrap_or(name);
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c))
    };
    if name == "/" || rel.split('/').all(ok_part) {
        Ok(())
    } else {
        Err(LedgerError::BadWorkloadName {
            name: name.to_string(),
        })
    }
}

/// The name without a leading `/`: `/a/b` and `a/b` are the same cgroup.
fn same_thing(a: &str, b: &str) -> bool {
    a.trim_start_matches('/') == b.trim_start_matches('/')
}

impl Ledger {
    /// An empty ledger with default parameters, at the epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one action at `now`: all of it, or nothing.
    pub fn apply(&mut self, action: &Action, now: Timestamp) -> Result<Vec<Event>, LedgerError> {
        let (next, events) = self.applied(action, now)?;
        *self = next;
        Ok(events)
    }

    /// The ledger as it would be after `action` at `now`, and the events; `self` is untouched.
    /// A store uses this to persist first and switch over only once the write is durable.
    pub fn applied(
        &self,
        action: &Action,
        now: Timestamp,
    ) -> Result<(Ledger, Vec<Event>), LedgerError> {
        if now < self.now {
            return Err(LedgerError::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        // Working on a copy makes every action atomic however far it got before failing.
        let mut next = self.clone();
        let mut events = Vec::new();
        next.advance(now, &mut events)?;
        match action {
            Action::Batch { actions } => {
                // Its actions in order, then matching once on every host they touched.
                let mut touched: Option<BTreeSet<HostId>> = Some(BTreeSet::new());
                for (index, a) in actions.iter().enumerate() {
                    let hosts = next.hosts_of(a);
                    next.act(a, &mut events).map_err(|e| LedgerError::InBatch {
                        index,
                        source: Box::new(e),
                    })?;
                    touched = match (touched, hosts) {
                        (Some(mut t), Some(h)) => {
                            t.extend(h);
                            Some(t)
                        }
                        _ => None,
                    };
                }
                next.match_hosts(touched.as_ref(), &mut events)?;
            }
            a => next.act_and_match(a, &mut events)?,
        }
        next.prune();
        Ok((next, events))
    }

    /// One action, then matching on the hosts it touched: nothing changed elsewhere, and time
    /// passing was matched at every change point on the way.
    fn act_and_match(&mut self, action: &Action, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let touched = self.hosts_of(action);
        self.act(action, ev)?;
        self.match_hosts(touched.as_ref(), ev)
    }

    /// Matches pending requests on `hosts` (every host when `None`).
    fn match_hosts(
        &mut self,
        hosts: Option<&BTreeSet<HostId>>,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let pending: Vec<HostId> = match hosts {
            Some(hs) => hs
                .iter()
                .copied()
                .filter(|h| self.idx.requests.contains_key(h))
                .collect(),
            None => self.idx.requests.keys().copied().collect(),
        };
        for host in pending {
            self.match_requests(host, ev)?;
        }
        Ok(())
    }

    /// The hosts an action can change; `None` when it can change all of them.
    fn hosts_of(&self, action: &Action) -> Option<BTreeSet<HostId>> {
        let res = |r: &ReservationId| self.reservations.get(r).map(|r| r.host);
        let wl = |w: &WorkloadId| self.workloads.get(w).map(|w| w.host);
        let host = match action {
            Action::Configure { .. } | Action::Batch { .. } => return None,
            Action::CreateTenant { .. } | Action::Expire | Action::RegisterHost { .. } => None,
            Action::SetHostCapacity { host, .. }
            | Action::CreateReservation { host, .. }
            | Action::SetMarketPrice { host, .. } => Some(*host),
            Action::ModifyReservation { reservation, .. }
            | Action::CancelReservation { reservation, .. }
            | Action::BindWorkload { reservation, .. }
            | Action::Offer { reservation, .. }
            | Action::SetLending { reservation, .. }
            | Action::AutoOffer { reservation, .. } => res(reservation),
            Action::CancelModification { modification, .. } => self
                .modifications
                .get(modification)
                .and_then(|m| res(&m.reservation)),
            Action::UnbindWorkload { workload, .. }
            | Action::Allocate { workload, .. }
            | Action::RequestLease { workload, .. } => wl(workload),
            Action::CancelRequest { request, .. } => self.requests.get(request).map(|r| r.host),
            Action::Reclaim { lease, .. } | Action::Release { lease, .. } => {
                self.leases.get(lease).map(|l| l.host)
            }
        };
        Some(host.into_iter().collect())
    }

    /// Moves the clock to `now` in place when nothing falls due up to then (no event, no
    /// other change, nothing to log: the next action at `now` would do the same); returns
    /// false, changing nothing, when something is due or `now` is in the past.
    pub fn advance_idle(&mut self, now: Timestamp) -> bool {
        if now < self.now || self.next_change_after(self.now).is_some_and(|t| t <= now) {
            return false;
        }
        self.now = now;
        true
    }

    /// Drops reservations and modifications that are over: the log keeps their history, and
    /// keeping them here would make every later action slower.
    fn prune(&mut self) {
        let now = self.now;
        let over = |cancelled: bool, w: &Window| cancelled || w.end() <= now;
        self.modifications
            .retain(|_, m| !over(m.cancelled, &m.window));
        let idx = &mut self.idx;
        self.reservations.retain(|_, r| {
            let keep = !over(r.cancelled, &r.window);
            if !keep {
                index_remove(&mut idx.reservations, &r.host, &r.id);
                idx.workloads.remove(&r.id);
            }
            keep
        });
        let mods = &self.modifications;
        for r in self.reservations.values_mut() {
            r.modifications.retain(|m| mods.contains_key(m));
        }
    }

    /// Time of the last applied action.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The next time at which something changes by itself (an expiry, a start, an end), if any.
    /// A daemon applies [`Action::Expire`] then, so that nothing waits for the next action.
    pub fn next_change(&self) -> Option<Timestamp> {
        self.next_change_after(self.now)
    }

    /// Current parameters.
    pub fn params(&self) -> &LedgerParams {
        &self.params
    }

    /// All hosts.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    /// One host.
    pub fn host(&self, id: HostId) -> Option<&Host> {
        self.hosts.get(&id)
    }

    /// A host by name.
    pub fn host_named(&self, name: &str) -> Option<&Host> {
        self.hosts.values().find(|h| h.name == name)
    }

    /// All tenants.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// One tenant.
    pub fn tenant(&self, id: TenantId) -> Option<&Tenant> {
        self.tenants.get(&id)
    }

    /// A tenant by name.
    pub fn tenant_named(&self, name: &str) -> Option<&Tenant> {
        self.tenants.values().find(|t| t.name == name)
    }

    /// Reservations not yet over (ended ones leave the state; the log keeps their history).
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// One reservation.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// All modifications.
    pub fn modifications(&self) -> impl Iterator<Item = &Modification> {
        self.modifications.values()
    }

    /// One modification.
    pub fn modification(&self, id: ModificationId) -> Option<&Modification> {
        self.modifications.get(&id)
    }

    /// All bound workloads.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.values()
    }

    /// One workload.
    pub fn workload(&self, id: WorkloadId) -> Option<&Workload> {
        self.workloads.get(&id)
    }

    /// A tenant's workload by name.
    pub fn workload_named(&self, tenant: TenantId, name: &str) -> Option<&Workload> {
        self.workloads
            .values()
            .find(|w| w.tenant == tenant && w.name == name)
    }

    fn host_reservations(&self, host: HostId) -> impl Iterator<Item = &Reservation> {
        indexed(&self.idx.reservations, &host, &self.reservations)
    }

    fn host_requests(&self, host: HostId) -> impl Iterator<Item = &LeaseRequest> {
        indexed(&self.idx.requests, &host, &self.requests)
    }

    fn host_leases(&self, host: HostId) -> impl Iterator<Item = &Lease> {
        indexed(&self.idx.leases, &host, &self.leases)
    }

    fn reservation_workloads(&self, r: ReservationId) -> impl Iterator<Item = &Workload> {
        indexed(&self.idx.workloads, &r, &self.workloads)
    }

    /// The reservations on a host (indexed).
    pub fn reservations_on(&self, host: HostId) -> impl Iterator<Item = &Reservation> {
        self.host_reservations(host)
    }

    /// The workloads running inside a reservation.
    pub fn workloads_of(&self, r: ReservationId) -> impl Iterator<Item = &Workload> {
        self.reservation_workloads(r)
    }

    /// Shards a lender has lent out now (leases in their reclaim notice included: their
    /// borrower still holds them).
    pub fn lent_now(&self, lender: Lender) -> Result<ShardVector, LedgerError> {
        self.lent_by(lender, self.now)
    }

    /// Shards a workload borrows now.
    pub fn borrowed(&self, w: WorkloadId) -> Result<ShardVector, LedgerError> {
        Ok(ShardVector::checked_sum(
            self.by_borrower
                .get(&w)
                .into_iter()
                .flatten()
                .filter_map(|id| self.leases.get(id))
                .map(|l| &l.vector),
        )?)
    }

    /// One pending lease request.
    pub fn request(&self, id: RequestId) -> Option<&LeaseRequest> {
        self.requests.get(&id)
    }

    /// Active leases.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Pending lease requests.
    pub fn requests(&self) -> impl Iterator<Item = &LeaseRequest> {
        self.requests.values()
    }

    /// The vector a reservation holds at `t`, with its modifications applied.
    pub fn reserved_at(&self, r: &Reservation, t: Timestamp) -> Result<ShardVector, LedgerError> {
        if r.cancelled || !r.window.contains(t) {
            return Ok(ShardVector::ZERO);
        }
        let mut v = r.base;
        for id in &r.modifications {
            let m = self
                .modifications
                .get(id)
                .ok_or(LedgerError::UnknownModification(*id))?;
            if m.in_force(t) {
                for kc in &m.changes {
                    v = v.with(kc.kind, kc.change.apply(kc.kind, v.get(kc.kind))?);
                }
            }
        }
        Ok(v)
    }

    /// A workload's allocation: its share plus what it borrows.
    pub fn allocation(&self, w: WorkloadId) -> Result<ShardVector, LedgerError> {
        let wl = self
            .workloads
            .get(&w)
            .ok_or(LedgerError::UnknownWorkload(w))?;
        let borrowed = ShardVector::checked_sum(
            self.by_borrower
                .get(&w)
                .into_iter()
                .flatten()
                .filter_map(|id| self.leases.get(id))
                .map(|l| &l.vector),
        )?;
        Ok(wl.share.checked_add(&borrowed)?)
    }

    /// Where every shard of a host is now.
    pub fn balance(&self, host: HostId) -> Result<HostBalance, LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        let mut b = HostBalance {
            host: Some(host),
            capacity: h.capacity,
            ..HostBalance::default()
        };
        for r in self.host_reservations(host) {
            let reserved = self.reserved_at(r, self.now)?;
            let allocated = self.allocated(r.id)?;
            let lent = self.lent_by(Lender::Reservation(r.id), self.now)?;
            b.reserved = b.reserved.checked_add(&reserved)?;
            b.allocated = b.allocated.checked_add(&allocated)?;
            b.lent_by_reservations = b.lent_by_reservations.checked_add(&lent)?;
            b.offered = b.offered.checked_add(&r.offered)?;
            let idle = reserved.checked_sub(&allocated.checked_add(&lent)?)?;
            b.idle = b.idle.checked_add(&idle)?;
        }
        b.unreserved = h.capacity.checked_sub(&b.reserved)?;
        b.lent_by_provider = self.lent_by(Lender::Provider(host), self.now)?;
        b.free = b.unreserved.checked_sub(&b.lent_by_provider)?;
        Ok(b)
    }

    // ----- time -----

    fn advance(&mut self, now: Timestamp, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        while let Some(t) = self.next_change_after(self.now).filter(|&t| t <= now) {
            let prev = self.now;
            self.now = t;
            self.step(prev, ev)?;
        }
        self.now = now;
        Ok(())
    }

    fn next_change_after(&self, after: Timestamp) -> Option<Timestamp> {
        let res = self
            .reservations
            .values()
            .filter(|r| !r.cancelled)
            .flat_map(|r| {
                [r.window.start(), r.window.end()].into_iter().chain(
                    r.modifications
                        .iter()
                        .filter_map(|m| self.modifications.get(m))
                        .filter(|m| !m.cancelled)
                        .flat_map(|m| [m.window.start(), m.window.end()]),
                )
            });
        let leases = self.leases.values().map(|l| l.window.end());
        let requests = self.requests.values().flat_map(|r| [r.start, r.until]);
        res.chain(leases)
            .chain(requests)
            .filter(|&t| t > after)
            .min()
    }

    /// Processes everything that happens at `self.now`, coming from `prev`.
    fn step(&mut self, prev: Timestamp, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let now = self.now;
        let ending: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|l| l.window.end() <= now)
            .map(|l| l.id)
            .collect();
        for id in ending {
            let reason = match self.leases.get(&id).and_then(|l| l.reclaim) {
                None => LeaseEnd::Expired,
                Some(ReclaimReason::Lender) => LeaseEnd::Reclaimed,
                Some(ReclaimReason::Preempted { .. }) => LeaseEnd::Preempted,
            };
            self.end_lease(id, reason, ev)?;
        }
        let expired: Vec<RequestId> = self
            .requests
            .values()
            .filter(|r| r.until <= now)
            .map(|r| r.id)
            .collect();
        for id in expired {
            self.end_request(id, RequestOutcome::Expired, ev);
        }
        // Only reservations with an edge in (prev, now] can have changed.
        let edge = |t: Timestamp| prev < t && t <= now;
        let ids: Vec<ReservationId> = self
            .reservations
            .values()
            .filter(|r| {
                !r.cancelled
                    && (edge(r.window.start())
                        || edge(r.window.end())
                        || r.modifications.iter().any(|m| {
                            self.modifications
                                .get(m)
                                .is_some_and(|m| edge(m.window.start()) || edge(m.window.end()))
                        }))
            })
            .map(|r| r.id)
            .collect();
        for id in ids {
            let r = self.reservations[&id].clone();
            for m in &r.modifications {
                let m = &self.modifications[m];
                if !m.cancelled && m.window.end() == now {
                    ev.push(Event::ModificationEnded {
                        modification: m.id,
                        cancelled: false,
                    });
                }
            }
            let before = self.reserved_at(&r, prev)?;
            let after = self.reserved_at(&r, now)?;
            if before != after {
                ev.push(Event::ReservationResized {
                    reservation: id,
                    from: before,
                    to: after,
                });
                self.give_back(id, after, ev)?;
            }
            if r.window.end() == now {
                ev.push(Event::ReservationEnded {
                    reservation: id,
                    cancelled: false,
                });
                self.unbind_all(id, ev)?;
            }
        }
        let hosts: BTreeSet<HostId> = self.requests.values().map(|r| r.host).collect();
        for host in hosts {
            self.match_requests(host, ev)?;
        }
        Ok(())
    }

    /// Every time at or after now when something on `host` changes.
    fn change_points(&self, host: HostId) -> Vec<Timestamp> {
        let mut pts = BTreeSet::from([self.now]);
        for r in self.host_reservations(host).filter(|r| !r.cancelled) {
            pts.insert(r.window.start());
            pts.insert(r.window.end());
            for m in r
                .modifications
                .iter()
                .filter_map(|m| self.modifications.get(m))
            {
                if !m.cancelled {
                    pts.insert(m.window.start());
                    pts.insert(m.window.end());
                }
            }
        }
        for l in self.host_leases(host) {
            pts.insert(l.window.end());
        }
        pts.into_iter().filter(|&t| t >= self.now).collect()
    }

    fn lent_by(&self, lender: Lender, t: Timestamp) -> Result<ShardVector, LedgerError> {
        Ok(ShardVector::checked_sum(
            self.by_lender
                .get(&lender)
                .into_iter()
                .flatten()
                .filter_map(|id| self.leases.get(id))
                .filter(|l| l.window.contains(t))
                .map(|l| &l.vector),
        )?)
    }

    fn allocated(&self, r: ReservationId) -> Result<ShardVector, LedgerError> {
        Ok(ShardVector::checked_sum(
            self.reservation_workloads(r).map(|w| &w.share),
        )?)
    }

    /// The base price per shard-hour a lender's shards go for now: its floor, or the host's
    /// market price when that is higher.
    fn ask_price(&self, lender: Lender, host: HostId) -> PriceVector {
        let floor = self.lender_floor(lender);
        match self.market.get(&host) {
            Some(m) => floor.zip(m, Decimal::max),
            None => floor,
        }
    }

    /// The lowest floor on a host per kind: the provider's, or a reservation offering lower.
    pub fn lowest_floor(&self, host: HostId) -> PriceVector {
        let mut f = self.params.provider_floor;
        for r in self
            .host_reservations(host)
            .filter(|r| !r.offered.is_zero())
        {
            for k in r.offered.kinds() {
                f.set(k, f.get(k).min(r.floor.get(k)));
            }
        }
        f
    }

    /// The market price per shard-hour on a host, before tier and delivery factors.
    pub fn market_price(&self, host: HostId) -> Option<PriceVector> {
        self.market.get(&host).copied()
    }

    fn lender_floor(&self, lender: Lender) -> PriceVector {
        match lender {
            Lender::Reservation(r) => self
                .reservations
                .get(&r)
                .map(|r| r.floor)
                .unwrap_or_default(),
            Lender::Provider(_) => self.params.provider_floor,
        }
    }

    /// Admission: at every future change point the host's commitments fit its capacity and no
    /// reservation holds less than it has lent.
    fn admit(&self, host: HostId) -> Result<(), LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        for t in self.change_points(host) {
            let mut committed = self.lent_by(Lender::Provider(host), t)?;
            for r in self.host_reservations(host) {
                let reserved = self.reserved_at(r, t)?;
                let lent = self.lent_by(Lender::Reservation(r.id), t)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| reserved.get(k) < lent.get(k))
                {
                    return Err(LedgerError::BelowLent {
                        reservation: r.id,
                        kind,
                        at: t,
                        reserved: reserved.get(kind),
                        lent: lent.get(kind),
                    });
                }
                committed = committed.checked_add(&reserved)?;
            }
            if let Some(kind) = ResourceKind::ALL
                .into_iter()
                .find(|&k| committed.get(k) > h.capacity.get(k))
            {
                return Err(LedgerError::HostCapacityExceeded {
                    host,
                    kind,
                    at: t,
                    needed: committed.get(kind),
                    capacity: h.capacity.get(kind),
                });
            }
        }
        Ok(())
    }

    // ----- actions -----

    fn tenant_owns(
        &self,
        tenant: TenantId,
        owner: TenantId,
        object: impl FnOnce() -> String,
    ) -> Result<(), LedgerError> {
        if !self.tenants.contains_key(&tenant) {
            return Err(LedgerError::UnknownTenant(tenant));
        }
        if tenant != owner {
            return Err(LedgerError::NotOwner {
                object: object(),
                tenant,
            });
        }
        Ok(())
    }

    fn own_reservation(
        &self,
        tenant: TenantId,
        id: ReservationId,
    ) -> Result<&Reservation, LedgerError> {
        let r = self
            .reservations
            .get(&id)
            .ok_or(LedgerError::UnknownReservation(id))?;
        self.tenant_owns(tenant, r.tenant, || id.to_string())?;
        Ok(r)
    }

    fn own_workload(&self, tenant: TenantId, id: WorkloadId) -> Result<&Workload, LedgerError> {
        let w = self
            .workloads
            .get(&id)
            .ok_or(LedgerError::UnknownWorkload(id))?;
        self.tenant_owns(tenant, w.tenant, || id.to_string())?;
        Ok(w)
    }

    fn act(&mut self, action: &Action, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let now = self.now;
        match action {
            Action::Configure { params } => {
                if !params.provider_floor.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "provider floor price",
                    });
                }
                if params.reclaim_notice.is_zero() {
                    return Err(TimeError::ZeroDuration.into());
                }
                self.params = params.clone();
                ev.push(Event::Configured {
                    params: params.clone(),
                });
            }
            Action::RegisterHost { name, capacity } => {
                check_name("host", name)?;
                if self.host_named(name).is_some() {
                    return Err(LedgerError::DuplicateName {
                        what: "host",
                        name: name.clone(),
                    });
                }
                if capacity.is_zero() {
                    return Err(LedgerError::EmptyVector {
                        what: "host capacity",
                    });
                }
                let id = HostId(next(&mut self.counters.host));
                self.hosts.insert(
                    id,
                    Host {
                        id,
                        name: name.clone(),
                        capacity: *capacity,
                    },
                );
                ev.push(Event::HostRegistered {
                    host: id,
                    name: name.clone(),
                    capacity: *capacity,
                });
            }
            Action::SetHostCapacity { host, capacity } => {
                let h = self
                    .hosts
                    .get_mut(host)
                    .ok_or(LedgerError::UnknownHost(*host))?;
                let from = h.capacity;
                h.capacity = *capacity;
                self.admit(*host)?;
                ev.push(Event::HostCapacityChanged {
                    host: *host,
                    from,
                    to: *capacity,
                });
            }
            Action::CreateTenant { name } => {
                check_name("tenant", name)?;
                if self.tenant_named(name).is_some() {
                    return Err(LedgerError::DuplicateName {
                        what: "tenant",
                        name: name.clone(),
                    });
                }
                let id = TenantId(next(&mut self.counters.tenant));
                self.tenants.insert(
                    id,
                    Tenant {
                        id,
                        name: name.clone(),
                    },
                );
                ev.push(Event::TenantCreated {
                    tenant: id,
                    name: name.clone(),
                });
            }
            Action::CreateReservation {
                tenant,
                host,
                vector,
                window,
                tier,
            } => {
                if !self.tenants.contains_key(tenant) {
                    return Err(LedgerError::UnknownTenant(*tenant));
                }
                if !self.hosts.contains_key(host) {
                    return Err(LedgerError::UnknownHost(*host));
                }
                if vector.is_zero() {
                    return Err(LedgerError::EmptyVector {
                        what: "a reservation",
                    });
                }
                if window.start() < now {
                    return Err(LedgerError::StartsInPast {
                        what: "the reservation",
                        start: window.start(),
                        now,
                    });
                }
                let id = ReservationId(next(&mut self.counters.reservation));
                index_add(&mut self.idx.reservations, *host, id);
                self.reservations.insert(
                    id,
                    Reservation {
                        id,
                        tenant: *tenant,
                        host: *host,
                        base: *vector,
                        window: *window,
                        tier: *tier,
                        modifications: Vec::new(),
                        offered: ShardVector::ZERO,
                        floor: PriceVector::default(),
                        lending: Lending::default(),
                        cancelled: false,
                    },
                );
                self.admit(*host)?;
                ev.push(Event::ReservationCreated {
                    reservation: id,
                    tenant: *tenant,
                    host: *host,
                    vector: *vector,
                    window: *window,
                    tier: *tier,
                });
            }
            Action::ModifyReservation {
                tenant,
                reservation,
                changes,
                start,
                duration,
            } => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if r.cancelled || r.window.end() <= now {
                    return Err(LedgerError::ReservationEnded(r.id));
                }
                let start = start.unwrap_or(now);
                if start < now {
                    return Err(LedgerError::StartsInPast {
                        what: "the modification",
                        start,
                        now,
                    });
                }
                let window = Window::starting(start, *duration)?;
                if !r.window.covers(&window) {
                    return Err(LedgerError::ModificationOutsideReservation {
                        reservation: r.id,
                        window,
                        reserved: r.window,
                    });
                }
                if changes.is_empty() {
                    return Err(LedgerError::BadChanges("none given".into()));
                }
                let kinds: BTreeSet<ResourceKind> = changes.iter().map(|c| c.kind).collect();
                if kinds.len() != changes.len() {
                    return Err(LedgerError::BadChanges("a kind appears twice".into()));
                }
                let id = ModificationId(next(&mut self.counters.modification));
                self.modifications.insert(
                    id,
                    Modification {
                        id,
                        reservation: r.id,
                        changes: changes.clone(),
                        window,
                        cancelled: false,
                    },
                );
                let before = self.reserved_at(&r, now)?;
                if let Some(res) = self.reservations.get_mut(&r.id) {
                    res.modifications.push(id);
                }
                self.admit(r.host)?;
                ev.push(Event::ModificationCreated {
                    modification: id,
                    reservation: r.id,
                    changes: changes.clone(),
                    window,
                });
                self.resized(r.id, before, ev)?;
            }
            Action::CancelModification {
                tenant,
                modification,
            } => {
                let m = self
                    .modifications
                    .get(modification)
                    .ok_or(LedgerError::UnknownModification(*modification))?
                    .clone();
                let r = self.own_reservation(*tenant, m.reservation)?.clone();
                if m.cancelled || m.window.end() <= now {
                    return Err(LedgerError::ModificationEnded(m.id));
                }
                let before = self.reserved_at(&r, now)?;
                if let Some(m) = self.modifications.get_mut(modification) {
                    m.cancelled = true;
                }
                self.admit(r.host)?;
                ev.push(Event::ModificationEnded {
                    modification: m.id,
                    cancelled: true,
                });
                self.resized(r.id, before, ev)?;
            }
            Action::CancelReservation {
                tenant,
                reservation,
            } => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if r.cancelled || r.window.end() <= now {
                    return Err(LedgerError::ReservationEnded(r.id));
                }
                let lent: Vec<&Lease> = self
                    .leases
                    .values()
                    .filter(|l| l.lender == Lender::Reservation(r.id))
                    .collect();
                if !lent.is_empty() {
                    return Err(LedgerError::LenderHasLeases {
                        reservation: r.id,
                        leases: lent.len(),
                    });
                }
                let before = self.reserved_at(&r, now)?;
                self.unbind_all(r.id, ev)?;
                if let Some(res) = self.reservations.get_mut(&r.id) {
                    res.cancelled = true;
                    res.offered = ShardVector::ZERO;
                }
                if !before.is_zero() {
                    ev.push(Event::ReservationResized {
                        reservation: r.id,
                        from: before,
                        to: ShardVector::ZERO,
                    });
                }
                ev.push(Event::ReservationEnded {
                    reservation: r.id,
                    cancelled: true,
                });
            }
            Action::BindWorkload {
                tenant,
                reservation,
                name,
            } => {
                check_workload_name(name)?;
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if r.cancelled || r.window.end() <= now {
                    return Err(LedgerError::ReservationEnded(r.id));
                }
                // One cgroup, process or VM is one workload, of one tenant.
                if let Some(w) = self
                    .workloads
                    .values()
                    .find(|w| w.host == r.host && w.tenant != *tenant && same_thing(&w.name, name))
                {
                    return Err(LedgerError::WorkloadTaken {
                        name: name.clone(),
                        host: r.host,
                        workload: w.id,
                        tenant: w.tenant,
                    });
                }
                if self
                    .workloads
                    .values()
                    .any(|w| w.tenant == *tenant && w.name == *name)
                {
                    return Err(LedgerError::DuplicateName {
                        what: "workload",
                        name: name.clone(),
                    });
                }
                let id = WorkloadId(next(&mut self.counters.workload));
                index_add(&mut self.idx.workloads, r.id, id);
                self.workloads.insert(
                    id,
                    Workload {
                        id,
                        tenant: *tenant,
                        name: name.clone(),
                        host: r.host,
                        reservation: r.id,
                        share: ShardVector::ZERO,
                    },
                );
                ev.push(Event::WorkloadBound {
                    workload: id,
                    tenant: *tenant,
                    name: name.clone(),
                    reservation: r.id,
                    host: r.host,
                });
            }
            Action::UnbindWorkload { tenant, workload } => {
                self.own_workload(*tenant, *workload)?;
                self.unbind(*workload, ev)?;
            }
            Action::Allocate {
                tenant,
                workload,
                share,
            } => {
                let w = self.own_workload(*tenant, *workload)?.clone();
                let r = self.reservations[&w.reservation].clone();
                if r.cancelled || !r.window.contains(now) {
                    return Err(LedgerError::ReservationNotInForce {
                        reservation: r.id,
                        now,
                    });
                }
                let reserved = self.reserved_at(&r, now)?;
                let others = self.allocated(r.id)?.checked_sub(&w.share)?;
                let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                let room = reserved.checked_sub(&others.checked_add(&lent)?)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| share.get(k) > room.get(k))
                {
                    return Err(LedgerError::InsufficientIdle {
                        reservation: r.id,
                        kind,
                        idle: room.get(kind).saturating_sub(w.share.get(kind)),
                        needed: share.get(kind).saturating_sub(w.share.get(kind)),
                    });
                }
                // Own workloads come before the pool: the offer shrinks if unoffered idle runs out.
                let unoffered = room.checked_sub(share)?;
                let offered = r.offered.min(&unoffered);
                if let Some(w) = self.workloads.get_mut(workload) {
                    w.share = *share;
                }
                ev.push(Event::AllocationChanged {
                    workload: *workload,
                    from: w.share,
                    to: *share,
                    reason: AllocationReason::Allocated,
                });
                if offered != r.offered {
                    self.set_offer(r.id, offered, OfferReason::Allocated, ev);
                }
            }
            Action::Offer {
                tenant,
                reservation,
                vector,
                floor,
            } => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if !floor.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "floor price",
                    });
                }
                if (r.cancelled || !r.window.contains(now)) && !vector.is_zero() {
                    return Err(LedgerError::ReservationNotInForce {
                        reservation: r.id,
                        now,
                    });
                }
                let idle = self.idle_of(&r)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| vector.get(k) > idle.get(k))
                {
                    return Err(LedgerError::InsufficientIdle {
                        reservation: r.id,
                        kind,
                        idle: idle.get(kind),
                        needed: vector.get(kind),
                    });
                }
                if let Some(cap) = r.lending.cap {
                    let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                    if let Some(kind) = ResourceKind::ALL
                        .into_iter()
                        .find(|&k| lent.get(k).saturating_add(vector.get(k)) > cap.get(k))
                    {
                        return Err(LedgerError::OverLendingCap {
                            reservation: r.id,
                            kind,
                            cap: cap.get(kind),
                            lent: lent.get(kind),
                            wanted: vector.get(kind),
                        });
                    }
                }
                if let Some(res) = self.reservations.get_mut(reservation) {
                    res.floor = *floor;
                }
                self.set_offer(r.id, *vector, OfferReason::Owner, ev);
            }
            Action::SetLending {
                tenant,
                reservation,
                lending,
                floor,
            } => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if !floor.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "floor price",
                    });
                }
                if let Some(res) = self.reservations.get_mut(reservation) {
                    res.lending = *lending;
                    res.floor = *floor;
                }
                ev.push(Event::LendingChanged {
                    reservation: r.id,
                    lending: *lending,
                    floor: *floor,
                });
                // Opting out withdraws the offer; a lower cap trims it. Leases already made
                // stay until they end or are reclaimed.
                let mut offered = if lending.opt_out {
                    ShardVector::ZERO
                } else {
                    r.offered
                };
                if let Some(cap) = lending.cap {
                    let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                    offered = offered.min(&cap.excess_over(&lent));
                }
                if offered != r.offered || *floor != r.floor {
                    self.set_offer(r.id, offered, OfferReason::Lending, ev);
                }
            }
            Action::AutoOffer { reservation, need } => {
                let (target, offered) = self.auto_offer_target(*reservation, need)?;
                if target != offered {
                    self.set_offer(*reservation, target, OfferReason::Auto, ev);
                }
            }
            Action::SetMarketPrice { host, prices } => {
                if !self.hosts.contains_key(host) {
                    return Err(LedgerError::UnknownHost(*host));
                }
                if !prices.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "market price",
                    });
                }
                if self.market.get(host) != Some(prices) {
                    self.market.insert(*host, *prices);
                    ev.push(Event::MarketPriceChanged {
                        host: *host,
                        prices: *prices,
                    });
                }
            }
            Action::RequestLease {
                tenant,
                workload,
                vector,
                until,
                max_price,
                all_or_nothing,
                start,
            } => {
                let w = self.own_workload(*tenant, *workload)?.clone();
                if vector.is_zero() {
                    return Err(LedgerError::EmptyVector {
                        what: "a lease request",
                    });
                }
                if *until <= now {
                    return Err(LedgerError::NotInFuture {
                        what: "the lease end",
                        at: *until,
                        now,
                    });
                }
                if !max_price.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "maximum price",
                    });
                }
                let cap = self.hosts[&w.host].capacity;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| vector.get(k) > cap.get(k))
                {
                    return Err(LedgerError::RequestExceedsCapacity {
                        host: w.host,
                        kind,
                        capacity: cap.get(kind),
                        wanted: vector.get(kind),
                    });
                }
                if let Some(s) = start {
                    if *s < now {
                        return Err(LedgerError::StartsInPast {
                            what: "a lease request's delivery",
                            start: *s,
                            now,
                        });
                    }
                    Window::new(*s, *until)?;
                }
                let tier = self.reservations[&w.reservation].tier;
                let delivery = match start {
                    Some(s) if *s > now => Delivery::Scheduled,
                    _ => Delivery::Immediate,
                };
                let factor = self.params.price_factor(tier, delivery);
                let floors = self.lowest_floor(w.host);
                if let Some(kind) = vector
                    .kinds()
                    .find(|&k| max_price.get(k) < floors.get(k) * factor)
                {
                    return Err(LedgerError::PriceUnderFloor {
                        host: w.host,
                        kind,
                        max: max_price.get(kind),
                        floor: floors.get(kind) * factor,
                    });
                }
                let id = RequestId(next(&mut self.counters.request));
                index_add(&mut self.idx.requests, w.host, id);
                self.requests.insert(
                    id,
                    LeaseRequest {
                        id,
                        workload: w.id,
                        host: w.host,
                        tier,
                        wanted: *vector,
                        filled: ShardVector::ZERO,
                        max_price: *max_price,
                        until: *until,
                        start: start.unwrap_or(now).max(now),
                        delivery,
                        all_or_nothing: *all_or_nothing,
                    },
                );
                ev.push(Event::LeaseRequested {
                    request: id,
                    workload: w.id,
                    wanted: *vector,
                    until: *until,
                    tier,
                    start: start.filter(|&s| s > now),
                });
            }
            Action::CancelRequest { tenant, request } => {
                let req = self
                    .requests
                    .get(request)
                    .ok_or(LedgerError::UnknownRequest(*request))?;
                self.own_workload(*tenant, req.workload)?;
                self.end_request(*request, RequestOutcome::Cancelled, ev);
            }
            Action::Reclaim { tenant, lease } => {
                let l = self
                    .leases
                    .get(lease)
                    .ok_or(LedgerError::UnknownLease(*lease))?
                    .clone();
                if !self.tenants.contains_key(tenant) {
                    return Err(LedgerError::UnknownTenant(*tenant));
                }
                let Lender::Reservation(r) = l.lender else {
                    return Err(LedgerError::NotLender {
                        lease: *lease,
                        tenant: *tenant,
                    });
                };
                if self.reservations.get(&r).map(|r| r.tenant) != Some(*tenant) {
                    return Err(LedgerError::NotLender {
                        lease: *lease,
                        tenant: *tenant,
                    });
                }
                if l.reclaim.is_some() {
                    return Err(LedgerError::AlreadyReclaiming(*lease));
                }
                self.reclaim(*lease, ReclaimReason::Lender, ev)?;
            }
            Action::Release { tenant, lease } => {
                let l = self
                    .leases
                    .get(lease)
                    .ok_or(LedgerError::UnknownLease(*lease))?;
                self.own_workload(*tenant, l.borrower)?;
                self.end_lease(*lease, LeaseEnd::Released, ev)?;
            }
            Action::Expire => {}
            Action::Batch { .. } => return Err(LedgerError::NestedBatch),
        }
        Ok(())
    }

    /// What an automatic offer of a reservation would be now, given its owner's predicted
    /// need, and what it offers now: idle − need within its cap, nothing when it opted out or
    /// is not in force.
    pub fn auto_offer_target(
        &self,
        reservation: ReservationId,
        need: &ShardVector,
    ) -> Result<(ShardVector, ShardVector), LedgerError> {
        let r = self
            .reservations
            .get(&reservation)
            .ok_or(LedgerError::UnknownReservation(reservation))?;
        if r.lending.opt_out || r.cancelled || !r.window.contains(self.now) {
            return Ok((ShardVector::ZERO, r.offered));
        }
        let mut t = self.idle_of(r)?.excess_over(need);
        if let Some(cap) = r.lending.cap {
            let lent = self.lent_by(Lender::Reservation(r.id), self.now)?;
            t = t.min(&cap.excess_over(&lent));
        }
        Ok((t, r.offered))
    }

    /// Idle shards of a reservation now (offered or not): reserved − allocated − lent.
    pub fn idle(&self, id: ReservationId) -> Result<ShardVector, LedgerError> {
        let r = self
            .reservations
            .get(&id)
            .ok_or(LedgerError::UnknownReservation(id))?;
        self.idle_of(r)
    }

    fn idle_of(&self, r: &Reservation) -> Result<ShardVector, LedgerError> {
        let reserved = self.reserved_at(r, self.now)?;
        let used = self
            .allocated(r.id)?
            .checked_add(&self.lent_by(Lender::Reservation(r.id), self.now)?)?;
        Ok(reserved.checked_sub(&used)?)
    }

    fn set_offer(
        &mut self,
        r: ReservationId,
        offered: ShardVector,
        reason: OfferReason,
        ev: &mut Vec<Event>,
    ) {
        if let Some(res) = self.reservations.get_mut(&r) {
            res.offered = offered;
            ev.push(Event::OfferChanged {
                reservation: r,
                offered,
                floor: res.floor,
                reason,
            });
        }
    }

    /// After an action changed a reservation's vector now, records it and gives back if it shrank.
    fn resized(
        &mut self,
        r: ReservationId,
        before: ShardVector,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let res = self.reservations[&r].clone();
        let after = self.reserved_at(&res, self.now)?;
        if after != before {
            ev.push(Event::ReservationResized {
                reservation: r,
                from: before,
                to: after,
            });
            self.give_back(r, after, ev)?;
        }
        Ok(())
    }

    /// Makes what a reservation holds fit `reserved`, in the documented give-back order.
    fn give_back(
        &mut self,
        r: ReservationId,
        reserved: ShardVector,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let res = self.reservations[&r].clone();
        let lent = self.lent_by(Lender::Reservation(r), self.now)?;
        if !lent.fits_in(&reserved) {
            return Err(LedgerError::Internal(format!(
                "{r} shrank to {reserved} below what it lent ({lent})"
            )));
        }
        let room = reserved.checked_sub(&lent)?;
        let allocated = self.allocated(r)?;
        // Idle unoffered shards go first, then the offer, then allocations.
        let after_alloc = room.checked_sub(&allocated.min(&room))?;
        let offered = res.offered.min(&after_alloc);
        if offered != res.offered {
            self.set_offer(r, offered, OfferReason::ReservationShrank, ev);
        }
        if allocated.fits_in(&room) {
            return Ok(());
        }
        let mut shares: BTreeMap<WorkloadId, ShardVector> = self
            .reservation_workloads(r)
            .map(|w| (w.id, w.share))
            .collect();
        for kind in ResourceKind::ALL {
            let mut over = allocated.get(kind).saturating_sub(room.get(kind));
            // One shard at a time from the current largest holder (ties: lowest id), which
            // levels the largest allocations down first.
            while over > 0 {
                let Some((&id, _)) = shares
                    .iter()
                    .filter(|(_, s)| s.get(kind) > 0)
                    .max_by_key(|(id, s)| (s.get(kind), Reverse(**id)))
                else {
                    return Err(LedgerError::Internal(format!(
                        "{r} has nothing left to give back"
                    )));
                };
                let top = shares[&id].get(kind);
                let second = shares
                    .iter()
                    .filter(|(other, _)| **other != id)
                    .map(|(_, s)| s.get(kind))
                    .max()
                    .unwrap_or(0);
                let take = (top - second).max(1).min(over);
                shares.insert(id, shares[&id].with(kind, top - take));
                over -= take;
            }
        }
        let cut = shares;
        for (id, share) in cut {
            let w = self
                .workloads
                .get_mut(&id)
                .ok_or(LedgerError::UnknownWorkload(id))?;
            if w.share != share {
                let from = w.share;
                w.share = share;
                ev.push(Event::AllocationChanged {
                    workload: id,
                    from,
                    to: share,
                    reason: AllocationReason::ReservationShrank,
                });
            }
        }
        Ok(())
    }

    fn unbind_all(&mut self, r: ReservationId, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let ws: Vec<WorkloadId> = self.reservation_workloads(r).map(|w| w.id).collect();
        for w in ws {
            self.unbind(w, ev)?;
        }
        Ok(())
    }

    fn unbind(&mut self, w: WorkloadId, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let reqs: Vec<RequestId> = self
            .requests
            .values()
            .filter(|r| r.workload == w)
            .map(|r| r.id)
            .collect();
        for r in reqs {
            self.end_request(r, RequestOutcome::Cancelled, ev);
        }
        let leases: Vec<LeaseId> = self
            .leases
            .values()
            .filter(|l| l.borrower == w)
            .map(|l| l.id)
            .collect();
        for l in leases {
            self.end_lease(l, LeaseEnd::BorrowerGone, ev)?;
        }
        let wl = self
            .workloads
            .remove(&w)
            .ok_or(LedgerError::UnknownWorkload(w))?;
        index_remove(&mut self.idx.workloads, &wl.reservation, &w);
        if !wl.share.is_zero() {
            ev.push(Event::AllocationChanged {
                workload: w,
                from: wl.share,
                to: ShardVector::ZERO,
                reason: AllocationReason::Unbound,
            });
        }
        ev.push(Event::WorkloadUnbound { workload: w });
        Ok(())
    }

    fn end_request(&mut self, id: RequestId, outcome: RequestOutcome, ev: &mut Vec<Event>) {
        if let Some(r) = self.requests.remove(&id) {
            index_remove(&mut self.idx.requests, &r.host, &id);
            ev.push(Event::LeaseRequestEnded {
                request: id,
                filled: r.filled,
                outcome,
            });
        }
    }

    fn end_lease(
        &mut self,
        id: LeaseId,
        reason: LeaseEnd,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let l = self
            .leases
            .remove(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        index_remove(&mut self.by_lender, &l.lender, &id);
        index_remove(&mut self.idx.leases, &l.host, &id);
        if let Some(set) = self.by_borrower.get_mut(&l.borrower) {
            set.remove(&id);
            if set.is_empty() {
                self.by_borrower.remove(&l.borrower);
            }
        }
        // A lender who reclaimed wants the shards for itself; otherwise they return to the pool.
        // Within the lending cap, which may have been lowered while the lease was out.
        if let (Lender::Reservation(r), false) = (l.lender, reason == LeaseEnd::Reclaimed) {
            let lent = self.lent_by(l.lender, self.now)?;
            if let Some(res) = self.reservations.get_mut(&r) {
                let mut offered = res.offered.checked_add(&l.vector)?;
                if let Some(cap) = res.lending.cap {
                    offered = offered.min(&cap.excess_over(&lent));
                }
                res.offered = offered;
            }
        }
        ev.push(Event::LeaseEnded { lease: id, reason });
        Ok(())
    }

    fn reclaim(
        &mut self,
        id: LeaseId,
        reason: ReclaimReason,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let at = self.now.checked_add(self.params.reclaim_notice)?;
        let l = self
            .leases
            .get_mut(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        l.reclaim = Some(reason);
        l.window = l.window.cut_at(at);
        ev.push(Event::LeaseReclaiming {
            lease: id,
            at: l.window.end(),
            reason,
        });
        Ok(())
    }

    // ----- matching -----

    /// What each lender on `host` can lend now and keep lent until `until`, with its floor.
    fn supply(
        &self,
        host: HostId,
        until: Timestamp,
    ) -> Result<Vec<(Lender, PriceVector, ShardVector)>, LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        let now = self.now;
        // Every lease started by now and only ends, so what a lender has lent only falls over
        // time; what it holds changes only at its reservations' edges. So its cover is lowest
        // at now or at one of those edges: no other moment needs checking.
        let on_host: Vec<&Reservation> = self
            .host_reservations(host)
            .filter(|r| !r.cancelled)
            .collect();
        let leases: Vec<&Lease> = self.host_leases(host).collect();
        let lent_at = |lender: Lender, t: Timestamp| -> Result<ShardVector, LedgerError> {
            Ok(ShardVector::checked_sum(
                leases
                    .iter()
                    .filter(|l| l.lender == lender && l.window.contains(t))
                    .map(|l| &l.vector),
            )?)
        };
        let edges = |r: &Reservation| -> Vec<Timestamp> {
            let mut pts = vec![r.window.start(), r.window.end()];
            for m in r
                .modifications
                .iter()
                .filter_map(|m| self.modifications.get(m))
            {
                if !m.cancelled {
                    pts.push(m.window.start());
                    pts.push(m.window.end());
                }
            }
            pts.retain(|&t| t > now && t < until);
            pts.push(now);
            pts
        };
        let mut out = Vec::new();
        let mut all_points = vec![now];
        for r in &on_host {
            let points = edges(r);
            all_points.extend(points.iter().copied());
            if r.offered.is_zero() {
                continue;
            }
            let mut avail = r.offered;
            for &t in &points {
                let cover = self
                    .reserved_at(r, t)?
                    .excess_over(&lent_at(Lender::Reservation(r.id), t)?);
                avail = avail.min(&cover);
            }
            if !avail.is_zero() {
                out.push((Lender::Reservation(r.id), r.floor, avail));
            }
        }
        all_points.sort();
        all_points.dedup();
        let mut free: Option<ShardVector> = None;
        for &t in &all_points {
            let mut used = lent_at(Lender::Provider(host), t)?;
            for r in &on_host {
                used = used.checked_add(&self.reserved_at(r, t)?)?;
            }
            let f = h.capacity.excess_over(&used);
            free = Some(free.map_or(f, |x| x.min(&f)));
        }
        if let Some(free) = free.filter(|f| !f.is_zero()) {
            out.push((Lender::Provider(host), self.params.provider_floor, free));
        }
        Ok(out)
    }

    /// The base-price limit of a request: its maximum price divided by its tier and delivery
    /// factor, so that offers can be compared at their base price.
    fn limit(&self, req: &LeaseRequest) -> PriceVector {
        let f = self.params.price_factor(req.tier, req.delivery);
        if f.is_zero() {
            return PriceVector::uniform(Decimal::MAX);
        }
        req.max_price.zip(&req.max_price, |m, _| m / f)
    }

    fn match_requests(&mut self, host: HostId, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let now = self.now;
        let mut order: Vec<(Reverse<Tier>, RequestId)> = self
            .host_requests(host)
            .filter(|r| r.start <= now)
            .map(|r| (Reverse(r.tier), r.id))
            .collect();
        if order.is_empty() {
            return Ok(());
        }
        order.sort();
        // The book holds what each lender can lend now, at its base price; how long a lender
        // can keep lending depends on each request's end, so that is a per-request cap.
        let mut book = HostBook::new();
        let instant = now.checked_add(Span::from_millis(1))?;
        for (lender, _, avail) in self.supply(host, instant)? {
            book.set_asks(lender, &self.ask_price(lender, host), &avail);
        }
        // Cover per distinct end, computed once per pass; what this pass already lent from a
        // lender is taken off it (a lower bound of the true cover, so leases never outlive it).
        let mut covers: BTreeMap<Timestamp, BTreeMap<Lender, ShardVector>> = BTreeMap::new();
        for &(_, id) in &order {
            let until = self.requests[&id].until;
            if let std::collections::btree_map::Entry::Vacant(e) = covers.entry(until) {
                e.insert(
                    self.supply(host, until)?
                        .into_iter()
                        .map(|(l, _, v)| (l, v))
                        .collect(),
                );
            }
        }
        let mut taken: BTreeMap<Lender, ShardVector> = BTreeMap::new();
        for &(_, id) in &order {
            let req = self.requests[&id].clone();
            let remaining = req.remaining();
            let Some(cover) = covers.get(&req.until) else {
                continue;
            };
            let bid = Bid {
                vector: remaining,
                limit: self.limit(&req),
                all_or_nothing: req.all_or_nothing,
            };
            let fill = book.match_bid(&bid, |l, k| {
                cover
                    .get(&l)
                    .map_or(0, |v| v.get(k))
                    .saturating_sub(taken.get(&l).map_or(0, |v| v.get(k)))
            });
            if fill.got.is_zero() {
                continue;
            }
            let mut takes: BTreeMap<Lender, ShardVector> = BTreeMap::new();
            for t in &fill.takes {
                let v = takes.entry(t.lender).or_insert(ShardVector::ZERO);
                *v = v.with(t.kind, v.get(t.kind) + t.shards);
            }
            let factor = self.params.price_factor(req.tier, req.delivery);
            let window = Window::new(now, req.until)?;
            for (lender, vector) in takes {
                let t = taken.entry(lender).or_insert(ShardVector::ZERO);
                *t = t.saturating_add(&vector);
                if let Lender::Reservation(r) = lender {
                    let res = self
                        .reservations
                        .get_mut(&r)
                        .ok_or(LedgerError::UnknownReservation(r))?;
                    res.offered = res.offered.checked_sub(&vector)?;
                }
                let price = self.ask_price(lender, host).scaled(factor);
                let lease = LeaseId(next(&mut self.counters.lease));
                self.by_lender.entry(lender).or_default().insert(lease);
                index_add(&mut self.idx.leases, host, lease);
                self.by_borrower
                    .entry(req.workload)
                    .or_default()
                    .insert(lease);
                self.leases.insert(
                    lease,
                    Lease {
                        id: lease,
                        lender,
                        borrower: req.workload,
                        tier: req.tier,
                        host,
                        vector,
                        price,
                        window,
                        reclaim: None,
                        request: id,
                    },
                );
                ev.push(Event::LeaseCreated {
                    lease,
                    request: id,
                    lender,
                    borrower: req.workload,
                    vector,
                    price,
                    window,
                });
            }
            let r = self
                .requests
                .get_mut(&id)
                .ok_or(LedgerError::UnknownRequest(id))?;
            r.filled = r.filled.checked_add(&fill.got)?;
            if r.remaining().is_zero() {
                self.end_request(id, RequestOutcome::Fulfilled, ev);
            }
        }
        self.preempt(host, ev)
    }

    /// Reclaims lower-tier leases that still-short requests could use.
    fn preempt(&mut self, host: HostId, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let mut order: Vec<(Reverse<Tier>, RequestId)> = self
            .host_requests(host)
            .filter(|r| r.start <= self.now)
            .map(|r| (Reverse(r.tier), r.id))
            .collect();
        order.sort();
        for (_, id) in order {
            let req = self.requests[&id].clone();
            let limit = self.limit(&req);
            let mut incoming = ShardVector::checked_sum(
                self.host_leases(host)
                    .filter(|l| l.reclaim == Some(ReclaimReason::Preempted { by: id }))
                    .map(|l| &l.vector),
            )?;
            for kind in req.remaining().kinds() {
                let mut need = req.remaining().get(kind).saturating_sub(incoming.get(kind));
                if need == 0 {
                    continue;
                }
                let mut cands: Vec<(Tier, Reverse<LeaseId>)> = self
                    .host_leases(host)
                    .filter(|l| {
                        l.reclaim.is_none()
                            && l.tier < req.tier
                            && l.vector.get(kind) > 0
                            && self.ask_price(l.lender, host).get(kind) <= limit.get(kind)
                    })
                    .map(|l| (l.tier, Reverse(l.id)))
                    .collect();
                cands.sort();
                for (_, Reverse(lease)) in cands {
                    if need == 0 {
                        break;
                    }
                    let v = self.leases[&lease].vector;
                    need = need.saturating_sub(v.get(kind));
                    incoming = incoming.checked_add(&v)?;
                    self.reclaim(lease, ReclaimReason::Preempted { by: id }, ev)?;
                }
            }
        }
        Ok(())
    }

    // ----- invariants -----

    /// Verifies every ledger invariant from scratch; an empty list means all hold.
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Err(e) = self.check_into(&mut out) {
            out.push(Violation {
                rule: Rule::Consistency,
                message: format!("could not evaluate: {e}"),
            });
        }
        out
    }

    fn check_into(&self, out: &mut Vec<Violation>) -> Result<(), LedgerError> {
        let now = self.now;
        let mut v = |rule: Rule, message: String| out.push(Violation { rule, message });
        // The lease indexes must say exactly what the leases say.
        let mut by_lender: BTreeMap<Lender, BTreeSet<LeaseId>> = BTreeMap::new();
        let mut by_borrower: BTreeMap<WorkloadId, BTreeSet<LeaseId>> = BTreeMap::new();
        for l in self.leases.values() {
            by_lender.entry(l.lender).or_default().insert(l.id);
            by_borrower.entry(l.borrower).or_default().insert(l.id);
        }
        let mut idx = Indexes::default();
        for r in self.reservations.values() {
            index_add(&mut idx.reservations, r.host, r.id);
        }
        for r in self.requests.values() {
            index_add(&mut idx.requests, r.host, r.id);
        }
        for l in self.leases.values() {
            index_add(&mut idx.leases, l.host, l.id);
        }
        for w in self.workloads.values() {
            index_add(&mut idx.workloads, w.reservation, w.id);
        }
        if by_lender != self.by_lender || by_borrower != self.by_borrower || idx != self.idx {
            v(
                Rule::Consistency,
                "the lease indexes disagree with the leases".into(),
            );
        }
        for h in self.hosts.values() {
            let mut reserved = [0u128; 4];
            let mut allocations = [0u128; 4];
            for r in self.reservations.values().filter(|r| r.host == h.id) {
                let res = self.reserved_at(r, now)?;
                let alloc = self.allocated(r.id)?;
                let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                for k in ResourceKind::ALL {
                    reserved[k.index()] += u128::from(res.get(k));
                    let held = u128::from(alloc.get(k))
                        + u128::from(lent.get(k))
                        + u128::from(r.offered.get(k));
                    if held > u128::from(res.get(k)) {
                        v(
                            Rule::Conservation,
                            format!(
                                "{} holds {} {k} shards but its workloads have {}, it lent {} and offers {} ({held} in all)",
                                r.id,
                                res.get(k),
                                alloc.get(k),
                                lent.get(k),
                                r.offered.get(k)
                            ),
                        );
                    }
                }
                if (r.cancelled || !r.window.contains(now)) && !r.offered.is_zero() {
                    v(
                        Rule::Conservation,
                        format!("{} is not in force but offers {}", r.id, r.offered),
                    );
                }
            }
            let provider = self.lent_by(Lender::Provider(h.id), now)?;
            for k in ResourceKind::ALL {
                let committed = reserved[k.index()] + u128::from(provider.get(k));
                if committed > u128::from(h.capacity.get(k)) {
                    v(
                        Rule::Conservation,
                        format!(
                            "{} has {} {k} shards but {} are reserved and the provider lent {}",
                            h.id,
                            h.capacity.get(k),
                            reserved[k.index()],
                            provider.get(k)
                        ),
                    );
                }
            }
            for w in self.workloads.values().filter(|w| w.host == h.id) {
                let a = self.allocation(w.id)?;
                for k in ResourceKind::ALL {
                    allocations[k.index()] += u128::from(a.get(k));
                }
                match self.reservations.get(&w.reservation) {
                    Some(r) if r.host == w.host && r.tenant == w.tenant => {}
                    _ => v(
                        Rule::Allocation,
                        format!(
                            "{} is not inside a reservation of its own on its host",
                            w.id
                        ),
                    ),
                }
            }
            for k in ResourceKind::ALL {
                if allocations[k.index()] > u128::from(h.capacity.get(k)) {
                    v(
                        Rule::Allocation,
                        format!(
                            "allocations on {} add up to {} {k} shards, over its capacity {}",
                            h.id,
                            allocations[k.index()],
                            h.capacity.get(k)
                        ),
                    );
                }
            }
            // The future too: reservations and provider leases fit, and leases stay covered.
            if let Err(e) = self.admit(h.id) {
                v(Rule::Conservation, format!("at a future change point: {e}"));
            }
        }
        for l in self.leases.values() {
            if !l.window.contains(now) {
                v(
                    Rule::Consistency,
                    format!("{} is outside its window {} at {now}", l.id, l.window),
                );
            }
            if l.vector.is_zero() {
                v(Rule::Consistency, format!("{} leases no shards", l.id));
            }
            match self.workloads.get(&l.borrower) {
                Some(w) if w.host == l.host => {}
                _ => v(
                    Rule::Allocation,
                    format!("{} is borrowed by a workload not on {}", l.id, l.host),
                ),
            }
            let lender_host = match l.lender {
                Lender::Reservation(r) => self.reservations.get(&r).map(|r| r.host),
                Lender::Provider(h) => Some(h),
            };
            if lender_host != Some(l.host) {
                v(
                    Rule::Allocation,
                    format!("{} is lent by {} from another host", l.id, l.lender),
                );
            }
        }
        for req in self.requests.values() {
            if req.until <= now {
                v(
                    Rule::Consistency,
                    format!("{} is pending past its end", req.id),
                );
            }
            if req.start > now {
                // A scheduled request competes only from its start.
                continue;
            }
            let incoming = ShardVector::checked_sum(
                self.leases
                    .values()
                    .filter(|l| l.reclaim == Some(ReclaimReason::Preempted { by: req.id }))
                    .map(|l| &l.vector),
            )?;
            for k in req.remaining().kinds() {
                if incoming.get(k) >= req.remaining().get(k) {
                    continue;
                }
                let held = self.leases.values().find(|l| {
                    l.host == req.host
                        && l.reclaim.is_none()
                        && l.tier < req.tier
                        && l.vector.get(k) > 0
                        && self.ask_price(l.lender, l.host).get(k) <= self.limit(req).get(k)
                });
                if let Some(l) = held {
                    v(
                        Rule::Priority,
                        format!(
                            "{} ({}) still needs {} {k} shards while {} of the lower tier {} keeps them",
                            req.id,
                            req.tier,
                            req.remaining().get(k),
                            l.id,
                            l.tier
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Invariant 1: every shard is in exactly one place.
    Conservation,
    /// Invariant 2: allocations are share plus leases and fit the host.
    Allocation,
    /// Invariant 7: lower tiers never keep what a higher tier needs now.
    Priority,
    /// Internal consistency (objects refer to what exists, windows are current).
    Consistency,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Conservation => "conservation",
            Rule::Allocation => "allocation",
            Rule::Priority => "priority",
            Rule::Consistency => "consistency",
        })
    }
}

/// One broken invariant, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant.
    pub rule: Rule,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Change;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    fn win(a: i64, b: i64) -> Window {
        Window::new(t(a), t(b)).unwrap()
    }

    fn cpu(n: u64) -> ShardVector {
        ShardVector::of(ResourceKind::Cpu, n)
    }

    struct Fixture {
        l: Ledger,
        host: HostId,
        a: TenantId,
        b: TenantId,
    }

    fn fixture(capacity: ShardVector) -> Fixture {
        let mut l = Ledger::new();
        l.apply(
            &Action::RegisterHost {
                name: "h".into(),
                capacity,
            },
            t(0),
        )
        .unwrap();
        l.apply(&Action::CreateTenant { name: "a".into() }, t(0))
            .unwrap();
        l.apply(&Action::CreateTenant { name: "b".into() }, t(0))
            .unwrap();
        Fixture {
            host: HostId(1),
            a: TenantId(1),
            b: TenantId(2),
            l,
        }
    }

    impl Fixture {
        fn ok(&mut self, a: Action, at: i64) -> Vec<Event> {
            let ev = self
                .l
                .apply(&a, t(at))
                .unwrap_or_else(|e| panic!("{a:?} refused: {e}"));
            assert_eq!(self.l.check(), vec![], "after {a:?}");
            ev
        }
        fn err(&mut self, a: Action, at: i64) -> LedgerError {
            let before = self.l.clone();
            let e = self.l.apply(&a, t(at)).expect_err("accepted");
            assert_eq!(self.l, before, "refused action changed the ledger");
            e
        }
        fn reserve(
            &mut self,
            tenant: TenantId,
            v: ShardVector,
            w: Window,
            tier: Tier,
            at: i64,
        ) -> ReservationId {
            let ev = self.ok(
                Action::CreateReservation {
                    tenant,
                    host: self.host,
                    vector: v,
                    window: w,
                    tier,
                },
                at,
            );
            match ev.last() {
                Some(Event::ReservationCreated { reservation, .. }) => *reservation,
                other => panic!("{other:?}"),
            }
        }
        fn bind(&mut self, tenant: TenantId, r: ReservationId, name: &str, at: i64) -> WorkloadId {
            let ev = self.ok(
                Action::BindWorkload {
                    tenant,
                    reservation: r,
                    name: name.into(),
                },
                at,
            );
            match ev.last() {
                Some(Event::WorkloadBound { workload, .. }) => *workload,
                other => panic!("{other:?}"),
            }
        }
        fn share(&self, w: WorkloadId) -> ShardVector {
            self.l.workload(w).unwrap().share
        }
    }

    #[test]
    fn a_workload_name_is_a_path_and_one_thing_is_one_tenant_s_workload() {
        let mut f = fixture(ShardVector::new(100, 100, 0, 0));
        let win = Window::new(t(0), t(3600)).unwrap();
        let ra = f.reserve(f.a, ShardVector::new(10, 10, 0, 0), win, Tier::Standard, 0);
        let rb = f.reserve(f.b, ShardVector::new(10, 10, 0, 0), win, Tier::Standard, 0);
        for bad in ["../etc", "not a path!", "a//b", "a/./b", "a/"] {
            let e = f.err(
                Action::BindWorkload {
                    tenant: f.a,
                    reservation: ra,
                    name: bad.into(),
                },
                1,
            );
            assert!(
                matches!(e, LedgerError::BadWorkloadName { .. }),
                "{bad}: {e}"
            );
        }
        let w = f.bind(f.a, ra, "system.slice/web.service", 1);
        f.bind(f.a, ra, "/", 1);
        // The same cgroup, written either way, can't become another tenant's workload.
        for same in ["system.slice/web.service", "/system.slice/web.service"] {
            let e = f.err(
                Action::BindWorkload {
                    tenant: f.b,
                    reservation: rb,
                    name: same.into(),
                },
                2,
            );
            assert!(
                matches!(e, LedgerError::WorkloadTaken { workload, .. } if workload == w),
                "{e}"
            );
        }
        f.bind(f.b, rb, "vm-7@host:1", 2);
    }

    #[test]
    fn shrink_gives_back_unoffered_idle_then_offer_then_largest_allocations() {
        let mut f = fixture(cpu(100));
        let r = f.reserve(f.a, cpu(10), win(0, 1000), Tier::Standard, 0);
        let wa = f.bind(f.a, r, "a", 0);
        let wb = f.bind(f.a, r, "b", 0);
        f.ok(
            Action::Allocate {
                tenant: f.a,
                workload: wa,
                share: cpu(4),
            },
            0,
        );
        f.ok(
            Action::Allocate {
                tenant: f.a,
                workload: wb,
                share: cpu(3),
            },
            0,
        );
        f.ok(
            Action::Offer {
                tenant: f.a,
                reservation: r,
                vector: cpu(2),
                floor: PriceVector::default(),
            },
            0,
        );
        // -6 for a minute: 10 → 4. Idle unoffered (1) goes, then the offer (2), then 3 from allocations.
        f.ok(
            Action::ModifyReservation {
                tenant: f.a,
                reservation: r,
                changes: vec![KindChange {
                    kind: ResourceKind::Cpu,
                    change: Change::Delta(-6),
                }],
                start: Some(t(10)),
                duration: Span::from_secs(60),
            },
            0,
        );
        assert_eq!(f.share(wa), cpu(4));
        f.ok(Action::Expire, 10);
        assert_eq!(f.l.reservation(r).unwrap().offered, ShardVector::ZERO);
        assert_eq!(
            (f.share(wa), f.share(wb)),
            (cpu(2), cpu(2)),
            "largest first, then evenly"
        );
        // At the modification's end the reservation grows back; shares stay where they were cut.
        f.ok(Action::Expire, 69);
        assert_eq!(
            f.l.reserved_at(f.l.reservation(r).unwrap(), t(69)).unwrap(),
            cpu(4)
        );
        let ev = f.ok(Action::Expire, 70);
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::ModificationEnded {
                cancelled: false,
                ..
            }
        )));
        assert_eq!(f.l.idle(r).unwrap(), cpu(6));
    }

    #[test]
    fn modifications_compose_in_creation_order() {
        let mut f = fixture(cpu(200));
        let r = f.reserve(f.a, cpu(100), win(0, 1000), Tier::Standard, 0);
        for (change, dur) in [(Change::Set(50), 100), (Change::PercentBp(1000), 200)] {
            f.ok(
                Action::ModifyReservation {
                    tenant: f.a,
                    reservation: r,
                    changes: vec![KindChange {
                        kind: ResourceKind::Cpu,
                        change,
                    }],
                    start: None,
                    duration: Span::from_secs(dur),
                },
                0,
            );
        }
        let res = f.l.reservation(r).unwrap().clone();
        assert_eq!(f.l.reserved_at(&res, t(0)).unwrap(), cpu(55));
        assert_eq!(f.l.reserved_at(&res, t(100)).unwrap(), cpu(110));
        assert_eq!(f.l.reserved_at(&res, t(200)).unwrap(), cpu(100));
    }

    #[test]
    fn a_reservation_ends_exactly_at_its_window_end() {
        let mut f = fixture(cpu(10));
        let r = f.reserve(f.a, cpu(10), win(0, 60), Tier::Standard, 0);
        let w = f.bind(f.a, r, "w", 0);
        f.ok(
            Action::Allocate {
                tenant: f.a,
                workload: w,
                share: cpu(10),
            },
            0,
        );
        f.l.apply(&Action::Expire, Timestamp::from_millis(59_999).unwrap())
            .unwrap();
        assert_eq!(f.share(w), cpu(10));
        let ev = f.ok(Action::Expire, 60);
        assert!(ev.contains(&Event::ReservationEnded {
            reservation: r,
            cancelled: false
        }));
        assert!(
            f.l.workload(w).is_none(),
            "workloads leave with their reservation"
        );
        assert_eq!(f.l.balance(f.host).unwrap().free, cpu(10));
    }

    #[test]
    fn higher_tier_preempts_lower_tier_lease_after_notice() {
        let mut f = fixture(ShardVector::new(10, 10, 0, 0));
        let mem = ShardVector::of(ResourceKind::Memory, 1);
        let lo_r = f.reserve(f.a, mem, win(0, 10_000), Tier::BestEffort, 0);
        let hi_r = f.reserve(f.b, mem, win(0, 10_000), Tier::Critical, 0);
        let lo = f.bind(f.a, lo_r, "lo", 0);
        let hi = f.bind(f.b, hi_r, "hi", 0);
        let any = PriceVector::uniform(Decimal::ONE);
        let req = |tenant, workload, n, all_or_nothing| Action::RequestLease {
            tenant,
            workload,
            vector: cpu(n),
            until: t(5_000),
            max_price: any,
            all_or_nothing,
            start: None,
        };
        f.ok(req(f.a, lo, 10, false), 1);
        assert_eq!(f.l.allocation(lo).unwrap(), cpu(10));
        let ev = f.ok(req(f.b, hi, 5, true), 2);
        assert!(ev.iter().any(|e| matches!(e, Event::LeaseReclaiming { at, reason: ReclaimReason::Preempted { .. }, .. } if *at == t(32))));
        // Within the notice the borrower keeps its shards and the request waits.
        f.ok(Action::Expire, 31);
        assert_eq!(f.l.allocation(lo).unwrap(), cpu(10));
        assert_eq!(f.l.allocation(hi).unwrap(), ShardVector::ZERO);
        // A lower tier asking now can't take what the critical request waits for.
        f.ok(req(f.a, lo, 3, false), 31);
        let ev = f.ok(Action::Expire, 32);
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::LeaseEnded {
                reason: LeaseEnd::Preempted,
                ..
            }
        )));
        assert_eq!(f.l.allocation(hi).unwrap(), cpu(5));
        // What the critical request didn't need is now open to the lower tier again.
        assert_eq!(f.l.allocation(lo).unwrap(), cpu(3));
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// Tenant a lends 8 cpu at a floor of 1; b (standard) has a workload that borrows.
    fn market_fixture() -> (Fixture, ReservationId, WorkloadId) {
        let mut f = fixture(ShardVector::new(10, 10, 0, 0));
        let params = LedgerParams {
            provider_floor: PriceVector::uniform(d("5")),
            ..LedgerParams::default()
        };
        f.ok(Action::Configure { params }, 0);
        let lender = f.reserve(f.a, cpu(8), win(0, 10_000), Tier::Standard, 0);
        let br = f.reserve(
            f.b,
            ShardVector::of(ResourceKind::Memory, 1),
            win(0, 10_000),
            Tier::Standard,
            0,
        );
        let w = f.bind(f.b, br, "w", 0);
        f.ok(
            Action::Offer {
                tenant: f.a,
                reservation: lender,
                vector: cpu(8),
                floor: PriceVector::uniform(d("1")),
            },
            0,
        );
        (f, lender, w)
    }

    fn request(f: &Fixture, w: WorkloadId, n: u64, max: &str, start: Option<i64>) -> Action {
        Action::RequestLease {
            tenant: f.b,
            workload: w,
            vector: cpu(n),
            until: t(1000),
            max_price: PriceVector::uniform(d(max)),
            all_or_nothing: false,
            start: start.map(t),
        }
    }

    #[test]
    fn a_scheduled_request_is_delivered_at_its_start_without_the_immediate_premium() {
        let (mut f, _, w) = market_fixture();
        f.ok(request(&f, w, 4, "10", Some(100)), 0);
        assert_eq!(f.l.leases().count(), 0, "nothing before the start");
        assert_eq!(f.l.next_change(), Some(t(100)));
        let ev = f.ok(Action::Expire, 100);
        let lease = f.l.leases().next().unwrap();
        assert_eq!(lease.window, win(100, 1000));
        // Floor 1 × standard 1 × scheduled 1.
        assert_eq!(lease.price.cpu, d("1"));
        assert!(ev.iter().any(|e| matches!(e, Event::LeaseCreated { .. })));
        // The same request for now pays the premium: 1 × 1.25.
        f.ok(request(&f, w, 2, "10", None), 100);
        let now = f.l.leases().last().unwrap();
        assert_eq!(now.price.cpu, d("1.25"));
    }

    #[test]
    fn the_market_price_lifts_lease_prices_above_low_floors() {
        let (mut f, _, w) = market_fixture();
        f.ok(
            Action::SetMarketPrice {
                host: f.host,
                prices: PriceVector::uniform(d("2")),
            },
            0,
        );
        // max(floor 1, market 2) × 1.25 = 2.5; a maximum of 2.4 waits, 2.5 is served.
        f.ok(request(&f, w, 1, "2.4", None), 0);
        assert_eq!(f.l.leases().count(), 0);
        f.ok(request(&f, w, 1, "2.5", None), 0);
        assert_eq!(f.l.leases().next().unwrap().price.cpu, d("2.5"));
        assert!(matches!(
            f.err(
                Action::SetMarketPrice {
                    host: f.host,
                    prices: PriceVector::uniform(d("-1")),
                },
                0
            ),
            LedgerError::NegativePrice { .. }
        ));
    }

    #[test]
    fn requests_under_every_floor_or_in_the_past_are_refused() {
        let (mut f, _, w) = market_fixture();
        // The lowest floor is a's 1; immediate standard needs at least 1.25.
        assert!(matches!(
            f.err(request(&f, w, 1, "1.2", None), 0),
            LedgerError::PriceUnderFloor {
                kind: ResourceKind::Cpu,
                ..
            }
        ));
        f.ok(Action::Expire, 50);
        assert!(matches!(
            f.err(request(&f, w, 1, "9", Some(10)), 50),
            LedgerError::StartsInPast { .. }
        ));
        assert!(matches!(
            f.err(request(&f, w, 1, "9", Some(1000)), 50),
            LedgerError::Time(_)
        ));
    }

    #[test]
    fn automatic_offers_keep_the_owners_need_and_obey_opt_out_and_cap() {
        let (mut f, lender, _) = market_fixture();
        let auto = |need| Action::AutoOffer {
            reservation: lender,
            need: cpu(need),
        };
        // 8 idle, 3 predicted: 5 offered.
        f.ok(auto(3), 0);
        assert_eq!(f.l.reservation(lender).unwrap().offered, cpu(5));
        let a = f.a;
        let lending = |opt_out, cap: Option<u64>| Action::SetLending {
            tenant: a,
            reservation: lender,
            lending: Lending {
                opt_out,
                cap: cap.map(cpu),
            },
            floor: PriceVector::uniform(d("1")),
        };
        f.ok(lending(false, Some(2)), 0);
        assert_eq!(
            f.l.reservation(lender).unwrap().offered,
            cpu(2),
            "cap trims"
        );
        f.ok(auto(0), 0);
        assert_eq!(f.l.reservation(lender).unwrap().offered, cpu(2));
        assert!(matches!(
            f.err(
                Action::Offer {
                    tenant: f.a,
                    reservation: lender,
                    vector: cpu(3),
                    floor: PriceVector::default(),
                },
                0
            ),
            LedgerError::OverLendingCap { cap: 2, .. }
        ));
        f.ok(lending(true, None), 0);
        assert!(f.l.reservation(lender).unwrap().offered.is_zero());
        f.ok(auto(0), 0);
        assert!(
            f.l.reservation(lender).unwrap().offered.is_zero(),
            "opted out"
        );
        // A foreign tenant can't change a's lending.
        let foreign = Action::SetLending {
            tenant: f.b,
            reservation: lender,
            lending: Lending::default(),
            floor: PriceVector::default(),
        };
        assert!(matches!(f.err(foreign, 0), LedgerError::NotOwner { .. }));
    }

    #[test]
    fn lender_reclaim_returns_shards_to_the_lender_after_notice() {
        let mut f = fixture(ShardVector::new(10, 10, 0, 0));
        let lender = f.reserve(f.a, cpu(8), win(0, 10_000), Tier::Standard, 0);
        let br = f.reserve(
            f.b,
            ShardVector::of(ResourceKind::Memory, 1),
            win(0, 10_000),
            Tier::Standard,
            0,
        );
        let w = f.bind(f.b, br, "w", 0);
        f.ok(
            Action::Offer {
                tenant: f.a,
                reservation: lender,
                vector: cpu(8),
                floor: PriceVector::default(),
            },
            0,
        );
        f.ok(
            Action::RequestLease {
                tenant: f.b,
                workload: w,
                vector: cpu(6),
                until: t(1000),
                max_price: PriceVector::default(),
                all_or_nothing: true,
                start: None,
            },
            0,
        );
        let lease = f.l.leases().next().unwrap().clone();
        assert_eq!(
            lease.lender,
            Lender::Reservation(lender),
            "cheapest offer first: free beats the provider's 0 floor tie by order"
        );
        assert!(matches!(
            f.err(
                Action::Reclaim {
                    tenant: f.b,
                    lease: lease.id
                },
                1
            ),
            LedgerError::NotLender { .. }
        ));
        f.ok(
            Action::Reclaim {
                tenant: f.a,
                lease: lease.id,
            },
            1,
        );
        assert!(matches!(
            f.err(
                Action::Reclaim {
                    tenant: f.a,
                    lease: lease.id
                },
                2
            ),
            LedgerError::AlreadyReclaiming(_)
        ));
        f.ok(Action::Expire, 31);
        assert_eq!(f.l.leases().count(), 0);
        let res = f.l.reservation(lender).unwrap();
        assert_eq!(
            res.offered,
            cpu(2),
            "reclaimed shards stay with the lender, unoffered"
        );
        assert_eq!(f.l.idle(lender).unwrap(), cpu(8));
    }

    #[test]
    fn bad_input_is_refused_with_a_named_rule_and_changes_nothing() {
        let mut f = fixture(cpu(10));
        let r = f.reserve(f.a, cpu(6), win(0, 100), Tier::Standard, 0);
        let host = f.host;
        let e = f.err(
            Action::CreateReservation {
                tenant: f.a,
                host,
                vector: cpu(5),
                window: win(0, 100),
                tier: Tier::Standard,
            },
            0,
        );
        assert!(
            matches!(
                e,
                LedgerError::HostCapacityExceeded {
                    kind: ResourceKind::Cpu,
                    needed: 11,
                    capacity: 10,
                    ..
                }
            ),
            "{e}"
        );
        let e = f.err(
            Action::CreateReservation {
                tenant: f.a,
                host,
                vector: ShardVector::ZERO,
                window: win(0, 100),
                tier: Tier::Standard,
            },
            0,
        );
        assert!(matches!(e, LedgerError::EmptyVector { .. }));
        let e = f.err(
            Action::CreateReservation {
                tenant: f.a,
                host,
                vector: cpu(1),
                window: win(5, 100),
                tier: Tier::Standard,
            },
            10,
        );
        assert!(matches!(e, LedgerError::StartsInPast { .. }));
        let grow = |tenant, change| Action::ModifyReservation {
            tenant,
            reservation: r,
            changes: vec![KindChange {
                kind: ResourceKind::Cpu,
                change,
            }],
            start: None,
            duration: Span::from_secs(10),
        };
        let e = f.err(grow(f.a, Change::PercentBp(10_000)), 10);
        assert!(
            matches!(e, LedgerError::HostCapacityExceeded { needed: 12, .. }),
            "{e}"
        );
        let e = f.err(grow(f.b, Change::Delta(1)), 10);
        assert!(matches!(e, LedgerError::NotOwner { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("reservation 1 does not belong to tenant 2")
        );
        let e = f.err(
            Action::CancelReservation {
                tenant: f.a,
                reservation: ReservationId(99),
            },
            10,
        );
        assert!(matches!(e, LedgerError::UnknownReservation(_)));
        let e = f.err(
            Action::ModifyReservation {
                tenant: f.a,
                reservation: r,
                changes: vec![KindChange {
                    kind: ResourceKind::Cpu,
                    change: Change::Delta(1),
                }],
                start: None,
                duration: Span::from_secs(1000),
            },
            10,
        );
        assert!(matches!(
            e,
            LedgerError::ModificationOutsideReservation { .. }
        ));
        let w = f.bind(f.a, r, "w", 10);
        let e = f.err(Action::Expire, 5);
        assert!(matches!(e, LedgerError::TimeWentBackwards { .. }));
        let e = f.err(
            Action::Allocate {
                tenant: f.a,
                workload: w,
                share: cpu(7),
            },
            10,
        );
        assert!(
            matches!(
                e,
                LedgerError::InsufficientIdle {
                    idle: 6,
                    needed: 7,
                    ..
                }
            ),
            "{e}"
        );
        let e = f.err(
            Action::Offer {
                tenant: f.a,
                reservation: r,
                vector: cpu(1),
                floor: PriceVector::uniform(Decimal::NEGATIVE_ONE),
            },
            10,
        );
        assert!(matches!(e, LedgerError::NegativePrice { .. }));
        let e = f.err(
            Action::BindWorkload {
                tenant: f.a,
                reservation: r,
                name: "w".into(),
            },
            10,
        );
        assert!(matches!(e, LedgerError::DuplicateName { .. }));
        let e = f.err(
            Action::RegisterHost {
                name: "h".into(),
                capacity: cpu(1),
            },
            10,
        );
        assert!(matches!(e, LedgerError::DuplicateName { .. }));
        let e = f.err(
            Action::SetHostCapacity {
                host,
                capacity: cpu(5),
            },
            10,
        );
        assert!(matches!(e, LedgerError::HostCapacityExceeded { .. }));
        let e = f.err(
            Action::RequestLease {
                tenant: f.a,
                workload: w,
                vector: cpu(11),
                until: t(50),
                max_price: PriceVector::default(),
                all_or_nothing: false,
                start: None,
            },
            10,
        );
        assert!(matches!(e, LedgerError::RequestExceedsCapacity { .. }));
    }

    #[test]
    fn actions_and_events_round_trip_through_json() {
        let a = Action::ModifyReservation {
            tenant: TenantId(1),
            reservation: ReservationId(2),
            changes: vec!["cpu +10%".parse().unwrap()],
            start: None,
            duration: Span::from_secs(3600),
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), a);
        assert!(
            serde_json::from_str::<Action>(r#"{"action":"create_tenant","name":"x","extra":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Action>(r#"{"action":"fly"}"#).is_err());
    }
}
