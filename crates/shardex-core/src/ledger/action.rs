//! The actions: everything that can change the ledger, one type per intent. What a tenant may
//! ask for itself is [`TenantAction`], a type apart from what only the system sends (the
//! engine, the market, the operator): the tenant-facing API accepts only the first. Both read
//! and write the same JSON (`{"action": "create_reservation", ...}`), so the log stays
//! readable.

use super::*;

/// Everything that can change the ledger. HTTP and CLI only parse into these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sets ledger parameters.
    Configure(Configure),
    /// Adds a host.
    RegisterHost(RegisterHost),
    /// Changes a host's capacity (admission rules apply).
    SetHostCapacity(SetHostCapacity),
    /// Adds a tenant.
    CreateTenant(CreateTenant),
    /// Reserves shards on a host for a window.
    CreateReservation(CreateReservation),
    /// Changes a reservation for a while.
    ModifyReservation(ModifyReservation),
    /// Ends a modification early.
    CancelModification(CancelModification),
    /// Ends a reservation now.
    CancelReservation(CancelReservation),
    /// Creates a workload inside a reservation.
    BindWorkload(BindWorkload),
    /// Removes a workload: its share goes idle, its leases and requests end.
    UnbindWorkload(UnbindWorkload),
    /// Sets a workload's share of its own reservation.
    Allocate(Allocate),
    /// Sets what a reservation offers to the pool and at what floor price.
    Offer(Offer),
    /// Asks the pool for shards for a workload until a time.
    RequestLease(RequestLease),
    /// Sets how a reservation lends: opt-out of automatic offers, a cap, a floor price.
    SetLending(SetLending),
    /// Offers a reservation's idle shards minus its owner's predicted need, within its
    /// lending rules. The engine sends it on the owner's behalf.
    AutoOffer(AutoOffer),
    /// Sets the pool's market price per shard-hour on a host (from the price book).
    SetMarketPrice(SetMarketPrice),
    /// Withdraws a pending request (leases it already got stay).
    CancelRequest(CancelRequest),
    /// The lender takes a lease back, after the reclaim notice.
    Reclaim(Reclaim),
    /// The borrower gives a lease back now.
    Release(Release),
    /// The provider takes back, after the reclaim notice, a lease of its unreserved shards,
    /// because a reservation on the host needs them (a deferred reservation or modification).
    ReclaimProvider(ReclaimProvider),
    /// Keeps a modification asked for from now that its host has no room for as pending
    /// (started at once if it fits after all; refused when even the whole host could not
    /// hold it): the engine frees room for it (see `pending.rs`).
    QueueModification(ModifyReservation),
    /// Starts a pending modification now that its host has room (the engine sends it).
    StartPendingModification(StartPendingModification),
    /// Catches up with time only: processes every expiry up to now.
    Expire,
    /// Several actions applied in order as one, then matching once on the hosts they touched:
    /// all of them, or none (the engine commits a tick's plan this way).
    Batch(Batch),
}

/// What a tenant may ask for itself: its reservations, their modifications, its workloads,
/// what it lends and borrows. Every one names the tenant that asks, which must own what it
/// touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum TenantAction {
    /// Reserves shards on a host for a window.
    CreateReservation(CreateReservation),
    /// Changes a reservation for a while.
    ModifyReservation(ModifyReservation),
    /// Ends a modification early.
    CancelModification(CancelModification),
    /// Ends a reservation now.
    CancelReservation(CancelReservation),
    /// Creates a workload inside a reservation.
    BindWorkload(BindWorkload),
    /// Removes a workload: its share goes idle, its leases and requests end.
    UnbindWorkload(UnbindWorkload),
    /// Sets a workload's share of its own reservation.
    Allocate(Allocate),
    /// Sets what a reservation offers to the pool and at what floor price.
    Offer(Offer),
    /// Asks the pool for shards for a workload until a time.
    RequestLease(RequestLease),
    /// Sets how a reservation lends: opt-out of automatic offers, a cap, a floor price.
    SetLending(SetLending),
    /// Withdraws a pending request (leases it already got stay).
    CancelRequest(CancelRequest),
    /// The lender takes a lease back, after the reclaim notice.
    Reclaim(Reclaim),
    /// The borrower gives a lease back now.
    Release(Release),
}

impl From<TenantAction> for Action {
    fn from(a: TenantAction) -> Self {
        match a {
            TenantAction::CreateReservation(x) => Action::CreateReservation(x),
            TenantAction::ModifyReservation(x) => Action::ModifyReservation(x),
            TenantAction::CancelModification(x) => Action::CancelModification(x),
            TenantAction::CancelReservation(x) => Action::CancelReservation(x),
            TenantAction::BindWorkload(x) => Action::BindWorkload(x),
            TenantAction::UnbindWorkload(x) => Action::UnbindWorkload(x),
            TenantAction::Allocate(x) => Action::Allocate(x),
            TenantAction::Offer(x) => Action::Offer(x),
            TenantAction::RequestLease(x) => Action::RequestLease(x),
            TenantAction::SetLending(x) => Action::SetLending(x),
            TenantAction::CancelRequest(x) => Action::CancelRequest(x),
            TenantAction::Reclaim(x) => Action::Reclaim(x),
            TenantAction::Release(x) => Action::Release(x),
        }
    }
}

impl TenantAction {
    /// The tenant that asks.
    pub fn tenant(&self) -> TenantId {
        match self {
            TenantAction::CreateReservation(x) => x.tenant,
            TenantAction::ModifyReservation(x) => x.tenant,
            TenantAction::CancelModification(x) => x.tenant,
            TenantAction::CancelReservation(x) => x.tenant,
            TenantAction::BindWorkload(x) => x.tenant,
            TenantAction::UnbindWorkload(x) => x.tenant,
            TenantAction::Allocate(x) => x.tenant,
            TenantAction::Offer(x) => x.tenant,
            TenantAction::RequestLease(x) => x.tenant,
            TenantAction::SetLending(x) => x.tenant,
            TenantAction::CancelRequest(x) => x.tenant,
            TenantAction::Reclaim(x) => x.tenant,
            TenantAction::Release(x) => x.tenant,
        }
    }
}

/// Sets ledger parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    /// New parameters.
    pub params: LedgerParams,
}

/// Adds a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterHost {
    /// Unique name.
    pub name: String,
    /// Its capacity in shards.
    pub capacity: ShardVector,
}

/// Changes a host's capacity (admission rules apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHostCapacity {
    /// The host.
    pub host: HostId,
    /// New capacity.
    pub capacity: ShardVector,
}

/// Adds a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name.
    pub name: String,
}

/// Reserves shards on a host for a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    /// Owner.
    pub tenant: TenantId,
    /// Where.
    pub host: HostId,
    /// How many shards.
    pub vector: ShardVector,
    /// When.
    pub window: Window,
    /// Priority.
    pub tier: Tier,
}

/// Changes a reservation for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModifyReservation {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub reservation: ReservationId,
    /// What changes.
    pub changes: Vec<KindChange>,
    /// When it starts; now if absent.
    #[serde(default)]
    pub start: Option<Timestamp>,
    /// How long it lasts.
    pub duration: Span,
}

/// Ends a modification early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelModification {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub modification: ModificationId,
}

/// Ends a reservation now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelReservation {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub reservation: ReservationId,
}

/// Creates a workload inside a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindWorkload {
    /// Owner (of the reservation too).
    pub tenant: TenantId,
    /// The reservation.
    pub reservation: ReservationId,
    /// Name, unique per tenant.
    pub name: String,
}

/// Removes a workload: its share goes idle, its leases and requests end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnbindWorkload {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub workload: WorkloadId,
}

/// Sets a workload's share of its own reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocate {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub workload: WorkloadId,
    /// New share.
    pub share: ShardVector,
}

/// Sets what a reservation offers to the pool and at what floor price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub reservation: ReservationId,
    /// Shards offered (at most its idle shards).
    pub vector: ShardVector,
    /// Lowest price per shard-hour.
    pub floor: PriceVector,
}

/// Asks the pool for shards for a workload until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLease {
    /// Owner of the workload.
    pub tenant: TenantId,
    /// The borrower.
    pub workload: WorkloadId,
    /// Shards wanted.
    pub vector: ShardVector,
    /// When the leases end.
    pub until: Timestamp,
    /// Highest price per shard-hour accepted.
    pub max_price: PriceVector,
    /// Take all or nothing instead of partial fills.
    pub all_or_nothing: bool,
    /// Scheduled delivery: matching starts then. Absent means now (immediate, at the
    /// immediate-delivery premium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
}

/// Sets how a reservation lends: opt-out of automatic offers, a cap, a floor price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLending {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub reservation: ReservationId,
    /// Opt-out and cap.
    pub lending: Lending,
    /// Lowest price per shard-hour.
    pub floor: PriceVector,
}

/// Offers a reservation's idle shards minus its owner's predicted need, within its
/// lending rules. The engine sends it on the owner's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoOffer {
    /// Which.
    pub reservation: ReservationId,
    /// What its own workloads are predicted to need on top of their allocations over the
    /// reclaim notice (upper quantile of their RDVs).
    pub need: ShardVector,
}

/// Sets the pool's market price per shard-hour on a host (from the price book).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMarketPrice {
    /// The host.
    pub host: HostId,
    /// Base price per shard-hour, per kind, before tier and delivery factors.
    pub prices: PriceVector,
}

/// Withdraws a pending request (leases it already got stay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Owner.
    pub tenant: TenantId,
    /// Which.
    pub request: RequestId,
}

/// The lender takes a lease back, after the reclaim notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reclaim {
    /// Owner of the lending reservation.
    pub tenant: TenantId,
    /// Which.
    pub lease: LeaseId,
}

/// The provider takes back a lease of its unreserved shards, after the reclaim notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimProvider {
    /// Which: a lease whose lender is the provider.
    pub lease: LeaseId,
}

/// Starts a pending modification, for its duration from now (cut at its reservation's end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartPendingModification {
    /// Which.
    pub modification: ModificationId,
}

/// The borrower gives a lease back now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Owner of the borrowing workload.
    pub tenant: TenantId,
    /// Which.
    pub lease: LeaseId,
}

/// Several actions applied in order as one, then matching once on the hosts they touched:
/// all of them, or none (the engine commits a tick's plan this way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The actions, in order.
    pub actions: Vec<Action>,
}
