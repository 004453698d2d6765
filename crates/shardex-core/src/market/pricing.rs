//! Prices of shard-hours in exact decimal money: a list price per kind, graduated volume tiers,
//! commitment-length tiers, priority multipliers and a premium for immediate delivery.
//!
//! The price of `n` shards of one kind for a duration `d`, at tier `T`, delivered `D`:
//!
//! ```text
//! per hour = list price × Σ over volume tiers (shards of n inside the tier × its factor)
//!            × duration factor(d) × priority factor(T) × delivery factor(D)
//! amount   = per hour × hours(d), rounded to 6 decimals (half to even)
//! ```
//!
//! Volume tiers are graduated (the first shards at the first tier's factor, the next at the
//! next, like a tax bracket); the duration factor is that of the tier the whole commitment
//! falls in (a 30-day commitment is discounted as a whole).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::domain::Delivery;
use crate::domain::{PriceVector, Tier};
use crate::shard::ResourceKind;
use crate::time::Span;

/// Milliseconds in an hour, the unit prices are quoted per.
const MS_PER_HOUR: i64 = 3_600_000;
/// Decimals kept in amounts: millionths of the currency unit.
pub const AMOUNT_DP: u32 = 6;

/// Errors of a price table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PricingError {
    /// A negative price or factor.
    #[error("{what} is {value}; it must not be negative")]
    Negative {
        /// Which value.
        what: String,
        /// The value.
        value: Decimal,
    },
    /// Tiers whose thresholds do not strictly increase from zero.
    #[error("{what} must start at 0 and strictly increase")]
    BadTiers {
        /// Which tiers.
        what: &'static str,
    },
    /// An amount too large to represent.
    #[error("the amount overflows")]
    Overflow,
}

/// From `from_shards` shards on, each further shard costs `factor` × the list price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeTier {
    /// First shard count of the tier.
    pub from_shards: u64,
    /// Multiplier of the list price.
    pub factor: Decimal,
}

/// A commitment lasting at least `from` costs `factor` × the list price, all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationTier {
    /// Shortest commitment of the tier.
    pub from: Span,
    /// Multiplier of the list price.
    pub factor: Decimal,
}

/// Price multipliers per priority tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TierFactors {
    /// best-effort.
    pub best_effort: Decimal,
    /// standard.
    pub standard: Decimal,
    /// premium.
    pub premium: Decimal,
    /// critical.
    pub critical: Decimal,
}

impl Default for TierFactors {
    /// Best-effort at half price, standard at list, premium ×1.5, critical ×2.
    fn default() -> Self {
        Self {
            best_effort: Decimal::new(5, 1),
            standard: Decimal::ONE,
            premium: Decimal::new(15, 1),
            critical: Decimal::TWO,
        }
    }
}

impl TierFactors {
    /// The factor of one tier.
    pub fn get(&self, tier: Tier) -> Decimal {
        match tier {
            Tier::BestEffort => self.best_effort,
            Tier::Standard => self.standard,
            Tier::Premium => self.premium,
            Tier::Critical => self.critical,
        }
    }
}

/// The price table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// List price per shard-hour, per kind.
    pub shard_hour: PriceVector,
    /// Graduated volume discounts by shard count.
    pub volume_tiers: Vec<VolumeTier>,
    /// Discounts by commitment length.
    pub duration_tiers: Vec<DurationTier>,
    /// Multipliers by priority tier.
    pub tier_factors: TierFactors,
    /// Multiplier for immediate over scheduled delivery.
    pub immediate_premium: Decimal,
}

impl Default for PriceTable {
    /// Close to public on-demand cloud prices per unit (a vCPU-hour about 0.04, a GiB-hour of
    /// memory about 0.005, a Gbit/s-hour about 0.02, 1000 IOPS-hours about 0.005); volume
    /// discounts of 10 % past 1,000 shards and 20 % past 10,000; commitment discounts of 10 %
    /// for a day, 25 % for a week, 40 % for 30 days; best-effort at half price, premium ×1.5,
    /// critical ×2; immediate delivery ×1.25.
    fn default() -> Self {
        let d = |m: i64, s: u32| Decimal::new(m, s);
        Self {
            shard_hour: PriceVector {
                cpu: d(4, 4),        // 0.0004 per 10 millicores
                memory: d(78125, 9), // 0.000078125 per 16 MiB (0.005 per GiB)
                net: d(2, 5),        // 0.00002 per Mbit/s
                iops: d(5, 5),       // 0.00005 per 10 IOPS
            },
            volume_tiers: vec![
                VolumeTier {
                    from_shards: 0,
                    factor: Decimal::ONE,
                },
                VolumeTier {
                    from_shards: 1_000,
                    factor: d(9, 1),
                },
                VolumeTier {
                    from_shards: 10_000,
                    factor: d(8, 1),
                },
            ],
            duration_tiers: vec![
                DurationTier {
                    from: Span::from_millis(0),
                    factor: Decimal::ONE,
                },
                DurationTier {
                    from: Span::from_secs(86_400),
                    factor: d(9, 1),
                },
                DurationTier {
                    from: Span::from_secs(7 * 86_400),
                    factor: d(75, 2),
                },
                DurationTier {
                    from: Span::from_secs(30 * 86_400),
                    factor: d(6, 1),
                },
            ],
            tier_factors: TierFactors::default(),
            immediate_premium: d(125, 2),
        }
    }
}

/// Hours in a span, exactly.
pub fn hours(span: Span) -> Decimal {
    Decimal::from(span.millis()) / Decimal::from(MS_PER_HOUR)
}

/// Rounds an amount the way every amount is rounded.
pub fn round_amount(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(AMOUNT_DP, RoundingStrategy::MidpointNearestEven)
}

impl PriceTable {
    /// Checks that nothing is negative and the tiers are well formed.
    pub fn validate(&self) -> Result<(), PricingError> {
        let neg = |what: String, value: Decimal| {
            if value.is_sign_negative() {
                Err(PricingError::Negative { what, value })
            } else {
                Ok(())
            }
        };
        for k in ResourceKind::ALL {
            neg(format!("the {k} list price"), self.shard_hour.get(k))?;
        }
        for t in Tier::ALL {
            neg(format!("the {t} factor"), self.tier_factors.get(t))?;
        }
        neg("the immediate premium".into(), self.immediate_premium)?;
        let v = &self.volume_tiers;
        if v.first().is_none_or(|t| t.from_shards != 0)
            || v.windows(2).any(|w| w[1].from_shards <= w[0].from_shards)
        {
            return Err(PricingError::BadTiers {
                what: "volume tiers",
            });
        }
        let d = &self.duration_tiers;
        if d.first().is_none_or(|t| !t.from.is_zero())
            || d.windows(2).any(|w| w[1].from <= w[0].from)
        {
            return Err(PricingError::BadTiers {
                what: "duration tiers",
            });
        }
        for t in v {
            neg(
                format!(
                    "the factor of the volume tier from {} shards",
                    t.from_shards
                ),
                t.factor,
            )?;
        }
        for t in d {
            neg(
                format!("the factor of the duration tier from {}", t.from),
                t.factor,
            )?;
        }
        Ok(())
    }

    /// Σ over volume tiers of (shards inside the tier × factor): the graduated shard count.
    pub fn graduated_shards(&self, shards: u64) -> Decimal {
        let mut total = Decimal::ZERO;
        for (i, t) in self.volume_tiers.iter().enumerate() {
            if shards <= t.from_shards {
                break;
            }
            let end = self
                .volume_tiers
                .get(i + 1)
                .map_or(shards, |n| n.from_shards.min(shards));
            total += Decimal::from(end - t.from_shards) * t.factor;
        }
        total
    }

    /// The factor of the duration tier a commitment of `span` falls in.
    pub fn duration_factor(&self, span: Span) -> Decimal {
        self.duration_tiers
            .iter()
            .rev()
            .find(|t| span >= t.from)
            .map_or(Decimal::ONE, |t| t.factor)
    }

    /// Multiplier for a delivery.
    pub fn delivery_factor(&self, delivery: Delivery) -> Decimal {
        match delivery {
            Delivery::Immediate => self.immediate_premium,
            Delivery::Scheduled => Decimal::ONE,
        }
    }

    /// Price per hour of `shards` shards of `kind` committed for `span` at `tier`, delivered so.
    pub fn hourly(
        &self,
        kind: ResourceKind,
        shards: u64,
        span: Span,
        tier: Tier,
        delivery: Delivery,
    ) -> Decimal {
        self.shard_hour.get(kind)
            * self.graduated_shards(shards)
            * self.duration_factor(span)
            * self.tier_factors.get(tier)
            * self.delivery_factor(delivery)
    }

    /// Amount for `shards` shards of `kind` held for `span` (also the commitment length).
    pub fn amount(
        &self,
        kind: ResourceKind,
        shards: u64,
        span: Span,
        tier: Tier,
        delivery: Delivery,
    ) -> Result<Decimal, PricingError> {
        let hourly = self.hourly(kind, shards, span, tier, delivery);
        hourly
            .checked_mul(hours(span))
            .map(round_amount)
            .ok_or(PricingError::Overflow)
    }

    /// List-price cost of `shard_ms` shard-milliseconds of `kind` (no tiers), exact.
    pub fn cost(&self, kind: ResourceKind, shard_ms: u128) -> Option<Decimal> {
        let units = Decimal::from_i128_with_scale(i128::try_from(shard_ms).ok()?, 0);
        let hours = units.checked_div(Decimal::from(MS_PER_HOUR))?;
        hours.checked_mul(self.shard_hour.get(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn costs_shard_hours_exactly() {
        let t = PriceTable::default();
        // 100 cpu shards (one core) for one hour = 0.04.
        assert_eq!(t.cost(ResourceKind::Cpu, 100 * 3_600_000), Some(d("0.04")));
        // 64 memory shards (1 GiB) for one hour = 0.005.
        assert_eq!(
            t.cost(ResourceKind::Memory, 64 * 3_600_000),
            Some(d("0.005"))
        );
    }

    #[test]
    fn volume_tiers_are_graduated_at_their_boundaries() {
        let t = PriceTable::default();
        assert_eq!(t.graduated_shards(0), d("0"));
        assert_eq!(t.graduated_shards(1_000), d("1000"));
        // The 1001st shard is the first at 0.9.
        assert_eq!(t.graduated_shards(1_001), d("1000.9"));
        // 1000 × 1 + 9000 × 0.9 = 9100; then 0.8 each.
        assert_eq!(t.graduated_shards(10_000), d("9100"));
        assert_eq!(t.graduated_shards(10_010), d("9108"));
    }

    #[test]
    fn duration_tiers_apply_to_the_whole_commitment_from_their_threshold() {
        let t = PriceTable::default();
        assert_eq!(t.duration_factor(Span::from_secs(86_399)), d("1"));
        assert_eq!(t.duration_factor(Span::from_secs(86_400)), d("0.9"));
        assert_eq!(t.duration_factor(Span::from_secs(7 * 86_400 - 1)), d("0.9"));
        assert_eq!(t.duration_factor(Span::from_secs(7 * 86_400)), d("0.75"));
        assert_eq!(t.duration_factor(Span::from_secs(30 * 86_400)), d("0.6"));
    }

    #[test]
    fn a_hand_worked_price() {
        let t = PriceTable::default();
        // 200 cpu shards (2 cores), premium, immediate, for 2 hours:
        // 0.0004 × 200 × 1 (under a day) × 1.5 × 1.25 = 0.15 per hour → 0.30.
        let a = t.amount(
            ResourceKind::Cpu,
            200,
            Span::from_secs(7200),
            Tier::Premium,
            Delivery::Immediate,
        );
        assert_eq!(a, Ok(d("0.30")));
        // The same best-effort and scheduled: 0.0004 × 200 × 0.5 = 0.04 per hour → 0.08.
        let a = t.amount(
            ResourceKind::Cpu,
            200,
            Span::from_secs(7200),
            Tier::BestEffort,
            Delivery::Scheduled,
        );
        assert_eq!(a, Ok(d("0.08")));
        // A week of 1,500 memory shards, standard, scheduled:
        // 0.000078125 × (1000 + 500 × 0.9) × 0.75 × 168 h = 14.2734375 → 14.273438 (6 dp, half-even).
        let a = t.amount(
            ResourceKind::Memory,
            1_500,
            Span::from_secs(7 * 86_400),
            Tier::Standard,
            Delivery::Scheduled,
        );
        assert_eq!(a, Ok(d("14.273438")));
    }

    #[test]
    fn a_bad_table_is_refused_naming_what_is_wrong() {
        let mut t = PriceTable::default();
        t.tier_factors.premium = d("-1");
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("premium factor")
        );
        let mut t = PriceTable::default();
        t.volume_tiers[1].from_shards = 0;
        assert_eq!(
            t.validate(),
            Err(PricingError::BadTiers {
                what: "volume tiers"
            })
        );
        let mut t = PriceTable::default();
        t.duration_tiers.remove(0);
        assert_eq!(
            t.validate(),
            Err(PricingError::BadTiers {
                what: "duration tiers"
            })
        );
        assert_eq!(PriceTable::default().validate(), Ok(()));
    }
}
