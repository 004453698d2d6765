//! A host's capacity split into parts that add up to it, per kind: what a dashboard stacks and
//! what `/metrics` reports. Reserved shards are allocated to workloads, lent, idle or offered
//! (offered is the part of idle put on the market); unreserved shards are lent by the provider
//! or free.

use serde::{Deserialize, Serialize};

use super::HostBalance;
use crate::ShardVector;

/// Where a host's shards are, as disjoint parts whose sum is its capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacitySplit {
    /// Held by workloads as their share of their reservation.
    pub allocated: ShardVector,
    /// Lent out, by reservations and by the provider.
    pub lent: ShardVector,
    /// Reserved, not allocated, not lent and not offered.
    pub idle: ShardVector,
    /// Reserved and idle, offered on the market.
    pub offered: ShardVector,
    /// Neither reserved nor lent.
    pub free: ShardVector,
}

impl CapacitySplit {
    /// The sum of the parts (the capacity, for a balance the ledger made).
    pub fn total(&self) -> ShardVector {
        [self.lent, self.idle, self.offered, self.free]
            .iter()
            .fold(self.allocated, |sum, part| sum.saturating_add(part))
    }
}

impl HostBalance {
    /// The capacity as disjoint parts. A reservation's offer may name more than its idle
    /// shards (an offer is a standing order, idle shards move): only the idle part of it counts
    /// as offered, so the parts never overlap.
    pub fn split(&self) -> CapacitySplit {
        let offered = self.offered.min(&self.idle);
        CapacitySplit {
            allocated: self.allocated,
            lent: self
                .lent_by_reservations
                .saturating_add(&self.lent_by_provider),
            idle: self.idle.excess_over(&offered),
            offered,
            free: self.free,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vector() -> impl Strategy<Value = ShardVector> {
        prop::array::uniform4(0u64..1_000).prop_map(|a| ShardVector::from_fn(|k| a[k.index()]))
    }

    proptest! {
        /// Built the way `Ledger::balance` builds a balance, the parts add up to the capacity.
        #[test]
        fn the_parts_add_up_to_the_capacity(
            allocated in vector(), lent in vector(), idle in vector(), offered in vector(),
            by_provider in vector(), free in vector(),
        ) {
            let reserved = allocated.saturating_add(&lent).saturating_add(&idle);
            let unreserved = by_provider.saturating_add(&free);
            let b = HostBalance {
                host: None,
                capacity: reserved.saturating_add(&unreserved),
                reserved,
                allocated,
                lent_by_reservations: lent,
                idle,
                offered,
                unreserved,
                lent_by_provider: by_provider,
                free,
            };
            let s = b.split();
            prop_assert_eq!(s.total(), b.capacity);
            prop_assert!(s.offered.fits_in(&offered));
        }
    }
}
