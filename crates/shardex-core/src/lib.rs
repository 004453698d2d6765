//! shardex-core: the pure domain of shardex. No I/O, no clock, no threads: time is an
//! argument and everything here is deterministic.
//!
//! * [`shard`]: resource kinds, configurable shard sizes, checked shard vectors.
//! * [`time`]: timestamps, spans and windows.
//! * [`domain`]: hosts, tenants, reservations, modifications, workloads, leases.
//! * [`ledger`]: the one entry point that changes state, and the invariant checker.
//! * [`rdv`]: samples and Resource Demand Vectors.
//! * [`ports`]: traits that adapters implement.
//!
//! ```
//! use shardex_core::{action, Action, Ledger, LedgerError, ShardVector, Tier, Timestamp, Window};
//!
//! let t = |s| Timestamp::from_secs(s).unwrap();
//! let mut ledger = Ledger::new();
//! let host = action::RegisterHost { name: "h1".into(), capacity: ShardVector::new(100, 64, 10, 10) };
//! ledger.apply(&Action::RegisterHost(host), t(0)).unwrap();
//! ledger.apply(&Action::CreateTenant(action::CreateTenant { name: "acme".into() }), t(0)).unwrap();
//! let (host, tenant) = (ledger.hosts().next().unwrap().id, ledger.tenants().next().unwrap().id);
//! let window = Window::new(t(0), t(3600)).unwrap();
//! let reserve = |cpu| Action::CreateReservation(action::CreateReservation {
//!     tenant, host, vector: ShardVector::new(cpu, 0, 0, 0), window, tier: Tier::Standard,
//! });
//! ledger.apply(&reserve(60), t(0)).unwrap();
//! // A second reservation would overbook the host: refused, and nothing changes.
//! let before = ledger.clone();
//! assert!(matches!(ledger.apply(&reserve(50), t(0)), Err(LedgerError::HostCapacityExceeded { .. })));
//! assert_eq!(ledger, before);
//! assert!(ledger.check().is_empty());
//! ```

pub mod billing;
pub mod censoring;
pub mod control;
pub mod deferral;
pub mod domain;
pub mod engine;
pub mod entitlement;
pub mod ledger;
pub mod market;
pub mod ports;
pub mod rdv;
pub mod shard;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;

pub use domain::{
    Change, Delivery, Host, HostId, KindChange, Lease, LeaseId, LeaseRequest, Lender, Lending,
    Modification, ModificationId, PendingModification, PriceVector, RequestId, Reservation,
    ReservationId, Tenant, TenantId, Tier, Workload, WorkloadId,
};
pub use ledger::action;
pub use ledger::{
    Action, CapacitySplit, Event, HostBalance, Ledger, LedgerError, LedgerParams, Rule,
    TenantAction, Violation,
};
// The marketplace's parts (DESIGN: marketplace and pricing) live under `market/`; their
// paths stay at the root too.
pub use market::{book, pricing};
pub use pricing::PriceTable;
pub use rdv::{Horizon, KindForecast, Quantiles, Rdv, Sample};
pub use shard::{PhysicalVector, ResourceKind, ShardError, ShardSizes, ShardVector};
pub use time::{Span, TimeError, Timestamp, Window};
