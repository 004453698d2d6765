//! Fleet mode's agent protocol: what a host's agent (`shardex agent`) and the brokers say to
//! each other. Internal to shardex (not in the tenants' OpenAPI document), but held to the same
//! rules: unknown fields refused, every bad input a problem naming what was wrong.

use serde::{Deserialize, Serialize};
use shardex_core::ports::Reading;

use super::Shards;

/// `POST /v1/agent/tokens` (admin): a token for the agent of the host `host`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHostToken {
    /// The host's name, as its agent will register it (1 to 128 characters).
    pub host: String,
}

/// The answer to [`NewHostToken`]: the token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTokenIssued {
    /// The host.
    pub host: String,
    /// `sxh_<id>_<secret>`: what the agent sends as its bearer token.
    pub token: String,
}

/// `POST /v1/agent/register` (the host's token): the host's capacity as its agent measured
/// it, physical units; the broker rounds it down to whole shards of the fleet's sizes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Millicores.
    pub cpu_millicores: u64,
    /// Bytes of memory.
    pub memory_bytes: u64,
    /// Network bandwidth, bit/s.
    pub net_bps: u64,
    /// Storage IOPS.
    pub iops: u64,
}

/// The answer to [`Register`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    /// The host's id in the ledger.
    pub host: u64,
    /// Its name.
    pub name: String,
    /// Its capacity in the ledger now.
    pub capacity: Shards,
    /// One shard of each kind, physical units (cpu millicores, memory bytes, net bit/s,
    /// iops): the agent turns entitlements into limits with these.
    pub shard_sizes: [u64; 4],
    /// How often the brokers expect a report, milliseconds.
    pub report_every_ms: u64,
    /// After how long without a report the host is marked offline, milliseconds.
    pub offline_after_ms: u64,
}

/// `GET /v1/agent/targets?after=SEQ` (the host's token): what the host's limits should be as
/// of ledger entry `seq` (`targets` is `shardex_agent::Targets`: each workload's and
/// reservation group's limits and the leases each workload holds), or 204 while it is still
/// `SEQ`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostTargets<T> {
    /// The ledger entry they come from.
    pub seq: u64,
    /// The host.
    pub host: u64,
    /// The limits.
    pub targets: T,
}

/// One sample of one workload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleReport {
    /// The workload's id.
    pub workload: u64,
    /// When it was taken, ms since the epoch.
    pub at_ms: i64,
    /// What was read (usage per kind, held at its limit per kind, OOM kills).
    pub reading: Reading,
}

/// What is in force for one workload, as read back on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InForceReport {
    /// The workload's id.
    pub workload: u64,
    /// Per kind, the hard limit the ledger asks for (`None`: unlimited), physical units.
    pub want: [Option<u64>; 4],
    /// Per kind, the hard limit read back as asked (`None` outside: not yet read back).
    pub in_force: [Option<Option<u64>>; 4],
    /// Per kind, why it is degraded, if it is.
    pub degraded: [Option<String>; 4],
}

/// `POST /v1/agent/report` (the host's token): one report of the host's agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The ledger entry the agent's limits come from.
    pub seq: u64,
    /// Samples since the previous report (those held at a limit raise their workload at once).
    pub samples: Vec<SampleReport>,
    /// What is in force for each of the host's workloads.
    pub in_force: Vec<InForceReport>,
    /// Leases the host gives back because the limits they pay for can't be written
    /// (a degraded kind): their ids.
    #[serde(default)]
    pub release: Vec<u64>,
}

/// The answer to [`Report`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reported {
    /// The newest ledger entry the broker has: the agent fetches the ledger when it is past
    /// its own.
    pub seq: u64,
    /// Ledger actions committed because of this report (raises of workloads held at a limit,
    /// releases).
    pub committed: usize,
}

/// `GET /v1/agent/hosts` (admin): one host's agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentView {
    /// The host's id.
    pub host: u64,
    /// Its name.
    pub name: String,
    /// `online`, or `offline` when it has not reported for the offline timeout.
    pub state: String,
    /// Its last report, ms since the epoch.
    pub seen_ms: i64,
    /// The ledger entry its limits come from.
    pub seq: u64,
    /// The broker planning it now, if any.
    pub planned_by: Option<String>,
    /// What it read back in force, per workload.
    pub in_force: Vec<InForceReport>,
}
