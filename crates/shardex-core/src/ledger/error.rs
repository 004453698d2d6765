//! Why an action was refused: one error per rule, each naming what was wrong.

use super::*;

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
    /// Only a lease of the provider's unreserved shards can be taken back by the provider.
    #[error("{0} was not lent by the provider")]
    NotProviderLease(LeaseId),
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
    /// A value past the bounds every action is held to (`ledger/bounds.rs`).
    #[error("{what} = {value} is out of bounds: {allowed}")]
    OutOfBounds {
        /// Which field.
        what: String,
        /// What it was.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A batch inside a batch.
    #[error("a batch can't contain another batch")]
    NestedBatch,
    /// A rule the ledger itself should have kept was found broken mid-action.
    #[error("ledger rule broken: {0}")]
    Internal(String),
}
