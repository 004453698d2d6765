//! Wire types of a workload's past: its timeline (what the dashboard charts) and the engine's
//! decisions about it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/workloads/{id}/history`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// How far back from now, e.g. `"15m"` (default `"1h"`; the daemon keeps `api.history`).
    pub period: Option<String>,
}

/// One kind's series, each as long as the timeline's `t`; `null` where nothing was known.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SeriesView {
    /// What it used.
    pub usage: Vec<Option<f64>>,
    /// The forecast's median for the decision period the point falls in.
    pub p50: Vec<Option<f64>>,
    /// The forecast's 95th percentile.
    pub p95: Vec<Option<f64>>,
    /// Its entitlement: what it may use at once.
    pub entitlement: Vec<Option<f64>>,
    /// The hard limit read back in force (`null`: unlimited or not read).
    pub limit: Vec<Option<f64>>,
    /// Whether the sample was held at the limit (throttled: demand was at least the usage).
    pub censored: Vec<bool>,
}

/// A workload's recent past, oldest first, in physical units.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineView {
    /// The workload.
    pub workload: u64,
    /// The unit of each kind's numbers.
    pub units: BTreeMap<String, String>,
    /// When each point was sampled, in seconds since the Unix epoch (what chart libraries
    /// take).
    pub t: Vec<f64>,
    /// Per kind with any data.
    pub kinds: BTreeMap<String, SeriesView>,
    /// When OOM kills were seen, seconds since the Unix epoch.
    pub ooms: Vec<f64>,
}

/// `GET /v1/workloads/{id}/decisions`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    /// At most this many, newest first (1 to 1,000; default 50).
    pub limit: Option<u32>,
}

/// One decision of the engine about a workload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionView {
    /// When (RFC 3339).
    pub at: String,
    /// `act` (committed) or `recommend` (only recorded).
    pub mode: String,
    /// The kind.
    pub kind: String,
    /// Its allocation before, in shards.
    pub from: u64,
    /// Its allocation after, in shards.
    pub to: u64,
    /// Why.
    pub why: String,
    /// What came of it.
    pub outcome: String,
}

/// A workload's decisions, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionsView {
    /// The workload.
    pub workload: u64,
    /// Newest first.
    pub decisions: Vec<DecisionView>,
}

/// `GET /v1/workloads`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkloadList {
    /// The caller's workloads (the admin's: all), by id.
    pub workloads: Vec<super::WorkloadView>,
}
