//! What tests of the core and of the crates around it share: timestamps in seconds and a small
//! world of one host, tenants and reservations, built through the ledger's own actions (so a
//! fixture can never hold a state the ledger would refuse). Compiled for this crate's tests and,
//! with the `testkit` feature, for other crates' tests; never in a release build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fleet;
pub mod moves;
pub use fleet::{demands, fleet};

use crate::domain::{HostId, ReservationId, TenantId, Tier};
use crate::ledger::{Action, Event, Ledger, action};
use crate::shard::ShardVector;
use crate::time::{Timestamp, Window};

/// The timestamp `s` seconds after the epoch.
pub fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(s).unwrap()
}

/// The window from `a` to `b` seconds.
pub fn win(a: i64, b: i64) -> Window {
    Window::new(t(a), t(b)).unwrap()
}

/// A ledger with one host `h` of `capacity` and the tenants `names`, all at time 0.
#[derive(Debug, Clone)]
pub struct World {
    /// The ledger.
    pub ledger: Ledger,
    /// The host.
    pub host: HostId,
    /// The tenants, in the order named.
    pub tenants: Vec<TenantId>,
}

impl World {
    /// Host `h` of `capacity`, and a tenant per name.
    pub fn new(capacity: ShardVector, names: &[&str]) -> Self {
        let mut ledger = Ledger::new();
        let host = action::RegisterHost {
            name: "h".into(),
            capacity,
        };
        ledger.apply(&Action::RegisterHost(host), t(0)).unwrap();
        let host = ledger.hosts().last().unwrap().id;
        let tenants = names
            .iter()
            .map(|name| {
                let create = action::CreateTenant {
                    name: (*name).into(),
                };
                ledger.apply(&Action::CreateTenant(create), t(0)).unwrap();
                ledger.tenants().last().unwrap().id
            })
            .collect();
        Self {
            ledger,
            host,
            tenants,
        }
    }

    /// The `i`th tenant named.
    pub fn tenant(&self, i: usize) -> TenantId {
        self.tenants[i]
    }

    /// Reserves `vector` on the host for `tenant` from `from` to `to` seconds, standard tier,
    /// applied at time `from`.
    pub fn reserve(
        &mut self,
        tenant: TenantId,
        vector: ShardVector,
        from: i64,
        to: i64,
    ) -> ReservationId {
        let create = action::CreateReservation {
            tenant,
            host: self.host,
            vector,
            window: win(from, to),
            tier: Tier::Standard,
        };
        let events = self
            .ledger
            .apply(&Action::CreateReservation(create), t(from))
            .unwrap();
        match events.last() {
            Some(Event::ReservationCreated { reservation, .. }) => *reservation,
            other => panic!("no reservation created: {other:?}"),
        }
    }
}
