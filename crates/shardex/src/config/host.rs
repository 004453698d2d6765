//! `[host]` and `[ledger]`.

use serde::{Deserialize, Serialize};
use shardex_core::{LedgerParams, PriceVector, Span};

use super::text::*;

/// `[host]`: what `shardex run` registers for the machine it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Host name; default: the machine's hostname.
    pub name: Option<String>,
    /// CPU capacity in millicores; default: online cores × 1000.
    pub cpu_millicores: Option<u64>,
    /// Memory capacity in bytes; default: MemTotal of /proc/meminfo.
    pub memory_bytes: Option<u64>,
    /// Network bandwidth in bit/s (not detectable reliably).
    pub net_bps: u64,
    /// Storage IOPS (not detectable reliably).
    pub iops: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            name: None,
            cpu_millicores: None,
            memory_bytes: None,
            net_bps: 10_000_000_000,
            iops: 100_000,
        }
    }
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Notice before reclaimed or preempted shards move back.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub reclaim_notice: Span,
    /// Lowest price per shard-hour of unreserved capacity, per kind.
    pub provider_floor: PriceVector,
    /// How long a modification the host has no room for stays pending (while workloads move
    /// off the host or a host is provisioned) before it gives up.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub pending_for: Span,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        let p = LedgerParams::default();
        Self {
            reclaim_notice: p.reclaim_notice,
            provider_floor: p.provider_floor,
            pending_for: p.pending_for,
        }
    }
}
