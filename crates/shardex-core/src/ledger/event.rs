//! The events: what an action did, stored with it.

use super::*;

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

/// How a pending modification stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingEnd {
    /// Its host had room: it is in force, under the same id.
    Started,
    /// Its owner withdrew it.
    Cancelled,
    /// No room was found before it gave up.
    GaveUp,
    /// Its reservation ended or was cancelled.
    ReservationEnded,
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
    /// A modification the host has no room for now is pending: kept until room is freed.
    ModificationQueued {
        /// The id it keeps once it starts.
        modification: ModificationId,
        /// Reservation.
        reservation: ReservationId,
        /// Changes.
        changes: Vec<KindChange>,
        /// How long it will last once started.
        duration: Span,
        /// When it gives up if it has not started.
        gives_up_at: Timestamp,
    },
    /// A pending modification stopped waiting.
    PendingModificationEnded {
        /// The modification.
        modification: ModificationId,
        /// How.
        how: PendingEnd,
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
