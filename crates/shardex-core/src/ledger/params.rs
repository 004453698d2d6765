//! The ledger's parameters, changed only by an action so that replaying the log reproduces
//! every decision.

use super::*;

/// Parameters that shape ledger behaviour; changed only through [`Action::Configure`] so that
/// replaying the log reproduces every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerParams {
    /// Notice a borrower gets before reclaimed or preempted shards move back.
    pub reclaim_notice: Span,
    /// Lowest price per shard-hour of the provider's unreserved shards.
    pub provider_floor: PriceVector,
    /// Multiplier of a lease's price when delivered now rather than at a scheduled start.
    #[serde(default = "default_immediate_premium")]
    pub immediate_premium: Decimal,
    /// Multipliers of a lease's price by the borrower's tier.
    #[serde(default)]
    pub tier_factors: TierFactors,
    /// How long a modification the host has no room for waits for room (pending) before it
    /// gives up. Left out of the JSON at its default, so that logs written before it existed
    /// replay to the very events they stored.
    #[serde(
        default = "default_pending_for",
        skip_serializing_if = "is_default_pending_for"
    )]
    pub pending_for: Span,
}

fn default_pending_for() -> Span {
    Span::from_secs(3600)
}

fn is_default_pending_for(s: &Span) -> bool {
    *s == default_pending_for()
}

fn default_immediate_premium() -> Decimal {
    Decimal::new(125, 2)
}

impl Default for LedgerParams {
    fn default() -> Self {
        Self {
            reclaim_notice: Span::from_secs(30),
            provider_floor: PriceVector::default(),
            immediate_premium: default_immediate_premium(),
            tier_factors: TierFactors::default(),
            pending_for: default_pending_for(),
        }
    }
}

impl LedgerParams {
    /// What a lease's base price is multiplied by for a tier and a delivery.
    pub fn price_factor(&self, tier: Tier, delivery: Delivery) -> Decimal {
        let d = match delivery {
            Delivery::Immediate => self.immediate_premium,
            Delivery::Scheduled => Decimal::ONE,
        };
        self.tier_factors.get(tier) * d
    }
}
