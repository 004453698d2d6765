//! `[api]`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use shardex_core::Span;

use super::text::*;

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the API and dashboard listen on.
    pub listen: SocketAddr,
    /// Requests a second each tenant token may make on average (0: no limit).
    pub rate_limit: u32,
    /// How many requests a tenant token may make at once, above the average.
    pub rate_burst: u32,
    /// Whether `GET /v1/overview` (hosts' capacity split and markets, nothing of a tenant's:
    /// the dashboard's first page) answers without a token.
    pub public_overview: bool,
    /// Whether `GET /metrics` answers without the admin token (per-workload numbers: turn on
    /// only where the port is the operator's alone).
    pub public_metrics: bool,
    /// How much of each workload's past the daemon keeps in memory for its dashboard page.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub history: Span,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            rate_limit: 100,
            rate_burst: 200,
            public_overview: true,
            public_metrics: false,
            history: Span::from_secs(3600),
        }
    }
}

impl ApiConfig {
    /// The per-token rate limit, `None` when off.
    pub fn rate(&self) -> Option<shardex_api::ratelimit::RateLimit> {
        Some(shardex_api::ratelimit::RateLimit {
            per_second: std::num::NonZeroU32::new(self.rate_limit)?,
            burst: std::num::NonZeroU32::new(self.rate_burst)?,
        })
    }
}
