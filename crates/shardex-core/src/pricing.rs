//! Prices of shard-hours in exact decimal money.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::PriceVector;
use crate::shard::ResourceKind;

/// Milliseconds in an hour, the unit prices are quoted per.
const MS_PER_HOUR: i64 = 3_600_000;

/// The list price of one shard-hour per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// Price per shard-hour.
    pub shard_hour: PriceVector,
}

impl Default for PriceTable {
    /// Close to public on-demand cloud prices per unit: a vCPU-hour about 0.04, a GiB-hour of
    /// memory about 0.005, a Gbit/s-hour of bandwidth about 0.02, 1000 IOPS-hours about 0.005.
    fn default() -> Self {
        Self {
            shard_hour: PriceVector {
                cpu: Decimal::new(4, 4),        // 0.0004 per 10 millicores
                memory: Decimal::new(78125, 9), // 0.000078125 per 16 MiB (0.005 per GiB)
                net: Decimal::new(2, 5),        // 0.00002 per Mbit/s
                iops: Decimal::new(5, 5),       // 0.00005 per 10 IOPS
            },
        }
    }
}

impl PriceTable {
    /// Cost of `shard_ms` shard-milliseconds of `kind`, exact; `None` if it overflows.
    pub fn cost(&self, kind: ResourceKind, shard_ms: u128) -> Option<Decimal> {
        let units = Decimal::from_i128_with_scale(i128::try_from(shard_ms).ok()?, 0);
        let hours = units.checked_div(Decimal::from(MS_PER_HOUR))?;
        hours.checked_mul(self.shard_hour.get(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_shard_hours_exactly() {
        let t = PriceTable::default();
        // 100 cpu shards (one core) for one hour = 0.04.
        assert_eq!(
            t.cost(ResourceKind::Cpu, 100 * 3_600_000),
            Some(Decimal::new(4, 2))
        );
        // 64 memory shards (1 GiB) for one hour = 0.005.
        assert_eq!(
            t.cost(ResourceKind::Memory, 64 * 3_600_000),
            Some(Decimal::new(5, 3))
        );
    }
}
