//! Wire types of `GET /v1/overview`: every host's capacity split and market, and the shard
//! requests by state. Nothing of any tenant's, so an operator may serve it without a token.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::{PricesView, Shards};

/// One kind of a host: its capacity as disjoint parts that add up to it, and two totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SplitView {
    /// Held by workloads as their share of their reservations.
    pub allocated: u64,
    /// Lent out, by reservations and by the provider.
    pub lent: u64,
    /// Reserved, not allocated, lent or offered.
    pub idle: u64,
    /// Reserved and idle, offered on the market.
    pub offered: u64,
    /// Neither reserved nor lent.
    pub free: u64,
    /// Reserved (allocated + reservations' lending + idle + offered).
    pub reserved: u64,
    /// Not reserved (the provider's lending + free).
    pub unreserved: u64,
}

/// A host's market in short: its price and pool.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MarketSummary {
    /// Price per shard-hour (absent before the first repricing).
    pub price: Option<PricesView>,
    /// On offer.
    pub offered: Shards,
    /// Leased out now.
    pub leased: Shards,
    /// Asked for and not yet served.
    pub waiting: Shards,
}

/// One host now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostOverview {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its capacity in shards.
    pub capacity: Shards,
    /// Per kind (`cpu`, `memory`, `net`, `iops`), where its shards are.
    pub split: BTreeMap<String, SplitView>,
    /// Its market.
    pub market: MarketSummary,
    /// How many workloads run on it.
    pub workloads: u64,
}

/// The engine's shard requests by state.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RequestCounts {
    /// Still being worked on.
    pub open: u64,
    /// All the engine keeps (the newest 1,000 at most).
    pub total: u64,
    /// By state: `pending`, `fulfilled`, `partially_fulfilled`, `failed`.
    pub by_state: BTreeMap<String, u64>,
}

/// `GET /v1/overview`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverviewView {
    /// As of (RFC 3339).
    pub at: String,
    /// Every host.
    pub hosts: Vec<HostOverview>,
    /// The engine's shard requests.
    pub shard_requests: RequestCounts,
}
