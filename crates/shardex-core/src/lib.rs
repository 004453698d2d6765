//! shardex-core: the pure domain of shardex. No I/O, no clock, no threads: time is an
//! argument and everything here is deterministic.
//!
//! * [`shard`]: resource kinds, configurable shard sizes, checked shard vectors.
//! * [`time`]: timestamps, spans and windows.
//! * [`domain`]: hosts, tenants, reservations, modifications, workloads, leases.
//! * [`ledger`]: the one entry point that changes state, and the invariant checker.
//! * [`rdv`]: samples and Resource Demand Vectors.
//! * [`ports`]: traits that adapters implement.

pub mod domain;
pub mod ledger;
pub mod ports;
pub mod pricing;
pub mod rdv;
pub mod shard;
pub mod time;

pub use domain::{
    Change, Host, HostId, KindChange, Lease, LeaseId, LeaseRequest, Lender, Modification,
    ModificationId, PriceVector, RequestId, Reservation, ReservationId, Tenant, TenantId, Tier,
    Workload, WorkloadId,
};
pub use ledger::{Action, Event, HostBalance, Ledger, LedgerError, LedgerParams, Rule, Violation};
pub use pricing::PriceTable;
pub use rdv::{Horizon, KindForecast, Quantiles, Rdv, Sample};
pub use shard::{PhysicalVector, ResourceKind, ShardError, ShardSizes, ShardVector};
pub use time::{Span, TimeError, Timestamp, Window};
