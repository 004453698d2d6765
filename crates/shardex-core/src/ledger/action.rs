//! The actions: everything that can change the ledger.

use super::*;

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
