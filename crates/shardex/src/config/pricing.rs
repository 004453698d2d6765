//! `[pricing]` and `[market]`: list prices, their tiers, and how market prices move.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shardex_core::billing::DEFAULT_LENDER_SHARE;
use shardex_core::market::PriceCurve;
use shardex_core::pricing::{DurationTier, TierFactors, VolumeTier};
use shardex_core::{PriceTable, PriceVector, Span};

use super::text::*;

/// `[pricing]`: list prices and their tiers, as the price table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// List price per shard-hour, per kind.
    pub shard_hour: PriceVector,
    /// Graduated volume discounts: from this many shards, this factor.
    pub volume_tiers: Vec<VolumeTier>,
    /// Commitment discounts: a commitment at least this long costs this factor, all of it.
    pub duration_tiers: Vec<DurationTierConfig>,
    /// Multipliers by priority tier (reservations and leases).
    pub tier_factors: TierFactors,
    /// Multiplier for immediate over scheduled delivery (reservations and leases).
    pub immediate_premium: Decimal,
    /// Share of a lease's charge credited to the lender; the provider keeps the rest.
    pub lender_share: Decimal,
}

/// One duration tier with a readable duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationTierConfig {
    /// Shortest commitment of the tier, like `"1d"`.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub from: Span,
    /// Multiplier of the list price.
    pub factor: Decimal,
}

impl Default for PricingConfig {
    fn default() -> Self {
        let t = PriceTable::default();
        Self {
            shard_hour: t.shard_hour,
            volume_tiers: t.volume_tiers,
            duration_tiers: t
                .duration_tiers
                .iter()
                .map(|d| DurationTierConfig {
                    from: d.from,
                    factor: d.factor,
                })
                .collect(),
            tier_factors: t.tier_factors,
            immediate_premium: t.immediate_premium,
            lender_share: DEFAULT_LENDER_SHARE,
        }
    }
}

impl PricingConfig {
    /// The price table this section describes.
    pub fn table(&self) -> PriceTable {
        PriceTable {
            shard_hour: self.shard_hour,
            volume_tiers: self.volume_tiers.clone(),
            duration_tiers: self
                .duration_tiers
                .iter()
                .map(|d| DurationTier {
                    from: d.from,
                    factor: d.factor,
                })
                .collect(),
            tier_factors: self.tier_factors,
            immediate_premium: self.immediate_premium,
        }
    }
}

/// `[market]`: how the pool's price per (host, kind) follows supply and demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// The utilisation curve, smoothing and history.
    #[serde(flatten)]
    pub curve: PriceCurve,
    /// How often prices are updated.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub update_every: Span,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            curve: PriceCurve::default(),
            update_every: Span::from_secs(60),
        }
    }
}
