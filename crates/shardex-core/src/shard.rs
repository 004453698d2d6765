//! Resource kinds, shard sizes and shard vectors: the integer units all ledger arithmetic uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of shard arithmetic and unit conversion.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardError {
    /// A sum would not fit in 64 bits.
    #[error("{kind} shard count overflows")]
    Overflow {
        /// The kind whose count overflowed.
        kind: ResourceKind,
    },
    /// A difference would go below zero.
    #[error("{kind}: {needed} shards needed but only {available} available")]
    Underflow {
        /// The kind that went short.
        kind: ResourceKind,
        /// Shards that were there.
        available: u64,
        /// Shards that were asked for.
        needed: u64,
    },
    /// A name that is none of cpu, memory, net, iops.
    #[error("unknown resource kind {0:?} (expected cpu, memory, net or iops)")]
    UnknownKind(String),
    /// A shard size of zero would make every conversion divide by zero.
    #[error("shard size for {kind} must be at least 1 {unit}, got 0")]
    ZeroShardSize {
        /// The kind with a zero size.
        kind: ResourceKind,
        /// Its physical unit.
        unit: &'static str,
    },
    /// A physical amount too large to express.
    #[error("{shards} {kind} shards exceed the largest physical amount")]
    PhysicalOverflow {
        /// The kind.
        kind: ResourceKind,
        /// The shard count that could not be converted.
        shards: u64,
    },
}

/// One of the four resource kinds shards exist for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// Processor time, in millicores.
    Cpu,
    /// Memory, in bytes.
    Memory,
    /// Network bandwidth, in bits per second.
    Net,
    /// Storage operations per second.
    Iops,
}

impl ResourceKind {
    /// Every kind, in the order vectors store them.
    pub const ALL: [ResourceKind; 4] = [Self::Cpu, Self::Memory, Self::Net, Self::Iops];

    /// Position of this kind in a vector.
    pub const fn index(self) -> usize {
        match self {
            Self::Cpu => 0,
            Self::Memory => 1,
            Self::Net => 2,
            Self::Iops => 3,
        }
    }

    /// Lower-case name used in config, the API and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Net => "net",
            Self::Iops => "iops",
        }
    }

    /// Physical unit that shard sizes of this kind are given in.
    pub const fn unit(self) -> &'static str {
        match self {
            Self::Cpu => "millicore",
            Self::Memory => "byte",
            Self::Net => "bit/s",
            Self::Iops => "IOPS",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ResourceKind {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "memory" | "mem" => Ok(Self::Memory),
            "net" | "network" => Ok(Self::Net),
            "iops" => Ok(Self::Iops),
            _ => Err(ShardError::UnknownKind(s.to_string())),
        }
    }
}

/// How much of each physical resource one shard stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardSizes {
    /// Millicores per cpu shard.
    pub cpu_millicores: u64,
    /// Bytes per memory shard.
    pub memory_bytes: u64,
    /// Bits per second per net shard.
    pub net_bps: u64,
    /// IOPS per iops shard.
    pub iops: u64,
}

impl Default for ShardSizes {
    /// DESIGN.md's defaults: 10 millicores, 16 MiB, 1 Mbit/s, 10 IOPS.
    fn default() -> Self {
        Self {
            cpu_millicores: 10,
            memory_bytes: 16 << 20,
            net_bps: 1_000_000,
            iops: 10,
        }
    }
}

impl ShardSizes {
    /// Checks that no size is zero.
    pub fn validate(self) -> Result<Self, ShardError> {
        for kind in ResourceKind::ALL {
            if self.size(kind) == 0 {
                return Err(ShardError::ZeroShardSize {
                    kind,
                    unit: kind.unit(),
                });
            }
        }
        Ok(self)
    }

    /// Physical amount of one shard of `kind`.
    pub const fn size(&self, kind: ResourceKind) -> u64 {
        match kind {
            ResourceKind::Cpu => self.cpu_millicores,
            ResourceKind::Memory => self.memory_bytes,
            ResourceKind::Net => self.net_bps,
            ResourceKind::Iops => self.iops,
        }
    }

    /// Shards needed to cover a demand: rounds up, so demand is never under-served.
    pub fn demand_shards(&self, kind: ResourceKind, amount: u64) -> u64 {
        amount.div_ceil(self.size(kind).max(1))
    }

    /// Shards a supply can back: rounds down, so capacity is never over-promised.
    pub fn supply_shards(&self, kind: ResourceKind, amount: u64) -> u64 {
        amount / self.size(kind).max(1)
    }

    /// Physical amount of `shards` shards, for actuators.
    pub fn physical(&self, kind: ResourceKind, shards: u64) -> Result<u64, ShardError> {
        shards
            .checked_mul(self.size(kind))
            .ok_or(ShardError::PhysicalOverflow { kind, shards })
    }

    /// Shard vector covering a physical demand vector (rounding up).
    pub fn demand_vector(&self, amounts: PhysicalVector) -> ShardVector {
        ShardVector::from_fn(|k| self.demand_shards(k, amounts.get(k)))
    }

    /// Shard vector a physical supply vector backs (rounding down).
    pub fn supply_vector(&self, amounts: PhysicalVector) -> ShardVector {
        ShardVector::from_fn(|k| self.supply_shards(k, amounts.get(k)))
    }

    /// Physical vector of a shard vector.
    pub fn physical_vector(&self, shards: ShardVector) -> Result<PhysicalVector, ShardError> {
        let mut out = [0u64; 4];
        for kind in ResourceKind::ALL {
            out[kind.index()] = self.physical(kind, shards.get(kind))?;
        }
        Ok(PhysicalVector(out))
    }
}

/// Physical amounts per kind: millicores, bytes, bit/s, IOPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PhysicalVector(pub [u64; 4]);

impl PhysicalVector {
    /// Amount of one kind.
    pub const fn get(&self, kind: ResourceKind) -> u64 {
        self.0[kind.index()]
    }
}

/// An integer count of shards per kind. All arithmetic is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShardVector([u64; 4]);

impl ShardVector {
    /// No shards of any kind.
    pub const ZERO: ShardVector = ShardVector([0; 4]);

    /// A vector from counts in `ResourceKind::ALL` order.
    pub const fn new(cpu: u64, memory: u64, net: u64, iops: u64) -> Self {
        Self([cpu, memory, net, iops])
    }

    /// A vector with `count` shards of `kind` and none of the others.
    pub fn of(kind: ResourceKind, count: u64) -> Self {
        Self::ZERO.with(kind, count)
    }

    /// A vector built from a function of the kind.
    pub fn from_fn(mut f: impl FnMut(ResourceKind) -> u64) -> Self {
        Self(ResourceKind::ALL.map(&mut f))
    }

    /// Count of one kind.
    pub const fn get(&self, kind: ResourceKind) -> u64 {
        self.0[kind.index()]
    }

    /// This vector with one kind's count replaced.
    #[must_use]
    pub fn with(mut self, kind: ResourceKind, count: u64) -> Self {
        self.0[kind.index()] = count;
        self
    }

    /// True when every count is zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&c| c == 0)
    }

    /// True when every count is at most `other`'s.
    pub fn fits_in(&self, other: &ShardVector) -> bool {
        ResourceKind::ALL
            .iter()
            .all(|&k| self.get(k) <= other.get(k))
    }

    /// Sum, failing on overflow in any kind.
    pub fn checked_add(&self, other: &ShardVector) -> Result<ShardVector, ShardError> {
        let mut out = *self;
        for kind in ResourceKind::ALL {
            out.0[kind.index()] = self
                .get(kind)
                .checked_add(other.get(kind))
                .ok_or(ShardError::Overflow { kind })?;
        }
        Ok(out)
    }

    /// Difference, failing when any kind would go below zero.
    pub fn checked_sub(&self, other: &ShardVector) -> Result<ShardVector, ShardError> {
        let mut out = *self;
        for kind in ResourceKind::ALL {
            out.0[kind.index()] =
                self.get(kind)
                    .checked_sub(other.get(kind))
                    .ok_or(ShardError::Underflow {
                        kind,
                        available: self.get(kind),
                        needed: other.get(kind),
                    })?;
        }
        Ok(out)
    }

    /// Per kind, how far `self` exceeds `other` (zero where it does not): a shortfall, by definition.
    pub fn excess_over(&self, other: &ShardVector) -> ShardVector {
        Self::from_fn(|k| self.get(k).saturating_sub(other.get(k)))
    }

    /// Sum that stops at the largest count instead of failing (for reports, not the ledger).
    pub fn saturating_add(&self, other: &ShardVector) -> ShardVector {
        Self::from_fn(|k| self.get(k).saturating_add(other.get(k)))
    }

    /// Per-kind minimum.
    pub fn min(&self, other: &ShardVector) -> ShardVector {
        Self::from_fn(|k| self.get(k).min(other.get(k)))
    }

    /// Per-kind maximum.
    pub fn max(&self, other: &ShardVector) -> ShardVector {
        Self::from_fn(|k| self.get(k).max(other.get(k)))
    }

    /// Checked sum of many vectors.
    pub fn checked_sum<'a>(
        items: impl IntoIterator<Item = &'a ShardVector>,
    ) -> Result<ShardVector, ShardError> {
        items
            .into_iter()
            .try_fold(ShardVector::ZERO, |acc, v| acc.checked_add(v))
    }

    /// Kinds with a non-zero count.
    pub fn kinds(&self) -> impl Iterator<Item = ResourceKind> + '_ {
        ResourceKind::ALL.into_iter().filter(|&k| self.get(k) > 0)
    }
}

impl fmt::Display for ShardVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu={} memory={} net={} iops={}",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Wire form of a shard vector: a map from kind to count; absent kinds are zero.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardVectorWire {
    #[serde(default)]
    cpu: u64,
    #[serde(default)]
    memory: u64,
    #[serde(default)]
    net: u64,
    #[serde(default)]
    iops: u64,
}

impl Serialize for ShardVector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let [cpu, memory, net, iops] = self.0;
        ShardVectorWire {
            cpu,
            memory,
            net,
            iops,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShardVector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ShardVectorWire::deserialize(d)?;
        Ok(Self([w.cpu, w.memory, w.net, w.iops]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_sizes_match_design() {
        let s = ShardSizes::default();
        assert_eq!(s.size(ResourceKind::Cpu), 10);
        assert_eq!(s.size(ResourceKind::Memory), 16 * 1024 * 1024);
        assert_eq!(s.size(ResourceKind::Net), 1_000_000);
        assert_eq!(s.size(ResourceKind::Iops), 10);
    }

    #[test]
    fn demand_rounds_up_and_supply_rounds_down() {
        let s = ShardSizes::default();
        assert_eq!(s.demand_shards(ResourceKind::Cpu, 1), 1);
        assert_eq!(s.demand_shards(ResourceKind::Cpu, 10), 1);
        assert_eq!(s.demand_shards(ResourceKind::Cpu, 11), 2);
        assert_eq!(s.demand_shards(ResourceKind::Cpu, 0), 0);
        assert_eq!(s.supply_shards(ResourceKind::Cpu, 19), 1);
        assert_eq!(s.supply_shards(ResourceKind::Memory, (16 << 20) - 1), 0);
        assert_eq!(s.physical(ResourceKind::Memory, 2), Ok(32 << 20));
    }

    #[test]
    fn overflow_and_underflow_are_errors() {
        let big = ShardVector::of(ResourceKind::Net, u64::MAX);
        assert_eq!(
            big.checked_add(&ShardVector::of(ResourceKind::Net, 1)),
            Err(ShardError::Overflow {
                kind: ResourceKind::Net
            })
        );
        assert_eq!(
            ShardVector::new(1, 0, 0, 0).checked_sub(&ShardVector::new(2, 0, 0, 0)),
            Err(ShardError::Underflow {
                kind: ResourceKind::Cpu,
                available: 1,
                needed: 2
            })
        );
        assert!(
            ShardSizes::default()
                .physical(ResourceKind::Memory, u64::MAX)
                .is_err()
        );
    }

    #[test]
    fn zero_shard_size_is_rejected() {
        let s = ShardSizes {
            iops: 0,
            ..ShardSizes::default()
        };
        assert!(matches!(
            s.validate(),
            Err(ShardError::ZeroShardSize {
                kind: ResourceKind::Iops,
                ..
            })
        ));
    }

    #[test]
    fn unknown_kind_names_the_input() {
        let err = "gpu".parse::<ResourceKind>().unwrap_err();
        assert!(err.to_string().contains("gpu"));
    }

    #[test]
    fn wire_form_is_a_map_and_rejects_unknown_kinds() {
        let v = ShardVector::new(1, 2, 0, 4);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"cpu":1,"memory":2,"net":0,"iops":4}"#);
        let back: ShardVector = serde_json::from_str(r#"{"cpu":1,"memory":2,"iops":4}"#).unwrap();
        assert_eq!(back, v);
        assert!(serde_json::from_str::<ShardVector>(r#"{"gpu":1}"#).is_err());
    }

    proptest! {
        #[test]
        fn demand_covers_and_supply_never_overpromises(amount in 0u64..u64::MAX / 2, size in 1u64..1 << 30) {
            let s = ShardSizes { cpu_millicores: size, ..ShardSizes::default() };
            let up = s.demand_shards(ResourceKind::Cpu, amount);
            let down = s.supply_shards(ResourceKind::Cpu, amount);
            prop_assert!(up as u128 * size as u128 >= amount as u128);
            prop_assert!((down as u128) * (size as u128) <= amount as u128);
            prop_assert!(up - down <= 1);
        }

        #[test]
        fn add_then_sub_round_trips(a in any::<[u32; 4]>(), b in any::<[u32; 4]>()) {
            let a = ShardVector::from_fn(|k| a[k.index()] as u64);
            let b = ShardVector::from_fn(|k| b[k.index()] as u64);
            let sum = a.checked_add(&b).unwrap();
            prop_assert_eq!(sum.checked_sub(&b).unwrap(), a);
            prop_assert!(a.fits_in(&sum));
        }
    }
}
